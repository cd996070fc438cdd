/* The open loop's lateness split, for any set of slots: a connection's in-flight ring (lconn.c),
 * or a load thread's churn slots (load_churn.c). Between an item's due time and its start, at
 * each moment either a slot was free, and the item was late by the client's own doing
 * (send_lag), or every slot held work waiting for the server (slot_wait: the server's, already
 * inside the corrected latency). clients/README.md, "Open loop: whose lateness".
 *
 * One step of history splits the time: when the slots last became full or not full. An item due
 * while they are full is owed; owed items take their lateness from gates (latesplit_owe).
 */
#ifndef ECHOBENCH_LATESPLIT_H
#define ECHOBENCH_LATESPLIT_H

#include <stdbool.h>
#include <stdint.h>

#define LATESPLIT_GATES 2           /* late-fired batches of owed items kept apart */

struct latesplit {
	uint64_t t_change;          /* when the slots last became full or not full, */
	uint64_t t_before;          /* and the change before that */
	struct { uint64_t last, t_full; } gate[LATESPLIT_GATES];
	uint8_t ngates;
};

/* The slots went from was_full to full at `now` (nothing when they are equal). A slot freed and
 * taken again at the same `now` is no change. */
void latesplit_track(struct latesplit *s, bool was_full, bool full, uint64_t now);

/* How long, between due time d and now, a slot was free (`full`: the slots' state now). Exact
 * when the state changed at most once since d, that is unless the client took longer than a
 * round trip to fire the item (its lateness is then large whichever way it is split). */
uint64_t latesplit_free_time(const struct latesplit *s, bool full, uint64_t d, uint64_t now);

/* Item idx (owed items are numbered in due order) is owed, late by the client's doing: it shares
 * a gate with the owed items before it that were fired late when the slots filled at the same
 * moment. With more gates pending than fit, the last one is stretched. */
void latesplit_owe(struct latesplit *s, uint64_t idx);

/* Owed item idx (due at d) starts: the part of its lateness that was the client's (0 when the
 * slots were full at its due time already). Called in idx order. */
uint64_t latesplit_owed_lateness(struct latesplit *s, uint64_t idx, uint64_t d);

#endif

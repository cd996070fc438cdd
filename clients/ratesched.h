/* The open-loop send schedule: tick k is due at start + k / rate, whatever happened before.
 *
 * Each due time is computed from k, not by adding a period to the previous one, so rounding
 * never accumulates, and a caller that falls behind (a stalled server, a late wake-up) gets
 * every missed tick at once with its original due time: latency counted from those due times
 * is free of coordinated omission.
 */
#ifndef ECHOBENCH_RATESCHED_H
#define ECHOBENCH_RATESCHED_H

#include <stdint.h>

struct ratesched {
	uint64_t start_ns;
	double period_ns;
	uint64_t next;      /* index of the first tick not yet taken */
	uint64_t limit;     /* ticks at or after this index are never due (UINT64_MAX: none) */
};

/* rate_per_s > 0 (fractions allowed). Returns 0 or -EINVAL. */
int ratesched_init(struct ratesched *rs, uint64_t start_ns, double rate_per_s);

/* Due time of tick k (ns, same clock as start_ns). */
uint64_t ratesched_due(const struct ratesched *rs, uint64_t k);

/* Due time of the next tick not yet taken; UINT64_MAX when none remains (see limit). */
uint64_t ratesched_next_due(const struct ratesched *rs);

/* Takes every tick due at or before now: returns how many, and the index of the first in
 * *first. 0 when none is due. */
uint64_t ratesched_take(struct ratesched *rs, uint64_t now, uint64_t *first);

/* No tick at or after end_ns will be due: the schedule ends there. */
void ratesched_stop_at(struct ratesched *rs, uint64_t end_ns);

#endif

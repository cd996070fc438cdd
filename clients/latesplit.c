/* The open loop's lateness split (latesplit.h): which part of an item's delay was the client's. */
#include "latesplit.h"

void latesplit_track(struct latesplit *s, bool was_full, bool full, uint64_t now)
{
	if (full == was_full)
		return;
	if (s->t_change == now) {
		s->t_change = s->t_before;
	} else {
		s->t_before = s->t_change;
		s->t_change = now;
	}
}

uint64_t latesplit_free_time(const struct latesplit *s, bool full, uint64_t d, uint64_t now)
{
	uint64_t t = s->t_change < now ? s->t_change : now;

	if (now <= d)
		return 0;
	if (t <= d)
		return full ? 0 : now - d;
	return full ? t - d : now - t;
}

/* Owed items up to gate[i].last take their lateness from gate[i].t_full: the moment the slots
 * filled after their due time. Consecutive ones share a gate. */
void latesplit_owe(struct latesplit *s, uint64_t idx)
{
	unsigned n = s->ngates;

	if (n && s->gate[n - 1].t_full == s->t_change) {
		s->gate[n - 1].last = idx;
	} else if (n < LATESPLIT_GATES) {
		s->gate[n].last = idx;
		s->gate[n].t_full = s->t_change;
		s->ngates++;
	} else {
		s->gate[n - 1].last = idx;
	}
}

uint64_t latesplit_owed_lateness(struct latesplit *s, uint64_t idx, uint64_t d)
{
	while (s->ngates && s->gate[0].last < idx) {
		s->gate[0] = s->gate[1];
		s->ngates--;
	}
	return s->ngates && s->gate[0].t_full > d ? s->gate[0].t_full - d : 0;
}

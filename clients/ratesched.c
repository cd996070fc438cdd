#include "ratesched.h"

#include <errno.h>
#include <math.h>

int ratesched_init(struct ratesched *rs, uint64_t start_ns, double rate_per_s)
{
	if (!(rate_per_s > 0) || !isfinite(rate_per_s))
		return -EINVAL;
	rs->start_ns = start_ns;
	rs->period_ns = 1e9 / rate_per_s;
	rs->next = 0;
	rs->limit = UINT64_MAX;
	return 0;
}

uint64_t ratesched_due(const struct ratesched *rs, uint64_t k)
{
	/* A double holds k * period exactly enough: below 2^53 ns (104 days) the error of one
	 * product is under a nanosecond, and it never adds up across ticks. */
	return rs->start_ns + (uint64_t)llround((double)k * rs->period_ns);
}

uint64_t ratesched_next_due(const struct ratesched *rs)
{
	return rs->next >= rs->limit ? UINT64_MAX : ratesched_due(rs, rs->next);
}

uint64_t ratesched_take(struct ratesched *rs, uint64_t now, uint64_t *first)
{
	uint64_t k;

	*first = rs->next;
	if (rs->next >= rs->limit || now < ratesched_due(rs, rs->next))
		return 0;
	/* The last tick due by now, found by division and then corrected for rounding. */
	k = (uint64_t)((double)(now - rs->start_ns) / rs->period_ns);
	if (k < rs->next)
		k = rs->next;
	while (k > rs->next && ratesched_due(rs, k) > now)
		k--;
	while (k + 1 < rs->limit && ratesched_due(rs, k + 1) <= now)
		k++;
	if (k >= rs->limit)
		k = rs->limit - 1;
	rs->next = k + 1;
	return rs->next - *first;
}

void ratesched_stop_at(struct ratesched *rs, uint64_t end_ns)
{
	uint64_t k;

	if (end_ns <= rs->start_ns) {
		rs->limit = 0;
		return;
	}
	/* First tick whose due time is >= end_ns. */
	k = (uint64_t)((double)(end_ns - rs->start_ns) / rs->period_ns);
	while (k > 0 && ratesched_due(rs, k - 1) >= end_ns)
		k--;
	while (ratesched_due(rs, k) < end_ns)
		k++;
	rs->limit = k;
}

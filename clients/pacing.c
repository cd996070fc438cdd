/* The early-wake margin of the open loop (pacing.h): a decaying histogram of how late timed
 * waits returned, and its high quantile. */
#include "pacing.h"

#include <string.h>

void pacing_init(struct pacing *p)
{
	memset(p, 0, sizeof(*p));
	p->margin_ns = p->busy_margin_ns = PACING_INITIAL_NS;
}

unsigned pacing_bucket(uint64_t late_ns)
{
	unsigned o = 0;

	if (late_ns < 1024)
		return 0;
	while (o < 14 && late_ns >> (o + 11))
		o++;
	if (late_ns >> (o + 11))
		return PACING_BUCKETS - 1;
	return 1 + 4 * o + (unsigned)((late_ns >> (o + 8)) & 3);
}

uint64_t pacing_bucket_high(unsigned b)
{
	unsigned o, sub;

	if (b == 0)
		return 1023;
	if (b >= PACING_BUCKETS - 1)
		return UINT64_MAX;
	o = (b - 1) / 4;
	sub = (b - 1) % 4;
	return ((uint64_t)(5 + sub) << (o + 8)) - 1;
}

static uint64_t quantile_high(const struct pacing *p, double q)
{
	uint64_t total = 0, seen = 0, rank;

	for (unsigned b = 0; b < PACING_BUCKETS; b++)
		total += p->count[b];
	if (!total)
		return 0;
	rank = (uint64_t)((double)total * q + 0.999999);
	for (unsigned b = 0; b < PACING_BUCKETS; b++) {
		seen += p->count[b];
		if (seen >= rank)
			return pacing_bucket_high(b);
	}
	return UINT64_MAX;
}

static uint64_t clamp(uint64_t m)
{
	return m < PACING_FLOOR_NS ? PACING_FLOOR_NS : m > PACING_CAP_NS ? PACING_CAP_NS : m;
}

void pacing_woke(struct pacing *p, uint64_t late_ns)
{
	p->count[pacing_bucket(late_ns)]++;
	p->samples++;
	if (++p->since_decay >= PACING_HALFLIFE) {
		/* Older wake-ups weigh half as much; a single late one is forgotten after
		 * PACING_HALFLIFE to 2 x PACING_HALFLIFE samples. */
		for (unsigned b = 0; b < PACING_BUCKETS; b++)
			p->count[b] /= 2;
		p->since_decay = 0;
	}
	if (p->samples < PACING_MIN_SAMPLES)
		return;
	p->margin_ns = clamp(quantile_high(p, PACING_QUANTILE));
	p->busy_margin_ns = clamp(quantile_high(p, PACING_BUSY_QUANTILE));
}

void pacing_cpu_wait(struct pacing *p, uint64_t waited_ns, uint64_t span_ns)
{
	double share;

	if (!span_ns)
		return;
	share = (double)waited_ns / (double)span_ns;
	p->cpu_wait += PACING_BUSY_WEIGHT * ((share > 1 ? 1 : share) - p->cpu_wait);
}

#include "series.h"

#include <math.h>
#include <stdlib.h>

#define SUB_BITS 5
#define SUB (1u << SUB_BITS)
#define TOP_EXP 42                              /* values from 2^43 ns on share the top */
#define NBUCKETS ((TOP_EXP - SUB_BITS + 2) * SUB)

struct series {
	uint64_t window_ns, interval_ns;
	unsigned n;
	uint64_t *answers;
	uint32_t *buckets;                      /* n * NBUCKETS */
};

static unsigned bucket_of(uint64_t v)
{
	unsigned e;

	if (v < SUB)
		return (unsigned)v;
	e = 63u - (unsigned)__builtin_clzll(v);
	if (e > TOP_EXP)
		return NBUCKETS - 1;
	return (e - SUB_BITS + 1) * SUB + (unsigned)((v >> (e - SUB_BITS)) & (SUB - 1));
}

static uint64_t bucket_high(unsigned b)
{
	unsigned e;
	uint64_t low;

	if (b < SUB)
		return b;
	e = b / SUB + SUB_BITS - 1;
	low = (uint64_t)(SUB + b % SUB) << (e - SUB_BITS);
	return low + (UINT64_C(1) << (e - SUB_BITS)) - 1;
}

struct series *series_new(uint64_t window_ns, uint64_t interval_ns)
{
	struct series *s = calloc(1, sizeof(*s));
	uint64_t n = (window_ns + interval_ns - 1) / interval_ns;

	if (!s)
		return NULL;
	s->window_ns = window_ns;
	s->interval_ns = interval_ns;
	s->n = (unsigned)(n < SERIES_MAX_INTERVALS ? n : SERIES_MAX_INTERVALS);
	/* calloc'd pages stay untouched, and unbacked, until an interval is used. */
	s->answers = calloc(s->n, sizeof(*s->answers));
	s->buckets = calloc((size_t)s->n * NBUCKETS, sizeof(*s->buckets));
	if (!s->answers || !s->buckets) {
		series_free(s);
		return NULL;
	}
	return s;
}

void series_free(struct series *s)
{
	if (!s)
		return;
	free(s->answers);
	free(s->buckets);
	free(s);
}

void series_record(struct series *s, uint64_t t_ns, uint64_t lat_ns)
{
	uint64_t i;

	if (!s)
		return;
	i = t_ns / s->interval_ns;
	if (i >= s->n)
		i = s->n - 1;
	s->answers[i]++;
	s->buckets[i * NBUCKETS + bucket_of(lat_ns)]++;
}

void series_merge(struct series *dst, const struct series *src)
{
	for (unsigned i = 0; i < dst->n && i < src->n; i++) {
		dst->answers[i] += src->answers[i];
		for (unsigned b = 0; b < NBUCKETS; b++)
			dst->buckets[(size_t)i * NBUCKETS + b] += src->buckets[(size_t)i * NBUCKETS + b];
	}
}

unsigned series_len(const struct series *s) { return s->n; }

uint64_t series_start_ns(const struct series *s, unsigned i) { return i * s->interval_ns; }

uint64_t series_span_ns(const struct series *s, unsigned i)
{
	uint64_t start = i * s->interval_ns;

	if (i + 1 == s->n)
		return s->window_ns - start;
	return s->interval_ns;
}

uint64_t series_answers(const struct series *s, unsigned i) { return s->answers[i]; }

uint64_t series_percentile(const struct series *s, unsigned i, double pct)
{
	uint64_t n = s->answers[i], rank, seen = 0;
	const uint32_t *b = s->buckets + (size_t)i * NBUCKETS;

	if (!n)
		return 0;
	rank = (uint64_t)ceil(pct / 100.0 * (double)n);
	if (rank < 1)
		rank = 1;
	for (unsigned k = 0; k < NBUCKETS; k++) {
		seen += b[k];
		if (seen >= rank)
			return bucket_high(k);
	}
	return bucket_high(NBUCKETS - 1);
}

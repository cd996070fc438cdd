#include "hist.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SUB_COUNT (1u << (HIST_SUB_BITS + 1))   /* 2048: values below it are exact */
#define SUB_HALF (1u << HIST_SUB_BITS)          /* 1024 sub-buckets per further power of two */
#define TOP_SHIFT (64 - __builtin_clzll(HIST_MAX_NS) - 1 - HIST_SUB_BITS)
#define NBUCKETS (SUB_HALF * (TOP_SHIFT + 1) + SUB_HALF)

_Static_assert(NBUCKETS == HIST_NBUCKETS, "hist.h's HIST_NBUCKETS disagrees with the geometry");

struct hist {
	uint64_t count;
	uint64_t min, max;
	uint64_t sum;       /* ns; overflows only after ~584 years of summed latency */
	double sumsq;       /* double: squares of ns overflow 64 bits quickly */
	uint64_t counts[NBUCKETS];
};

unsigned hist_bucket_index(uint64_t v)
{
	int shift;

	if (v > HIST_MAX_NS)
		v = HIST_MAX_NS;
	if (v < SUB_COUNT)
		return (unsigned)v;
	/* v >> shift lands in [1024, 2048): the 1024 sub-buckets of v's power of two. */
	shift = 63 - __builtin_clzll(v) - HIST_SUB_BITS;
	return SUB_HALF * (unsigned)shift + (unsigned)(v >> shift);
}

uint64_t hist_bucket_low(unsigned i)
{
	unsigned shift;

	if (i < SUB_COUNT)
		return i;
	shift = i / SUB_HALF - 1;
	return (uint64_t)(i - SUB_HALF * shift) << shift;
}

uint64_t hist_bucket_high(unsigned i)
{
	unsigned shift;

	if (i < SUB_COUNT)
		return i;
	shift = i / SUB_HALF - 1;
	return ((uint64_t)(i - SUB_HALF * shift + 1) << shift) - 1;
}

struct hist *hist_new(void)
{
	struct hist *h = calloc(1, sizeof(*h));

	if (h)
		h->min = UINT64_MAX;    /* calloc zeroed the rest */
	return h;
}

void hist_free(struct hist *h)
{
	free(h);
}

void hist_reset(struct hist *h)
{
	/* Only the buckets from the minimum's to the maximum's can hold counts (also during a
	 * restore, hist_add_bucket keeps them so): clearing just those makes resetting a histogram
	 * of a narrow range cheap (time-block histograms are reset often). */
	if (h->count && h->min <= h->max) {
		unsigned lo = hist_bucket_index(h->min), hi = hist_bucket_index(h->max);

		memset(&h->counts[lo], 0, (hi - lo + 1) * sizeof(h->counts[0]));
	} else {
		memset(h->counts, 0, sizeof(h->counts));
	}
	h->count = h->sum = h->max = 0;
	h->sumsq = 0;
	h->min = UINT64_MAX;
}

void hist_record_n(struct hist *h, uint64_t v, uint64_t n)
{
	if (!n)
		return;
	h->counts[hist_bucket_index(v)] += n;
	h->count += n;
	h->sum += v * n;
	h->sumsq += (double)v * (double)v * (double)n;
	if (v < h->min)
		h->min = v;
	if (v > h->max)
		h->max = v;
}

void hist_record(struct hist *h, uint64_t v)
{
	hist_record_n(h, v, 1);
}

void hist_merge(struct hist *dst, const struct hist *src)
{
	if (!src->count)
		return;
	/* Only src's buckets from its minimum's to its maximum's can hold counts. */
	for (unsigned i = hist_bucket_index(src->min), hi = hist_bucket_index(src->max); i <= hi; i++)
		dst->counts[i] += src->counts[i];
	dst->count += src->count;
	dst->sum += src->sum;
	dst->sumsq += src->sumsq;
	if (src->min < dst->min)
		dst->min = src->min;
	if (src->max > dst->max)
		dst->max = src->max;
}

uint64_t hist_count(const struct hist *h) { return h->count; }
uint64_t hist_sum(const struct hist *h) { return h->sum; }
double hist_sumsq(const struct hist *h) { return h->sumsq; }

unsigned hist_next_bucket(const struct hist *h, unsigned from, uint64_t *count)
{
	/* Only the buckets from the minimum's to the maximum's hold counts: an exporter walks
	 * those, not all 33,792 (most of a record's write time was this walk). */
	if (!h->count)
		return NBUCKETS;
	unsigned lo = hist_bucket_index(h->min), hi = hist_bucket_index(h->max);
	for (unsigned i = from > lo ? from : lo; i <= hi; i++) {
		if (h->counts[i]) {
			*count = h->counts[i];
			return i;
		}
	}
	return NBUCKETS;
}

int hist_add_bucket(struct hist *h, unsigned index, uint64_t count)
{
	if (index >= NBUCKETS || !count)
		return -EINVAL;
	if (h->counts[index] > UINT64_MAX - count || h->count > UINT64_MAX - count)
		return -EOVERFLOW;
	h->counts[index] += count;
	h->count += count;
	/* Until hist_set_exact(): the extremes are those of the buckets that have counts, so
	 * that hist_reset() and hist_set_exact() look only between them. */
	if (hist_bucket_low(index) < h->min)
		h->min = hist_bucket_low(index);
	if (hist_bucket_high(index) > h->max)
		h->max = hist_bucket_high(index);
	return 0;
}

int hist_set_exact(struct hist *h, uint64_t min, uint64_t max, uint64_t sum, double sumsq)
{
	uint64_t lo, hi;
	unsigned first, last;

	if (!isfinite(sumsq) || sumsq < 0)
		return -EINVAL;
	if (!h->count) {
		if (min || max || sum || sumsq != 0)
			return -EINVAL;
		h->min = UINT64_MAX;
		h->max = h->sum = 0;
		h->sumsq = 0;
		return 0;
	}
	/* hist_add_bucket() kept the extremes of the buckets it filled. */
	first = hist_bucket_index(h->min);
	last = hist_bucket_index(h->max);
	if (min > max || hist_bucket_index(min) != first || hist_bucket_index(max) != last)
		return -EINVAL;
	/* The sum of count values in [min, max]; a product that overflows 64 bits cannot be
	 * below a 64-bit sum (upper bound) and cannot be reached by one (lower bound). */
	if (__builtin_mul_overflow(min, h->count, &lo) || sum < lo)
		return -EINVAL;
	if (!__builtin_mul_overflow(max, h->count, &hi) && sum > hi)
		return -EINVAL;
	h->min = min;
	h->max = max;
	h->sum = sum;
	h->sumsq = sumsq;
	return 0;
}
uint64_t hist_min(const struct hist *h) { return h->count ? h->min : 0; }
uint64_t hist_max(const struct hist *h) { return h->max; }

double hist_mean(const struct hist *h)
{
	return h->count ? (double)h->sum / (double)h->count : 0.0;
}

double hist_stdev(const struct hist *h)
{
	double mean, var;

	if (h->count < 2)
		return 0.0;
	mean = hist_mean(h);
	var = h->sumsq / (double)h->count - mean * mean;
	return var > 0 ? sqrt(var) : 0.0;
}

/* Rank (1-based) of the pct-th percentile, computed as HdrHistogram's reference (Java)
 * getValueAtPercentile does, operation for operation so that both round alike: pct lowered by
 * one ulp (so that 99.9 % of 1000, which is 999.0000000000001 in doubles, still gives 999),
 * times count, divided by 100, rounded up, at least 1. */
static uint64_t rank_of(const struct hist *h, double pct)
{
	double req = fmin(fmax(nextafter(pct, -INFINITY), 0.0), 100.0);
	double r = ceil(req * (double)h->count / 100.0);
	uint64_t rank = r < 1 ? 1 : (uint64_t)r;

	return rank > h->count ? h->count : rank;
}

/* Index of the bucket that holds the rank-th value (1 <= rank <= count), and the count up to
 * and including it. Only the buckets from the minimum's to the maximum's hold counts; the walk
 * starts from the end nearer to the rank, so a tail percentile costs the few buckets between it
 * and the maximum rather than a scan of the whole array. */
static unsigned bucket_of_rank(const struct hist *h, uint64_t rank, uint64_t *cum_out)
{
	unsigned lo = hist_bucket_index(h->min), hi = hist_bucket_index(h->max), i;
	uint64_t cum = 0;

	if (rank <= h->count / 2) {
		for (i = lo; i < hi; i++) {
			cum += h->counts[i];
			if (cum >= rank) {
				*cum_out = cum;
				return i;
			}
		}
		*cum_out = h->count;
		return hi;
	}
	/* cum = the count of values up to and including bucket i. */
	cum = h->count;
	for (i = hi; i > lo && cum - h->counts[i] >= rank; i--)
		cum -= h->counts[i];
	*cum_out = cum;
	return i;
}

static uint64_t clamp_high(const struct hist *h, unsigned i)
{
	uint64_t v = hist_bucket_high(i);

	if (v > h->max)
		v = h->max;
	if (v < h->min)
		v = h->min;
	return v;
}

uint64_t hist_percentile(const struct hist *h, double pct)
{
	uint64_t cum;

	if (!h->count)
		return 0;
	if (pct <= 0)
		return h->min;
	if (pct >= 100)
		return h->max;
	return clamp_high(h, bucket_of_rank(h, rank_of(h, pct), &cum));
}

int hist_write_hgrm(const struct hist *h, FILE *f, double unit)
{
	/* Percentile levels as HdrHistogram's percentile iterator walks them (5 ticks per halving
	 * distance to 100 %), so the plotter draws the same curve it would for Java's output. */
	const int ticks_per_half = 5;
	double level = 0.0;
	unsigned buckets = TOP_SHIFT + 2;

	fprintf(f, "%12s %14s %10s %14s\n\n", "Value", "Percentile", "TotalCount",
		"1/(1-Percentile)");
	/* The levels close in on 100 % geometrically; the line cap only guards against a level
	 * that stops moving in floating point (counts beyond 10^15). */
	for (int lines = 0; h->count && lines < 2000; lines++) {
		uint64_t cum, last_cum;
		unsigned i = bucket_of_rank(h, rank_of(h, level), &cum);
		double ticks;

		/* The bucket of the maximum is the final 100 % line below. */
		if (level > 0 && i == bucket_of_rank(h, h->count, &last_cum))
			break;
		fprintf(f, "%12.3f %2.12f %10llu %14.2f\n", (double)clamp_high(h, i) / unit,
			level / 100.0, (unsigned long long)cum, 1.0 / (1.0 - level / 100.0));
		ticks = ticks_per_half * pow(2.0, floor(log2(100.0 / (100.0 - level))) + 1);
		level += 100.0 / ticks;
	}
	fprintf(f, "%12.3f %2.12f %10llu\n", (double)h->max / unit, 1.0,
		(unsigned long long)h->count);
	fprintf(f, "#[Mean    = %12.3f, StdDeviation   = %12.3f]\n", hist_mean(h) / unit,
		hist_stdev(h) / unit);
	fprintf(f, "#[Max     = %12.3f, Total count    = %12llu]\n", (double)h->max / unit,
		(unsigned long long)h->count);
	fprintf(f, "#[Buckets = %12u, SubBuckets     = %12u]\n", buckets, SUB_COUNT);
	if (fflush(f) != 0 || ferror(f))
		return -EIO;
	return 0;
}

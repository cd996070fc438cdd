/* A latency histogram in the style of HdrHistogram: log-linear buckets with 3 significant
 * decimal digits, fixed memory, mergeable across threads.
 *
 * Values are recorded in nanoseconds. Values 0..2047 are kept exactly; above that every power of
 * two is split into 1024 equal sub-buckets, so a bucket is never wider than 1/1024 of its lowest
 * value (relative error < 0.1 %, i.e. 3 significant digits). Values above HIST_MAX_NS (about
 * 73 minutes) are counted in the top bucket. Memory is fixed at about 270 KiB per histogram and
 * hist_record() never allocates, so it can be called per message.
 *
 * Minimum, maximum, sum and sum of squares are kept exactly beside the buckets: max, mean and
 * stdev are not subject to bucket rounding.
 *
 * Not thread safe: give each thread its own histogram and hist_merge() them at the end.
 */
#ifndef ECHOBENCH_HIST_H
#define ECHOBENCH_HIST_H

#include <stdint.h>
#include <stdio.h>

#define HIST_SUB_BITS 10                         /* 1024 sub-buckets per power of two */
#define HIST_MAX_BITS 42
#define HIST_MAX_NS ((UINT64_C(1) << HIST_MAX_BITS) - 1)  /* ~4398 s: larger is clamped */
/* Number of buckets (indexes 0 .. HIST_NBUCKETS - 1): 2048 exact ones, then 1024 for each
 * further power of two up to HIST_MAX_NS. */
#define HIST_NBUCKETS ((1u << HIST_SUB_BITS) * (HIST_MAX_BITS - HIST_SUB_BITS + 1))

struct hist;

/* A zeroed histogram, or NULL when out of memory. */
struct hist *hist_new(void);
void hist_free(struct hist *h);
void hist_reset(struct hist *h);

void hist_record(struct hist *h, uint64_t value_ns);
/* Records `count` occurrences of one value (used for merging and for tests). */
void hist_record_n(struct hist *h, uint64_t value_ns, uint64_t count);

/* dst += src. */
void hist_merge(struct hist *dst, const struct hist *src);

/* The value at percentile pct (0..100). Exact definition: x = the value of rank
 * max(1, ceil(pct' * count / 100)) in sorted order, where pct' is pct lowered by one ulp: the
 * rule of HdrHistogram's reference implementation (Java AbstractHistogram.getValueAtPercentile),
 * so that its tools and ours give the same percentile of the same data. (HdrHistogram_c rounds
 * the rank half up instead; we follow Java.) Reported as the highest value of x's bucket (as
 * HdrHistogram does) but never above the exact maximum, so the result r satisfies
 * x <= r <= x + x / 1024. pct <= 0 gives the exact minimum, pct >= 100 the exact maximum, an
 * empty histogram 0. */
uint64_t hist_percentile(const struct hist *h, double pct /* 0..100 */);

uint64_t hist_count(const struct hist *h);
uint64_t hist_min(const struct hist *h);     /* exact; 0 when empty */
uint64_t hist_max(const struct hist *h);     /* exact; 0 when empty */
double hist_mean(const struct hist *h);      /* exact (from the sum); 0 when empty */
double hist_stdev(const struct hist *h);     /* population stdev; 0 when fewer than 2 values */

/* Bucket geometry, exposed for tests and for exporters. */
unsigned hist_bucket_index(uint64_t value_ns);
uint64_t hist_bucket_low(unsigned index);    /* lowest value that maps to index */
uint64_t hist_bucket_high(unsigned index);   /* highest value that maps to index */

/* Exact sum of the recorded values (ns) and sum of their squares (a double: squares of ns
 * overflow 64 bits), as kept beside the buckets; both 0 when empty. */
uint64_t hist_sum(const struct hist *h);
double hist_sumsq(const struct hist *h);

/* Iterating the non-zero buckets (exporters, histio.h): the smallest index >= from whose
 * count is not zero, with that count in *count; HIST_NBUCKETS when there is none.
 *   for (i = hist_next_bucket(h, 0, &n); i < HIST_NBUCKETS; i = hist_next_bucket(h, i + 1, &n))
 */
unsigned hist_next_bucket(const struct hist *h, unsigned from, uint64_t *count);

/* Rebuilding a histogram from its exact parts (histio.h reads them from a file): hist_reset(),
 * hist_add_bucket() for each bucket, then hist_set_exact() once. Between the first add and
 * hist_set_exact() the histogram must not be read.
 * hist_add_bucket: counts[index] += count. -EINVAL for an index >= HIST_NBUCKETS or a zero
 * count, -EOVERFLOW when a count would pass 2^64 - 1. Nothing changes on error.
 * hist_set_exact: sets the exact minimum, maximum, sum and sum of squares after checking them
 * against the buckets: with no count, all must be 0; otherwise min <= max, min in the lowest
 * non-zero bucket, max in the highest, count * min <= sum <= count * max, sumsq finite and
 * >= 0. -EINVAL (nothing changed) when they do not fit. */
int hist_add_bucket(struct hist *h, unsigned index, uint64_t count);
int hist_set_exact(struct hist *h, uint64_t min, uint64_t max, uint64_t sum, double sumsq);

/* Writes the HdrHistogram "percentile distribution" text (the .hgrm format read by
 * HdrHistogram's plotFiles.html), values divided by unit_ns (1000 for microseconds).
 * Returns 0 or -errno (-EIO when the stream failed). */
int hist_write_hgrm(const struct hist *h, FILE *f, double unit_ns);

#endif

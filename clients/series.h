/* The --intervals time series: for each interval of the measured window, how many messages
 * were answered in it and a coarse histogram of their latency, so that a stall or a warm-up
 * trend shows. Coarse on purpose: 32 sub-buckets per power of two (values within about 3 %),
 * 5 KiB per interval, so that thousands of intervals fit where full histograms (270 KiB each)
 * would not. The run's own figures come from the full histograms, never from here.
 *
 * Not thread safe: one series per load thread, series_merge() at the end.
 */
#ifndef ECHOBENCH_SERIES_H
#define ECHOBENCH_SERIES_H

#include <stdint.h>

#define SERIES_MAX_INTERVALS 3600

struct series;

/* ceil(window / interval) intervals (at most SERIES_MAX_INTERVALS), or NULL when out of
 * memory. The last interval may be shorter. */
struct series *series_new(uint64_t window_ns, uint64_t interval_ns);
void series_free(struct series *s);

/* An answer at t_ns after the window's start with latency lat_ns. s may be NULL. */
void series_record(struct series *s, uint64_t t_ns, uint64_t lat_ns);
/* dst += src (same geometry). */
void series_merge(struct series *dst, const struct series *src);

unsigned series_len(const struct series *s);
/* Start and length of interval i, in ns from the window's start. */
uint64_t series_start_ns(const struct series *s, unsigned i);
uint64_t series_span_ns(const struct series *s, unsigned i);
uint64_t series_answers(const struct series *s, unsigned i);
/* Latency at percentile pct of interval i: the value of rank ceil(pct/100 * n) (as
 * HdrHistogram), as the top of its bucket. 0 when the interval has no answer. */
uint64_t series_percentile(const struct series *s, unsigned i, double pct);

#endif

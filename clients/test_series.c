/* Unit test of the --intervals time series: intervals, counts, percentile ranks (ceil, as
 * HdrHistogram), bucket resolution, merging. */
#include <stdint.h>

#include "check.h"
#include "series.h"

int main(void)
{
	/* 2.5 s in 1 s intervals: three, the last half as long. */
	struct series *s = series_new(2500000000u, 1000000000u), *t;

	CHECK(s);
	CHECK_EQ(series_len(s), 3);
	CHECK_EQ(series_span_ns(s, 2), 500000000u);
	CHECK_EQ(series_start_ns(s, 1), 1000000000u);
	/* Interval 0: 100 answers of 1..100 us; p50 is the 50th value, p99 the 99th. */
	for (uint64_t v = 1; v <= 100; v++)
		series_record(s, 10, v * 1000);
	CHECK_EQ(series_answers(s, 0), 100);
	CHECK_EQ(series_answers(s, 1), 0);
	CHECK_EQ(series_percentile(s, 1, 50), 0);
	uint64_t p50 = series_percentile(s, 0, 50), p99 = series_percentile(s, 0, 99);
	CHECK(p50 >= 50000 && p50 <= 50000 + 50000 / 32);
	CHECK(p99 >= 99000 && p99 <= 99000 + 99000 / 32);
	/* Small values are exact; a time past the end lands in the last interval. */
	series_record(s, 1700000000u, 7);
	series_record(s, 9000000000u, 31);
	CHECK_EQ(series_answers(s, 1), 1);
	CHECK_EQ(series_percentile(s, 1, 100), 7);
	CHECK_EQ(series_percentile(s, 2, 50), 31);
	/* Merging adds counts interval by interval. */
	t = series_new(2500000000u, 1000000000u);
	CHECK(t);
	series_record(t, 10, 1000000);
	series_merge(s, t);
	CHECK_EQ(series_answers(s, 0), 101);
	CHECK(series_percentile(s, 0, 100) >= 1000000);
	/* A huge latency is clamped into the top bucket, not lost. */
	series_record(t, 10, UINT64_MAX);
	CHECK_EQ(series_answers(t, 0), 2);
	series_free(s);
	series_free(t);
	return 0;
}

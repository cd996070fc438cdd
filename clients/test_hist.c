/* The histogram against exact percentiles of sorted random data, bucket edges, merging,
 * moments and the .hgrm text. Precision promised by hist.h: exact <= reported <= exact * 1.001
 * (1/1024). */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "hist.h"

#define N 200000

static uint64_t rng_state = 42;

static uint64_t rnd(void)
{
	uint64_t z = (rng_state += UINT64_C(0x9e3779b97f4a7c15));

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

/* Log-uniform over 1 ns .. 10 s: every bucket size gets exercised. */
static uint64_t draw(void)
{
	double u = (double)(rnd() >> 11) / 9007199254740992.0;

	return (uint64_t)exp(u * log(1e10));
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

/* The percentile as HdrHistogram's getValueAtPercentile ranks it (hist.h): rank
 * max(1, ceil(pct' * n / 100)) with pct' one ulp below pct. */
static uint64_t exact(const uint64_t *sorted, size_t n, double pct)
{
	double r = ceil(nextafter(pct, -INFINITY) * (double)n / 100.0);
	uint64_t rank = r < 1 ? 1 : (uint64_t)r;

	if (rank > n)
		rank = n;
	return sorted[rank - 1];
}

static void check_within(uint64_t got, uint64_t want, double pct)
{
	if (got < want || got > want + want / 1024) {
		fprintf(stderr, "p%g: got %llu, exact %llu (allowed %llu..%llu)\n", pct,
			(unsigned long long)got, (unsigned long long)want,
			(unsigned long long)want, (unsigned long long)(want + want / 1024));
		exit(1);
	}
}

static void test_bucket_edges(void)
{
	/* Below 2048 every value has its own bucket. */
	for (uint64_t v = 0; v < 2048; v++) {
		CHECK_EQ(hist_bucket_index(v), v);
		CHECK_EQ(hist_bucket_low((unsigned)v), v);
		CHECK_EQ(hist_bucket_high((unsigned)v), v);
	}
	/* Above: contiguous buckets, each no wider than 1/1024 of its lowest value. */
	for (unsigned i = 2048; hist_bucket_high(i) < HIST_MAX_NS; i++) {
		uint64_t lo = hist_bucket_low(i), hi = hist_bucket_high(i);

		CHECK_EQ(hist_bucket_low(i + 1), hi + 1);
		CHECK_EQ(hist_bucket_index(lo), i);
		CHECK_EQ(hist_bucket_index(hi), i);
		CHECK_EQ(hist_bucket_index(hi + 1), i + 1);
		CHECK(hi - lo + 1 <= lo / 1024 || hi - lo + 1 == 1);
	}
	/* Powers of two and their neighbours. */
	for (int b = 11; b < 42; b++) {
		uint64_t p = UINT64_C(1) << b;

		CHECK_EQ(hist_bucket_low(hist_bucket_index(p)), p);
		CHECK_EQ(hist_bucket_high(hist_bucket_index(p - 1)), p - 1);
	}
	/* Beyond the range: clamped into the top bucket. */
	CHECK_EQ(hist_bucket_index(UINT64_MAX), hist_bucket_index(HIST_MAX_NS));
	CHECK_EQ(hist_bucket_high(hist_bucket_index(HIST_MAX_NS)), HIST_MAX_NS);
}

static void test_percentiles(void)
{
	static const double pcts[] = { 0.001, 0.1, 1, 10, 25, 50, 75, 90, 99, 99.9, 99.99,
		99.999 };
	uint64_t *vals = malloc(N * sizeof(*vals));
	struct hist *h = hist_new();
	double sum = 0, sumsq = 0, mean, sd;

	CHECK(vals && h);
	for (size_t i = 0; i < N; i++) {
		vals[i] = draw();
		hist_record(h, vals[i]);
		sum += (double)vals[i];
	}
	qsort(vals, N, sizeof(*vals), cmp_u64);
	CHECK_EQ(hist_count(h), N);
	CHECK_EQ(hist_min(h), vals[0]);
	CHECK_EQ(hist_max(h), vals[N - 1]);
	CHECK_EQ(hist_percentile(h, 0), vals[0]);
	CHECK_EQ(hist_percentile(h, 100), vals[N - 1]);
	for (size_t i = 0; i < sizeof(pcts) / sizeof(pcts[0]); i++)
		check_within(hist_percentile(h, pcts[i]), exact(vals, N, pcts[i]), pcts[i]);
	/* Every percentile on a fine grid. */
	for (double p = 0.05; p < 100; p += 0.05)
		check_within(hist_percentile(h, p), exact(vals, N, p), p);
	mean = sum / N;
	for (size_t i = 0; i < N; i++)
		sumsq += ((double)vals[i] - mean) * ((double)vals[i] - mean);
	sd = sqrt(sumsq / N);
	CHECK(fabs(hist_mean(h) - mean) <= mean * 1e-9);
	CHECK(fabs(hist_stdev(h) - sd) <= sd * 1e-6);
	free(vals);
	hist_free(h);
}

static void test_small_exact(void)
{
	struct hist *h = hist_new();

	CHECK(h);
	CHECK_EQ(hist_percentile(h, 50), 0);   /* empty */
	CHECK_EQ(hist_count(h), 0);
	for (uint64_t v = 1; v <= 1000; v++)
		hist_record(h, v);
	CHECK_EQ(hist_percentile(h, 50), 500);
	CHECK_EQ(hist_percentile(h, 99), 990);
	CHECK_EQ(hist_percentile(h, 99.9), 999);
	CHECK_EQ(hist_percentile(h, 0.1), 1);
	CHECK(fabs(hist_mean(h) - 500.5) < 1e-9);
	hist_free(h);
}

/* Ranks as HdrHistogram's: ceil, not rounded half up. Values 1..n are kept exactly, so the
 * percentile is the rank itself; the reference rank is computed in integers from percentiles
 * written as num / 10 (no floating point to argue about). With the old rule
 * floor(p * n + 0.5) the first case below gave 2. */
static void test_rank_rule(void)
{
	static const unsigned tenths[] = { 1, 100, 250, 333, 500, 667, 900, 950, 990, 999 };
	struct hist *h = hist_new();

	CHECK(h);
	for (uint64_t v = 1; v <= 21; v++)
		hist_record(h, v);
	CHECK_EQ(hist_percentile(h, 10), 3);      /* 2.1 -> 3 (half up: 2) */
	CHECK_EQ(hist_percentile(h, 50), 11);     /* 10.5 -> 11 */
	CHECK_EQ(hist_percentile(h, 90), 19);     /* 18.9 -> 19 */
	CHECK_EQ(hist_percentile(h, 99), 21);     /* 20.79 -> 21 */
	hist_reset(h);
	for (uint64_t n = 1; n <= 2000; n++) {
		hist_record(h, n);
		for (size_t i = 0; i < sizeof(tenths) / sizeof(tenths[0]); i++) {
			uint64_t num = (uint64_t)tenths[i] * n, den = 1000;
			uint64_t rank = (num + den - 1) / den;

			if (rank < 1)
				rank = 1;
			if (hist_percentile(h, tenths[i] / 10.0) != rank) {
				fprintf(stderr, "n=%llu p%g: got %llu, rank %llu\n",
					(unsigned long long)n, tenths[i] / 10.0,
					(unsigned long long)hist_percentile(h, tenths[i] / 10.0),
					(unsigned long long)rank);
				exit(1);
			}
		}
	}
	hist_free(h);
}

/* Reset clears every count, also after a restore that failed (hist_add_bucket without a valid
 * hist_set_exact); a restore that fits gives back the same histogram. */
static void test_reset_and_restore(void)
{
	struct hist *h = hist_new(), *copy = hist_new();
	uint64_t n;
	unsigned i;

	CHECK(h && copy);
	CHECK_EQ(hist_next_bucket(h, 0, &n), HIST_NBUCKETS);
	hist_record(h, 3);
	hist_record_n(h, 123456789, 4);
	hist_record(h, UINT64_MAX);
	hist_reset(h);
	CHECK_EQ(hist_next_bucket(h, 0, &n), HIST_NBUCKETS);
	CHECK_EQ(hist_count(h), 0);
	CHECK_EQ(hist_max(h), 0);
	CHECK_EQ(hist_percentile(h, 50), 0);

	for (uint64_t v = 5000; v < 5000000; v += v / 3)
		hist_record_n(h, v, v % 5 + 1);
	for (i = hist_next_bucket(h, 0, &n); i < HIST_NBUCKETS; i = hist_next_bucket(h, i + 1, &n))
		CHECK_EQ(hist_add_bucket(copy, i, n), 0);
	CHECK_EQ(hist_add_bucket(copy, HIST_NBUCKETS, 1), -EINVAL);
	CHECK_EQ(hist_add_bucket(copy, 7, 0), -EINVAL);
	CHECK_EQ(hist_add_bucket(copy, 7, UINT64_MAX), -EOVERFLOW);
	/* Extremes outside their buckets, and sums outside count * [min, max], do not fit. */
	CHECK_EQ(hist_set_exact(copy, hist_min(h) - 1, hist_max(h), hist_sum(h), hist_sumsq(h)),
		 -EINVAL);
	CHECK_EQ(hist_set_exact(copy, hist_min(h), hist_max(h) * 2, hist_sum(h), hist_sumsq(h)),
		 -EINVAL);
	CHECK_EQ(hist_set_exact(copy, hist_min(h), hist_max(h), hist_min(h), hist_sumsq(h)),
		 -EINVAL);
	CHECK_EQ(hist_set_exact(copy, hist_min(h), hist_max(h), hist_sum(h), -1.0), -EINVAL);
	CHECK_EQ(hist_set_exact(copy, hist_min(h), hist_max(h), hist_sum(h), hist_sumsq(h)), 0);
	CHECK_EQ(hist_count(copy), hist_count(h));
	CHECK_EQ(hist_min(copy), hist_min(h));
	CHECK_EQ(hist_max(copy), hist_max(h));
	CHECK(hist_stdev(copy) == hist_stdev(h));
	for (double p = 0; p <= 100; p += 0.25)
		CHECK_EQ(hist_percentile(copy, p), hist_percentile(h, p));

	/* A restore abandoned half way: reset still clears it all. */
	hist_reset(copy);
	CHECK_EQ(hist_add_bucket(copy, 5, 1), 0);
	CHECK_EQ(hist_add_bucket(copy, 30000, 2), 0);
	CHECK_EQ(hist_set_exact(copy, 5, 5, 5, 25), -EINVAL);
	hist_reset(copy);
	CHECK_EQ(hist_next_bucket(copy, 0, &n), HIST_NBUCKETS);
	/* Nothing of it is left: values around both of its buckets find only themselves. */
	hist_record(copy, 0);
	hist_record(copy, HIST_MAX_NS);
	i = hist_next_bucket(copy, 0, &n);
	CHECK_EQ(i, 0); CHECK_EQ(n, 1);
	i = hist_next_bucket(copy, i + 1, &n);
	CHECK_EQ(i, HIST_NBUCKETS - 1); CHECK_EQ(n, 1);
	CHECK_EQ(hist_next_bucket(copy, i + 1, &n), HIST_NBUCKETS);
	hist_reset(copy);
	/* An empty one restores only as all zeros. */
	CHECK_EQ(hist_set_exact(copy, 0, 0, 0, 0), 0);
	CHECK_EQ(hist_set_exact(copy, 1, 0, 0, 0), -EINVAL);
	hist_free(h);
	hist_free(copy);
}

static void test_merge(void)
{
	struct hist *all = hist_new(), *parts[3] = { hist_new(), hist_new(), hist_new() };
	struct hist *merged = hist_new();

	CHECK(all && parts[0] && parts[1] && parts[2] && merged);
	for (int i = 0; i < 60000; i++) {
		uint64_t v = draw();
		hist_record(all, v);
		hist_record(parts[i % 3 == 0 ? 0 : (v & 1) + 1], v);
	}
	for (int i = 0; i < 3; i++)
		hist_merge(merged, parts[i]);
	CHECK_EQ(hist_count(merged), hist_count(all));
	CHECK_EQ(hist_min(merged), hist_min(all));
	CHECK_EQ(hist_max(merged), hist_max(all));
	CHECK(fabs(hist_mean(merged) - hist_mean(all)) <= hist_mean(all) * 1e-12);
	CHECK(fabs(hist_stdev(merged) - hist_stdev(all)) <= hist_stdev(all) * 1e-9);
	for (double p = 0; p <= 100; p += 0.5)
		CHECK_EQ(hist_percentile(merged, p), hist_percentile(all, p));
	/* Merging an empty one changes nothing. */
	hist_reset(parts[0]);
	hist_merge(merged, parts[0]);
	CHECK_EQ(hist_count(merged), hist_count(all));
	CHECK_EQ(hist_min(merged), hist_min(all));
	for (int i = 0; i < 3; i++)
		hist_free(parts[i]);
	hist_free(all);
	hist_free(merged);
}

static void test_hgrm(void)
{
	struct hist *h = hist_new();
	FILE *f = tmpfile();
	char line[256];
	double prev_v = -1, prev_p = -1;
	int rows = 0, saw_max = 0;

	CHECK(h && f);
	for (int i = 0; i < 10000; i++)
		hist_record(h, 1000 + (uint64_t)i * 37);
	CHECK_EQ(hist_write_hgrm(h, f, 1000.0), 0);
	rewind(f);
	while (fgets(line, sizeof(line), f)) {
		double v, p, inv;
		unsigned long long count;
		int k = sscanf(line, "%lf %lf %llu %lf", &v, &p, &count, &inv);

		if (k >= 3) {
			CHECK(v >= prev_v && p >= prev_p && p <= 1.0);
			prev_v = v;
			prev_p = p;
			rows++;
		}
		if (strncmp(line, "#[Max", 5) == 0)
			saw_max = 1;
	}
	CHECK(rows > 20);
	CHECK(prev_p == 1.0);
	CHECK(fabs(prev_v - (1000 + 9999 * 37) / 1000.0) < 0.001);
	CHECK(saw_max);
	fclose(f);
	hist_free(h);
}

int main(void)
{
	test_bucket_edges();
	test_small_exact();
	test_rank_rule();
	test_reset_and_restore();
	test_percentiles();
	test_merge();
	test_hgrm();
	puts("hist: ok");
	return 0;
}

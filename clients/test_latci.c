/* latci: coverage of the 95 % percentile interval on samples of known distributions, and the
 * "not resolved" rule.
 *
 * Coverage: TRIALS runs of N samples each, recorded in order into 10 equal blocks, from an
 * exponential and a lognormal distribution whose true quantiles are known in closed form. The
 * interval of p99 (and of p50, p90) must contain the true quantile in 93-97 % of runs. With
 * 1000 runs the standard error of a coverage figure is 0.7 %, so 93-97 % is about 3 standard
 * errors either side of 95 %. Everything is seeded: the verdict does not depend on the machine. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "check.h"
#include "hist.h"
#include "latci.h"
#include "prng.h"

#define TRIALS 1000
#define N 10000
#define B 10

static uint64_t seed = 2024;

/* Uniform in (0, 1): never 0, so log() stays finite. */
static double uniform(void)
{
	return ((double)(prng_next(&seed) >> 11) + 0.5) / 9007199254740992.0;
}

static double normal(void)
{
	/* Box-Muller; one of the pair is enough here. */
	return sqrt(-2 * log(uniform())) * cos(2 * M_PI * uniform());
}

/* Exponential with mean 100 us, and lognormal with median 50 us and sigma 1: latencies in ns. */
#define EXP_MEAN 100000.0
#define LN_MEDIAN 50000.0
#define LN_SIGMA 1.0

static double draw_exp(void) { return -EXP_MEAN * log(uniform()); }
static double draw_lognormal(void) { return LN_MEDIAN * exp(LN_SIGMA * normal()); }
static double true_exp(double pct) { return -EXP_MEAN * log(1 - pct / 100); }

/* The standard normal quantile, by bisection on erfc: exact enough for a test's truth. */
static double z_of(double pct)
{
	double lo = -10, hi = 10;

	for (int i = 0; i < 200; i++) {
		double mid = (lo + hi) / 2;

		if (0.5 * erfc(-mid / sqrt(2)) < pct / 100)
			lo = mid;
		else
			hi = mid;
	}
	return (lo + hi) / 2;
}

static double true_lognormal(double pct) { return LN_MEDIAN * exp(LN_SIGMA * z_of(pct)); }

struct dist {
	const char *name;
	double (*draw)(void);
	double (*truth)(double pct);
};

static const struct dist dists[] = {
	{ "exponential", draw_exp, true_exp },
	{ "lognormal", draw_lognormal, true_lognormal },
};

static const double pcts[] = { 50, 90, 99 };
#define NPCTS (sizeof(pcts) / sizeof(pcts[0]))

static void coverage(const struct dist *d, struct hist *whole, struct hist **blocks,
		     double covered[NPCTS], double width[NPCTS])
{
	unsigned hits[NPCTS] = { 0 };
	double wsum[NPCTS] = { 0 };

	for (int t = 0; t < TRIALS; t++) {
		hist_reset(whole);
		for (int b = 0; b < B; b++)
			hist_reset(blocks[b]);
		for (int i = 0; i < N; i++) {
			uint64_t v = (uint64_t)d->draw();

			hist_record(whole, v);
			hist_record(blocks[i / (N / B)], v);
		}
		for (size_t k = 0; k < NPCTS; k++) {
			struct latci ci;
			double truth = d->truth(pcts[k]);

			CHECK_EQ(latci_compute(whole, (const struct hist *const *)blocks, B,
					       pcts[k], &ci), 0);
			CHECK(ci.resolved);
			CHECK(ci.lo_ns <= ci.value_ns && ci.value_ns <= ci.hi_ns);
			hits[k] += ci.lo_ns <= truth && truth <= ci.hi_ns;
			wsum[k] += (ci.hi_ns - ci.lo_ns) / 2 / truth;
		}
	}
	for (size_t k = 0; k < NPCTS; k++) {
		covered[k] = 100.0 * hits[k] / TRIALS;
		width[k] = 100.0 * wsum[k] / TRIALS;
	}
}

static void test_coverage(void)
{
	struct hist *whole = hist_new(), *blocks[B];

	CHECK(whole);
	for (int b = 0; b < B; b++)
		CHECK((blocks[b] = hist_new()));
	for (size_t i = 0; i < sizeof(dists) / sizeof(dists[0]); i++) {
		double cov[NPCTS], width[NPCTS];

		coverage(&dists[i], whole, blocks, cov, width);
		for (size_t k = 0; k < NPCTS; k++)
			printf("%-11s p%-4g true %8.0f ns: 95%% CI covers it in %5.1f %% of %d runs "
			       "(%d x %d samples), mean half-width %.1f %%\n", dists[i].name,
			       pcts[k], dists[i].truth(pcts[k]), cov[k], TRIALS, B, N / B,
			       width[k]);
		/* p99 and p50 as the issue asks; p90 held to the same range. */
		for (size_t k = 0; k < NPCTS; k++)
			CHECK(cov[k] >= 93.0 && cov[k] <= 97.0);
	}
	for (int b = 0; b < B; b++)
		hist_free(blocks[b]);
	hist_free(whole);
}

static void test_not_resolved(void)
{
	struct hist *whole = hist_new(), *blocks[B];
	struct latci ci;

	CHECK(whole);
	for (int b = 0; b < B; b++)
		CHECK((blocks[b] = hist_new()));
	/* 100 samples: p99.99 (and p99, p90) cannot be resolved; p50 can't either with 10 per
	 * block (5 beyond the median < LATCI_MIN_TAIL). */
	for (int i = 0; i < 100; i++) {
		uint64_t v = (uint64_t)draw_exp();

		hist_record(whole, v);
		hist_record(blocks[i / 10], v);
	}
	CHECK_EQ(latci_compute(whole, (const struct hist *const *)blocks, B, 99.99, &ci), 0);
	CHECK(!ci.resolved);
	CHECK(ci.value_ns == (double)hist_percentile(whole, 99.99));
	CHECK(ci.lo_ns == 0 && ci.hi_ns == 0);
	CHECK_EQ(ci.need_per_block, 100000);
	CHECK_EQ(ci.min_block, 10);
	CHECK_EQ(latci_compute(whole, (const struct hist *const *)blocks, B, 99, &ci), 0);
	CHECK(!ci.resolved);

	/* Exactly at the rule's edge: p99.9 needs 10,000 per block; p99 1,000. */
	for (int b = 0; b < B; b++)
		hist_reset(blocks[b]);
	hist_reset(whole);
	for (int i = 0; i < 10 * 9999; i++) {
		uint64_t v = (uint64_t)draw_exp();

		hist_record(whole, v);
		hist_record(blocks[i % B], v);
	}
	CHECK_EQ(latci_compute(whole, (const struct hist *const *)blocks, B, 99.9, &ci), 0);
	CHECK(!ci.resolved);
	CHECK_EQ(ci.need_per_block, 10000);
	CHECK_EQ(latci_compute(whole, (const struct hist *const *)blocks, B, 99, &ci), 0);
	CHECK(ci.resolved);
	CHECK_EQ(ci.need_per_block, 1000);
	for (int b = 0; b < B; b++)
		hist_record(blocks[b], 1000);
	hist_record_n(whole, 1000, B);
	CHECK_EQ(latci_compute(whole, (const struct hist *const *)blocks, B, 99.9, &ci), 0);
	CHECK(ci.resolved);
	CHECK_EQ(latci_compute(whole, (const struct hist *const *)blocks, B, 0.1, &ci), 0);
	CHECK(ci.resolved);                     /* the low side counts the same way */

	/* One empty block (a stall): nothing is resolved. */
	hist_reset(blocks[3]);
	CHECK_EQ(latci_compute(whole, (const struct hist *const *)blocks, B, 50, &ci), 0);
	CHECK(!ci.resolved);
	CHECK_EQ(ci.min_block, 0);

	/* Bad arguments. */
	CHECK_EQ(latci_compute(whole, (const struct hist *const *)blocks, 1, 50, &ci), -EINVAL);
	CHECK_EQ(latci_compute(whole, (const struct hist *const *)blocks, LATCI_MAX_BLOCKS + 1, 50,
			       &ci), -EINVAL);
	CHECK_EQ(latci_compute(whole, (const struct hist *const *)blocks, B, 0, &ci), -EINVAL);
	CHECK_EQ(latci_compute(whole, (const struct hist *const *)blocks, B, 100, &ci), -EINVAL);
	CHECK_EQ(latci_compute(whole, (const struct hist *const *)blocks, B, NAN, &ci), -EINVAL);
	CHECK_EQ(latci_compute(NULL, (const struct hist *const *)blocks, B, 50, &ci), -EINVAL);
	for (int b = 0; b < B; b++)
		hist_free(blocks[b]);
	hist_free(whole);
}

/* Identical blocks: no spread, so the interval is the bucket of the estimate (the histogram's
 * resolution), and it still contains the estimate. */
static void test_no_spread(void)
{
	struct hist *whole = hist_new(), *blocks[4];
	struct latci ci;

	CHECK(whole);
	for (int b = 0; b < 4; b++) {
		CHECK((blocks[b] = hist_new()));
		for (uint64_t v = 1; v <= 2000; v++)
			hist_record(blocks[b], 1000000 + v * 100);
		hist_merge(whole, blocks[b]);
	}
	CHECK_EQ(latci_compute(whole, (const struct hist *const *)blocks, 4, 50, &ci), 0);
	CHECK(ci.resolved);
	CHECK(ci.hi_ns == ci.value_ns);
	CHECK(ci.lo_ns == (double)hist_bucket_low(hist_bucket_index((uint64_t)ci.value_ns)));
	CHECK(ci.lo_ns < ci.hi_ns);
	for (int b = 0; b < 4; b++)
		hist_free(blocks[b]);
	hist_free(whole);
}

static void test_t975(void)
{
	CHECK(fabs(latci_t975(9) - 2.2622) < 1e-4);
	CHECK(fabs(latci_t975(1) - 12.7062) < 1e-4);
	CHECK(fabs(latci_t975(1000) - 1.96) < 1e-3);
	for (unsigned df = 2; df <= LATCI_MAX_BLOCKS; df++)
		CHECK(latci_t975(df) < latci_t975(df - 1));
}

int main(void)
{
	test_t975();
	test_no_spread();
	test_not_resolved();
	test_coverage();
	puts("latci: ok");
	return 0;
}

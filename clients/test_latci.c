/* latci: coverage of the 95 % percentile interval on samples of known distributions, and the
 * "not resolved" rule.
 *
 * Coverage: TRIALS runs of N samples each, recorded in order into 10 equal blocks, from an
 * exponential and a lognormal distribution whose true quantiles are known in closed form. The
 * interval of p99 (and of p50, p90) must contain the true quantile in 93-97 % of runs. With
 * 1000 runs the standard error of a coverage figure is 0.7 %, so 93-97 % is about 3 standard
 * errors either side of 95 %. Also with dependent samples (an AR(1) process), the case the
 * block method exists for. Everything is seeded: the verdict does not depend on the machine. */
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

/* Box-Muller: a pair of independent normals per two uniforms; the second is kept for the next
 * call. */
static double normal(void)
{
	static double spare;
	static int have_spare;
	double r, a;

	if (have_spare) {
		have_spare = 0;
		return spare;
	}
	r = sqrt(-2 * log(uniform()));
	a = 2 * M_PI * uniform();
	spare = r * sin(a);
	have_spare = 1;
	return r * cos(a);
}

/* Exponential with mean 100 us, and lognormal with median 50 us and sigma 1: latencies in ns. */
#define EXP_MEAN 100000.0
#define LN_MEDIAN 50000.0
#define LN_SIGMA 1.0

static double draw_exp(void) { return -EXP_MEAN * log(uniform()); }
static double draw_lognormal(void) { return LN_MEDIAN * exp(LN_SIGMA * normal()); }

/* Dependent samples with the same lognormal marginal: log-latency is an AR(1) process
 * x' = phi x + sqrt(1 - phi^2) z, so neighbouring samples are alike (slow stretches) over about
 * 1 / (1 - phi) samples. Started from its stationary distribution each run. */
#define AR_PHI 0.9
static double ar_state;

static void ar_start(void) { ar_state = normal(); }
static double draw_ar(void)
{
	ar_state = AR_PHI * ar_state + sqrt(1 - AR_PHI * AR_PHI) * normal();
	return LN_MEDIAN * exp(LN_SIGMA * ar_state);
}
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
	void (*start)(void);
	int trials;
	double cover_min, cover_max;
};

/* Independent samples: 93-97 %. Dependent ones (fewer runs, to keep the test
 * short): the interval must still hold, where one that assumes independence (order statistics
 * of all samples) covered the true p50 in 39 % and the p99 in 59 % of runs in the same
 * simulation (the figures of latci.h). */
static const struct dist dists[] = {
	{ "exponential", draw_exp, true_exp, NULL, TRIALS, 93, 97 },
	{ "lognormal", draw_lognormal, true_lognormal, NULL, TRIALS, 93, 97 },
	{ "ar1-lognorm", draw_ar, true_lognormal, ar_start, 400, 89, 98 },
};

static const double pcts[] = { 50, 90, 99 };
#define NPCTS (sizeof(pcts) / sizeof(pcts[0]))

static void coverage(const struct dist *d, struct hist *whole, struct hist **blocks,
		     double covered[NPCTS], double width[NPCTS], double refused[NPCTS])
{
	unsigned hits[NPCTS] = { 0 }, unresolved[NPCTS] = { 0 };
	double wsum[NPCTS] = { 0 };

	for (int t = 0; t < d->trials; t++) {
		if (d->start)
			d->start();
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
			if (!ci.resolved) {
				/* only the dependence rule may refuse a run of independent
				 * samples; dependent ones may also be bursty */
				CHECK(ci.why == LATCI_DEPENDENT ||
				      (d->start && ci.why == LATCI_BURSTY));
				unresolved[k]++;
				continue;
			}
			CHECK(ci.lo_ns <= ci.value_ns && ci.value_ns <= ci.hi_ns);
			hits[k] += ci.lo_ns <= truth && truth <= ci.hi_ns;
			wsum[k] += (ci.hi_ns - ci.lo_ns) / 2 / truth;
		}
	}
	for (size_t k = 0; k < NPCTS; k++) {
		unsigned n = d->trials - unresolved[k];

		covered[k] = n ? 100.0 * hits[k] / n : 0;
		width[k] = n ? 100.0 * wsum[k] / n : 0;
		refused[k] = 100.0 * unresolved[k] / d->trials;
	}
}

static void test_coverage(void)
{
	struct hist *whole = hist_new(), *blocks[B];

	CHECK(whole);
	for (int b = 0; b < B; b++)
		CHECK((blocks[b] = hist_new()));
	for (size_t i = 0; i < sizeof(dists) / sizeof(dists[0]); i++) {
		double cov[NPCTS], width[NPCTS], refused[NPCTS];

		coverage(&dists[i], whole, blocks, cov, width, refused);
		for (size_t k = 0; k < NPCTS; k++)
			printf("%-11s p%-4g true %8.0f ns: 95%% CI covers it in %5.1f %% of the "
			       "resolved of %d runs (%d x %d samples; %.1f %% unresolved), mean "
			       "half-width %.1f %%\n", dists[i].name, pcts[k], dists[i].truth(pcts[k]),
			       cov[k], dists[i].trials, B, N / B, refused[k], width[k]);
		/* p99 and p50 as the issue asks; p90 held to the same range. The dependence rule
		 * refuses about 5 % of steady runs by design (its one-sided 5 % point). */
		for (size_t k = 0; k < NPCTS; k++) {
			CHECK(cov[k] >= dists[i].cover_min && cov[k] <= dists[i].cover_max);
			CHECK(refused[k] <= 12);
		}
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

/* A 5 ms stall at a random moment of a 1 s window at 100k msgs/s (coordinated omission
 * corrected: a message due during the stall waits for its end), exponential latencies of mean
 * 50 us, 10 blocks of 0.1 s. The long-run p99 of that process (one stall a second) is the
 * truth. Without the burst rules the p99 interval covered it in about half of the runs; with
 * them the run must say unresolved (bursty or dependent) in most, and where it resolves, it
 * must cover. */
#define STALL_RATE 100000
#define STALL_NS 5000000.0
#define STALL_TRIALS 200

static void stall_run(struct hist *whole, struct hist **blocks, double seconds)
{
	double at = uniform() * seconds;   /* the stall's start, s */

	for (long i = 0; i < (long)(seconds * STALL_RATE); i++) {
		double t = (double)i / STALL_RATE, lat = draw_exp();

		if (t >= at && t < at + STALL_NS / 1e9)
			lat += (at + STALL_NS / 1e9 - t) * 1e9;
		hist_record(whole, (uint64_t)lat);
		if (blocks)
			hist_record(blocks[(int)(t / seconds * B)], (uint64_t)lat);
	}
}

static void test_stall_is_not_resolved(void)
{
	struct hist *whole = hist_new(), *blocks[B], *truth_h = hist_new();
	unsigned resolved = 0, covered = 0, bursty = 0, dependent = 0;
	double truth;

	CHECK(whole && truth_h);
	for (int b = 0; b < B; b++)
		CHECK((blocks[b] = hist_new()));
	for (int s = 0; s < 100; s++)            /* 100 s, one stall each second */
		stall_run(truth_h, NULL, 1.0);
	truth = (double)hist_percentile(truth_h, 99);
	for (int t = 0; t < STALL_TRIALS; t++) {
		struct latci ci;

		hist_reset(whole);
		for (int b = 0; b < B; b++)
			hist_reset(blocks[b]);
		stall_run(whole, blocks, 1.0);
		CHECK_EQ(latci_compute(whole, (const struct hist *const *)blocks, B, 99, &ci), 0);
		bursty += ci.why == LATCI_BURSTY;
		dependent += ci.why == LATCI_DEPENDENT;
		if (ci.resolved) {
			resolved++;
			covered += ci.lo_ns <= truth && truth <= ci.hi_ns;
		}
	}
	printf("stall: p99 true %.0f ns; of %d runs %u resolved (%u of them covering it), %u "
	       "bursty, %u dependent\n", truth, STALL_TRIALS, resolved, covered, bursty,
	       dependent);
	CHECK(resolved <= STALL_TRIALS / 4);
	CHECK(covered * 10 >= resolved * 8);
	for (int b = 0; b < B; b++)
		hist_free(blocks[b]);
	hist_free(whole);
	hist_free(truth_h);
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
	test_stall_is_not_resolved();
	puts("latci: ok");
	return 0;
}

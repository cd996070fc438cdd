/* A 95 % confidence interval for a latency percentile, from the variation across time blocks of
 * one run (echo-load's `latency_ci_us`).
 *
 * Why blocks. Latency samples of one run are not independent: a slow stretch of the server (a
 * GC, a noisy neighbour on a shared VM, a timer storm) makes many neighbouring samples slow
 * together. An interval that assumes independence (order statistics of all n samples) was ±3-8 %
 * while repeated identical runs spread far more. So the caller splits the measured window into
 * B equal time blocks (B = 10 is the intended use), records each sample into the block it fell
 * in as well as into the whole-run histogram, and the spread of the per-block percentiles
 * measures how much the run's percentile moves, dependence included, as long as a block is long
 * compared with the stretches of correlated samples.
 *
 * Method: batch quantiles with a Student t interval, centred on the whole run.
 *   q      = the percentile of the whole run (hist_percentile of `whole`)
 *   q_b    = the same percentile of block b, b = 1..B
 *   s      = the sample standard deviation of the q_b
 *   CI     = q -+ t(0.975, B-1) * s / sqrt(B)
 * then widened to contain q's whole histogram bucket (so it is never narrower than the
 * histogram's resolution) and clipped to the run's exact [min, max].
 *   - The spread comes from blocks (batch means), so dependence within a block is accounted
 *     for. The t quantile with B-1 degrees of freedom accounts for estimating s from only B
 *     values.
 *   - It is centred on the whole-run percentile, not on the mean of the q_b: a percentile of
 *     a block of n/B samples is biased (upwards for a tail percentile of a right-skewed
 *     distribution: the p99.9 of 1,000 samples is the 999th of them), and the mean of biased
 *     values stays biased however many blocks there are. The whole-run percentile has 1/B of
 *     that bias, and its variance is close to var(q_b) / B (a sample quantile's variance is
 *     inversely proportional to its sample count), which is what s^2 / B estimates.
 *   - Rejected alternatives. Order statistics of all samples (Lancet's ranks np -+ 1.96
 *     sqrt(np(1-p))) assume independence: the failure this replaces. The range of the B block
 *     percentiles (order statistics across blocks) covers the median of the q_b, which for a
 *     tail percentile is the biased block value, not the run's percentile; and with B = 10 its
 *     only choices near 95 % are 89 % ([3rd, 8th]) and 97.9 % ([2nd, 9th]).
 *   - Measured (test_latci.c, 1000 runs of 10,000 independent samples in 10 blocks of 1,000):
 *     coverage of the true quantile, exponential / lognormal: p50 95.3 / 95.8 %, p90 96.4 /
 *     93.7 %, p99 94.8 / 94.6 % (mean half-widths 3-8 %). With dependent samples (log-latency an
 *     AR(1) process, phi = 0.9, 400 runs): p50 97.0 %, p99 93.8 %, where the independence
 *     interval (order statistics of all samples) covered 39 % and 59 % (1000 runs). A one-off simulation
 *     (not in the tests; 1000-2000 runs each) gave, for p99 of independent samples with k
 *     expected samples beyond it per block: k = 1: 87-89 %, 2: 92 %, 3: 92-93 %, 5: 94 %,
 *     10: 94 %, 20: 94 % (p99.9 alike), which sets LATCI_MIN_TAIL at 10, with margin for
 *     dependence, which thins the tail further. The same simulation centred on the mean of the
 *     block percentiles covered only 63 % (k = 1) to 92 % (k = 20). Its limit: when samples stay
 *     correlated over a good part of a block (AR(1) phi = 0.99, about 100 samples, in blocks of
 *     1,000) p99's coverage fell to 75 % (p50 94 %); the independence interval gave 18 %.
 *
 * Not resolved. A block's percentile means little when the block has few samples beyond it
 * (with fewer than 1, it is just the block's maximum). The percentile is reported as not
 * resolved unless every block has at least LATCI_MIN_TAIL expected samples beyond it on its
 * thinner side: n_b * min(p, 100 - p) / 100 >= LATCI_MIN_TAIL for every block b. Example:
 * p99.99 needs 10,000 * LATCI_MIN_TAIL samples per block; from 2,000 samples in all it is not
 * resolved. An empty block (a stalled window) makes every percentile not resolved: the run
 * cannot say how its percentiles vary.
 *
 * Not resolved either: a bursty tail. The rule above counts samples, not independent events,
 * and one stall supplies all of them (a 5 ms stall at 100k msgs/s is 500 slow samples in one
 * block): the blocks then disagree for a reason the t interval does not model. So the
 * percentile is reported unresolved (bursty) when one block holds more than half of the
 * run's samples beyond it (the exceedances are not spread over the blocks), and unresolved
 * (dependent) when the block percentiles' lag-1 autocorrelation is above LATCI_MAX_LAG1 (one
 * slow stretch spanning neighbouring blocks). Measured (test_latci.c, a 5 ms stall at a random
 * moment of a 1 s window at 100k msgs/s, exponential latencies of mean 50 us, 200 runs): p99 is
 * unresolved (bursty) in 181, and the 19 intervals given all cover the long-run p99; before
 * these rules the interval covered it in 56 % of such runs (a simulation of the same setup). The cost
 * on steady runs: 0.4-1.1 % of runs of independent samples, 0.2-1.2 % of AR(1) ones, are
 * refused by the dependence rule.
 *
 * Blocks should be of equal duration and of roughly equal sample counts (a closed loop at a
 * steady rate, or an open loop); the interval is for the variation of the run at that time
 * scale, not for the variation between runs (a fresh server, another placement), which only
 * repetitions measure. */
#ifndef ECHOBENCH_LATCI_H
#define ECHOBENCH_LATCI_H

#include <stdint.h>

#include "hist.h"

#define LATCI_MAX_BLOCKS 32
#define LATCI_MIN_TAIL 10       /* expected samples beyond the percentile, per block */
/* The block percentiles' lag-1 autocorrelation above which they are called dependent: the
 * one-sided 5 % point of its distribution for independent blocks, 1.645 / sqrt(B), at B = 10
 * (and the same bound for other B, which only makes the rule stricter for more blocks). */
#define LATCI_MAX_LAG1 0.52

enum latci_why {
	LATCI_OK = 0,           /* resolved */
	LATCI_FEW,              /* too few samples beyond it in some block (or an empty block) */
	LATCI_BURSTY,           /* one block holds more than half of the samples beyond it */
	LATCI_DEPENDENT,        /* the block percentiles follow each other (lag-1 correlation) */
};

struct latci {
	int resolved;           /* 1: lo_ns and hi_ns hold the interval */
	enum latci_why why;     /* LATCI_OK when resolved, else why not */
	double lag1;            /* the block percentiles' lag-1 autocorrelation (0 when unknown) */
	double value_ns;        /* the whole run's percentile (0 when `whole` is empty) */
	double lo_ns, hi_ns;    /* the 95 % interval, lo <= value <= hi; 0 when not resolved */
	uint64_t need_per_block; /* samples per block this percentile needs (LATCI_MIN_TAIL rule) */
	uint64_t min_block;     /* the smallest block's sample count */
};

/* The 95 % interval of percentile pct (0 < pct < 100) of `whole`, from nblocks block histograms
 * (2 <= nblocks <= LATCI_MAX_BLOCKS) that together hold the same samples as `whole`. Fills *out
 * and returns 0 (a percentile that is not resolved is not an error: out->resolved is 0), or
 * -EINVAL for a NULL argument, pct outside (0, 100) or nblocks outside the range. */
int latci_compute(const struct hist *whole, const struct hist *const blocks[],
		  unsigned nblocks, double pct, struct latci *out);

/* "unresolved", "unresolved (bursty)" or "unresolved (dependent)": the text of an unresolved
 * percentile in echo-load's outputs. */
const char *latci_unresolved_text(enum latci_why why);

/* Student's t quantile at 0.975 for df degrees of freedom (1 <= df <= LATCI_MAX_BLOCKS - 1;
 * 1.96 beyond, which is what it tends to). Exposed for tests. */
double latci_t975(unsigned df);

#endif

#include "latci.h"

#include <errno.h>
#include <math.h>
#include <string.h>

/* t(0.975, df) for df = 1..31 (scipy.stats.t.ppf, 4 decimals). */
static const double t975[LATCI_MAX_BLOCKS] = {
	0, 12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
	2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
	2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423,
	2.0395,
};

double latci_t975(unsigned df)
{
	if (df == 0)
		return INFINITY;
	return df < LATCI_MAX_BLOCKS ? t975[df] : 1.959964;
}

/* Samples a block needs for n_b * min(p, 100 - p) / 100 >= LATCI_MIN_TAIL. The relative slack
 * absorbs decimal percentiles that are not exact in binary (100 - 99.9 is 0.0999999999999943):
 * p99.9 needs 10,000, not 10,001. */
static uint64_t need_per_block(double pct)
{
	double side = pct < 50 ? pct : 100 - pct;
	double need = LATCI_MIN_TAIL * 100.0 / side;

	return (uint64_t)ceil(need * (1 - 1e-9));
}

const char *latci_unresolved_text(enum latci_why why)
{
	switch (why) {
	case LATCI_BURSTY:
		return "unresolved (bursty)";
	case LATCI_DEPENDENT:
		return "unresolved (dependent)";
	default:
		return "unresolved";
	}
}

/* Samples of h beyond value q on the percentile's thin side: above it for pct >= 50, below it
 * otherwise (whole buckets: q is the top of its bucket). */
static uint64_t beyond(const struct hist *h, double pct, double q)
{
	unsigned qi = hist_bucket_index((uint64_t)q);
	uint64_t n = 0, c;

	for (unsigned i = hist_next_bucket(h, 0, &c); i < HIST_NBUCKETS;
	     i = hist_next_bucket(h, i + 1, &c))
		if (pct >= 50 ? i > qi : i < qi)
			n += c;
	return n;
}

/* Whether one block holds more than half of the whole run's samples beyond q: the tail is one
 * burst, not a property of the run. */
static int concentrated(const struct hist *whole, const struct hist *const blocks[],
			unsigned nblocks, double pct, double q)
{
	uint64_t total = beyond(whole, pct, q);

	for (unsigned b = 0; b < nblocks; b++)
		if (2 * beyond(blocks[b], pct, q) > total && total > 0)
			return 1;
	return 0;
}

/* The lag-1 autocorrelation of x[0..n) (mean and sum of squared deviations given); 0 when they
 * do not vary. */
static double lag1(const double *x, unsigned n, double mean, double m2)
{
	double c = 0;

	if (m2 <= 0)
		return 0;
	for (unsigned b = 0; b + 1 < n; b++)
		c += (x[b] - mean) * (x[b + 1] - mean);
	return c / m2;
}

int latci_compute(const struct hist *whole, const struct hist *const blocks[],
		  unsigned nblocks, double pct, struct latci *out)
{
	double mean = 0, m2 = 0, half, q, bucket_lo, qb[LATCI_MAX_BLOCKS];
	uint64_t min_block = UINT64_MAX;

	if (!whole || !blocks || !out || !(pct > 0 && pct < 100) || nblocks < 2 ||
	    nblocks > LATCI_MAX_BLOCKS)
		return -EINVAL;
	for (unsigned b = 0; b < nblocks; b++) {
		if (!blocks[b])
			return -EINVAL;
		if (hist_count(blocks[b]) < min_block)
			min_block = hist_count(blocks[b]);
	}
	memset(out, 0, sizeof(*out));
	out->need_per_block = need_per_block(pct);
	out->min_block = min_block;
	if (!hist_count(whole))
		return 0;
	q = (double)hist_percentile(whole, pct);
	out->value_ns = q;
	out->why = LATCI_FEW;
	if (min_block < out->need_per_block)
		return 0;
	out->why = LATCI_BURSTY;
	if (concentrated(whole, blocks, nblocks, pct, q))
		return 0;
	/* Welford's running mean and sum of squared deviations: no cancellation for values of
	 * around 1e9 ns with small spreads. */
	for (unsigned b = 0; b < nblocks; b++) {
		qb[b] = (double)hist_percentile(blocks[b], pct);
		double d = qb[b] - mean;

		mean += d / (b + 1);
		m2 += d * (qb[b] - mean);
	}
	out->lag1 = lag1(qb, nblocks, mean, m2);
	out->why = LATCI_DEPENDENT;
	if (out->lag1 > LATCI_MAX_LAG1)
		return 0;
	out->why = LATCI_OK;
	half = latci_t975(nblocks - 1) * sqrt(m2 / (nblocks - 1)) / sqrt((double)nblocks);
	/* q is the highest value of its bucket (hist.h): anything in that bucket is as likely. */
	bucket_lo = (double)hist_bucket_low(hist_bucket_index((uint64_t)q));
	out->lo_ns = fmin(q - half, bucket_lo);
	out->hi_ns = q + half;
	out->lo_ns = fmax(out->lo_ns, (double)hist_min(whole));
	out->hi_ns = fmin(out->hi_ns, (double)hist_max(whole));
	out->resolved = 1;
	return 0;
}

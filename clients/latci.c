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

int latci_compute(const struct hist *whole, const struct hist *const blocks[],
		  unsigned nblocks, double pct, struct latci *out)
{
	double mean = 0, m2 = 0, half, q, bucket_lo;
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
	if (min_block < out->need_per_block)
		return 0;
	/* Welford's running mean and sum of squared deviations: no cancellation for values of
	 * around 1e9 ns with small spreads. */
	for (unsigned b = 0; b < nblocks; b++) {
		double x = (double)hist_percentile(blocks[b], pct), d = x - mean;

		mean += d / (b + 1);
		m2 += d * (x - mean);
	}
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

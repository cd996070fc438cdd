"""Persistent shifts in a results history: E-divisive means (Matteson and James 2014, the
method MongoDB's signal-processing-algorithms and Apache Otava/Hunter run over benchmark
histories), with a permutation test for significance and a minimum effect.

The series is one figure per run (the median of the run's valid repetitions), oldest first.
Why per run and not per repetition: the repetitions of one run share that run's shift (on a
shared VM a cell moves 1.5x between back-to-back runs), so they are not independent draws and
a test that counted them as such would call run-to-run noise a change. Distances are taken on
log(value), so a shift is relative: 10 % is the same distance at 1k and 1M msgs/s.

The method, as implemented here (docs/RESULTS.md "History" has the measured error rates):
- Divergence: for X = Z[s:tau] and Y = Z[tau:kappa], q = (n_x n_y / (n_x + n_y)) *
  (2 mean|X-Y| - mean|X-X'| - mean|Y-Y'|), the energy distance with alpha = 1, scaled so
  that a split supported by more points weighs more; each side holds at least `min_size`
  points.
- Candidates (binary segmentation): the split tau with the largest q over every tau and end
  kappa (Matteson and James) of every current segment; it is kept when a permutation test
  (below) over every current segment gives p <= WEAK_ALPHA (0.1), and the search repeats on
  the new segments, else it stops. Letting Y end before the segment does finds a slowdown
  that was fixed a few runs later, which a split against the whole rest dilutes.
- Confirmation (Hunter's weak change points): each candidate is tested on the segment
  between its neighbours, with Y running to that segment's end (kappa fixed: the most power
  for a persistent shift); the weakest one failing p <= alpha is dropped and the rest tested
  again, until all hold. Its p-value is that test's.
- Permutation test: the values inside each segment are shuffled, the statistic maximised
  again, `permutations` times; p = (1 + #{q_perm >= q_obs}) / (1 + permutations). The
  shuffles come from numpy's PCG64 seeded with `seed`: the same series and seed give the
  same answer.
- Minimum effect: for each change point, size = median(after) / median(before) - 1 over the
  two segments around it (bounded by its neighbours). While the smallest |size| is below
  `min_effect`, that change point is dropped and its neighbours' sizes recomputed.
- Interval of the size: a percentile bootstrap of the ratio of the two segments' medians
  (stats.ratio_ci: both sides resampled independently, 2000 times, seeded).

Measured (the histories of scripts/changepoint_check.py, 200 each): with candidates from
Y-to-the-end splits only, a 10 % slowdown fixed 6 runs later in 3 % run-to-run noise was found
whole in 24 % of histories, against 86 % with kappa; persistent slowdowns were found as often
either way (10 % in 5 % noise: 78 % both). Searching kappa costs about 4 times the CPU: about
0.1 s for a 30-run series, 2.5 s for 300 runs.
"""
import dataclasses
import math

import numpy as np

from . import stats

DEFAULT_ALPHA = 0.01
DEFAULT_PERMUTATIONS = 199          # p can reach 1/200 = 0.005
DEFAULT_MIN_EFFECT = 0.02
DEFAULT_MIN_SIZE = 3
DEFAULT_SEED = stats.BOOTSTRAP_SEED
# Candidates are found at this looser level, then each must hold at alpha on the segment
# between its neighbours: a first split that a later change dilutes would otherwise stop the
# search before it reaches that change.
WEAK_ALPHA = 0.1
CONF = 0.95
# Permutations computed together: each takes an m x m distance matrix, so a batch is bounded
# in elements (memory), not in count.
_BATCH_ELEMENTS = 1 << 21


@dataclasses.dataclass
class Change:
    """A change point: `index` is the first point after the change (0-based, into the series
    given), `label` that point's label (its commit). size = median(after)/median(before) - 1
    over the segments on either side, [size_lo, size_hi] its 95 % bootstrap interval, p_value
    that of the permutation test when it was found."""
    index: int
    label: object
    size: float
    size_lo: float
    size_hi: float
    p_value: float
    before_median: float
    after_median: float
    before_n: int
    after_n: int

    def direction(self, higher_is_better):
        """'regression', 'improvement', or 'shift' when the metric has no direction."""
        if higher_is_better is None:
            return "shift"
        worse = self.size < 0 if higher_is_better else self.size > 0
        return "regression" if worse else "improvement"

    def as_dict(self):
        return dataclasses.asdict(self)


def _qhat(x, min_size):
    """q(tau) of every split of the rows of x (shape (R, m): R series of one segment) ->
    array (R, m + 1), -inf where a side would hold fewer than min_size points."""
    r, m = x.shape
    out = np.full((r, m + 1), -np.inf)
    lo, hi = max(min_size, 2), m - max(min_size, 2)
    if hi < lo:
        return out
    d = np.abs(x[:, :, None] - x[:, None, :])
    # Row sums of d, whole and below the diagonal: every block sum below is a prefix sum of
    # them (d is symmetric with a zero diagonal), so no 2-D prefix sum is needed.
    full = np.zeros((r, m + 1))
    full[:, 1:] = d.sum(axis=2).cumsum(axis=1)
    lower = np.zeros((r, m + 1))
    lower[:, 1:] = (d * np.tri(m, m, -1)).sum(axis=2).cumsum(axis=1)
    tau = np.arange(lo, hi + 1)
    n_x, n_y = tau.astype(float), (m - tau).astype(float)
    within_x = lower[:, tau]                        # pairs i < j < tau
    between = full[:, tau] - 2.0 * within_x         # i < tau <= j
    within_y = full[:, m][:, None] / 2.0 - within_x - between
    e = (2.0 * between / (n_x * n_y) - within_x / (n_x * (n_x - 1) / 2.0)
         - within_y / (n_y * (n_y - 1) / 2.0))
    out[:, lo:hi + 1] = n_x * n_y / m * e
    return out


def _qhat_ends(x, min_size):
    """The largest q(tau, kappa) of every row of x over every split tau and every end kappa
    of the second side (Matteson and James) -> (q, tau), two arrays of R."""
    r, m = x.shape
    k = max(min_size, 2)
    if m < 2 * k:
        return np.full(r, -np.inf), np.zeros(r, dtype=int)
    d = np.abs(x[:, :, None] - x[:, None, :])
    # p[:, a, b] = sum of d[:, :a, :b]: pairs within [0, tau) = p[tau, tau] / 2, between
    # [0, tau) and [tau, kappa) = p[tau, kappa] - p[tau, tau], within [tau, kappa) = the
    # rest of the square [0, kappa) (d is symmetric with a zero diagonal).
    p = np.zeros((r, m + 1, m + 1))
    p[:, 1:, 1:] = d.cumsum(axis=1).cumsum(axis=2)
    diag = p[:, np.arange(m + 1), np.arange(m + 1)]
    n_x = np.arange(m + 1, dtype=float)[:, None]
    n_y = np.arange(m + 1, dtype=float)[None, :] - n_x
    ok = (n_x >= k) & (n_y >= k)
    nx, ny = np.where(ok, n_x, 2.0), np.where(ok, n_y, 2.0)
    between = p - diag[:, :, None]
    within_y = (diag[:, None, :] - 2.0 * p + diag[:, :, None]) / 2.0
    e = (2.0 * between / (nx * ny) - diag[:, :, None] / (nx * (nx - 1))
         - within_y / (ny * (ny - 1) / 2.0))
    q = np.where(ok, nx * ny / (nx + ny) * e, -np.inf).reshape(r, -1)
    best = q.argmax(axis=1)
    return q[np.arange(r), best], best // (m + 1)


def _stat(x, min_size, ends):
    """(largest q, its tau) of each row of x: Y to the segment's end, or (ends) any end."""
    if ends:
        return _qhat_ends(x, min_size)
    q = _qhat(x, min_size)
    best = q.argmax(axis=1)
    return q[np.arange(len(q)), best], best


def _best(z, bounds, min_size, ends):
    """(q, tau) of the best split over the segments [bounds[i], bounds[i+1]), or None."""
    best = None
    for s, e in zip(bounds, bounds[1:]):
        q, tau = _stat(z[None, s:e], min_size, ends)
        if np.isfinite(q[0]) and (best is None or q[0] > best[0]):
            best = (float(q[0]), s + int(tau[0]))
    return best


def _permutation_p(z, bounds, q_obs, min_size, permutations, alpha, rng, ends=False):
    """p of the permutation test, or None once it is certain to exceed alpha (the remaining
    shuffles cannot bring it back: stopping early saves time and changes no decision)."""
    limit = alpha * (permutations + 1) - 1      # more exceedances than this: p > alpha
    exceed, done = 0, 0
    segs = [(s, e) for s, e in zip(bounds, bounds[1:]) if e - s >= 2 * max(min_size, 2)]
    longest = max(e - s for s, e in segs)
    batch = max(1, _BATCH_ELEMENTS // (longest * longest))
    while done < permutations:
        k = min(batch, permutations - done)
        top = np.full(k, -np.inf)
        for s, e in segs:
            x = np.tile(z[s:e], (k, 1))
            x = rng.permuted(x, axis=1)
            top = np.maximum(top, _stat(x, min_size, ends)[0])
        exceed += int(np.count_nonzero(top >= q_obs * (1 - 1e-12)))
        done += k
        if exceed > limit:
            return None
    return (1 + exceed) / (1 + permutations)


def _size(values, s, t, e, seed):
    """(size, lo, hi, median before, median after) of a change at t between [s, t) and
    [t, e)."""
    before, after = values[s:t], values[t:e]
    ratio, lo, hi = stats.ratio_ci(after, before, CONF, seed=seed)
    return ratio - 1.0, lo - 1.0, hi - 1.0, float(np.median(before)), float(np.median(after))


def detect(values, labels=None, alpha=DEFAULT_ALPHA, permutations=DEFAULT_PERMUTATIONS,
           min_effect=DEFAULT_MIN_EFFECT, min_size=DEFAULT_MIN_SIZE, seed=DEFAULT_SEED):
    """The change points of `values` (one positive figure per run, oldest first) ->
    [Change] ordered by index. labels: one per value (commits), copied into each Change."""
    vals = [float(v) for v in values]
    if any(not (math.isfinite(v) and v > 0) for v in vals):
        raise ValueError("change points need positive finite values")
    if labels is not None and len(labels) != len(vals):
        raise ValueError("one label per value")
    if not 0 < alpha < 1 or permutations < 1 or min_size < 1 or min_effect < 0:
        raise ValueError("alpha in (0, 1), permutations >= 1, min_size >= 1, min_effect >= 0")
    z = np.log(np.array(vals))
    rng = np.random.Generator(np.random.PCG64(seed))
    weak = _segment(z, max(alpha, WEAK_ALPHA), min_size, permutations, rng, True)
    found = _confirm(z, weak, alpha, min_size, permutations, rng)
    return _with_effects(vals, labels, found, min_effect, seed)


def _segment(z, alpha, min_size, permutations, rng, ends):
    """Binary segmentation: split where q is largest while the split is significant at alpha
    against shuffles of every current segment -> sorted indexes."""
    found = []
    while True:
        bounds = [0] + found + [len(z)]
        best = _best(z, bounds, min_size, ends)
        if best is None or best[0] <= 0:
            return found
        p = _permutation_p(z, bounds, best[0], min_size, permutations, alpha, rng, ends)
        if p is None or p > alpha:
            return found
        found = sorted(found + [best[1]])


def _confirm(z, idx, alpha, min_size, permutations, rng):
    """The weak change points that hold at alpha, each tested on the segment between its
    neighbours (its q there against shuffles of that segment). The weakest that fails is
    dropped and the rest tested again, until all hold -> {index: p}."""
    idx = list(idx)
    while idx:
        bounds = [0] + idx + [len(z)]
        q = [_qhat(z[None, bounds[i]:bounds[i + 2]], min_size)[0][t - bounds[i]]
             for i, t in enumerate(idx)]
        held = {}
        for i in sorted(range(len(idx)), key=lambda j: (q[j], idx[j])):
            p = _permutation_p(z, [bounds[i], bounds[i + 2]], q[i], min_size, permutations,
                               alpha, rng) if q[i] > 0 else None
            if p is None or p > alpha:
                del idx[i]
                break
            held[idx[i]] = p
        else:
            return held
    return {}


def _with_effects(vals, labels, found, min_effect, seed):
    """Changes with their sizes, after dropping (smallest first) those below min_effect."""
    idx = sorted(found)
    while True:
        bounds = [0] + idx + [len(vals)]
        sizes = [_size(vals, bounds[i], bounds[i + 1], bounds[i + 2], seed)
                 for i in range(len(idx))]
        small = [(abs(sz[0]), i) for i, sz in enumerate(sizes) if abs(sz[0]) < min_effect]
        if not small:
            break
        del idx[min(small)[1]]
    bounds = [0] + idx + [len(vals)]
    return [Change(index=t, label=labels[t] if labels is not None else None,
                   size=sz[0], size_lo=sz[1], size_hi=sz[2], p_value=found[t],
                   before_median=sz[3], after_median=sz[4],
                   before_n=t - bounds[i], after_n=bounds[i + 2] - t)
            for i, (t, sz) in enumerate(zip(idx, sizes))]


def segments(n, changes):
    """[(start, end)] of the segments that `changes` cut a series of n points into."""
    b = [0] + sorted(c.index for c in changes) + [n]
    return list(zip(b, b[1:]))


def pooled_log_sd(values, changes):
    """(sd, df): the standard deviation of log(value) about each segment's mean, pooled over
    the segments (df = points - segments); (None, df) when df < 2. A past change point does
    not inflate it: that is the run-to-run spread of a history that had shifts."""
    z = np.log(np.array([float(v) for v in values]))
    ss, df = 0.0, 0
    for s, e in segments(len(z), changes):
        seg = z[s:e]
        ss += float(((seg - seg.mean()) ** 2).sum())
        df += len(seg) - 1
    if df < 2:
        return None, df
    return math.sqrt(ss / df), df

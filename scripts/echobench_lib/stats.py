"""How far a figure measured over a few repetitions can be trusted: confidence intervals of a
median and of a ratio of medians, an exact one-sided Mann-Whitney test, and the rule that names
the winner of a cell. Stdlib, and numpy for the bootstrap (which scipy and matplotlib bring);
pure functions (the
bootstrap uses its own seeded PRNG, so the same numbers always give the same interval).
docs/RESULTS.md "Statistics" says the same in prose.

Why these methods: repetitions of a benchmark cell are few (3 to 10), not normal (a shared VM
gives long tails: 83.7k, 122.4k, 123.0k msgs/s for one cell), so every method here is
distribution-free and exact for small samples.
"""
import itertools
import math
import statistics

TIE = "tie (within noise)"
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 20250101
_EPS = 1e-12  # p-values are sums of fractions: 1/20 must count as <= 0.05


def _binom_cdf_half(k, n):
    """P(X <= k) for X ~ Binomial(n, 1/2)."""
    if k < 0:
        return 0.0
    return sum(math.comb(n, i) for i in range(0, min(k, n) + 1)) / 2.0 ** n


def median_ci_coverage(n, conf=0.95):
    """(k, coverage): the order-statistics interval [x_(k), x_(n+1-k)] (1-based, sorted) chosen
    for n values, and its exact coverage of the true median. k is the largest index whose
    interval still covers with probability >= conf; when even (min, max) cannot (n < 6 at 95 %),
    k = 1 and coverage is that of (min, max), below conf."""
    if n < 1:
        raise ValueError("no values")
    best = 1
    for k in range(1, n // 2 + 1):
        # P(x_(k) <= median <= x_(n+1-k)) = 1 - 2 P(Bin(n, 1/2) <= k-1)
        if 1.0 - 2.0 * _binom_cdf_half(k - 1, n) >= conf - _EPS:
            best = k
        else:
            break
    return best, max(0.0, 1.0 - 2.0 * _binom_cdf_half(best - 1, n))


def ci_level_reachable(n, conf=0.95):
    """Whether n repetitions can give a distribution-free `conf` interval of the median at all
    (95 %: n >= 6; with fewer, median_ci returns (min, max), which covers less)."""
    return n >= 1 and median_ci_coverage(n, conf)[1] >= conf - _EPS


def median_ci(xs, conf=0.95):
    """(median, lo, hi): the sample median and a distribution-free confidence interval of the
    true median from order statistics (binomial). Below the n that can reach `conf`
    (ci_level_reachable), lo/hi are the min and max: the widest interval the data have, with the
    lower coverage that median_ci_coverage reports. One value: (x, x, x)."""
    s = sorted(float(x) for x in xs)
    if not s:
        raise ValueError("median_ci of no values")
    n = len(s)
    k, _ = median_ci_coverage(n, conf)
    return statistics.median(s), s[k - 1], s[n - k]


def ratio_ci(a, b, conf=0.95, resamples=BOOTSTRAP_RESAMPLES, seed=BOOTSTRAP_SEED):
    """(ratio, lo, hi): median(a) / median(b) and a percentile-bootstrap confidence interval
    (a and b resampled independently, `resamples` times, with a fixed seed so that a report is
    reproducible). With very few values the bootstrap distribution is coarse and the interval
    is as wide as the values allow (3 vs 3: about min(a)/max(b) .. max(a)/min(b)).
    Raises ValueError when median(b) is 0 or either side is empty."""
    a, b = [float(x) for x in a], [float(x) for x in b]
    if not a or not b:
        raise ValueError("ratio_ci needs values on both sides")
    mb = statistics.median(b)
    if mb == 0:
        raise ValueError("ratio_ci: median of the denominator is 0")
    ratio = statistics.median(a) / mb
    if len(a) == 1 and len(b) == 1:
        return ratio, ratio, ratio
    import numpy as np          # only here: `echobench check` must start fast
    rng = np.random.default_rng(seed)
    av, bv = np.array(a), np.array(b)
    ma = np.median(av[rng.integers(0, len(a), (resamples, len(a)))], axis=1)
    mbb = np.median(bv[rng.integers(0, len(b), (resamples, len(b)))], axis=1)
    keep = mbb != 0
    ra = ma[keep] / mbb[keep]
    alpha = (1.0 - conf) / 2.0
    lo, hi = (float(x) for x in np.quantile(ra, [alpha, 1.0 - alpha], method="inverted_cdf"))
    return ratio, min(lo, ratio), max(hi, ratio)


def _u_stat(a, b):
    """Mann-Whitney U of a against b: pairs with a > b, ties counting one half."""
    u = 0.0
    for x in a:
        for y in b:
            u += 1.0 if x > y else (0.5 if x == y else 0.0)
    return u


def _u_counts(m, n):
    """counts[u] = number of the C(m+n, m) arrangements (no ties) whose U equals u."""
    # f[i][j] = distribution for i values against j; f(i,j,u) = f(i-1,j,u-j) + f(i,j-1,u)
    prev_row = [[1] for _ in range(n + 1)]  # i = 0: U is always 0
    for i in range(1, m + 1):
        row = [[1]]  # j = 0: U is always 0
        for j in range(1, n + 1):
            size = i * j + 1
            c = [0] * size
            left = prev_row[j]     # i-1 values vs j, shifted by j (the new largest wins all j)
            for u, cnt in enumerate(left):
                c[u + j] += cnt
            down = row[j - 1]      # i values vs j-1 (the new largest is a b value)
            for u, cnt in enumerate(down):
                c[u] += cnt
            row.append(c)
        prev_row = row
    return prev_row[n]


_EXACT_TIES_LIMIT = 20000  # C(m+n, m) up to this: enumerate every split when values tie


def mann_whitney_one_sided(a, b, alternative="greater"):
    """One-sided Mann-Whitney U test p-value. alternative 'greater': a's values tend to lie above
    b's; 'less': below. Exact for small samples: without ties from the exact null distribution
    of U; with ties by enumerating every split of the pooled values when that is at most 20,000
    splits; otherwise the normal approximation with tie and continuity correction."""
    a, b = [float(x) for x in a], [float(x) for x in b]
    if alternative not in ("greater", "less"):
        raise ValueError("alternative must be 'greater' or 'less'")
    m, n = len(a), len(b)
    if m == 0 or n == 0:
        raise ValueError("mann_whitney_one_sided needs values on both sides")
    u = _u_stat(a, b)
    pooled = a + b
    ties = len(set(pooled)) < len(pooled)
    total = math.comb(m + n, m)
    if not ties and m * n <= 2500:
        counts = _u_counts(m, n)
        # U is an integer here
        ui = int(round(u))
        tail = sum(counts[ui:]) if alternative == "greater" else sum(counts[:ui + 1])
        return min(1.0, tail / total)
    if ties and total <= _EXACT_TIES_LIMIT:
        hits = 0
        idx = range(m + n)
        for comb in itertools.combinations(idx, m):
            sel = set(comb)
            ua = _u_stat([pooled[i] for i in comb], [pooled[i] for i in idx if i not in sel])
            if (ua >= u - 1e-9) if alternative == "greater" else (ua <= u + 1e-9):
                hits += 1
        return min(1.0, hits / total)
    # Normal approximation with tie correction.
    N = m + n
    groups = {}
    for x in pooled:
        groups[x] = groups.get(x, 0) + 1
    tie_term = sum(t ** 3 - t for t in groups.values())
    var = m * n / 12.0 * ((N + 1) - tie_term / (N * (N - 1)))
    if var <= 0:
        return 1.0
    mu = m * n / 2.0
    d = (u - mu - 0.5) if alternative == "greater" else (mu - u - 0.5)
    z = d / math.sqrt(var)
    return min(1.0, 0.5 * math.erfc(z / math.sqrt(2.0)))


def smallest_p(m, n):
    """The smallest one-sided p a Mann-Whitney test of m against n values can give (1/C(m+n, m):
    every value of one side beyond every value of the other)."""
    if m < 1 or n < 1:
        return 1.0
    return 1.0 / math.comb(m + n, m)


def smallest_attainable_p(a, b):
    """The smallest one-sided Mann-Whitney p these values could give, ties counted: p of the
    most extreme arrangement of the pooled values (a takes the largest). Values that all tie
    can give no evidence at all (p = 1)."""
    pooled = sorted(float(x) for x in list(a) + list(b))
    m = len(a)
    if m == 0 or m == len(pooled):
        return 1.0
    return mann_whitney_one_sided(pooled[-m:], pooled[:-m], "greater")


def can_test(m, n, alpha=0.05):
    """Whether m against n repetitions can reach p <= alpha at all."""
    return smallest_p(m, n) <= alpha + _EPS


def min_reps_to_test(alpha=0.05, other=None):
    """The smallest number of repetitions per side with which a one-sided Mann-Whitney test can
    reach p <= alpha (alpha 0.05: 3, since 2 vs 2 gives at best 1/6 and 3 vs 3 gives 1/20).
    With `other` given, the other side is fixed at that many: the smallest count for this side
    (a 1-repetition base needs 19 on the new side at 0.05). None when it cannot be reached."""
    if not 0 < alpha < 1:
        raise ValueError("alpha must be in (0, 1)")
    if other is not None:
        if other < 1:
            return None
        for k in range(1, 10000):
            if can_test(other, k, alpha):
                return k
        return None
    for k in range(1, 10000):
        if can_test(k, k, alpha):
            return k
    return None


def decide_winner(groups, higher_is_better, alpha=0.05, min_effect=0.05, conf=0.95,
                  direction_chosen=True):
    """Which entry of a cell is best, only when the data say so.

    groups: {name: [value per repetition]} (invalid or empty entries already left out).
    The leader is the entry with the best median, the runner-up the next best. The leader is
    the winner only when a one-sided Mann-Whitney test of leader against runner-up is
    significant AND the effect (margin - 1) is >= min_effect: the rule of `compare`.

    Significant means p <= alpha / 2 when direction_chosen (the default), p <= alpha otherwise.
    Why: `compare` fixes the direction it fails on before looking (a regression), so its
    one-sided p is honest at alpha. Here the leader is picked after looking at the medians, so
    either entry can "win"; testing the picked direction at alpha names a false winner in about
    2 alpha of identical pairs (measured: 9 % of A/A cells at 3-5 repetitions and 10 % noise).
    Halving alpha keeps false winners at alpha or less; it needs 4 repetitions per entry at
    alpha 0.05 (1/70 <= 0.025), 5 or more to find real but modest differences.

    margin = median(leader) / median(runner-up) when higher is better, the inverse when lower
    is better, so that margin >= 1 always reads "times better"; margin_lo/hi is its bootstrap
    interval (ratio_ci). Returns a dict: winner (name or None), label (the winner's name or
    'tie (within noise)'), leader, runner_up, margin, margin_lo, margin_hi, p_value (one-sided),
    alpha_used, testable (whether the repetitions can reach alpha_used at all), min_reps (per
    entry, to test), reason (one line when there is no winner)."""
    a_used = alpha / 2.0 if direction_chosen else alpha
    g = {k: [float(x) for x in v] for k, v in groups.items() if v}
    out = {"winner": None, "label": TIE, "leader": None, "runner_up": None, "margin": None,
           "margin_lo": None, "margin_hi": None, "p_value": None, "alpha_used": a_used,
           "testable": False, "min_reps": min_reps_to_test(a_used), "reason": None}
    if len(g) < 2:
        out["label"] = "-"
        out["leader"] = next(iter(g), None)
        out["reason"] = "fewer than two entries to compare"
        return out
    sign = 1.0 if higher_is_better else -1.0
    ranked = sorted(g, key=lambda k: (-sign * statistics.median(g[k]), k))
    lead, run = ranked[0], ranked[1]
    out["leader"], out["runner_up"] = lead, run
    a, b = g[lead], g[run]
    try:
        margin, lo, hi = ratio_ci(a, b, conf) if higher_is_better else ratio_ci(b, a, conf)
    except ValueError:
        margin = lo = hi = None
    out["margin"], out["margin_lo"], out["margin_hi"] = margin, lo, hi
    out["testable"] = can_test(len(a), len(b), a_used)
    if statistics.median(a) == statistics.median(b):
        out["p_value"] = 1.0
    else:
        out["p_value"] = mann_whitney_one_sided(a, b, "greater" if higher_is_better else "less")
    effect = (margin - 1.0) if margin is not None else 0.0
    if not out["testable"]:
        out["reason"] = (f"{len(a)} vs {len(b)} repetitions cannot reach p <= {a_used:g}; "
                         f"needs {out['min_reps']} per entry")
    elif effect < min_effect:
        out["reason"] = f"difference {effect:.1%} below the minimum effect {min_effect:.0%}"
    elif out["p_value"] > a_used + _EPS:
        out["reason"] = (f"not significant (one-sided Mann-Whitney p = {out['p_value']:.3f} > "
                         f"{a_used:g})")
    else:
        out["winner"], out["label"] = lead, lead
    return out


# ---- paired design ------------------------------------------------------------------------
# In a paired run every entry of a cell is measured once per round, the entries one after the
# other in a balanced order (balanced_order), so that each round gives one pair (entry,
# reference) measured in the same second or two. The test is on the per-round log ratios:
# drift of the machine that moves both sides of a pair cancels out. Wilcoxon's signed-rank
# test and the Hodges-Lehmann interval are distribution-free for symmetric differences (which
# a randomised, balanced order gives under "no difference"), and exact here.

def balanced_order(names, r):
    """The order in which round r measures `names`: rotated by r // 2 and reversed in every
    odd round, so that with two entries the rounds go AB BA BA AB ... and each entry is first
    as often as last (a drift within a round favours neither)."""
    names = list(names)
    if not names:
        return names
    k = (r // 2) % len(names)
    order = names[k:] + names[:k]
    return order[::-1] if r % 2 else order


def _signed_rank_counts(ranks2):
    """counts[w] = number of the 2^n sign assignments whose positive doubled-rank sum is w
    (ranks2: doubled ranks, integers, so that midranks of ties stay exact)."""
    total = sum(ranks2)
    counts = [0] * (total + 1)
    counts[0] = 1
    hi = 0
    for r in ranks2:
        for w in range(hi, -1, -1):
            if counts[w]:
                counts[w + r] += counts[w]
        hi += r
    return counts


def _ranks2(absd):
    """Doubled midranks of absd (1-based)."""
    order = sorted(range(len(absd)), key=lambda i: absd[i])
    r2 = [0] * len(absd)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and absd[order[j + 1]] == absd[order[i]]:
            j += 1
        for k in range(i, j + 1):
            r2[order[k]] = i + j + 2          # 2 x the mean of ranks i+1 .. j+1
        i = j + 1
    return r2


def signed_rank_p(d, alternative="two-sided"):
    """p of Wilcoxon's signed-rank test that the differences d are centred on 0 (zeros
    dropped; exact, ties by midranks): two-sided, or one-sided 'greater' (d tends above 0) or
    'less'. 1.0 when nothing is left."""
    d = [float(x) for x in d if x != 0]
    n = len(d)
    if n == 0:
        return 1.0
    r2 = _ranks2([abs(x) for x in d])
    w = sum(r for r, x in zip(r2, d) if x > 0)
    counts = _signed_rank_counts(r2)
    total = 2 ** n
    lo = sum(counts[:w + 1]) / total
    hi = sum(counts[w:]) / total
    if alternative == "greater":
        return min(1.0, hi)
    if alternative == "less":
        return min(1.0, lo)
    return min(1.0, 2 * min(lo, hi))


def holm(pvalues):
    """Holm's step-down adjustment: adjusted p-values in the input's order; rejecting those
    <= alpha keeps the family-wise error rate at alpha (any dependence between the tests)."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    out, running = [1.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out


def walsh_ci_rank(n, conf=0.95):
    """(k, coverage): the Hodges-Lehmann interval [W_(k), W_(M+1-k)] of the M = n(n+1)/2 sorted
    Walsh averages, with the largest k whose exact coverage is >= conf; below the n that can
    reach conf (n < 6 at 95 %), k = 1 (min, max) and its lower coverage."""
    counts = _signed_rank_counts([2 * (i + 1) for i in range(n)])
    # counts are indexed by the doubled rank sum: W+ = j sits at index 2j.
    total = 2.0 ** n
    best, cover, cum = 1, None, 0.0
    for k in range(1, n * (n + 1) // 4 + 2):
        cum += counts[2 * (k - 1)] if 2 * (k - 1) < len(counts) else 0   # P(W+ <= k-1)
        c = 1.0 - 2.0 * cum / total
        if k == 1:
            cover = c
        if c >= conf - _EPS:
            best, cover = k, c
        else:
            break
    return best, cover


def ci_level(n, conf=0.95):
    """The coverage the paired interval of n pairs actually has (conf when reachable)."""
    return walsh_ci_rank(n, conf)[1] if n >= 1 else 0.0


def paired_ratio(a, b, conf=0.95):
    """a[i] / b[i] over pairs: (ratio, lo, hi, coverage, p) where ratio = exp(Hodges-Lehmann
    estimate of the log ratios), [lo, hi] its distribution-free interval (coverage: what it
    actually covers, conf when n >= 6 at 95 %), p the two-sided signed-rank p-value. Pairs with
    a non-positive value are left out. None when no pair is left."""
    d = [math.log(x / y) for x, y in zip(a, b) if x and y and x > 0 and y > 0]
    n = len(d)
    if n == 0:
        return None
    walsh = sorted((d[i] + d[j]) / 2.0 for i in range(n) for j in range(i, n))
    k, cover = walsh_ci_rank(n, conf)
    est = statistics.median(walsh)
    lo, hi = walsh[k - 1], walsh[len(walsh) - k]
    return math.exp(est), math.exp(lo), math.exp(hi), cover, signed_rank_p(d)


def pairs_needed(n, lo, hi, ratio, equivalence=0.05, alpha=0.05):
    """About how many pairs would make a paired comparison conclusive: its interval either
    excluding 1 (a difference) or lying within [1/(1+equivalence), 1+equivalence]. From the
    interval's half-width, which shrinks as 1/sqrt(n). None when it cannot say."""
    if n < 2 or not lo or not hi or lo <= 0 or hi <= 0:
        return None
    half = (math.log(hi) - math.log(lo)) / 2.0
    est = abs(math.log(ratio))
    # Distance to the nearer goal: exclude 0 (est) or fit inside the equivalence band.
    room = max(est, math.log(1 + equivalence) - est)
    if half <= 0 or room <= 0:
        return None
    # Below 6 pairs no 95 % interval exists (walsh_ci_rank): at least that many.
    return max(n + 1, 6, math.ceil(n * (half / room) ** 2))

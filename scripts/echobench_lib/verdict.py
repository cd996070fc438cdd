"""What a cell of a run says: each entry's ratio to the reference with its interval, and the
cell's verdict: a winner, equivalent (every entry within ±5 % of the reference, the interval
included), or inconclusive (with how many more pairs would decide). One place for the rule,
used by the report, the summary and `ab`.

Two designs (context.echobench.design):
- paired (the default): every entry measured once per round, in a balanced order, against
  servers that stay up (stats.balanced_order). A ratio is the Hodges-Lehmann estimate of the
  per-round ratios with its exact signed-rank interval; the winner is the leader when a
  two-sided signed-rank test of leader against runner-up gives p <= ALPHA (two-sided because
  the leader is picked after looking; the A/A rate of named winners is measured in
  scripts/aa-check.sh).
- unpaired: a fresh server per repetition; ratios of medians with a bootstrap interval, the
  winner by a one-sided Mann-Whitney test at ALPHA/2 and a minimum effect (stats.decide_winner).
"""
import statistics

from . import stats

ALPHA = 0.05          # two-sided, per cell
EQUIVALENCE = 0.05    # ±5 %: "no meaningful difference" when the whole interval is inside
MIN_EFFECT = 0.05     # unpaired design only (stats.decide_winner)


def ratio(a, b, paired):
    """(ratio, lo, hi, coverage) of a against b. paired: a and b are {round: value} and only
    rounds with both count; unpaired: lists. None when it cannot be computed."""
    if paired:
        rounds = sorted(set(a) & set(b))
        r = stats.paired_ratio([a[k] for k in rounds], [b[k] for k in rounds])
        return None if r is None else r[:4]
    a, b = list(a), list(b)
    if not a or not b:
        return None
    try:
        est, lo, hi = stats.ratio_ci(a, b)
    except ValueError:
        return None
    return est, lo, hi, None


def _within(lo, hi, band=EQUIVALENCE):
    return lo is not None and hi is not None and 1 / (1 + band) <= lo and hi <= 1 + band


def decide(values, higher_is_better, paired, reference=None):
    """The verdict of one cell for one metric. values: {entry: {round: value}} of the entries
    whose samples can be trusted (invalid ones left out by the caller). Returns a dict:
    verdict ('winner' | 'equivalent' | 'inconclusive' | '-'), winner, label, leader,
    runner_up, margin, margin_lo, margin_hi (leader over runner-up, >= 1 reads "times
    better"), p_value, coverage, reason, pairs_needed."""
    g = {k: v for k, v in values.items() if v}
    out = {"verdict": "-", "winner": None, "label": "-", "leader": None, "runner_up": None,
           "margin": None, "margin_lo": None, "margin_hi": None, "p_value": None,
           "coverage": None, "reason": None, "pairs_needed": None, "testable": False}
    if len(g) < 2:
        out["leader"] = next(iter(g), None)
        out["reason"] = "fewer than two entries to compare"
        return out
    if not paired:
        return _unpaired(g, higher_is_better, out)
    ref = reference if reference in g else next(iter(g))
    sign = 1.0 if higher_is_better else -1.0
    rel = {}
    for e, v in g.items():
        r = (1.0, 1.0, 1.0, None) if e == ref else ratio(v, g[ref], True)
        if r is not None:
            rel[e] = r
    ranked = sorted(rel, key=lambda e: (-sign * rel[e][0], e))
    lead, run = ranked[0], ranked[1] if len(ranked) > 1 else None
    out["leader"], out["runner_up"] = lead, run
    if run is None:
        out["reason"] = "no pairs to compare"
        return out
    num, den = (g[lead], g[run]) if higher_is_better else (g[run], g[lead])
    m = stats.paired_ratio(*_aligned(num, den))
    if m is None:
        out["reason"] = "no pairs to compare"
        return out
    n = len(set(num) & set(den))
    out.update(margin=m[0], margin_lo=m[1], margin_hi=m[2], coverage=m[3], p_value=m[4],
               testable=stats.signed_rank_p([1.0] * n) <= ALPHA)
    if m[4] <= ALPHA + 1e-12 and m[0] > 1.0:
        out.update(verdict="winner", winner=lead, label=lead)
        return out
    others = [rel[e] for e in rel if e != ref]
    if others and all(_within(r[1], r[2]) for r in others):
        out.update(verdict="equivalent", label="equivalent (±5 %)")
        return out
    out.update(verdict="inconclusive", label="inconclusive")
    need = [stats.pairs_needed(n, r[1], r[2], r[0]) for r in others]
    need = [x for x in need if x]
    out["pairs_needed"] = max(need) if need else None
    if not out["testable"]:
        out["reason"] = (f"{n} pairs cannot reach p <= {ALPHA:g} (two-sided); needs at least "
                         f"6")
    else:
        out["reason"] = (f"not significant (signed-rank p = {m[4]:.3f} > {ALPHA:g}) and not "
                         f"within ±{EQUIVALENCE:.0%}" +
                         (f"; about {out['pairs_needed']} pairs would decide"
                          if out["pairs_needed"] else ""))
    return out


def _aligned(a, b):
    rounds = sorted(set(a) & set(b))
    return [a[k] for k in rounds], [b[k] for k in rounds]


def _unpaired(g, higher_is_better, out):
    lists = {k: list(v.values()) for k, v in g.items()}
    dec = stats.decide_winner(lists, higher_is_better, ALPHA, MIN_EFFECT)
    out.update({k: dec[k] for k in ("winner", "leader", "runner_up", "margin", "margin_lo",
                                    "margin_hi", "p_value", "reason", "testable")})
    if dec["winner"]:
        out.update(verdict="winner", label=dec["winner"])
        return out
    ref = next(iter(lists))
    rs = [ratio(v, lists[ref], False) for e, v in lists.items() if e != ref]
    if rs and all(r is not None and _within(r[1], r[2]) for r in rs):
        out.update(verdict="equivalent", label="equivalent (±5 %)")
    else:
        out.update(verdict="inconclusive", label="inconclusive")
    return out


def median_of(values):
    return statistics.median(values) if values else None

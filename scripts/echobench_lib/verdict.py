"""What a cell of a run says: each entry's ratio to the reference with its interval, and the
cell's verdict: a winner, leaders (the best ones tied within ±5 %, every other worse),
equivalent (all tied), or inconclusive (with how many more pairs would decide). One place for
the rule, used by the report and the summary.

Two designs (context.echobench.design):
- paired (the default): every entry measured once per round, in a balanced order, against
  servers that stay up (stats.balanced_order). A ratio is the Hodges-Lehmann estimate of the
  per-round ratios with its exact signed-rank interval; the winner is the leader when a
  two-sided signed-rank test of the leader against each other entry (Holm over them) finds
  every one worse at ALPHA (two-sided because the leader is picked after looking); entries
  whose interval against the leader lies within ±5 % are tied with it ('leaders'); any other
  makes the cell inconclusive. The A/A rate of named winners is measured in
  scripts/aa-check.sh.
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
    whose samples can be trusted (invalid ones left out by the caller). Paired: the leader
    (best ratio to the reference) against every other entry; each is decidedly worse, tied
    (within ±5 %) or undecided. Returns a dict: verdict ('winner': every other worse;
    'leaders': the rest worse or tied with the leader; 'equivalent': all tied; 'inconclusive':
    one undecided; '-': nothing to compare), winner, label, leader, runner_up, margin,
    margin_lo, margin_hi (leader over runner-up, >= 1 reads "times better"), p_value,
    coverage, worse, tied, undecided, reason, pairs_needed."""
    g = {k: v for k, v in values.items() if v}
    out = {"verdict": "-", "winner": None, "label": "-", "leader": None, "runner_up": None,
           "margin": None, "margin_lo": None, "margin_hi": None, "p_value": None,
           "coverage": None, "reason": None, "pairs_needed": None, "testable": False,
           "worse": [], "tied": [], "undecided": []}
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
    lead = ranked[0]
    out["leader"] = lead
    if len(ranked) < 2:
        out["reason"] = "no pairs to compare"
        return out
    # The leader against each other entry: >= 1 reads "the leader is that many times better".
    vs = {}
    for e in ranked[1:]:
        num, den = (g[lead], g[e]) if higher_is_better else (g[e], g[lead])
        m = stats.paired_ratio(*_aligned(num, den))
        if m is not None:
            vs[e] = (m, len(set(num) & set(den)))
    if not vs:
        out["reason"] = "no pairs to compare"
        return out
    run = ranked[1] if ranked[1] in vs else next(iter(vs))
    (m, n) = vs[run]
    # Holm's first step divides ALPHA by the number of other entries: the fewest pairs that
    # can reach it (two-sided, 2 / 2^n) are what any verdict but "equivalent" needs.
    fewest = next(k for k in range(1, 64) if 2.0 ** (1 - k) <= ALPHA / len(vs) + 1e-12)
    out.update(runner_up=run, margin=m[0], margin_lo=m[1], margin_hi=m[2], coverage=m[3],
               p_value=m[4], testable=n >= fewest)
    # Each other entry is decidedly worse (two-sided signed-rank test, Holm over the others:
    # the leader was picked after looking, hence two-sided), tied with the leader (the whole
    # interval within ±5 %), or undecided.
    others = list(vs)
    holm = dict(zip(others, stats.holm([vs[e][0][4] for e in others])))
    worse = [e for e in others if holm[e] <= ALPHA + 1e-12 and vs[e][0][0] > 1.0]
    tied = [e for e in others if e not in worse and _within(vs[e][0][1], vs[e][0][2])]
    undecided = [e for e in others if e not in worse and e not in tied]
    out.update(worse=worse, tied=tied, undecided=undecided)
    if not undecided:
        if not tied:
            out.update(verdict="winner", winner=lead, label=lead)
        elif not worse:
            out.update(verdict="equivalent", label=f"equivalent (±{EQUIVALENCE:.0%})")
        else:
            out.update(verdict="leaders", label=", ".join([lead] + tied) +
                       f" (within ±{EQUIVALENCE:.0%})")
        return out
    out.update(verdict="inconclusive", label="inconclusive")
    need = [stats.pairs_needed(vs[e][1], vs[e][0][1], vs[e][0][2], vs[e][0][0])
            for e in undecided]
    need = [max(x, fewest) for x in need if x]
    out["pairs_needed"] = max(need) if need else fewest
    if not out["testable"]:
        out["reason"] = (f"{n} pairs cannot reach p <= {ALPHA:g} / {len(vs)} (two-sided, "
                         f"Holm over {len(vs)} comparisons): {fewest} are needed")
    else:
        out["reason"] = (f"{', '.join(undecided)}: neither significantly worse than {lead} "
                         f"(Holm) nor within ±{EQUIVALENCE:.0%} of it" +
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

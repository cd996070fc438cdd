"""`echobench compare BASE NEW`: which metrics changed, by how much, and is it more than noise?

For each metric present in both runs: the relative change of the medians, and a one-sided
Mann-Whitney U test across repetitions in the direction of the change. A change counts when it
is at least the minimum effect size (--threshold, default 5 %) AND significant (p <= alpha).
A significant change for the worse is a regression: exit 1.

Why one-sided: the question asked is "did it get worse?" (or better), not "did it differ?".
With 3 repetitions a side the smallest possible one-sided p is 1/20 = 0.05 (every NEW value
beyond every BASE value), so the default alpha 0.05 can be met by 3 repetitions; 5 or more are
better. With one repetition no test is possible: such changes are marked `untested` and do not
fail the comparison unless --no-stats is given.
"""
import json
import statistics
import sys

from scipy.stats import mannwhitneyu

from . import gbjson
from .util import UsageError


def compare_series(base, new, threshold, alpha, stats=True):
    """One row: the change of `new` against `base` (two gbjson.Series of the same name)."""
    b_med, n_med = statistics.median(base.values), statistics.median(new.values)
    if b_med == 0:
        # Google Benchmark's convention for a zero baseline: relative to the mean of both.
        change = 0.0 if n_med == 0 else (n_med - b_med) / (abs(n_med + b_med) / 2)
    else:
        change = (n_med - b_med) / abs(b_med)
    higher = base.higher if base.higher is not None else new.higher
    row = {"name": base.name, "unit": base.unit, "higher_is_better": higher,
           "base_median": b_med, "new_median": n_med, "change": change,
           "n_base": len(base.values), "n_new": len(new.values), "p_value": None}
    if higher is None:
        row["verdict"] = "info"
        return row
    worse = change < 0 if higher else change > 0
    big = abs(change) >= threshold
    testable = min(len(base.values), len(new.values)) >= 2
    if testable and change != 0:
        # alternative: NEW's values lie above BASE's (change > 0) or below.
        alt = "greater" if change > 0 else "less"
        row["p_value"] = float(mannwhitneyu(new.values, base.values, alternative=alt).pvalue)
    if not big:
        row["verdict"] = "unchanged"
    elif not stats:
        row["verdict"] = "regression" if worse else "improvement"
    elif not testable:
        row["verdict"] = "untested"
    elif row["p_value"] is not None and row["p_value"] <= alpha:
        row["verdict"] = "regression" if worse else "improvement"
    else:
        row["verdict"] = "noise"
    return row


def compare(base_data, new_data, threshold=0.05, alpha=0.05, stats=True):
    """Rows for every series in both inputs, plus the names found in only one."""
    b, n = gbjson.series(base_data), gbjson.series(new_data)
    rows = [compare_series(b[k], n[k], threshold, alpha, stats) for k in b if k in n]
    return {"rows": rows, "only_base": [k for k in b if k not in n],
            "only_new": [k for k in n if k not in b], "threshold": threshold, "alpha": alpha}


def _num(v):
    if v is None:
        return "-"
    if abs(v) >= 1e6 or (abs(v) < 0.01 and v != 0):
        return f"{v:.3e}"
    return f"{v:,.2f}" if abs(v) < 100 else f"{v:,.0f}"


ORDER = {"regression": 0, "improvement": 1, "untested": 2, "noise": 3, "unchanged": 4,
         "info": 5}


def table(result, show_all=False):
    rows = sorted(result["rows"], key=lambda r: (ORDER[r["verdict"]], r["name"]))
    if not show_all:
        rows = [r for r in rows if r["verdict"] in ("regression", "improvement", "untested",
                                                     "noise")]
    lines = []
    if rows:
        w = max(len(r["name"]) for r in rows)
        lines.append(f"{'metric':<{w}}  {'base':>12}  {'new':>12}  {'change':>8}  "
                     f"{'p':>6}  {'n':>5}  verdict")
        for r in rows:
            p = "-" if r["p_value"] is None else f"{r['p_value']:.3f}"
            why = ""
            if r["verdict"] in ("regression", "improvement"):
                why = " (higher is better)" if r["higher_is_better"] else " (lower is better)"
            lines.append(f"{r['name']:<{w}}  {_num(r['base_median']):>12}  "
                         f"{_num(r['new_median']):>12}  {r['change']:>+8.1%}  "
                         f"{p:>6}  {r['n_base']}v{r['n_new']:<3}  {r['verdict']}{why}")
    counts = {k: sum(1 for r in result["rows"] if r["verdict"] == k) for k in ORDER}
    lines.append(
        f"{len(result['rows'])} metrics compared (threshold {result['threshold']:.0%}, alpha "
        f"{result['alpha']:g}): {counts['regression']} regression(s), "
        f"{counts['improvement']} improvement(s), {counts['noise']} change(s) within noise, "
        f"{counts['untested']} untested (too few repetitions), {counts['unchanged']} unchanged"
        + (f", {counts['info']} without a known direction" if counts["info"] else ""))
    if result["only_base"] or result["only_new"]:
        lines.append(f"only in BASE: {len(result['only_base'])}, only in NEW: "
                     f"{len(result['only_new'])} (not compared)")
    return "\n".join(lines)


def run(base, new, threshold, alpha, stats, json_out, show_all, out=print):
    result = compare(gbjson.load(base), gbjson.load(new), threshold, alpha, stats)
    result["base"], result["new"] = str(base), str(new)
    if not result["rows"]:
        raise UsageError(f"no metric in common between '{base}' and '{new}'")
    out(table(result, show_all))
    if json_out:
        text = json.dumps(result, indent=1, default=str)
        if json_out == "-":
            sys.stdout.write(text + "\n")
        else:
            with open(json_out, "w") as f:
                f.write(text + "\n")
    return 1 if any(r["verdict"] == "regression" for r in result["rows"]) else 0

"""`echobench compare BASE NEW`: which metrics changed, by how much, and is it more than noise?

For each metric present in both runs: the relative change of the medians, and a one-sided
Mann-Whitney U test across repetitions in the direction of the change. A change counts when it
is at least the minimum effect size (--threshold, default 5 %) AND significant (p <= alpha).
A significant change for the worse is a regression: exit 1.

Why one-sided: the question asked is "did it get worse?" (or better), not "did it differ?".
With 3 repetitions a side the smallest possible one-sided p is 1/20 = 0.05 (every NEW value
beyond every BASE value), so the default alpha 0.05 can be met by 3 repetitions; 5 or more are
better. With fewer (2 vs 2, or any side with 1) no test can reach 0.05: a change beyond the
threshold is then `untested`, the table says why and how many repetitions would test it, and
the exit code is 3 (inconclusive), never 0.

Exit codes: 0 no significant regression; 1 a significant regression; 2 usage or unreadable
input (raised as UsageError); 3 inconclusive: an untested change, a metric that is `not
comparable` (echo-load's `valid` was false on either side: its figure measured something else),
or BASE metrics missing in NEW (unless --allow-missing). docs/RESULTS.md has the details.
"""
import json
import statistics
import sys

from . import gbjson, stats as st
from .util import UsageError

EXIT_OK, EXIT_REGRESSION, EXIT_USAGE, EXIT_INCONCLUSIVE = 0, 1, 2, 3


def untested_why(n_base, n_new, alpha):
    """Why n_base against n_new repetitions cannot test at alpha, and what would."""
    best = st.smallest_p(n_base, n_new)
    need = st.min_reps_to_test(alpha)
    text = (f"{n_base}v{n_new} repetitions: the smallest possible p is {best:.3g} > {alpha:g}; "
            f"needs {need} per side")
    more = st.min_reps_to_test(alpha, other=n_base)
    if more is not None and more != need:
        text += f" (or {more} in NEW against this BASE's {n_base})"
    return text, need


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
           "n_base": len(base.values), "n_new": len(new.values), "p_value": None,
           "why": "", "min_reps": None}
    bad = [("BASE", s) for s in (base,) if getattr(s, "invalid", 0)] + \
        [("NEW", s) for s in (new,) if getattr(s, "invalid", 0)]
    if bad:
        # echo-load said its own figures are not to be trusted: no verdict either way.
        row["verdict"] = "not comparable"
        row["why"] = "; ".join(f"{side}: {s.invalid} of {len(s.values)} repetition(s) invalid "
                               f"({', '.join(s.invalid_reasons)})" for side, s in bad)
        return row
    if higher is None:
        row["verdict"] = "info"
        return row
    worse = change < 0 if higher else change > 0
    big = abs(change) >= threshold
    testable = st.can_test(len(base.values), len(new.values), alpha)
    if change != 0:
        # alternative: NEW's values lie above BASE's (change > 0) or below.
        alt = "greater" if change > 0 else "less"
        row["p_value"] = st.mann_whitney_one_sided(new.values, base.values, alt)
    if not big:
        row["verdict"] = "unchanged"
    elif not stats:
        row["verdict"] = "regression" if worse else "improvement"
    elif not testable:
        row["verdict"] = "untested"
        row["why"], row["min_reps"] = untested_why(len(base.values), len(new.values), alpha)
    elif row["p_value"] is not None and row["p_value"] <= alpha + 1e-12:
        row["verdict"] = "regression" if worse else "improvement"
    else:
        row["verdict"] = "noise"
    return row


def compare(base_data, new_data, threshold=0.05, alpha=0.05, stats=True, allow_missing=False):
    """Rows for every series in both inputs, the names found in only one, and the exit code."""
    b, n = gbjson.series(base_data), gbjson.series(new_data)
    rows = [compare_series(b[k], n[k], threshold, alpha, stats) for k in b if k in n]
    result = {"rows": rows, "only_base": [k for k in b if k not in n],
              "only_new": [k for k in n if k not in b], "threshold": threshold, "alpha": alpha,
              "allow_missing": allow_missing}
    result["exit"], result["outcome"] = outcome(result)
    return result


def outcome(result):
    """(exit code, one line): 1 a significant regression; 3 inconclusive (a change beyond the
    threshold that the repetitions cannot test, a cell that is not comparable, or BASE cells
    missing in NEW without --allow-missing); 0 otherwise."""
    v = [r["verdict"] for r in result["rows"]]
    if "regression" in v:
        return EXIT_REGRESSION, f"{v.count('regression')} significant regression(s)"
    why = []
    if "untested" in v:
        why.append(f"{v.count('untested')} change(s) beyond the threshold that the "
                   f"repetitions cannot test")
    if "not comparable" in v:
        why.append(f"{v.count('not comparable')} metric(s) not comparable (echo-load's "
                   f"self-checks failed)")
    if result["only_base"] and not result["allow_missing"]:
        why.append(f"{len(result['only_base'])} metric(s) of BASE missing in NEW "
                   f"(--allow-missing to accept)")
    if why:
        return EXIT_INCONCLUSIVE, "inconclusive: " + "; ".join(why)
    return EXIT_OK, "no significant regression"


def _num(v):
    if v is None:
        return "-"
    if abs(v) >= 1e6 or (abs(v) < 0.01 and v != 0):
        return f"{v:.3e}"
    return f"{v:,.2f}" if abs(v) < 100 else f"{v:,.0f}"


ORDER = {"regression": 0, "improvement": 1, "untested": 2, "not comparable": 3, "noise": 4,
         "unchanged": 5, "info": 6}


def table(result, show_all=False):
    rows = sorted(result["rows"], key=lambda r: (ORDER[r["verdict"]], r["name"]))
    if not show_all:
        rows = [r for r in rows if r["verdict"] in ("regression", "improvement", "untested",
                                                     "not comparable", "noise")]
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
            elif r.get("why"):
                why = f": {r['why']}"
            lines.append(f"{r['name']:<{w}}  {_num(r['base_median']):>12}  "
                         f"{_num(r['new_median']):>12}  {r['change']:>+8.1%}  "
                         f"{p:>6}  {r['n_base']}v{r['n_new']:<3}  {r['verdict']}{why}")
    counts = {k: sum(1 for r in result["rows"] if r["verdict"] == k) for k in ORDER}
    lines.append(
        f"{len(result['rows'])} metrics compared (threshold {result['threshold']:.0%}, alpha "
        f"{result['alpha']:g}): {counts['regression']} regression(s), "
        f"{counts['improvement']} improvement(s), {counts['noise']} change(s) within noise, "
        f"{counts['untested']} untested (too few repetitions), "
        f"{counts['not comparable']} not comparable, {counts['unchanged']} unchanged"
        + (f", {counts['info']} without a known direction" if counts["info"] else ""))
    if result["only_base"] or result["only_new"]:
        lines.append(f"only in BASE: {len(result['only_base'])}, only in NEW: "
                     f"{len(result['only_new'])} (not compared)")
        for k in result["only_base"][:10]:
            lines.append(f"  missing in NEW: {k}")
        if len(result["only_base"]) > 10:
            lines.append(f"  ... and {len(result['only_base']) - 10} more")
    lines.append(f"exit {result['exit']}: {result['outcome']}")
    return "\n".join(lines)


def run(base, new, threshold, alpha, stats, json_out, show_all, out=print,
        allow_missing=False):
    """The command: prints the table, writes --json, returns the exit code (0, 1 or 3; bad
    input raises UsageError, exit 2). --json is opened before anything is judged, so that an
    unwritable path is a usage error and never a verdict."""
    jf = None
    if json_out and json_out != "-":
        try:
            jf = open(json_out, "w")
        except OSError as e:
            raise UsageError(f"cannot write --json '{json_out}': {e.strerror or e}") from e
    try:
        result = compare(gbjson.load(base), gbjson.load(new), threshold, alpha, stats,
                         allow_missing)
        result["base"], result["new"] = str(base), str(new)
        if not result["rows"]:
            raise UsageError(f"no metric in common between '{base}' and '{new}'")
        out(table(result, show_all))
        if json_out:
            text = json.dumps(result, indent=1, default=str)
            if jf is None:
                sys.stdout.write(text + "\n")
            else:
                try:
                    jf.write(text + "\n")
                    jf.flush()
                except OSError as e:
                    raise UsageError(f"cannot write --json '{json_out}': "
                                     f"{e.strerror or e}") from e
    finally:
        if jf is not None:
            try:
                jf.close()
            except OSError:
                pass
    return result["exit"]

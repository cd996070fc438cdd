"""`echobench compare BASE NEW`: did anything get worse between two sets of runs made at
different times? (For two builds, `echobench ab` measures both in one paired run, which is the
sound way; this command is for results that exist already.)

Each side is a run directory, a run.json (or any Google Benchmark JSON), or a directory of
runs. Repetitions inside one run share that run's conditions (the machine's state, its
frequency, its neighbours): a test that treated them as independent across runs would mistake
a run-to-run shift for a change. So the unit of comparison is the run:
- several runs per side: the medians of the runs are compared (one-sided Mann-Whitney, exact
  with ties; ratio of medians with a bootstrap interval over runs);
- one run per side: only with the run-to-run spread of that cell on this machine class from
  a results history (`--history DB`): the change's interval is its log ± t·√2·spread;
- otherwise the row is `untestable` and says what would decide, unless the user assumes away
  the shift with `--assume-no-run-shift` (repetitions then count as independent, as Google
  Benchmark's compare.py does; said in the output).

Per row (cell and metric): `regression` (worse by at least --threshold and significant after
Holm's correction over every gated row), `improvement` (the same, better), `ok` (the interval
excludes a worsening of --threshold or more), `untestable`, `inconclusive`, `not comparable`
(a self-check failed on either side, or the open-loop offered rates differ by over 1 %) or
`info` (not gated: no direction, or a latency percentile echo-load could not resolve, or p90
and beyond p99). Exit 0 when every gated row is ok or improved; 1 on a regression; 3 when any
gated row is undecided or BASE rows are missing in NEW (unless --allow-missing); 2 on usage.
"""
import json
import math
import pathlib
import statistics
import sys

from . import gbjson, stats
from .matrix import parse_name
from .util import UsageError

EXIT_OK, EXIT_REGRESSION, EXIT_USAGE, EXIT_INCONCLUSIVE = 0, 1, 2, 3
# Judged latencies: p50 and p99; the rest of the spectrum is shown, not gated (few samples).
GATED_LATENCY = ("p50_us", "p99_us")
RATE_MATCH = 0.01


def load_side(path):
    """[(label, Google Benchmark JSON object)] of one side: a run directory or JSON file, or a
    directory whose subdirectories are runs."""
    p = pathlib.Path(path)
    if p.is_dir() and not (p / "run.json").is_file():
        runs = sorted(d for d in p.iterdir() if d.is_dir() and not d.is_symlink()
                      and (d / "run.json").is_file())
        if not runs:
            raise UsageError(f"no results at '{path}': expected a run directory, a JSON file "
                             f"or a directory of runs")
        return [(str(d), gbjson.load(d)) for d in runs]
    return [(str(p), gbjson.load(p))]


class Row:
    """One benchmark (cell and metric) over the runs of one side."""

    def __init__(self, name, unit, higher):
        self.name, self.unit, self.higher = name, unit, higher
        self.runs = []          # per run: [values]
        self.invalid, self.reasons = 0, []
        self.offered = []
        self.unresolved = 0

    @property
    def values(self):
        return [v for r in self.runs for v in r]

    @property
    def run_medians(self):
        return [statistics.median(r) for r in self.runs if r]


def rows_of(side):
    """{benchmark name: Row} over every run of a side (our entries through gbjson.iterations,
    other tools' through gbjson.series), and the first run's context."""
    out, ctx = {}, {}
    for _, data in side:
        ctx = ctx or data.get("context") or {}
        per_run = {}
        ours = gbjson.iterations(data)
        if ours:
            for it in ours:
                name = it["cell"].name(it["metric"])
                row = out.get(name)
                if row is None:
                    from .metrics import higher_is_better, unit
                    row = out[name] = Row(name, unit(it["metric"]),
                                          higher_is_better(it["metric"]))
                per_run.setdefault(name, []).append(float(it["value"]))
                if not it["valid"]:
                    row.invalid += 1
                    row.reasons += [r for r in it["invalid_reasons"] if r not in row.reasons]
                if it["offered_rate"]:
                    row.offered.append(float(it["offered_rate"]))
                if it["resolved"] is False:
                    row.unresolved += 1
        else:
            for name, s in gbjson.series(data).items():
                row = out.setdefault(name, Row(name, s.unit, s.higher))
                per_run[name] = list(s.values)
        for name, vals in per_run.items():
            out[name].runs.append(vals)
    return out, ctx


def _gated(name, row):
    parsed = parse_name(name)
    metric = parsed[1] if parsed else None
    if row.higher is None:
        return False, "no direction: shown, not judged"
    if metric and metric.endswith("_us") and metric not in GATED_LATENCY:
        return False, "beyond p99 the samples are few: shown, not judged"
    if row.unresolved:
        return False, "echo-load could not resolve this percentile: shown, not judged"
    return True, None


def judge_row(name, base, new, threshold, alpha, spread=None, independent=False):
    """One row's figures and its test; the verdict is set by judge() after Holm."""
    b_med, n_med = statistics.median(base.values), statistics.median(new.values)
    change = (n_med - b_med) / abs(b_med) if b_med else (0.0 if n_med == 0 else math.inf)
    row = {"name": name, "unit": base.unit, "higher_is_better": base.higher,
           "base_median": b_med, "new_median": n_med, "change": change,
           "runs": [len(base.runs), len(new.runs)],
           "n": [len(base.values), len(new.values)], "lo": None,
           "hi": None, "why": [], "method": None}
    gated, why = _gated(name, base)
    row["gated"] = gated
    bad = [f"{side}: {r.invalid} repetition(s) invalid ({'; '.join(r.reasons)})"
           for side, r in (("BASE", base), ("NEW", new)) if r.invalid]
    if base.offered and new.offered:
        ob, on = statistics.median(base.offered), statistics.median(new.offered)
        if abs(on - ob) > RATE_MATCH * ob:
            bad.append(f"offered rates differ: {ob:.0f} vs {on:.0f} msgs/s (use --rates-from)")
    if bad:
        row.update(verdict="not comparable", why=bad)
        return row
    if not gated:
        row.update(verdict="info", why=[why])
        return row
    worse_sign = -1.0 if base.higher else 1.0
    if len(base.runs) >= 2 and len(new.runs) >= 2:
        a, b = new.run_medians, base.run_medians
        row["method"] = f"{len(b)} vs {len(a)} runs (their medians)"
    elif independent:
        a, b = new.values, base.values
        row["method"] = "repetitions as independent (--assume-no-run-shift)"
    elif spread is not None and b_med > 0 and n_med > 0:
        # One run a side: the change against the history's run-to-run spread of this cell.
        sd, df = spread
        d = math.log(n_med / b_med)
        half = _t975(df) * math.sqrt(2.0) * sd
        z = worse_sign * d / (math.sqrt(2.0) * sd) if sd > 0 else math.copysign(math.inf, d)
        # exp of at most 700: a spread from absurd history values must not overflow.
        row.update(lo=math.exp(min(d - half, 700.0)) - 1, hi=math.exp(min(d + half, 700.0)) - 1,
                   testable=True,
                   p_worse=0.5 * math.erfc(z / math.sqrt(2.0)),
                   p_better=0.5 * math.erfc(-z / math.sqrt(2.0)),
                   method=f"1 run a side, run-to-run spread {sd:.1%} from the history "
                          f"({df} degrees of freedom)")
        return row
    else:
        row.update(verdict="untestable", why=[
            "one run a side: a change cannot be told from a run-to-run shift (give several "
            "runs a side, --history with this cell's past runs, or use `echobench ab`)"])
        return row
    worse_alt, better_alt = ("less", "greater") if base.higher else ("greater", "less")
    row["p_worse"] = stats.mann_whitney_one_sided(a, b, worse_alt)
    row["p_better"] = stats.mann_whitney_one_sided(a, b, better_alt)
    best = stats.smallest_attainable_p(a, b)
    row["testable"] = best <= alpha + 1e-12
    if not row["testable"]:
        unit_ = "runs" if "runs" in row["method"] else "values"
        row["why"].append(f"{len(b)} vs {len(a)} {unit_} can reach p = {best:.3g} at best "
                          f"(ties counted) > {alpha:g}")
    try:
        r, lo, hi = stats.ratio_ci(a, b)
        row.update(lo=lo - 1, hi=hi - 1)
    except ValueError:
        pass
    return row


def _t975(df):
    try:
        from scipy.stats import t
        return float(t.ppf(0.975, max(1, df)))
    except ImportError:                       # pragma: no cover (scipy is a dependency)
        return 1.96


def judge(rows, threshold, alpha):
    """Verdicts, with Holm's adjustment over the tested gated rows (worsening and improvement
    are two families, each at alpha)."""
    tested = [r for r in rows if r.get("verdict") is None and r.get("p_worse") is not None]
    for key in ("p_worse", "p_better"):
        for r, adj in zip(tested, stats.holm([r[key] for r in tested])):
            r[key + "_holm"] = adj
    for r in rows:
        if r.get("verdict") is not None:
            continue
        hib = r["higher_is_better"]
        worse = -r["change"] if hib else r["change"]
        # the worst end of the interval, as a worsening
        worst = None if r["lo"] is None else (-r["lo"] if hib else r["hi"])
        r["p_holm"] = r.get("p_worse_holm") if worse > 0 else r.get("p_better_holm")
        if r.get("p_worse_holm", 1.0) <= alpha and worse >= threshold:
            r["verdict"] = "regression"
        elif r.get("p_better_holm", 1.0) <= alpha and -worse >= threshold:
            r["verdict"] = "improvement"
        elif worst is not None and worst < threshold and r.get("testable", True):
            r["verdict"] = "ok"
        elif not r.get("testable", True):
            r["verdict"] = "untestable"
        else:
            r["verdict"] = "inconclusive"
            r["why"].append(f"the interval allows a worsening of {worst:.1%}, at or beyond "
                            f"the threshold {threshold:.0%}" if worst is not None else
                            "no interval")


def compare(base_side, new_side, threshold=0.05, alpha=0.05, allow_missing=False,
            history=None, independent=False):
    b, bctx = rows_of(base_side)
    n, _ = rows_of(new_side)
    spread_of = _spreads(history, bctx)
    rows = [judge_row(k, b[k], n[k], threshold, alpha, spread_of(k), independent)
            for k in b if k in n]
    judge(rows, threshold, alpha)
    result = {"rows": rows, "only_base": [k for k in b if k not in n],
              "only_new": [k for k in n if k not in b], "threshold": threshold,
              "alpha": alpha, "allow_missing": allow_missing,
              "runs": [len(base_side), len(new_side)]}
    result["exit"], result["outcome"] = outcome(result)
    return result


def _spreads(history, ctx):
    """name -> (sd of log, degrees of freedom) from the results history, or None (no history
    given, none at that path, or fewer than 3 runs of that cell on this machine class)."""
    if not history:
        return lambda name: None
    from . import history as hist
    store = hist.existing(history)
    if store is None:
        raise UsageError(f"--history {history}: no results history there (echobench history "
                         f"add/import makes one)")
    mclass = hist.machine_class(ctx)

    def spread(name):
        parsed = parse_name(name)
        if not parsed:
            return None
        s = hist.run_to_run_spread(store, parsed[0], parsed[1], mclass)
        return None if s is None else (s.sd_log, s.df)
    return spread


def outcome(result):
    gated = [r for r in result["rows"] if r["gated"]]
    v = [r["verdict"] for r in gated]
    if "regression" in v:
        return EXIT_REGRESSION, f"{v.count('regression')} significant regression(s)"
    why = []
    undecided = [x for x in v if x not in ("ok", "improvement")]
    if undecided:
        why.append(f"{len(undecided)} of {len(v)} gated metric(s) undecided (" +
                   ", ".join(f"{undecided.count(k)} {k}" for k in dict.fromkeys(undecided)) +
                   ")")
    if result["only_base"] and not result["allow_missing"]:
        why.append(f"{len(result['only_base'])} metric(s) of BASE missing in NEW "
                   f"(--allow-missing to accept)")
    if not gated:
        why.append("no gated metric")
    if why:
        return EXIT_INCONCLUSIVE, "inconclusive: " + "; ".join(why)
    return EXIT_OK, f"no regression of {result['threshold']:.0%} or more in {len(v)} metrics"


def _num(v):
    if v is None:
        return "-"
    if abs(v) >= 1e6 or (abs(v) < 0.01 and v != 0):
        return f"{v:.3e}"
    return f"{v:,.2f}" if abs(v) < 100 else f"{v:,.0f}"


ORDER = {"regression": 0, "improvement": 1, "inconclusive": 2, "untestable": 3,
         "not comparable": 4, "ok": 5, "info": 6}


def table(result, show_all=False):
    """Summary first; then one line per metric, grouped by cell, and below each cell its
    reasons, each once."""
    rows = result["rows"]
    counts = {k: sum(1 for r in rows if r["verdict"] == k) for k in ORDER}
    lines = [f"compare: {result['outcome']} (exit {result['exit']})",
             f"  {len(rows)} metrics, {result['runs'][0]} BASE run(s), {result['runs'][1]} NEW "
             f"run(s), threshold {result['threshold']:.0%}, family-wise alpha "
             f"{result['alpha']:g} (Holm): " +
             ", ".join(f"{counts[k]} {k}" for k in ORDER if counts[k])]
    shown = sorted((r for r in rows if show_all or r["verdict"] not in ("ok", "info")),
                   key=lambda r: (r["name"].rsplit("/", 1)[0], ORDER[r["verdict"]]))
    if shown:
        w = max(len(r["name"]) for r in shown)
        lines.append(f"{'metric':<{w}}  {'base':>12}  {'new':>12}  {'change':>8}  "
                     f"{'interval':<17} {'p (Holm)':>8}  verdict")
    cell, reasons = None, []
    for r in shown + [None]:
        this = None if r is None else r["name"].rsplit("/", 1)[0]
        if this != cell and reasons:
            lines += [f"  ↳ {x}" for x in dict.fromkeys(reasons)]
            reasons = []
        if r is None:
            break
        cell = this
        iv = "-" if r["lo"] is None else f"[{r['lo']:+.1%}, {r['hi']:+.1%}]"
        p = r.get("p_holm")
        lines.append(f"{r['name']:<{w}}  {_num(r['base_median']):>12}  "
                     f"{_num(r['new_median']):>12}  {r['change']:>+8.1%}  {iv:<17} "
                     f"{'-' if p is None else f'{p:.3f}':>8}  {r['verdict']}")
        reasons += r["why"] + ([r["method"]] if r.get("method") and show_all else [])
    if result["only_base"]:
        lines.append(f"only in BASE: {len(result['only_base'])} (e.g. "
                     f"{', '.join(result['only_base'][:3])})")
    if result["only_new"]:
        lines.append(f"only in NEW: {len(result['only_new'])}")
    return "\n".join(lines)


def run(base, new, threshold, alpha, json_out, show_all, out=print, allow_missing=False,
        history=None, independent=False):
    """The command: prints the table, writes --json, returns the exit code. --json is opened
    before anything is judged, so that an unwritable path is a usage error, never a verdict."""
    jf = None
    if json_out and json_out != "-":
        try:
            jf = open(json_out, "w")
        except OSError as e:
            raise UsageError(f"cannot write --json '{json_out}': {e.strerror or e}") from e
    try:
        result = compare(load_side(base), load_side(new), threshold, alpha, allow_missing,
                         history, independent)
        result["base"], result["new"] = str(base), str(new)
        if not result["rows"]:
            raise UsageError(f"no metric in common between '{base}' and '{new}'")
        out(table(result, show_all))
        if json_out:
            text = json.dumps(result, indent=1, default=str)
            if jf is None:
                sys.stdout.write(text + "\n")
            else:
                jf.write(text + "\n")
    finally:
        if jf is not None:
            jf.close()
    return result["exit"]

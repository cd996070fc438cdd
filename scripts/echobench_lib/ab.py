"""`echobench ab`: the CI gate. Two builds (or two server commands) measured in the same run, in
paired rounds against servers that stay up, then per cell and gated metric the change NEW/BASE
with its interval and a verdict, with the family-wise error over every gated row controlled by
Holm's method.

Verdicts of a row (docs/RESULTS.md "echobench ab"):
- regression: NEW worse, one-sided signed-rank p (Holm-adjusted) <= --alpha, and the estimate
  worse by at least --min-effect;
- improvement: the same the other way;
- equivalent: the whole interval of the change within ±--threshold;
- inconclusive: none of these; with about how many pairs (and how much time) would decide.
Exit 0 when every gated row is equivalent or improved, 1 when any is a regression, 3 otherwise
(inconclusive), 2 on usage errors.

Gated: the server's CPU per message (or per KiB in streaming), throughput where both sides were
server-bound, p99 at the same offered rate (open loop) where echo-load resolved it. Everything
else (p50, p999, throughput of client-bound cells) is shown as information.
"""
import json
import math
import pathlib

from . import options, runner, stats
from .build import SERVER, list_backends, pick_backends, program
from .entries import Entry, parse_spec
from .metrics import higher_is_better, unit
from .rundata import RunData
from .util import UsageError, alpha_arg, percent_arg

EXIT_OK, EXIT_REGRESSION, EXIT_USAGE, EXIT_INCONCLUSIVE = 0, 1, 2, 3
INFO = ("p50_us", "p999_us")


def register(sub, common):
    a = sub.add_parser("ab", parents=[common],
                       help="the CI gate: BASE and NEW in one paired run (exit 0 no change or "
                            "better, 1 regression, 3 inconclusive)",
                       description=__doc__.split("\n\n", 1)[0])
    a.add_argument("--base", metavar="DIR|EXE", help="BASE: a build directory or an "
                   "echo-server binary (its backends are measured)")
    a.add_argument("--new", metavar="DIR|EXE", help="NEW: the same for the change")
    a.add_argument("--base-cmd", metavar="CMD", help="BASE as a server command ({port} or a "
                   "`listening ADDR` line), instead of --base")
    a.add_argument("--new-cmd", metavar="CMD", help="NEW as a server command")
    a.add_argument("--threshold", type=percent_arg("--threshold", zero=True, below=1000), default=0.05,
                   help="equivalence margin in percent: a row whose whole interval is within "
                        "±THRESHOLD is equivalent (default 5)")
    a.add_argument("--min-effect", type=percent_arg("--min-effect", zero=True, below=1000), default=0.01,
                   help="the smallest significant worsening that fails the gate, in percent "
                        "(default 1)")
    a.add_argument("--alpha", type=alpha_arg, default=0.05,
                   help="family-wise error rate over every gated row (Holm; default 0.05)")
    a.add_argument("--json", metavar="FILE", help="write the verdicts as JSON ('-': stdout)")
    options.add_run_arguments(a)
    return a


def entries_of(a, build):
    """[Entry], [(base name, new name, label)] from --base/--new or --base-cmd/--new-cmd."""
    cmds = a.base_cmd is not None or a.new_cmd is not None
    exes = a.base is not None or a.new is not None
    if cmds == exes or (cmds and not (a.base_cmd and a.new_cmd)) or \
            (exes and not (a.base and a.new)):
        raise UsageError("ab needs --base and --new (builds or echo-server binaries), or "
                         "--base-cmd and --new-cmd (server commands)")
    if a.server or a.target:
        raise UsageError("ab compares BASE with NEW: --server and --target are for run")
    if cmds:
        for name, cmd in (("base", a.base_cmd), ("new", a.new_cmd)):
            parse_spec(f"{name}={cmd}", "--server")
        return ([Entry("base", "server", command=a.base_cmd),
                 Entry("new", "server", command=a.new_cmd)], [("base", "new", "server")])
    exe = {side: _server_exe(getattr(a, side), side) for side in ("base", "new")}
    wanted = options.backend_list(a.backends)
    names, _ = pick_backends(exe["base"], wanted)
    new_names = {n for n, ok, _ in list_backends(exe["new"]) if ok}
    names = [n for n in names if n.split("+")[0] in new_names or n in new_names]
    if not names:
        raise UsageError("no backend is usable in both BASE and NEW")
    ents, pairs = [], []
    for n in names:
        for side in ("base", "new"):
            ents.append(Entry(f"{n}@{side}", "backend", backend=n, server_exe=str(exe[side])))
        pairs.append((f"{n}@base", f"{n}@new", n))
    return ents, pairs


def _server_exe(path, side):
    p = pathlib.Path(path)
    if p.is_dir():
        exe = program(p.resolve(), SERVER, required=False)
        if exe is None:
            raise UsageError(f"--{side} {path}: no {SERVER} in that build directory")
        return exe
    if p.is_file():
        return p.resolve()
    raise UsageError(f"--{side} {path}: no such build directory or echo-server binary")


def gated_metrics(d, spot, base, new):
    """[(metric, gated)] of a spot for one pair."""
    cells = [d.cell(spot, base), d.cell(spot, new)]
    out = []
    eff = "server_cpu_ns_per_kib" if spot.kind == "stream" else "server_cpu_ns_per_msg"
    if all(d.has_cpu(c.entry) for c in cells):
        out.append((eff, True))
    if spot.is_open:
        resolved = all(not d.unresolved_reps(c, "p99_us") for c in cells)
        out.append(("p99_us", resolved))
    else:
        head = "bytes_per_sec" if spot.kind == "stream" else "msgs_per_sec"
        out.append((head, all(d.client_bound(c) is False for c in cells)))
        out.append(("p99_us", False))
    out += [(m, False) for m in INFO if m not in dict(out)]
    return out


def rows_of(d, pairs, threshold, min_effect, alpha):
    """Every (spot, pair, metric) row with its change, interval and verdict."""
    rows = []
    for spot in d.spots():
        for base, new, label in pairs:
            bc, nc = d.cell(spot, base), d.cell(spot, new)
            for metric, gated in gated_metrics(d, spot, base, new):
                a, b = d.rounds(nc, metric), d.rounds(bc, metric)
                rounds = sorted(set(a) & set(b))
                row = {"cell": spot.where(), "pair": label, "metric": metric,
                       "unit": unit(metric), "gated": gated, "pairs": len(rounds),
                       "base_median": stats_median(b.values()),
                       "new_median": stats_median(a.values()), "why": []}
                why = []
                for side, c in (("BASE", bc), ("NEW", nc)):
                    ok, reasons = d.validity(c)
                    if not ok:
                        why.append(f"{side} invalid: {'; '.join(reasons)}")
                if spot.is_open:
                    _, same = d.group_offered(spot)
                    if not same:
                        why.append("BASE and NEW were offered different rates")
                r = stats.paired_ratio([a[k] for k in rounds], [b[k] for k in rounds])
                if r is None or why:
                    row.update(verdict="not comparable" if why else "inconclusive", why=why)
                    rows.append(row)
                    continue
                est, lo, hi, cover, _ = r
                hib = higher_is_better(metric)
                d_worse = [(-1 if hib else 1) * math.log(a[k] / b[k]) for k in rounds
                           if a[k] > 0 and b[k] > 0]
                row.update(change=est - 1.0, lo=lo - 1.0, hi=hi - 1.0, coverage=cover,
                           p_worse=stats.signed_rank_p(d_worse, "greater"),
                           p_better=stats.signed_rank_p(d_worse, "less"),
                           worse_by=(1 / est - 1.0) if hib else (est - 1.0))
                rows.append(row)
    judge(rows, threshold, min_effect, alpha)
    return rows


def stats_median(values):
    values = [v for v in values if v is not None]
    return sorted(values)[len(values) // 2] if values else None


def judge(rows, threshold, min_effect, alpha):
    """Verdicts with Holm's adjustment over the gated rows (regressions and improvements are
    two families, each at alpha)."""
    tested = [r for r in rows if r["gated"] and "p_worse" in r]
    for key in ("p_worse", "p_better"):
        for r, adj in zip(tested, stats.holm([r[key] for r in tested])):
            r[key + "_holm"] = adj
    band = (1 / (1 + threshold) - 1, threshold)
    for r in rows:
        if "change" not in r:
            continue
        holm = r.get("p_worse_holm", r["p_worse"]), r.get("p_better_holm", r["p_better"])
        if holm[0] <= alpha and r["worse_by"] >= min_effect:
            r["verdict"] = "regression"
        elif holm[1] <= alpha and -r["worse_by"] >= min_effect:
            r["verdict"] = "improvement"
        elif band[0] <= r["lo"] and r["hi"] <= band[1]:
            r["verdict"] = "equivalent"
        else:
            r["verdict"] = "inconclusive"
            need = stats.pairs_needed(r["pairs"], 1 + r["lo"], 1 + r["hi"], 1 + r["change"],
                                      threshold)
            r["pairs_needed"] = need
            r["why"].append(f"interval {r['lo']:+.1%} .. {r['hi']:+.1%} is neither within "
                            f"±{threshold:.0%} nor significant" +
                            (f"; about {need} pairs would decide" if need else ""))


def outcome(rows):
    gated = [r for r in rows if r["gated"]]
    v = [r["verdict"] for r in gated]
    if "regression" in v:
        return EXIT_REGRESSION, f"{v.count('regression')} significant regression(s)"
    if gated and all(x in ("equivalent", "improvement") for x in v):
        return EXIT_OK, (f"no regression: {v.count('equivalent')} equivalent, "
                         f"{v.count('improvement')} improved")
    if not gated:
        return EXIT_INCONCLUSIVE, "inconclusive: no gated row"
    bad = len(v) - v.count("equivalent") - v.count("improvement")
    return EXIT_INCONCLUSIVE, f"inconclusive: {bad} of {len(v)} gated rows undecided"


def table(rows, result, seconds_per_round=None):
    """Summary first, then one line per row; each cell's reasons once, below its rows."""
    lines = [f"ab: {result['outcome']} (exit {result['exit']}); family-wise alpha "
             f"{result['alpha']:g} (Holm) over {sum(r['gated'] for r in rows)} gated rows, "
             f"equivalence ±{result['threshold']:.0%}, smallest failing worsening "
             f"{result['min_effect']:.0%}"]
    need = [r.get("pairs_needed") for r in rows if r["gated"] and r.get("pairs_needed")]
    if need and result["exit"] == EXIT_INCONCLUSIVE:
        more = max(need)
        t = f" (about {more * seconds_per_round:.0f} s)" if seconds_per_round else ""
        lines.append(f"  about {more} pairs per cell would decide the undecided rows{t}")
    w = max([len(f"{r['pair']} {r['cell']}") for r in rows] + [10])
    lines.append(f"{'cell':<{w}}  {'metric':<22} {'gate':<4} {'NEW/BASE':>10}  "
                 f"{'95 % interval':<19} {'p (Holm)':>8}  verdict")
    last = None
    for r in rows:
        key = f"{r['pair']} {r['cell']}"
        if last is not None and key != last[0] and last[1]:
            lines += [f"  ↳ {w_}" for w_ in last[1]]
        ch = f"{r['change']:+.2%}" if "change" in r else "-"
        iv = f"[{r['lo']:+.1%}, {r['hi']:+.1%}]" if "lo" in r else "-"
        p = r.get("p_worse_holm") if r.get("verdict") == "regression" else \
            r.get("p_better_holm")
        p = "-" if p is None else f"{p:.3f}"
        lines.append(f"{key:<{w}}  {r['metric']:<22} {'yes' if r['gated'] else 'info':<4} "
                     f"{ch:>10}  {iv:<19} {p:>8}  {r['verdict']}")
        reasons = list(dict.fromkeys(r["why"])) if r["gated"] else []
        last = (key, (last[1] if last and last[0] == key else []) + reasons)
    if last and last[1]:
        lines += [f"  ↳ {w_}" for w_ in dict.fromkeys(last[1])]
    return "\n".join(lines)


def run(a, build, out=print):
    ents, pairs = entries_of(a, build)
    if a.conform is None:
        a.conform = "none"            # the gate is about speed; conformance is `conform`'s job
    opts = options.run_options(a, preset="ab")
    jf = None
    if a.json and a.json != "-":
        try:
            jf = open(a.json, "w")
        except OSError as e:
            raise UsageError(f"cannot write --json '{a.json}': {e.strerror or e}") from e
    try:
        code, run_dir = runner.run(opts, build, out=lambda s: None, entries=ents)
        if run_dir is None or code >= 128:
            return code
        d = RunData(run_dir)
        rows = rows_of(d, pairs, a.threshold, a.min_effect, a.alpha)
        result = {"threshold": a.threshold, "min_effect": a.min_effect, "alpha": a.alpha,
                  "run": str(run_dir), "rows": rows}
        result["exit"], result["outcome"] = outcome(rows)
        per_round = len(ents) * (opts.duration + opts.warmup + runner.SLICE_OVERHEAD_S)
        text = table(rows, result, per_round)
        out(text)
        out(f"report: {run_dir / 'report.html'}")
        (run_dir / "ab.json").write_text(json.dumps(result, indent=1, default=str))
        if a.json == "-":
            print(json.dumps(result, indent=1, default=str))
        elif jf is not None:
            jf.write(json.dumps(result, indent=1, default=str) + "\n")
        return result["exit"]
    finally:
        if jf is not None:
            jf.close()

"""`echobench history`: append runs to the results history, show its series, find their change
points. register() adds the command to the driver's parser, cmd() runs it and returns the exit
code: 0; 1 on a run-time failure (or, with `changes --fail-on-change`, when the newest change
of a series is a regression); 2 on usage (UsageError, raised to the driver).

Only argparse is imported here: the store and the detector (numpy, matplotlib for --html) are
imported when the command runs, so that `echobench check` stays fast.
"""
import argparse
import json
import math
import sys

from .util import UsageError, alpha_arg, human, percent_arg

DB_HELP = ("the history: an SQLite file, or postgresql://USER@HOST/DB for a team's "
           "PostgreSQL (default: results/history.sqlite)")




def _count(what, lo):
    def parse(text):
        try:
            v = int(text)
        except ValueError:
            v = lo - 1
        if v < lo:
            raise UsageError(f"bad {what} '{text}': expected a whole number >= {lo}")
        return v
    return parse


def register(subparsers, parser_class):
    """Adds `history` and its verbs to the driver's subparsers (parser_class: cli.Parser)."""
    common = parser_class(add_help=False)
    # --db before or after the verb; SUPPRESS keeps a verb's parser from overwriting it.
    common.add_argument("--db", metavar="PATH|URL", default=argparse.SUPPRESS, help=DB_HELP)
    filters = parser_class(add_help=False)
    filters.add_argument("--cell", action="append", metavar="GLOB",
                         help="cells to show, e.g. 'epoll/c:16/s:64/closed' or 'epoll/*' "
                              "(repeatable; default: every cell)")
    filters.add_argument("--metric", action="append", metavar="GLOB",
                         help="metrics, e.g. msgs_per_sec or 'p99*' (repeatable)")
    filters.add_argument("--branch", metavar="NAME", help="one branch ('-': runs without one)")
    filters.add_argument("--machine", metavar="GLOB", help="machine classes, e.g. '*EPYC*'")
    filters.add_argument("--last", type=_count("--last", 1), metavar="N",
                         help="each series' newest N runs only")
    filters.add_argument("--json", metavar="FILE|-", help="write the result as JSON")

    h = subparsers.add_parser(
        "history", help="the results history: add runs, show series, find change points",
        description="Every run appended to one history (SQLite or PostgreSQL), keyed by "
        "commit, branch, machine class (CPUs x CPU model / virtualization), cell and metric; "
        "series of per-run medians; persistent shifts found by E-divisive means with a "
        "permutation test. docs/RESULTS.md \"History\".")
    h.add_argument("--db", metavar="PATH|URL", default=None, help=DB_HELP)
    verbs = h.add_subparsers(dest="history_verb", metavar="VERB", parser_class=parser_class)
    add = verbs.add_parser("add", parents=[common], help="append run directories")
    add.add_argument("runs", nargs="+", metavar="RUN_DIR")
    add.add_argument("--branch", metavar="NAME", help="the runs' branch (default: from git "
                     "when their commit is in this checkout)")
    imp = verbs.add_parser("import", parents=[common],
                           help="append every run under a results directory (idempotent)")
    imp.add_argument("dir", metavar="DIR")
    imp.add_argument("--branch", metavar="NAME", help="the runs' branch (default: from git)")
    verbs.add_parser("show", parents=[common, filters],
                     help="the series per cell and metric (one line per run)")
    ch = verbs.add_parser("changes", parents=[common, filters],
                          help="change points: first commit, size with its interval, p")
    ch.add_argument("--alpha", type=alpha_arg, default=None,
                    help="significance of each change, per series (default 0.01)")
    ch.add_argument("--min-effect", type=percent_arg("--min-effect", zero=True), default=None,
                    metavar="PCT", help="smaller shifts are not reported (default 2)")
    ch.add_argument("--permutations", type=_count("--permutations", 1), default=None,
                    help="shuffles of the permutation test (default 199)")
    ch.add_argument("--seed", type=_count("--seed", 0), default=None,
                    help="seed of the shuffles and bootstraps (default fixed)")
    ch.add_argument("--all", action="store_true", help="list series without a change too")
    ch.add_argument("--html", metavar="FILE", help="write the trend plots as an HTML page")
    ch.add_argument("--fail-on-change", action="store_true",
                    help="exit 1 when the newest change of a series is a regression")
    return h


def cmd(args, build=None):
    """Runs `echobench history VERB`; returns the exit code (UsageError propagates: 2)."""
    from . import history
    verb = getattr(args, "history_verb", None)
    if not verb:
        raise UsageError("history needs a verb: add, import, show or changes")
    db = getattr(args, "db", None) or history.DEFAULT_DB
    if verb in ("add", "import"):
        return _add(history, db, args)
    with history.Store(db) as store:
        series = store.series(cells=args.cell, metrics=args.metric, branch=args.branch,
                              machine=args.machine, last=args.last)
    if not series:
        raise UsageError(f"no series in the history {db} match" + _filters_text(args))
    out = _output(args.json)
    if verb == "show":
        out(_show_text(series))
        _write_json(args.json, [_series_json(s) for s in series])
        return 0
    return _changes(series, args, out)


def _add(history, db, args):
    """add: every directory given must hold runs that read (else exit 2); import: a run
    that does not read (an interrupted run without measurements, a broken run.json) is
    skipped with its reason, and the rest imported."""
    if args.history_verb == "add":
        runs = []
        for p in args.runs:
            got = history.find_runs(p)
            if not got:
                raise UsageError(f"no run.json under '{p}'")
            runs += got
    else:
        runs = history.find_runs(args.dir)
        if not runs:
            raise UsageError(f"no run.json under '{args.dir}'")
    added = there = samples = skipped = 0
    with history.Store(db, create=True) as store:
        for run in runs:
            try:
                ok, key, n = store.add_run(run, branch=args.branch)
            except UsageError as e:
                if args.history_verb == "add":
                    raise
                skipped += 1
                print(f"skipped: {run}: {e}")
                continue
            added += ok
            there += not ok
            samples += n if ok else 0
            print(f"{'added' if ok else 'already there'}: {run} ({key[:12]}, {n} samples)")
    print(f"history {db}: {added} run(s) added ({samples} samples), {there} already there"
          + (f", {skipped} skipped" if skipped else ""))
    return 0


def _filters_text(args):
    parts = [f"{k} {v}" for k, v in (("--cell", args.cell), ("--metric", args.metric),
                                      ("--branch", args.branch), ("--machine", args.machine))
             if v]
    return f" ({', '.join(map(str, parts))})" if parts else " (it is empty)"


def _writable(path, option):
    """Opens an output file before anything is computed: an unwritable one is a usage
    error, never a half-done run."""
    if path and path != "-":
        try:
            open(path, "a").close()
        except OSError as e:
            raise UsageError(f"cannot write {option} '{path}': {e.strerror or e}") from None


def _output(json_out):
    """print, or stderr when the JSON goes to stdout."""
    _writable(json_out, "--json")
    if json_out == "-":
        return lambda s: print(s, file=sys.stderr)
    return print


def _write_json(json_out, obj):
    if not json_out:
        return
    text = json.dumps(obj, indent=1, default=str) + "\n"
    if json_out == "-":
        sys.stdout.write(text)
        return
    with open(json_out, "w") as f:
        f.write(text)


def _series_json(s):
    return {"machine_class": s.machine_class, "branch": s.branch, "cell": s.cell,
            "metric": s.metric, "unit": s.unit, "higher_is_better": s.higher_is_better,
            "points": [{"run_key": p.run_key, "utc_start": p.utc_start, "commit": p.commit,
                        "dirty": p.dirty, "median": p.median, "values": p.values,
                        "valid": p.valid} for p in s.points]}


def _direction_text(s):
    return {True: "higher is better", False: "lower is better"}.get(s.higher_is_better,
                                                                     "no direction")


def _show_text(series):
    lines = []
    for s in series:
        lines.append(f"{s.title} ({s.unit}, {_direction_text(s)}): {len(s.points)} run(s)")
        lines.append(f"  {'#':>4}  {'utc_start':<20}  {'commit':<16}  {'valid':>5}  "
                     f"{'median':>9}")
        for i, p in enumerate(s.points, 1):
            lines.append(f"  {i:>4}  {p.utc_start:<20}  {p.label:<16}  "
                         f"{sum(p.valid)}/{len(p.valid):<3}  {human(p.median):>9}")
    return "\n".join(lines)


def _changes(series, args, out):
    from . import changepoint as cp
    _writable(args.html, "--html")
    alpha = args.alpha if args.alpha is not None else cp.DEFAULT_ALPHA
    perms = args.permutations if args.permutations is not None else cp.DEFAULT_PERMUTATIONS
    if (perms + 1) * alpha < 1:
        raise UsageError(f"--permutations {perms} cannot reach p <= {alpha:g} (the smallest p "
                         f"is 1/{perms + 1}); give at least {math.ceil(1 / alpha) - 1}")
    opts = dict(alpha=alpha, permutations=perms,
                min_effect=args.min_effect if args.min_effect is not None
                else cp.DEFAULT_MIN_EFFECT,
                seed=args.seed if args.seed is not None else cp.DEFAULT_SEED)
    found, lines, figures = [], [], []
    short = 0
    for s in series:
        pts = s.usable()
        if len(pts) < 2 * cp.DEFAULT_MIN_SIZE:
            short += 1
            changes = []
        else:
            changes = cp.detect([p.median for p in pts], [p.label for p in pts], **opts)
        found.append((s, pts, changes))
        if changes or args.all:
            lines.append(f"{s.title}: {len(pts)} run(s), {len(changes)} change(s)")
            for c in changes:
                lines.append("  " + _change_text(s, pts, c))
            if args.html:
                figures.append((f"{s.title}: {len(pts)} runs", _svg(s, changes)))
    failing = [s for s, _, ch in found if ch and ch[-1].direction(s.higher_is_better) ==
               "regression"]
    n_changes = sum(len(ch) for _, _, ch in found)
    lines.append(
        f"{len(series)} series examined, {n_changes} change(s) in "
        f"{sum(1 for _, _, ch in found if ch)} (E-divisive, alpha {alpha:g} per series, {perms} "
        f"permutations, minimum effect {opts['min_effect']:.1%}); the newest change is a "
        f"regression in {len(failing)} series"
        + (f"; {short} series too short to test (fewer than {2 * cp.DEFAULT_MIN_SIZE} runs)"
           if short else ""))
    code = 1 if args.fail_on_change and failing else 0
    if args.fail_on_change:
        lines.append(f"exit {code}: " + ("the newest change is a regression in "
                                         f"{len(failing)} series" if failing else
                                         "no series ends on a regression"))
    out("\n".join(lines))
    if args.html:
        from .trend import CAPTION, page
        with open(args.html, "w") as f:
            f.write(page("echobench history: trends and change points", figures, CAPTION))
    _write_json(args.json, {"alpha": alpha, "permutations": perms,
                            "min_effect": opts["min_effect"], "seed": opts["seed"],
                            "series_examined": len(series), "exit": code,
                            "changes": [_change_json(s, pts, c, c is ch[-1])
                                        for s, pts, ch in found for c in ch]})
    return code


def _svg(s, changes):
    from .trend import trend_svg
    return trend_svg(s, changes)


def _change_text(s, pts, c):
    p = pts[c.index]
    return (f"run {c.index + 1} ({p.utc_start}), first commit {p.label}: {c.size:+.1%} "
            f"[{c.size_lo:+.1%}, {c.size_hi:+.1%}], p = {c.p_value:.3g}: "
            f"{c.direction(s.higher_is_better)} ({human(c.before_median)} -> "
            f"{human(c.after_median)} {s.unit}, {c.before_n} and {c.after_n} runs)")


def _change_json(s, pts, c, newest):
    d = c.as_dict()
    d.update({"machine_class": s.machine_class, "branch": s.branch, "cell": s.cell,
              "metric": s.metric, "unit": s.unit, "commit": pts[c.index].commit,
              "utc_start": pts[c.index].utc_start, "run_key": pts[c.index].run_key,
              "direction": c.direction(s.higher_is_better), "newest": newest})
    return d

"""Command line of scripts/echobench: check, run, compare, conform, report."""
import argparse
import json
import pathlib
import sys

# check must start fast (it is the main job's first verdict): the modules that pull in
# matplotlib and scipy (report, compare) are imported by the commands that need them.
from . import check, conform, matrix, runner
from .build import CONFORM, ROOT, SERVER, backend_args, build_dir, pick_backends, program
from .entries import Entry, parse_spec
from .knee import Slo
from .options import RunOptions
from .util import Parser, RunError, UsageError, parse_count, parse_cpus, parse_duration

CI_RECIPE = """\
CI recipe (keep a baseline run, compare every change against it, on the same machine class):
  # baseline, e.g. nightly on the main branch; keep ci/baseline as an artifact or cache.
  # 5 repetitions: the U test can then reach p <= 0.05 with margin. results/latest moves
  # only to a run that completed with at least one valid cell, so a failed or interrupted
  # run never becomes the baseline.
  scripts/echobench run --quick --repetitions 5 --out ci/results || exit 1
  rm -rf ci/baseline && cp -rL ci/results/latest ci/baseline
  # every change: the same options, open-loop rates taken from the baseline so that both
  # runs offer the same load, then compare.
  scripts/echobench run --quick --repetitions 5 --rates-from ci/baseline --out ci/results \\
    || exit 1
  scripts/echobench compare ci/baseline ci/results/latest --json ci/compare.json
  case $? in
    0) ;;                                   # no significant regression
    1) echo "regression"; exit 1 ;;         # >= 5 % worse and one-sided U test p <= 0.05
    3) echo "inconclusive"; exit 1 ;;       # too few repetitions, or cells missing in NEW
    *) echo "compare failed"; exit 1 ;;     # 2: usage or unreadable input
  esac
  # publish ci/results/latest/report.html, summary.md and ci/compare.json.
"""


def _duration(what):
    def parse(text):
        return parse_duration(text, what)
    return parse


def _threshold(text):
    t = str(text).strip().rstrip("%")
    try:
        v = float(t)
    except ValueError:
        raise UsageError(f"bad --threshold '{text}': expected a percentage like 5 or 2.5%") \
            from None
    if not 0 <= v < 1000:
        raise UsageError(f"bad --threshold '{text}': expected a percentage like 5 or 2.5%")
    return v / 100.0


def _alpha(text):
    try:
        v = float(text)
    except ValueError:
        v = -1
    if not 0 < v < 1:
        raise UsageError(f"bad --alpha '{text}': expected a probability like 0.05")
    return v


def make_parser():
    build_help = "build directory with the programs (default: $ECHOBENCH_BUILD or <repo>/build)"
    # --build is accepted before and after the command; SUPPRESS keeps a subcommand's parser
    # from overwriting a value given before it.
    common = Parser(add_help=False)
    common.add_argument("--build", metavar="DIR", default=argparse.SUPPRESS, help=build_help)
    p = Parser(prog="echobench",
               description="Runs echo-server backends under echo-load, writes Google Benchmark "
                           "JSON, reports and comparisons.",
               epilog=CI_RECIPE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--build", metavar="DIR", default=None, help=build_help)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    sub.add_parser("check", parents=[common],
                   help="start every backend, verify a short echo, stop it: one line each")

    r = sub.add_parser("run", parents=[common], help="run the benchmark matrix",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Matrix entries (backends and your servers) x connections x "
                       "sizes x modes x placements. Defaults: "
                       f"connections {matrix.DEFAULT['connections']}, sizes "
                       f"{matrix.DEFAULT['sizes']}, modes {matrix.DEFAULT['modes']}, "
                       f"{matrix.DEFAULT['duration']:g}s after {matrix.DEFAULT['warmup']:g}s "
                       f"warmup, {matrix.DEFAULT['repetitions']} repetitions. --quick: "
                       f"connections {matrix.QUICK['connections']}, sizes "
                       f"{matrix.QUICK['sizes']}, modes {matrix.QUICK['modes']}, "
                       f"{matrix.QUICK['duration']:g}s, {matrix.QUICK['repetitions']} "
                       f"repetitions (about 2.5 minutes with five backends).")
    r.add_argument("--quick", action="store_true",
                   help="the main job's preset (about 2.5 minutes with five backends)")
    r.add_argument("--backends", help="comma list of backends or variants, each optionally "
                                      "with a worker model: +tN (N threads), +pN (N prefork "
                                      "processes), e.g. epoll+t2,epoll+p2 (default: every "
                                      "usable backend; 'none': only --server/--target entries)")
    r.add_argument("--server", action="append", default=[], metavar="NAME=CMD",
                   help="your server: CMD starts it and prints 'listening ADDR', or contains "
                        "{port} (a free port is substituted, ready once it accepts); a fresh "
                        "one per cell; repeatable")
    r.add_argument("--target", action="append", default=[], metavar="NAME=ADDR",
                   help="an already running server, measured as it runs (no server CPU "
                        "figure); repeatable")
    r.add_argument("--connections", help="comma list of connection counts")
    r.add_argument("--sizes", help="comma list of message sizes (64, 4k; at most 64M)")
    r.add_argument("--modes", help="comma list: closed, open (= open25,open50,open75), openNN "
                                   "(NN %% of the reference entry's closed-loop peak: epoll, or "
                                   "the first entry), stream, sweep (the knee)")
    r.add_argument("--rates", help="comma list of absolute open-loop rates in msgs/s (5k, "
                                   "20000): cells rateN beside --modes")
    r.add_argument("--placement", default=None, metavar="LIST",
                   help="split (server and client on different CPUs, the default), shared "
                        "(the same CPU), free (unpinned); a comma list is a matrix axis")
    r.add_argument("--duration", type=_duration("--duration"), help="measured time per cell")
    r.add_argument("--warmup", type=_duration("--warmup"), help="warmup per cell (excluded)")
    r.add_argument("--repetitions", type=lambda t: parse_count(t, "--repetitions"),
                   help="rounds per cell (paired: each round measures every entry once, "
                        "in a balanced order), or fresh-server repetitions with --unpaired")
    r.add_argument("--unpaired", action="store_true",
                   help="a fresh server per cell and repetition, entries measured one after "
                        "the other (for first-connection effects); default: paired rounds "
                        "against servers that stay up")
    r.add_argument("--seed", type=lambda t: parse_count(t, "--seed"), default=1,
                   help="seed of the random order of the matrix's cell groups (default 1)")
    r.add_argument("--until-ci", type=_percent("--until-ci"), metavar="PCT",
                   help="repeat each cell until the 95%% CI half-width of its headline figure "
                        "is within PCT %% of the median, or --max-repetitions")
    r.add_argument("--max-repetitions", type=lambda t: parse_count(t, "--max-repetitions"),
                   help="the bound of --until-ci (default 10)")
    r.add_argument("--slo", type=Slo.parse, default=Slo("p99", 1000.0),
                   help="latency target of the sweep (default p99:1ms)")
    r.add_argument("--sweep-connections", type=lambda t: parse_count(t, "--sweep-connections"),
                   help="connection count of the sweep (default: the largest of --connections)")
    r.add_argument("--server-cpus", type=lambda t: parse_cpus(t, "--server-cpus"),
                   help="CPUs for the server (default: the first CPU)")
    r.add_argument("--client-cpus", type=lambda t: parse_cpus(t, "--client-cpus"),
                   help="CPUs for echo-load (default: the second CPU)")
    r.add_argument("--server-threads", type=lambda t: parse_count(t, "--server-threads"),
                   help="server threads (echo-server --threads; default: its own default)")
    r.add_argument("--client-threads", type=lambda t: parse_count(t, "--client-threads"),
                   help="echo-load threads (default: one per client CPU)")
    r.add_argument("--client-engine", metavar="NAME",
                   help="echo-load's engine (echo-load --engine): one that `echo-load "
                        "--version` lists as usable, e.g. epoll or uring (default: echo-load's "
                        "own default, recorded in run.json)")
    r.add_argument("--pipeline", type=lambda t: parse_count(t, "--pipeline"), default=1,
                   help="messages in flight per connection (echo-load --pipeline)")
    r.add_argument("--rates-from", metavar="DIR",
                   help="take the open-loop rates from this run's closed-loop peaks instead of "
                        "measuring them (for compare: the same offered load in both runs)")
    r.add_argument("--out", metavar="DIR", help="results root (default: <repo>/results)")
    r.add_argument("--conform", choices=("must", "quick", "all", "none"),
                   help="echo-conform per entry after the matrix: must (--must-only, the "
                        "default), quick (must without the long cases; the default of "
                        "--quick), all, none")
    r.add_argument("--conform-timeout", type=_duration("--conform-timeout"), default=120.0,
                   help="time limit per entry for echo-conform (default 120s)")
    r.add_argument("--load-hosts", metavar="DEST[,DEST...]",
                   help="run echo-load on these ssh destinations ([user@]host[:port]) instead "
                        "of here; connections and rate are split across them")
    r.add_argument("--ssh-option", action="append", default=[], metavar="OPT",
                   help="passed to ssh as -o OPT; repeatable")

    c = sub.add_parser("compare", parents=[common], help="compare two runs (exit 0 ok, 1 "
                       "significant regression, 2 usage or unreadable input, 3 inconclusive)",
                       description="Compare two runs metric by metric. Exit status: 0 no "
                       "significant regression; 1 a significant regression; 2 usage error or "
                       "unreadable input; 3 inconclusive (a change beyond the threshold that "
                       "the repetitions cannot test, a cell not comparable because echo-load's "
                       "self-checks failed, or BASE cells missing in NEW without "
                       "--allow-missing).", epilog=CI_RECIPE,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("base", metavar="BASE", help="run directory or Google Benchmark JSON file")
    c.add_argument("new", metavar="NEW", help="run directory or Google Benchmark JSON file")
    c.add_argument("--threshold", type=_threshold, default=0.05,
                   help="minimum effect size in percent (default 5)")
    c.add_argument("--alpha", type=_alpha, default=0.05,
                   help="significance level of the one-sided Mann-Whitney U test (default 0.05)")
    c.add_argument("--no-stats", action="store_true",
                   help="judge on the threshold alone (for single-repetition runs)")
    c.add_argument("--all", action="store_true", help="list unchanged metrics too")
    c.add_argument("--json", metavar="FILE", help="write the comparison as JSON ('-': stdout)")
    c.add_argument("--allow-missing", action="store_true",
                   help="cells of BASE missing in NEW are not inconclusive (exit 3)")

    f = sub.add_parser("conform", parents=[common],
                       help="echo-conform against every backend and given servers")
    f.add_argument("--backends", help="comma list (default: every usable backend; 'none' for "
                                      "external servers only)")
    f.add_argument("--server", action="append", default=[], metavar="[NAME=]CMD",
                   help="your server: CMD prints 'listening ADDR' (run through echo-conform "
                        "--exec) or contains {port} (started here, tested with --server-pid); "
                        "repeatable")
    f.add_argument("--target", action="append", default=[], metavar="[NAME=]ADDR",
                   help="an already running server to test (black box); repeatable")
    f.add_argument("--must-only", action="store_true", help="MUST cases only")
    f.add_argument("--timeout", type=_duration("--timeout"), default=300.0,
                   help="time limit per server (default 300s)")
    f.add_argument("--json", metavar="FILE", help="write the verdicts as JSON")
    f.add_argument("--tap-dir", metavar="DIR", help="keep each server's TAP output here")

    rep = sub.add_parser("report", parents=[common],
                         help="rebuild report.html and summary.md of a results directory")
    rep.add_argument("dir", metavar="DIR", nargs="?", default=str(ROOT / "results" / "latest"),
                     help="results directory (default: results/latest)")
    return p


def _percent(what):
    def parse(text):
        t = str(text).strip().rstrip("%")
        try:
            v = float(t)
        except ValueError:
            v = -1.0
        if not 0 < v < 100:
            raise UsageError(f"bad {what} '{text}': expected a percentage like 5 or 2.5%")
        return v
    return parse


def _backends(text):
    if text is None:
        return None
    if text.strip().lower() == "none":
        return []
    names = [b.strip() for b in text.split(",") if b.strip()]
    if not names:
        raise UsageError("empty matrix: --backends lists no backend")
    return names


def run_options(a):
    preset = matrix.QUICK if a.quick else matrix.DEFAULT
    modes = matrix.parse_modes(a.modes) if a.modes is not None else list(preset["modes"])
    if a.rates is not None:
        modes += [m for m in matrix.parse_rates(a.rates) if m not in modes]
    if a.max_repetitions is not None and a.until_ci is None:
        raise UsageError("--max-repetitions needs --until-ci PCT")
    reps = a.repetitions or preset["repetitions"]
    max_reps = a.max_repetitions or max(10, reps)
    if a.until_ci is not None and max_reps < reps:
        raise UsageError(f"--max-repetitions {max_reps} is below --repetitions {reps}")
    opts = RunOptions(
        backends=_backends(a.backends),
        connections=matrix.parse_connections(a.connections) if a.connections is not None
        else list(preset["connections"]),
        sizes=matrix.parse_sizes(a.sizes) if a.sizes is not None else list(preset["sizes"]),
        modes=modes,
        duration=a.duration or preset["duration"],
        warmup=a.warmup if a.warmup is not None else preset["warmup"],
        repetitions=reps, design="unpaired" if a.unpaired else "paired", seed=a.seed,
        server_cpus=a.server_cpus, client_cpus=a.client_cpus,
        server_threads=a.server_threads, client_threads=a.client_threads, pipeline=a.pipeline,
        client_engine=a.client_engine,
        preset="quick" if a.quick else "default",
        out_root=pathlib.Path(a.out).resolve() if a.out else None,
        conform=a.conform or ("quick" if a.quick else "must"),
        conform_timeout=a.conform_timeout, rates_from=a.rates_from,
        servers=list(a.server), targets=list(a.target),
        placements=matrix.parse_placements(a.placement) if a.placement is not None
        else [matrix.DEFAULT_PLACEMENT],
        until_ci=a.until_ci, max_repetitions=max_reps if a.until_ci is not None else None,
        slo=a.slo, sweep_connections=a.sweep_connections,
        sweep_duration=min(preset["sweep_duration"], a.duration or preset["sweep_duration"]),
        sweep_warmup=min(preset["sweep_warmup"],
                         a.warmup if a.warmup is not None else preset["sweep_warmup"]),
        load_hosts=[d.strip() for d in a.load_hosts.split(",") if d.strip()]
        if a.load_hosts else None,
        ssh_options=list(a.ssh_option))
    if a.load_hosts is not None and not opts.load_hosts:
        raise UsageError("--load-hosts lists no destination")
    if a.ssh_option and not opts.load_hosts:
        raise UsageError("--ssh-option needs --load-hosts")
    return opts


def _labelled(spec, option, what):
    """'NAME=VALUE' -> (NAME, VALUE); a bare VALUE is its own label (conform only)."""
    head = spec.split("=", 1)[0]
    if "=" in spec and head and all(ch.isalnum() or ch in "_.:+-" for ch in head) \
            and not head.startswith("-"):
        return parse_spec(spec, option)
    return spec, spec


def cmd_conform(a, build):
    exe = program(build, CONFORM)
    entries, skipped = [], []
    server = None
    if a.backends != "none":
        server = program(build, SERVER)
        wanted = None if a.backends is None else \
            [b.strip() for b in a.backends.split(",") if b.strip()]
        names, skipped = pick_backends(server, wanted)
        entries += [Entry(f"echo-server {' '.join(backend_args(b))}", "backend", backend=b)
                    for b in names]
    for spec in a.server:
        label, cmd = _labelled(spec, "--server", "COMMAND")
        entries.append(Entry(label, "server", command=cmd))
    entries += [Entry(label, "target", addr=addr) for label, addr in
                (_labelled(t, "--target", "ADDR") for t in a.target)]
    if not entries:
        raise UsageError("nothing to test: no backend, --server or --target")
    for e in entries:
        if e.kind == "server" and "{port}" in e.command:
            runner.preflight([e])             # a command that never gets ready: exit 2, now
    by_name = {e.name: e for e in entries}
    out_dir = None
    if a.tap_dir:
        out_dir = pathlib.Path(a.tap_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
    results = conform.run_entries(
        exe, entries, lambda name: [server, *backend_args(by_name[name].spec)],
        out_dir=out_dir, stem=lambda i, e: f"{i:02d}", must_only=a.must_only,
        timeout=a.timeout)
    w = max(len(k) for k in results)
    print(f"{'server':<{w}}  verdict")
    for label, r in results.items():
        print(f"{label:<{w}}  {conform.verdict_text(r)}")
    for name, why in skipped:
        print(f"{'echo-server --backend ' + name:<{w}}  skipped ({why})")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(results, fh, indent=1)
    return 0 if all(r["verdict"] == "pass" for r in results.values()) else 1


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    try:
        p = make_parser()
        a = p.parse_args(argv)
        if not a.command:
            p.print_help(sys.stderr)
            return 2
        build = build_dir(a.build)
        if a.command == "check":
            return check.run_check(build)
        if a.command == "run":
            code, _ = runner.run(run_options(a), build)
            return code
        if a.command == "compare":
            from . import compare
            out = print if a.json != "-" else (lambda s: print(s, file=sys.stderr))
            return compare.run(a.base, a.new, a.threshold, a.alpha, not a.no_stats, a.json,
                               a.all, out, allow_missing=a.allow_missing)
        if a.command == "conform":
            return cmd_conform(a, build)
        if a.command == "report":
            d = pathlib.Path(a.dir)
            if not d.exists():
                raise UsageError(f"no results directory '{a.dir}'")
            from . import report
            report.write(d)
            print(f"report: {d.resolve() / 'report.html'}")
            return 0
    except UsageError as e:
        print(f"echobench: {e}", file=sys.stderr)
        return 2
    except RunError as e:
        print(f"echobench: {e}", file=sys.stderr)
        return 1
    except runner.Interrupted as e:
        print(f"echobench: {e} received; stopped", file=sys.stderr)
        return 128 + e.signum
    except KeyboardInterrupt:
        print("echobench: interrupted", file=sys.stderr)
        return 130
    except OSError as e:
        # Files we could not write or read (results directory, --json): one line, run-time.
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        print(f"echobench: {where}{e.strerror or e}", file=sys.stderr)
        return 1
    return 2

"""Command line of scripts/echobench: check, run, compare, conform, report."""
import argparse
import json
import pathlib
import sys

# check must start fast (it is the main job's first verdict): the modules that pull in
# matplotlib and scipy (report, compare) are imported by the commands that need them.
from . import check, conform, matrix, runner
from .build import CONFORM, ROOT, SERVER, build_dir, pick_backends, program
from .util import RunError, UsageError, parse_count, parse_cpus, parse_duration

CI_RECIPE = """\
CI recipe (keep a baseline run, compare every change against it, on the same machine class):
  # baseline, e.g. nightly on the main branch; keep ci/baseline as an artifact or cache.
  # 5 repetitions: the U test can then reach p <= 0.05 with margin (the --quick preset alone
  # has 1 repetition, which cannot be tested).
  scripts/echobench run --quick --repetitions 5 --out ci/results
  rm -rf ci/baseline && cp -rL ci/results/latest ci/baseline
  # every change: the same options, open-loop rates taken from the baseline so that both
  # runs offer the same load, then compare. Exit 1 = a significant regression
  # (>= 5 % worse and one-sided Mann-Whitney p <= 0.05): fail the job.
  scripts/echobench run --quick --repetitions 5 --rates-from ci/baseline --out ci/results
  scripts/echobench compare ci/baseline ci/results/latest --json ci/compare.json
  # publish ci/results/latest/report.html, summary.md and ci/compare.json.
"""


class Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line (exit 2), as every echobench tool does."""

    def error(self, message):
        raise UsageError(message)


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
                       description="Matrix backends x connections x sizes x modes. Defaults: "
                       f"connections {matrix.DEFAULT['connections']}, sizes "
                       f"{matrix.DEFAULT['sizes']}, modes {matrix.DEFAULT['modes']}, "
                       f"{matrix.DEFAULT['duration']:g}s after {matrix.DEFAULT['warmup']:g}s "
                       f"warmup, {matrix.DEFAULT['repetitions']} repetitions. --quick: "
                       f"connections {matrix.QUICK['connections']}, sizes "
                       f"{matrix.QUICK['sizes']}, modes {matrix.QUICK['modes']}, "
                       f"{matrix.QUICK['duration']:g}s, 1 repetition (under 2 minutes).")
    r.add_argument("--quick", action="store_true", help="the short preset (under 2 minutes)")
    r.add_argument("--backends", help="comma list (default: every usable backend)")
    r.add_argument("--connections", help="comma list of connection counts")
    r.add_argument("--sizes", help="comma list of message sizes (64, 4k)")
    r.add_argument("--modes", help="comma list: closed, open (= open25,open50,open75), openNN, "
                                   "stream")
    r.add_argument("--duration", type=_duration("--duration"), help="measured time per cell")
    r.add_argument("--warmup", type=_duration("--warmup"), help="warmup per cell (excluded)")
    r.add_argument("--repetitions", type=lambda t: parse_count(t, "--repetitions"))
    r.add_argument("--server-cpus", type=lambda t: parse_cpus(t, "--server-cpus"),
                   help="CPUs for the server (default: the first CPU)")
    r.add_argument("--client-cpus", type=lambda t: parse_cpus(t, "--client-cpus"),
                   help="CPUs for echo-load (default: the second CPU)")
    r.add_argument("--threads", type=lambda t: parse_count(t, "--threads"),
                   help="server threads (echo-server --threads; default: its own default)")
    r.add_argument("--client-threads", type=lambda t: parse_count(t, "--client-threads"),
                   help="echo-load threads (default: one per client CPU)")
    r.add_argument("--pipeline", type=lambda t: parse_count(t, "--pipeline"), default=1,
                   help="messages in flight per connection (echo-load -p)")
    r.add_argument("--rates-from", metavar="DIR",
                   help="take the open-loop rates from this run's closed-loop peaks instead of "
                        "measuring them (for compare: the same offered load in both runs)")
    r.add_argument("--out", metavar="DIR", help="results root (default: <repo>/results)")
    r.add_argument("--conform", choices=("must", "quick", "all", "none"),
                   help="echo-conform per backend after the matrix: must (--must-only, the "
                        "default), quick (must without the 6 cases that take seconds; the "
                        "default of --quick), all, none")
    r.add_argument("--conform-timeout", type=_duration("--conform-timeout"), default=120.0,
                   help="time limit per backend for echo-conform (default 120s)")

    c = sub.add_parser("compare", parents=[common], help="compare two runs (exit 1 on a "
                       "significant regression)", epilog=CI_RECIPE,
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

    f = sub.add_parser("conform", parents=[common],
                       help="echo-conform against every backend and given servers")
    f.add_argument("--backends", help="comma list (default: every usable backend; 'none' for "
                                      "external servers only)")
    f.add_argument("--server", action="append", default=[], metavar="CMD",
                   help="an external server command that prints 'listening ADDR' (run through "
                        "echo-conform --exec); repeatable")
    f.add_argument("--target", action="append", default=[], metavar="ADDR",
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


def run_options(a):
    preset = matrix.QUICK if a.quick else matrix.DEFAULT
    opts = runner.RunOptions(
        backends=[b.strip() for b in a.backends.split(",") if b.strip()]
        if a.backends is not None else None,
        connections=matrix.parse_connections(a.connections) if a.connections is not None
        else list(preset["connections"]),
        sizes=matrix.parse_sizes(a.sizes) if a.sizes is not None else list(preset["sizes"]),
        modes=matrix.parse_modes(a.modes) if a.modes is not None else list(preset["modes"]),
        duration=a.duration or preset["duration"],
        warmup=a.warmup if a.warmup is not None else preset["warmup"],
        repetitions=a.repetitions or preset["repetitions"],
        server_cpus=a.server_cpus, client_cpus=a.client_cpus,
        server_threads=a.threads, client_threads=a.client_threads, pipeline=a.pipeline,
        preset="quick" if a.quick else "default",
        out_root=pathlib.Path(a.out).resolve() if a.out else None,
        conform=a.conform or ("quick" if a.quick else "must"),
        conform_timeout=a.conform_timeout, rates_from=a.rates_from)
    if opts.backends is not None and not opts.backends:
        raise UsageError("empty matrix: --backends lists no backend")
    return opts


def cmd_conform(a, build):
    exe = program(build, CONFORM)
    targets = []
    if a.backends != "none":
        server = program(build, SERVER)
        wanted = None if a.backends is None else \
            [b.strip() for b in a.backends.split(",") if b.strip()]
        names, skipped = pick_backends(server, wanted)
        targets += [(f"echo-server --backend {b}", {"exec_cmd": conform.backend_exec(server, b)})
                    for b in names]
    else:
        skipped = []
    targets += [(cmd, {"exec_cmd": cmd}) for cmd in a.server]
    targets += [(addr, {"target": addr}) for addr in a.target]
    if not targets:
        raise UsageError("nothing to test: no backend, --server or --target")
    if a.tap_dir:
        pathlib.Path(a.tap_dir).mkdir(parents=True, exist_ok=True)
    results = {}
    for i, (label, how) in enumerate(targets):
        tap = pathlib.Path(a.tap_dir) / f"{i:02d}.tap" if a.tap_dir else None
        if sys.stderr.isatty():
            sys.stderr.write(f"\r\033[Kconformance {i + 1}/{len(targets)}: {label}")
            sys.stderr.flush()
        results[label] = conform.run_one(exe, must_only=a.must_only, timeout=a.timeout,
                                         tap_path=tap, **how)
    if sys.stderr.isatty():
        sys.stderr.write("\r\033[K")
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
                               a.all, out)
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
    except KeyboardInterrupt:
        print("echobench: interrupted", file=sys.stderr)
        return 130
    except OSError as e:
        # Files we could not write or read (results directory, --json): one line, run-time.
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        print(f"echobench: {where}{e.strerror or e}", file=sys.stderr)
        return 1
    return 2

"""Command line of scripts/echobench: check, run, compare, conform, report."""
import argparse
import json
import pathlib
import sys

# check must start fast (it is the main job's first verdict): the modules that pull in
# matplotlib and scipy (report, compare) are imported by the commands that need them.
from . import ab, check, conform, history_cmd, matrix, options, runner
from .options import duration_arg
from .build import CONFORM, ROOT, SERVER, backend_args, build_dir, pick_backends, program
from .entries import Entry, parse_spec
from .util import Parser, RunError, UsageError, alpha_arg, percent_arg

CI_RECIPE = """\
CI recipe (the change against its base commit, both built on the same runner, in one run):
  git worktree add ../base "$(git merge-base HEAD origin/main)"
  meson setup ../base/build ../base && meson compile -C ../base/build
  meson setup build && meson compile -C build
  scripts/echobench ab --base ../base/build --new build --backends epoll,uring \\
      --json ci/ab.json
  case $? in
    0) ;;                                   # every gated metric equivalent or better
    1) echo "regression"; exit 1 ;;         # significant after Holm over every gated row
    3) echo "inconclusive" ;;               # no significant regression, not shown equal either
    *) echo "ab failed"; exit 1 ;;          # 2: usage
  esac
  # publish the run's report.html and ci/ab.json (docs/ci/github-actions.yml: a workflow)
"""


def compare_doc():
    """compare's description: the first paragraphs of compare.py's docstring, read without
    importing it (it pulls in the statistics)."""
    import ast
    src = (pathlib.Path(__file__).parent / "compare.py").read_text()
    return ast.get_docstring(ast.parse(src)).split("\n\nPer row")[0]


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
                       f"repetitions (about 3 minutes with six backends on 2 CPUs).")
    options.add_run_arguments(r)

    c = sub.add_parser("compare", parents=[common], help="compare runs made at different "
                       "times (exit 0 no regression, 1 regression, 2 usage, 3 inconclusive)",
                       description=compare_doc(), epilog=CI_RECIPE,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("base", metavar="BASE", help="a run directory, a Google Benchmark JSON "
                   "file, or a directory of runs")
    c.add_argument("new", metavar="NEW", help="the same, for the change")
    c.add_argument("--threshold", type=percent_arg("--threshold", zero=True, below=1000), default=0.05,
                   help="the worsening that matters, in percent (default 5)")
    c.add_argument("--alpha", type=alpha_arg, default=0.05,
                   help="family-wise error rate over every gated metric (Holm; default 0.05)")
    c.add_argument("--history", metavar="DB|URL",
                   help="a results history (echobench history): its run-to-run spread of each "
                        "cell lets one run a side be compared")
    c.add_argument("--assume-no-run-shift", action="store_true",
                   help="treat repetitions of different runs as independent (as Google "
                        "Benchmark's compare.py does): a run-to-run shift then reads as a "
                        "change; said in the output")
    c.add_argument("--all", action="store_true", help="list every metric, with its method")
    c.add_argument("--json", metavar="FILE", help="write the comparison as JSON ('-': stdout)")
    c.add_argument("--allow-missing", action="store_true",
                   help="metrics of BASE missing in NEW do not make the result inconclusive")

    ab.register(sub, common)

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
    f.add_argument("--timeout", type=duration_arg("--timeout"), default=300.0,
                   help="time limit per server (default 300s)")
    f.add_argument("--json", metavar="FILE", help="write the verdicts as JSON")
    f.add_argument("--tap-dir", metavar="DIR", help="keep each server's TAP output here")

    history_cmd.register(sub, Parser)

    rep = sub.add_parser("report", parents=[common],
                         help="rebuild report.html and summary.md of a results directory")
    rep.add_argument("dir", metavar="DIR", nargs="?", default=str(ROOT / "results" / "latest"),
                     help="results directory (default: results/latest)")
    rep.add_argument("--history", metavar="DB|URL",
                     help="a results history: the report shows the trends of the run's cells")
    return p


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
            code, _ = runner.run(options.run_options(a), build)
            return code
        if a.command == "compare":
            from . import compare
            out = print if a.json != "-" else (lambda s: print(s, file=sys.stderr))
            return compare.run(a.base, a.new, a.threshold, a.alpha, a.json, a.all, out,
                               allow_missing=a.allow_missing, history=a.history,
                               independent=a.assume_no_run_shift)
        if a.command == "history":
            return history_cmd.cmd(a, build)
        if a.command == "ab":
            return ab.run(a, build)
        if a.command == "conform":
            return cmd_conform(a, build)
        if a.command == "report":
            d = pathlib.Path(a.dir)
            if not d.exists():
                raise UsageError(f"no results directory '{a.dir}'")
            from . import report
            report.write(d, a.history)
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

"""Paired runs for the benchmarks that hold echo-server's backends against a yardstick
(churn.py, zerocopy.py): each backend runs right after or right before its yardstick, the order
alternating per round (A B, B A, ...), a fresh server per run and only that one up, so that drift
in a shared machine's load falls on both sides of each ratio alike.

One run: start the server pinned, take its CPU time (every process of its group, /proc
schedstat), run the client to completion pinned, take the CPU time again, stop the server (it
must exit 0 on SIGTERM). Figures only: nothing here passes or fails on speed."""
import os
import pathlib
import resource
import statistics
import subprocess
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "scripts"))
from echobench_lib.placement import pinned  # noqa: E402
from echobench_lib.procfs import CpuSample  # noqa: E402
from echobench_lib.server import Server  # noqa: E402
from echobench_lib import util  # noqa: E402
from echobench_lib.build import build_dir  # noqa: E402
from echobench_lib.util import RunError  # noqa: E402


class Parser(util.Parser):
    """The driver's parser (no abbreviated options) whose usage errors are one line on stderr
    and exit 2 here, since these scripts have no driver around them to catch UsageError."""

    def error(self, message):
        print(f"{self.prog}: {message}", file=sys.stderr)
        sys.exit(2)


PROGRAMS = {"server": "servers/echo-server", "minserver": "bench/minserver/echo-minserver",
            "minclient": "bench/minclient/echo-minclient"}


def resolve_programs(ap, a, keys):
    """Sets a.<key> (for each of keys: server, minserver, minclient) to its path: the option's
    value, else its place in the build directory; exit 2 when it is not an executable."""
    build = build_dir(a.build)
    for key in keys:
        path = pathlib.Path(getattr(a, key) or build / PROGRAMS[key])
        if not (path.is_file() and os.access(path, os.X_OK)):
            ap.error(f"--{key}: {path} is not an executable (build first)")
        setattr(a, key, path)


class Failed(Exception):
    """A program failed to run: the entry is reported as failed, the exit status is 1."""


def split_cpus():
    """(server CPUs, client CPUs) on different CPUs, or (None, None) with one CPU."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return [cpus[0]], [cpus[1]]


def run_client(argv, cpus, timeout):
    """Runs a client to completion: ({key: value} of its `key=value` output, its CPU seconds).
    Only one child runs at a time, so the growth of RUSAGE_CHILDREN is that child's time."""
    argv = [str(a) for a in argv]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=timeout, preexec_fn=pinned(cpus))
    except OSError as e:
        raise Failed(f"cannot start {argv[0]}: {e}") from e
    except subprocess.TimeoutExpired as e:
        raise Failed(f"{pathlib.Path(argv[0]).name} did not finish within {timeout:g}s") from e
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    fields = dict(w.split("=", 1) for w in p.stdout.split() if "=" in w)
    if p.returncode != 0:
        last = p.stderr.strip().splitlines()[-1] if p.stderr.strip() else ""
        raise Failed(f"{pathlib.Path(argv[0]).name} exited {p.returncode}: {last} "
                     f"{' '.join(f'{k}={v}' for k, v in fields.items())}".strip())
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return fields, cpu


def measure(server_argv, srv_cpus, client_argv, cli_cpus, timeout):
    """One run on a fresh server: (client fields, client CPU s, server CPU s)."""
    try:
        srv = Server(server_argv + ["--listen", "127.0.0.1:0"], cpus=srv_cpus)
    except RunError as e:
        raise Failed(f"{pathlib.Path(server_argv[0]).name}: {e}") from e
    try:
        before = CpuSample.take_group(srv.pid)
        fields, ccpu = run_client(client_argv + [srv.addr], cli_cpus, timeout)
        after = CpuSample.take_group(srv.pid)
    finally:
        rc, err = srv.stop()
    if rc != 0:
        raise Failed(f"{' '.join(map(str, server_argv[1:]))} exited {rc} on SIGTERM: "
                     f"{err.strip()[-200:]}")
    if before is None or after is None:
        raise Failed("the server's CPU time could not be read")
    return fields, ccpu, before.delta(after)[0]


def med(values):
    return statistics.median(values) if values else float("nan")


def span(values, fmt="{:.3f}"):
    """'median [min, max]' of per-round figures."""
    if not values:
        return "-"
    return (f"{fmt.format(med(values))} [{fmt.format(min(values))}, "
            f"{fmt.format(max(values))}]")


def load_average():
    return " ".join(f"{x:.2f}" for x in os.getloadavg())

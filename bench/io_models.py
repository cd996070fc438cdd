#!/usr/bin/python3
"""I/O models side by side: uring/epoll, epoll/minimal, the load engines, RSS per idle connection.

The I/O-model figures, in one run, with the minimal non-measuring client
(echo-minclient) at 256 connections x 128 B closed loop:
  - uring/epoll with server and client on different CPUs, and unpinned;
  - epoll/minimal: echo-server's epoll backend against echo-minserver (bench/minserver/);
  - echo-load's uring engine against its epoll engine (msgs/s and client CPU per message), when
    echo-load has `--engine` (otherwise the line is skipped with a note);
  - server RSS per idle connection for epoll, uring and their usable variants.
Each comparison alternates its two sides A B A B over several rounds (a fresh server per run,
only one up at a time), so drift in the machine's load hits both sides alike; it prints every round's figures and
the median ratio with its range. Only prints: a benchmark, never pass/fail. Exit 0 unless a
program failed to run (1), 2 for bad usage.
"""
import json
import os
import pathlib
import resource
import socket
import statistics
import subprocess
import sys
import time

# The driver's pieces: the one way this tree finds its programs, lists backends, places
# processes on CPUs and starts a server and reads its `listening` line.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "scripts"))
from echobench_lib.build import build_dir, list_backends, list_engines  # noqa: E402
from echobench_lib.placement import cpus_for, pinned  # noqa: E402
from echobench_lib.procfs import CpuSample, rss_kib  # noqa: E402
from echobench_lib.server import Server  # noqa: E402
from echobench_lib.util import (Parser, RunError, UsageError, duration_arg,  # noqa: E402
                                parse_duration)

# The goals the project set for these figures, printed next to them (never checked).
GOAL_URING_EPOLL = ">= 1.10"
GOAL_EPOLL_MINIMAL = ">= 0.97"
GOAL_ENGINE_CPU = "<= 0.85 (uring engine CPU/msg at least 15 % below epoll's)"
GOAL_RSS = "<= 2 KiB"


SECTIONS = ("uring-epoll", "epoll-minimal", "engines", "rss")


class Failed(Exception):
    """A program failed to run: reported, the section is abandoned, the exit status is 1."""


def client(argv, cpus, timeout):
    """Runs one client to completion: (stdout, CPU seconds it used). Raises Failed."""
    argv = [str(a) for a in argv]
    # Only one child runs at a time while this is measured, so the growth of RUSAGE_CHILDREN
    # over its wait is exactly that child's user + system time.
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, preexec_fn=pinned(cpus))
    except OSError as e:
        raise Failed(f"cannot start {argv[0]}: {e}") from e
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        raise Failed(f"{pathlib.Path(argv[0]).name} did not finish within {timeout:g}s")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        last = err.strip().splitlines()[-1] if err.strip() else ""
        raise Failed(f"{' '.join(argv)} exited {p.returncode}: {last}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return out, cpu


def start(argv, cpus):
    try:
        return Server(argv, cpus=cpus)
    except RunError as e:
        raise Failed(f"{pathlib.Path(argv[0]).name}: {e}") from e


def fmt_ratio(ratios):
    return (f"{statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f}, "
            f"{len(ratios)} rounds)")


class Bench:
    def __init__(self, a):
        self.a = a
        self.failures = []
        self.dur = duration_arg(a.duration)
        self.timeout = a.duration + 30

    def minclient(self, addr, cpus, threads):
        argv = [self.a.minclient, "-c", self.a.connections, "-s", self.a.size, "-d", self.dur]
        if threads:
            argv += ["-t", threads]
        out, _ = client(argv + [addr], cpus, self.timeout)
        fields = dict(w.split("=", 1) for w in out.split() if "=" in w)
        if "msgs_per_sec" not in fields:
            raise Failed(f"echo-minclient printed no msgs_per_sec: {out.strip()[:200]}")
        return float(fields["msgs_per_sec"])

    def alternate(self, title, goal, sides, cpus):
        """A B A B over the rounds: sides = [(name, server argv)]; cpus = (server CPUs, client
        CPUs, client threads) or Nones. Each run gets a fresh server and only that one is up,
        so an idle side (an SQPOLL thread, say) cannot take CPU from the measured one. Beside
        msgs/s it prints the server's CPU time per message (user + system of the server
        process, its kernel threads such as an SQPOLL thread excluded): on a busy machine the
        cost of a message moves less than the rate does."""
        print(f"\n{title}   (goal {goal})")
        (na, _), (nb, _) = sides
        print(f"  {'round':>5} {na + ' msgs/s':>16} {nb + ' msgs/s':>16} {'ratio':>7} "
              f"{na + ' us/msg':>14} {nb + ' us/msg':>14} {'CPU ratio':>9}")
        ratios, cpu = [], []
        for r in range(1, self.a.rounds + 1):
            (fa, ca), (fb, cb) = (self.one_run(argv, cpus) for _, argv in sides)
            ratios.append(fb / fa)
            cpu.append(cb / ca)
            print(f"  {r:>5} {fa:>16.0f} {fb:>16.0f} {fb / fa:>7.3f} {ca:>14.2f} {cb:>14.2f} "
                  f"{cb / ca:>9.3f}", flush=True)
        print(f"  {nb}/{na}: median {fmt_ratio(ratios)}")
        print(f"  server CPU per message {nb}/{na}: median {fmt_ratio(cpu)}")

    def one_run(self, argv, cpus):
        """(msgs/s, server CPU microseconds per message) of one run on a fresh server."""
        srv_cpus, cli_cpus, threads = cpus
        srv = start(argv, srv_cpus)
        try:
            before = CpuSample.take(srv.proc.pid)
            rate = self.minclient(srv.addr, cli_cpus, threads)
            used, _ = before.delta(CpuSample.take(srv.proc.pid))
        finally:
            rc, err = srv.stop()
        if rc != 0:
            raise Failed(f"{pathlib.Path(argv[0]).name} {' '.join(map(str, argv[1:3]))} "
                         f"exited {rc} on SIGTERM: {err.strip()[-200:]}")
        if not rate > 0:
            raise Failed(f"{pathlib.Path(argv[0]).name} {' '.join(map(str, argv[1:3]))}: "
                         f"no message echoed in {self.a.duration:g} s")
        return rate, used / (rate * self.a.duration) * 1e6

    def engines(self, where, cpus):
        """echo-load --engine epoll against --engine uring on one epoll server."""
        srv_cpus, cli_cpus, threads = cpus
        print(f"\nload engines: echo-load --engine uring vs --engine epoll against echo-server "
              f"epoll, {where.replace('minclient', 'echo-load')}   "
              f"(goal CPU/msg ratio {GOAL_ENGINE_CPU})")
        srv = start([self.a.server, "--backend", "epoll", "--listen", "127.0.0.1:0"], srv_cpus)
        try:
            print(f"  {'round':>5} {'epoll msgs/s':>13} {'us CPU/msg':>11} {'uring msgs/s':>13} "
                  f"{'us CPU/msg':>11} {'msgs ratio':>11} {'CPU ratio':>10}")
            msgs, cpu = [], []
            for r in range(1, self.a.rounds + 1):
                row = []
                for engine in ("epoll", "uring"):
                    argv = [self.a.load, "--engine", engine, "-c", self.a.connections,
                            "-s", self.a.size, "-d", self.dur, "--json", "-"]
                    if threads:
                        argv += ["-t", threads]
                    out, used = client(argv + [srv.addr], cli_cpus, self.timeout + 30)
                    try:
                        obj = json.loads(out)
                    except ValueError as e:
                        raise Failed(f"echo-load --engine {engine}: no JSON on stdout") from e
                    if not obj.get("messages"):
                        raise Failed(f"echo-load --engine {engine}: no message echoed")
                    row.append((obj["msgs_per_sec"], used / obj["messages"] * 1e6))
                (me, ce), (mu, cu) = row
                msgs.append(mu / me)
                cpu.append(cu / ce)
                print(f"  {r:>5} {me:>13.0f} {ce:>11.2f} {mu:>13.0f} {cu:>11.2f} "
                      f"{mu / me:>11.3f} {cu / ce:>10.3f}", flush=True)
            print(f"  msgs/s uring/epoll engine: median {fmt_ratio(msgs)}")
            print(f"  client CPU per message uring/epoll engine: median {fmt_ratio(cpu)}")
            print("  (client CPU: user + system time of echo-load over its whole run, setup "
                  "included, divided by the messages it measured)")
        finally:
            srv.stop()

    def rss(self, backends, count):
        print(f"\nserver RSS per idle connection: {count} idle connections, VmRSS of the server "
              f"process before and after   (goal epoll {GOAL_RSS})")
        print("  (user memory only: socket buffers and io_uring rings live in the kernel and are "
              "not in VmRSS)")
        print(f"  {'backend':<18} {'before KiB':>10} {'idle KiB':>9} {'KiB/conn':>9} "
              f"{'after echo KiB':>15} {'KiB/conn':>9}")
        for name in backends:
            try:
                row = idle_rss(self.a.server, name, count, self.a.size)
            except Failed as e:
                self.failures.append(f"rss {name}: {e}")
                print(f"  {name:<18} failed: {e}")
                continue
            before, idle, echoed = row
            print(f"  {name:<18} {before:>10} {idle:>9} {(idle - before) / count:>9.2f} "
                  f"{echoed:>15} {(echoed - before) / count:>9.2f}", flush=True)
        print("  (after echo: each connection has echoed one message and is idle again; "
              "KiB/conn against the same 'before')")

    def section(self, fn, *args):
        try:
            fn(*args)
        except Failed as e:
            self.failures.append(str(e))
            print(f"  FAILED to run: {e}", flush=True)


def echo_once(sock, size, deadline):
    data = bytes((i * 7 + 3) & 0xFF for i in range(size))
    sock.sendall(data)
    return recv_exact(sock, data, deadline)


def recv_exact(sock, data, deadline):
    got = b""
    while len(got) < len(data):
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        chunk = sock.recv(len(data) - len(got))
        if not chunk:
            raise Failed("connection closed before the echo came back")
        got += chunk
    if got != data:
        raise Failed("echo differs from what was sent")


def idle_rss(server, backend, count, size):
    """(KiB before, KiB with `count` idle connections, KiB after each echoed once)."""
    srv = start([server, "--backend", backend, "--listen", "127.0.0.1:0"], None)
    host, _, port = srv.addr.rpartition(":")
    target = (host.strip("[]"), int(port))
    socks = []
    deadline = time.monotonic() + 60
    try:
        try:
            # One echo first, so that whatever the server sets up lazily on its first
            # connection counts in 'before', not against the idle connections.
            with socket.create_connection(target, timeout=5) as s:
                echo_once(s, size, time.monotonic() + 5)
            time.sleep(0.2)
            before = rss_kib(srv.pid)
            for _ in range(count):
                if time.monotonic() > deadline:
                    raise Failed(f"{len(socks)} of {count} connections in 60 s")
                socks.append(socket.create_connection(target, timeout=5))
            # The server accepts in order: once a connection made after all of them echoes,
            # every one before it has been accepted.
            with socket.create_connection(target, timeout=5) as s:
                echo_once(s, size, time.monotonic() + 5)
            time.sleep(0.3)
            idle = rss_kib(srv.pid)
            data = bytes((i * 7 + 3) & 0xFF for i in range(size))
            for s in socks:
                s.sendall(data)
            for s in socks:
                recv_exact(s, data, deadline)
            time.sleep(0.3)
            echoed = rss_kib(srv.pid)
        except OSError as e:
            raise Failed(f"{len(socks)} connections open: {e}") from e
        if not srv.alive():
            raise Failed("the server exited")
        return before, idle, echoed
    finally:
        for s in socks:
            s.close()
        srv.stop()


def load_has_engine(load):
    try:
        p = subprocess.run([str(load), "--help"], capture_output=True, text=True, timeout=10,
                           stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "--engine" in p.stdout


def uring_engine_usable(load):
    """(usable, why): the uring engine may be missing from the build (no liburing) or refused
    by the kernel."""
    usable, state = list_engines(load).get("uring", (False, "no uring engine listed"))
    return usable, f"engine uring: {state}"


def parse_args():
    # The driver's parser: a usage error is one line on stderr and exit 2.
    ap = Parser(description=__doc__.splitlines()[0], allow_abbrev=False)
    ap.add_argument("--build", help="build directory (default: $ECHOBENCH_BUILD or <repo>/build)")
    ap.add_argument("--server", help="echo-server (default: BUILD/servers/echo-server)")
    ap.add_argument("--minserver", help="echo-minserver (default: BUILD/bench/minserver/...)")
    ap.add_argument("--minclient", help="echo-minclient (default: BUILD/bench/minclient/...)")
    ap.add_argument("--load", help="echo-load (default: BUILD/clients/echo-load)")
    ap.add_argument("--rounds", type=int, default=5, help="A B pairs per comparison (default 5)")
    ap.add_argument("--duration", default="2s", help="length of each run (default 2s)")
    ap.add_argument("--connections", type=int, default=256, help="default 256")
    ap.add_argument("--size", type=int, default=128, help="message bytes (default 128)")
    ap.add_argument("--epoll", default="epoll", help="the epoll side's backend (default epoll)")
    ap.add_argument("--uring", default="uring", help="the uring side's backend (default uring)")
    ap.add_argument("--only", action="append", choices=SECTIONS,
                    help="run only this part (repeatable; default: all of "
                         f"{', '.join(SECTIONS)})")
    ap.add_argument("--idle", type=int, default=5000,
                    help="idle connections for the RSS figure (default 5000, bounded by "
                         "RLIMIT_NOFILE; 0 skips it)")
    try:
        a = ap.parse_args()  # raises UsageError
        a.duration = parse_duration(a.duration, "--duration")
        if not 1 <= a.rounds <= 100:
            raise UsageError(f"bad --rounds {a.rounds}: 1..100")
        if not 1 <= a.connections <= 10000 or not 1 <= a.size <= 65536 or a.idle < 0:
            raise UsageError("--connections must be 1..10000, --size 1..65536, --idle >= 0")
        if a.duration > 60:
            raise UsageError("--duration: at most 60s per run")
        build = build_dir(a.build)
        defaults = {"server": "servers/echo-server", "minserver": "bench/minserver/echo-minserver",
                    "minclient": "bench/minclient/echo-minclient", "load": "clients/echo-load"}
        # Only the programs the chosen parts run must exist.
        parts = set(a.only or SECTIONS)
        needed = {"server"} | ({"minclient"} if parts & {"uring-epoll", "epoll-minimal"} else
                               set()) | ({"minserver"} if "epoll-minimal" in parts else set()) \
            | ({"load"} if "engines" in parts else set())
        for key, rel in defaults.items():
            if key not in needed:
                continue
            path = pathlib.Path(getattr(a, key) or build / rel)
            if not (path.is_file() and os.access(path, os.X_OK)):
                raise UsageError(f"--{key}: {path} is not an executable (build first, or give "
                                 f"--{key} PATH)")
            setattr(a, key, path)
    except UsageError as e:
        print(f"io_models.py: {e}", file=sys.stderr)
        sys.exit(2)
    return a


def main():
    a = parse_args()
    b = Bench(a)
    try:
        listed = list_backends(a.server)
    except RunError as e:
        sys.exit(f"io_models.py: {e}")
    usable = {n: u for n, u, _ in listed}
    reasons = {n: r for n, u, r in listed if not u}

    ncpu = len(os.sched_getaffinity(0))
    print(f"I/O models: {a.connections} connections x {a.size} B closed loop, echo-minclient, "
          f"{a.rounds} rounds x {a.duration:g} s, sides alternating A B A B")
    print(f"machine: {ncpu} CPUs usable, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} at the start")
    print("These are figures, not pass/fail: the goals are printed beside them, "
          "and the exit status is 0 unless a program failed to run.")

    epoll_argv = [a.server, "--backend", a.epoll, "--listen", "127.0.0.1:0"]
    uring_argv = [a.server, "--backend", a.uring, "--listen", "127.0.0.1:0"]
    placements = []
    if ncpu >= 2:
        srv_cpus, cli_cpus, _ = cpus_for("split")
        placements.append((f"server on CPU {srv_cpus[0]}, client on CPU {cli_cpus[0]} "
                           f"(minclient -t 1)", (srv_cpus, cli_cpus, 1)))
    else:
        print("note: one usable CPU: the separate-CPU placement is skipped")
    placements.append(("unpinned (minclient: one thread per CPU)", (None, None, None)))

    for side in (a.epoll, a.uring):
        if not usable.get(side):
            why = reasons.get(side, "not in --list-backends")
            print(f"\nnote: backend {side} is not usable here ({why}): its lines are skipped")
    want = set(a.only or SECTIONS)
    if "uring-epoll" in want and usable.get(a.epoll) and usable.get(a.uring):
        for where, cpus in placements:
            b.section(b.alternate, f"{a.uring}/{a.epoll}, {where}", GOAL_URING_EPOLL,
                      [(a.epoll, epoll_argv), (a.uring, uring_argv)], cpus)
    if "epoll-minimal" in want and usable.get(a.epoll):
        for where, cpus in placements:
            b.section(b.alternate, f"{a.epoll}/minimal (echo-minserver), {where}",
                      GOAL_EPOLL_MINIMAL,
                      [("minimal", [a.minserver, "--listen", "127.0.0.1:0"]),
                       (a.epoll, epoll_argv)], cpus)

    if "engines" not in want:
        pass
    elif not load_has_engine(a.load):
        print("\nload engines: skipped: echo-load has no --engine option yet (its --help does "
              "not mention it)")
    elif not usable.get("epoll"):
        print("\nload engines: skipped: the epoll backend is not usable here")
    elif not uring_engine_usable(a.load)[0]:
        print(f"\nload engines: skipped: echo-load {uring_engine_usable(a.load)[1]}")
    else:
        b.section(b.engines, *placements[0])

    if a.idle and "rss" in want:
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        # This process holds the client ends; leave room for its other descriptors.
        count = min(a.idle, hard - 64) if hard != resource.RLIM_INFINITY else a.idle
        resource.setrlimit(resource.RLIMIT_NOFILE, (count + 64, hard))
        if count < a.idle:
            print(f"\nnote: RLIMIT_NOFILE (hard {hard}) allows {count} idle connections, not "
                  f"{a.idle}")
        names = [n for n, u, _ in listed if u and n.split(":")[0] in ("epoll", "uring")]
        skipped = [f"{n} ({r})" for n, u, r in listed
                   if not u and n.split(":")[0] in ("epoll", "uring")]
        b.section(b.rss, names, count)
        if skipped:
            print(f"  not usable here: {', '.join(skipped)}")

    print(f"\nload average {' '.join(f'{x:.2f}' for x in os.getloadavg())} at the end")
    if b.failures:
        print(f"{len(b.failures)} part(s) failed to run:", file=sys.stderr)
        for f in b.failures:
            print(f"  {f}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

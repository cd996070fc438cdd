#!/usr/bin/python3
"""Zero copy: the zero-copy backends against the epoll backend, streaming 64 KiB messages, A B A B.

echo-minclient --stream keeps every connection sending 64 KiB writes as fast as the server takes
them and reads the echo back without copying it (recv with MSG_TRUNC), so the client spends less
per byte than a server that copies. Per backend and round, the backend and epoll run back to
back on fresh servers (the order alternating), server and client pinned to different CPUs (and
unpinned, with a client thread per CPU). Printed per backend: goodput (echoed bytes read back per
second) and its ratio to epoll's, server CPU per byte (all its threads, /proc schedstat) and its
ratio, and the client's CPU share: near 100 % the client is the limit, goodput then ranks
nothing and server CPU per byte is the figure. On loopback each side also runs part of the
other's TCP path in its softirqs, so the summary adds server + client CPU per byte, the cost of
the whole echo wherever it ran. Figures only: the goals are printed beside them;
exit 0 unless a program failed to run (1), 2 for bad usage.
"""
import os
import pathlib
import sys

from pairs import (Failed, Parser, load_average, measure, med, resolve_programs, span,
                   split_cpus)

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "scripts"))
from echobench_lib.build import list_backends  # noqa: E402
from echobench_lib.util import RunError  # noqa: E402

ZERO_COPY = ("splice", "uring:zc")
GOAL_CPU = 0.70        # server CPU per byte, x epoll's
GOAL_GOODPUT = 1.20    # goodput, x epoll's


def parse_args():
    ap = Parser(description=__doc__.splitlines()[0], allow_abbrev=False)
    ap.add_argument("--build", help="build directory (default: $ECHOBENCH_BUILD or <repo>/build)")
    ap.add_argument("--server", help="echo-server (default: BUILD/servers/echo-server)")
    ap.add_argument("--minclient", help="echo-minclient (default: BUILD/bench/minclient/...)")
    ap.add_argument("--rounds", type=int, default=5, help="pairs per backend (default 5)")
    ap.add_argument("--duration", type=float, default=2.0, help="seconds per run (default 2)")
    ap.add_argument("--connections", type=int, default=4, help="default 4")
    ap.add_argument("--size", type=int, default=65536, help="bytes per write (default 65536)")
    ap.add_argument("--backends", default=",".join(ZERO_COPY),
                    help=f"comma list (default {','.join(ZERO_COPY)})")
    ap.add_argument("--reference", default="epoll", help="default epoll")
    a = ap.parse_args()
    if not (1 <= a.rounds <= 50 and 0.2 <= a.duration <= 60 and 1 <= a.connections <= 1000
            and 1 <= a.size <= 65536):
        ap.error("--rounds 1..50, --duration 0.2..60, --connections 1..1000, --size 1..65536")
    resolve_programs(ap, a, ("server", "minclient"))
    return a


def main():
    a = parse_args()
    try:
        listed = {n: (u, why) for n, u, why in list_backends(a.server)}
    except RunError as e:
        sys.exit(f"zerocopy.py: {e}")
    srv_cpus, cli_cpus = split_cpus()
    ncpu = len(os.sched_getaffinity(0))
    placements = []
    if srv_cpus:
        placements.append((f"server CPU {srv_cpus[0]}, client CPU {cli_cpus[0]} (1 thread)",
                           srv_cpus, cli_cpus, 1))
    placements.append((f"unpinned, {ncpu} client threads", None, None, ncpu))
    print(f"zero copy: {a.connections} connections streaming {a.size} B writes, echo-minclient "
          f"--stream (reads discarded in the kernel); {a.rounds} rounds x {a.duration:g} s per "
          f"run, each backend paired with {a.reference}, order alternating; load average "
          f"{load_average()} at the start")
    entries = []
    for name in a.backends.split(","):
        usable, why = listed.get(name, (False, "not in echo-server --list"))
        if usable:
            entries.append(name)
        else:
            print(f"  {name}: skipped, unusable here: {why}")
    if not listed.get(a.reference, (False,))[0]:
        sys.exit(f"zerocopy.py: the reference {a.reference} is not usable here")
    results, failures = [], []
    for where, scpu, ccpu, threads in placements:
        client = [a.minclient, "--stream", "-c", a.connections, "-s", a.size, "-t", threads,
                  "-d", f"{a.duration}s"]
        print(f"\n{where}")
        print(f"  {'backend':<10} {'round':>5} {'MB/s':>8} {a.reference + ' MB/s':>11} "
              f"{'ratio':>6} {'ns CPU/KiB':>10} {a.reference:>8} {'ratio':>6} {'client CPU':>10}")
        for idx, name in enumerate(entries):
            rows = []
            try:
                for r in range(a.rounds):
                    sides = [("ref", a.reference), ("entry", name)]
                    if (r + idx) % 2:
                        sides.reverse()
                    got = {}
                    for side, backend in sides:
                        fields, cc, sc = measure([a.server, "--backend", backend], scpu,
                                                 client, ccpu, a.duration + 60)
                        nbytes = int(fields.get("bytes", 0))
                        if not nbytes:
                            raise Failed(f"{backend}: nothing echoed")
                        got[side] = (float(fields["bytes_per_sec"]) / 1e6,
                                     sc / nbytes * 1024 * 1e9, cc / a.duration / threads,
                                     (sc + cc) / nbytes)
                    (ge, ce, le, te), (gr, cr, _, tr) = got["entry"], got["ref"]
                    rows.append((ge, gr, ge / gr, ce, cr, ce / cr, le, te / tr))
                    print(f"  {name:<10} {r + 1:>5} {ge:>8.0f} {gr:>11.0f} {ge / gr:>6.3f} "
                          f"{ce:>10.1f} {cr:>8.1f} {ce / cr:>6.3f} {le:>9.0%}", flush=True)
            except Failed as e:
                failures.append(f"{name} ({where}): {e}")
                print(f"  {name:<10} FAILED: {e}", flush=True)
                continue
            results.append((where, name, rows))

    print(f"\nzero-copy summary (medians of {a.rounds} paired rounds; [min, max] of the ratios); "
          f"load average {load_average()} at the end")
    print(f"  goals: server CPU per byte <= {GOAL_CPU:.2f}x {a.reference}'s, goodput >= "
          f"{GOAL_GOODPUT:.2f}x")
    for where, name, rows in results:
        cpu, good = [row[5] for row in rows], [row[2] for row in rows]
        client = med([row[6] for row in rows])
        print(f"  {name:<10} {where}: goodput x {span(good)} "
              f"({'met' if med(good) >= GOAL_GOODPUT else 'not met'}), CPU/byte x {span(cpu)} "
              f"({'met' if med(cpu) <= GOAL_CPU else 'not met'}), client CPU {client:.0%}"
              f"{' (client-bound: goodput ranks nothing)' if client >= 0.9 else ''}; "
              f"server + client CPU/byte x {span([row[7] for row in rows])}")
    for f in failures:
        print(f"FAILED: {f}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""How much echo-load costs compared with echo-minclient, the least a client can do.

Starts one echo-server (epoll backend) and runs, against it and alternately, echo-minclient and
echo-load with each of its engines (--engine epoll, --engine uring): 64-byte messages over 1 and
256 connections (closed loop, one in flight each). Prints msgs/s of both and their ratio, and
for one connection echo-load's p50 round trip against the minimal client's average round trip.
Targets: msgs/s ratio >= 0.95, p50 ratio <= 1.10. An engine that cannot run here is named with
echo-load's reason and skipped. Only prints: a benchmark, not a pass/fail test. Exit 1 only
when a program fails to run.
"""
import argparse
import json
import pathlib
import statistics
import subprocess
import sys

# The driver's Server: the one way this tree starts a server and reads its `listening` line.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "scripts"))
from echobench_lib.build import list_engines  # noqa: E402
from echobench_lib.server import Server  # noqa: E402
from echobench_lib.util import RunError  # noqa: E402


def run(argv, timeout):
    p = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    if p.returncode != 0:
        sys.exit(f"overhead.py: {argv[0]} failed ({p.returncode}): {p.stderr.strip()}")
    return p.stdout


def minimal(exe, addr, conns, dur):
    out = dict(line.split("=") for line in run([exe, "-c", conns, "-d", f"{dur}s", addr],
                                               dur + 30).split())
    return float(out["msgs_per_sec"]), float(out.get("rtt_avg_us", "nan"))


def load(exe, addr, conns, dur, engine):
    obj = json.loads(run([exe, "--engine", engine, "-c", conns, "-d", f"{dur}s", "--json", "-",
                          addr], dur + 60))
    return obj["msgs_per_sec"], obj["latency_us"]["p50"], obj["latency_us"]["mean"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    ap.add_argument("--minclient", required=True)
    ap.add_argument("--load", required=True)
    ap.add_argument("--server", required=True)
    ap.add_argument("--duration", type=float, default=1.0, help="seconds per run")
    ap.add_argument("--reps", type=int, default=5, help="pairs of runs per case")
    a = ap.parse_args()

    try:
        srv = Server([a.server, "--backend", "epoll", "--listen", "127.0.0.1:0"])
    except RunError as e:
        sys.exit(f"overhead.py: echo-server: {e}")
    addr = srv.addr
    try:
        print(f"echo-load vs echo-minclient: echo-server epoll at {addr}, 64 B, "
              f"{a.duration:g} s runs, {a.reps} alternating pairs; ratios are medians of the "
              f"per-pair ratios (pairs run back to back, so drift in the machine's load "
              f"cancels)")
        engines = []
        for engine, (usable, state) in list_engines(a.load).items():
            if usable:
                engines.append(engine)
            else:
                print(f"  --engine {engine}: skipped: {state}")
        if not engines:
            sys.exit(f"overhead.py: {a.load} --version lists no usable engine")
        print(f"  {'connections':>11} {'engine':>6} {'minimal msgs/s':>15} "
              f"{'echo-load msgs/s':>17} {'ratio':>6}  (target >= 0.95)")
        pingpong = {}
        for conns in (1, 256):
            for engine in engines:
                m, l = [], []
                for i in range(a.reps):
                    # Alternate which goes first, so neither always runs on a warmer server.
                    if i % 2:
                        l.append(load(a.load, addr, conns, a.duration, engine))
                        m.append(minimal(a.minclient, addr, conns, a.duration))
                    else:
                        m.append(minimal(a.minclient, addr, conns, a.duration))
                        l.append(load(a.load, addr, conns, a.duration, engine))
                ratio = statistics.median(y[0] / x[0] for x, y in zip(m, l))
                print(f"  {conns:>11} {engine:>6} {statistics.median(x[0] for x in m):>15.0f} "
                      f"{statistics.median(y[0] for y in l):>17.0f} {ratio:>6.3f}", flush=True)
                if conns == 1:
                    pingpong[engine] = (statistics.median(x[1] for x in m),
                                        statistics.median(y[1] for y in l),
                                        statistics.median(y[2] for y in l),
                                        statistics.median(y[1] / x[1] for x, y in zip(m, l)),
                                        statistics.median(y[2] / x[1] for x, y in zip(m, l)))
        for engine, (avg_min, p50, mean, r_p50, r_mean) in pingpong.items():
            print(f"  ping-pong, 1 connection, --engine {engine}: echo-load p50 {p50:.2f} us "
                  f"(mean {mean:.2f} us), minimal average round trip {avg_min:.2f} us")
            print(f"    ratio p50/minimal {r_p50:.3f} (target <= 1.10); mean/minimal "
                  f"{r_mean:.3f} (the like-for-like figure: the minimal client can only time "
                  f"the average)")
    finally:
        srv.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

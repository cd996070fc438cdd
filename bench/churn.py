#!/usr/bin/python3
"""Connection churn: every backend and variant against the minimal epoll server, A B A B.

Each transaction connects, sends one message, reads its echo and closes (netperf's TCP_CRR),
driven by echo-minclient --churn (N concurrent loops, one client thread by default). Here the
accept path is the cost: a thread per connection, accept4 plus epoll_ctl, multishot accept. The
yardstick is echo-minserver (bench/minserver/: accept4 until EAGAIN, echo, close on EOF).

Per entry and round, the entry and the yardstick run back to back on fresh servers (the order
alternates), server and client pinned to different CPUs. Printed per entry: transactions/s,
its ratio to the yardstick (median of the rounds' ratios, [min, max]), server CPU per
transaction (all its threads and processes, /proc schedstat) and its ratio, and the client's CPU
share (near 100 %: the client may be the limit, and the CPU ratio ranks the servers). Worker
models (`epoll+t2`: --threads 2, `epoll+p2`: --processes 2) run unpinned beside an unpinned
yardstick. Figures only: the goals are printed beside them; exit 0 unless a program failed to
run (1), 2 for bad usage.
"""
import pathlib
import sys

from pairs import (Failed, Parser, load_average, measure, med, resolve_programs, span,
                   split_cpus)

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "scripts"))
from echobench_lib.build import list_backends  # noqa: E402
from echobench_lib.util import RunError  # noqa: E402

GOAL_LOOP = 0.95       # every event-loop backend, x the yardstick's transactions/s
GOAL_POOL = 0.80       # blocking:pool
SOURCES = "127.0.0.2-127.0.0.9"   # 8 x the ephemeral ports of one address: no port runs out


def goal_of(name):
    if "+" in name or name == "blocking":
        return None
    return GOAL_POOL if name == "blocking:pool" else GOAL_LOOP


def server_argv(a, name):
    """echo-server's argv for a backend, variant or worker model (`epoll+t2`, `epoll+p2`)."""
    backend, _, model = name.partition("+")
    argv = [a.server, "--backend", backend]
    if model:
        argv += ["--threads" if model[0] == "t" else "--processes", model[1:]]
    return argv


def parse_args():
    ap = Parser(description=__doc__.splitlines()[0], allow_abbrev=False)
    ap.add_argument("--build", help="build directory (default: $ECHOBENCH_BUILD or <repo>/build)")
    ap.add_argument("--server", help="echo-server (default: BUILD/servers/echo-server)")
    ap.add_argument("--minserver", help="echo-minserver (default: BUILD/bench/minserver/...)")
    ap.add_argument("--minclient", help="echo-minclient (default: BUILD/bench/minclient/...)")
    ap.add_argument("--rounds", type=int, default=5, help="pairs per entry (default 5)")
    ap.add_argument("--duration", type=float, default=2.0, help="seconds per run (default 2)")
    ap.add_argument("--connections", type=int, default=4,
                    help="concurrent transaction loops (default 4)")
    ap.add_argument("--size", type=int, default=64, help="message bytes (default 64)")
    ap.add_argument("--client-threads", type=int, default=1, help="default 1")
    ap.add_argument("--backends", help="comma list (default: every usable backend and variant)")
    ap.add_argument("--models", default="epoll+t2,epoll+p2",
                    help="worker models run unpinned (default epoll+t2,epoll+p2; 'none')")
    a = ap.parse_args()
    if not (1 <= a.rounds <= 50 and 0.2 <= a.duration <= 60 and 1 <= a.connections <= 10000
            and 1 <= a.size <= 65536 and 1 <= a.client_threads <= 64):
        ap.error("--rounds 1..50, --duration 0.2..60, --connections 1..10000, --size 1..65536, "
                 "--client-threads 1..64")
    resolve_programs(ap, a, ("server", "minserver", "minclient"))
    return a


def main():
    a = parse_args()
    try:
        listed = list_backends(a.server)
    except RunError as e:
        sys.exit(f"churn.py: {e}")
    usable = {n: u for n, u, _ in listed}
    wanted = a.backends.split(",") if a.backends else [n for n, _, _ in listed]
    models = [] if a.models == "none" else a.models.split(",")
    srv_cpus, cli_cpus = split_cpus()
    client = [a.minclient, "--churn", "-c", a.connections, "-s", a.size,
              "-t", a.client_threads, "-d", f"{a.duration}s", "--source", SOURCES]
    print(f"churn: connect, {a.size} B, echo, close; {a.connections} concurrent loops, "
          f"echo-minclient --churn with {a.client_threads} thread(s); {a.rounds} rounds x "
          f"{a.duration:g} s per run, each entry paired with the yardstick (echo-minserver), "
          f"order alternating")
    print(f"placement: server on CPU {srv_cpus}, client on CPU {cli_cpus} (worker models: "
          f"both unpinned); load average {load_average()} at the start")
    for n, u, why in listed:
        if n in wanted and not u:
            print(f"  {n}: skipped, unusable here: {why}")
    entries = [n for n in wanted if usable.get(n)] + models
    results, failures = {}, []
    print(f"\n  {'entry':<17} {'round':>5} {'tx/s':>9} {'minimal tx/s':>12} {'ratio':>6} "
          f"{'us CPU/tx':>9} {'minimal':>8} {'ratio':>6} {'client CPU':>10}")
    for idx, name in enumerate(entries):
        pinned = "+" not in name
        cpus = (srv_cpus, cli_cpus) if pinned else (None, None)
        rows = []
        try:
            for r in range(a.rounds):
                sides = [("min", [a.minserver]), ("entry", server_argv(a, name))]
                if (r + idx) % 2:
                    sides.reverse()
                got = {}
                for side, argv in sides:
                    fields, ccpu, scpu = measure(argv, cpus[0], client, cpus[1],
                                                 a.duration + 60)
                    tx = int(fields.get("transactions", 0))
                    if not tx:
                        raise Failed(f"{side}: no transaction completed")
                    got[side] = (float(fields["transactions_per_sec"]), scpu / tx * 1e6,
                                 ccpu / a.duration / a.client_threads)
                (te, ce, le), (tm, cm, _) = got["entry"], got["min"]
                rows.append((te, tm, te / tm, ce, cm, ce / cm, le))
                print(f"  {name:<17} {r + 1:>5} {te:>9.0f} {tm:>12.0f} {te / tm:>6.3f} "
                      f"{ce:>9.2f} {cm:>8.2f} {ce / cm:>6.3f} {le:>9.0%}", flush=True)
        except Failed as e:
            failures.append(f"{name}: {e}")
            print(f"  {name:<17} FAILED: {e}", flush=True)
            continue
        results[name] = rows

    print(f"\nchurn summary (medians of {a.rounds} paired rounds; [min, max] of the ratios); "
          f"load average {load_average()} at the end")
    print(f"  {'entry':<17} {'tx/s':>9} {'x minimal':>22} {'goal':>6} {'met':>4} "
          f"{'us CPU/tx':>9} {'CPU x minimal':>22} {'client CPU':>10}")
    for name, rows in results.items():
        ratios = [row[2] for row in rows]
        goal = goal_of(name)
        met = "-" if goal is None else ("yes" if med(ratios) >= goal else "no")
        print(f"  {name:<17} {med([row[0] for row in rows]):>9.0f} {span(ratios):>22} "
              f"{'' if goal is None else f'>={goal:.2f}':>6} {met:>4} "
              f"{med([row[3] for row in rows]):>9.2f} {span([row[5] for row in rows]):>22} "
              f"{med([row[6] for row in rows]):>9.0%}")
    print("  (client CPU: the client's user + system time over the run per client thread; "
          "near 100 % the client is the limit and the CPU column ranks the servers; worker "
          "models: against an unpinned yardstick, both CPUs shared with the client)")
    for f in failures:
        print(f"FAILED: {f}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

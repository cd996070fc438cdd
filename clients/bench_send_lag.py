#!/usr/bin/python3
"""How punctual echo-load's open loop is, and what that costs: against echo-server --backend
epoll with -c 16, at 1k, 10k, 40k msgs/s and at half of the closed-loop peak measured first,
each echo-load binary given (--load, repeatable: compare two builds) runs ROUNDS times,
alternating A B A B, and this prints the client's own send lag (p50, p99), the wait for a slot,
the time spent polling for due times and the early-wake margin, with the load average.

    /usr/bin/python3 clients/bench_send_lag.py --build build
    /usr/bin/python3 clients/bench_send_lag.py --load old/echo-load --load build/clients/echo-load
    /usr/bin/python3 clients/bench_send_lag.py --split --nice    # as on a machine of its own

--split puts the server on the first CPU this may use and echo-load (-t: the others) on the
rest, as the driver's split placement does; --nice runs echo-load and the server at nice -20
(root), so that other work on a shared machine does not decide their speed. (--fifo, SCHED_FIFO, is
stronger, but a thread that polls more than 95 % of a second is then throttled for 50 ms.)

A figure, not a test: it asserts nothing about the machine's speed."""
import argparse
import json
import os
import statistics
import subprocess
import sys


def start_server(build, cpus, nice):
    def place():
        os.sched_setaffinity(0, cpus)
        if nice:
            os.setpriority(os.PRIO_PROCESS, 0, -20)
    p = subprocess.Popen([os.path.join(build, "servers", "echo-server"), "--backend", "epoll",
                          "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, text=True,
                         preexec_fn=place)
    line = p.stdout.readline().split()
    if len(line) < 2 or line[0] != "listening":
        p.kill()
        sys.exit(f"echo-server did not start: {line}")
    return p, line[1]


def run(load, addr, args, prefix):
    p = subprocess.run([*prefix, load, "-c", "16", *args, "--json", "-", addr],
                       capture_output=True, text=True, timeout=120)
    if not p.stdout.startswith("{"):
        sys.exit(f"{load} failed: {p.stderr.strip()}")
    return json.loads(p.stdout)


def row(obj):
    lag = obj.get("send_lag_us") or {}
    wait = obj.get("slot_wait_us") or {}
    pacing = obj.get("pacing") or {}
    wall = obj["duration_s"] + obj.get("warmup_s", 0)
    return {"lag_p50": lag.get("p50"), "lag_p99": lag.get("p99"),
            "wait_p99": wait.get("p99"), "wait_share": obj.get("slot_wait_share"),
            "spin_cpu": pacing["spin_s"] / wall if "spin_s" in pacing else None,
            "early_us": pacing.get("wake_early_us"),
            "cpu": (obj["client_cpu"]["user_s"] + obj["client_cpu"]["sys_s"]) / wall,
            "valid": obj["valid"]}


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    ap.add_argument("--build", default="build")
    ap.add_argument("--load", action="append", help="echo-load binaries (default: the build's)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", default="3s")
    ap.add_argument("--split", action="store_true", help="server and echo-load on own CPUs")
    ap.add_argument("--nice", action="store_true", help="both at nice -20 (root)")
    ap.add_argument("--fifo", action="store_true", help="echo-load at SCHED_FIFO 1 (root)")
    a = ap.parse_args()
    loads = a.load or [os.path.join(a.build, "clients", "echo-load")]
    cpus = sorted(os.sched_getaffinity(0))
    if a.split and len(cpus) < 2:
        sys.exit("--split needs two CPUs")
    server_cpus = set(cpus[:1]) if a.split else set(cpus)
    client_cpus = cpus[1:] if a.split else cpus
    prefix = ["taskset", "-c", ",".join(map(str, client_cpus))]
    prefix += ["chrt", "-f", "1"] if a.fifo else []
    prefix += ["nice", "-n", "-20"] if a.nice else []
    srv, addr = start_server(a.build, server_cpus, a.nice)
    try:
        peak = run(loads[-1], addr, ["-d", a.duration], prefix)["msgs_per_sec"]
        rates = [1000, 10000, 40000, int(peak / 2)]
        print(f"closed-loop peak at -c 16: {peak:.0f} msgs/s; server on CPUs "
              f"{sorted(server_cpus)}, echo-load on {client_cpus}"
              f"{' at SCHED_FIFO' if a.fifo else ''}{' at nice -20' if a.nice else ''}; "
              f"load average {os.getloadavg()[0]:.2f}")
        print(f"{'rate':>7} {'binary':>24} {'lag p50':>8} {'lag p99':>9} {'wait p99':>9} "
              f"{'waited':>7} {'spin':>6} {'margin':>7} {'cpu':>6} valid")
        for rate in rates:
            got = {load: [] for load in loads}
            for _ in range(a.rounds):
                for load in loads:
                    got[load].append(row(run(load, addr, ["-R", str(rate), "-d", a.duration],
                                             prefix)))
            for load in loads:
                rs = got[load]

                def med(k):
                    vals = [r[k] for r in rs if r[k] is not None]
                    return statistics.median(vals) if vals else None
                print(f"{rate:>7} {load[-24:]:>24} {fmt(med('lag_p50'), '8.2f')} "
                      f"{fmt(med('lag_p99'), '9.1f')} {fmt(med('wait_p99'), '9.1f')} "
                      f"{fmt(med('wait_share'), '7.3f')} {fmt(med('spin_cpu'), '6.2f')} "
                      f"{fmt(med('early_us'), '7.0f')} {fmt(med('cpu'), '6.2f')} "
                      f"{sum(r['valid'] for r in rs)}/{len(rs)}")
        print(f"medians of {a.rounds} alternating runs; lag, wait, margin in us; spin and cpu "
              f"in CPUs (seconds per second of run); load average {os.getloadavg()[0]:.2f}")
    finally:
        srv.kill()
        srv.wait()


if __name__ == "__main__":
    main()

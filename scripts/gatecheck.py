#!/usr/bin/python3
"""How often echobench's verdicts are wrong, measured on this machine with servers of known
cost: bench/minserver (the minimal epoll echo server) against itself (A/A) and against itself
made a known percentage slower (`--cost-ns`, a calibrated busy loop per message). It prints
figures; it asserts nothing (speed and error rates are properties of the machine too).

    /usr/bin/python3 scripts/gatecheck.py aa    [--runs N]   # the runner: cells naming a winner
    /usr/bin/python3 scripts/gatecheck.py power [--runs N]   # the runner: the faster one named
    /usr/bin/python3 scripts/gatecheck.py ab    [--runs N]   # the gate: false alarms and power
    /usr/bin/python3 scripts/gatecheck.py compare [--runs N] # the cross-run recipe
    /usr/bin/python3 scripts/gatecheck.py history            # change points on a real history

scripts/aa-check.sh, power-check.sh and gate-check.sh call it.
"""
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from echobench_lib.build import build_dir  # noqa: E402
from echobench_lib.util import Parser, UsageError  # noqa: E402

ECHOBENCH = HERE / "echobench"
SLOWDOWNS = (0.02, 0.05, 0.10)
# The main job's cells (matrix.QUICK without the knee): where the runner must conclude.
CELLS = ["--connections", "1,64", "--sizes", "64", "--modes", "closed,open50"]


def binom_ci(k, n):
    """Clopper-Pearson 95 % interval of a proportion k/n."""
    from scipy.stats import beta
    lo = 0.0 if k == 0 else float(beta.ppf(0.025, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(0.975, k + 1, n - k))
    return lo, hi


def share(k, n):
    if not n:
        return "-"
    lo, hi = binom_ci(k, n)
    return f"{k}/{n} = {k / n:.1%} [{lo:.1%}, {hi:.1%}]"


class Checker:
    def __init__(self, a):
        self.a = a
        self.build = build_dir(a.build)
        self.minserver = self.build / "bench" / "minserver" / "echo-minserver"
        if not self.minserver.exists():
            raise UsageError(f"{self.minserver} is not built")
        self.tmp = pathlib.Path(tempfile.mkdtemp(prefix="echobench-gate-"))

    def cmd(self, cost_ns=0, per=64):
        """The minimal server, cost_ns of CPU slower per `per` bytes received."""
        return (f"{self.minserver} --listen 127.0.0.1:{{port}} --cost-ns {int(round(cost_ns))} "
                f"--cost-per {per}")

    def echobench(self, *args, timeout=1800):
        t0 = time.monotonic()
        r = subprocess.run(["/usr/bin/python3", str(ECHOBENCH), *map(str, args)],
                           capture_output=True, text=True, timeout=timeout,
                           env={**os.environ, "ECHOBENCH_BUILD": str(self.build)})
        return r, time.monotonic() - t0

    def run(self, tag, entries, extra=(), extra_cells=None, per=64):
        """One `echobench run` of the main job's cells with the given --server entries;
        returns its RunData."""
        from echobench_lib.rundata import RunData
        out = self.tmp / tag
        args = ["run", "--backends", "none", "--conform", "none", "--quick",
                *(extra_cells or CELLS), "--out", out,
                "--seed", self.a.seed + len(list(self.tmp.iterdir()))]
        for name, cost in entries:
            args += ["--server", f"{name}={self.cmd(cost, per)}"]
        r, secs = self.echobench(*args, *extra)
        runs = [p for p in out.iterdir() if p.is_dir() and p.name != "latest"] \
            if out.exists() else []
        if not runs:
            raise RuntimeError(f"echobench run failed (exit {r.returncode}): "
                               f"{r.stderr.strip()[-300:]}")
        return RunData(runs[0]), secs

    def calibrate(self):
        """The minimal server's CPU per message in each cell (ns): what a slowdown of p % adds
        per message."""
        d, _ = self.run("calibrate", [("base", 0)])
        cpu = {}
        self.calibrated_spots = []
        for spot in d.spots():
            v = d.median(d.cell(spot, "base"), "server_cpu_ns_per_msg")
            if v:
                cpu[spot.where()] = v
                self.calibrated_spots.append(spot)
        if not cpu:
            raise RuntimeError("no server CPU figure in the calibration run")
        return cpu

    # ---- the runner ----------------------------------------------------------------------
    def aa(self):
        wins = cells = 0
        kinds = {}
        for i in range(self.a.runs):
            d, secs = self.run(f"aa{i}", [("a", 0), ("b", 0)])
            for spot in d.spots():
                dec = d.decide(spot)
                cells += 1
                wins += bool(dec["winner"])
                kinds.setdefault(dec["verdict"], 0)
                kinds[dec["verdict"]] += 1
            print(f"aa run {i + 1}/{self.a.runs}: {secs:.0f} s; so far {share(wins, cells)} "
                  f"of cells named a winner", flush=True)
        print(f"A/A (the minimal server as two entries, {self.a.runs} runs of the main job's "
              f"cells): cells naming a winner {share(wins, cells)} (goal <= 5 %); verdicts "
              f"{kinds}")

    def power(self):
        """Each cell run alone, its slower entry made pct slower in that cell: one cost per
        message cannot be the same share of every cell's CPU (at 64 connections a message
        costs a fifth of what it costs at one)."""
        cpu = self.calibrate()
        print("minimal server's CPU per message: " +
              ", ".join(f"{k} {v:.0f} ns" for k, v in cpu.items()), flush=True)
        from echobench_lib.rundata import RunData  # noqa: F401 (the spots' type)
        spots = self.calibrated_spots
        for pct in SLOWDOWNS:
            right = wrong = cells = 0
            by_cell = {}
            for i in range(self.a.runs):
                for spot in spots:
                    per = spot.size
                    cells_args = ["--connections", str(spot.connections), "--sizes",
                                  str(spot.size), "--modes", spot.mode, "--cells", "none"]
                    d, _ = self.run(f"power{pct}-{i}-{spot.where()}".replace(" ", "_"),
                                    [("base", 0), ("slow", pct * cpu[spot.where()])],
                                    extra_cells=cells_args, per=per)
                    for sp in d.spots():
                        dec = d.decide(sp)
                        cells += 1
                        right += dec["winner"] == "base"
                        wrong += dec["winner"] == "slow"
                        k = by_cell.setdefault(sp.where(), [0, 0])
                        k[0] += dec["winner"] == "base"
                        k[1] += 1
            print(f"{pct:.0%} slower in every cell: the faster named in {share(right, cells)}, "
                  f"the slower in {wrong}; per cell: " +
                  ", ".join(f"{c} {k[0]}/{k[1]}" for c, k in by_cell.items()), flush=True)

    # ---- the gate ------------------------------------------------------------------------
    def ab_once(self, tag, cost):
        out = self.tmp / tag
        r, secs = self.echobench("ab", "--base-cmd", self.cmd(0), "--new-cmd", self.cmd(cost),
                                 "--out", out, "--seed", self.a.seed)
        return r.returncode, secs

    def ab(self):
        cpu = self.calibrate()
        ref = statistics.median(cpu.values())
        for label, pct in [("A/A", 0.0)] + [(f"{p:.0%} slower", p) for p in SLOWDOWNS]:
            codes, times = [], []
            for i in range(self.a.runs):
                rc, secs = self.ab_once(f"ab{pct}-{i}", pct * ref)
                codes.append(rc)
                times.append(secs)
            n1 = codes.count(1)
            what = "false alarms (exit 1)" if pct == 0 else "regressions found (exit 1)"
            print(f"ab {label}: {what} {share(n1, len(codes))}; exit codes "
                  f"{ {c: codes.count(c) for c in sorted(set(codes))} }; seconds per run "
                  f"median {statistics.median(times):.0f}, max {max(times):.0f}", flush=True)

    def compare(self):
        """The cross-run recipe: runs made one after the other, compared: one run a side,
        five a side, and one a side with a history of eight earlier runs."""
        def runs(tag, n, cost):
            out = self.tmp / tag
            for i in range(n):
                self.echobench("run", "--backends", "none", "--conform", "none", "--quick",
                               *CELLS, "--out", out, "--server", f"mini={self.cmd(cost)}")
            return out
        cpu = self.calibrate()
        ref = statistics.median(cpu.values())
        hist = self.tmp / "history.sqlite"
        self.echobench("history", "--db", hist, "import", runs("past", 8, 0))
        for label, pct in (("A/A", 0.0), ("5% slower", 0.05)):
            c1 = c5 = ch = 0
            for i in range(self.a.runs):
                b1, n1 = runs(f"b1-{pct}-{i}", 1, 0), runs(f"n1-{pct}-{i}", 1, pct * ref)
                r, _ = self.echobench("compare", b1, n1)
                c1 += r.returncode == 1
                r, _ = self.echobench("compare", "--history", hist, b1, n1)
                ch += r.returncode == 1
                if i < max(1, self.a.runs // 5):
                    b5, n5 = runs(f"b5-{pct}-{i}", 5, 0), runs(f"n5-{pct}-{i}", 5, pct * ref)
                    r, _ = self.echobench("compare", b5, n5)
                    c5 += r.returncode == 1
            n5_ = max(1, self.a.runs // 5)
            print(f"compare {label}: exit 1 with one run a side {share(c1, self.a.runs)}, "
                  f"with the history's spread {share(ch, self.a.runs)}, with five runs a "
                  f"side {share(c5, n5_)}", flush=True)

    def history(self):
        """A real history: 30 runs of the minimal server, the last 10 with a 10 % slowdown
        injected; the change points `echobench history changes` finds."""
        cpu = self.calibrate()
        ref = statistics.median(cpu.values())
        out = self.tmp / "hist-runs"
        for i in range(30):
            self.echobench("run", "--backends", "none", "--conform", "none", "--quick",
                           *CELLS, "--out", out, "--server",
                           f"mini={self.cmd(0.10 * ref if i >= 20 else 0)}")
        db = self.tmp / "real.sqlite"
        self.echobench("history", "--db", db, "import", out)
        r, _ = self.echobench("history", "--db", db, "changes", "--json", "-")
        try:
            found = json.loads(r.stdout)
        except ValueError:
            print(f"history changes failed: {r.stderr.strip()[-300:]}")
            return
        print("change points on a real 30-run history, 10 % slower from run 21:")
        print(json.dumps(found, indent=1)[:4000])


def main(argv=None):
    p = Parser(prog="gatecheck.py", description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=("aa", "power", "ab", "compare", "history"))
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--build", default=None)
    try:
        a = p.parse_args(argv)
        if a.runs < 1:
            raise UsageError("--runs must be at least 1")
        c = Checker(a)
    except UsageError as e:
        print(f"gatecheck.py: {e}", file=sys.stderr)
        return 2
    print(f"gatecheck {a.what}: {a.runs} runs; load average {os.getloadavg()[0]:.1f}; "
          f"temporary results in {c.tmp}", flush=True)
    try:
        getattr(c, a.what)()
    except RuntimeError as e:
        print(f"gatecheck.py: {e}", file=sys.stderr)
        return 1
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

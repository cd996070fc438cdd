"""`echobench run`: the matrix, one fresh pinned server per cell and repetition, echo-load
against it, the server's CPU time from /proc, then the files of results/<UTC>-<host>/."""
import csv
import datetime
import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

from . import conform, gbjson, machine
from .build import CONFORM, LOAD, ROOT, SERVER, pick_backends, program
from .matrix import Cell, build_matrix
from .metrics import from_load_json, unit
from .server import Server, pinned, verify_echo
from .util import RunError, UsageError, duration_arg

# Seconds a cell costs beyond warmup + duration (server start, echo check, stop): for the ETA.
CELL_OVERHEAD_S = 0.4


@dataclass
class RunOptions:
    backends: list = None          # None: every usable backend
    connections: list = field(default_factory=list)
    sizes: list = field(default_factory=list)
    modes: list = field(default_factory=list)
    duration: float = 3.0
    warmup: float = 1.0
    repetitions: int = 3
    server_cpus: list = None
    client_cpus: list = None
    server_threads: int = None
    client_threads: int = None
    pipeline: int = 1
    preset: str = "default"
    out_root: pathlib.Path = None
    conform: str = "must"          # must | quick | all | none
    conform_timeout: float = 120.0
    rates_from: str = None         # a results dir whose closed-loop peaks set the open rates


class CellFailed(Exception):
    pass


def placement(server_cpus, client_cpus):
    """(server CPUs, client CPUs, note). Default: server on the first allowed CPU, client on the
    second, so neither steals the other's core; on one CPU they share it, and the note says so."""
    allowed = sorted(os.sched_getaffinity(0))
    for cpus, what in ((server_cpus, "--server-cpus"), (client_cpus, "--client-cpus")):
        for c in cpus or []:
            if c not in allowed:
                raise UsageError(f"{what}: CPU {c} is not available here (allowed: "
                                 f"{','.join(map(str, allowed))})")
    if server_cpus is None and client_cpus is None:
        if len(allowed) >= 2:
            server_cpus, client_cpus = [allowed[0]], [allowed[1]]
        else:
            server_cpus = client_cpus = allowed
    elif server_cpus is None:
        server_cpus = [c for c in allowed if c not in client_cpus] or allowed
    elif client_cpus is None:
        client_cpus = [c for c in allowed if c not in server_cpus] or allowed
    shared = bool(set(server_cpus) & set(client_cpus))
    note = "server and client share CPU(s) " + ",".join(map(str, sorted(
        set(server_cpus) & set(client_cpus)))) if shared else "server and client on separate CPUs"
    return server_cpus, client_cpus, note


def make_run_dir(out_root):
    """results/<UTC time>-<host>/ (a -2, -3 suffix if two runs start in the same second)."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    host = re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname()) or "host"
    out_root.mkdir(parents=True, exist_ok=True)
    base = out_root / f"{stamp}-{host}"
    path, n = base, 1
    while True:
        try:
            path.mkdir()
            return path
        except FileExistsError:
            n += 1
            path = pathlib.Path(f"{base}-{n}")


def point_latest(out_root, run_dir):
    """results/latest -> run_dir, replaced atomically (relative, so the tree can move)."""
    link = out_root / "latest"
    tmp = out_root / f".latest.{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(os.path.relpath(run_dir, out_root), tmp)
    os.replace(tmp, link)


class Progress:
    """`cell i/n <label>, ETA m:ss` on one terminal line; silent when stderr is not a tty."""

    def __init__(self, total, per_run_estimate, stream=None):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.total, self.estimate = total, per_run_estimate
        self.done, self.t0 = 0, time.monotonic()

    def start(self, label):
        if not self.tty:
            return
        if self.done:
            per_run = (time.monotonic() - self.t0) / self.done
        else:
            per_run = self.estimate
        eta = int(per_run * (self.total - self.done))
        self.stream.write(f"\r\033[Kcell {self.done + 1}/{self.total} {label}, "
                          f"ETA {eta // 60}:{eta % 60:02d}")
        self.stream.flush()

    def step(self):
        self.done += 1

    def note(self, text):
        """A line that must stay on screen (a failed cell), above the progress line."""
        if self.tty:
            self.stream.write("\r\033[K")
        self.stream.write(text + "\n")
        self.stream.flush()

    def finish(self):
        if self.tty:
            self.stream.write("\r\033[K")
            self.stream.flush()


class Runner:
    def __init__(self, opts, build, run_dir, server_cpus, client_cpus):
        self.opts, self.build, self.run_dir = opts, build, run_dir
        self.server_exe = program(build, SERVER)
        self.load_exe = program(build, LOAD)
        self.server_cpus, self.client_cpus = server_cpus, client_cpus
        self.client_threads = opts.client_threads or len(client_cpus)
        self.cpu_method = None
        (run_dir / "hgrm").mkdir(exist_ok=True)
        (run_dir / "raw").mkdir(exist_ok=True)

    def server_argv(self, backend):
        argv = [self.server_exe, "--backend", backend, "--listen", "127.0.0.1:0"]
        if self.opts.server_threads:
            argv += ["--threads", str(self.opts.server_threads)]
        return argv

    def measure(self, cell, rep, rate=None, duration=None, warmup=None, tag=None):
        """One echo-load run against a fresh server; returns a sample dict or raises
        CellFailed with the reason."""
        duration = duration or self.opts.duration
        warmup = self.opts.warmup if warmup is None else warmup
        stem = f"{cell.key}_{tag or f'r{rep}'}"
        json_path = self.run_dir / "raw" / f"{stem}.json"
        hgrm_path = self.run_dir / "hgrm" / f"{stem}.hgrm"
        log_path = self.run_dir / "raw" / f"{stem}.log"
        try:
            srv = Server(self.server_argv(cell.backend), cpus=self.server_cpus)
        except RunError as e:
            raise CellFailed(str(e)) from e
        try:
            why = verify_echo(srv.addr, sorted({1, cell.size}))
            if why:
                raise CellFailed(f"echo check before measuring: {why}")
            argv = [self.load_exe, srv.addr, "-c", str(cell.connections),
                    "-s", str(cell.size), "-d", duration_arg(duration),
                    "--warmup", duration_arg(warmup),
                    "-t", str(max(1, min(self.client_threads, cell.connections))),
                    "--seed", str(1 + rep), "--json", json_path, "--hgrm", hgrm_path]
            if self.opts.pipeline and self.opts.pipeline > 1:
                argv += ["-p", str(self.opts.pipeline)]
            if cell.mode == "stream":
                argv.append("--stream")
            elif rate is not None:
                argv += ["-R", str(max(1, int(rate)))]
            cpu_s, window_s, rc = self._load(argv, srv, log_path, warmup, duration,
                                             cell.connections)
            server_alive = srv.alive()
        finally:
            src, serr = srv.stop()
        load = self._read_json(json_path, rc, log_path)
        if not server_alive:
            raise CellFailed(f"server died during the run (exit {src}): "
                             f"{_last_line(serr) or 'no message'}")
        if load.get("mismatches"):
            raise CellFailed(f"{load['mismatches']} mismatched echo bytes: the server corrupts "
                             f"data")
        if not load.get("messages") and not load.get("bytes"):
            raise CellFailed(f"echo-load measured nothing (exit {rc}): "
                             f"{load.get('error') or _last_line(_read(log_path))}")
        metrics = from_load_json(load, cpu_s, window_s, rate)
        sample = {"cell": cell, "repetition": rep, "metrics": metrics,
                  "messages": load.get("messages") or 0, "warnings": [],
                  "cpu_method": self.cpu_method if cpu_s is not None else None}
        if rc != 0 or load.get("complete") is False:
            sample["warnings"].append(f"echo-load exit {rc}, complete={load.get('complete')}: "
                                      f"{load.get('error') or _last_line(_read(log_path))}")
        if metrics.get("errors"):
            sample["warnings"].append(f"{int(metrics['errors'])} connection errors: "
                                      f"{load.get('errors')}")
        if src not in (0, None):
            sample["warnings"].append(f"server exit {src} after SIGTERM")
        return sample

    def _load(self, argv, srv, log_path, warmup, duration, connections):
        """Runs echo-load, sampling the server's CPU inside the measured window. Returns
        (server CPU seconds, wall seconds between the samples, echo-load exit code)."""
        # Connecting many sockets takes time before echo-load's warmup starts; inset the window
        # by 10 % of the duration on each side so it stays inside the steady state.
        inset = 0.1 * duration
        budget = warmup + duration + 30.0 + connections / 100.0
        with open(log_path, "w") as log:
            t0 = time.monotonic()
            proc = subprocess.Popen([str(a) for a in argv], stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT,
                                    preexec_fn=pinned(self.client_cpus))
            samples = []
            try:
                for at in (t0 + warmup + inset, t0 + warmup + duration - inset):
                    left = at - time.monotonic()
                    if left > 0:
                        try:
                            proc.wait(left)
                            break          # echo-load ended early: no CPU figure
                        except subprocess.TimeoutExpired:
                            pass
                    samples.append((time.monotonic(), srv.cpu_sample()))
                rc = proc.wait(max(1.0, t0 + budget - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                raise CellFailed(f"echo-load did not finish within {budget:.0f}s") from None
            except BaseException:
                proc.kill()
                proc.wait()
                raise
        if len(samples) == 2 and None not in (samples[0][1], samples[1][1]) and \
                samples[1][0] > samples[0][0]:
            cpu_s, self.cpu_method = samples[0][1].delta(samples[1][1])
            return cpu_s, samples[1][0] - samples[0][0], rc
        return None, None, rc

    @staticmethod
    def _read_json(path, rc, log_path):
        try:
            with open(path) as f:
                return json.load(f)
        except (OSError, ValueError):
            raise CellFailed(f"echo-load exit {rc}, no JSON: "
                             f"{_last_line(_read(log_path)) or 'no message'}") from None


def _read(path):
    try:
        return pathlib.Path(path).read_text(errors="replace")
    except OSError:
        return ""


def _last_line(text):
    lines = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
    return lines[-1].strip()[:300] if lines else ""


def write_cells_csv(path, samples):
    """Tidy: one row per cell, repetition and metric."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["backend", "connections", "size", "mode", "repetition", "metric", "value",
                    "unit"])
        for s in samples:
            c = s["cell"]
            for metric, value in s["metrics"].items():
                w.writerow([c.backend, c.connections, c.size, c.mode, s["repetition"], metric,
                            repr(float(value)), unit(metric)])


def run(opts, build, out=print):
    """Runs the matrix and writes every result file. Returns (exit code, run dir)."""
    server_exe = program(build, SERVER)
    program(build, LOAD)
    backends, skipped = pick_backends(server_exe, opts.backends)
    cells = build_matrix(backends, opts.connections, opts.sizes, opts.modes)
    server_cpus, client_cpus, place_note = placement(opts.server_cpus, opts.client_cpus)
    given_peaks = baseline_peaks(opts.rates_from) if opts.rates_from else {}
    out_root = opts.out_root or ROOT / "results"
    run_dir = make_run_dir(out_root)
    runner = Runner(opts, build, run_dir, server_cpus, client_cpus)

    ctx = machine.context(build)
    ctx.update({
        "placement": {"server_cpus": server_cpus, "client_cpus": client_cpus,
                      "method": "sched_setaffinity", "note": place_note,
                      "allowed_cpus": sorted(os.sched_getaffinity(0))},
        "server_threads": opts.server_threads or "default",
        "client_threads": runner.client_threads,
        "pipeline": opts.pipeline,
        "preset": opts.preset,
        "duration_s": opts.duration, "warmup_s": opts.warmup,
        "repetitions": opts.repetitions,
        "backends": backends, "unusable_backends": {n: r for n, r in skipped},
        "connections": opts.connections, "sizes": opts.sizes, "modes": opts.modes,
        "metric_encoding": "real_time/cpu_time are lower-is-better times: msgs_per_sec as ns "
                           "per message (cpu_time: server CPU ns per message), bytes_per_sec "
                           "as us per MiB, latencies in us; the natural value is in each "
                           "entry's 'echobench' object",
        "utc_start": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    })
    if opts.repetitions < 2:
        ctx["note"] = ("1 repetition: figures are single measurements; compare cannot test "
                       "significance on this run")

    total = len(cells) * opts.repetitions
    per_run = opts.warmup + opts.duration + CELL_OVERHEAD_S
    progress = Progress(total, per_run)
    est = int(total * per_run)
    print(f"echobench: {len(cells)} cells x {opts.repetitions} repetition(s) on "
          f"{', '.join(backends)}, about {est // 60}:{est % 60:02d} plus conformance; "
          f"server on CPU {','.join(map(str, server_cpus))}, client on CPU "
          f"{','.join(map(str, client_cpus))}; writing {run_dir}", file=sys.stderr)
    samples, failed, calibrations = [], [], {}
    peaks = dict(given_peaks)
    if opts.rates_from:
        ctx["rates_from"] = str(opts.rates_from)
    interrupted = False
    try:
        for rep in range(opts.repetitions):
            for cell in cells:
                progress.start(f"{cell.label()} rep {rep + 1}/{opts.repetitions}")
                try:
                    rate = None
                    if cell.open_pct is not None:
                        peak = peaks.get(cell.group)
                        if peak is None:
                            peak = calibrate(runner, cell, calibrations, peaks)
                        rate = peak * cell.open_pct / 100.0
                    s = runner.measure(cell, rep, rate)
                    samples.append(s)
                    if cell.mode == "closed" and cell.group not in peaks:
                        peaks[cell.group] = s["metrics"].get("msgs_per_sec") or None
                    for w in s["warnings"]:
                        progress.note(f"echobench: {cell.label()} rep {rep}: {w}")
                except CellFailed as e:
                    failed.append({"cell": cell.label(), "name": cell.name("*"),
                                   "repetition": rep, "reason": str(e)})
                    progress.note(f"echobench: {cell.label()} rep {rep}: FAILED: {e}")
                progress.step()
    except KeyboardInterrupt:
        interrupted = True
        progress.note("echobench: interrupted; writing the results measured so far")
    progress.finish()

    ctx["failed_cells"] = failed
    ctx["warnings"] = [{"cell": s["cell"].label(), "repetition": s["repetition"], "warning": w}
                       for s in samples for w in s["warnings"]]
    methods = sorted({s["cpu_method"] for s in samples if s.get("cpu_method")})
    ctx["server_cpu_source"] = {
        "methods": methods,
        "explanation": "CPU time of the server process over the measured window: the sum of "
                       "/proc/PID/task/*/schedstat (ns) when its threads were the same at both "
                       "samples, else utime+stime from /proc/PID/stat (clock ticks)"}
    ctx["closed_loop_peaks"] = {f"{b}/c:{c}/s:{sz}": v for (b, c, sz), v in peaks.items()}
    ctx["calibrations"] = calibrations
    ctx["interrupted"] = interrupted

    conform_results = {}
    if not interrupted:
        try:
            conform_results = run_conformance(opts, build, backends, run_dir, out)
        except KeyboardInterrupt:
            interrupted = ctx["interrupted"] = True
            progress.note("echobench: conformance interrupted; writing the results")
    with open(run_dir / "conform.json", "w") as f:
        json.dump(conform_results, f, indent=1)
    ctx["utc_end"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")

    with open(run_dir / "run.json", "w") as f:
        json.dump(gbjson.build_run_json(ctx, samples, opts.repetitions), f, indent=1)
    write_cells_csv(run_dir / "cells.csv", samples)
    from . import report      # matplotlib: imported only once there is something to draw
    summary = report.write(run_dir)
    point_latest(out_root, run_dir)

    out(summary)
    out(f"report: {run_dir / 'report.html'}")
    if failed:
        out(f"echobench: {len(failed)} of {total} cell runs failed (see the report)")
    if interrupted:
        return 130, run_dir
    # A failed cell (server died, echo wrong, nothing measured) is a finding, not noise.
    return (1 if failed or not samples else 0), run_dir


def baseline_peaks(path):
    """{(backend, connections, size): msgs/s} from another run's context, so that open-loop
    cells offer the same absolute rates as that run (compare then compares like with like)."""
    ctx = gbjson.load(path).get("context", {})
    peaks = {}
    for key, value in (ctx.get("closed_loop_peaks") or {}).items():
        m = re.fullmatch(r"(.+)/c:(\d+)/s:(\d+)", key)
        if m and value:
            peaks[(m.group(1), int(m.group(2)), int(m.group(3)))] = float(value)
    if not peaks:
        raise UsageError(f"--rates-from {path}: that run has no closed-loop peaks")
    return peaks


def calibrate(runner, cell, calibrations, peaks):
    """A short closed-loop run that sets the open-loop rates when the matrix has no closed
    mode (or its closed cell failed)."""
    closed = Cell(cell.backend, cell.connections, cell.size, "closed")
    try:
        s = runner.measure(closed, 0, duration=min(1.0, runner.opts.duration),
                           warmup=min(0.25, runner.opts.warmup), tag="calibration")
    except CellFailed as e:
        peaks[cell.group] = None
        raise CellFailed(f"no closed-loop peak to set the open-loop rate: {e}") from e
    peak = s["metrics"].get("msgs_per_sec")
    if not peak:
        raise CellFailed("closed-loop calibration measured no messages")
    calibrations[f"{cell.backend}/c:{cell.connections}/s:{cell.size}"] = peak
    peaks[cell.group] = peak
    return peak


def run_conformance(opts, build, backends, run_dir, out):
    """echo-conform per backend into conform.json: --must-only (must), --must-only without
    the long cases (quick), everything (all)."""
    exe = program(build, CONFORM, required=False)
    if opts.conform == "none":
        return {b: {"verdict": "not run", "note": "--conform none"} for b in backends}
    if exe is None:
        return {b: {"verdict": "not run", "note": f"{build / CONFORM} is not built"}
                for b in backends}
    (run_dir / "conform").mkdir(exist_ok=True)
    server_exe = program(build, SERVER)
    skip = ()
    if opts.conform == "quick":
        known = conform.catalogue(exe)
        skip = tuple(c for c in conform.QUICK_SKIP if c in known)
    results = {}
    tty = sys.stderr.isatty()
    for i, b in enumerate(backends, 1):
        if tty:
            sys.stderr.write(f"\r\033[Kconformance {i}/{len(backends)} {b}")
            sys.stderr.flush()
        results[b] = conform.run_one(
            exe, exec_cmd=conform.backend_exec(server_exe, b, opts.server_threads),
            must_only=opts.conform in ("must", "quick"), timeout=opts.conform_timeout,
            skip=skip,
            json_path=run_dir / "conform" / f"{b}.json",
            tap_path=run_dir / "conform" / f"{b}.tap")
    if tty:
        sys.stderr.write("\r\033[K")
    return results


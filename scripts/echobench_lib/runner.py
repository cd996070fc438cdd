"""`echobench run`: the matrix, one fresh pinned server per cell and repetition (our backends and
the user's --server entries; --target entries are measured as they run), echo-load against it,
the server's CPU time from /proc, the knee sweep, then the files of results/<UTC>-<host>/.

SIGTERM, SIGINT and SIGHUP stop the children (each runs in its own process group, which is
signalled as a whole) and write what was measured, marked incomplete."""
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
import threading
import time
from dataclasses import dataclass, field, replace

from . import bounds, conform, gbjson, machine
from . import sweep as knee
from .build import (CONFORM, LOAD, ROOT, SERVER, backend_args, list_backends, list_engines,
                    pick_backends, program)
from .entries import make_entries, reference
from .matrix import DEFAULT_PLACEMENT, Cell, build_matrix
from .metrics import from_load_json, unit
from .server import Server, pinned, start_command, verify_echo
from .util import RunError, UsageError, duration_arg

# Seconds a cell costs beyond warmup + duration (server start, echo check, stop): for the ETA.
CELL_OVERHEAD_S = 0.4


@dataclass
class RunOptions:
    backends: list = None          # None: every usable backend; []: none (--backends none)
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
    client_engine: str = None      # echo-load --engine; None: echo-load's default
    pipeline: int = 1
    preset: str = "default"
    out_root: pathlib.Path = None
    conform: str = "must"          # must | quick | all | none
    conform_timeout: float = 120.0
    rates_from: str = None         # a results dir whose closed-loop peaks set the open rates
    servers: list = field(default_factory=list)   # ["NAME=CMD"]
    targets: list = field(default_factory=list)   # ["NAME=ADDR"]
    placements: list = field(default_factory=lambda: [DEFAULT_PLACEMENT])
    until_ci: float = None         # percent: repeat until the CI half-width is within it
    max_repetitions: int = None
    slo: tuple = ("p99", 1000.0)
    sweep_connections: int = None  # default: the largest connection count
    sweep_duration: float = 1.0
    sweep_warmup: float = 0.25
    load_hosts: list = None        # ssh destinations (remote.LoadHosts)
    ssh_options: list = field(default_factory=list)


class CellFailed(Exception):
    pass


class Interrupted(BaseException):
    """SIGTERM, SIGINT or SIGHUP during the run: stop the children, write what there is."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _on_signal(signum, frame):
    raise Interrupted(signum)


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def cpus_for(placement, server_cpus, client_cpus):
    """(server CPUs, client CPUs, note) for a placement: split = different CPUs (the server on
    the first allowed CPU, the client on the second, or as --server-cpus/--client-cpus say),
    shared = both on the server's CPU, free = unpinned (None, None)."""
    allowed = sorted(os.sched_getaffinity(0))
    for cpus, what in ((server_cpus, "--server-cpus"), (client_cpus, "--client-cpus")):
        for c in cpus or []:
            if c not in allowed:
                raise UsageError(f"{what}: CPU {c} is not available here (allowed: "
                                 f"{','.join(map(str, allowed))})")
    if placement == "free":
        return None, None, "unpinned: the kernel places server and client"
    if placement == "shared":
        cpus = server_cpus or client_cpus or allowed[:1]
        return cpus, cpus, "server and client share CPU(s) " + ",".join(map(str, cpus))
    if server_cpus is None and client_cpus is None:
        if len(allowed) >= 2:
            server_cpus, client_cpus = [allowed[0]], [allowed[1]]
        else:
            server_cpus = client_cpus = allowed
    elif server_cpus is None:
        server_cpus = [c for c in allowed if c not in client_cpus] or allowed
    elif client_cpus is None:
        client_cpus = [c for c in allowed if c not in server_cpus] or allowed
    shared = sorted(set(server_cpus) & set(client_cpus))
    note = ("server and client share CPU(s) " + ",".join(map(str, shared))) if shared else \
        "server and client on separate CPUs"
    return server_cpus, client_cpus, note


def placement(server_cpus, client_cpus):
    """The default (split) placement: (server CPUs, client CPUs, note)."""
    return cpus_for("split", server_cpus, client_cpus)


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


def _read(path):
    try:
        return pathlib.Path(path).read_text(errors="replace")
    except OSError:
        return ""


def _last_line(text):
    lines = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
    return lines[-1].strip()[:300] if lines else ""


class _Target:
    """A --target entry: already running, never restarted, no CPU figure."""

    def __init__(self, addr):
        self.addr = addr

    def alive(self):
        return True

    def cpu_sample(self):
        return None

    def stop(self, *a, **k):
        return None, ""


class Runner:
    def __init__(self, opts, build, run_dir, entries, load_hosts=None):
        self.opts, self.build, self.run_dir = opts, build, run_dir
        self.server_exe = program(build, SERVER)
        self.load_exe = program(build, LOAD)
        self.entries = {e.name: e for e in entries}
        self.load_hosts = load_hosts
        self.cpu_method = None
        self.cpus = {}
        for p in opts.placements:
            self.cpus[p] = cpus_for(p, opts.server_cpus, opts.client_cpus)
        (run_dir / "hgrm").mkdir(exist_ok=True)
        (run_dir / "raw").mkdir(exist_ok=True)

    def client_threads(self, placement):
        if self.opts.client_threads:
            return self.opts.client_threads
        client = self.cpus[placement][1]
        return len(client) if client else len(os.sched_getaffinity(0))

    def server_argv(self, backend):
        return [self.server_exe, *backend_args(backend, self.opts.server_threads),
                "--listen", "127.0.0.1:0"]

    def start(self, name, placement=DEFAULT_PLACEMENT):
        """A ready server for entry `name` (a fresh one, except for --target)."""
        e = self.entries[name]
        cpus = self.cpus[placement][0]
        if e.kind == "target":
            return _Target(e.addr)
        if e.kind == "server":
            return start_command(e.command, cpus=cpus)
        return Server(self.server_argv(name), cpus=cpus)

    def measure(self, cell, rep, rate=None, duration=None, warmup=None, tag=None):
        """One echo-load run against a fresh server; returns a sample dict or raises
        CellFailed with the reason."""
        duration = duration or self.opts.duration
        warmup = self.opts.warmup if warmup is None else warmup
        stem = f"{cell.key}_r{rep}" + (f"_{tag}" if tag else "")
        json_path = self.run_dir / "raw" / f"{stem}.json"
        hgrm_path = self.run_dir / "hgrm" / f"{stem}.hgrm"
        log_path = self.run_dir / "raw" / f"{stem}.log"
        try:
            srv = self.start(cell.backend, cell.placement)
        except RunError as e:
            raise CellFailed(str(e)) from e
        try:
            why = verify_echo(srv.addr, sorted({1, cell.size}))
            if why:
                raise CellFailed(f"echo check before measuring: {why}")
            threads = max(1, min(self.client_threads(cell.placement), cell.connections))
            base = ["--size", str(cell.size), "--duration", duration_arg(duration),
                    "--warmup", duration_arg(warmup), "--threads", str(threads),
                    "--seed", str(1 + rep)]
            if self.opts.pipeline and self.opts.pipeline > 1:
                base += ["--pipeline", str(self.opts.pipeline)]
            if self.opts.client_engine:
                base += ["--engine", self.opts.client_engine]
            if cell.mode == "stream":
                base.append("--stream")
            if self.load_hosts is not None:
                load, cpu_s, window_s, rc = self._remote(base, srv, cell, rate, stem, warmup,
                                                         duration)
            else:
                argv = [self.load_exe, *base, "--connections", str(cell.connections),
                        "--json", json_path, "--hgrm", hgrm_path]
                if rate is not None and cell.mode != "stream":
                    argv += ["--rate", str(max(1, int(rate)))]
                argv.append(srv.addr)
                cpu_s, window_s, rc = self._load(argv, srv, log_path, warmup, duration,
                                                 cell.connections, cell.placement)
                load = self._read_json(json_path, rc, log_path)
            server_alive = srv.alive()
        finally:
            src, serr = srv.stop()
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
        valid = bool(load.get("valid", True))
        sample = {"cell": replace(cell, offered_rate=float(rate) if rate else None),
                  "repetition": rep, "metrics": metrics, "load": load,
                  "messages": load.get("messages") or 0, "warnings": [],
                  "valid": valid, "invalid_reasons": list(load.get("invalid_reasons") or []),
                  "cpu_method": self.cpu_method if cpu_s is not None else None}
        if rc not in (0, 3) or load.get("complete") is False:
            sample["warnings"].append(f"echo-load exit {rc}, complete={load.get('complete')}: "
                                      f"{load.get('error') or _last_line(_read(log_path))}")
        if metrics.get("errors"):
            sample["warnings"].append(f"{int(metrics['errors'])} connection errors: "
                                      f"{load.get('errors')}")
        if not valid:
            sample["warnings"].append("echo-load's self-checks failed: " +
                                      "; ".join(sample["invalid_reasons"] or ["(no reason)"]))
        # A user's server (often a shell, or a runtime without a SIGTERM handler) that dies of
        # the SIGTERM we sent it did what was asked; our backends must exit 0.
        fine = (0, None, -signal.SIGTERM) if cell.entry_kind == "server" else (0, None)
        if src not in fine:
            sample["warnings"].append(f"server exit {src} after SIGTERM")
        return sample

    def _window(self, srv, t0, warmup, duration, finished):
        """Samples the server's CPU twice inside the measured window (inset by 10 % of the
        duration on each side, so it stays inside the steady state). finished(timeout) waits
        for the load and says whether it ended. Returns [(time, CpuSample)]."""
        inset = 0.1 * duration
        samples = []
        for at in (t0 + warmup + inset, t0 + warmup + duration - inset):
            left = at - time.monotonic()
            if left > 0 and finished(left):
                return []          # the load ended early: no CPU figure
            samples.append((time.monotonic(), srv.cpu_sample()))
        return samples

    def _cpu(self, samples):
        if len(samples) == 2 and None not in (samples[0][1], samples[1][1]) and \
                samples[1][0] > samples[0][0]:
            cpu_s, self.cpu_method = samples[0][1].delta(samples[1][1])
            return cpu_s, samples[1][0] - samples[0][0]
        return None, None

    def _load(self, argv, srv, log_path, warmup, duration, connections, placement):
        """Runs echo-load (in its own process group), sampling the server's CPU inside the
        measured window. Returns (server CPU seconds, wall seconds between the samples,
        echo-load exit code)."""
        budget = warmup + duration + 30.0 + connections / 100.0
        with open(log_path, "w") as log:
            t0 = time.monotonic()
            proc = subprocess.Popen([str(a) for a in argv], stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT,
                                    preexec_fn=pinned(self.cpus[placement][1]),
                                    start_new_session=True)

            def finished(timeout):
                try:
                    proc.wait(timeout)
                    return True
                except subprocess.TimeoutExpired:
                    return False
            try:
                samples = self._window(srv, t0, warmup, duration, finished)
                if not finished(max(1.0, t0 + budget - time.monotonic())):
                    _stop_group(proc, signal.SIGINT)
                    raise CellFailed(f"echo-load did not finish within {budget:.0f}s")
                rc = proc.returncode
            except BaseException:
                _stop_group(proc, signal.SIGKILL)
                raise
        cpu_s, window_s = self._cpu(samples)
        return cpu_s, window_s, rc

    def _remote(self, base, srv, cell, rate, stem, warmup, duration):
        """echo-load on the --load-hosts (remote.LoadHosts), the server's CPU sampled here
        meanwhile. Returns (merged echo-load JSON, cpu_s, window_s, rc)."""
        out_dir = self.run_dir / "raw" / stem
        out_dir.mkdir(parents=True, exist_ok=True)
        result = {}

        def work():
            try:
                result["v"] = self.load_hosts.run(base, srv.addr, cell.connections,
                                                  None if rate is None else max(1, int(rate)),
                                                  out_dir, stem)
            except Exception as e:     # reported as the cell's failure below
                result["e"] = e
        t = threading.Thread(target=work, daemon=True)
        t0 = time.monotonic()
        t.start()

        def finished(timeout):
            t.join(timeout)
            return not t.is_alive()
        samples = self._window(srv, t0, warmup, duration, finished)
        t.join()
        if "e" in result:
            raise CellFailed(f"load hosts: {result['e']}")
        load, rc = result["v"]
        if not isinstance(load, dict):
            raise CellFailed(f"load hosts returned no echo-load JSON (exit {rc})")
        with open(self.run_dir / "raw" / f"{stem}.json", "w") as f:
            json.dump(load, f, indent=1)
        for h in out_dir.glob("*.hgrm"):
            if h.stem == stem or h.stem == "merged":
                (self.run_dir / "hgrm" / f"{stem}.hgrm").write_bytes(h.read_bytes())
        cpu_s, window_s = self._cpu(samples)
        return load, cpu_s, window_s, rc

    @staticmethod
    def _read_json(path, rc, log_path):
        try:
            with open(path) as f:
                return json.load(f)
        except (OSError, ValueError):
            raise CellFailed(f"echo-load exit {rc}, no JSON: "
                             f"{_last_line(_read(log_path)) or 'no message'}") from None


def _stop_group(proc, sig):
    """Signals proc's process group; SIGKILL to the group if it has not exited within 5 s."""
    for s in (sig, signal.SIGKILL):
        try:
            os.killpg(proc.pid, s)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(5)
            return
        except subprocess.TimeoutExpired:
            continue


def write_cells_csv(path, samples):
    """Tidy: one row per cell, repetition and metric. A value that does not apply is empty."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["backend", "entry_kind", "connections", "size", "mode", "placement",
                    "offered_rate", "repetition", "valid", "metric", "value", "unit"])
        for s in samples:
            c = s["cell"]
            for metric, value in s["metrics"].items():
                w.writerow([c.backend, c.entry_kind, c.connections, c.size, c.mode, c.placement,
                            "" if c.offered_rate is None else repr(float(c.offered_rate)),
                            s["repetition"], "true" if s.get("valid", True) else "false",
                            metric, "" if value is None else repr(float(value)),
                            unit(metric)])


def headline(cell):
    return "bytes_per_sec" if cell.mode == "stream" else "msgs_per_sec"


def ci_reached(values, pct):
    """(reached, median, half-width) of the 95 % CI of the median of values (stats.median_ci)."""
    from .stats import median_ci
    med, lo, hi = median_ci(values)
    if med is None or lo is None or hi is None or not med:
        return False, med, None
    half = (hi - lo) / 2.0
    return half <= pct / 100.0 * abs(med), med, half


def peak_key(group):
    b, c, s, p = group
    return f"{b}/c:{c}/s:{s}" + ("" if p == DEFAULT_PLACEMENT else f"/p:{p}")


def preflight(entries):
    """Each user's server starts, is ready and echoes once before anything is measured: a
    command that exits (or never gets ready) is a usage error, said in one line."""
    for e in entries:
        if e.kind == "backend":
            continue
        try:
            srv = start_command(e.command) if e.kind == "server" else _Target(e.addr)
        except RunError as err:
            raise UsageError(f"--server {e.name}: {err}") from None
        try:
            why = verify_echo(srv.addr, [1])
        finally:
            srv.stop()
        if why:
            raise UsageError(f"--{e.kind} {e.name}: no echo from {srv.addr}: {why}")


def open_load_hosts(opts, load_exe):
    """remote.LoadHosts for --load-hosts (imported only then: the module is optional)."""
    try:
        from . import remote
    except ImportError as e:
        raise UsageError(f"--load-hosts: this echobench has no remote module ({e})") from None
    return remote.LoadHosts(opts.load_hosts, opts.ssh_options, str(load_exe))


def client_engine(load_exe, wanted):
    """The echo-load engine the cells use: `wanted`, which must be usable here, or echo-load's
    default (`usable (default)` in its --version)."""
    engines = list_engines(load_exe)
    if wanted is None:
        return next((n for n, (_, state) in engines.items() if "(default)" in state), "default")
    if wanted not in engines:
        raise UsageError(f"--client-engine {wanted}: echo-load has no such engine (it has "
                         f"{', '.join(engines) or 'none listed'})")
    usable, state = engines[wanted]
    if not usable:
        raise UsageError(f"--client-engine {wanted}: {state}")
    return wanted


def run(opts, build, out=print):
    """Runs the matrix and writes every result file. Returns (exit code, run dir)."""
    bounds.check(opts, local_load=not opts.load_hosts)
    server_exe = program(build, SERVER)
    load_exe = program(build, LOAD)
    client_engine(load_exe, opts.client_engine)   # unknown or unusable: a usage error, now
    if opts.backends == []:
        backends, skipped = [], []
    else:
        backends, skipped = pick_backends(server_exe, opts.backends)
    known = [n for n, _, _ in list_backends(server_exe)]
    entries = make_entries(backends, opts.servers, opts.targets, known)
    if not entries:
        raise UsageError("empty matrix: --backends none and no --server or --target")
    ref = reference(entries)
    # The reference runs first in each cell group: its closed-loop peak sets everyone's rates.
    order = [ref] + [e.name for e in entries if e.name != ref]
    kinds = {e.name: e.kind for e in entries}
    cells = build_matrix(order, opts.connections, opts.sizes, opts.modes, opts.placements,
                         kinds)
    for p in opts.placements:
        cpus_for(p, opts.server_cpus, opts.client_cpus)     # bad CPUs: usage error, now
    given_peaks = baseline_peaks(opts.rates_from) if opts.rates_from else {}
    out_root = opts.out_root or ROOT / "results"
    old = {s: signal.signal(s, _on_signal) for s in STOP_SIGNALS}
    try:
        try:
            preflight(entries)
        except Interrupted as e:
            print(f"echobench: {e} while checking the servers; nothing measured",
                  file=sys.stderr)
            return 128 + e.signum, None
        run_dir = make_run_dir(out_root)
        hosts_cm = open_load_hosts(opts, load_exe) if opts.load_hosts else None
        hosts = hosts_cm.__enter__() if hosts_cm is not None else None
        try:
            return _run(opts, build, out, entries, ref, cells, skipped, given_peaks, out_root,
                        run_dir, hosts)
        finally:
            if hosts_cm is not None:
                hosts_cm.__exit__(None, None, None)
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _run(opts, build, out, entries, ref, cells, skipped, given_peaks, out_root, run_dir,
         hosts):
    runner = Runner(opts, build, run_dir, entries, hosts)
    names = [e.name for e in entries]
    split = runner.cpus.get(DEFAULT_PLACEMENT) or next(iter(runner.cpus.values()))
    ctx = machine.context(build)
    ctx.update({
        "placement": {"server_cpus": split[0], "client_cpus": split[1],
                      "method": "sched_setaffinity", "note": split[2],
                      "allowed_cpus": sorted(os.sched_getaffinity(0)),
                      "placements": {p: {"server_cpus": v[0], "client_cpus": v[1], "note": v[2]}
                                     for p, v in runner.cpus.items()}},
        "server_threads": opts.server_threads or "default",
        "client_threads": runner.client_threads(opts.placements[0]),
        "client_engine": client_engine(runner.load_exe, opts.client_engine),
        "pipeline": opts.pipeline,
        "preset": opts.preset,
        "duration_s": opts.duration, "warmup_s": opts.warmup,
        "repetitions": opts.repetitions,
        "backends": names, "unusable_backends": {n: r for n, r in skipped},
        "connections": opts.connections, "sizes": opts.sizes, "modes": opts.modes,
        "reference": ref,
        "metric_encoding": "real_time/cpu_time are lower-is-better times: msgs_per_sec as ns "
                           "per message (cpu_time: server CPU ns per message), bytes_per_sec "
                           "as us per MiB, latencies in us; the natural value is in each "
                           "entry's 'echobench' object",
        "utc_start": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    })
    eb = ctx["echobench"] = {
        "incomplete": None,
        "reference": ref,
        "placement": opts.placements[0] if len(opts.placements) == 1 else list(opts.placements),
        "placements": list(opts.placements),
        "entries": [{"name": e.name, "kind": e.kind, "command": e.command, "address": e.addr,
                     "server_cpu": e.kind != "target"} for e in entries],
        "open_loop_rates": "openNN = NN % of the reference entry's closed-loop peak for the "
                           "same connections, size and placement; rateN = N msgs/s; every "
                           "entry of a cell group is offered the same rate",
        "until_ci": None if opts.until_ci is None else
        {"pct": opts.until_ci, "max_repetitions": opts.max_repetitions, "cells": {}},
        "slo": knee.slo_text(opts.slo),
        "sweep": {},
    }
    if opts.load_hosts:
        eb["load_hosts"] = list(opts.load_hosts)
    if opts.repetitions < 2 and not opts.until_ci:
        ctx["note"] = ("1 repetition: figures are single measurements; compare cannot test "
                       "significance on this run")

    max_rounds = max(opts.repetitions, opts.max_repetitions or 0) if opts.until_ci else \
        opts.repetitions
    sweep_on = "sweep" in opts.modes
    sweep_steps = len(knee.FRACTIONS) * len(entries) if sweep_on else 0
    per_run = opts.warmup + opts.duration + CELL_OVERHEAD_S
    total = len(cells) * opts.repetitions + sweep_steps
    progress = Progress(total, per_run)
    est = int(len(cells) * opts.repetitions * per_run + sweep_steps *
              (opts.sweep_warmup + opts.sweep_duration + CELL_OVERHEAD_S))
    print(f"echobench: {len(cells)} cells x {opts.repetitions} repetition(s)"
          f"{' + a sweep' if sweep_on else ''} on {', '.join(names)}, about "
          f"{est // 60}:{est % 60:02d} plus conformance; placement "
          f"{','.join(opts.placements)} ({split[2]}); writing {run_dir}", file=sys.stderr)
    samples, failed, calibrations = [], [], {}
    peaks = dict(given_peaks)
    if opts.rates_from:
        ctx["rates_from"] = str(opts.rates_from)
    interrupted = None
    try:
        pending = list(cells)
        for rep in range(max_rounds):
            if rep >= opts.repetitions:
                pending = _ci_pending(pending, samples, opts, eb)
                if not pending:
                    break
                progress.total += len(pending)
            for cell in pending:
                progress.start(f"{cell.label()} rep {rep + 1}")
                try:
                    rate = _rate(runner, cell, peaks, ref, calibrations)
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
        if opts.until_ci:
            _ci_pending(pending, samples, opts, eb, final=True)
        if sweep_on:
            run_sweep(runner, entries, opts, peaks, calibrations, eb, progress)
    except Interrupted as e:
        interrupted = e
        progress.note(f"echobench: {e} received; stopped the children, writing the results "
                      f"measured so far")
    # From here on a second signal must not cut the files short.
    for s in STOP_SIGNALS:
        signal.signal(s, signal.SIG_IGN)
    progress.finish()

    ctx["failed_cells"] = failed
    ctx["warnings"] = [{"cell": s["cell"].label(), "repetition": s["repetition"], "warning": w}
                       for s in samples for w in s["warnings"]]
    ctx["invalid_cells"] = [{"cell": s["cell"].label(), "repetition": s["repetition"],
                             "reasons": s["invalid_reasons"]}
                            for s in samples if not s.get("valid", True)]
    methods = sorted({s["cpu_method"] for s in samples if s.get("cpu_method")})
    ctx["server_cpu_source"] = {
        "methods": methods,
        "explanation": "CPU time of the server's process group over the measured window: the "
                       "sum of /proc/PID/task/*/schedstat (ns) when no thread exited between "
                       "the samples, else utime+stime from /proc/PID/stat (clock ticks); "
                       "none for --target entries"}
    ctx["closed_loop_peaks"] = {peak_key(g): v for g, v in peaks.items()}
    ctx["calibrations"] = calibrations
    ctx["interrupted"] = interrupted is not None
    if interrupted is not None:
        eb["incomplete"] = f"interrupted by {interrupted}"

    conform_results = {}
    if interrupted is None:
        for s in STOP_SIGNALS:
            signal.signal(s, _on_signal)
        try:
            conform_results = run_conformance(opts, build, runner, entries, run_dir)
        except Interrupted as e:
            interrupted = e
            ctx["interrupted"] = True
            eb["incomplete"] = f"interrupted by {e} during conformance"
            progress.note(f"echobench: {e} during conformance; writing the results")
        for s in STOP_SIGNALS:
            signal.signal(s, signal.SIG_IGN)
    with open(run_dir / "conform.json", "w") as f:
        json.dump(conform_results, f, indent=1)
    ctx["utc_end"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")

    with open(run_dir / "run.json", "w") as f:
        json.dump(gbjson.build_run_json(ctx, samples, opts.repetitions), f, indent=1)
    write_cells_csv(run_dir / "cells.csv", samples)
    if samples:
        from . import report      # matplotlib: imported only once there is something to draw
        summary = report.write(run_dir)
    else:
        summary = write_empty_report(run_dir, eb["incomplete"] or "every cell failed")
    valid = any(s.get("valid", True) for s in samples)
    if interrupted is None and valid:
        point_latest(out_root, run_dir)
    out(summary)
    out(f"report: {run_dir / 'report.html'}")
    if failed:
        out(f"echobench: {len(failed)} cell runs failed (see the report)")
    if interrupted is not None:
        out(f"echobench: incomplete ({eb['incomplete']}); results/latest not moved")
        return 128 + interrupted.signum, run_dir
    # A failed cell (server died, echo wrong, nothing measured) is a finding, not noise.
    return (1 if failed or not samples else 0), run_dir


def write_empty_report(run_dir, why):
    """summary.md and report.html of a run that measured nothing: say so, and why."""
    text = f"# echobench run\n\nNo cell was measured ({why}).\n"
    (run_dir / "summary.md").write_text(text)
    (run_dir / "report.html").write_text(
        "<!doctype html><meta charset=utf-8><title>echobench run</title>"
        f"<h1>echobench run</h1><p>No cell was measured ({_html(why)}).</p>\n")
    return text.strip()


def _html(text):
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _rate(runner, cell, peaks, ref, calibrations):
    """The offered rate of an open-loop cell: the same for every entry of its group."""
    if cell.fixed_rate is not None:
        return float(cell.fixed_rate)
    if cell.open_pct is None:
        return None
    group = (ref,) + cell.rate_group
    peak = peaks.get(group)
    if peak is None:
        peak = calibrate(runner, replace(cell, backend=ref,
                                         entry_kind=runner.entries[ref].kind),
                         calibrations, peaks)
    return peak * cell.open_pct / 100.0


def _ci_pending(cells, samples, opts, eb, final=False):
    """The cells whose headline CI has not reached --until-ci yet (records each verdict)."""
    out = []
    for cell in cells:
        xs = [s["metrics"].get(headline(cell)) for s in samples if s["cell"] == cell]
        xs = [x for x in xs if x is not None]
        reached, med, half = ci_reached(xs, opts.until_ci) if len(xs) >= 2 else \
            (False, None, None)
        eb["until_ci"]["cells"][cell.name(headline(cell))] = {
            "reached": reached, "repetitions": len(xs), "median": med, "half_width": half}
        if not reached:
            out.append(cell)
    return out


def run_sweep(runner, entries, opts, peaks, calibrations, eb, progress):
    """The knee per entry at one connection count (--sweep-connections, default the largest),
    the first size and placement: into context.echobench.sweep."""
    conns = opts.sweep_connections or max(opts.connections)
    size, place = opts.sizes[0], opts.placements[0]
    pct, slo_us = opts.slo
    for e in entries:
        cell = Cell(e.name, conns, size, "sweep", place, entry_kind=e.kind)
        rec = eb["sweep"][e.name] = {"slo": knee.slo_text(opts.slo), "connections": conns,
                                     "size": size, "placement": place,
                                     "max_rate_at_slo": None, "steps": []}
        peak = peaks.get(cell.group)
        try:
            if peak is None:
                peak = calibrate(runner, cell, calibrations, peaks)
        except CellFailed as err:
            rec["error"] = str(err)
            progress.note(f"echobench: sweep {e.name}: {err}")
            progress.total -= len(knee.FRACTIONS)
            continue
        rec["peak"] = peak
        for i, frac in enumerate(knee.FRACTIONS):
            offered = max(1.0, round(peak * frac))
            progress.start(f"sweep {e.name} {frac:.0%} of its peak")
            try:
                s = runner.measure(cell, 0, offered, duration=opts.sweep_duration,
                                   warmup=opts.sweep_warmup, tag=f"sweep{i}")
                step = knee.step_record(s["load"], offered, pct)
            except CellFailed as err:
                step = {"offered_rate": offered, "rate_achieved": None, "p50_us": None,
                        "p99_us": None, "slo_value_us": None, "rate_ok": False,
                        "valid": False, "error": str(err)}
            rec["steps"].append(step)
            progress.step()
            if knee.should_stop(rec["steps"]):
                progress.total -= len(knee.FRACTIONS) - i - 1
                break
        rec["max_rate_at_slo"] = knee.max_rate_at_slo(rec["steps"], slo_us)


def baseline_peaks(path):
    """{(entry, connections, size, placement): msgs/s} from another run's context, so that
    open-loop cells offer the same absolute rates as that run (compare then compares like with
    like)."""
    ctx = gbjson.load(path).get("context", {})
    peaks = {}
    for key, value in (ctx.get("closed_loop_peaks") or {}).items():
        m = re.fullmatch(r"(.+)/c:(\d+)/s:(\d+)(?:/p:([a-z]+))?", key)
        if m and value:
            peaks[(m.group(1), int(m.group(2)), int(m.group(3)),
                   m.group(4) or DEFAULT_PLACEMENT)] = float(value)
    if not peaks:
        raise UsageError(f"--rates-from {path}: that run has no closed-loop peaks")
    return peaks


def calibrate(runner, cell, calibrations, peaks):
    """A short closed-loop run of cell's entry that sets the open-loop rates when the matrix
    has no closed mode (or its closed cell failed)."""
    closed = Cell(cell.backend, cell.connections, cell.size, "closed", cell.placement,
                  entry_kind=cell.entry_kind)
    try:
        s = runner.measure(closed, 0, duration=min(1.0, runner.opts.duration),
                           warmup=min(0.25, runner.opts.warmup), tag="calibration")
    except CellFailed as e:
        peaks[cell.group] = None
        raise CellFailed(f"no closed-loop peak to set the open-loop rate: {e}") from e
    peak = s["metrics"].get("msgs_per_sec")
    if not peak:
        raise CellFailed("closed-loop calibration measured no messages")
    calibrations[peak_key(closed.group)] = peak
    peaks[closed.group] = peak
    return peak


def run_conformance(opts, build, runner, entries, run_dir):
    """echo-conform per entry into conform.json: --must-only (must), --must-only without the
    long cases (quick), everything (all). Our backends run through --exec; a user's server is
    started here and tested with --server-pid; a --target as it runs."""
    names = [e.name for e in entries]
    exe = program(build, CONFORM, required=False)
    if opts.conform == "none":
        return {b: {"verdict": "not run", "note": "--conform none"} for b in names}
    if exe is None:
        return {b: {"verdict": "not run", "note": f"{build / CONFORM} is not built"}
                for b in names}
    (run_dir / "conform").mkdir(exist_ok=True)
    skip = conform.long_cases(exe) if opts.conform == "quick" else ()
    common = {"must_only": opts.conform in ("must", "quick"), "timeout": opts.conform_timeout,
              "skip": skip}
    results = {}
    for e in entries:
        files = {"json_path": run_dir / "conform" / f"{e.name}.json",
                 "tap_path": run_dir / "conform" / f"{e.name}.tap"}
        if e.kind == "backend":
            how = {"exec_cmd": conform.backend_exec(runner.server_exe, e.name,
                                                    opts.server_threads)}
            results.update(conform.run_many(exe, [(e.name, {**how, **files})], **common))
        elif e.kind == "target":
            results.update(conform.run_many(exe, [(e.name, {"target": e.addr, **files})],
                                            **common))
        else:
            try:
                srv = runner.start(e.name)
            except RunError as err:
                results[e.name] = {"verdict": "error", "note": str(err), "passed": 0,
                                   "failed": 0, "skipped": 0, "failed_ids": []}
                continue
            try:
                results.update(conform.run_many(
                    exe, [(e.name, {"target": srv.addr, "server_pid": srv.serving_pid(),
                                    **files})], **common))
            finally:
                srv.stop()
    return results

"""One measurement: one echo-load run against one server (started here, or given), locally or on
the load hosts, with the server's CPU time sampled from /proc inside the measured window. One
run in, one Sample out; CellFailed when there is no figure at all (the server died, corrupted
data, measured nothing).

Whether a sample can be trusted, and what limited it:
- `valid`: echo-load's self-checks held (clients/README.md), except that client_cpu alone does
  not invalidate a run whose server was measured: it makes the sample client-bound instead.
- `client_bound`: the client was the limit, i.e. its busiest thread was at least as busy as the
  server's busiest thread over the window. Its throughput then measures the client, but the
  server's CPU per message still ranks servers. For a --target (no server CPU), echo-load's
  client_cpu check decides, and invalidates, as before.
"""
import json
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field, replace

from .loadresult import LoadResult
from .placement import client_threads, pinned
from .server import Server, start_command, verify_echo
from .util import RunError, duration_arg


# The server's CPU is sampled every tenth of the measured duration (within these bounds, in
# seconds) while the load runs: the window's first and last samples are at most that far
# inside its bounds. Each sample reads a few /proc files (well under a millisecond).
SAMPLE_EVERY = (0.005, 0.05)
# echo-load is told to start this long after it is started (plus per connection, to connect):
# enough for its own start-up on a loaded machine, else it reports how late it was.
START_LEAD_S = 0.05
START_LEAD_PER_CONN_S = 20e-6


class CellFailed(Exception):
    pass


@dataclass
class Sample:
    """One measured run of one cell."""
    cell: object                  # matrix.Cell, with offered_rate
    repetition: int
    metrics: dict
    load: LoadResult
    valid: bool = True
    reasons: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    cpu_method: str = None        # 'cpuclock' | 'stat' | None (no server CPU figure)
    client_bound: bool = None     # None: unknown (no server CPU figure, no client figure)
    t_s: float = None             # start, in seconds since the run started
    seq: int = None               # its place in the run's sequence of measurements
    unresolved: set = field(default_factory=set)   # latency metrics echo-load could not resolve

    @property
    def messages(self):
        return self.load.messages


class Target:
    """A --target entry: already running, never restarted, no CPU figure."""

    def __init__(self, addr):
        self.addr = addr

    def alive(self):
        return True

    def cpu_sample(self):
        return None

    def stop(self, *a, **k):
        return None, ""


def start_entry(entry, server_argv, cpus):
    """A ready server for entry (an entries.Entry): our backend from server_argv, a user's
    command, or the running --target. RunError when it does not get ready."""
    if entry.kind == "target":
        return Target(entry.addr)
    if entry.kind == "server":
        return start_command(entry.command, cpus=cpus)
    return Server(server_argv, cpus=cpus)


def _last_line(text):
    lines = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
    return lines[-1].strip()[:300] if lines else ""


def _read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def stop_group(proc, sig):
    """Signals proc's process group; SIGKILL to the group if it has not exited within 5 s."""
    import os
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


class Measurer:
    """Runs echo-load for the runner: `measure(cell, rep, ...)` against a fresh server or the
    running one given."""

    def __init__(self, opts, run_dir, load_exe, entries, cpus, server_argv, load_hosts=None,
                 t0=None):
        self.opts, self.run_dir, self.load_exe = opts, run_dir, load_exe
        self.entries = entries            # {name: Entry}
        self.cpus = cpus                  # {placement: (server cpus, client cpus, note)}
        self.server_argv = server_argv    # entry name -> echo-server argv
        self.load_hosts = load_hosts
        self.t0 = time.monotonic() if t0 is None else t0
        self.seq = 0
        (run_dir / "hgrm").mkdir(exist_ok=True)
        (run_dir / "raw").mkdir(exist_ok=True)

    def threads(self, placement):
        return client_threads(self.cpus[placement][1], self.opts.client_threads)

    def start(self, name, placement):
        """A ready server for entry `name` in `placement`; CellFailed when it cannot start."""
        e = self.entries[name]
        try:
            return start_entry(e, self.server_argv(name), self.cpus[placement][0])
        except RunError as err:
            raise CellFailed(str(err)) from err

    def base_args(self, cell, rep, duration, warmup):
        threads = max(1, min(self.threads(cell.placement), cell.connections))
        base = ["--size", str(cell.size), "--duration", duration_arg(duration),
                "--warmup", duration_arg(warmup), "--threads", str(threads),
                "--seed", str(1 + rep)]
        if self.opts.pipeline and self.opts.pipeline > 1:
            base += ["--pipeline", str(self.opts.pipeline)]
        if self.opts.client_engine:
            base += ["--engine", self.opts.client_engine]
        if cell.kind == "stream":
            base.append("--stream")
        if cell.kind == "churn":
            base.append("--churn")
        return base

    def measure(self, cell, rep, rate=None, duration=None, warmup=None, tag=None, server=None):
        """One echo-load run of cell; against `server` when given (it stays running), else a
        fresh one (stopped after). Returns a Sample or raises CellFailed with the reason."""
        duration = duration or self.opts.duration
        warmup = self.opts.warmup if warmup is None else warmup
        stem = f"{cell.key}_r{rep}" + (f"_{tag}" if tag else "")
        own = server is None
        srv = self.start(cell.entry, cell.placement) if own else server
        t_s = time.monotonic() - self.t0
        try:
            if own:
                why = verify_echo(srv.addr, sorted({1, cell.size}))
                if why:
                    raise CellFailed(f"echo check before measuring: {why}")
            base = self.base_args(cell, rep, duration, warmup)
            rate_arg = None if rate is None or cell.kind == "stream" else max(1, int(rate))
            if self.load_hosts is not None:
                load, cpu, rc, log = self._remote(base, srv, cell, rate_arg, stem, warmup,
                                                  duration)
            else:
                load, cpu, rc, log = self._local(base, srv, cell, rate_arg, stem, warmup,
                                                 duration)
            alive = srv.alive()
        finally:
            src, serr = srv.stop() if own else (None, "")
        if not alive:
            if not own:
                src, serr = srv.stop()
            raise CellFailed(f"server died during the run (exit {src}): "
                             f"{_last_line(serr) or 'no message'}")
        if load.mismatches:
            raise CellFailed(f"{load.mismatches} mismatched echo bytes: the server corrupts "
                             f"data")
        overloaded = cell.is_open and load.rate_target and not load.rate_ok
        if not load.measured_something and not overloaded:
            raise CellFailed(f"echo-load measured nothing (exit {rc}): "
                             f"{load.error or _last_line(log)}")
        self.seq += 1
        sample = self._sample(cell, rep, rate, load, cpu)
        if not load.measured_something:
            # An open loop the server could not keep up with at all: a finding about the
            # server at this rate (its capacity is below it), not a broken measurement.
            sample.valid = False
            sample.reasons = load.reasons or [f"rate: nothing answered in the window at "
                                              f"{rate:.0f} msgs/s"]
        sample.t_s, sample.seq = round(t_s, 3), self.seq
        if rc not in (0, 3) or not load.complete:
            sample.warnings.append(f"echo-load exit {rc}, complete={load.get('complete')}: "
                                   f"{load.error or _last_line(log)}")
        if sample.metrics.get("errors"):
            sample.warnings.append(f"{int(sample.metrics['errors'])} connection errors: "
                                   f"{load.get('errors')}")
        if not sample.valid:
            sample.warnings.append("echo-load's self-checks failed: " +
                                   "; ".join(sample.reasons or ["(no reason)"]))
        # A user's server (often a shell, or a runtime without a SIGTERM handler) that dies of
        # the SIGTERM we sent it did what was asked; our backends must exit 0.
        fine = (0, None, -signal.SIGTERM) if cell.entry_kind == "server" else (0, None)
        if own and src not in fine:
            sample.warnings.append(f"server exit {src} after SIGTERM")
        return sample

    def _sample(self, cell, rep, rate, load, cpu):
        """The Sample of a run: metrics, validity and what limited it (module docstring)."""
        cpu_s, window_s, method, busiest_s = cpu
        metrics = load.metrics(cpu_s, window_s, rate)
        server_busy = busiest_s / window_s if busiest_s is not None and window_s else None
        if server_busy is not None:
            metrics["server_cpu_busiest"] = server_busy
        client_busy = load.client_busiest
        reasons = list(load.reasons)
        valid = load.valid
        bound = None
        if server_busy is not None and client_busy is not None:
            bound = client_busy >= server_busy
            if load.client_bound_check:
                # Only client_cpu failed: the sample is client-bound (or not), not invalid.
                reasons = [r for r in reasons if not r.startswith("client_cpu")]
                valid = not [c for c in load.failed_checks if c != "client_cpu"]
        elif load.client_bound_check:
            bound = True
        return Sample(cell=replace(cell, offered_rate=float(rate) if rate else None),
                      repetition=rep, metrics=metrics, load=load, valid=valid,
                      reasons=reasons, cpu_method=method, client_bound=bound,
                      unresolved=load.unresolved())

    @staticmethod
    def _track(srv, finished, deadline, duration):
        """Samples the server's CPU (SAMPLE_EVERY) until finished(timeout) says the load ended
        (or the deadline passed). Returns [(wall time, CpuSample)]."""
        every = max(SAMPLE_EVERY[0], min(SAMPLE_EVERY[1], duration / 10.0))
        samples = []
        while True:
            samples.append((time.time(), srv.cpu_sample()))
            left = deadline - time.monotonic()
            if left <= 0 or finished(min(every, left)):
                samples.append((time.time(), srv.cpu_sample()))
                return samples

    @staticmethod
    def _cpu(samples, start, warmup, duration):
        """(server CPU s, wall s between the samples, method, busiest thread's CPU s) over the
        measured window [start + warmup, + duration] (wall clock), inset by 10 % of the
        duration on each side so that it stays inside the steady state: the first sample at or
        after its start and the last at or before its end. None for each when the samples do
        not cover at least half of the window."""
        inset = 0.1 * duration
        lo, hi = start + warmup + inset, start + warmup + duration - inset
        inside = [(t, c) for t, c in samples if lo <= t <= hi and c is not None]
        if len(inside) < 2 or inside[-1][0] - inside[0][0] < 0.5 * (hi - lo):
            return None, None, None, None
        (ta, a), (tb, b) = inside[0], inside[-1]
        cpu_s, method = a.delta(b)
        return cpu_s, tb - ta, method, a.busiest_thread(b)

    def _local(self, base, srv, cell, rate, stem, warmup, duration):
        """echo-load here, in its own process group, told to start at an agreed time (so that
        the server's CPU window is anchored to the load's real start: echo-load reports how
        late it began). Returns (LoadResult, cpu, exit code, log text)."""
        json_path = self.run_dir / "raw" / f"{stem}.json"
        log_path = self.run_dir / "raw" / f"{stem}.log"
        lead = START_LEAD_S + cell.connections * START_LEAD_PER_CONN_S
        start_at = time.time() + lead
        argv = [self.load_exe, *base, "--connections", str(cell.connections),
                "--start-at", f"{start_at:.6f}",
                "--json", json_path, "--hgrm", self.run_dir / "hgrm" / f"{stem}.hgrm"]
        if rate is not None:
            argv += ["--rate", str(rate)]
        argv.append(srv.addr)
        budget = lead + warmup + duration + 30.0 + cell.connections / 100.0
        with open(log_path, "w") as log:
            t0 = time.monotonic()
            proc = subprocess.Popen([str(a) for a in argv], stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT,
                                    preexec_fn=pinned(self.cpus[cell.placement][1]),
                                    start_new_session=True)

            def finished(timeout):
                try:
                    proc.wait(timeout)
                    return True
                except subprocess.TimeoutExpired:
                    return False
            try:
                samples = self._track(srv, finished, t0 + budget, duration)
                if proc.poll() is None:
                    stop_group(proc, signal.SIGINT)
                    raise CellFailed(f"echo-load did not finish within {budget:.0f}s")
                rc = proc.returncode
            except BaseException:
                stop_group(proc, signal.SIGKILL)
                raise
        log_text = _read(log_path)
        try:
            load = LoadResult.from_file(json_path)
        except (OSError, ValueError):
            raise CellFailed(f"echo-load exit {rc}, no JSON: "
                             f"{_last_line(log_text) or 'no message'}") from None
        lag = (load.get("start_lag_us") or 0) / 1e6
        return load, self._cpu(samples, start_at + max(0.0, lag), warmup, duration), rc, \
            log_text

    def _remote(self, base, srv, cell, rate, stem, warmup, duration):
        """echo-load on the --load-hosts (remote.LoadHosts), the server's CPU sampled here
        meanwhile. Returns (merged LoadResult, cpu, exit code, log text)."""
        out_dir = self.run_dir / "raw" / stem
        out_dir.mkdir(parents=True, exist_ok=True)
        result = {}

        def work():
            try:
                result["v"] = self.load_hosts.run(base, srv.addr, cell.connections, rate,
                                                  out_dir, stem, seconds=warmup + duration)
            except Exception as e:     # reported as the cell's failure below
                result["e"] = e
        t = threading.Thread(target=work, daemon=True)
        t0 = time.monotonic()
        t.start()

        def finished(timeout):
            t.join(timeout)
            return not t.is_alive()
        samples = self._track(srv, finished, t0 + 24 * 3600.0, duration)
        t.join()
        if "e" in result:
            raise CellFailed(f"load hosts: {result['e']}")
        raw, rc = result["v"]
        if not isinstance(raw, dict):
            raise CellFailed(f"load hosts returned no echo-load JSON (exit {rc})")
        with open(self.run_dir / "raw" / f"{stem}.json", "w") as f:
            json.dump(raw, f, indent=1)
        for h in out_dir.glob("*.hgrm"):
            if h.stem == stem or h.stem == "merged":
                (self.run_dir / "hgrm" / f"{stem}.hgrm").write_bytes(h.read_bytes())
        start = raw.get("start_at") or (time.time() - warmup - duration)
        return LoadResult(raw), self._cpu(samples, start, warmup, duration), rc, ""

"""`echobench run`: the stages in order. Options (cli, options) -> plan (matrix, entries,
placement) -> measure (measure.Measurer, per cell; rates for the open loop; the knee) ->
conformance -> write (writers, report). This module only orders them.

Two designs (docs/RESULTS.md "Designs"):
- paired (default): per group of cells with the same connections, size and placement, in a
  random order (seeded), each cell's servers start once; every round measures each entry once,
  in a balanced order (stats.balanced_order), so that each round is a pair measured in the same
  second or two and drift of the machine cancels in the ratios.
- unpaired (--unpaired): a fresh server per cell and repetition, as for first-connection
  effects.

SIGTERM, SIGINT and SIGHUP stop the children (each runs in its own process group, which is
signalled as a whole) and write what was measured, marked incomplete."""
import json
import random
import signal
import sys

from . import bounds, conform, knee, runinfo, writers
from .build import (CONFORM, LOAD, ROOT, SERVER, backend_args, list_backends, list_engines,
                    pick_backends, program)
from .entries import make_entries, reference
from .matrix import Cell, build_matrix
from .measure import CellFailed, Measurer, Target
from .placement import DEFAULT_PLACEMENT, cpus_for
from .progress import Progress
from .rates import OpenRates, peaks_from_run
from .server import start_command, verify_echo
from .stats import balanced_order, median_ci
from .util import RunError, UsageError

# Seconds a measurement costs beyond warmup + duration (echo-load's start, connects): for the
# ETA. A fresh server per cell (unpaired) adds its start and echo check.
SLICE_OVERHEAD_S = 0.15
CELL_OVERHEAD_S = 0.4


class Interrupted(BaseException):
    """SIGTERM, SIGINT or SIGHUP during the run: stop the children, write what there is."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _on_signal(signum, frame):
    raise Interrupted(signum)


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def headline(cell):
    return {"stream": "bytes_per_sec", "churn": "transactions_per_sec"}.get(cell.kind,
                                                                          "msgs_per_sec")


def ci_reached(values, pct):
    """(reached, median, half-width) of the 95 % CI of the median of values (stats.median_ci)."""
    med, lo, hi = median_ci(values)
    if med is None or lo is None or hi is None or not med:
        return False, med, None
    half = (hi - lo) / 2.0
    return half <= pct / 100.0 * abs(med), med, half


def preflight(entries):
    """Each user's server starts, is ready and echoes once before anything is measured: a
    command that exits (or never gets ready) is a usage error, said in one line."""
    for e in entries:
        if e.kind == "backend":
            continue
        try:
            srv = start_command(e.command) if e.kind == "server" else Target(e.addr)
        except RunError as err:
            raise UsageError(f"--server {e.name}: {err}") from None
        try:
            why = verify_echo(srv.addr, [1])
        finally:
            srv.stop()
        if why:
            raise UsageError(f"--{e.kind} {e.name}: no echo from {srv.addr}: {why}")


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


def open_load_hosts(opts, load_exe):
    """remote.LoadHosts for --load-hosts (imported only then: the module is optional)."""
    try:
        from . import remote
    except ImportError as e:
        raise UsageError(f"--load-hosts: this echobench has no remote module ({e})") from None
    return remote.LoadHosts(opts.load_hosts, opts.ssh_options, str(load_exe))


def plan(opts, build, entries=None):
    """(entries, skipped backends, reference, cells): what the run measures, checked before
    anything starts (UsageError)."""
    bounds.check(opts, local_load=not opts.load_hosts)
    server_exe = program(build, SERVER)
    client_engine(program(build, LOAD), opts.client_engine)
    if entries is None:
        if opts.backends == []:
            backends, skipped = [], []
        else:
            backends, skipped = pick_backends(server_exe, opts.backends)
        known = [n for n, _, _ in list_backends(server_exe)]
        entries = make_entries(backends, opts.servers, opts.targets, known)
    else:
        skipped = []
    if not entries:
        raise UsageError("empty matrix: --backends none and no --server or --target")
    ref = reference(entries)
    # The reference first: its closed-loop peak sets everyone's open-loop rates.
    order = [ref] + [e.name for e in entries if e.name != ref]
    kinds = {e.name: e.kind for e in entries}
    cells = build_matrix(order, opts.connections, opts.sizes, opts.modes, opts.placements,
                         kinds, opts.cells)
    for p in opts.placements:
        cpus_for(p, opts.server_cpus, opts.client_cpus)     # bad CPUs: usage error, now
    return entries, skipped, ref, cells


def run(opts, build, out=print, entries=None):
    """Runs the matrix and writes every result file. Returns (exit code, run dir). entries:
    given by `ab` (else from the options)."""
    entries, skipped, ref, cells = plan(opts, build, entries)
    given = peaks_from_run(opts.rates_from) if opts.rates_from else {}
    out_root = opts.out_root or ROOT / "results"
    old = {s: signal.signal(s, _on_signal) for s in STOP_SIGNALS}
    try:
        try:
            preflight(entries)
        except Interrupted as e:
            print(f"echobench: {e} while checking the servers; nothing measured",
                  file=sys.stderr)
            return 128 + e.signum, None
        run_dir = writers.make_run_dir(out_root)
        hosts_cm = open_load_hosts(opts, program(build, LOAD)) if opts.load_hosts else None
        hosts = hosts_cm.__enter__() if hosts_cm is not None else None
        try:
            r = Run(opts, build, entries, ref, skipped, given, run_dir, hosts)
            return r.go(cells, out_root, out)
        finally:
            if hosts_cm is not None:
                hosts_cm.__exit__(None, None, None)
    finally:
        for s, h in old.items():
            signal.signal(s, h)


class Run:
    """One run's state while it measures."""

    def __init__(self, opts, build, entries, ref, skipped, given, run_dir, hosts):
        self.opts, self.build, self.run_dir = opts, build, run_dir
        self.entries = {e.name: e for e in entries}
        self.ref, self.skipped = ref, skipped
        self.server_exe = program(build, SERVER)
        self.cpus = {p: cpus_for(p, opts.server_cpus, opts.client_cpus)
                     for p in opts.placements}
        self.measurer = Measurer(opts, run_dir, program(build, LOAD), self.entries, self.cpus,
                                 self.server_argv, hosts)
        self.samples, self.failed = [], []
        self.rates = OpenRates(ref, given, samples=self._closed_values,
                               calibrate=self._calibrate)
        self.calibrations = {}
        self.progress = None

    def server_argv(self, name):
        e = self.entries[name]
        return [e.server_exe or self.server_exe, *backend_args(e.spec, self.opts.server_threads),
                "--listen", "127.0.0.1:0"]

    def _closed_values(self, closed):
        return [s.metrics.get("msgs_per_sec") for s in self.samples if s.cell == closed]

    def _calibrate(self, closed):
        """A short closed-loop run that sets the open-loop rates when the matrix has no closed
        mode (or its closed cells failed)."""
        s = self.measurer.measure(closed, 0, duration=min(1.0, self.opts.duration),
                                  warmup=min(0.25, self.opts.warmup), tag="calibration")
        v = s.metrics.get("msgs_per_sec")
        self.calibrations[closed.name("msgs_per_sec")] = v
        return v

    # ---- measuring ---------------------------------------------------------------------------
    def _one(self, cell, rep, server=None):
        label = f"{cell.label()} rep {rep + 1}"
        self.progress.start(label)
        try:
            rate = self.rates.rate(cell)
            s = self.measurer.measure(cell, rep, rate, server=server)
            self.samples.append(s)
            for w in s.warnings:
                self.progress.note(f"echobench: {cell.label()} rep {rep}: {w}")
            return s
        except CellFailed as e:
            return self.cell_failed(cell, rep, e)
        finally:
            self.progress.step()

    def cell_failed(self, cell, rep, e):
        """Records a cell that failed (in one repetition, or rep None: before measuring) and
        says so; None, which stands for its missing Sample."""
        self.failed.append({"cell": cell.label(), "name": cell.name("*"),
                            "repetition": rep, "reason": str(e)})
        self.progress.note(f"echobench: {cell.label()}{'' if rep is None else f' rep {rep}'}: "
                           f"FAILED: {e}")
        return None

    def groups(self, cells):
        """The cells by group (connections, size, placement), groups in a random order (seeded:
        recorded), cells of a group closed first (open-loop rates need its peak)."""
        groups = {}
        for c in cells:
            groups.setdefault((c.placement, c.size, c.connections), []).append(c)
        keys = list(groups)
        random.Random(self.opts.seed).shuffle(keys)
        return [groups[k] for k in keys]

    def paired(self, cells):
        """Per spot: start every entry's server once, then rounds of one measurement each, in
        a balanced order; --until-ci adds rounds."""
        by_spot = {}
        for c in cells:
            by_spot.setdefault(c.spot, []).append(c)
        for group in self.groups(cells):
            spots = list(dict.fromkeys(c.spot for c in group))
            for spot in spots:
                self._paired_spot(spot, by_spot[spot])

    def _paired_spot(self, spot, cells):
        servers = {}
        try:
            for c in cells:
                servers[c.entry] = self._fresh(c)
            rounds = self.opts.repetitions
            r = 0
            while True:
                if r >= rounds:
                    if not self.opts.until_ci or r >= self.opts.max_repetitions or \
                            not self._ci_pending(cells):
                        break
                    self.progress.total += len(cells)
                names = balanced_order([c.entry for c in cells], r)
                for name in names:
                    c = next(x for x in cells if x.entry == name)
                    if servers.get(name) is None:
                        servers[name] = self._fresh(c)
                    if servers[name] is None:
                        self.progress.step()
                        continue
                    s = self._one(c, r, server=servers[name])
                    if s is None and not servers[name].alive():
                        servers.pop(name).stop()
                r += 1
            if self.opts.until_ci:
                self._ci_pending(cells, final=True)
        finally:
            for srv in servers.values():
                if srv is not None:
                    srv.stop()

    def _fresh(self, cell):
        """A started, echo-checked server for a paired spot; None (the failure recorded) when
        it cannot start."""
        try:
            srv = self.measurer.start(cell.entry, cell.placement)
            why = verify_echo(srv.addr, sorted({1, cell.size}))
            if why:
                srv.stop()
                raise CellFailed(f"echo check before measuring: {why}")
            return srv
        except CellFailed as e:
            return self.cell_failed(cell, None, e)

    def unpaired(self, cells):
        """A fresh server per cell and repetition: the closed cells of each group first (all
        their repetitions: the open-loop rates are the median of them), then the rest."""
        max_rounds = max(self.opts.repetitions, self.opts.max_repetitions or 0) \
            if self.opts.until_ci else self.opts.repetitions
        for group in self.groups(cells):
            for part in ([c for c in group if c.kind == "closed"],
                         [c for c in group if c.kind != "closed"]):
                pending = list(part)
                for rep in range(max_rounds):
                    if rep >= self.opts.repetitions:
                        pending = self._ci_pending(pending)
                        if not pending:
                            break
                        self.progress.total += len(pending)
                    for cell in pending:
                        self._one(cell, rep)
                if self.opts.until_ci:
                    self._ci_pending(part, final=True)

    def _ci_pending(self, cells, final=False):
        """The cells whose headline CI has not reached --until-ci yet (records each verdict in
        context.echobench.until_ci.cells)."""
        out = []
        for cell in cells:
            xs = [s.metrics.get(headline(cell)) for s in self.samples if s.cell == cell]
            xs = [x for x in xs if x is not None]
            reached, med, half = ci_reached(xs, self.opts.until_ci) if len(xs) >= 2 else \
                (False, None, None)
            self.until_ci[cell.name(headline(cell))] = {
                "reached": reached, "repetitions": len(xs), "median": med, "half_width": half}
            if not reached:
                out.append(cell)
        return out

    def sweep(self):
        """The knee per entry at one connection count (--sweep-connections, default the
        largest), the first size and placement; its server starts once."""
        o = self.opts
        conns = o.sweep_connections or max(o.connections)
        size, place = o.sizes[0], o.placements[0]
        out = {}
        for name, e in self.entries.items():
            cell = Cell(name, conns, size, "sweep", place, entry_kind=e.kind)
            rec = out[name] = {"slo": o.slo.text, "connections": conns, "size": size,
                               "placement": place, "max_rate_at_slo": None, "bracket":
                               [None, None], "decided": False, "steps": []}
            srv = None
            try:
                peak = self.rates.peak(cell.peak_cell)
                srv = self._fresh(cell)
                if srv is None:
                    raise CellFailed("its server did not start")
            except CellFailed as err:
                rec["error"] = str(err)
                self.progress.note(f"echobench: sweep {name}: {err}")
                self.progress.total -= len(knee.FRACTIONS)
                continue
            try:
                def measure(offered, tag):
                    self.progress.step()
                    return self.measurer.measure(cell, 0, offered, duration=o.sweep_duration,
                                                 warmup=o.sweep_warmup, tag=tag, server=srv)
                rec.update(knee.run_sweep(measure, peak, o.slo, progress=lambda t: self.
                                          progress.start(f"sweep {name} {t}")))
            finally:
                srv.stop()
        return out

    # ---- the whole run -----------------------------------------------------------------------
    def go(self, cells, out_root, out):
        o = self.opts
        names = list(self.entries)
        ctx = self.context(names)
        eb = ctx["echobench"]
        self.until_ci = {}
        sweep_on = "sweep" in o.modes
        sweep_steps = len(knee.FRACTIONS) * len(names) if sweep_on else 0
        per = o.warmup + o.duration + (SLICE_OVERHEAD_S if o.design == "paired"
                                       else CELL_OVERHEAD_S)
        self.progress = Progress(len(cells) * o.repetitions + sweep_steps, per)
        est = int(len(cells) * o.repetitions * per + sweep_steps *
                  (o.sweep_warmup + o.sweep_duration + SLICE_OVERHEAD_S))
        split = self.cpus.get(DEFAULT_PLACEMENT) or next(iter(self.cpus.values()))
        print(f"echobench: {len(cells)} cells x {o.repetitions} "
              f"{'rounds (paired)' if o.design == 'paired' else 'repetitions (unpaired)'}"
              f"{' + a sweep' if sweep_on else ''} on {', '.join(names)}, about "
              f"{est // 60}:{est % 60:02d} plus conformance; placement "
              f"{','.join(o.placements)} ({split[2]}); writing {self.run_dir}", file=sys.stderr)
        interrupted = None
        try:
            (self.paired if o.design == "paired" else self.unpaired)(cells)
            if sweep_on:
                eb["sweep"] = self.sweep()
        except Interrupted as e:
            interrupted = e
            self.progress.note(f"echobench: {e} received; stopped the children, writing the "
                               f"results measured so far")
        # From here on a second signal must not cut the files short.
        for s in STOP_SIGNALS:
            signal.signal(s, signal.SIG_IGN)
        self.progress.finish()
        if o.until_ci:
            eb["until_ci"]["cells"] = self.until_ci
        for c in {s.cell for s in self.samples if s.cell.kind == "closed"}:
            self.rates.peak(c)            # every closed cell's peak, for a later --rates-from
        self.finish_context(ctx, interrupted)
        conform_results = {}
        if interrupted is None:
            for s in STOP_SIGNALS:
                signal.signal(s, _on_signal)
            try:
                conform_results = self.conformance()
            except Interrupted as e:
                interrupted = e
                ctx["interrupted"] = True
                eb["incomplete"] = f"interrupted by {e} during conformance"
                self.progress.note(f"echobench: {e} during conformance; writing the results")
            for s in STOP_SIGNALS:
                signal.signal(s, signal.SIG_IGN)
        return self.write(ctx, conform_results, interrupted, out_root, out)

    def conformance(self):
        """echo-conform per entry into conform/ and conform.json: --must-only (must),
        --must-only without the long cases (quick), everything (all)."""
        o = self.opts
        exe = program(self.build, CONFORM, required=False)
        if o.conform == "none":
            return {b: {"verdict": "not run", "note": "--conform none"} for b in self.entries}
        if exe is None:
            return {b: {"verdict": "not run", "note": f"{self.build / CONFORM} is not built"}
                    for b in self.entries}
        (self.run_dir / "conform").mkdir(exist_ok=True)
        skip = conform.long_cases(exe) if o.conform == "quick" else ()
        return conform.run_entries(exe, self.entries.values(), self.server_argv,
                                   self.run_dir / "conform",
                                   must_only=o.conform in ("must", "quick"),
                                   timeout=o.conform_timeout, skip=skip)

    def _add_to_history(self):
        """Adds this run to --history; its path, or None (said) when it could not be."""
        from . import history
        try:
            with history.Store(self.opts.history, create=True) as store:
                store.add_run(self.run_dir)
            return self.opts.history
        except (UsageError, RunError) as e:
            self.progress.note(f"echobench: --history {self.opts.history}: {e}; the run is "
                               f"not in the history")
            return None

    def context(self, names):
        return runinfo.context(self.opts, self.build, self.entries, self.ref, self.skipped,
                               self.cpus, client_engine(self.measurer.load_exe,
                                                        self.opts.client_engine), names)

    def finish_context(self, ctx, interrupted):
        runinfo.finish(ctx, self.samples, self.failed, self.rates, self.calibrations,
                       interrupted)

    def write(self, ctx, conform_results, interrupted, out_root, out):
        from . import report
        eb = ctx["echobench"]
        with open(self.run_dir / "conform.json", "w") as f:
            json.dump(conform_results, f, indent=1)
        writers.write_run_json(self.run_dir / "run.json", ctx, self.samples,
                               self.opts.repetitions)
        writers.write_cells_csv(self.run_dir / "cells.csv", self.samples)
        history = None
        if self.opts.history and self.samples and interrupted is None:
            history = self._add_to_history()
        if self.samples:
            summary = report.write(self.run_dir, history)
        else:
            summary = report.write_empty(self.run_dir, eb["incomplete"] or "every cell failed")
        if interrupted is None and any(s.valid for s in self.samples):
            writers.point_latest(out_root, self.run_dir)
        out(summary)
        out(f"report: {self.run_dir / 'report.html'}")
        if self.failed:
            out(f"echobench: {len(self.failed)} cell runs failed (see the report)")
        if interrupted is not None:
            out(f"echobench: incomplete ({eb['incomplete']}); results/latest not moved")
            return 128 + interrupted.signum, self.run_dir
        # A failed cell (server died, echo wrong, nothing measured) is a finding, not noise.
        return (1 if self.failed or not self.samples else 0), self.run_dir

"""run.json's context: what the run was (machine, options, placement, entries) and, at its
end, what happened (failures, warnings, invalid cells, peaks, offered rates)."""
import datetime

from . import machine
from .placement import DEFAULT_PLACEMENT, allowed_cpus, client_threads


def context(o, build, entries, ref, skipped, cpus, engine, names):
    """run.json's context at the start of a run: the machine (machine.context), the options,
    the placement, the entries and the run-level fields of context.echobench."""
    split = cpus.get(DEFAULT_PLACEMENT) or next(iter(cpus.values()))
    ctx = machine.context(build)
    ctx.update({
        "placement": {"server_cpus": split[0], "client_cpus": split[1],
                      "method": "sched_setaffinity", "note": split[2],
                      "allowed_cpus": allowed_cpus(),
                      "placements": {p: {"server_cpus": v[0], "client_cpus": v[1],
                                         "note": v[2]} for p, v in cpus.items()}},
        "server_threads": o.server_threads or "default",
        "client_threads": client_threads(cpus[o.placements[0]][1], o.client_threads),
        "client_engine": engine,
        "pipeline": o.pipeline, "preset": o.preset,
        "duration_s": o.duration, "warmup_s": o.warmup, "repetitions": o.repetitions,
        "backends": names, "unusable_backends": {n: r for n, r in skipped},
        "connections": o.connections, "sizes": o.sizes, "modes": o.modes,
        "reference": ref,
        "metric_encoding": "real_time/cpu_time are lower-is-better times: msgs_per_sec as "
                           "ns per message (cpu_time: server CPU ns per message), "
                           "bytes_per_sec as us per MiB, latencies in us; the natural value "
                           "is in each entry's 'echobench' object",
        "utc_start": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"),
    })
    ctx["echobench"] = {
        "incomplete": None, "reference": ref,
        "design": o.design, "order_seed": o.seed,
        "placement": o.placements[0] if len(o.placements) == 1 else list(o.placements),
        "placements": list(o.placements),
        "entries": [{"name": e.name, "kind": e.kind, "command": e.command,
                     "address": e.addr, "server_cpu": e.kind != "target",
                     "server_exe": str(e.server_exe) if e.server_exe else None}
                    for e in entries.values()],
        "open_loop_rates": "openNN = NN % of the reference entry's closed-loop peak (the "
                           "median of its closed-loop samples) for the same connections, "
                           "size and placement; rateN = N msgs/s; every entry of a cell "
                           "group is offered the same rate",
        "until_ci": None if o.until_ci is None else
        {"pct": o.until_ci, "max_repetitions": o.max_repetitions, "cells": {}},
        "slo": o.slo.text, "sweep": {}}
    if o.load_hosts:
        ctx["echobench"]["load_hosts"] = list(o.load_hosts)
    if o.repetitions < 2 and not o.until_ci:
        ctx["note"] = ("1 repetition: figures are single measurements; no interval and no "
                       "winner can be given")
    if o.rates_from:
        ctx["rates_from"] = str(o.rates_from)
    return ctx

def finish(ctx, samples, failed, rates, calibrations, interrupted):
    """The fields known once the measuring is over: failures, warnings, invalid cells, the
    CPU source, the peaks and offered rates, whether it was interrupted."""
    eb = ctx["echobench"]
    ctx["failed_cells"] = failed
    ctx["warnings"] = [{"cell": s.cell.label(), "repetition": s.repetition, "warning": w}
                       for s in samples for w in s.warnings]
    ctx["invalid_cells"] = [{"cell": s.cell.label(), "repetition": s.repetition,
                             "reasons": s.reasons}
                            for s in samples if not s.valid]
    ctx["server_cpu_source"] = {
        "methods": sorted({s.cpu_method for s in samples if s.cpu_method}),
        "explanation": "CPU time of the server's process group over the measured window: each "
                       "process's CPU clock (clock_getcpuclockid: ns, exited threads "
                       "included) plus its reaped children's time; utime+stime+cutime+cstime "
                       "from /proc/PID/stat (clock ticks) where a clock cannot be read; none "
                       "for --target entries"}
    ctx["closed_loop_peaks"], ctx["open_loop_rates"] = rates.context()
    ctx["calibrations"] = calibrations
    ctx["interrupted"] = interrupted is not None
    if interrupted is not None:
        eb["incomplete"] = f"interrupted by {interrupted}"
    ctx["utc_end"] = datetime.datetime.now(datetime.timezone.utc).isoformat(
        timespec="seconds")

"""A results directory read back (the one reader of a run's files): run.json for the figures
and every per-sample and run-level field (docs/RESULTS.md), cells.csv for the metrics run.json
does not gate on, hgrm/ for the latency spectra, raw/ for the load hosts' detail, conform.json
for the conformance verdicts. Everything is keyed by matrix.Cell: a cell is one entry at one
point of the matrix, and `spots()` gives the points (Cell with entry None) in report order.

How far a figure can be trusted is decided in verdict.py; this module only reads.
"""
import csv
import json
import math
import pathlib
import statistics
from dataclasses import replace

from . import gbjson, hgrm, shape, stats, verdict
from .matrix import Cell, mode_order
from .metrics import higher_is_better
from .shape import count, dict_of, flag, list_of, number, obj, text
from .util import UsageError


_RECORD = obj(required=("verdict",), verdict=text, passed=count, failed=count, skipped=count,
              failed_ids=list_of(text), not_counted_ids=list_of(text), left_out=list_of(text),
              note=text, seconds=number, suite=text)
_RAN = obj(required=("passed", "failed", "skipped", "failed_ids"))


def _conform_record(v):
    """One entry's verdict in conform.json (conform.run's dict; 'not run' has only a note)."""
    _RECORD(v)
    if v["verdict"] != "not run":
        _RAN(v)


CONFORM_JSON = dict_of(_conform_record)
# raw/<cell>_r<rep>.json of a --load-hosts run: what the report shows of each host.
HOSTS_JSON = obj(start_spread_us=number, hosts=list_of(obj(
    dest=text, connections=count, rate=number, phase=text, ok=flag, error=text,
    failed_checks=list_of(text),
    json=obj(msgs_per_sec=number, latency_us=obj(p99=number), mismatches=count))))
CSV_COLUMNS = ("entry", "connections", "size", "mode", "placement", "repetition", "metric",
               "value")


def primary_metric(cell):
    """What decides the winner of a server-bound cell: throughput for closed loop and
    streaming, p99 for open loop (where every entry of the cell is offered the same rate)."""
    if cell.kind == "stream":
        return "bytes_per_sec"
    if cell.kind == "churn":
        return "transactions_per_sec"
    if cell.is_open:
        return "p99_us"
    return "msgs_per_sec"


def efficiency_metric(cell):
    """The server's CPU per unit of work: what ranks servers when the client is the limit."""
    return {"stream": "server_cpu_ns_per_kib", "churn": "server_cpu_ns_per_tx"}.get(
        cell.kind, "server_cpu_ns_per_msg")


class RunData:
    """A results directory read back: per-repetition values of every cell, their medians with
    intervals, and the run-level fields."""

    def __init__(self, run_dir):
        self.dir = pathlib.Path(run_dir)
        if not self.dir.is_dir():
            raise UsageError(f"'{run_dir}' is not a results directory")
        data = gbjson.load(self.dir)
        self.context = data.get("context") or {}
        self.run = gbjson.run_fields(self.context)
        self.paired = self.run.get("design") == "paired"
        self.conform = self._json("conform.json", CONFORM_JSON) or {}
        self.values = {}     # Cell -> {metric: {rep: value}}
        self.unresolved = {}  # (Cell, metric) -> {rep} whose percentile echo-load could not resolve
        self.samples = {}    # Cell -> {rep: {"valid", "reasons", "offered", "client_bound"}}
        entries = [e for e in self.run.get("entries") or [] if isinstance(e, dict)]
        self.kinds = {e.get("name"): e.get("kind", "backend") for e in entries}
        # entries[].server_cpu: false for --target entries (not started by echobench)
        self.no_cpu = {e.get("name") for e in entries
                       if e.get("server_cpu", e.get("kind") != "target") is False}
        self._read(data)
        order = [e.get("name") for e in entries] + list(self.context.get("backends") or [])
        seen = list(dict.fromkeys(c.entry for c in self.values))
        self.backends = [b for b in dict.fromkeys(order) if b in seen or b in self.conform] + \
            [b for b in seen if b not in order]
        self.entries = self.backends
        self.conns = sorted({c.connections for c in self.values})
        self.sizes = sorted({c.size for c in self.values})
        self.modes = sorted({c.mode for c in self.values}, key=mode_order)
        self.placements = sorted({c.placement for c in self.values})
        self.main_placement = self.placements[0] if self.placements else None
        self._figs = {}
        self.spectra = self._spectra()
        ref = self.run.get("reference") or self.context.get("reference")
        self.reference = ref if ref in self.backends else \
            (self.backends[0] if self.backends else None)
        self.load_hosts = self.run.get("load_hosts") or []
        self.host_detail = self._host_detail() if self.load_hosts else {}

    def has_cpu(self, entry):
        """Whether the entry has a server-CPU figure: not for --target entries."""
        return entry not in self.no_cpu and self.kind(entry) != "target"

    def kind(self, entry):
        return self.kinds.get(entry, "backend")

    def _json(self, name, spec):
        """A JSON file of the run checked against spec; None when it is not there."""
        path = self.dir / name
        if not path.exists():
            return None
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, ValueError) as e:
            raise UsageError(f"cannot read '{path}': {e}") from None
        shape.require(spec, data, path)
        return data

    def _sample(self, cell, rep):
        return self.samples.setdefault(cell, {}).setdefault(
            rep, {"valid": True, "reasons": [], "offered": None, "client_bound": None})

    def _read(self, data):
        have = set()
        for r in gbjson.iterations(data):
            cell = replace(r["cell"], offered_rate=None)
            self.kinds.setdefault(cell.entry, r["entry_kind"])
            self.values.setdefault(cell, {}).setdefault(r["metric"], {})[r["repetition"]] = \
                r["value"]
            have.add((cell, r["repetition"], r["metric"]))
            smp = self._sample(cell, r["repetition"])
            if not r["valid"]:
                smp["valid"] = False
                for why in r["invalid_reasons"] or ["echo-load's self-checks failed"]:
                    if why not in smp["reasons"]:
                        smp["reasons"].append(why)
            if r["offered_rate"]:
                smp["offered"] = r["offered_rate"]
            if r["client_bound"] is not None:
                smp["client_bound"] = r["client_bound"]
            if r["resolved"] is False:
                self.unresolved.setdefault((cell, r["metric"]), set()).add(r["repetition"])
        path = self.dir / "cells.csv"
        if not path.exists():
            return
        for line, cell, rep, metric, value in _csv_rows(path):
            if (cell, rep, metric) in have:
                continue
            have.add((cell, rep, metric))
            self.values.setdefault(cell, {}).setdefault(metric, {})[rep] = value
            smp = self._sample(cell, rep)
            if metric == "offered_rate" and smp["offered"] is None:
                smp["offered"] = value

    def _spectra(self):
        """Cell -> [(us, percentile)] from the repetition with the median p99 (a spectrum
        cannot be averaged; the middle one is the honest pick)."""
        out = {}
        for cell, ms in self.values.items():
            reps = sorted(ms.get("p99_us", {}).items(), key=lambda t: t[1])
            if not reps:
                continue
            rep, p99 = reps[(len(reps) - 1) // 2]
            points = hgrm.read(self.dir / "hgrm" / f"{cell.key}_r{rep}.hgrm")
            if points:
                scale = hgrm.scale_to_us(points, p99)
                out[cell] = [(v * scale, p) for v, p in points if math.isfinite(v * scale)]
        return out

    def _host_detail(self):
        """Cell -> {rep: {"start_spread_us", "hosts": [row]}} from raw/<cell>_r<rep>.json of
        a --load-hosts run: each load host's share and figures (remote.py's `hosts` list)."""
        out = {}
        for cell, smp in self.samples.items():
            for rep in smp:
                load = self._json(f"raw/{cell.key}_r{rep}.json", HOSTS_JSON)
                if not load or not load.get("hosts"):
                    continue
                rows = []
                for h in load["hosts"]:
                    js = h.get("json") or {}
                    lat = js.get("latency_us") or {}
                    rows.append({"dest": h.get("dest"), "connections": h.get("connections"),
                                 "rate": h.get("rate"), "phase": h.get("phase"),
                                 "ok": bool(h.get("ok")), "error": h.get("error"),
                                 "failed_checks": h.get("failed_checks") or [],
                                 "msgs_per_sec": js.get("msgs_per_sec"),
                                 "p99_us": lat.get("p99"), "mismatches": js.get("mismatches")})
                out.setdefault(cell, {})[rep] = {"start_spread_us": load.get("start_spread_us"),
                                                 "hosts": rows}
        return out

    # ---- per cell ------------------------------------------------------------------------
    def spots(self):
        """The points of the matrix (Cells without entry) that have a measurement, in report
        order."""
        return sorted({c.spot for c in self.values}, key=lambda c: c.sort_key)

    def cell(self, spot, entry):
        return spot.of(entry, self.kind(entry))

    def at(self, entry, connections, size, mode, placement=None):
        """The Cell of entry at a point (placement: the run's first)."""
        return Cell(entry, connections, size, mode, placement or self.main_placement)

    def rounds(self, cell, metric):
        """{repetition: value} of a cell's metric (none for a target's server CPU)."""
        if metric.startswith("server_cpu") and not self.has_cpu(cell.entry):
            return {}
        return dict(self.values.get(cell, {}).get(metric, {}))

    def unresolved_reps(self, cell, metric):
        """The repetitions in which echo-load could not resolve this latency percentile."""
        return self.unresolved.get((cell, metric), set())

    def reps(self, cell, metric):
        return list(self.rounds(cell, metric).values())

    def fig(self, cell, metric):
        """(median, lo, hi, n) over the repetitions of a cell, or None."""
        k = (cell, metric)
        if k not in self._figs:
            vals = self.reps(cell, metric)
            self._figs[k] = (*stats.median_ci(vals), len(vals)) if vals else None
        return self._figs[k]

    def median(self, cell, metric):
        f = self.fig(cell, metric)
        return f[0] if f else None

    def validity(self, cell):
        """(valid, reasons): invalid when any repetition's measurement cannot be trusted."""
        smp = self.samples.get(cell, {})
        reasons = []
        for rep in sorted(smp):
            for why in smp[rep]["reasons"]:
                if why not in reasons:
                    reasons.append(why)
        return all(x["valid"] for x in smp.values()), reasons

    def client_bound(self, cell):
        """True when most of the cell's repetitions were client-bound (the client was at least
        as busy as the server), False when most were not, None when unknown."""
        flags = [x["client_bound"] for x in self.samples.get(cell, {}).values()
                 if x["client_bound"] is not None]
        if not flags:
            return None
        return sum(flags) * 2 > len(flags)

    def bound(self, spot):
        """'client-bound' when any entry of the spot was, 'server-bound' when every entry was
        known not to be, None when the run cannot tell (no server CPU figure)."""
        flags = [self.client_bound(self.cell(spot, b)) for b in self.backends
                 if self.cell(spot, b) in self.values]
        if any(f is True for f in flags):
            return "client-bound"
        if flags and all(f is False for f in flags):
            return "server-bound"
        return None

    def deciding_metric(self, spot):
        """The metric that ranks a spot's entries (when every entry has a server CPU figure):
        in open loop the server's CPU per message at the same offered rate (p99's spread
        between short slices on a shared machine is far wider than the differences between
        servers: measured, README "How far to trust a figure"); in a closed loop, stream or
        churn cell its throughput, or the server's CPU per unit when the client was the
        limit. Without CPU figures (a --target): the primary metric."""
        if all(self.has_cpu(b) for b in self.backends) and \
                (spot.is_open or self.bound(spot) == "client-bound"):
            return efficiency_metric(spot)
        return primary_metric(spot)

    def decide(self, spot, metric=None):
        """verdict.decide over the trusted entries of a spot; plus the left-out ones
        (`invalid`). Open loop: no verdict when the entries were offered different rates."""
        metric = metric or self.deciding_metric(spot)
        values, invalid = {}, []
        for b in self.backends:
            cell = self.cell(spot, b)
            r = self.rounds(cell, metric)
            if not r:
                continue
            if self.validity(cell)[0]:
                values[b] = r
            else:
                invalid.append(b)
        dec = verdict.decide(values, higher_is_better(metric), self.paired, self.reference)
        dec["invalid"], dec["metric"] = invalid, metric
        if spot.is_open and dec["verdict"] != "-":
            _, same = self.group_offered(spot)
            if not same:
                dec.update(verdict="inconclusive", winner=None, label="not comparable",
                           reason="the entries were offered different rates")
        return dec

    def ratio(self, cell, metric):
        """(ratio, lo, hi, coverage) of an entry to the reference at the same spot, or None."""
        ref = self.cell(cell.spot, self.reference)
        a, b = self.rounds(cell, metric), self.rounds(ref, metric)
        if not a or not b:
            return None
        return verdict.ratio(a, b, True) if self.paired else \
            verdict.ratio(list(a.values()), list(b.values()), False)

    def offered(self, cell):
        rates = [x["offered"] for x in self.samples.get(cell, {}).values() if x["offered"]]
        return statistics.median(rates) if rates else None

    def group_offered(self, spot):
        """The open-loop rate offered to the entries of a spot: (rate, same for all)."""
        rates = [self.offered(self.cell(spot, b)) for b in self.backends]
        rates = [r for r in rates if r]
        if not rates:
            return None, True
        return statistics.median(rates), max(rates) <= min(rates) * 1.01

    def invalid_cells(self):
        """[(entry, spot label, invalid repetitions, repetitions, reasons)]."""
        out = []
        for spot in self.spots():
            for b in self.backends:
                cell = self.cell(spot, b)
                if cell in self.samples:
                    ok, reasons = self.validity(cell)
                    if not ok:
                        bad = sum(1 for x in self.samples[cell].values() if not x["valid"])
                        out.append((b, spot.where(), bad, len(self.samples[cell]), reasons))
        return out

    def until_ci_misses(self):
        """(until_ci, [(benchmark name, half-width % of the median, repetitions)]) for the
        cells where --until-ci did not reach its target (context.echobench.until_ci.cells)."""
        uc = self.run.get("until_ci")
        if not isinstance(uc, dict) or not uc.get("pct"):
            return None, []
        out = []
        for name, v in (uc.get("cells") or {}).items():
            if not isinstance(v, dict) or v.get("reached"):
                continue
            med, half = v.get("median"), v.get("half_width")
            pct = abs(half / med) * 100 if med and half is not None else None
            out.append((name, pct, v.get("repetitions")))
        return uc, out

    def knees(self):
        """{entry: sweep} for entries with a sweep (context.echobench.sweep)."""
        sw = self.run.get("sweep") or {}
        return {e: v for e, v in sw.items() if isinstance(v, dict)}

    def repetitions(self):
        """The most repetitions (or rounds) any cell has."""
        return max((len(s) for s in self.samples.values()), default=0)


def _csv_rows(path):
    """(line, Cell, repetition, metric, value) of each row of cells.csv that has a value;
    UsageError naming the line and column of a row that does not read."""
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise UsageError(f"'{path}': no column {', '.join(missing)} in its header "
                                 f"(line 1)")
            rows = [(n, r) for n, r in enumerate(reader, 2)]
    except (OSError, ValueError, csv.Error) as e:
        raise UsageError(f"cannot read '{path}': {e}") from None
    for n, r in rows:
        if r.get(None):
            raise UsageError(f"'{path}' line {n}: more fields than its header has")
        if any(r[c] is None for c in CSV_COLUMNS):
            raise UsageError(f"'{path}' line {n}: fewer fields than its header has")
        if r["value"] == "":
            continue
        try:
            nums = [_whole(r[c], c) for c in ("connections", "size", "repetition")]
            value = _figure(r["value"])
        except shape.ShapeError as e:
            raise UsageError(f"'{path}' line {n}: {e}") from None
        yield n, Cell(r["entry"], nums[0], nums[1], r["mode"], r["placement"]), nums[2], \
            r["metric"], value


def _whole(text_, column):
    try:
        v = int(text_)
    except ValueError:
        v = text_
    try:
        count(v)
    except shape.ShapeError as e:
        raise e.at(column) from None
    return v


def _figure(text_):
    try:
        v = float(text_)
    except ValueError:
        v = text_
    try:
        number(v)
    except shape.ShapeError as e:
        raise e.at("value") from None
    return v

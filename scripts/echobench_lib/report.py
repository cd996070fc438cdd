"""report.html (self-contained: inline SVG, inline CSS, no network) and summary.md from a
results directory: run.json for the figures and every per-sample and run-level field
(docs/RESULTS.md), cells.csv for the metrics run.json does not gate on, hgrm/ for the latency
spectra, conform.json for the conformance verdicts. `echobench report DIR` calls write().

How far a figure can be trusted is said next to it: every figure is the median over
repetitions with its 95 % confidence interval (stats.median_ci), every ratio to the reference
carries its interval (stats.ratio_ci), and a cell's winner is named only by stats.decide_winner;
cells where echo-load's self-checks failed are marked and take part in no winner.
"""
import csv
import datetime
import html
import json
import pathlib
import statistics

from . import conform as conform_mod
from . import gbjson, hgrm, plots, stats
from . import sweep as knee_mod
from .matrix import DEFAULT_PLACEMENT, Cell, mode_order
from .metrics import higher_is_better
from .util import UsageError, human

ALPHA, MIN_EFFECT = 0.05, 0.05

# metric -> (unit shown in column headers, factor from the stored value). One system, SI.
UNITS = {"msgs_per_sec": ("msgs/s", 1.0), "bytes_per_sec": ("MB/s", 1e-6),
         "offered_rate": ("msgs/s", 1.0), "rate_achieved": ("msgs/s", 1.0),
         "server_cpu_ns_per_msg": ("ns/msg", 1.0), "server_cpu_ns_per_kib": ("ns/KiB", 1.0),
         "errors": ("count", 1.0), "client_cpu_busiest": ("%", 100.0)}

UNIT_LEGEND = ("Units: SI throughout, as in echo-load, cells.csv and run.json: k = 10³, "
               "M = 10⁶, G = 10⁹; MB/s = 10⁶ B/s; latencies in µs; CPU time in ns; message "
               "sizes in B. Each column's unit is in its header.")
def stats_legend(d):
    """STATS_LEGEND with the coverage of (min, max) at this run's repetitions."""
    n = d.context.get("repetitions")
    if isinstance(n, int) and 1 < n < 6:
        cover = f"{stats.median_ci_coverage(n)[1]:.1%}".replace(".0%", "%").replace("%", " %")
        return STATS_LEGEND.replace("(75 % at 3 repetitions)", f"({cover} at {n} repetitions)")
    return STATS_LEGEND


STATS_LEGEND = (
    "Every figure is the median over repetitions with its 95 % confidence interval [lo, hi] "
    "from order statistics (binomial, distribution-free). † fewer than 6 repetitions: no "
    "interval can reach 95 %, so [lo, hi] is the range (min, max), which covers less (75 % at "
    "3 repetitions); ‡ one repetition: no interval. Ratios are ratios of medians with a 95 % "
    "percentile-bootstrap interval (2000 resamples, fixed seed). A cell's winner is named only "
    "when it beats the runner-up in a one-sided Mann-Whitney test at p ≤ 0.025 (α = 0.05 halved "
    "because the leader is picked from the data) and by at least 5 %; otherwise the cell says "
    "'tie (within noise)'. Its margin is leader / runner-up (runner-up / leader for latency) "
    "with its interval. ✗ marks an entry whose echo-load self-checks failed in a repetition: "
    "it takes part in no winner.")


def _mode_key(mode):
    """matrix.mode_order, tolerant of mode names it does not know (sorted after, by name)."""
    try:
        return (0, mode_order(mode), "")
    except (ValueError, TypeError):
        return (1, (0, 0), str(mode))


def primary_metric(mode):
    """What decides the winner of a cell: throughput for closed loop and streaming, p99 for open
    loop (where every entry of the cell is offered the same rate)."""
    if mode == "stream":
        return "bytes_per_sec"
    if mode.startswith("open"):
        return "p99_us"
    return "msgs_per_sec"


def unit_of(metric):
    if metric in UNITS:
        return UNITS[metric][0]
    return "µs" if metric.endswith("_us") else ""


def num(metric, value):
    """A value in its column's unit, without the unit (SI prefix k/M/G for large values)."""
    if value is None:
        return "-"
    return human(value * UNITS.get(metric, ("", 1.0))[1])


def fig_text(metric, fig):
    """'12.3k [11.9k, 12.6k]' with † (range: fewer than 6 repetitions) or ‡ (one)."""
    if fig is None:
        return "-"
    med, lo, hi, n = fig
    if n == 1:
        return f"{num(metric, med)} ‡"
    mark = "" if stats.ci_level_reachable(n) else " †"
    return f"{num(metric, med)} [{num(metric, lo)}, {num(metric, hi)}]{mark}"


def ratio_text(r):
    if r is None:
        return "-"
    ratio, lo, hi = r
    return f"{ratio:.2f} [{lo:.2f}, {hi:.2f}]"


def margin_text(dec):
    if dec.get("margin") is None:
        return "-"
    return f"{dec['margin']:.2f}× [{dec['margin_lo']:.2f}, {dec['margin_hi']:.2f}]"


class RunData:
    """A results directory read back: per-repetition values of every (entry, connections,
    size, mode, placement) cell, their medians with intervals, and the run-level fields."""

    def __init__(self, run_dir):
        self.dir = pathlib.Path(run_dir)
        if not self.dir.is_dir():
            raise UsageError(f"'{run_dir}' is not a results directory")
        data = gbjson.load(self.dir)
        self.context = data.get("context", {})
        self.run = gbjson.run_fields(self.context)
        self.conform = self._json("conform.json") or {}
        self.values = {}     # key5 -> {metric: [(rep, value)]}
        self.samples = {}    # key5 -> {rep: {"valid", "reasons", "offered"}}
        entries = [e for e in self.run.get("entries") or [] if isinstance(e, dict)]
        self.kinds = {e.get("name"): e.get("kind", "backend") for e in entries}
        # entries[].server_cpu: false for --target entries (not started by echobench)
        self.no_cpu = {e.get("name") for e in entries
                       if e.get("server_cpu", e.get("kind") != "target") is False}
        self._read(data)
        order = [e.get("name") for e in self.run.get("entries") or [] if isinstance(e, dict)]
        order += list(self.context.get("backends") or [])
        seen = list(dict.fromkeys(k[0] for k in self.values))
        self.backends = [b for b in dict.fromkeys(order) if b in seen or b in self.conform] + \
            [b for b in seen if b not in order]
        self.entries = self.backends
        self.conns = sorted({k[1] for k in self.values})
        self.sizes = sorted({k[2] for k in self.values})
        self.modes = sorted({k[3] for k in self.values}, key=_mode_key)
        self.placements = sorted({k[4] for k in self.values}, key=lambda p: (p is None,
                                                                            str(p)))
        self.main_placement = self.placements[0] if self.placements else None
        self._figs = {}
        self.med5 = {k: {m: statistics.median(v for _, v in vals) for m, vals in ms.items()}
                     for k, ms in self.values.items()}
        # The plots' view: the first placement, keyed (entry, connections, size, mode).
        self.med = {k[:4]: v for k, v in self.med5.items() if k[4] == self.main_placement}
        self.ci = {k[:4]: {m: self.fig(k, m)[1:3] for m in v}
                   for k, v in self.med5.items() if k[4] == self.main_placement}
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

    def _json(self, name):
        try:
            with open(self.dir / name) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def _read(self, data):
        have = set()
        for r in gbjson.iterations(data):
            key = (r["entry"], r["connections"], r["size"], r["mode"], r["placement"])
            self.kinds.setdefault(r["entry"], r["entry_kind"])
            self.values.setdefault(key, {}).setdefault(r["metric"], []).append(
                (r["repetition"], r["value"]))
            have.add((key, r["repetition"], r["metric"]))
            smp = self.samples.setdefault(key, {}).setdefault(
                r["repetition"], {"valid": True, "reasons": [], "offered": None})
            if not r["valid"]:
                smp["valid"] = False
                for why in r["invalid_reasons"] or ["echo-load's self-checks failed"]:
                    if why not in smp["reasons"]:
                        smp["reasons"].append(why)
            if r["offered_rate"]:
                smp["offered"] = r["offered_rate"]
        places = {k[4] for k in self.values}
        only_place = next(iter(places)) if len(places) == 1 else None
        path = self.dir / "cells.csv"
        if not path.is_file():
            return
        with open(path, newline="") as f:
            for r in csv.DictReader(f):
                try:
                    place = r.get("placement") or only_place
                    key = (r["backend"], int(r["connections"]), int(r["size"]), r["mode"],
                           place)
                    rep, metric, value = int(r["repetition"]), r["metric"], r["value"]
                    if value in ("", None):
                        continue
                    value = float(value)
                except (KeyError, ValueError) as e:
                    raise UsageError(f"{path}: bad row {r}: {e}") from e
                if (key, rep, metric) in have:
                    continue
                have.add((key, rep, metric))
                self.values.setdefault(key, {}).setdefault(metric, []).append((rep, value))
                smp = self.samples.setdefault(key, {}).setdefault(
                    rep, {"valid": True, "reasons": [], "offered": None})
                if metric == "offered_rate" and smp["offered"] is None:
                    smp["offered"] = value

    def _spectra(self):
        """(entry, c, size, mode) -> [(us, percentile)] from the repetition with the median
        p99 (a spectrum cannot be averaged; the middle one is the honest pick)."""
        out = {}
        for key, ms in self.values.items():
            if key[4] != self.main_placement:
                continue
            reps = sorted(ms.get("p99_us", []), key=lambda t: t[1])
            if not reps:
                continue
            rep, p99 = reps[(len(reps) - 1) // 2]
            points = hgrm.read(self.dir / "hgrm" / f"{self.cell(key).key}_r{rep}.hgrm")
            if points:
                scale = hgrm.scale_to_us(points, p99)
                out[key[:4]] = [(v * scale, p) for v, p in points]
        return out

    def cell(self, key):
        """matrix.Cell of a key5 (the runner names files by Cell.key, placement included)."""
        return Cell(*key[:4], key[4] or DEFAULT_PLACEMENT)

    def _host_detail(self):
        """key5 -> {rep: {"start_spread_us", "hosts": [row]}} from raw/<cell>_r<rep>.json of
        a --load-hosts run: each load host's share and figures (remote.py's `hosts` list)."""
        out = {}
        for key, smp in self.samples.items():
            for rep in smp:
                try:
                    with open(self.dir / "raw" / f"{self.cell(key).key}_r{rep}.json") as f:
                        load = json.load(f)
                except (OSError, ValueError):
                    continue
                if not isinstance(load, dict) or not isinstance(load.get("hosts"), list):
                    continue
                rows = []
                for h in load["hosts"]:
                    js = h.get("json") if isinstance(h.get("json"), dict) else {}
                    lat = js.get("latency_us") if isinstance(js.get("latency_us"), dict) \
                        else {}
                    rows.append({"dest": h.get("dest"), "connections": h.get("connections"),
                                 "rate": h.get("rate"), "phase": h.get("phase"),
                                 "ok": bool(h.get("ok")), "error": h.get("error"),
                                 "failed_checks": h.get("failed_checks") or [],
                                 "msgs_per_sec": js.get("msgs_per_sec"),
                                 "p99_us": lat.get("p99"), "mismatches": js.get("mismatches")})
                out.setdefault(key, {})[rep] = {"start_spread_us": load.get("start_spread_us"),
                                                "hosts": rows}
        return out

    # ---- per cell ------------------------------------------------------------------------

    def cells(self):
        """(size, connections, mode, placement) in report order."""
        return [(s, c, m, p) for p in self.placements for s in self.sizes for c in self.conns
                for m in self.modes
                if any((b, c, s, m, p) in self.values for b in self.backends)]

    def label(self, s, c, m, p):
        """Cell.where() of a cell: the one label the runner's messages use too."""
        return Cell("", c, s, m, p or DEFAULT_PLACEMENT).where()

    def fig(self, key, metric):
        """(median, lo, hi, n) over the repetitions of key5, or None."""
        k = (key, metric)
        if k not in self._figs:
            vals = [v for _, v in self.values.get(key, {}).get(metric, [])]
            if metric.startswith("server_cpu") and not self.has_cpu(key[0]):
                vals = []      # a target was not started by echobench: no CPU of its own
            self._figs[k] = (*stats.median_ci(vals), len(vals)) if vals else None
        return self._figs[k]

    def reps(self, key, metric):
        return [v for _, v in self.values.get(key, {}).get(metric, [])]

    def validity(self, key):
        """(valid, reasons): invalid when any repetition failed echo-load's self-checks."""
        smp = self.samples.get(key, {})
        reasons = []
        for rep in sorted(smp):
            for why in smp[rep]["reasons"]:
                if why not in reasons:
                    reasons.append(why)
        return all(x["valid"] for x in smp.values()), reasons

    def offered(self, key):
        rates = [x["offered"] for x in self.samples.get(key, {}).values() if x["offered"]]
        return statistics.median(rates) if rates else None

    def group_offered(self, s, c, m, p):
        """The open-loop rate offered to the entries of a cell: (rate, same for all)."""
        rates = [self.offered((b, c, s, m, p)) for b in self.backends]
        rates = [r for r in rates if r]
        if not rates:
            return None, True
        same = max(rates) <= min(rates) * 1.01
        return statistics.median(rates), same

    def decide(self, s, c, m, p, metric=None):
        """stats.decide_winner over the valid entries of a cell, plus the invalid ones left
        out; open loop: no winner when the entries were offered different rates."""
        metric = metric or primary_metric(m)
        groups, invalid = {}, []
        for b in self.backends:
            key = (b, c, s, m, p)
            vals = self.reps(key, metric)
            if not vals:
                continue
            if self.validity(key)[0]:
                groups[b] = vals
            else:
                invalid.append(b)
        dec = stats.decide_winner(groups, higher_is_better(metric), ALPHA, MIN_EFFECT)
        dec["invalid"] = invalid
        if m.startswith("open") and dec["winner"]:
            _, same = self.group_offered(s, c, m, p)
            if not same:
                dec.update(winner=None, label=stats.TIE,
                           reason="the entries were offered different rates: not comparable")
        return dec

    def ratio(self, key, metric):
        """(ratio, lo, hi) of an entry to the reference in the same cell, or None."""
        ref = (self.reference,) + key[1:]
        a, b = self.reps(key, metric), self.reps(ref, metric)
        if not a or not b:
            return None
        if metric.startswith("server_cpu") and not (self.has_cpu(key[0]) and
                                                    self.has_cpu(self.reference)):
            return None
        try:
            return stats.ratio_ci(a, b)
        except ValueError:
            return None

    def invalid_cells(self):
        out = []
        for (s, c, m, p) in self.cells():
            for b in self.backends:
                key = (b, c, s, m, p)
                if key in self.samples:
                    ok, reasons = self.validity(key)
                    if not ok:
                        bad = sum(1 for x in self.samples[key].values() if not x["valid"])
                        out.append((b, self.label(s, c, m, p), bad, len(self.samples[key]),
                                    reasons))
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


def slo_text(slo):
    """'p99 ≤ 1 ms' from context.echobench.sweep[entry].slo, which is the --slo text
    ('p99:1ms')."""
    try:
        pct, us = knee_mod.parse_slo(slo)
    except UsageError:
        return str(slo) if slo else "-"
    return f"{pct} ≤ {us / 1000:g} ms" if us >= 1000 else f"{pct} ≤ {us:g} µs"


def slo_us(slo):
    """The SLO's latency limit in µs, or None."""
    try:
        return knee_mod.parse_slo(slo)[1]
    except UsageError:
        return None


def notes(d):
    """Caveats a reader must see before the figures."""
    ctx = d.context
    out = []
    if ctx.get("note"):
        out.append(ctx["note"])
    load, cpus = (ctx.get("load_avg") or [0])[0], ctx.get("num_cpus") or 1
    if load > 0.5 * cpus:
        out.append(f"the machine was busy when the run started (load average {load:.1f} on "
                   f"{cpus} CPUs): other work competed with server and client, so the figures "
                   f"are noisy and ratios between entries unreliable")
    targets = [b for b in d.backends if not d.has_cpu(b)]
    if targets:
        out.append(", ".join(targets) + (" is a target" if len(targets) == 1 else
                                         " are targets") +
                   " (an already running server, not started by echobench): no server-CPU "
                   "figure, and its state carries over from cell to cell")
    uc, misses = d.until_ci_misses()
    if misses:
        out.append(f"--until-ci {uc['pct']:g} % was not reached for {len(misses)} "
                   f"cell(s) within {uc.get('max_repetitions', '?')} repetitions: " +
                   "; ".join(f"{c} (±{h:.1f} % after {n} repetitions)" if h is not None
                             else str(c) for c, h, n in misses[:8]) +
                   (" ..." if len(misses) > 8 else ""))
    return out


def placement_text(d):
    ctx = d.context
    place = ctx.get("placement") or {}
    what = d.run.get("placement")
    if isinstance(what, list):
        what = ", ".join(map(str, what))
    if d.load_hosts:
        # echo-load ran on other hosts: only the server's CPUs are ours to place
        return (f"{what or 'split'}: server CPUs {_cpus(place.get('server_cpus'))}; the load "
                f"is remote, from {len(d.load_hosts)} load host(s) over ssh "
                f"({', '.join(map(str, d.load_hosts))}), so client CPUs do not apply")
    return (f"{what or 'split'}: server CPUs {_cpus(place.get('server_cpus'))}, client CPUs "
            f"{_cpus(place.get('client_cpus'))}" +
            (f" ({place.get('note')})" if place.get("note") else ""))


def incomplete_text(d):
    why = d.run.get("incomplete")
    if not why and not d.context.get("interrupted"):
        return None
    return (f"This run is incomplete ({why or 'interrupted'}): some cells or repetitions are "
            f"missing, and the figures cover only what was measured.")


def entry_header(d, b, metric):
    kind = d.kind(b)
    return f"{b}{'' if kind == 'backend' else f' [{kind}]'} ({unit_of(metric)})"


# ---- summary.md ----------------------------------------------------------------------------

def _kind_groups(d):
    """[(title, metric, [(s, c, m, p)], is_open)]: one table per headline metric, so that each
    column has one unit; open-loop tables add the offered rate after the cell."""
    groups = []
    for title, pred in (("Closed loop: throughput", lambda m: m == "closed"),
                        ("Open loop: p99 latency at the same offered rate",
                         lambda m: m.startswith("open")),
                        ("Streaming: throughput", lambda m: m == "stream")):
        cells = [x for x in d.cells() if pred(x[2])]
        if cells:
            groups.append((title, primary_metric(cells[0][2]), cells,
                           cells[0][2].startswith("open")))
    return groups


def _lead_head(is_open):
    """The headers of the columns that open a winners table's row (see _lead)."""
    return ["cell"] + (["offered (msgs/s)"] if is_open else [])


def _lead(d, cell, is_open):
    """The columns that open a winners table's row: the cell, and in open loop the rate
    offered to every entry (marked when the entries were offered different rates)."""
    row = [d.label(*cell)]
    if is_open:
        rate, same = d.group_offered(*cell)
        row.append(num("offered_rate", rate) + ("" if same else " (differs)"))
    return row


def summary_markdown(d):
    """Per headline metric a table: each entry's median [95 % CI] and ratio to the reference
    [CI], the winner with its margin or 'tie (within noise)'; then knees, invalid cells."""
    ctx = d.context
    lines = [f"## echobench: {ctx.get('host_name', '?')}, {ctx.get('utc_start', '?')}", ""]
    inc = incomplete_text(d)
    if inc:
        lines += [f"**{inc}**", ""]
    lines += [f"{ctx.get('num_cpus', '?')} CPUs ({ctx.get('cpu_model', '?')}), "
              f"{str(ctx.get('kernel', '?')).split(' #')[0]}; placement {placement_text(d)}; "
              f"{ctx.get('repetitions', '?')} repetition(s) of {ctx.get('duration_s', '?')} s "
              f"({ctx.get('preset', '?')} preset). Ratios are vs {d.reference}.", "",
              stats_legend(d), "", UNIT_LEGEND, ""]
    lines += [f"**Note:** {n}." for n in notes(d)] + ([""] if notes(d) else [])
    if not d.backends:
        return "\n".join(lines + ["No cell was measured."])
    untestable = 0
    for title, metric, cells, is_open in _kind_groups(d):
        head = _lead_head(is_open) + \
            [entry_header(d, b, metric)[:-1] + ("" if b == d.reference else
                                                f"; × {d.reference}") + ")"
             for b in d.backends] + ["winner", "margin (×)", "p"]
        lines += [f"### {title}", "", "| " + " | ".join(head) + " |",
                  "|" + "---|" * len(head)]
        for s, c, m, p in cells:
            dec = d.decide(s, c, m, p)
            untestable += not dec["testable"] and dec["leader"] is not None and \
                dec["runner_up"] is not None
            row = _lead(d, (s, c, m, p), is_open)
            for b in d.backends:
                key = (b, c, s, m, p)
                f = d.fig(key, metric)
                if f is None:
                    row.append("-")
                    continue
                txt = fig_text(metric, f)
                if b != d.reference:
                    txt += f", {ratio_text(d.ratio(key, metric))}×"
                if not d.validity(key)[0]:
                    txt += " ✗"
                row.append(txt)
            row += [f"**{dec['winner']}**" if dec["winner"] else dec["label"],
                    margin_text(dec) if dec["winner"] else "-",
                    "-" if dec["p_value"] is None else f"{dec['p_value']:.3f}"]
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    if untestable:
        lines += [f"{untestable} cell(s) had too few repetitions to name any winner: "
                  f"{stats.min_reps_to_test(ALPHA / 2)} per entry are needed at α = "
                  f"{ALPHA:g}.", ""]
    knees = d.knees()
    if knees:
        lines += ["### Knee: highest offered rate that meets the SLO", "",
                  "| entry | SLO | max_rate_at_slo (msgs/s) | steps |", "|---|---|---|---|"]
        for b, k in knees.items():
            lines.append(f"| {b} | {slo_text(k.get('slo'))} | "
                         f"{knee_text(k)} | {len(k.get('steps') or [])} |")
        lines.append("")
    host_md = []
    for s, c, m, p in d.cells():
        for b in d.backends:
            for rep, spread, vals in host_rows(d, (b, c, s, m, p)):
                host_md.append("| " + " | ".join(map(str, [f"{b} {d.label(s, c, m, p)}", rep,
                                                           *vals,
                                                           num("start_spread_us", spread)]))
                               + " |")
    if host_md:
        head = ["cell", "rep", *HOST_HEAD, "start spread (µs)"]
        lines += ["### Load hosts (the load is remote; figures above are merged)", "",
                  "| " + " | ".join(head) + " |", "|" + "---|" * len(head), *host_md, ""]
    bad = d.invalid_cells()
    if bad:
        lines += ["### Invalid cells (✗: echo-load's self-checks failed; in no winner)", ""]
        lines += [f"- {b} {cell}: {n} of {tot} repetition(s): {reasons_text(r)}"
                  for b, cell, n, tot, r in bad]
        lines.append("")
    failed = ctx.get("failed_cells") or []
    if failed:
        lines += [f"{len(failed)} cell run(s) failed: " +
                  "; ".join(f"{f['cell']} rep {f['repetition']}: {f['reason']}"
                            for f in failed[:5]) + (" ..." if len(failed) > 5 else ""), ""]
    unusable = ctx.get("unusable_backends") or {}
    if unusable:
        lines += ["Not measured (unusable here): " +
                  "; ".join(f"{k}: {v}" for k, v in unusable.items()), ""]
    verdicts = [f"{b}: {conform_mod.verdict_text(d.conform.get(b))}" for b in d.backends]
    lines += ["Conformance: " + "; ".join(verdicts)]
    return "\n".join(lines)


def knee_text(k):
    v = k.get("max_rate_at_slo")
    if v is None:
        return "none (no step met the SLO)"
    ci = k.get("max_rate_at_slo_ci")
    if isinstance(ci, list) and len(ci) == 2:
        return f"{num('offered_rate', v)} [{num('offered_rate', ci[0])}, " \
               f"{num('offered_rate', ci[1])}]"
    return f"{num('offered_rate', v)} ‡"


def reasons_text(reasons):
    """echo-load's reasons of several repetitions, one per failed check: the same check failing
    in every repetition reads once, with how often ('send_lag: p99 3916 us late ... (and 2
    more send_lag failures)'), in the words of the first repetition that failed it."""
    groups = {}
    for r in reasons:
        groups.setdefault(str(r).split(":", 1)[0], []).append(str(r))
    return "; ".join(rs[0] + (f" (and {len(rs) - 1} more {name} failure"
                              f"{'s' if len(rs) > 2 else ''})" if len(rs) > 1 else "")
                     for name, rs in groups.items())


def _cpus(cpus):
    return ",".join(map(str, cpus)) if cpus else "?"


def _e(text):
    return html.escape(str(text))


def _table(tid, header, rows, caption=None):
    out = [f'<table id="{tid}">']
    if caption:
        out.append(f"<caption>{_e(caption)}</caption>")
    out.append("<thead><tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr></thead>")
    out.append("<tbody>")
    for row in rows:
        if isinstance(row, str):              # a sub-row: one cell across the table
            out.append(f'<tr class="sub"><td class="text" colspan="{len(header)}">'
                       f"{_e(row)}</td></tr>")
            continue
        cells = []
        for cell in row:
            if isinstance(cell, tuple):       # (text, css class[, title])
                title = f' title="{_e(cell[2])}"' if len(cell) > 2 and cell[2] else ""
                cells.append(f'<td class="{cell[1]}"{title}>{_e(cell[0])}</td>')
            else:
                cells.append(f"<td>{_e(cell)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def winners_table(d):
    """One table per headline metric (one unit per column), inside #table-winners."""
    parts = ['<div id="table-winners">']
    for title, metric, cells, is_open in _kind_groups(d):
        rows = []
        for s, c, m, p in cells:
            dec = d.decide(s, c, m, p)
            row = _lead(d, (s, c, m, p), is_open)
            for b in d.backends:
                key = (b, c, s, m, p)
                f = d.fig(key, metric)
                ok, reasons = d.validity(key)
                cls = "invalid" if not ok else ("win" if b == dec["winner"] else "")
                row.append((fig_text(metric, f) + ("" if ok else " ✗"), cls,
                            reasons_text(reasons)))
            row.append((dec["label"], "win" if dec["winner"] else "tie",
                        dec.get("reason") or ""))
            row.append(margin_text(dec) if dec["winner"] else "-")
            row.append("-" if dec["p_value"] is None else f"{dec['p_value']:.3f}")
            rows.append(row)
        head = _lead_head(is_open) + \
            [entry_header(d, b, metric) for b in d.backends] + \
            ["winner", "margin (×) [95 % CI]", "p (one-sided)"]
        kind = "open" if is_open else cells[0][2]
        parts.append(f"<h3>{_e(title)}</h3>")
        parts.append(_table(f"table-winners-{kind}", head, rows))
    parts.append("</div>")
    return "\n".join(parts)


def ratios_table(d):
    """Each entry's figure divided by the reference's, with its bootstrap interval; shaded when
    the interval lies wholly more than 5 % on the better (green) or worse (red) side."""
    rows = []
    for s, c, m, p in d.cells():
        metrics = [primary_metric(m)]
        if m == "closed":
            metrics += ["p99_us", "server_cpu_ns_per_msg"]
        for metric in metrics:
            if not d.reps((d.reference, c, s, m, p), metric):
                continue
            row = [d.label(s, c, m, p), metric]
            for b in d.backends:
                key = (b, c, s, m, p)
                if b == d.reference:
                    row.append("1 (reference)")
                    continue
                r = d.ratio(key, metric)
                if r is None:
                    row.append("-")
                    continue
                ok = d.validity(key)[0] and d.validity((d.reference,) + key[1:])[0]
                if not ok:
                    row.append((ratio_text(r) + " ✗", "invalid"))
                    continue
                hib = higher_is_better(metric)
                better = r[1] > 1.05 if hib else r[2] < 1 / 1.05
                worse = r[2] < 1 / 1.05 if hib else r[1] > 1.05
                row.append((ratio_text(r), "better" if better else ("worse" if worse else "")))
            rows.append(row)
    return _table("table-ratios", ["cell", "metric"] + [f"{b} / {d.reference} (×)"
                                                         for b in d.backends], rows)


CELL_COLS = ["msgs_per_sec", "bytes_per_sec", "p50_us", "p99_us", "p999_us", "max_us",
             "server_cpu_ns_per_msg", "offered_rate", "errors"]


def cells_table(d):
    rows = []
    for s, c, m, p in d.cells():
        for b in d.backends:
            key = (b, c, s, m, p)
            if key not in d.values:
                continue
            nrep = max(len(x) for x in d.values[key].values())
            ok, reasons = d.validity(key)
            row = [b, d.kind(b), c, s, m, p or "-", nrep,
                   ("yes", "") if ok else ("no ✗", "invalid", reasons_text(reasons))]
            for k in CELL_COLS:
                if k.startswith("server_cpu") and not d.has_cpu(b):
                    row.append("n/a (target)")
                else:
                    row.append(fig_text(k, d.fig(key, k)))
            rows.append(row)
            rows += [f"└ {text}" for text in host_lines(d, key)]
    return _table("table-cells", ["entry", "kind", "connections", "size (B)", "mode",
                                  "placement", "repetitions", "valid"] +
                  [f"{k} ({unit_of(k)})" for k in CELL_COLS], rows)


HOST_HEAD = ("load host", "connections", "rate (msgs/s)", "phase", "status", "msgs/s",
             "p99 (µs)", "mismatches")


def host_rows(d, key):
    """Per load host of a --load-hosts cell, for every repetition: (rep, start spread µs,
    [HOST_HEAD values])."""
    out = []
    for rep, det in sorted(d.host_detail.get(key, {}).items()):
        for h in det["hosts"]:
            status = "ok" if h["ok"] else f"error: {h['error'] or '?'}"
            if h["failed_checks"]:
                status += "; failed checks: " + ", ".join(map(str, h["failed_checks"]))
            out.append((rep, det["start_spread_us"],
                        [h["dest"], h["connections"],
                         "closed loop" if h["rate"] is None else num("offered_rate", h["rate"]),
                         h["phase"] or "-", status, num("msgs_per_sec", h["msgs_per_sec"]),
                         num("p99_us", h["p99_us"]),
                         "-" if h["mismatches"] is None else h["mismatches"]]))
    return out


def host_lines(d, key):
    """One line per load host and repetition of a cell (the report's and summary's sub-rows)."""
    lines = []
    for rep, spread, vals in host_rows(d, key):
        dest, conns, rate, phase, status, mps, p99, mism = vals
        lines.append(f"rep {rep} load host {dest}: {conns} connections, rate {rate}, phase "
                     f"{phase}, {status}, {mps} msgs/s, p99 {p99} µs, {mism} mismatches; "
                     f"start spread {num('start_spread_us', spread)} µs")
    return lines


def hosts_table(d):
    """#table-hosts: every load host's share and figures, per cell and repetition."""
    rows = []
    for s, c, m, p in d.cells():
        for b in d.backends:
            key = (b, c, s, m, p)
            for rep, spread, vals in host_rows(d, key):
                rows.append([f"{b} {d.label(s, c, m, p)}", rep, *vals,
                             num("start_spread_us", spread)])
    if not rows:
        return None
    return _table("table-hosts", ["cell", "repetition", *HOST_HEAD, "start spread (µs)"], rows)


def invalid_table(d):
    bad = d.invalid_cells()
    if not bad:
        return '<p id="table-invalid">Every cell passed echo-load\'s self-checks.</p>'
    return _table("table-invalid", ["entry", "cell", "invalid repetitions", "reasons"],
                  [[b, (cell, "text"), f"{n} of {tot}", (reasons_text(r), "text")]
                   for b, cell, n, tot, r in bad])


def knee_table(d):
    knees = d.knees()
    if not knees:
        return None
    rows = []
    for b, k in knees.items():
        steps = k.get("steps") or []
        bad = sum(1 for x in steps if x.get("rate_ok") is False)
        rows.append([b, d.kind(b), slo_text(k.get("slo")), knee_text(k), len(steps),
                     f"{bad} step(s) failed the rate check" if bad else ""])
    return _table("table-knee", ["entry", "kind", "SLO", "max_rate_at_slo (msgs/s)", "steps",
                                 "note"], rows)


def conform_table(d):
    rows = []
    for b in d.backends:
        r = d.conform.get(b)
        if r is None or r.get("verdict") == "not run":
            note = (r or {}).get("note") or "no conformance results in this directory"
            rows.append([b, ("not run", ""), "-", "-", "-", note, "-"])
            continue
        cls = {"pass": "better", "fail": "worse"}.get(r["verdict"], "worse")
        note = ", ".join(r["failed_ids"]) or r.get("note") or ""
        if r.get("not_counted_ids"):
            note += ("; " if note else "") + "SHOULD failures not counted: " + \
                ", ".join(r["not_counted_ids"])
        if r.get("left_out"):
            note += ("; " if note else "") + "left out for time: " + ", ".join(r["left_out"])
        rows.append([b, (r["verdict"], cls), r["passed"], r["failed"], r["skipped"],
                     (note, "text"),
                     f"{r.get('seconds', '-')} ({r.get('suite', '?')})"])
    return _table("table-conform", ["entry", "verdict", "passed", "failed", "skipped",
                                    "failed cases / note", "time (s)"], rows)


def machine_table(d):
    ctx = d.context
    place = ctx.get("placement", {})
    items = [("host", ctx.get("host_name")), ("date", ctx.get("date")),
             ("run (UTC)", f"{ctx.get('utc_start', '?')} .. {ctx.get('utc_end', '?')}"),
             ("CPU", f"{ctx.get('num_cpus')} x {ctx.get('cpu_model')} "
                     f"({ctx.get('mhz_per_cpu')} MHz)"),
             ("virtualization", ctx.get("virtualization")), ("kernel", ctx.get("kernel")),
             ("compiler", ctx.get("compiler")),
             ("build", f"{ctx.get('build_dir')} ({ctx.get('buildtype')}, "
                       f"sanitize={ctx.get('sanitize')})"),
             ("git commit", f"{ctx.get('git_commit')}" + (" (uncommitted changes)"
                                                          if ctx.get("git_dirty") else "")),
             ("placement", f"{placement_text(d)} via {place.get('method', '?')}"),
             ("entries", "; ".join(
                 f"{e.get('name')} ({e.get('kind', 'backend')}"
                 + (f": {e['command']}" if e.get("command") else "")
                 + (f": {e['address']}" if e.get("address") else "") + ")"
                 for e in d.run.get("entries") or [] if isinstance(e, dict)) or "-"),
             ("server threads", ctx.get("server_threads")),
             ("client threads", ctx.get("client_threads")),
             ("client engine", ctx.get("client_engine") or "-"),
             ("pipeline", ctx.get("pipeline")),
             ("matrix", f"backends {ctx.get('backends')}, connections {ctx.get('connections')},"
                        f" sizes {ctx.get('sizes')}, modes {ctx.get('modes')}"),
             ("unusable backends", ", ".join(f"{k}: {v}" for k, v in
                                            (ctx.get("unusable_backends") or {}).items())
              or "none"),
             ("timing", f"{ctx.get('repetitions')} repetition(s), {ctx.get('duration_s')} s "
                        f"measured after {ctx.get('warmup_s')} s warmup, preset "
                        f"{ctx.get('preset')}"),
             ("load average at start", ctx.get("load_avg"))]
    if ctx.get("note"):
        items.append(("note", ctx["note"]))
    return _table("table-machine", ["", ""], [[k, "-" if v is None else v] for k, v in items])


def problems_table(d):
    ctx = d.context
    rows = [[f["cell"], f["repetition"], ("failed", "worse"), (f["reason"], "text")]
            for f in ctx.get("failed_cells") or []]
    rows += [[w["cell"], w["repetition"], "warning", (w["warning"], "text")]
             for w in ctx.get("warnings") or []]
    if not rows:
        return '<p id="table-problems">Every cell ran cleanly.</p>'
    return _table("table-problems", ["cell", "repetition", "kind", "what happened"], rows)


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.5em auto;max-width:1180px;
color:#222;padding:0 1em;line-height:1.4}
h1{font-size:1.5em;margin-bottom:.2em}
h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
th,td{border:1px solid #ddd;padding:.2em .5em;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
td.win{font-weight:bold}td.better{background:#e4f3e6}td.worse{background:#fbe6e3}
td.invalid{background:#f3f3f3;color:#888;text-decoration:line-through}td.tie{color:#666}
td.text{text-align:left}tr.sub td{font-size:.9em;color:#444;padding-left:2em}
.banner{background:#fff3cd;border:1px solid #e0c060;padding:.5em .8em;font-weight:bold}
h3{font-size:1em;margin:1em 0 .2em}
figure{margin:1em 0}figure svg{max-width:100%;height:auto}figcaption{font-size:.85em;color:#555}
.note{color:#555;font-size:.9em}p.empty{color:#999;font-style:italic}
#table-machine td{text-align:left}
#table-cells{display:block;overflow-x:auto}
"""


def html_report(d):
    ctx = d.context
    now = datetime.datetime.now().isoformat(timespec="seconds")
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>echobench report: {_e(ctx.get('host_name', ''))} "
             f"{_e(ctx.get('utc_start', ''))}</title>",
             f"<style>{CSS}</style></head><body>"]
    inc = incomplete_text(d)
    if inc:
        parts.append(f'<p class="banner" id="incomplete">{_e(inc)}</p>')
    parts += ["<h1>echobench: echo servers under load</h1>",
              f'<p class="note">{_e(ctx.get("host_name"))}, {_e(ctx.get("utc_start"))} UTC; '
              f"{_e(ctx.get('repetitions'))} repetition(s) x {_e(ctx.get('duration_s'))} s per "
              f"cell; reference <b>{_e(d.reference)}</b>.</p>",
              f'<p class="note" id="placement"><b>Placement:</b> {_e(placement_text(d))}.</p>',
              f'<p class="note" id="legend"><b>How to read the figures.</b> '
              f'{_e(stats_legend(d))} {_e(UNIT_LEGEND)}</p>']
    for note in notes(d):
        parts.append(f'<p class="note"><b>Note:</b> {_e(note)}</p>')
    parts += ["<h2>Winner per cell</h2>",
              '<p class="note">Closed loop and streaming: highest throughput; open loop: '
              'lowest p99 at the same offered rate for every entry.</p>', winners_table(d)]
    knee = knee_table(d)
    if knee:
        parts += ["<h2>Knee: highest rate that meets the SLO</h2>",
                  '<p class="note">max_rate_at_slo: the highest offered rate whose corrected '
                  'latency met the SLO while echo-load\'s rate check held.</p>', knee]
    for fid, title, fn, caption in plots.FIGURES:
        svg = fn(d)
        if fid == "plot-knee" and svg is None:
            continue
        parts.append(f'<h2>{_e(title)}</h2><figure id="{fid}">')
        parts.append(svg or '<p class="empty">No cells of this kind in this run.</p>')
        cap = caption(d) if callable(caption) else caption
        parts.append(f"<figcaption>{_e(cap)}</figcaption></figure>")
    hosts = hosts_table(d)
    if hosts:
        parts += ["<h2>Load hosts</h2>",
                  '<p class="note">echo-load ran on the load hosts over ssh; each cell\'s '
                  'figures merge their histograms exactly (counts added). Per host: its share '
                  'of the connections and rate, its schedule phase, whether it finished, its '
                  'own figures; the start spread is how far apart the hosts began.</p>', hosts]
    parts += [f"<h2>Ratios vs {_e(d.reference)}</h2>",
              '<p class="note">Entry / reference, ratio of medians [95 % bootstrap interval]. '
              'Shaded when the whole interval is more than 5 % better (green) or worse (red), '
              'whichever way is better for the metric.</p>',
              ratios_table(d),
              "<h2>Invalid cells</h2>",
              '<p class="note">Cells where echo-load\'s self-checks failed (it did not '
              'achieve the rate, sent late, was itself saturated, saw mismatches or starved '
              'connections): their figures measure something else and take part in no '
              'winner.</p>', invalid_table(d),
              "<h2>Conformance</h2>",
              '<p class="note">echo-conform per entry (MUST cases unless the run asked for '
              'all); TAP in conform/.</p>', conform_table(d),
              "<h2>Failed cells and warnings</h2>", problems_table(d),
              "<h2>All cells (medians [95 % CI])</h2>", cells_table(d),
              "<h2>Machine and placement</h2>", machine_table(d),
              "<h2>Files</h2>",
              '<p class="note"><a href="run.json">run.json</a> (Google Benchmark JSON; fields '
              'in docs/RESULTS.md), <a href="cells.csv">cells.csv</a> (tidy), '
              '<a href="summary.md">summary.md</a>, hgrm/ (HdrHistogram percentile '
              'distributions), raw/ (echo-load JSON and output).</p>',
              f'<p class="note">Generated {_e(now)} by scripts/echobench.</p>',
              "</body></html>"]
    return "\n".join(parts)


def write(run_dir):
    """Writes summary.md and report.html into run_dir; returns the summary text."""
    d = RunData(run_dir)
    summary = summary_markdown(d)
    (d.dir / "summary.md").write_text(summary + "\n")
    (d.dir / "report.html").write_text(html_report(d))
    return summary


"""report.html (self-contained: inline SVG, inline CSS, no network) and summary.md from a
results directory: run.json for the context, cells.csv for the figures, hgrm/ for the latency
spectra, conform.json for the conformance verdicts. `echobench report DIR` calls write()."""
import csv
import datetime
import html
import json
import pathlib
import statistics

from . import conform as conform_mod
from . import gbjson, hgrm, plots
from .matrix import Cell, mode_order
from .metrics import higher_is_better
from .util import UsageError, human, human_us

REFERENCE = "epoll"


def primary_metric(mode):
    """What decides the winner of a cell: throughput for closed loop and streaming, p99 for open
    loop (where throughput is fixed by the offered rate)."""
    if mode == "stream":
        return "bytes_per_sec"
    if mode.startswith("open"):
        return "p99_us"
    return "msgs_per_sec"


def fmt(metric, value):
    if value is None:
        return "-"
    if metric.endswith("_us"):
        return human_us(value)
    if metric == "bytes_per_sec":
        return human(value, "B/s")
    if metric == "msgs_per_sec":
        return human(value, "/s")
    if metric.startswith("server_cpu_ns"):
        return human_us(value / 1e3)
    return human(value)


class RunData:
    """A results directory read back, with medians over repetitions."""

    def __init__(self, run_dir):
        self.dir = pathlib.Path(run_dir)
        if not self.dir.is_dir():
            raise UsageError(f"'{run_dir}' is not a results directory")
        data = gbjson.load(self.dir)
        self.context = data.get("context", {})
        self.rows = self._rows(data)
        self.conform = self._json("conform.json") or {}
        order = self.context.get("backends") or []
        seen = [r["backend"] for r in self.rows]
        self.backends = [b for b in order if b in seen or b in self.conform] + \
            [b for b in dict.fromkeys(seen) if b not in order]
        self.conns = sorted({r["connections"] for r in self.rows})
        self.sizes = sorted({r["size"] for r in self.rows})
        self.modes = sorted({r["mode"] for r in self.rows}, key=mode_order)
        self.values = {}
        for r in self.rows:
            key = (r["backend"], r["connections"], r["size"], r["mode"])
            self.values.setdefault(key, {}).setdefault(r["metric"], []).append(
                (r["repetition"], r["value"]))
        self.med = {k: {m: statistics.median(v for _, v in vals) for m, vals in ms.items()}
                    for k, ms in self.values.items()}
        self.spectra = self._spectra()
        self.reference = REFERENCE if REFERENCE in self.backends else \
            (self.backends[0] if self.backends else None)

    def _json(self, name):
        try:
            with open(self.dir / name) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def _rows(self, data):
        path = self.dir / "cells.csv"
        if not path.is_file():
            return gbjson.iterations(data)
        rows = []
        with open(path, newline="") as f:
            for r in csv.DictReader(f):
                try:
                    rows.append({"backend": r["backend"], "connections": int(r["connections"]),
                                 "size": int(r["size"]), "mode": r["mode"],
                                 "repetition": int(r["repetition"]), "metric": r["metric"],
                                 "value": float(r["value"])})
                except (KeyError, ValueError) as e:
                    raise UsageError(f"{path}: bad row {r}: {e}") from e
        return rows

    def _spectra(self):
        """(backend, c, size, mode) -> [(us, percentile)] from the repetition with the median
        p99 (a spectrum cannot be averaged; the middle one is the honest pick)."""
        out = {}
        for key, ms in self.values.items():
            reps = sorted(ms.get("p99_us", []), key=lambda t: t[1])
            if not reps:
                continue
            rep, p99 = reps[(len(reps) - 1) // 2]
            cell = Cell(*key)
            points = hgrm.read(self.dir / "hgrm" / f"{cell.key}_r{rep}.hgrm")
            if points:
                scale = hgrm.scale_to_us(points, p99)
                out[key] = [(v * scale, p) for v, p in points]
        return out

    def cells(self):
        """(size, connections, mode) in report order."""
        return [(s, c, m) for s in self.sizes for c in self.conns for m in self.modes
                if any((b, c, s, m) in self.med for b in self.backends)]

    def winner(self, s, c, m, metric):
        vals = {b: self.med.get((b, c, s, m), {}).get(metric) for b in self.backends}
        vals = {b: v for b, v in vals.items() if v is not None}
        if not vals:
            return None, vals
        pick = max if higher_is_better(metric) else min
        return pick(vals, key=vals.get), vals


def ratio(v, ref):
    return v / ref if v is not None and ref else None


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
                   f"are noisy and ratios between backends unreliable")
    return out


def summary_markdown(d):
    """The winner per cell and each backend's ratio to the reference, as a markdown table."""
    ctx = d.context
    place = ctx.get("placement", {})
    lines = [f"## echobench: {ctx.get('host_name', '?')}, {ctx.get('utc_start', '?')}", "",
             f"{ctx.get('num_cpus', '?')} CPUs ({ctx.get('cpu_model', '?')}), "
             f"{ctx.get('kernel', '?').split(' #')[0]}; server on CPU "
             f"{_cpus(place.get('server_cpus'))}, client on CPU {_cpus(place.get('client_cpus'))}; "
             f"{ctx.get('repetitions', '?')} repetition(s) of {ctx.get('duration_s', '?')} s "
             f"({ctx.get('preset', '?')} preset). Medians; ratios are vs {d.reference}.", ""]
    lines += [f"**Note:** {n}." for n in notes(d)] + ([""] if notes(d) else [])
    if not d.backends:
        return "\n".join(lines + ["No cell was measured."])
    head = "| cell | metric | " + " | ".join(d.backends) + " | winner |"
    lines += [head, "|" + "---|" * (len(d.backends) + 3)]
    for s, c, m in d.cells():
        metric = primary_metric(m)
        win, vals = d.winner(s, c, m, metric)
        if win is None:
            continue
        ref = vals.get(d.reference)
        cols = []
        for b in d.backends:
            v = vals.get(b)
            r = ratio(v, ref)
            cols.append("-" if v is None else
                        f"{fmt(metric, v)} ({r:.2f}x)" if r is not None else fmt(metric, v))
        lines.append(f"| c={c} s={s} {m} | {metric} | " + " | ".join(cols) +
                     f" | **{win}** |")
    bad = ctx.get("failed_cells") or []
    if bad:
        lines += ["", f"{len(bad)} cell run(s) failed: " +
                  "; ".join(f"{f['cell']} rep {f['repetition']}: {f['reason']}"
                            for f in bad[:5]) + (" ..." if len(bad) > 5 else "")]
    unusable = ctx.get("unusable_backends") or {}
    if unusable:
        lines += ["", "Not measured (unusable here): " +
                  "; ".join(f"{k}: {v}" for k, v in unusable.items())]
    verdicts = [f"{b}: {conform_mod.verdict_text(d.conform.get(b))}" for b in d.backends]
    lines += ["", "Conformance: " + "; ".join(verdicts)]
    return "\n".join(lines)


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
        cells = []
        for cell in row:
            if isinstance(cell, tuple):       # (text, css class)
                cells.append(f'<td class="{cell[1]}">{_e(cell[0])}</td>')
            else:
                cells.append(f"<td>{_e(cell)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def winners_table(d):
    rows = []
    for s, c, m in d.cells():
        metric = primary_metric(m)
        win, vals = d.winner(s, c, m, metric)
        if win is None:
            continue
        rows.append([f"c={c} s={s} {m}", metric] +
                    [(fmt(metric, vals.get(b)), "win" if b == win else "")
                     for b in d.backends] + [win])
    return _table("table-winners", ["cell", "metric"] + d.backends + ["winner"], rows)


def ratios_table(d):
    """Each backend's figure divided by the reference's, for throughput, p99 and CPU/message;
    shaded by whether it is better or worse than the reference by more than 5 %."""
    rows = []
    for s, c, m in d.cells():
        metrics = [primary_metric(m)]
        if m == "closed":
            metrics += ["p99_us", "server_cpu_ns_per_msg"]
        for metric in metrics:
            vals = {b: d.med.get((b, c, s, m), {}).get(metric) for b in d.backends}
            ref = vals.get(d.reference)
            if ref is None or all(v is None for v in vals.values()):
                continue
            row = [f"c={c} s={s} {m}", metric]
            for b in d.backends:
                r = ratio(vals[b], ref)
                if r is None:
                    row.append("-")
                    continue
                better = r > 1 if higher_is_better(metric) else r < 1
                cls = "" if abs(r - 1) < 0.05 else ("better" if better else "worse")
                row.append((f"{r:.2f}x", cls))
            rows.append(row)
    return _table("table-ratios", ["cell", "metric"] + [f"{b} / {d.reference}"
                                                         for b in d.backends], rows)


def cells_table(d):
    cols = ["msgs_per_sec", "bytes_per_sec", "p50_us", "p99_us", "p999_us", "max_us",
            "server_cpu_ns_per_msg", "offered_rate", "errors"]
    rows = []
    for s, c, m in d.cells():
        for b in d.backends:
            v = d.med.get((b, c, s, m))
            if v is None:
                continue
            nrep = max(len(x) for x in d.values[(b, c, s, m)].values())
            rows.append([b, c, s, m, nrep] + [fmt(k, v.get(k)) for k in cols])
    return _table("table-cells", ["backend", "conns", "size", "mode", "reps"] + cols, rows)


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
        rows.append([b, (r["verdict"], cls), r["passed"], r["failed"], r["skipped"], note,
                     f"{r.get('seconds', '-')} s ({r.get('suite', '?')})"])
    return _table("table-conform", ["backend", "verdict", "passed", "failed", "skipped",
                                    "failed cases / note", "time"], rows)


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
             ("placement", f"server CPUs {_cpus(place.get('server_cpus'))}, client CPUs "
                           f"{_cpus(place.get('client_cpus'))} via {place.get('method', '?')}; "
                           f"{place.get('note', '')}"),
             ("server threads", ctx.get("server_threads")),
             ("client threads", ctx.get("client_threads")),
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
    rows = [[f["cell"], f["repetition"], ("failed", "worse"), f["reason"]]
            for f in ctx.get("failed_cells") or []]
    rows += [[w["cell"], w["repetition"], "warning", w["warning"]]
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
figure{margin:1em 0}figure svg{max-width:100%;height:auto}figcaption{font-size:.85em;color:#555}
.note{color:#555;font-size:.9em}p.empty{color:#999;font-style:italic}
#table-machine td{text-align:left}
"""


def html_report(d):
    ctx = d.context
    now = datetime.datetime.now().isoformat(timespec="seconds")
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>echobench report: {_e(ctx.get('host_name', ''))} "
             f"{_e(ctx.get('utc_start', ''))}</title>",
             f"<style>{CSS}</style></head><body>",
             "<h1>echobench: echo-server backends under load</h1>",
             f'<p class="note">{_e(ctx.get("host_name"))}, {_e(ctx.get("utc_start"))} UTC; '
             f"{_e(ctx.get('repetitions'))} repetition(s) x {_e(ctx.get('duration_s'))} s per "
             f"cell; figures are medians over repetitions; reference backend "
             f"<b>{_e(d.reference)}</b>.</p>"]
    for note in notes(d):
        parts.append(f'<p class="note"><b>Note:</b> {_e(note)}</p>')
    if ctx.get("interrupted"):
        parts.append('<p class="note"><b>This run was interrupted</b>: the matrix is '
                     'incomplete.</p>')
    parts += ["<h2>Winner per cell</h2>",
              '<p class="note">closed loop and streaming: highest throughput wins; open loop: '
              'lowest p99 wins.</p>', winners_table(d)]
    for fid, title, fn, caption in plots.FIGURES:
        svg = fn(d)
        parts.append(f'<h2>{_e(title)}</h2><figure id="{fid}">')
        parts.append(svg or '<p class="empty">No cells of this kind in this run.</p>')
        parts.append(f"<figcaption>{_e(caption)}</figcaption></figure>")
    parts += [f"<h2>Ratios vs {_e(d.reference)}</h2>",
              '<p class="note">Backend figure / reference figure. Shaded when more than 5 % '
              'better (green) or worse (red), whichever way is better for the metric.</p>',
              ratios_table(d),
              "<h2>Conformance</h2>",
              '<p class="note">echo-conform per backend (MUST cases unless the run asked for '
              'all); TAP in conform/.</p>', conform_table(d),
              "<h2>Failed cells and warnings</h2>", problems_table(d),
              "<h2>All cells (medians)</h2>", cells_table(d),
              "<h2>Machine and placement</h2>", machine_table(d),
              "<h2>Files</h2>",
              '<p class="note"><a href="run.json">run.json</a> (Google Benchmark JSON), '
              '<a href="cells.csv">cells.csv</a> (tidy), <a href="summary.md">summary.md</a>, '
              'hgrm/ (HdrHistogram percentile distributions), raw/ (echo-load JSON and '
              'output).</p>',
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


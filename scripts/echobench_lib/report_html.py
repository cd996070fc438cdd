"""report.html: self-contained (inline SVG, inline CSS, no network), one table per question."""
import datetime
import html

from . import plots
from .metrics import higher_is_better
from .report_fmt import (HOST_HEAD, UNIT_LEGEND, entry_name, fig_text, host_lines, host_rows,
                         incomplete_text, kind_groups, knee_text, margin_text, notes, num,
                         p_text, placement_text, ratio_text, reasons_text, slo_text,
                         stats_legend, unit_of, verdict_text)
from .report_md import lead, lead_head
from .rundata import efficiency_metric, primary_metric

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


def _e(text):
    return html.escape(str(text))


def table(tid, header, rows):
    """An HTML table. A row is a list of cells (a cell: text, or (text, css class[, title])),
    or a str: a sub-row spanning the table."""
    out = [f'<table id="{tid}">',
           "<thead><tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr></thead>",
           "<tbody>"]
    for row in rows:
        if isinstance(row, str):
            out.append(f'<tr class="sub"><td class="text" colspan="{len(header)}">'
                       f"{_e(row)}</td></tr>")
            continue
        cells = []
        for cell in row:
            if isinstance(cell, tuple):
                title = f' title="{_e(cell[2])}"' if len(cell) > 2 and cell[2] else ""
                cells.append(f'<td class="{cell[1]}"{title}>{_e(cell[0])}</td>')
            else:
                cells.append(f"<td>{_e(cell)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def winners_table(d):
    """One table per kind of cell, inside #table-winners: each entry's figure of the metric
    that ranks the cell, the verdict, the margin."""
    parts = ['<div id="table-winners">']
    for title, spots, is_open in kind_groups(d):
        rows = []
        for spot in spots:
            dec = d.decide(spot)
            row = lead(d, spot, is_open)
            best = {dec["winner"]} if dec["verdict"] == "winner" else \
                set([dec["leader"]] + dec.get("tied", [])) if dec["verdict"] == "leaders" else set()
            for b in d.backends:
                cell = d.cell(spot, b)
                ok, reasons = d.validity(cell)
                cls = "invalid" if not ok else ("win" if b in best else "")
                row.append((fig_text(dec["metric"], d.fig(cell, dec["metric"])) +
                            ("" if ok else " ✗"), cls, reasons_text(reasons)))
            row.append((verdict_text(dec), "win" if best else "tie", dec.get("reason") or ""))
            row.append(margin_text(dec) if best else "-")
            row.append(p_text(dec))
            rows.append(row)
        head = lead_head(is_open) + [entry_name(d, b) for b in d.backends] + \
            ["verdict", "margin (×) [95 % CI]", "p (two-sided)" if d.paired else "p"]
        kind = "open" if is_open else spots[0].kind
        parts += [f"<h3>{_e(title)}</h3>", table(f"table-winners-{kind}", head, rows)]
    parts.append("</div>")
    return "\n".join(parts)


def ratios_table(d):
    """Each entry's figure divided by the reference's, with its interval; shaded when the
    interval lies wholly more than 5 % on the better (green) or worse (red) side."""
    rows = []
    for spot in d.spots():
        metrics = [primary_metric(spot)]
        if spot.kind in ("closed", "stream", "churn"):
            metrics += ["p99_us"] if spot.kind != "stream" else []
            metrics += [efficiency_metric(spot)]
        for metric in metrics:
            ref = d.cell(spot, d.reference)
            if not d.reps(ref, metric):
                continue
            row = [spot.where(), metric]
            for b in d.backends:
                cell = d.cell(spot, b)
                if b == d.reference:
                    row.append("1 (reference)")
                    continue
                r = d.ratio(cell, metric)
                if r is None:
                    row.append("-")
                    continue
                if not (d.validity(cell)[0] and d.validity(ref)[0]):
                    row.append((ratio_text(r) + " ✗", "invalid"))
                    continue
                hib = higher_is_better(metric)
                better = r[1] > 1.05 if hib else r[2] < 1 / 1.05
                worse = r[2] < 1 / 1.05 if hib else r[1] > 1.05
                row.append((ratio_text(r), "better" if better else ("worse" if worse else "")))
            rows.append(row)
    return table("table-ratios", ["cell", "metric"] + [f"{b} / {d.reference} (×)"
                                                        for b in d.backends], rows)


CELL_COLS = ["msgs_per_sec", "bytes_per_sec", "p50_us", "p99_us", "p999_us", "max_us",
             "server_cpu_ns_per_msg", "server_cpu_busiest", "client_cpu_busiest",
             "offered_rate", "errors"]


def cells_table(d):
    rows = []
    for spot in d.spots():
        for b in d.backends:
            cell = d.cell(spot, b)
            if cell not in d.values:
                continue
            nrep = max(len(x) for x in d.values[cell].values())
            ok, reasons = d.validity(cell)
            bound = d.client_bound(cell)
            row = [b, d.kind(b), spot.connections, spot.size, spot.mode, spot.placement, nrep,
                   ("yes", "") if ok else ("no ✗", "invalid", reasons_text(reasons)),
                   "-" if bound is None else ("client" if bound else "server")]
            for k in CELL_COLS:
                if k.startswith("server_cpu") and not d.has_cpu(b):
                    row.append("n/a (target)")
                else:
                    row.append(fig_text(k, d.fig(cell, k)))
            rows.append(row)
            rows += [f"└ {text}" for text in host_lines(d, cell)]
    return table("table-cells", ["entry", "kind", "connections", "size (B)", "mode",
                                 "placement", "repetitions", "valid", "bound"] +
                 [f"{k} ({unit_of(k)})" for k in CELL_COLS], rows)


def hosts_table(d):
    """#table-hosts: every load host's share and figures, per cell and repetition."""
    rows = []
    for spot in d.spots():
        for b in d.backends:
            for rep, spread, vals in host_rows(d, d.cell(spot, b)):
                rows.append([f"{b} {spot.where()}", rep, *vals,
                             num("start_spread_us", spread)])
    if not rows:
        return None
    return table("table-hosts", ["cell", "repetition", *HOST_HEAD, "start spread (µs)"], rows)


def invalid_table(d):
    bad = d.invalid_cells()
    if not bad:
        return '<p id="table-invalid">Every cell passed its self-checks.</p>'
    return table("table-invalid", ["entry", "cell", "invalid repetitions", "reasons"],
                 [[b, (cell, "text"), f"{n} of {tot}", (reasons_text(r), "text")]
                  for b, cell, n, tot, r in bad])


def knee_table(d):
    knees = d.knees()
    if not knees:
        return None
    rows = []
    for b, k in knees.items():
        steps = k.get("steps") or []
        bad = sum(1 for x in steps if x.get("verdict") == "invalid")
        rows.append([b, d.kind(b), slo_text(k.get("slo")), knee_text(k), len(steps),
                     k.get("error") or (f"{bad} step(s) could not be judged (a self-check "
                                        f"other than the rate failed)" if bad else "")])
    return table("table-knee", ["entry", "kind", "SLO",
                                "max_rate_at_slo [last pass, first fail] (msgs/s)", "steps",
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
        note = ", ".join(r.get("failed_ids") or []) or r.get("note") or ""
        if r.get("not_counted_ids"):
            note += ("; " if note else "") + "SHOULD failures not counted: " + \
                ", ".join(r["not_counted_ids"])
        if r.get("left_out"):
            note += ("; " if note else "") + "left out for time: " + ", ".join(r["left_out"])
        rows.append([b, (r["verdict"], cls), r.get("passed"), r.get("failed"),
                     r.get("skipped"), (note, "text"),
                     f"{r.get('seconds', '-')} ({r.get('suite', '?')})"])
    return table("table-conform", ["entry", "verdict", "passed", "failed", "skipped",
                                   "failed cases / note", "time (s)"], rows)


def machine_table(d):
    ctx = d.context
    place = ctx.get("placement") or {}
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
             ("design", f"{d.run.get('design') or 'unpaired'} (group order seed "
                        f"{d.run.get('order_seed')})"),
             ("entries", "; ".join(
                 f"{e.get('name')} ({e.get('kind', 'backend')}"
                 + (f": {e['command']}" if e.get("command") else "")
                 + (f": {e['address']}" if e.get("address") else "")
                 + (f": {e['server_exe']}" if e.get("server_exe") else "") + ")"
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
    return table("table-machine", ["", ""], [[k, "-" if v is None else v] for k, v in items])


def problems_table(d):
    ctx = d.context
    rows = [[f["cell"], f.get("repetition"), ("failed", "worse"), (f["reason"], "text")]
            for f in ctx.get("failed_cells") or []]
    rows += [[w["cell"], w.get("repetition"), "warning", (w["warning"], "text")]
             for w in ctx.get("warnings") or []]
    if not rows:
        return '<p id="table-problems">Every cell ran cleanly.</p>'
    return table("table-problems", ["cell", "repetition", "kind", "what happened"], rows)


def html_report(d, trends=()):
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
    parts += ["<h2>Verdict per cell</h2>",
              '<p class="note">Closed loop, streaming and churn: highest throughput, or, where '
              'the client was the limit, lowest server CPU per message (KiB, transaction); '
              'open loop: lowest server CPU per message at the same offered rate for every '
              'entry (p99 is in the ratio and cell tables: on a shared machine its spread '
              'between short slices is far wider than the differences between servers).</p>',
              winners_table(d)]
    knee = knee_table(d)
    if knee:
        parts += ["<h2>Knee: highest rate that meets the SLO</h2>",
                  '<p class="note">max_rate_at_slo: the highest offered rate below the first '
                  'failing step whose corrected latency met the SLO while echo-load\'s rate '
                  'check held, counting only steps whose other checks held; the bracket is '
                  '[last pass, first fail].</p>', knee]
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
    if trends:
        from .trend import CAPTION
        parts += ['<h2 id="trends">Trends (results history)</h2>',
                  f'<p class="note">This machine class, every branch; {_e(CAPTION)}</p>']
        for title, svg, lines in trends:
            parts += [f"<h3>{_e(title)}</h3><figure>{svg}<figcaption>"
                      f"{_e('; '.join(lines) or 'no change point')}</figcaption></figure>"]
    parts += [f"<h2>Ratios vs {_e(d.reference)}</h2>",
              '<p class="note">Entry / reference [95 % interval]. Shaded when the whole '
              'interval is more than 5 % better (green) or worse (red), whichever way is '
              'better for the metric.</p>', ratios_table(d),
              "<h2>Invalid cells</h2>",
              '<p class="note">Cells where a self-check failed (echo-load did not achieve the '
              'rate, sent late, saw mismatches or starved connections; or, for a target, its '
              'client was saturated): their figures measure something else and take part in '
              'no verdict.</p>', invalid_table(d),
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


def empty_report(why):
    return ("<!doctype html><meta charset=utf-8><title>echobench run</title>"
            f"<h1>echobench run</h1><p>No cell was measured ({_e(why)}).</p>\n")

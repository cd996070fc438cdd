"""summary.md: the run's verdicts in markdown, as the terminal and CI logs show them."""
from . import conform as conform_mod
from .report_fmt import (HOST_HEAD, fig_text, host_rows, incomplete_text, kind_groups,
                         knee_text, margin_text, notes, num, p_text, placement_text,
                         ratio_text, reasons_text, slo_text, stats_legend, unit_of,
                         verdict_text, UNIT_LEGEND)


def lead(d, spot, is_open):
    """The columns that open a verdict row: the cell, in open loop the rate offered to every
    entry (marked when they differ), what limited it and the metric that ranks it."""
    row = [spot.where()]
    if is_open:
        rate, same = d.group_offered(spot)
        row.append(num("offered_rate", rate) + ("" if same else " (differs)"))
    metric = d.deciding_metric(spot)
    row += [d.bound(spot) or "-", f"{metric} ({unit_of(metric)})"]
    return row


def lead_head(is_open):
    return ["cell"] + (["offered (msgs/s)"] if is_open else []) + ["bound", "ranked by"]


def entry_text(d, cell, metric, with_ratio):
    f = d.fig(cell, metric)
    if f is None:
        return "-"
    txt = fig_text(metric, f)
    if with_ratio:
        txt += f", {ratio_text(d.ratio(cell, metric))}×"
    if not d.validity(cell)[0]:
        txt += " ✗"
    return txt


def summary_markdown(d, trends=()):
    """Per kind of cell a table: each entry's median [95 % CI] and ratio to the reference
    [CI], the verdict with its margin; then knees, invalid cells, conformance."""
    ctx = d.context
    lines = [f"## echobench: {ctx.get('host_name', '?')}, {ctx.get('utc_start', '?')}", ""]
    inc = incomplete_text(d)
    if inc:
        lines += [f"**{inc}**", ""]
    design = "paired rounds" if d.paired else "repetitions"
    lines += [f"{ctx.get('num_cpus', '?')} CPUs ({ctx.get('cpu_model', '?')}), "
              f"{str(ctx.get('kernel', '?')).split(' #')[0]}; placement {placement_text(d)}; "
              f"{ctx.get('repetitions', '?')} {design} of {ctx.get('duration_s', '?')} s "
              f"({ctx.get('preset', '?')} preset). Ratios are vs {d.reference}.", "",
              stats_legend(d), "", UNIT_LEGEND, ""]
    lines += [f"**Note:** {n}." for n in notes(d)] + ([""] if notes(d) else [])
    if not d.backends:
        return "\n".join(lines + ["No cell was measured."])
    counts = {}
    for title, spots, is_open in kind_groups(d):
        head = lead_head(is_open) + \
            [b + ("" if b == d.reference else f" (× {d.reference})") for b in d.backends] + \
            ["verdict", "margin (×)", "p"]
        lines += [f"### {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for spot in spots:
            dec = d.decide(spot)
            counts[dec["verdict"]] = counts.get(dec["verdict"], 0) + 1
            row = lead(d, spot, is_open)
            row += [entry_text(d, d.cell(spot, b), dec["metric"], b != d.reference)
                    for b in d.backends]
            row += [f"**{dec['winner']}**" if dec["winner"] else verdict_text(dec),
                    margin_text(dec) if dec["verdict"] in ("winner", "leaders") else "-",
                    p_text(dec)]
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    decided = counts.get("winner", 0) + counts.get("leaders", 0) + counts.get("equivalent", 0)
    total = sum(v for k, v in counts.items() if k != "-")
    if total:
        lines += [f"Conclusive: {decided} of {total} cells ({counts.get('winner', 0)} with a "
                  f"winner, {counts.get('leaders', 0)} with leaders tied within ±5 %, "
                  f"{counts.get('equivalent', 0)} equivalent); "
                  f"{counts.get('inconclusive', 0)} inconclusive.", ""]
    knees = d.knees()
    if knees:
        lines += ["### Knee: highest offered rate that meets the SLO", "",
                  "| entry | SLO | max_rate_at_slo [last pass, first fail] (msgs/s) | steps |",
                  "|---|---|---|---|"]
        for b, k in knees.items():
            lines.append(f"| {b} | {slo_text(k.get('slo'))} | {knee_text(k)} | "
                         f"{len(k.get('steps') or [])} |")
        lines.append("")
    host_md = []
    for spot in d.spots():
        for b in d.backends:
            for rep, spread, vals in host_rows(d, d.cell(spot, b)):
                host_md.append("| " + " | ".join(map(str, [f"{b} {spot.where()}", rep, *vals,
                                                           num("start_spread_us", spread)]))
                               + " |")
    if host_md:
        head = ["cell", "rep", *HOST_HEAD, "start spread (µs)"]
        lines += ["### Load hosts (the load is remote; figures above are merged)", "",
                  "| " + " | ".join(head) + " |", "|" + "---|" * len(head), *host_md, ""]
    bad = d.invalid_cells()
    if bad:
        lines += ["### Invalid cells (✗: a self-check failed; in no verdict)", ""]
        lines += [f"- {b} {cell}: {n} of {tot} repetition(s): {reasons_text(r)}"
                  for b, cell, n, tot, r in bad]
        lines.append("")
    failed = ctx.get("failed_cells") or []
    if failed:
        lines += [f"{len(failed)} cell run(s) failed: " +
                  "; ".join(f"{f['cell']} rep {f.get('repetition')}: {f['reason']}"
                            for f in failed[:5]) + (" ..." if len(failed) > 5 else ""), ""]
    unusable = ctx.get("unusable_backends") or {}
    if unusable:
        lines += ["Not measured (unusable here): " +
                  "; ".join(f"{k}: {v}" for k, v in unusable.items()), ""]
    changed = [(title, lines) for title, _, lines in trends if lines]
    if trends:
        lines += ["### Trends (results history, this machine class)", ""]
        lines += [f"- {title}: {'; '.join(ls)}" for title, ls in changed] or \
            [f"- no change point in the {len(trends)} series shown"]
        lines.append("")
    verdicts = [f"{b}: {conform_mod.verdict_text(d.conform.get(b))}" for b in d.backends]
    lines += ["Conformance: " + "; ".join(verdicts)]
    return "\n".join(lines)

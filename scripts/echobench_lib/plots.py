"""The report's figures: matplotlib (Agg, no display) saved as SVG and inlined in the HTML, with
text as paths, so the report needs no fonts and no network.

Every function takes the report's RunData and returns SVG text, or None when the run has no
cells of the kind the figure shows.
"""
import io
import math
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

from .knee import Slo  # noqa: E402
from .matrix import mode_kind  # noqa: E402
from .util import UsageError  # noqa: E402

# One colour per entry, the same in every figure: the run's entries in their order (the
# backends as `echo-server --list` gives them, then the user's --server and --target entries)
# take this palette's colours in turn, so a run's colours are deterministic and no backend
# name is hard-coded here (matplotlib's tab10, then more when a run has more than ten entries).
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#ff7f0e", "#17becf",
           "#bcbd22", "#e377c2", "#7f7f7f", "#393b79", "#637939", "#8c6d31", "#843c39",
           "#7b4173"]
NINES = [(math.log10(2), "50%"), (1.0, "90%"), (2.0, "99%"), (3.0, "99.9%"),
         (4.0, "99.99%"), (5.0, "99.999%")]

plt.rcParams.update({"svg.fonttype": "path", "font.size": 9, "axes.grid": True,
                     "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False})


def colour(entry, entries):
    """The colour of `entry`: its position in the run's entries (entries not in the list, such
    as a sweep-only entry, follow them)."""
    order = list(dict.fromkeys(entries))
    if entry not in order:
        order.append(entry)
    return PALETTE[order.index(entry) % len(PALETTE)]


def _svg(fig):
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    # Drop the XML prolog (invalid inside HTML) and the RDF metadata block (dead weight).
    text = text[text.index("<svg"):]
    return re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.S)


def _si(v, _pos=None):
    for div, suf in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:g}{suf}"
    return f"{v:g}"


SI = FuncFormatter(_si)


def _y(ax, log=False, label=None):
    """The one tick style of every panel: SI labels (k, M), decades on log axes, no minor
    labels, so that panels side by side read the same way."""
    if log:
        ax.set_yscale("log")
        # 1-2-5 per decade: a panel spanning less than a decade still gets labels
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    else:
        ax.set_ylim(bottom=0)
    ax.yaxis.set_major_formatter(SI)
    ax.yaxis.set_minor_formatter(NullFormatter())
    if label:
        ax.set_ylabel(label)


def _x_rate(ax, label):
    ax.set_xlim(left=0)
    ax.xaxis.set_major_formatter(SI)
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(label)


def _line(ax, d, b, pts, metric, scale=1.0, **kw):
    """A median line with its 95 % CI as error bars: pts [(x, Cell)]."""
    xs, ys, lo, hi = [], [], [], []
    for x, cell in pts:
        f = d.fig(cell, metric)
        if f is None or x is None:
            continue
        med, clo, chi, _ = f
        xs.append(x)
        ys.append(med * scale)
        lo.append(max(0.0, (med - clo) * scale))
        hi.append(max(0.0, (chi - med) * scale))
    if xs:
        ax.errorbar(xs, ys, yerr=[lo, hi], capsize=2, label=b, color=colour(b, d.backends),
                    **kw)
    return bool(xs)


def _panels(n, width=3.6, height=2.9, max_cols=3):
    cols = min(n, max_cols)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _legend(fig, axes):
    handles, labels = {}, []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in handles:
                handles[lab] = h
                labels.append(lab)
    if labels:
        fig.legend([handles[lab] for lab in labels], labels, loc="upper center",
                   ncol=min(len(labels), 6), bbox_to_anchor=(0.5, 1.0), frameon=False)
        fig.tight_layout(rect=(0, 0, 1, 0.93))
    else:
        fig.tight_layout()


def _log2_x(ax, values):
    ax.set_xscale("log", base=2)
    ax.set_xticks(values)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _has(d, mode, metric, entries=None):
    return any(d.fig(d.at(b, c, z, mode), metric) for b in (entries or d.backends)
               for c in d.conns for z in d.sizes)


def throughput_vs_connections(d):
    """Closed-loop msgs/s (and streaming MB/s) against connections, one panel per size."""
    rows = [(mode, metric, label, scale) for mode, metric, label, scale in
            (("closed", "msgs_per_sec", "closed loop", 1.0),
             ("stream", "bytes_per_sec", "streaming", 1e-6))
            if _has(d, mode, metric)]
    if not rows:
        return None
    panels = [(r, s) for r in rows for s in d.sizes]
    fig, axes = _panels(len(panels))
    for ax, ((mode, metric, label, scale), size) in zip(axes, panels):
        for b in d.backends:
            _line(ax, d, b, [(c, d.at(b, c, size, mode)) for c in d.conns], metric, scale,
                  marker="o")
        _log2_x(ax, d.conns)
        _y(ax, label="msgs/s" if metric == "msgs_per_sec" else "MB/s")
        ax.set_title(f"{label}, {size} B")
        ax.set_xlabel("connections (log2)")
    _legend(fig, axes)
    return _svg(fig)


def latency_spectrum(d):
    """Closed-loop latency percentile spectrum, one panel per connection count (smallest size),
    one line per entry. The x axis counts nines: 90 %, 99 %, 99.9 %, 99.99 %."""
    size = d.sizes[0] if d.sizes else None
    panels = [c for c in d.conns
              if any(d.at(b, c, size, "closed") in d.spectra for b in d.backends)]
    if not panels:
        return None
    fig, axes = _panels(len(panels))
    top = 0.0
    for ax, c in zip(axes, panels):
        for b in d.backends:
            pts = [(math.log10(1.0 / (1.0 - p)), v) for v, p in d.spectra.get(
                d.at(b, c, size, "closed"), []) if p < 1.0 and v > 0]
            if pts:
                top = max(top, pts[-1][0])
                ax.plot(*zip(*pts), label=b, color=colour(b, d.backends), linewidth=1.4)
        _y(ax, log=True, label="latency (µs)")
        ax.set_title(f"closed loop, c={c}, {size} B")
        ax.set_xlabel("percentile")
    for ax in axes:
        ticks = [(x, lab) for x, lab in NINES if x <= max(top, 4.0) + 0.01]
        ax.set_xticks([x for x, _ in ticks])
        ax.set_xticklabels([lab for _, lab in ticks])
        ax.set_xlim(0, max(top, 4.0))
    _legend(fig, axes)
    return _svg(fig)


def p99_vs_rate(d):
    """Open-loop p99 against offered rate, one panel per connection count (smallest size);
    every entry of a cell is offered the same rate; the closed-loop point (hollow) marks each
    entry's peak."""
    size = d.sizes[0] if d.sizes else None
    open_modes = [m for m in d.modes if mode_kind(m) in ("open", "rate")]
    panels = [c for c in d.conns if any(d.fig(d.at(b, c, size, m), "p99_us")
                                        for b in d.backends for m in open_modes)]
    if not panels:
        return None
    fig, axes = _panels(len(panels))
    for ax, c in zip(axes, panels):
        for b in d.backends:
            pts = sorted(((d.offered(d.at(b, c, size, m)), d.at(b, c, size, m))
                          for m in open_modes if d.fig(d.at(b, c, size, m), "p99_us")),
                         key=lambda t: t[0] or 0)
            _line(ax, d, b, pts, "p99_us", marker="o")
            closed = d.at(b, c, size, "closed")
            p99, mps = d.median(closed, "p99_us"), d.median(closed, "msgs_per_sec")
            if p99 and mps:
                ax.plot([mps], [p99], marker="o", markerfacecolor="none",
                        color=colour(b, d.backends), linestyle="none")
        _y(ax, log=True, label="p99 latency (µs)")
        _x_rate(ax, "offered rate (msgs/s); hollow: closed-loop peak")
        ax.set_title(f"open loop p99, c={c}, {size} B")
    _legend(fig, axes)
    return _svg(fig)


def cpu_per_message(d):
    """Server CPU time per message in closed loop against connections, one panel per size.
    Targets (servers echobench did not start) have no CPU figure and no line."""
    entries = [b for b in d.backends if d.has_cpu(b)]
    panels = [s for s in d.sizes if any(d.fig(d.at(b, c, s, "closed"), "server_cpu_ns_per_msg")
                                        for b in entries for c in d.conns)]
    if not panels:
        return None
    fig, axes = _panels(len(panels))
    for ax, size in zip(axes, panels):
        for b in entries:
            _line(ax, d, b, [(c, d.at(b, c, size, "closed")) for c in d.conns],
                  "server_cpu_ns_per_msg", marker="s")
        _log2_x(ax, d.conns)
        _y(ax, label="CPU ns / message")
        ax.set_title(f"server CPU per message, {size} B")
        ax.set_xlabel("connections (log2)")
    _legend(fig, axes)
    return _svg(fig)


def knee(d):
    """The hockey stick of each entry's sweep: corrected p50 (dashed) and p99 (solid) against
    offered rate, one colour per entry, the SLO as a horizontal line; a cross marks a step
    whose rate check failed, a vertical dotted line each entry's max_rate_at_slo."""
    knees = d.knees()
    if not any(k.get("steps") for k in knees.values()):
        return None
    fig, axes = _panels(1, width=6.4, height=3.8)
    ax = axes[0]
    slos = {}
    for b, k in knees.items():
        steps = sorted((s for s in k.get("steps") or [] if s.get("offered_rate")),
                       key=lambda s: s["offered_rate"])
        col = colour(b, d.backends)
        for key, style, lab in (("p99_us", "-", f"{b} p99"), ("p50_us", "--", f"{b} p50")):
            pts = [(s["offered_rate"], s[key]) for s in steps if s.get(key)]
            if pts:
                ax.plot(*zip(*pts), linestyle=style, marker="o", markersize=3, color=col,
                        label=lab)
        bad = [(s["offered_rate"], s["p99_us"]) for s in steps
               if s.get("verdict") == "fail" and s.get("p99_us")]
        if bad:
            ax.plot(*zip(*bad), marker="x", color=col, linestyle="none", markersize=7)
        if k.get("max_rate_at_slo"):
            ax.axvline(k["max_rate_at_slo"], color=col, linestyle=":", linewidth=1)
        try:
            slo = Slo.parse(k.get("slo"))
            slos[slo.limit_us] = slo
        except UsageError:
            pass
    for limit, slo in sorted(slos.items()):
        ax.axhline(limit, color="#444", linewidth=1.2, label=f"SLO {slo.pretty}")
    _y(ax, log=True, label="corrected latency (µs)")
    _x_rate(ax, "offered rate (msgs/s)")
    _legend(fig, axes)
    return _svg(fig)


def _cpu_caption(d):
    text = ("CPU time of the server process (all threads, exited ones included) over the "
            "measured window, divided by the messages echoed in it: its CPU clock (ns), or "
            "utime+stime from /proc/PID/stat (10 ms ticks) where that cannot be read. Median "
            "with 95 % CI.")
    targets = [b for b in d.backends if not d.has_cpu(b)]
    if targets:
        text += (" Not shown: " + ", ".join(targets) + " (target: a server echobench did "
                 "not start, so it has no CPU figure).")
    return text


FIGURES = [
    ("plot-throughput", "Throughput vs connections", throughput_vs_connections,
     "Closed loop: each connection sends its next message when the previous one is back. "
     "Streaming: each connection writes continuously. Medians with 95 % CI as error bars."),
    ("plot-latency", "Latency percentile spectrum", latency_spectrum,
     "From the .hgrm files of the closed-loop cells (the repetition with the median p99). "
     "Each step right is one more nine."),
    ("plot-p99-rate", "p99 latency vs offered rate", p99_vs_rate,
     "Open loop: every entry of a cell is offered the same absolute rate; latency counts from "
     "each message's scheduled send time (coordinated omission corrected). Medians with 95 % "
     "CI."),
    ("plot-knee", "Knee: latency vs offered rate (sweep)", knee,
     "Sweep per entry: corrected p50 (dashed) and p99 (solid) against offered rate; the "
     "horizontal line is the SLO, the dotted vertical line each entry's max_rate_at_slo, a "
     "cross a failing step. The first measurement of each step; the bracketing steps are "
     "measured again (the knee table has their verdicts)."),
    ("plot-cpu", "Server CPU per message", cpu_per_message, _cpu_caption),
]

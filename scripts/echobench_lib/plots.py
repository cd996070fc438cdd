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
from matplotlib.ticker import FuncFormatter, NullFormatter  # noqa: E402

# One colour per backend, the same in every figure.
COLOURS = {"blocking": "#8c564b", "select": "#9467bd", "poll": "#2ca02c", "epoll": "#1f77b4",
           "uring": "#d62728"}
_SPARE = ["#ff7f0e", "#17becf", "#bcbd22", "#e377c2", "#7f7f7f"]
NINES = [(math.log10(2), "50%"), (1.0, "90%"), (2.0, "99%"), (3.0, "99.9%"),
         (4.0, "99.99%"), (5.0, "99.999%")]

plt.rcParams.update({"svg.fonttype": "path", "font.size": 9, "axes.grid": True,
                     "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False})


def colour(backend, backends):
    if backend in COLOURS:
        return COLOURS[backend]
    others = [b for b in backends if b not in COLOURS]
    return _SPARE[others.index(backend) % len(_SPARE)]


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


def throughput_vs_connections(d):
    """Closed-loop msgs/s (and streaming bytes/s) against connections, one panel per size."""
    rows = [(mode, metric, label) for mode, metric, label in
            (("closed", "msgs_per_sec", "closed loop: msgs/s"),
             ("stream", "bytes_per_sec", "streaming: bytes/s"))
            if any(k[3] == mode and metric in v for k, v in d.med.items())]
    if not rows:
        return None
    panels = [(r, s) for r in rows for s in d.sizes]
    fig, axes = _panels(len(panels))
    for ax, ((mode, metric, label), size) in zip(axes, panels):
        for b in d.backends:
            pts = [(c, d.med[(b, c, size, mode)][metric]) for c in d.conns
                   if metric in d.med.get((b, c, size, mode), {})]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=b, color=colour(b, d.backends))
        _log2_x(ax, d.conns)
        ax.set_ylim(bottom=0)
        ax.yaxis.set_major_formatter(FuncFormatter(_si))
        ax.set_title(f"{label}, {size} B")
        ax.set_xlabel("connections (log2)")
    _legend(fig, axes)
    return _svg(fig)


def latency_spectrum(d):
    """Closed-loop latency percentile spectrum, one panel per connection count (smallest size),
    one line per backend. The x axis counts nines: 90 %, 99 %, 99.9 %, 99.99 %."""
    size = d.sizes[0] if d.sizes else None
    panels = [c for c in d.conns
              if any((b, c, size, "closed") in d.spectra for b in d.backends)]
    if not panels:
        return None
    fig, axes = _panels(len(panels))
    top = 0.0
    for ax, c in zip(axes, panels):
        for b in d.backends:
            pts = [(math.log10(1.0 / (1.0 - p)), v) for v, p in d.spectra.get(
                (b, c, size, "closed"), []) if p < 1.0 and v > 0]
            if pts:
                top = max(top, pts[-1][0])
                ax.plot(*zip(*pts), label=b, color=colour(b, d.backends), linewidth=1.4)
        ax.set_yscale("log")
        ax.set_title(f"closed loop, c={c}, {size} B")
        ax.set_xlabel("percentile")
        ax.set_ylabel("latency (us)")
        ax.yaxis.set_major_formatter(FuncFormatter(_si))
    for ax in axes:
        ticks = [(x, lab) for x, lab in NINES if x <= max(top, 4.0) + 0.01]
        ax.set_xticks([x for x, _ in ticks])
        ax.set_xticklabels([lab for _, lab in ticks], rotation=30)
        ax.set_xlim(0, max(top, 4.0))
    _legend(fig, axes)
    return _svg(fig)


def p99_vs_rate(d):
    """Open-loop p99 against offered rate (the hockey stick), one panel per connection count
    (smallest size); the closed-loop point (hollow) marks each backend's peak."""
    size = d.sizes[0] if d.sizes else None
    open_modes = [m for m in d.modes if m.startswith("open")]
    panels = [c for c in d.conns if any("p99_us" in d.med.get((b, c, size, m), {})
                                        for b in d.backends for m in open_modes)]
    if not panels:
        return None
    fig, axes = _panels(len(panels))
    for ax, c in zip(axes, panels):
        for b in d.backends:
            pts = []
            for m in open_modes:
                v = d.med.get((b, c, size, m), {})
                if "p99_us" in v and v.get("offered_rate"):
                    pts.append((v["offered_rate"], v["p99_us"]))
            col = colour(b, d.backends)
            if pts:
                ax.plot(*zip(*sorted(pts)), marker="o", label=b, color=col)
            closed = d.med.get((b, c, size, "closed"), {})
            if "p99_us" in closed and closed.get("msgs_per_sec"):
                ax.plot([closed["msgs_per_sec"]], [closed["p99_us"]], marker="o",
                        markerfacecolor="none", color=col, linestyle="none")
        ax.set_yscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(_si))
        ax.yaxis.set_major_formatter(FuncFormatter(_si))
        ax.set_xlim(left=0)
        ax.set_title(f"open loop p99, c={c}, {size} B")
        ax.set_xlabel("offered rate (msgs/s); hollow: closed-loop peak")
        ax.set_ylabel("p99 latency (us)")
    _legend(fig, axes)
    return _svg(fig)


def cpu_per_message(d):
    """Server CPU time per message in closed loop against connections, one panel per size."""
    panels = [s for s in d.sizes if any("server_cpu_ns_per_msg" in d.med.get((b, c, s, "closed"),
                                                                            {})
                                        for b in d.backends for c in d.conns)]
    if not panels:
        return None
    fig, axes = _panels(len(panels))
    for ax, size in zip(axes, panels):
        for b in d.backends:
            pts = [(c, d.med[(b, c, size, "closed")]["server_cpu_ns_per_msg"] / 1e3)
                   for c in d.conns
                   if "server_cpu_ns_per_msg" in d.med.get((b, c, size, "closed"), {})]
            if pts:
                ax.plot(*zip(*pts), marker="s", label=b, color=colour(b, d.backends))
        _log2_x(ax, d.conns)
        ax.set_ylim(bottom=0)
        ax.set_title(f"server CPU per message, {size} B")
        ax.set_xlabel("connections (log2)")
        ax.set_ylabel("CPU us / message")
    _legend(fig, axes)
    return _svg(fig)


FIGURES = [
    ("plot-throughput", "Throughput vs connections", throughput_vs_connections,
     "Closed loop: each connection sends its next message when the previous one is back. "
     "Streaming: each connection writes continuously. Medians over repetitions."),
    ("plot-latency", "Latency percentile spectrum", latency_spectrum,
     "From the .hgrm files of the closed-loop cells (the repetition with the median p99). "
     "Each step right is one more nine."),
    ("plot-p99-rate", "p99 latency vs offered rate", p99_vs_rate,
     "Open loop at fractions of each backend's own closed-loop peak; latency counts from each "
     "message's scheduled send time (coordinated omission corrected)."),
    ("plot-cpu", "Server CPU per message", cpu_per_message,
     "CPU time of the server process (all threads) over the measured window, divided by the "
     "messages echoed in it: /proc/PID/task/*/schedstat (ns), or utime+stime from "
     "/proc/PID/stat (10 ms ticks) when a thread came or went."),
]

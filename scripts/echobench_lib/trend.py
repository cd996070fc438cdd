"""The trend plot of a history series, for the report and `echobench history changes --html`:
one figure per run (the median of its valid repetitions) with the repetitions behind it, the
median of each segment between change points, and each change point marked with its size and
first commit. Same style as plots.py (matplotlib Agg, text as paths, inlined SVG)."""
import html
import statistics

from . import plots
from .plots import PALETTE, SI

REGRESSION, IMPROVEMENT, NEUTRAL = "#d62728", "#2ca02c", "#7f7f7f"
CAPTION = ("One point per run: the median of its valid repetitions (grey dots; a cross: a "
           "repetition whose echo-load self-checks failed, not counted). Dashed: the median of "
           "each segment between change points. Dotted: a change point (E-divisive means with a "
           "permutation test), at its first run, with its size and first commit; red a "
           "regression, green an improvement.")


def trend_svg(series, changes):
    """SVG text for a history.Series and the changes found in it (changepoint.detect over
    the medians of series.usable(), whose indexes they carry); None when the series has no
    usable point."""
    points = series.usable()
    if not points:
        return None
    fig, axes = plots._panels(1, width=7.2, height=2.8)
    ax = axes[0]
    xs = list(range(1, len(points) + 1))
    for x, p in zip(xs, points):
        good = [v for v, ok in zip(p.values, p.valid) if ok]
        bad = [v for v, ok in zip(p.values, p.valid) if not ok]
        ax.plot([x] * len(good), good, linestyle="none", marker=".", markersize=3,
                color="#bbbbbb")
        if bad:
            ax.plot([x] * len(bad), bad, linestyle="none", marker="x", markersize=3,
                    color="#bbbbbb")
    ax.plot(xs, [p.median for p in points], marker="o", markersize=3, linewidth=1.0,
            color=PALETTE[0], label="run median")
    bounds = [0] + [c.index for c in changes] + [len(points)]
    meds = [c.before_median for c in changes] + \
        ([changes[-1].after_median] if changes else [])
    if not changes:
        meds = [statistics.median(p.median for p in points)]
    for (s, e), m in zip(zip(bounds, bounds[1:]), meds):
        ax.hlines(m, s + 0.6, e + 0.4, colors="#444444", linestyles="--", linewidth=1.0)
    for c in changes:
        way = c.direction(series.higher_is_better)
        col = REGRESSION if way == "regression" else \
            IMPROVEMENT if way == "improvement" else NEUTRAL
        ax.axvline(c.index + 0.5, color=col, linestyle=":", linewidth=1.4)
        ax.annotate(f"{c.size:+.1%} {str(c.label or '')[:10]}", (c.index + 0.6, 1.0),
                    xycoords=("data", "axes fraction"), va="top", fontsize=8, color=col)
    ax.yaxis.set_major_formatter(SI)
    ax.set_ylabel(series.unit or series.metric)
    step = max(1, len(points) // 10)
    ticks = xs[::step]
    ax.set_xticks(ticks)
    ax.set_xticklabels([points[x - 1].label[:7] for x in ticks], rotation=30, fontsize=7)
    ax.set_xlim(0.3, len(points) + 0.7)
    ax.set_title(series.title, fontsize=8)
    fig.tight_layout()
    return plots._svg(fig)


def page(title, figures, note=""):
    """A self-contained HTML page of (caption, svg) figures, `note` under the title."""
    body = "\n".join(f"<figure>{svg}<figcaption>{html.escape(cap)}</figcaption></figure>"
                     for cap, svg in figures if svg)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>body{{font-family:sans-serif;max-width:60em;margin:1em auto}}"
            f"figure{{margin:1.5em 0}}figcaption{{font-size:85%;color:#444}}</style></head>"
            f"<body><h1>{html.escape(title)}</h1><p>{html.escape(note)}</p>\n{body}\n"
            f"</body></html>\n")

"""The report's trends: for each cell of a run, the history of the metric that ranks it (this
machine class, every branch pooled), with its change points marked (history.py, changepoint.py,
trend.py). Used when the run was added to a history (`echobench run --history DB`) or
`echobench report DIR --history DB` names one."""
from .rundata import efficiency_metric

MAX_PLOTS = 12          # the report stays readable: the cells with the most runs first
MIN_RUNS = 3


def trends(d, db):
    """[(title, svg, [change lines])] for this run's cells found in the history db (a path or
    URL), or [] when there is no history there."""
    from . import changepoint, history, trend
    store = history.existing(db)
    if store is None:
        return []
    mclass = history.machine_class(d.context)
    out = []
    try:
        wanted = []
        for spot in d.spots():
            metric = d.deciding_metric(spot)
            for b in d.backends:
                cell = d.cell(spot, b)
                if cell not in d.values:
                    continue
                name = history.cell_name(b, spot.connections, spot.size, spot.mode,
                                         spot.placement)
                wanted.append((name, metric))
                if metric != efficiency_metric(spot) and d.has_cpu(b):
                    wanted.append((name, efficiency_metric(spot)))
        found = []
        for name, metric in wanted:
            for s in store.series(cells=[history.glob_escape(name)],
                                  metrics=[history.glob_escape(metric)], by_branch=False):
                if s.machine_class == mclass and len(s.usable()) >= MIN_RUNS:
                    found.append(s)
        found.sort(key=lambda s: -len(s.usable()))
        for s in found[:MAX_PLOTS]:
            pts = s.usable()
            changes = changepoint.detect([p.median for p in pts], [p.label for p in pts])
            lines = [f"{c.direction(s.higher_is_better)} of {c.size:+.1%} "
                     f"[{c.size_lo:+.1%}, {c.size_hi:+.1%}] from {c.label} (run {c.index + 1} "
                     f"of {len(pts)}, p = {c.p_value:.3f})" for c in changes]
            svg = trend.trend_svg(s, changes)
            if svg:
                out.append((s.title, svg, lines))
    finally:
        store.close()
    return out

"""How the report and the summary write figures: units (SI), a median with its interval and
the level that interval really has, ratios, reasons, and the notes a reader must see first.
Shared by report_md.py and report_html.py; no module here knows HTML or markdown."""
from . import stats
from .knee import Slo
from .util import human
from .verdict import ALPHA, EQUIVALENCE

# metric -> (unit shown in column headers, factor from the stored value). One system, SI.
UNITS = {"msgs_per_sec": ("msgs/s", 1.0), "bytes_per_sec": ("MB/s", 1e-6),
         "transactions_per_sec": ("tx/s", 1.0),
         "offered_rate": ("msgs/s", 1.0), "rate_achieved": ("msgs/s", 1.0),
         "server_cpu_ns_per_msg": ("ns/msg", 1.0), "server_cpu_ns_per_kib": ("ns/KiB", 1.0),
         "server_cpu_ns_per_tx": ("ns/tx", 1.0),
         "errors": ("count", 1.0), "client_cpu_busiest": ("%", 100.0),
         "server_cpu_busiest": ("%", 100.0)}

UNIT_LEGEND = ("Units: SI throughout, as in echo-load, cells.csv and run.json: k = 10³, "
               "M = 10⁶, G = 10⁹; MB/s = 10⁶ B/s; latencies in µs; CPU time in ns; message "
               "sizes in B. Each column's unit is in its header.")


def unit_of(metric):
    if metric in UNITS:
        return UNITS[metric][0]
    return "µs" if metric.endswith("_us") else ""


def num(metric, value):
    """A value in its column's unit, without the unit (SI prefix k/M/G for large values)."""
    if value is None:
        return "-"
    return human(value * UNITS.get(metric, ("", 1.0))[1])


def level_text(coverage):
    """' (87.5 %)' when an interval covers less than 95 %, else ''."""
    if coverage is None or coverage >= 0.95 - 1e-9:
        return ""
    return f" ({coverage * 100:.3g} %)"


def fig_text(metric, fig):
    """'12.3k [11.9k, 12.6k]', with the level the interval really has when it is below 95 %
    (fewer than 6 repetitions: the range, which covers less), '‡' for one repetition."""
    if fig is None:
        return "-"
    med, lo, hi, n = fig
    if n == 1:
        return f"{num(metric, med)} ‡"
    cover = stats.median_ci_coverage(n)[1]
    return f"{num(metric, med)} [{num(metric, lo)}, {num(metric, hi)}]{level_text(cover)}"


def ratio_text(r):
    if r is None:
        return "-"
    est, lo, hi = r[:3]
    cover = r[3] if len(r) > 3 else None
    if cover == 0.0 or lo == hi == est:
        return f"{est:.2f} ‡"            # one pair (or one value a side): no interval
    return f"{est:.2f} [{lo:.2f}, {hi:.2f}]{level_text(cover)}"


def margin_text(dec):
    if dec.get("margin") is None:
        return "-"
    return (f"{dec['margin']:.3f}× [{dec['margin_lo']:.3f}, {dec['margin_hi']:.3f}]"
            f"{level_text(dec.get('coverage'))}")


def verdict_text(dec):
    """The cell's verdict in a few words: the winner, 'equivalent (±5 %)', or 'inconclusive'
    (with the pairs that would decide)."""
    if dec["verdict"] == "inconclusive" and dec.get("pairs_needed"):
        return f"inconclusive (~{dec['pairs_needed']} pairs would decide)"
    return dec["label"]


def p_text(dec):
    return "-" if dec.get("p_value") is None else f"{dec['p_value']:.3f}"


def stats_legend(d):
    """How to read the figures of this run (its design, its repetitions)."""
    n = d.repetitions()
    cover = ""
    if 1 < n < 6:
        cover = (f" With {n} repetitions no interval of a median can reach 95 %: [lo, hi] is "
                 f"the range, which covers{level_text(stats.median_ci_coverage(n)[1])}, and "
                 f"each such interval is labelled with its level.")
    if d.paired:
        method = (
            "Paired design: in each round every entry was measured once, one after the other "
            "in a balanced order, against servers that stayed up, so each round is a pair "
            "measured within a second or two. A ratio to the reference is the Hodges-Lehmann "
            "estimate of the per-round ratios with its exact distribution-free interval "
            "(signed-rank). The leader is tested against every other entry (two-sided "
            f"signed-rank, Holm at {ALPHA:g}): it is the winner when every other is "
            f"significantly worse; entries whose interval against the leader lies within "
            f"±{EQUIVALENCE:.0%} are tied with it ('leaders', the rest worse). ")
    else:
        method = (
            "Unpaired design: a fresh server per repetition. Ratios are ratios of medians with "
            "a 95 % percentile-bootstrap interval; the winner is named when a one-sided "
            f"Mann-Whitney test at p ≤ {ALPHA / 2:g} and a 5 % effect say so. ")
    return ("Every figure is the median over repetitions with its 95 % confidence interval "
            "[lo, hi] from order statistics (binomial, distribution-free); ‡ one repetition: "
            "no interval." + cover + " " + method +
            f"'equivalent (±{EQUIVALENCE:.0%})': every entry tied; otherwise 'inconclusive', "
            "with about how many pairs would decide. Client-bound cells (the client's busiest thread at least "
            "as busy as the server's) are ranked by the server's CPU per message, since their "
            "throughput measures the client; open-loop cells by the server's CPU per message "
            "at the same offered rate (p99 beside it: on a shared machine it spreads too widely "
            "to rank). ✗ marks an entry whose measurement failed a "
            "self-check: it takes part in no verdict.")


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


def knee_text(k):
    v = k.get("max_rate_at_slo")
    br = k.get("bracket") or [None, None]
    hi = br[1] if len(br) > 1 else None
    if v is None:
        text = "none (no step met the SLO)"
    else:
        text = num("offered_rate", v)
    if hi is not None or v is not None:
        text += f" [{num('offered_rate', br[0])}, {num('offered_rate', hi)}]"
    if v is not None and k.get("decided") is False:
        text += " (bracket undecided)"
    return text


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
                   f"are noisy" + ("" if d.paired else " and ratios between entries "
                                   "unreliable"))
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


def entry_name(d, b):
    """'mine [server]': an entry with its kind when it is not one of our backends."""
    kind = d.kind(b)
    return f"{b}{'' if kind == 'backend' else f' [{kind}]'}"


def slo_text(slo):
    """'p99 ≤ 1 ms' from a sweep's SLO text ('p99:1ms')."""
    return Slo.pretty_of(slo)


def host_rows(d, cell):
    """Per load host of a --load-hosts cell, for every repetition: (rep, start spread µs,
    [HOST_HEAD values])."""
    out = []
    for rep, det in sorted(d.host_detail.get(cell, {}).items()):
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


HOST_HEAD = ("load host", "connections", "rate (msgs/s)", "phase", "status", "msgs/s",
             "p99 (µs)", "mismatches")


def host_lines(d, cell):
    """One line per load host and repetition of a cell (the report's and summary's
    sub-rows)."""
    lines = []
    for rep, spread, vals in host_rows(d, cell):
        dest, conns, rate, phase, status, mps, p99, mism = vals
        lines.append(f"rep {rep} load host {dest}: {conns} connections, rate {rate}, phase "
                     f"{phase}, {status}, {mps} msgs/s, p99 {p99} µs, {mism} mismatches; "
                     f"start spread {num('start_spread_us', spread)} µs")
    return lines


def kind_groups(d):
    """[(title, [spots], is_open)]: one table per kind of cell, so that each column has one
    unit (a spot's deciding metric may differ: it says so in its row)."""
    groups = []
    for title, pred in (("Closed loop", lambda s: s.kind == "closed"),
                        ("Open loop at the same offered rate", lambda s: s.is_open),
                        ("Streaming", lambda s: s.kind == "stream"),
                        ("Connection churn", lambda s: s.kind == "churn")):
        spots = [s for s in d.spots() if pred(s)]
        if spots:
            groups.append((title, spots, spots[0].is_open))
    return groups


def _cpus(cpus):
    return ",".join(map(str, cpus)) if cpus else "?"

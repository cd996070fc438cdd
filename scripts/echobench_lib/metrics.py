"""Figures of one measured cell, taken from echo-load's --json object plus the server's CPU.

Each metric has a unit and a direction: higher is better for throughput, lower for latency and
CPU. `compare` and the report rely on this table; nothing else decides what "better" means.
"""
import math

# name -> (unit, higher_is_better, description)
METRICS = {
    "msgs_per_sec": ("msgs/s", True, "messages echoed per second"),
    "bytes_per_sec": ("B/s", True, "bytes echoed per second"),
    "p50_us": ("us", False, "median round-trip latency"),
    "p90_us": ("us", False, "90th percentile latency"),
    "p99_us": ("us", False, "99th percentile latency"),
    "p999_us": ("us", False, "99.9th percentile latency"),
    "p9999_us": ("us", False, "99.99th percentile latency"),
    "max_us": ("us", False, "largest latency"),
    "mean_us": ("us", False, "mean latency"),
    "p99_uncorrected_us": ("us", False, "open loop: p99 without coordinated-omission correction"),
    "connect_p99_us": ("us", False, "99th percentile connect latency"),
    "server_cpu_ns_per_msg": ("ns", False, "server CPU time (user+system) per message"),
    "server_cpu_ns_per_kib": ("ns", False, "server CPU time (user+system) per KiB echoed"),
    "offered_rate": ("msgs/s", None, "open loop: the rate asked of echo-load"),
    "rate_achieved": ("msgs/s", None, "open loop: msgs/s answered in the window (self-check)"),
    "send_lag_p99_us": ("us", False, "open loop: p99 of how late messages went out"),
    "client_cpu_busiest": ("fraction", False, "busiest echo-load thread's share of the window"),
    "errors": ("count", False, "connection errors of every kind"),
    "mismatches": ("count", False, "echoed bytes that differed"),
}

LATENCY_KEYS = (("p50", "p50_us"), ("p90", "p90_us"), ("p99", "p99_us"), ("p999", "p999_us"),
                ("p9999", "p9999_us"), ("max", "max_us"), ("mean", "mean_us"))

# Metrics that go into run.json (and so into compare and dashboards) per kind of mode. The rest
# (max, mean, uncorrected, connect, errors) are in cells.csv only: too noisy to gate a change on.
GATED_LATENCY = ("p50_us", "p90_us", "p99_us", "p999_us", "p9999_us")


def gated_metrics(mode):
    if mode == "stream":
        return ("bytes_per_sec", "server_cpu_ns_per_kib") + GATED_LATENCY
    return ("msgs_per_sec",) + GATED_LATENCY + ("server_cpu_ns_per_msg",)


def _num(v):
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and \
        math.isfinite(v) else None


def from_load_json(load, server_cpu_s=None, cpu_window_s=None, offered_rate=None):
    """{metric: value} from an echo-load JSON object. server_cpu_s is the server's CPU time over
    cpu_window_s seconds of wall time inside the measured window: per message it is divided by
    the messages echoed in that same wall time, so the exact alignment with echo-load's own
    window does not matter as long as the load is steady."""
    out = {}
    for key in ("msgs_per_sec", "bytes_per_sec"):
        v = _num(load.get(key))
        if v is not None:
            out[key] = v
    lat = load.get("latency_us") or {}
    for src, dst in LATENCY_KEYS:
        v = _num(lat.get(src))
        if v is not None and v > 0:  # a zero is "not measured" (stream mode)
            out[dst] = v
    unc = load.get("latency_uncorrected_us") or {}
    if _num(unc.get("p99")) is not None:
        out["p99_uncorrected_us"] = float(unc["p99"])
    con = load.get("connect_us") or {}
    if _num(con.get("p99")) is not None:
        out["connect_p99_us"] = float(con["p99"])
    errors = load.get("errors") or {}
    out["errors"] = float(sum(v for v in errors.values() if _num(v) is not None))
    if _num(load.get("mismatches")) is not None:
        out["mismatches"] = float(load["mismatches"])
    if offered_rate:
        out["offered_rate"] = float(offered_rate)
    # echo-load's self-check figures, for cells.csv: absent in old echo-load JSON.
    if load.get("rate_target") is not None and _num(load.get("rate_achieved")) is not None:
        out["rate_achieved"] = float(load["rate_achieved"])
    lag = load.get("send_lag_us") or {}
    if isinstance(lag, dict) and _num(lag.get("p99")) is not None:
        out["send_lag_p99_us"] = float(lag["p99"])
    cpu = load.get("client_cpu") or {}
    if isinstance(cpu, dict) and _num(cpu.get("busiest_thread")) is not None:
        out["client_cpu_busiest"] = float(cpu["busiest_thread"])
    if server_cpu_s is not None and cpu_window_s and cpu_window_s > 0:
        cpu_per_s = server_cpu_s / cpu_window_s
        mps, bps = out.get("msgs_per_sec"), out.get("bytes_per_sec")
        if mps:
            out["server_cpu_ns_per_msg"] = cpu_per_s / mps * 1e9
        if bps:
            out["server_cpu_ns_per_kib"] = cpu_per_s / bps * 1024 * 1e9
    return out


def higher_is_better(metric):
    return METRICS.get(metric, (None, None))[1]


def unit(metric):
    return METRICS.get(metric, ("", None))[0]

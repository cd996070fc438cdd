"""The metrics of a cell (loadresult.LoadResult.metrics computes them): each with a unit and a
direction, higher is better for throughput, lower for latency and CPU. `compare`, `ab` and the
report rely on this table; nothing else decides what "better" means.
"""

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
    "server_cpu_ns_per_tx": ("ns", False, "churn: server CPU time per transaction (accept, "
                                          "echo, close)"),
    "offered_rate": ("msgs/s", None, "open loop: the rate asked of echo-load"),
    "rate_achieved": ("msgs/s", None, "open loop: msgs/s answered in the window (self-check)"),
    "send_lag_p99_us": ("us", False, "open loop: p99 of how late messages went out"),
    "client_cpu_busiest": ("fraction", False, "busiest echo-load thread's share of the window"),
    "server_cpu_busiest": ("fraction", None, "busiest server thread's share of the window"),
    "slot_wait_p99_us": ("us", None, "open loop: p99 of the wait for a free pipeline slot "
                                     "(the server's: already in the corrected latency)"),
    "transactions_per_sec": ("tx/s", True, "churn: connect-request-response-close "
                                           "transactions per second"),
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
    if mode == "churn":
        return ("transactions_per_sec",) + GATED_LATENCY + ("server_cpu_ns_per_tx",)
    return ("msgs_per_sec",) + GATED_LATENCY + ("server_cpu_ns_per_msg",)


def higher_is_better(metric):
    return METRICS.get(metric, (None, None))[1]


def unit(metric):
    return METRICS.get(metric, ("", None))[0]

"""The knee: the highest offered rate that meets a latency target (--slo p99:1ms).

Per entry the offered rate steps from 10 % to 120 % of its own closed-loop peak; the search
stops early once echo-load's rate check fails or p99 exceeds 100x its lowest value.
max_rate_at_slo is the highest offered rate whose corrected p99 meets the SLO while the rate
check holds."""
import re

from .util import UsageError, parse_duration

# Fractions of the entry's closed-loop peak: 8 steps from 10 % to 120 %.
FRACTIONS = (0.10, 0.25, 0.40, 0.55, 0.70, 0.85, 1.00, 1.20)
BLOWUP = 100.0           # stop once p99 exceeds this multiple of its lowest value
PERCENTILES = ("p50", "p90", "p99", "p999", "p9999")


def parse_slo(text):
    """'p99:1ms' -> ('p99', 1000.0 us)."""
    m = re.fullmatch(r"\s*(p\d+)\s*:\s*(\S+)\s*", str(text))
    if not m or m.group(1) not in PERCENTILES:
        raise UsageError(f"bad --slo '{text}': expected PERCENTILE:LATENCY like p99:1ms "
                         f"(percentiles {', '.join(PERCENTILES)})")
    return m.group(1), parse_duration(m.group(2), "--slo latency") * 1e6


def slo_text(slo):
    pct, us = slo
    return f"{pct}:{us / 1000:g}ms" if us >= 1000 else f"{pct}:{us:g}us"


def rate_ok(load, offered):
    """echo-load's rate check (its `checks` item named rate); builds without checks: the
    answered rate within 5 % of the offered one."""
    for c in load.get("checks") or []:
        if isinstance(c, dict) and c.get("name") == "rate":
            return bool(c.get("ok"))
    achieved = load.get("rate_achieved", load.get("msgs_per_sec")) or 0.0
    return achieved >= 0.95 * offered


def step_record(load, offered, pct):
    lat = load.get("latency_us") or {}
    return {"offered_rate": offered,
            "rate_achieved": load.get("rate_achieved", load.get("msgs_per_sec")),
            "p50_us": lat.get("p50"), "p99_us": lat.get("p99"),
            "slo_value_us": lat.get(pct),
            "rate_ok": rate_ok(load, offered),
            "valid": bool(load.get("valid", True))}


def should_stop(steps):
    """True once the last step failed the rate check or its p99 blew up."""
    last = steps[-1]
    if not last["rate_ok"]:
        return True
    p99s = [s["p99_us"] for s in steps if s.get("p99_us")]
    return bool(p99s) and last.get("p99_us") is not None and \
        last["p99_us"] > BLOWUP * min(p99s)


def max_rate_at_slo(steps, slo_us):
    ok = [s["offered_rate"] for s in steps
          if s["rate_ok"] and s.get("slo_value_us") is not None and s["slo_value_us"] <= slo_us]
    return max(ok) if ok else None

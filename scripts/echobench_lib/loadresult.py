"""The one reader of echo-load's JSON (clients/README.md "JSON"): every module that needs a
figure, a self-check or the reason a run is not to be trusted asks a LoadResult, so that what
echo-load writes is interpreted in one place.

A LoadResult is read-only. `raw` keeps the object as echo-load wrote it, for the files of a run
(raw/<cell>.json) and for the load hosts' merge (remote_plan.combine works on raw objects).
"""
import json
import math
from dataclasses import dataclass

from .metrics import LATENCY_KEYS


def num(v):
    """v as a finite float, or None (JSON null, a string, NaN, a bool)."""
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and \
        math.isfinite(v) else None


@dataclass(frozen=True)
class Check:
    """One of echo-load's self-checks: {name, ok, value, limit}."""
    name: str
    ok: bool
    value: float = None
    limit: float = None


class LoadResult:
    """echo-load's JSON object, read once."""

    def __init__(self, obj):
        self.raw = obj if isinstance(obj, dict) else {}

    @classmethod
    def from_file(cls, path):
        """The JSON file echo-load wrote; ValueError/OSError when it is not there or not
        JSON."""
        with open(path) as f:
            obj = json.load(f)
        if not isinstance(obj, dict):
            raise ValueError(f"{path}: not a JSON object")
        return cls(obj)

    def get(self, key, default=None):
        return self.raw.get(key, default)

    # -- what was measured -------------------------------------------------------------------
    @property
    def messages(self):
        return int(num(self.raw.get("messages")) or 0)

    @property
    def bytes(self):
        return int(num(self.raw.get("bytes")) or 0)

    @property
    def mismatches(self):
        return int(num(self.raw.get("mismatches")) or 0)

    @property
    def measured_something(self):
        return bool(self.messages or self.bytes)

    @property
    def complete(self):
        """False only when echo-load said the run was cut short."""
        return self.raw.get("complete") is not False

    @property
    def error(self):
        return self.raw.get("error")

    @property
    def mode(self):
        return self.raw.get("mode")

    @property
    def engine(self):
        return self.raw.get("engine")

    def latency_us(self, pct):
        """A corrected latency percentile in µs ('p99'), None when absent or not measured (0 in
        stream mode)."""
        lat = self.raw.get("latency_us")
        v = num(lat.get(pct)) if isinstance(lat, dict) else None
        return v if v else None

    def unresolved(self):
        """The latency metrics (p50_us ...) whose confidence interval echo-load could not
        resolve in this run (latency_ci_us says "unresolved": too few samples beyond the
        percentile, or all of them in one burst): shown, never judged."""
        ci = self.raw.get("latency_ci_us")
        if not isinstance(ci, dict):
            return set()
        return {dst for src, dst in LATENCY_KEYS
                if isinstance(ci.get(src), str) and ci[src].startswith("unresolved")}

    @property
    def rate_target(self):
        return num(self.raw.get("rate_target"))

    @property
    def rate_achieved(self):
        """Messages answered in the window per second (echo-load's own figure), else
        msgs_per_sec."""
        v = num(self.raw.get("rate_achieved"))
        return v if v is not None else num(self.raw.get("msgs_per_sec"))

    @property
    def client_busiest(self):
        """The busiest load thread's share of the window (0..1), None when unknown."""
        cpu = self.raw.get("client_cpu")
        return num(cpu.get("busiest_thread")) if isinstance(cpu, dict) else None

    # -- how far it can be trusted ------------------------------------------------------------
    @property
    def checks(self):
        """{name: Check} of echo-load's `checks` list (absent: none)."""
        out = {}
        for c in self.raw.get("checks") or []:
            if isinstance(c, dict) and isinstance(c.get("name"), str):
                out[c["name"]] = Check(c["name"], c.get("ok") is not False,
                                       num(c.get("value")), num(c.get("limit")))
        return out

    @property
    def failed_checks(self):
        return [n for n, c in self.checks.items() if not c.ok]

    @property
    def valid(self):
        """echo-load's own verdict (a run without self-checks counts as valid: nothing says
        otherwise)."""
        return self.raw.get("valid") is not False

    @property
    def reasons(self):
        return [str(r) for r in self.raw.get("invalid_reasons") or [] if r is not None]

    def reason_of(self, check):
        """echo-load's sentence for a failed check ('send_lag: ...'), or 'NAME failed'."""
        return next((r for r in self.reasons if r.startswith(check + ":")), f"{check} failed")

    @property
    def rate_ok(self):
        """echo-load's rate check; without one, the answered rate within 5 % of the
        target."""
        c = self.checks.get("rate")
        if c is not None:
            return c.ok
        target = self.rate_target
        return target is None or (self.rate_achieved or 0.0) >= 0.95 * target

    @property
    def client_bound_check(self):
        """Whether echo-load's client_cpu check failed (its busiest thread was near saturation):
        the figures may measure the client."""
        c = self.checks.get("client_cpu")
        return c is not None and not c.ok

    # -- the cell's metrics -------------------------------------------------------------------
    def metrics(self, server_cpu_s=None, cpu_window_s=None, offered_rate=None):
        """{metric: value} (metrics.METRICS names). server_cpu_s is the server's CPU time over
        cpu_window_s seconds of wall time inside the measured window: per message it is divided
        by the messages echoed in that same wall time, so the exact alignment with echo-load's
        own window does not matter as long as the load is steady."""
        r, out = self.raw, {}
        for key in ("msgs_per_sec", "bytes_per_sec", "transactions_per_sec"):
            v = num(r.get(key))
            if v is not None:
                out[key] = v
        for src, dst in LATENCY_KEYS:
            v = self.latency_us(src)
            if v is not None:
                out[dst] = v
        for field, key in (("latency_uncorrected_us", "p99_uncorrected_us"),
                           ("connect_us", "connect_p99_us")):
            d = r.get(field)
            v = num(d.get("p99")) if isinstance(d, dict) else None
            if v is not None:
                out[key] = v
        errors = r.get("errors") if isinstance(r.get("errors"), dict) else {}
        out["errors"] = float(sum(num(v) or 0 for v in errors.values()))
        if num(r.get("mismatches")) is not None:
            out["mismatches"] = float(r["mismatches"])
        if offered_rate:
            out["offered_rate"] = float(offered_rate)
        if self.rate_target is not None and num(r.get("rate_achieved")) is not None:
            out["rate_achieved"] = float(r["rate_achieved"])
        for field, key in (("send_lag_us", "send_lag_p99_us"),
                           ("slot_wait_us", "slot_wait_p99_us")):
            d = r.get(field)
            v = num(d.get("p99")) if isinstance(d, dict) else None
            if v is not None:
                out[key] = v
        if self.client_busiest is not None:
            out["client_cpu_busiest"] = self.client_busiest
        if server_cpu_s is not None and cpu_window_s and cpu_window_s > 0:
            cpu_per_s = server_cpu_s / cpu_window_s
            mps, bps = out.get("msgs_per_sec"), out.get("bytes_per_sec")
            tps = out.get("transactions_per_sec") if self.mode == "churn" else None
            if mps:
                out["server_cpu_ns_per_msg"] = cpu_per_s / mps * 1e9
            if tps:
                out["server_cpu_ns_per_tx"] = cpu_per_s / tps * 1e9
            if bps:
                out["server_cpu_ns_per_kib"] = cpu_per_s / bps * 1024 * 1e9
        return out

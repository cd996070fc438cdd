"""The knee: the highest offered rate that meets a latency target (--slo p99:1ms), and the SLO
itself (parsed here once; every other module asks an Slo).

Per entry the offered rate steps from 10 % to 120 % of its own closed-loop peak (the median of
its closed-loop samples, or a short calibration run). Each step is one of:
- pass: echo-load's rate check held and the SLO's percentile met the target;
- fail: the rate check failed (the server could not keep up) or the percentile missed it;
- invalid: another self-check failed (the client sent late, was saturated, a connection was
  lost): the step says nothing about the server and counts neither way.
The search stops at the first failing step (or once p99 exceeds 100x its lowest value).
max_rate_at_slo is the highest passing step below the first failing one, counting only valid
steps, and the bracket [last pass, first fail] says where the knee lies. The two bracketing
steps are measured again (up to REPEATS times each) until a majority of their repetitions
agrees; a bracket that stays split is reported as undecided.
"""
import re
from dataclasses import dataclass

from .util import UsageError, parse_duration

# Fractions of the entry's closed-loop peak: 8 steps from 10 % to 120 %.
FRACTIONS = (0.10, 0.25, 0.40, 0.55, 0.70, 0.85, 1.00, 1.20)
BLOWUP = 100.0           # stop once p99 exceeds this multiple of its lowest value
PERCENTILES = ("p50", "p90", "p99", "p999", "p9999")
REPEATS = 3              # measurements of each bracketing step at most


@dataclass(frozen=True)
class Slo:
    """A latency target: percentile ('p99') and its limit in µs."""
    percentile: str
    limit_us: float

    @classmethod
    def parse(cls, text):
        """'p99:1ms' -> Slo('p99', 1000.0); UsageError naming the problem."""
        m = re.fullmatch(r"\s*(p\d+)\s*:\s*(\S+)\s*", str(text))
        if not m or m.group(1) not in PERCENTILES:
            raise UsageError(f"bad --slo '{text}': expected PERCENTILE:LATENCY like p99:1ms "
                             f"(percentiles {', '.join(PERCENTILES)})")
        return cls(m.group(1), parse_duration(m.group(2), "--slo latency") * 1e6)

    @property
    def text(self):
        """The option's form, as run.json stores it: 'p99:1ms'."""
        us = self.limit_us
        return f"{self.percentile}:{us / 1000:g}ms" if us >= 1000 else \
            f"{self.percentile}:{us:g}us"

    @property
    def pretty(self):
        """'p99 ≤ 1 ms', for tables and plots."""
        us = self.limit_us
        return f"{self.percentile} ≤ {us / 1000:g} ms" if us >= 1000 else \
            f"{self.percentile} ≤ {us:g} µs"

    @classmethod
    def pretty_of(cls, text):
        """Slo.parse(text).pretty, or the text itself when it is no SLO."""
        try:
            return cls.parse(text).pretty
        except UsageError:
            return str(text) if text else "-"


def classify(sample, slo):
    """'pass', 'fail' or 'invalid' for a sweep step's measure.Sample (module docstring)."""
    load = sample.load
    if [c for c in load.failed_checks if c != "rate"] and not sample.valid:
        return "invalid"
    if not load.rate_ok:
        return "fail"
    value = load.latency_us(slo.percentile)
    return "pass" if value is not None and value <= slo.limit_us else "fail"


def step_record(sample, offered, slo):
    """One step's entry in context.echobench.sweep[entry].steps."""
    load = sample.load
    return {"offered_rate": offered, "rate_achieved": load.rate_achieved,
            "p50_us": load.latency_us("p50"), "p99_us": load.latency_us("p99"),
            "slo_value_us": load.latency_us(slo.percentile), "rate_ok": load.rate_ok,
            "valid": sample.valid, "verdict": classify(sample, slo)}


def failed_step(offered, why):
    return {"offered_rate": offered, "rate_achieved": None, "p50_us": None, "p99_us": None,
            "slo_value_us": None, "rate_ok": False, "valid": False, "verdict": "invalid",
            "error": why}


def step_verdict(records):
    """The verdict of a step measured one or more times: the majority of its valid
    repetitions ('pass'/'fail'), 'split' when they tie, 'invalid' when none was valid."""
    votes = [r["verdict"] for r in records if r["verdict"] in ("pass", "fail")]
    if not votes:
        return "invalid"
    p, f = votes.count("pass"), votes.count("fail")
    return "pass" if p > f else ("fail" if f > p else "split")


def should_stop(steps):
    """True once the last step failed or its p99 blew up."""
    last = steps[-1]
    if last["verdict"] == "fail":
        return True
    p99s = [s["p99_us"] for s in steps if s.get("p99_us")]
    return bool(p99s) and last.get("p99_us") is not None and \
        last["p99_us"] > BLOWUP * min(p99s)


def bracket(steps):
    """(last pass, first fail) over the steps in rate order (each a list of repetitions):
    indices into steps, either None. Invalid steps count neither way."""
    last_pass = first_fail = None
    for i, reps in enumerate(steps):
        v = step_verdict(reps)
        if v == "fail" or v == "split":
            first_fail = i
            break
        if v == "pass":
            last_pass = i
    return last_pass, first_fail


def summary(steps):
    """The knee's fields from the steps (each a list of repetition records): max_rate_at_slo,
    bracket [last pass, first fail] (rates, either None), decided (both ends agreed by a
    majority)."""
    lo, hi = bracket(steps)
    rate = (lambda i: None if i is None else steps[i][0]["offered_rate"])
    verdicts = [step_verdict(steps[i]) for i in (lo, hi) if i is not None]
    return {"max_rate_at_slo": rate(lo), "bracket": [rate(lo), rate(hi)],
            "decided": "split" not in verdicts}


def run_sweep(measure, peak, slo, fractions=FRACTIONS, repeats=REPEATS, progress=None):
    """The knee of one entry. measure(offered, tag) -> measure.Sample (or raises
    measure.CellFailed). Returns the sweep record (context.echobench.sweep[entry])."""
    from .measure import CellFailed
    steps = []          # per step: [records of its repetitions]

    def one(i, rep):
        offered = max(1.0, round(peak * fractions[i]))
        if progress:
            progress(f"{fractions[i]:.0%} of its peak" + (f", again ({rep + 1})" if rep else ""))
        try:
            return step_record(measure(offered, f"sweep{i}" + (f"x{rep}" if rep else "")),
                               offered, slo)
        except CellFailed as err:
            return failed_step(offered, str(err))

    def merged():
        return [dict(reps[0], verdict=step_verdict(reps)) for reps in steps]

    while True:
        # Up the rates until a step fails (or p99 blows up)...
        while len(steps) < len(fractions):
            steps.append([one(len(steps), 0)])
            if should_stop(merged()):
                break
        # ...then measure the bracketing steps again until a majority agrees.
        for _ in range(1, repeats):
            lo, hi = bracket(steps)
            again = [i for i in (lo, hi) if i is not None and
                     len(steps[i]) < repeats and
                     (len(steps[i]) < 2 or step_verdict(steps[i]) == "split")]
            if not again:
                break
            for i in again:
                steps[i].append(one(i, len(steps[i])))
        # A failure the repetitions overturned: go on up, if there is anywhere to go.
        if bracket(steps)[1] is not None or len(steps) >= len(fractions) or \
                should_stop(merged()):
            break
    rec = summary(steps)
    # Each step: its first measurement (what the hockey-stick plot draws), the verdict of all
    # its repetitions, and the others' records.
    rec.update({"slo": slo.text, "peak": peak,
                "steps": [dict(reps[0], verdict=step_verdict(reps), repetitions=len(reps),
                               again=reps[1:]) for reps in steps]})
    return rec

"""The knee: steps from 10 % to 120 % of an entry's peak, pass/fail/invalid per step, the
highest passing step below the first failing one, the bracket measured again until decided."""
import json

import pytest

from echobench_lib import knee
from echobench_testlib import echobench, fake_build


@pytest.fixture
def build(tmp_path):
    return fake_build(tmp_path / "build")


def test_sweep_records_steps_and_max_rate_at_slo(build, tmp_path):
    r = echobench("run", "--build", build, "--out", tmp_path, "--backends", "epoll",
                  "--connections", "1", "--sizes", "64", "--modes", "closed,sweep",
                  "--duration", "200ms", "--warmup", "20ms", "--repetitions", "1",
                  "--conform", "none", "--slo", "p99:1s", timeout=180)
    assert r.returncode == 0, r.stderr
    ctx = json.loads((tmp_path / "latest" / "run.json").read_text())["context"]
    sw = ctx["echobench"]["sweep"]["epoll"]
    assert sw["slo"] == "p99:1000ms"
    peak = ctx["closed_loop_peaks"]["echo/epoll/c:1/s:64/closed/msgs_per_sec"]
    steps = sw["steps"]
    assert steps[0]["offered_rate"] == pytest.approx(0.1 * peak, rel=0.01)
    assert [s["offered_rate"] for s in steps] == sorted(s["offered_rate"] for s in steps)
    for s in steps:
        assert {"offered_rate", "rate_achieved", "p50_us", "p99_us", "valid", "verdict",
                "repetitions"} <= set(s)
    # Either all 8 steps ran, or it stopped at a failing step (or when p99 blew up).
    p99s = [s["p99_us"] for s in steps if s["p99_us"]]
    assert len(steps) == 8 or sw["bracket"][1] is not None or \
        steps[-1]["p99_us"] > knee.BLOWUP * min(p99s)
    assert sw["max_rate_at_slo"] == sw["bracket"][0]
    passes = [s["offered_rate"] for s in steps if s["verdict"] == "pass"]
    assert sw["max_rate_at_slo"] in passes + [None]


def rec(rate, verdict, p99=50.0):
    return {"offered_rate": rate, "verdict": verdict, "p99_us": p99}


def test_the_knee_counts_only_valid_steps_below_the_first_failure():
    """max_rate_at_slo is the highest passing step below the first failing one: an invalid
    step (the client was late) counts neither way, and a pass above a failure does not
    count."""
    steps = [[rec(100, "pass")], [rec(200, "invalid")], [rec(300, "pass")],
             [rec(400, "fail")], [rec(500, "pass")]]
    assert knee.bracket(steps) == (2, 3)
    assert knee.summary(steps) == {"max_rate_at_slo": 300, "bracket": [300, 400],
                                   "decided": True}
    assert knee.summary([[rec(100, "fail")]])["max_rate_at_slo"] is None
    assert knee.summary([[rec(100, "pass")], [rec(200, "pass")]]) == {
        "max_rate_at_slo": 200, "bracket": [200, None], "decided": True}
    # repetitions of a step: the majority decides; a tie is undecided and ends the search
    assert knee.step_verdict([rec(1, "pass"), rec(1, "fail"), rec(1, "pass")]) == "pass"
    assert knee.step_verdict([rec(1, "pass"), rec(1, "fail")]) == "split"
    assert knee.step_verdict([rec(1, "invalid")]) == "invalid"
    split = [[rec(100, "pass")], [rec(200, "pass"), rec(200, "fail")]]
    assert knee.summary(split) == {"max_rate_at_slo": 100, "bracket": [100, 200],
                                   "decided": False}


def test_the_bracketing_steps_are_measured_again_until_decided():
    """A noisy step near the knee: the sweep measures the two bracketing steps again (up to
    REPEATS times each) and reports what their majority says."""
    calls = []
    answers = {0.10: ["pass"], 0.25: ["pass"], 0.40: ["pass", "fail", "fail"],
               0.55: ["fail", "fail"]}

    class S:
        def __init__(self, verdict):
            self.valid = verdict != "invalid"
            ok = verdict == "pass"
            self.load = type("L", (), {
                "failed_checks": [], "rate_ok": True, "rate_achieved": 1.0,
                "latency_us": staticmethod(lambda pct, ok=ok: 10.0 if ok else 5000.0)})()

    def measure(offered, tag):
        frac = round(offered / 1000.0, 2)
        calls.append((frac, tag))
        seen = sum(1 for f, _ in calls if f == frac) - 1
        return S(answers[frac][min(seen, len(answers[frac]) - 1)])

    rec_ = knee.run_sweep(measure, 1000.0, knee.Slo("p99", 1000.0))
    fracs = [f for f, _ in calls]
    assert fracs[:4] == [0.10, 0.25, 0.40, 0.55]          # stopped at the first failure
    assert fracs.count(0.40) == 3 and fracs.count(0.55) == 2
    assert rec_["max_rate_at_slo"] == 250 and rec_["bracket"] == [250, 400]
    assert rec_["decided"] is True and len(rec_["steps"]) == 4
    assert rec_["steps"][2]["verdict"] == "fail" and rec_["steps"][2]["repetitions"] == 3


def test_slo_is_parsed_once():
    slo = knee.Slo.parse("p99:1ms")
    assert slo == knee.Slo("p99", 1000.0) and slo.text == "p99:1ms"
    assert slo.pretty == "p99 ≤ 1 ms" and knee.Slo.parse("p999:250us").pretty == "p999 ≤ 250 µs"
    assert knee.Slo.parse(knee.Slo.parse("p50:2s").text).limit_us == 2e6
    assert knee.Slo.pretty_of("nonsense") == "nonsense"
    for bad in ("p98:1ms", "p99", "p99:fast"):
        with pytest.raises(Exception) as e:
            knee.Slo.parse(bad)
        assert "bad --slo" in str(e.value)

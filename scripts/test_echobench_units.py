"""The driver's small pieces: TAP and .hgrm parsing, modes, names, placement, number parsing,
the Google Benchmark encoding of each metric."""
import os
import pathlib
import sys
import time
import types

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "fixtures"))
import echobench_testlib  # noqa: E402,F401  (puts echobench_lib on sys.path)

from echobench_lib import conform, gbjson, hgrm, matrix, metrics, runner, util  # noqa: E402

TAP = """TAP version 13
1..5
ok 1 - echo.bytes-256 all 256 byte values come back
not ok 2 - halfclose.n5 5 bytes then SHUT_WR
  ---
  expected: 5 bytes then EOF
  seen: 0 bytes then EOF
  ...
ok 3 - whitebox.fd-baseline fd count back to baseline # SKIP no server pid
ok 4 - limits.churn # TODO flaky on VMs
not ok 5 - reset.rst-mid-stream server survives
"""


def test_parse_tap_counts_and_ids():
    t = conform.parse_tap(TAP)
    assert (t["plan"], t["passed"], t["failed"], t["skipped"], t["todo"]) == (5, 1, 2, 1, 1)
    assert t["failed_ids"] == ["halfclose.n5", "reset.rst-mid-stream"]
    assert t["skipped_ids"] == ["whitebox.fd-baseline"]


def test_verdict_of_a_truncated_run_is_error(tmp_path):
    script = tmp_path / "conf"
    script.write_text("#!/bin/sh\necho 'TAP version 13'\necho '1..3'\necho 'ok 1 - a x'\n"
                      "exit 0\n")
    script.chmod(0o755)
    r = conform.run_one(script, target="127.0.0.1:1")
    assert r["verdict"] == "error" and "only 1 of 3" in r["note"]


def test_conform_timeout_kills_and_says_so(tmp_path):
    script = tmp_path / "conf"
    script.write_text("#!/bin/sh\necho 'TAP version 13'\nsleep 30\n")
    script.chmod(0o755)
    r = conform.run_one(script, target="127.0.0.1:1", timeout=0.5)
    assert r["verdict"] == "error" and "timed out" in r["note"]


HGRM = """       Value     Percentile TotalCount 1/(1-Percentile)

      21.695 0.000000000000          1           1.00
      35.935 0.500000000000       6905           2.00
      80.000 0.990000000000      13624         100.00
    6983.679 0.999963378906      13761       27306.67
    7774.681 1.000000000000      13762
#[Mean    =       72.488, StdDeviation   =      325.876]
#[Max     =     7774.681, Total count    =        13762]
"""


def test_hgrm_parse_and_unit_detection():
    pts = hgrm.parse(HGRM)
    assert pts[0] == (21.695, 0.0) and pts[-1] == (7774.681, 1.0) and len(pts) == 5
    assert hgrm.value_at(pts, 0.99) == 80.0
    assert hgrm.scale_to_us(pts, 80.0) == 1.0
    assert hgrm.scale_to_us(pts, 0.081) == 1e-3     # the file was in ns
    assert hgrm.scale_to_us(pts, 79000.0) == 1e3    # the file was in ms


@pytest.mark.parametrize("text, modes", [
    ("closed", ["closed"]),
    ("open", ["open25", "open50", "open75"]),
    ("closed,open:90,stream,open90", ["closed", "open90", "stream"]),
    ("OPEN50%", ["open50"]),
])
def test_parse_modes(text, modes):
    assert matrix.parse_modes(text) == modes


@pytest.mark.parametrize("text", ["open0", "open101", "half", ",", ""])
def test_bad_modes(text):
    with pytest.raises(util.UsageError):
        matrix.parse_modes(text)


def test_matrix_order_puts_closed_before_open_and_names_round_trip():
    cells = matrix.build_matrix(["epoll", "poll"], [1, 16], [64],
                                ["stream", "open75", "closed", "open25"])
    assert len(cells) == 16
    assert [c.mode for c in cells[:4]] == ["closed", "open25", "open75", "stream"]
    c = cells[5]
    name = c.name("p99_us")
    assert name == "echo/poll/c:1/s:64/open25/p99_us"
    assert matrix.parse_name(name) == (c, "p99_us")
    assert c.key == "poll_c1_s64_open25" and c.open_pct == 25
    with pytest.raises(util.UsageError):
        matrix.build_matrix([], [1], [64], ["closed"])


def test_number_parsing():
    assert util.parse_duration("500ms") == 0.5 and util.parse_duration("2") == 2.0
    assert util.parse_duration("1.5m") == 90.0
    assert util.duration_arg(0.25) == "250ms"
    assert util.parse_size("4k") == 4096 and util.parse_count("1k") == 1000
    assert util.parse_cpus("0,2-3", "x") == [0, 2, 3]
    for bad in ("fast", "-1s", "0"):
        with pytest.raises(util.UsageError):
            util.parse_duration(bad)
    with pytest.raises(util.UsageError):
        util.parse_cpus("3-1", "x")


def test_default_placement_separates_server_and_client():
    allowed = sorted(os.sched_getaffinity(0))
    s, c, note = runner.placement(None, None)
    if len(allowed) >= 2:
        assert s == [allowed[0]] and c == [allowed[1]] and "separate" in note
    else:
        assert s == c == allowed and "share" in note
    s, c, _ = runner.placement([allowed[0]], None)
    assert s == [allowed[0]] and (c == [x for x in allowed if x != allowed[0]] or c == allowed)


def test_metrics_from_echo_load_json():
    load = {"msgs_per_sec": 20000.0, "bytes_per_sec": 1280000.0, "messages": 20000,
            "latency_us": {"p50": 40.0, "p90": 50.0, "p99": 90.0, "p999": 200.0,
                           "p9999": 400.0, "max": 900.0, "mean": 45.0, "stdev": 5.0},
            "latency_uncorrected_us": {"p99": 80.0}, "connect_us": {"p99": 60.0},
            "errors": {"refused": 1, "reset": 2}, "mismatches": 0}
    m = metrics.from_load_json(load, server_cpu_s=0.4, cpu_window_s=0.8, offered_rate=20000)
    assert m["p99_us"] == 90.0 and m["p99_uncorrected_us"] == 80.0 and m["errors"] == 3.0
    # 0.5 s of CPU per second at 20k msgs/s = 25 us per message.
    assert m["server_cpu_ns_per_msg"] == pytest.approx(25000.0)
    stream = metrics.from_load_json({"bytes_per_sec": 1e9, "latency_us": {"p50": 0.0}})
    assert "p50_us" not in stream    # zero means "not measured"


def test_google_benchmark_encoding_is_lower_is_better():
    assert gbjson.encode("msgs_per_sec", 50000.0) == (20000.0, "ns")
    assert gbjson.encode("bytes_per_sec", float(1 << 20)) == (1e6, "us")
    assert gbjson.encode("p99_us", 87.5) == (87.5, "us")
    assert gbjson.encode("server_cpu_ns_per_msg", 900.0) == (900.0, "ns")
    assert gbjson.encode("msgs_per_sec", 0.0) is None


def test_cpu_sample_sees_cpu_time_below_one_clock_tick():
    from echobench_lib.server import CpuSample
    a = CpuSample.take(os.getpid())
    t_end = time.thread_time() + 0.004     # 4 ms of CPU: under one 10 ms tick
    while time.thread_time() < t_end:
        pass
    b = CpuSample.take(os.getpid())
    seconds, method = a.delta(b)
    assert method == "schedstat"
    assert 0.003 < seconds < 0.5
    assert CpuSample.take(2 ** 22 + 12345) is None    # no such process


def test_group_cpu_keeps_the_time_of_children_that_exited():
    """A forking server's per-connection child that burns CPU and exits inside the window: its
    time must stay in the group's figure (it moves to the parent's cutime/cstime when reaped);
    summing the live processes alone lost it, and a forking server showed about 0 CPU."""
    import subprocess
    from echobench_lib.server import CpuSample
    code = ("import os, time\n"
            "os.setpgid(0, 0)\n"
            "print('ready', flush=True)\n"
            "input()\n"
            "pid = os.fork()\n"
            "if pid == 0:\n"
            "    end = time.thread_time() + 0.3\n"
            "    while time.thread_time() < end:\n"
            "        pass\n"
            "    os._exit(0)\n"
            "os.waitpid(pid, 0)\n"
            "print('done', flush=True)\n"
            "input()\n")
    p = subprocess.Popen(["/usr/bin/python3", "-c", code], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline() == "ready\n"
        a = CpuSample.take_group(p.pid)
        p.stdin.write("\n")
        p.stdin.flush()
        assert p.stdout.readline() == "done\n"
        b = CpuSample.take_group(p.pid)
        seconds, method = a.delta(b)
        assert seconds >= 0.25, (seconds, method)
    finally:
        p.kill()
        p.wait()


# ---- stats: confidence intervals, the exact test, the winner rule ---------------------------

from echobench_lib import stats  # noqa: E402


def test_median_ci_order_statistics_and_small_n():
    # n = 10 at 95 %: [x_(2), x_(9)], exact coverage 1 - 2 * 11/1024
    assert stats.median_ci(range(1, 11)) == (5.5, 2.0, 9.0)
    k, cov = stats.median_ci_coverage(10)
    assert k == 2 and cov == pytest.approx(1 - 2 * 11 / 1024)
    # n < 6 cannot reach 95 %: (min, max), flagged as not reachable
    assert [stats.ci_level_reachable(n) for n in range(1, 8)] == [False] * 5 + [True] * 2
    assert stats.median_ci([3, 1, 2, 5, 4]) == (3.0, 1.0, 5.0)
    assert stats.median_ci_coverage(5)[1] == pytest.approx(1 - 2 / 32)
    assert stats.median_ci([7]) == (7.0, 7.0, 7.0)
    with pytest.raises(ValueError):
        stats.median_ci([])


def test_median_ci_covers_the_true_median_at_least_95_percent():
    import random
    rng = random.Random(7)
    hits = 0
    for _ in range(2000):
        xs = [rng.expovariate(1.0) for _ in range(9)]
        _, lo, hi = stats.median_ci(xs)
        hits += lo <= 0.6931471805599453 <= hi
    cov = stats.median_ci_coverage(9)[1]     # 0.961
    assert cov >= 0.95 and abs(hits / 2000 - cov) < 0.02


def test_mann_whitney_exact_matches_scipy_and_known_values():
    from scipy.stats import mannwhitneyu
    import random
    assert stats.mann_whitney_one_sided([4, 5, 6], [1, 2, 3], "greater") == pytest.approx(1 / 20)
    assert stats.mann_whitney_one_sided([3, 4], [1, 2], "greater") == pytest.approx(1 / 6)
    assert stats.mann_whitney_one_sided([1, 2, 3], [4, 5, 6], "greater") == 1.0
    rng = random.Random(3)
    for _ in range(100):
        a = [rng.random() for _ in range(rng.randint(1, 7))]
        b = [rng.random() for _ in range(rng.randint(1, 7))]
        for alt in ("greater", "less"):
            want = mannwhitneyu(a, b, alternative=alt, method="exact").pvalue
            assert stats.mann_whitney_one_sided(a, b, alt) == pytest.approx(want)
    # ties: exact enumeration; a full tie is no evidence
    assert stats.mann_whitney_one_sided([1, 1, 1], [1, 1, 1], "greater") == 1.0
    assert stats.mann_whitney_one_sided([2, 2, 2], [1, 1, 1], "greater") == pytest.approx(1 / 20)


def test_min_reps_to_test():
    assert stats.min_reps_to_test(0.05) == 3          # 2 vs 2: 1/6; 3 vs 3: 1/20
    assert not stats.can_test(2, 2) and stats.can_test(3, 3)
    assert stats.min_reps_to_test(0.025) == 4         # 1/70
    assert stats.min_reps_to_test(0.05, other=1) == 19
    assert stats.min_reps_to_test(0.05, other=0) is None


def test_ratio_ci_is_reproducible_and_brackets_the_ratio():
    r = stats.ratio_ci([1.2, 1.25, 1.18, 1.22, 1.21], [1.0, 1.02, 0.98, 1.01, 0.99])
    assert r == stats.ratio_ci([1.2, 1.25, 1.18, 1.22, 1.21], [1.0, 1.02, 0.98, 1.01, 0.99])
    ratio, lo, hi = r
    assert ratio == pytest.approx(1.21) and 1.1 < lo <= ratio <= hi < 1.3
    assert stats.ratio_ci([2.0], [1.0]) == (2.0, 2.0, 2.0)
    with pytest.raises(ValueError):
        stats.ratio_ci([1.0], [0.0])


def test_decide_winner_names_a_clear_winner_with_margin():
    g = {"fast": [120, 121, 119, 122, 120], "slow": [100, 101, 99, 100, 102],
         "slower": [80, 81, 79, 80, 82]}
    d = stats.decide_winner(g, higher_is_better=True)
    assert d["winner"] == d["label"] == "fast" and d["runner_up"] == "slow"
    assert d["margin"] == pytest.approx(1.2) and d["margin_lo"] > 1.1 and d["p_value"] < 0.025
    # lower is better (latency): margin still reads "times better"
    d = stats.decide_winner({"a": [10, 11, 10, 10.5], "b": [20, 21, 19, 20]}, False)
    assert d["winner"] == "a" and d["margin"] == pytest.approx(2.0, rel=0.05)


def test_decide_winner_ties_when_small_effect_or_too_few_reps():
    d = stats.decide_winner({"a": [102, 103, 102.5, 102.2], "b": [100, 100.5, 100.2, 100.1]},
                            True)
    assert d["winner"] is None and d["label"] == stats.TIE and "minimum effect" in d["reason"]
    d = stats.decide_winner({"a": [200, 201, 202], "b": [100, 101, 102]}, True)
    assert d["winner"] is None and not d["testable"] and "needs 4" in d["reason"]
    d = stats.decide_winner({"a": [200, 201]}, True)
    assert d["winner"] is None and d["label"] == "-"


def test_decide_winner_a_a_false_winners_at_most_5_percent():
    """Identical entries: the leader is chosen from the data, so the rule must not name one
    more often than alpha (a one-sided test at alpha would, about twice as often)."""
    import random
    rng = random.Random(11)
    wins = sum(1 for _ in range(400) if stats.decide_winner(
        {"a": [rng.lognormvariate(0, 0.1) for _ in range(5)],
         "b": [rng.lognormvariate(0, 0.1) for _ in range(5)]}, True)["winner"])
    assert wins / 400 <= 0.05
    loose = sum(1 for _ in range(400) if stats.decide_winner(
        {"a": [rng.lognormvariate(0, 0.1) for _ in range(5)],
         "b": [rng.lognormvariate(0, 0.1) for _ in range(5)]}, True,
        direction_chosen=False)["winner"])
    assert loose > wins


def test_run_json_fields_have_defaults_for_old_runners_and_carry_the_new_ones():
    # a cell as runners before issues 9/10/13 passed it: no placement, rate or kind
    old_cell = types.SimpleNamespace(backend="epoll", connections=16, size=64, mode="open50",
                                     name=matrix.Cell("epoll", 16, 64, "open50").name)
    old = {"cell": old_cell, "repetition": 0,
           "metrics": {"msgs_per_sec": 1000.0, "p99_us": 80.0, "offered_rate": 1000.0}}
    f = gbjson.sample_fields(old)
    assert f == {"backend": "epoll", "entry": "epoll", "entry_kind": "backend",
                 "connections": 16, "size": 64, "mode": "open50", "placement": None,
                 "offered_rate": 1000.0, "valid": True, "invalid_reasons": []}

    new = dict(old, cell=matrix.Cell("mine", 16, 64, "open50", "shared", offered_rate=2500.0,
                                     entry_kind="target"),
               load={"valid": False, "invalid_reasons": ["rate: 61 % of target"]})
    f = gbjson.sample_fields(new)
    assert (f["entry"], f["entry_kind"], f["placement"], f["offered_rate"], f["valid"],
            f["invalid_reasons"]) == ("mine", "target", "shared", 2500.0, False,
                                      ["rate: 61 % of target"])
    data = gbjson.build_run_json({"echobench": {"incomplete": "SIGTERM"}}, [old, new], 1)
    eb = data["context"]["echobench"]
    assert eb["incomplete"] == "SIGTERM" and eb["sweep"] == {} and eb["until_ci"] is None
    assert eb["entries"] == [{"name": "epoll", "kind": "backend"},
                             {"name": "mine", "kind": "target"}]
    rows = {r["entry"]: r for r in gbjson.iterations(data) if r["metric"] == "p99_us"}
    assert rows["mine"]["valid"] is False and rows["epoll"]["valid"] is True
    s = gbjson.series(data)["echo/mine/c:16/s:64/open50/p:shared/p99_us"]
    assert s.invalid == 1 and s.invalid_reasons == ["rate: 61 % of target"]


def test_self_check_figures_go_to_cells_csv_metrics():
    load = {"msgs_per_sec": 900.0, "latency_us": {"p99": 90.0}, "rate_target": 1000.0,
            "rate_achieved": 900.0, "send_lag_us": {"p50": 3.0, "p99": 12.0, "max": 50.0},
            "client_cpu": {"user_s": 0.1, "sys_s": 0.1, "busiest_thread": 0.42}}
    m = metrics.from_load_json(load, offered_rate=1000.0)
    assert (m["rate_achieved"], m["send_lag_p99_us"], m["client_cpu_busiest"]) == \
        (900.0, 12.0, 0.42)
    assert "rate_achieved" not in metrics.from_load_json({"msgs_per_sec": 5.0,
                                                          "rate_target": None,
                                                          "rate_achieved": 5.0})

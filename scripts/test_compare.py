"""echobench compare on synthetic runs: the run is the unit (a run-to-run shift is not a change),
Holm's correction over every gated metric, ties counted, offered rates and unresolved
percentiles checked, the table readable; plain Google Benchmark JSON is read too, and our
run.json by Google Benchmark's own compare.py."""
import json
import math
import os
import random
import subprocess

import pytest

import synthetic
from echobench_testlib import echobench

from echobench_lib import compare

ONE_CELL = dict(backends=("epoll",), connections=(16,), modes=("closed",))
TPUT = "echo/epoll/c:16/s:64/closed/msgs_per_sec"


def side(root, runs, factor=1.0, shift=0.0, seed=0, **kw):
    """A directory of `runs` runs; each run's speed is factor x a run-to-run shift (lognormal,
    `shift` spread): what repetitions inside one run cannot show."""
    rng = random.Random(seed)
    for i in range(runs):
        synthetic.make_run(root / f"run{i}", factor=factor * math.exp(shift * rng.gauss(0, 1)),
                           seed=seed * 100 + i, **{**ONE_CELL, "repetitions": 3, **kw})
    return root


def rows_by_name(base, new, **kw):
    res = compare.compare(compare.load_side(base), compare.load_side(new), **kw)
    return {r["name"]: r for r in res["rows"]}, res


def test_several_runs_a_side_find_a_ten_percent_regression(tmp_path):
    """5 runs a side: one-sided Mann-Whitney over the runs' medians reaches 1/252, enough for
    Holm over this cell's 4 gated metrics (4 runs, 1/70, are not: docs/RESULTS.md)."""
    base = side(tmp_path / "base", 5, noise=0.01, seed=1)
    new = side(tmp_path / "new", 5, factor=0.9, noise=0.01, seed=2)
    rows, res = rows_by_name(base, new)
    tput = rows[TPUT]
    assert tput["verdict"] == "regression" and tput["runs"] == [5, 5]
    assert tput["change"] == pytest.approx(-0.10, abs=0.03) and tput["p_worse_holm"] <= 0.05
    assert "5 vs 5 runs" in tput["method"]
    # slower also means more CPU per message (lower is better there)
    assert rows["echo/epoll/c:16/s:64/closed/server_cpu_ns_per_msg"]["verdict"] == "regression"
    r = echobench("compare", base, new)
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stdout.splitlines()[0].startswith("compare: ") and "regression" in r.stdout


def test_one_run_a_side_cannot_tell_a_change_from_a_shift(tmp_path):
    """Inside one run the repetitions agree to 1 %; between runs the machine moves 10 %.
    A single run a side must not be called a regression (nor ok): untestable, exit 3."""
    base = synthetic.make_run(tmp_path / "base", repetitions=5, noise=0.01, seed=3, **ONE_CELL)
    new = synthetic.make_run(tmp_path / "new", repetitions=5, noise=0.01, factor=0.9, seed=4,
                             **ONE_CELL)
    rows, res = rows_by_name(base, new)
    assert rows[TPUT]["verdict"] == "untestable" and res["exit"] == 3
    r = echobench("compare", base, new)
    assert r.returncode == 3 and "run-to-run shift" in r.stdout, r.stdout
    # the user may assume the shift away, and the output says so
    rows, res = rows_by_name(base, new, independent=True)
    assert rows[TPUT]["verdict"] == "regression" and "independent" in rows[TPUT]["method"]
    r = echobench("compare", base, new, "--assume-no-run-shift", "--all")
    assert r.returncode == 1 and "--assume-no-run-shift" in r.stdout


@pytest.mark.parametrize("seed", [5, 6, 7])
def test_run_to_run_shift_is_not_a_regression(tmp_path, seed):
    """Same speed, 8 % between runs, 4 runs a side: never a regression (exit 0 or 3)."""
    base = side(tmp_path / "base", 4, shift=0.08, noise=0.01, seed=seed)
    new = side(tmp_path / "new", 4, shift=0.08, noise=0.01, seed=seed + 50)
    rows, res = rows_by_name(base, new)
    assert not [r for r in rows.values() if r["verdict"] == "regression"]
    assert res["exit"] in (0, 3)


def test_holm_keeps_many_metrics_from_raising_false_alarms(tmp_path):
    """A/A over 20 cells x 4 gated metrics (80 tests) with repetitions taken as independent:
    one-sided tests at 0.05 each would flag several by chance; Holm's correction flags none."""
    cells = dict(backends=("epoll",), connections=(1, 4, 16, 64, 256), sizes=(64, 512),
                 modes=("closed", "stream"))
    flagged_raw = flagged = 0
    for seed in range(3):
        base = synthetic.make_run(tmp_path / f"b{seed}", repetitions=6, noise=0.05,
                                  seed=10 + seed, **cells)
        new = synthetic.make_run(tmp_path / f"n{seed}", repetitions=6, noise=0.05,
                                 seed=60 + seed, **cells)
        rows, res = rows_by_name(base, new, independent=True, threshold=0.0)
        gated = [r for r in rows.values() if r["gated"]]
        assert len(gated) == 80
        flagged_raw += sum(1 for r in gated if r["p_worse"] <= 0.05)
        flagged += sum(1 for r in gated if r["verdict"] == "regression")
    assert flagged == 0 and flagged_raw >= 3


def test_ties_count_in_the_smallest_attainable_p(tmp_path):
    assert compare.stats.smallest_attainable_p([5.0] * 4, [5.0] * 4) == 1.0
    assert compare.stats.smallest_attainable_p([2.0, 2.0, 2.0], [1.0, 1.0, 1.0]) == \
        pytest.approx(1 / 20)


def test_threshold_option_raises_the_bar(tmp_path):
    base = side(tmp_path / "base", 5, noise=0.005, seed=12)
    new = side(tmp_path / "new", 5, factor=0.9, noise=0.005, seed=13)
    assert echobench("compare", base, new, "--threshold", "15%").returncode in (0, 3)
    assert echobench("compare", base, new, "--threshold", "5").returncode == 1


def test_improvement_is_reported_as_one(tmp_path):
    base = side(tmp_path / "base", 5, noise=0.01, seed=14)
    new = side(tmp_path / "new", 5, factor=1.12, noise=0.01, seed=15)
    rows, res = rows_by_name(base, new)
    assert rows[TPUT]["verdict"] == "improvement"
    r = echobench("compare", base, new, "--json", tmp_path / "cmp.json")
    assert r.returncode in (0, 3) and "improvement" in r.stdout
    data = json.loads((tmp_path / "cmp.json").read_text())
    assert any(x["verdict"] == "improvement" for x in data["rows"])
    assert not any(x["verdict"] == "regression" for x in data["rows"])


def test_no_change_measured_tightly_is_ok_and_exit_0(tmp_path):
    base = side(tmp_path / "base", 5, noise=0.002, seed=16)
    new = side(tmp_path / "new", 5, noise=0.002, seed=17)
    rows, res = rows_by_name(base, new)
    assert rows[TPUT]["verdict"] == "ok" and res["exit"] == 0, rows[TPUT]


def test_cells_missing_in_new_are_inconclusive_unless_allowed(tmp_path):
    base = side(tmp_path / "base", 4, noise=0.002, seed=18, backends=("epoll", "poll"))
    new = side(tmp_path / "new", 4, noise=0.002, seed=19)
    r = echobench("compare", base, new)
    assert r.returncode == 3 and "missing in NEW" in r.stdout, r.stdout + r.stderr
    assert echobench("compare", "--allow-missing", base, new).returncode == 0


def test_invalid_cell_and_different_rates_are_not_comparable(tmp_path):
    base = side(tmp_path / "base", 3, noise=0.005, seed=20, connections=(1, 16))
    new = side(tmp_path / "new", 3, noise=0.005, seed=21, connections=(1, 16),
               invalid={("epoll", 16, "closed")})
    rows, _ = rows_by_name(base, new)
    bad = rows[TPUT]
    assert bad["verdict"] == "not comparable" and "61 %" in bad["why"][0]
    open_b = side(tmp_path / "ob", 3, seed=22, modes=("open50",))
    open_n = side(tmp_path / "on", 3, seed=23, modes=("open50",), factor=1.2)
    rows, _ = rows_by_name(open_b, open_n)
    r = rows["echo/epoll/c:16/s:64/open50/p99_us"]
    assert r["verdict"] == "not comparable" and "offered rates differ" in r["why"][0]


def test_unresolved_percentiles_are_shown_never_gated(tmp_path):
    base = side(tmp_path / "base", 4, seed=24, noise=0.01, unresolved=("p99",))
    new = side(tmp_path / "new", 4, seed=25, noise=0.01, factor=0.5, unresolved=("p99",))
    rows, _ = rows_by_name(base, new)
    p99 = rows["echo/epoll/c:16/s:64/closed/p99_us"]
    assert p99["verdict"] == "info" and not p99["gated"] and "resolve" in p99["why"][0]
    assert rows["echo/epoll/c:16/s:64/closed/p999_us"]["verdict"] == "info"


def test_the_table_says_the_summary_first_and_each_reason_once(tmp_path):
    base = synthetic.make_run(tmp_path / "base", repetitions=3, seed=26, **ONE_CELL)
    new = synthetic.make_run(tmp_path / "new", repetitions=3, seed=27, **ONE_CELL)
    r = echobench("compare", base, new)
    lines = r.stdout.splitlines()
    assert lines[0].startswith("compare: inconclusive") and "(exit 3)" in lines[0]
    reasons = [ln for ln in lines if ln.startswith("  ↳ ")]
    assert reasons and len(reasons) == len(set(reasons))


def test_unwritable_json_and_unreadable_run_are_usage_errors(tmp_path):
    base = synthetic.make_run(tmp_path / "base", repetitions=3, seed=28, **ONE_CELL)
    r = echobench("compare", base, base, "--json", tmp_path / "no" / "such" / "dir.json")
    assert r.returncode == 2, r.stdout + r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "--json" in r.stderr
    (tmp_path / "empty").mkdir()
    r = echobench("compare", base, tmp_path / "empty")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "run.json").write_text("{ truncated")
    r = echobench("compare", base, bad)
    assert r.returncode == 2 and "cannot read" in r.stderr


def gbench_json(real_ns, items_per_s):
    """Plain Google Benchmark output with repetitions, as bench/ writes it."""
    out = {"context": {"date": "x", "num_cpus": 2}, "benchmarks": []}
    for i, (t, ips) in enumerate(zip(real_ns, items_per_s)):
        out["benchmarks"].append({
            "name": "BM_hist_record/repeats:5", "family_index": 0,
            "per_family_instance_index": 0, "run_name": "BM_hist_record/repeats:5",
            "run_type": "iteration", "repetitions": 5, "repetition_index": i, "threads": 1,
            "iterations": 1000000, "real_time": t, "cpu_time": t, "time_unit": "ns",
            "items_per_second": ips})
    out["benchmarks"].append({
        "name": "BM_hist_record/repeats:5_mean", "run_name": "BM_hist_record/repeats:5",
        "run_type": "aggregate", "aggregate_name": "mean", "repetitions": 5, "threads": 1,
        "iterations": 5, "real_time": sum(real_ns) / 5, "cpu_time": sum(real_ns) / 5,
        "time_unit": "ns"})
    return out


def test_plain_google_benchmark_json(tmp_path):
    base, new = tmp_path / "a.json", tmp_path / "b.json"
    base.write_text(json.dumps(gbench_json([10.0, 10.1, 9.9, 10.05, 9.95],
                                           [1e8, 0.99e8, 1.01e8, 0.995e8, 1.005e8])))
    new.write_text(json.dumps(gbench_json([12.0, 12.1, 11.9, 12.05, 11.95],
                                          [0.83e8, 0.82e8, 0.84e8, 0.825e8, 0.835e8])))
    rows, _ = rows_by_name(base, new, independent=True)
    assert rows["BM_hist_record/repeats:5 real_time"]["verdict"] == "regression"
    assert rows["BM_hist_record/repeats:5 items_per_second"]["verdict"] == "regression"
    assert rows["BM_hist_record/repeats:5 real_time"]["n"] == [5, 5]   # aggregates not counted
    assert echobench("compare", base, new).returncode == 3          # one run a side
    assert echobench("compare", base, new, "--assume-no-run-shift").returncode == 1
    assert echobench("compare", new, base, "--assume-no-run-shift").returncode == 0


def test_not_google_benchmark_json_is_a_usage_error(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text('{"hello": 1}')
    r = echobench("compare", bad, bad)
    assert r.returncode == 2 and "not Google Benchmark JSON" in r.stderr


GB_COMPARE = "/usr/share/benchmark/compare.py"


@pytest.mark.skipif(not os.path.exists(GB_COMPARE),
                    reason="Google Benchmark's compare.py is not installed (libbenchmark-tools)")
def test_google_benchmark_compare_reads_our_run_json(tmp_path):
    base = synthetic.make_run(tmp_path / "base", repetitions=3, seed=16, **ONE_CELL)
    new = synthetic.make_run(tmp_path / "new", repetitions=3, factor=0.9, seed=17, **ONE_CELL)
    r = subprocess.run(["/usr/bin/python3", GB_COMPARE, "--no-color", "benchmarks",
                        base / "run.json", new / "run.json"], capture_output=True, text=True,
                       timeout=60, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    line = next(ln for ln in r.stdout.splitlines()
                if ln.startswith("echo/epoll/c:16/s:64/closed/msgs_per_sec_median"))
    # Time per message went up by ~11 % (throughput down 10 %): compare.py shows +0.1.
    assert 0.05 < float(line.split()[1]) < 0.2
    assert "OVERALL_GEOMEAN" in r.stdout


def test_one_run_a_side_with_the_history_spread(tmp_path):
    """A history of 8 runs of this cell (3 % run-to-run) gives its spread: one run a side is
    then testable, a 25 % drop is a regression and no change is ok; without the history the
    same pair is untestable."""
    past = side(tmp_path / "past", 8, shift=0.03, noise=0.01, seed=40)
    db = tmp_path / "h.sqlite"
    r = echobench("history", "--db", db, "import", past)
    assert r.returncode == 0, r.stdout + r.stderr
    base = synthetic.make_run(tmp_path / "base", repetitions=3, noise=0.01, seed=41, **ONE_CELL)
    slow = synthetic.make_run(tmp_path / "slow", repetitions=3, noise=0.01, factor=0.75,
                              seed=42, **ONE_CELL)
    same = synthetic.make_run(tmp_path / "same", repetitions=3, noise=0.01, seed=43,
                              **ONE_CELL)
    rows, _ = rows_by_name(base, slow, history=db)
    assert rows[TPUT]["verdict"] == "regression" and "history" in rows[TPUT]["method"]
    rows, _ = rows_by_name(base, same, history=db)
    assert rows[TPUT]["verdict"] in ("ok", "inconclusive")
    assert rows[TPUT]["verdict"] != "regression"
    rows, _ = rows_by_name(base, slow)
    assert rows[TPUT]["verdict"] == "untestable"
    r = echobench("compare", base, slow, "--history", tmp_path / "none.sqlite")
    assert r.returncode == 2 and "no results history" in r.stderr

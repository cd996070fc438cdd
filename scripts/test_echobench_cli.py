"""scripts/echobench against the fake programs in scripts/fixtures/: check's verdict lines,
bad input, a whole (tiny) run and its files, conform's verdict table."""
import csv
import json
import os
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "fixtures"))
from echobench_testlib import echobench, fake_build  # noqa: E402


def only_run(out):
    runs = [d for d in out.iterdir() if d.is_dir() and not d.is_symlink()]
    assert len(runs) == 1, runs
    return runs[0]


@pytest.fixture
def build(tmp_path):
    return fake_build(tmp_path / "build")


def test_check_prints_one_verdict_per_backend(build):
    r = echobench("check", "--build", build)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["epoll: ok (echo verified, 3 sizes)",
                                     "poll: ok (echo verified, 3 sizes)",
                                     "uring: skipped (io_uring disabled by fake)"]


def test_check_fails_on_a_corrupting_backend(build):
    r = echobench("--build", build, "check", env={"FAKE_CORRUPT": "poll"})
    assert r.returncode == 1
    lines = r.stdout.splitlines()
    assert lines[0] == "epoll: ok (echo verified, 3 sizes)"
    assert lines[1].startswith("poll: FAILED (") and "differs at byte 0" in lines[1]


def test_check_fails_on_a_server_that_never_listens(build):
    r = echobench("check", "--build", build,
                  env={"FAKE_NOLISTEN": "epoll", "FAKE_BACKENDS": "epoll usable",
                       "ECHOBENCH_START_TIMEOUT": "1"}, timeout=60)
    assert r.returncode == 1
    assert r.stdout.startswith("epoll: FAILED (server did not start (no 'listening' line "
                                "within 1s))")


def test_build_dir_from_environment(build):
    r = echobench("check", env={"ECHOBENCH_BUILD": str(build)})
    assert r.returncode == 0 and "epoll: ok" in r.stdout


@pytest.mark.parametrize("args, words", [
    (["check", "--build", "/nonexistent/build"], "is not built"),
    (["run", "--backends", "kqueue"], "unknown backend 'kqueue'"),
    (["run", "--backends", "uring"], "not usable here"),
    (["run", "--connections", ""], "empty connection count list"),
    (["run", "--backends", ","], "empty matrix"),
    (["run", "--modes", "sideways"], "bad mode 'sideways'"),
    (["run", "--duration", "fast"], "bad --duration 'fast'"),
    (["run", "--server-cpus", "999"], "CPU 999 is not available"),
    (["compare", "/nonexistent/a", "/nonexistent/b"], "no results at"),
    (["report", "/nonexistent/run"], "no results directory"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_input_is_one_line_and_exit_2(build, args, words):
    if "--build" not in args:
        args = args + ["--build", str(build)]
    r = echobench(*args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.startswith("echobench: ") and words in r.stderr


def test_run_writes_every_result_file(build, tmp_path):
    out = tmp_path / "results"
    r = echobench("run", "--build", build, "--out", out, "--connections", "2", "--sizes", "64",
                  "--modes", "closed,open50", "--duration", "300ms", "--warmup", "100ms",
                  "--repetitions", "2")
    assert r.returncode == 0, r.stderr
    run_dir = out / "latest"
    assert run_dir.is_symlink() and not os.path.isabs(os.readlink(run_dir))
    for name in ("run.json", "cells.csv", "summary.md", "report.html", "conform.json"):
        assert (run_dir / name).is_file(), name
    # Two backends x one connection count x two modes x two repetitions.
    assert len(list((run_dir / "hgrm").glob("*.hgrm"))) == 8
    data = json.loads((run_dir / "run.json").read_text())
    ctx = data["context"]
    assert ctx["placement"]["server_cpus"] and ctx["placement"]["client_cpus"]
    assert ctx["backends"] == ["epoll", "poll"] and ctx["repetitions"] == 2
    names = {b["name"] for b in data["benchmarks"]}
    assert "echo/epoll/c:2/s:64/closed/msgs_per_sec" in names
    assert "echo/poll/c:2/s:64/open50/p99_us" in names
    assert "echo/epoll/c:2/s:64/closed/msgs_per_sec_median" in names
    it = [b for b in data["benchmarks"] if b["name"] == "echo/epoll/c:2/s:64/closed/msgs_per_sec"]
    assert [b["repetition_index"] for b in it] == [0, 1]
    for b in it:
        assert b["run_type"] == "iteration" and b["time_unit"] == "ns"
        assert b["real_time"] == pytest.approx(1e9 / b["echobench"]["value"])
        assert b["echobench"]["value"] > 0
    open_rate = [b["echobench"]["offered_rate"] for b in data["benchmarks"]
                 if b["name"] == "echo/epoll/c:2/s:64/open50/p99_us"]
    peak = ctx["closed_loop_peaks"]["epoll/c:2/s:64"]
    assert open_rate and all(x == pytest.approx(peak / 2, rel=0.01) for x in open_rate)
    with open(run_dir / "cells.csv") as f:
        rows = list(csv.DictReader(f))
    assert {"backend", "connections", "size", "mode", "repetition", "metric", "value",
            "unit"} <= set(rows[0])
    cpu = [float(x["value"]) for x in rows if x["metric"] == "server_cpu_ns_per_msg"]
    assert cpu and all(v > 0 for v in cpu)
    # The run ends with the summary table and the report's path.
    assert "| c=2 s=64 closed | msgs_per_sec |" in r.stdout
    assert r.stdout.strip().splitlines()[-1] == f"report: {run_dir.resolve() / 'report.html'}"
    conform = json.loads((run_dir / "conform.json").read_text())
    assert conform["epoll"]["verdict"] == "pass"


def test_run_records_a_failed_cell_and_goes_on(build, tmp_path):
    out = tmp_path / "results"
    r = echobench("run", "--build", build, "--out", out, "--backends", "epoll",
                  "--connections", "1", "--sizes", "64", "--modes", "closed", "--duration",
                  "200ms", "--warmup", "50ms", "--repetitions", "1", "--conform", "none",
                  env={"FAKE_LOAD_FAIL": "1"})
    assert r.returncode == 1   # nothing was measured
    assert "FAILED" in r.stderr and "every connection failed" in r.stderr
    # The run is written, but results/latest does not move to a run without a valid cell.
    assert not (out / "latest").exists()
    run_dir = only_run(out)
    ctx = json.loads((run_dir / "run.json").read_text())["context"]
    assert ctx["failed_cells"][0]["cell"] == "epoll c=1 s=64 closed"
    assert "Every cell ran cleanly" not in (run_dir / "report.html").read_text()
    assert "ratios are vs None" not in r.stdout + (run_dir / "summary.md").read_text()


def test_conform_table_and_exit_code(build, tmp_path):
    r = echobench("conform", "--build", build, "--json", tmp_path / "v.json",
                  env={"FAKE_CONFORM_FAIL": "HALF-CLOSE-5"})
    assert r.returncode == 1
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["server", "verdict"]
    assert any("--backend epoll" in ln and "FAIL" in ln and "HALF-CLOSE-5" in ln for ln in lines)
    assert any("--backend uring" in ln and "skipped" in ln for ln in lines)
    v = json.loads((tmp_path / "v.json").read_text())
    assert v["echo-server --backend poll"]["failed_ids"] == ["HALF-CLOSE-5"]
    ok = echobench("conform", "--build", build, "--backends", "epoll", "--must-only")
    assert ok.returncode == 0 and "pass (3 passed" in ok.stdout


def test_conform_must_only_does_not_count_should_failures(build):
    r = echobench("conform", "--build", build, "--backends", "epoll", "--must-only",
                  env={"FAKE_CONFORM_FAIL": "LIMIT-CHURN-10"})
    assert r.returncode == 0, r.stdout
    assert "pass (2 passed, 0 failed, 0 skipped; SHOULD failures not counted: LIMIT-CHURN-10)" \
        in r.stdout
    r = echobench("conform", "--build", build, "--backends", "epoll",
                  env={"FAKE_CONFORM_FAIL": "LIMIT-CHURN-10"})
    assert r.returncode == 1 and "FAIL" in r.stdout


def test_conform_external_server_command(build):
    server = build / "servers" / "echo-server"
    r = echobench("conform", "--build", build, "--backends", "none",
                  "--server", f"{server} --backend epoll --listen 127.0.0.1:0")
    assert r.returncode == 0, r.stderr
    assert "pass (3 passed" in r.stdout


def test_rates_from_reuses_the_baseline_peaks(build, tmp_path):
    base = tmp_path / "base"
    args = ["run", "--build", build, "--backends", "epoll", "--connections", "1", "--sizes",
            "64", "--modes", "closed,open50", "--duration", "200ms", "--warmup", "50ms",
            "--repetitions", "1", "--conform", "none"]
    assert echobench(*args, "--out", base).returncode == 0
    peak = json.loads((base / "latest" / "run.json").read_text())["context"][
        "closed_loop_peaks"]["epoll/c:1/s:64"]
    new = tmp_path / "new"
    r = echobench(*args, "--out", new, "--rates-from", base / "latest")
    assert r.returncode == 0, r.stderr
    data = json.loads((new / "latest" / "run.json").read_text())
    rates = [b["echobench"]["offered_rate"] for b in data["benchmarks"]
             if b["name"] == "echo/epoll/c:1/s:64/open50/p99_us"]
    assert rates == [pytest.approx(peak / 2, rel=1e-3)]
    bad = echobench(*args, "--out", new, "--rates-from", tmp_path / "nothing")
    assert bad.returncode == 2 and "no results at" in bad.stderr

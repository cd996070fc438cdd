"""scripts/echobench against the fake programs in scripts/fixtures/: check's verdict lines,
bad input, a whole (tiny) run and its files, conform's verdict table."""
import csv
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "fixtures"))
from echobench_testlib import ECHOBENCH, HERE, echobench, fake_build  # noqa: E402


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
    assert "### Closed loop: throughput" in r.stdout
    assert "| c=2 s=64 closed | " in r.stdout and "| epoll (msgs/s) |" in r.stdout
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


# --- issue 10: the command line, bounds, signals, shared offered rates ---------------------

RUN = ["run", "--connections", "1", "--sizes", "64", "--modes", "closed", "--duration",
       "200ms", "--warmup", "50ms", "--repetitions", "1", "--conform", "none"]


@pytest.mark.parametrize("args, words", [
    # allow_abbrev=False: --server is its own option, never a prefix of --server-cpus.
    (["--server", "0"], "bad --server '0'"),
    (["--serv", "0"], "unrecognized arguments: --serv"),
    (["--threads", "2"], "unrecognized arguments: --threads"),
    (["--sizes", "10G"], "--sizes 10G"),
    (["--connections", "100000000"], "--connections 100000000"),
    (["--duration", "25h"], "--duration"),
    (["--pipeline", "100000"], "--pipeline 100000"),
    (["--placement", "near"], "bad placement 'near'"),
    (["--until-ci", "0"], "bad --until-ci '0'"),
    (["--max-repetitions", "5"], "--max-repetitions needs --until-ci"),
    (["--slo", "p98:1ms"], "bad --slo 'p98:1ms'"),
    (["--ssh-option", "Port=2"], "--ssh-option needs --load-hosts"),
    (["--backends", "none"], "empty matrix"),
    (["--backends", "epoll+q2"], "bad backend entry 'epoll+q2'"),
    (["--backends", "epoll+p0"], "bad backend entry 'epoll+p0'"),
    (["--backends", "nosuch+p2"], "unknown backend 'nosuch'"),
    (["--backends", "epoll+p2,epoll+p2"], "named twice"),
    (["--client-engine", "kqueue"], "--client-engine kqueue"),
    (["--server", "epoll=true"], "'epoll' is the name of a backend"),
    (["--server", "a=x {port}", "--target", "a=127.0.0.1:9"], "the name 'a' is used twice"),
    (["--server", "quitter=exit 3"], "--server quitter"),
    (["--server", "slow=sleep 30 {port}"], "--server slow"),
])
def test_run_bad_input_is_one_line_exit_2_before_anything_starts(build, tmp_path, args, words):
    out = tmp_path / "results"
    r = echobench(*RUN, "--build", build, "--out", out, *args,
                  env={"ECHOBENCH_START_TIMEOUT": "2"}, timeout=60)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert words in r.stderr
    if "--server" not in args:     # a user's server is checked once the run directory exists
        assert not out.exists() or not any(out.iterdir())


def test_server_threads_reaches_echo_server(build, tmp_path):
    r = echobench(*RUN, "--build", build, "--out", tmp_path, "--backends", "epoll",
                  "--server-threads", "2")
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "latest" / "run.json").read_text())["context"][
        "server_threads"] == 2


def _processes_under(path):
    """pids whose command line mentions path (our fakes run from the test's build dir)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if str(path).encode() in f.read():
                    found.append(int(pid))
        except OSError:
            pass
    return found


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_signal_stops_children_and_writes_an_incomplete_run(build, tmp_path, sig):
    out = tmp_path / "results"
    proc = subprocess.Popen(
        ["/usr/bin/python3", str(ECHOBENCH), "run", "--build", str(build), "--out", str(out),
         "--backends", "epoll,poll", "--connections", "1", "--sizes", "64", "--modes",
         "closed", "--duration", "1s", "--warmup", "50ms", "--repetitions", "3",
         "--conform", "none"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        # Wait until the second cell's echo-load runs: one measured cell, one in flight.
        while time.monotonic() < deadline and len(list(out.glob("*/raw/*.log"))) < 2:
            time.sleep(0.05)
        assert len(list(out.glob("*/raw/*.log"))) >= 2, proc.communicate(timeout=30)
        assert _processes_under(build), "no child running at the signal"
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 128 + sig, stderr
    time.sleep(0.2)
    assert _processes_under(build) == [], "children outlived the driver"
    assert not (out / "latest").exists()
    run_dir = only_run(out)
    ctx = json.loads((run_dir / "run.json").read_text())["context"]
    assert ctx["echobench"]["incomplete"] == f"interrupted by {signal.Signals(sig).name}"
    assert "ratios are vs None" not in stdout
    assert (run_dir / "report.html").is_file() and (run_dir / "summary.md").is_file()


def _rates(data, mode):
    return {b["echobench"]["backend"]: b["echobench"]["offered_rate"] for b in data["benchmarks"]
            if b.get("run_type") == "iteration" and b["echobench"]["mode"] == mode
            and b["echobench"]["metric"] == "p99_us"}


def test_open_loop_rates_are_the_same_for_every_entry(build, tmp_path):
    out = tmp_path / "results"
    r = echobench("run", "--build", build, "--out", out, "--rates", "1.0001k")
    assert r.returncode == 2 and "bad rate '1.0001k'" in r.stderr
    r = echobench("run", "--build", build, "--out", out, "--connections", "2", "--sizes", "64",
                  "--modes", "closed,open50", "--rates", "1.5k", "--duration", "300ms",
                  "--warmup", "50ms", "--repetitions", "1", "--conform", "none")
    assert r.returncode == 0, r.stderr
    data = json.loads((out / "latest" / "run.json").read_text())
    peak = data["context"]["closed_loop_peaks"]["epoll/c:2/s:64"]
    assert data["context"]["reference"] == "epoll"
    assert _rates(data, "open50") == {"epoll": pytest.approx(peak / 2, rel=0.01),
                                      "poll": pytest.approx(peak / 2, rel=0.01)}
    assert _rates(data, "rate1500") == {"epoll": 1500.0, "poll": 1500.0}
    with open(out / "latest" / "cells.csv") as f:
        rows = list(csv.DictReader(f))
    assert {float(x["offered_rate"]) for x in rows if x["mode"] == "rate1500"} == {1500.0}
    assert {x["offered_rate"] for x in rows if x["mode"] == "closed"} == {""}


# --- issue 9: placement, until-ci, the sweep ----------------------------------------------

def test_placement_is_a_matrix_axis(build, tmp_path):
    r = echobench(*RUN, "--build", build, "--out", tmp_path, "--backends", "epoll",
                  "--placement", "split,shared,free")
    assert r.returncode == 0, r.stderr
    data = json.loads((tmp_path / "latest" / "run.json").read_text())
    names = {b["name"] for b in data["benchmarks"]}
    assert {"echo/epoll/c:1/s:64/closed/msgs_per_sec",
            "echo/epoll/c:1/s:64/closed/p:shared/msgs_per_sec",
            "echo/epoll/c:1/s:64/closed/p:free/msgs_per_sec"} <= names
    place = data["context"]["placement"]["placements"]
    assert place["shared"]["server_cpus"] == place["shared"]["client_cpus"]
    assert place["free"]["server_cpus"] is None
    assert data["context"]["echobench"]["placements"] == ["split", "shared", "free"]
    with open(tmp_path / "latest" / "cells.csv") as f:
        assert {x["placement"] for x in csv.DictReader(f)} == {"split", "shared", "free"}


@pytest.mark.slow
def test_until_ci_repeats_until_reached_or_max(build, tmp_path):
    # 0.001 %: never reached with real noise, so every cell runs --max-repetitions times.
    r = echobench(*RUN, "--build", build, "--out", tmp_path, "--backends", "epoll",
                  "--repetitions", "2", "--until-ci", "0.001", "--max-repetitions", "4")
    assert r.returncode == 0, r.stderr
    data = json.loads((tmp_path / "latest" / "run.json").read_text())
    reps = [b["repetition_index"] for b in data["benchmarks"]
            if b["name"] == "echo/epoll/c:1/s:64/closed/msgs_per_sec"]
    assert reps == [0, 1, 2, 3]
    cells = data["context"]["echobench"]["until_ci"]["cells"]
    assert cells["echo/epoll/c:1/s:64/closed/msgs_per_sec"]["reached"] is False
    # 99 %: reached at the first check (two repetitions).
    r = echobench(*RUN, "--build", build, "--out", tmp_path / "b", "--backends", "epoll",
                  "--repetitions", "2", "--until-ci", "99", "--max-repetitions", "4")
    data = json.loads((tmp_path / "b" / "latest" / "run.json").read_text())
    reps = [b["repetition_index"] for b in data["benchmarks"]
            if b["name"] == "echo/epoll/c:1/s:64/closed/msgs_per_sec"]
    assert reps == [0, 1]
    assert data["context"]["echobench"]["until_ci"]["cells"][
        "echo/epoll/c:1/s:64/closed/msgs_per_sec"]["reached"] is True


def test_sweep_records_steps_and_max_rate_at_slo(build, tmp_path):
    r = echobench("run", "--build", build, "--out", tmp_path, "--backends", "epoll",
                  "--connections", "1", "--sizes", "64", "--modes", "closed,sweep",
                  "--duration", "200ms", "--warmup", "20ms", "--repetitions", "1",
                  "--conform", "none", "--slo", "p99:1s", timeout=180)
    assert r.returncode == 0, r.stderr
    ctx = json.loads((tmp_path / "latest" / "run.json").read_text())["context"]
    sw = ctx["echobench"]["sweep"]["epoll"]
    assert sw["slo"] == "p99:1000ms"
    peak = ctx["closed_loop_peaks"]["epoll/c:1/s:64"]
    steps = sw["steps"]
    assert steps[0]["offered_rate"] == pytest.approx(0.1 * peak, rel=0.01)
    assert [s["offered_rate"] for s in steps] == sorted(s["offered_rate"] for s in steps)
    for s in steps:
        assert {"offered_rate", "rate_achieved", "p50_us", "p99_us", "valid"} <= set(s)
    # Either all 8 steps ran, or it stopped at the first failed rate check.
    assert len(steps) == 8 or not steps[-1]["rate_ok"]
    ok = [s["offered_rate"] for s in steps if s["rate_ok"] and s["p99_us"] <= 1e6]
    assert sw["max_rate_at_slo"] == (max(ok) if ok else None)


def test_sweep_logic():
    from echobench_lib import sweep
    steps = [{"offered_rate": r, "rate_ok": ok, "p99_us": p, "slo_value_us": p}
             for r, ok, p in ((100, True, 50), (200, True, 900), (300, True, 2000))]
    assert sweep.max_rate_at_slo(steps, 1000.0) == 200
    assert not sweep.should_stop(steps)
    assert sweep.should_stop(steps + [{"offered_rate": 400, "rate_ok": True, "p99_us": 5001,
                                       "slo_value_us": 5001}])
    assert sweep.should_stop(steps + [{"offered_rate": 400, "rate_ok": False, "p99_us": 60,
                                       "slo_value_us": 60}])
    assert len(sweep.FRACTIONS) >= 8 and sweep.FRACTIONS[0] == 0.1 and \
        sweep.FRACTIONS[-1] == 1.2
    assert sweep.rate_ok({"checks": [{"name": "rate", "ok": False}], "rate_achieved": 1e9}, 10) \
        is False


def test_invalid_cells_are_recorded_and_latest_does_not_move(build, tmp_path):
    out = tmp_path / "results"
    r = echobench(*RUN, "--build", build, "--out", out, "--backends", "epoll",
                  env={"FAKE_LOAD_INVALID": "1"})
    assert "self-checks failed" in r.stderr
    assert not (out / "latest").exists()
    data = json.loads((only_run(out) / "run.json").read_text())
    assert data["context"]["invalid_cells"][0]["reasons"] == ["client_cpu check failed"]
    assert all(b["echobench"]["valid"] is False for b in data["benchmarks"])


def test_quick_preset_can_name_a_significant_winner_in_time():
    from echobench_lib import matrix, runner
    q = matrix.QUICK
    from echobench_lib import stats
    assert "sweep" in q["modes"]
    # the winner rule tests at alpha/2: these repetitions must be able to reach it
    for preset in (q, matrix.DEFAULT):
        assert stats.decide_winner({"a": [2.0 + i for i in range(preset["repetitions"])],
                                    "b": [1.0 + i / 10 for i in range(preset["repetitions"])]},
                                   True)["winner"] == "a"
    cells = 5 * len(q["connections"]) * len(q["sizes"]) * \
        len([m for m in q["modes"] if m != "sweep"])
    per_run = q["warmup"] + q["duration"] + runner.CELL_OVERHEAD_S
    sweep_s = 5 * 8 * (q["sweep_warmup"] + q["sweep_duration"] + runner.CELL_OVERHEAD_S)
    # Five backends, quick conformance (about 25 s), check and start-up: under 3 minutes.
    assert cells * q["repetitions"] * per_run + sweep_s + 25 + 10 < 180


# --- issue 13: the user's servers beside the backends ---------------------------------------

EXAMPLE = HERE / "examples" / "asyncio_echo.py"


@pytest.mark.slow
def test_user_servers_and_targets_beside_backends(build, tmp_path):
    fake = build / "servers" / "echo-server"
    with subprocess.Popen([str(fake), "--backend", "epoll", "--listen", "127.0.0.1:0"],
                          stdout=subprocess.PIPE, text=True,
                          start_new_session=True) as running:
        addr = running.stdout.readline().split()[1]
        try:
            r = echobench(
                "run", "--build", build, "--out", tmp_path, "--backends", "epoll",
                "--server", f"asyncio=/usr/bin/python3 {EXAMPLE} {{port}}",
                "--server", f"printer={fake} --backend poll --listen 127.0.0.1:0",
                "--target", f"running={addr}",
                "--connections", "2", "--sizes", "64", "--modes", "closed,open50",
                "--duration", "200ms", "--warmup", "50ms", "--repetitions", "1",
                "--conform", "must", timeout=180)
        finally:
            os.killpg(running.pid, signal.SIGTERM)
    assert r.returncode == 0, r.stderr
    run_dir = tmp_path / "latest"
    data = json.loads((run_dir / "run.json").read_text())
    names = {b["name"] for b in data["benchmarks"]}
    for entry in ("epoll", "asyncio", "printer", "running"):
        assert f"echo/{entry}/c:2/s:64/closed/msgs_per_sec" in names, entry
    kinds = {e["name"]: e["kind"] for e in data["context"]["echobench"]["entries"]}
    assert kinds == {"epoll": "backend", "asyncio": "server", "printer": "server",
                     "running": "target"}
    cpu = {b["echobench"]["backend"] for b in data["benchmarks"]
           if b["echobench"]["metric"] == "server_cpu_ns_per_msg"}
    assert {"epoll", "asyncio", "printer"} <= cpu and "running" not in cpu
    rates = _rates(data, "open50")
    assert len(set(rates.values())) == 1 and set(rates) == {"epoll", "asyncio", "printer",
                                                            "running"}
    with open(run_dir / "cells.csv") as f:
        assert {x["entry_kind"] for x in csv.DictReader(f)} == {"backend", "server", "target"}
    conf = json.loads((run_dir / "conform.json").read_text())
    assert {k: v["verdict"] for k, v in conf.items()} == {
        "epoll": "pass", "asyncio": "pass", "printer": "pass", "running": "pass"}
    assert (run_dir / "conform" / "asyncio.tap").is_file()
    assert _processes_under(EXAMPLE) == []


def test_backends_none_runs_only_user_entries(build, tmp_path):
    r = echobench(*RUN, "--build", build, "--out", tmp_path, "--backends", "none",
                  "--server", f"mine=/usr/bin/python3 {EXAMPLE} {{port}}")
    assert r.returncode == 0, r.stderr
    data = json.loads((tmp_path / "latest" / "run.json").read_text())
    assert {b["echobench"]["backend"] for b in data["benchmarks"]} == {"mine"}
    assert data["context"]["reference"] == "mine"


def test_load_hosts_go_through_remote_load_hosts(build, tmp_path, monkeypatch):
    """The runner's hook: with --load-hosts, echo-load runs through remote.LoadHosts (a
    stand-in here that runs the fake echo-load locally and records its calls)."""
    import types
    from echobench_lib import cli
    calls = []

    class LoadHosts:
        def __init__(self, dests, ssh_options, echo_load_path):
            calls.append(("init", dests, ssh_options, echo_load_path))

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            calls.append(("exit",))

        def run(self, base_args, target, connections, rate, out_dir, tag):
            calls.append(("run", list(base_args), target, connections, rate, tag))
            js = pathlib.Path(out_dir) / "x.json"
            argv = [str(build / "clients" / "echo-load"), *base_args, "--connections",
                    str(connections), "--json", str(js), target]
            if rate:
                argv[1:1] = ["--rate", str(rate)]
            rc = subprocess.run(argv, capture_output=True).returncode
            load = json.loads(js.read_text())
            load["hosts"] = [{"dest": d, "messages": load["messages"]} for d in ("h1", "h2")]
            return load, rc

    monkeypatch.setitem(sys.modules, "echobench_lib.remote",
                        types.SimpleNamespace(LoadHosts=LoadHosts))
    monkeypatch.setattr(sys.modules["echobench_lib"], "remote",
                        sys.modules["echobench_lib.remote"], raising=False)
    rc = cli.main([*RUN, "--build", str(build), "--out", str(tmp_path), "--backends", "epoll",
                   "--modes", "closed,open50", "--load-hosts", "h1,user@h2:2222",
                   "--ssh-option", "StrictHostKeyChecking=no"])
    assert rc == 0
    assert calls[0] == ("init", ["h1", "user@h2:2222"], ["StrictHostKeyChecking=no"],
                        str(build.resolve() / "clients" / "echo-load"))
    runs = [c for c in calls if c[0] == "run"]
    assert len(runs) == 2 and calls[-1] == ("exit",)
    for _, base, target, conns, rate, tag in runs:
        assert conns == 1 and target.startswith("127.0.0.1:")
        assert not {"--connections", "--rate", "--json", "--hgrm", target} & set(base)
    assert runs[0][4] is None and runs[1][4] > 0
    data = json.loads((tmp_path / "latest" / "run.json").read_text())
    assert data["context"]["echobench"]["load_hosts"] == ["h1", "user@h2:2222"]


# --- shared helpers and the streaming echo check -----------------------------------------------

class _EchoServer:
    """A threaded echo server in the test process; corrupt_at flips the byte at that offset."""

    def __init__(self, corrupt_at=None):
        import socket
        import threading
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(8)
        self.addr = f"127.0.0.1:{self.ls.getsockname()[1]}"
        self.corrupt_at = corrupt_at
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            with c:
                seen = 0
                while True:
                    try:
                        data = c.recv(1 << 16)
                    except OSError:      # the checker closes as soon as it saw the mismatch
                        break
                    if not data:
                        break
                    if self.corrupt_at is not None and seen <= self.corrupt_at < seen + len(data):
                        i = self.corrupt_at - seen
                        data = data[:i] + bytes([data[i] ^ 1]) + data[i + 1:]
                    seen += len(data)
                    try:
                        c.sendall(data)
                    except OSError:
                        break

    def close(self):
        self.ls.close()


def test_echo_check_streams_16M_in_bounded_memory():
    import tracemalloc
    from echobench_lib.server import verify_echo
    srv = _EchoServer()
    try:
        tracemalloc.start()
        assert verify_echo(srv.addr, [1, 16 << 20], timeout=30) is None
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < 2 << 20, f"{peak} B held for a 16 MiB echo"
    finally:
        srv.close()


def test_echo_check_finds_a_corrupt_byte_far_in():
    from echobench_lib.server import verify_echo
    srv = _EchoServer(corrupt_at=5_000_001)
    try:
        why = verify_echo(srv.addr, [8 << 20], timeout=30)
        assert why and "differs at byte 5000001 of 8388608" in why
    finally:
        srv.close()


def test_pattern_blocks_differ():
    from echobench_lib.server import Pattern
    p = Pattern(0)
    assert p.chunk(0) != p.chunk(1) and len(p.at(65530, 20)) == 20
    assert p.at(65530, 20) == (p.chunk(0) + p.chunk(1))[65530:65550]


def test_one_tap_reader_and_catalogue_reader():
    from echobench_lib import conform, tap
    text = ("TAP version 13\n1..4\nok 1 - A-1 first\nnot ok 2 - B-2 second\n"
            "ok 3 - C-3 third # SKIP no udp\nnot ok 4 - D-4 fourth # TODO should\n")
    r = tap.parse_tap(text)
    assert (r["plan"], r["passed"], r["failed"], r["skipped"], r["todo"]) == (4, 1, 1, 1, 1)
    assert r["failed_ids"] == ["B-2"] and r["todo_ids"] == ["D-4"]
    m = tap.TAP_LINE.match("ok 3 - C-3 third # SKIP no udp")
    assert (m.group(3), m.group(5), m.group(6)) == ("C-3", "SKIP", "no udp")
    assert tap.parse_line("ok 4 - D-4 # TODO why")[2:] == ("D-4", "", "TODO", "why")
    rows = conform.parse_catalogue("A-1  MUST  -  - all bytes\nB-2  SHOULD pid long waits 5 s\n")
    assert rows[0] == {"id": "A-1", "level": "MUST", "needs": "-", "long": False,
                       "description": "all bytes"}
    assert rows[1]["long"] is True and rows[1]["description"] == "waits 5 s"
    assert conform.parse_catalogue("ID LEVEL NEEDS LONG DESCRIPTION\n") == []


def test_backend_list_parser_and_variants():
    from echobench_lib import build as b
    listed = b.parse_backend_list("epoll usable\nepoll:et usable\nuring unusable: no ring\n")
    assert listed == [("epoll", True, ""), ("epoll:et", True, ""), ("uring", False, "no ring")]
    assert b.is_variant("epoll:et") and not b.is_variant("epoll")


def test_split_addr_forms():
    from echobench_lib.net import split_addr
    assert split_addr("127.0.0.1:80") == ("127.0.0.1", 80)
    assert split_addr("[::1]:7") == ("::1", 7)
    assert split_addr("udp:127.0.0.1:9") == ("127.0.0.1", 9)
    assert split_addr("unix:/tmp/x") == ("unix", "/tmp/x")
    with pytest.raises(ValueError):
        split_addr("localhost")


def test_conform_user_server_with_port_gets_server_pid(build, tmp_path):
    r = echobench("conform", "--build", build, "--backends", "none", "--json", tmp_path / "v",
                  "--server", f"mine=/usr/bin/python3 {EXAMPLE} {{port}}")
    assert r.returncode == 0, r.stderr
    assert "mine" in r.stdout and "pass (3 passed" in r.stdout
    assert _processes_under(EXAMPLE) == []


@pytest.mark.skipif(not shutil.which("socat"), reason="socat is not installed")
def test_socat_as_a_user_server(build, tmp_path):
    r = echobench(*RUN, "--build", build, "--out", tmp_path, "--backends", "none",
                  "--server", "socat=socat TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork "
                  "EXEC:cat")
    assert r.returncode == 0, r.stderr
    data = json.loads((tmp_path / "latest" / "run.json").read_text())
    assert "echo/socat/c:1/s:64/closed/msgs_per_sec" in {b["name"] for b in data["benchmarks"]}


def test_connect_forms():
    from echobench_lib.net import connect, sockaddr
    srv = _EchoServer()
    try:
        with connect(srv.addr, 5, rcvbuf=8192) as s:
            s.sendall(b"abc")
            assert s.recv(3) == b"abc"
        assert sockaddr("[::1]:7")[0] == socket.AF_INET6
        assert sockaddr("udp:127.0.0.1:9") == (socket.AF_INET, ("127.0.0.1", 9))
    finally:
        srv.close()


def test_quick_conformance_leaves_out_the_catalogues_long_cases(build, tmp_path):
    r = echobench(*RUN[:-2], "--conform", "quick", "--build", build, "--out", tmp_path,
                  "--backends", "epoll")
    assert r.returncode == 0, r.stderr
    conf = json.loads((tmp_path / "latest" / "conform.json").read_text())
    assert conf["epoll"]["left_out"] == ["LIMIT-CHURN-10"]
    assert conf["epoll"]["verdict"] == "pass" and conf["epoll"]["passed"] == 2


def test_signal_during_conformance_stops_echo_conform_and_its_server(build, tmp_path):
    out = tmp_path / "results"
    proc = subprocess.Popen(
        ["/usr/bin/python3", str(ECHOBENCH), *RUN[:-2], "--conform", "must", "--build",
         str(build), "--out", str(out), "--backends", "epoll"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, "FAKE_CONFORM_SLEEP": "30"})
    try:
        deadline = time.monotonic() + 60
        # echo-conform runs (with the server it started) once the conform/ directory exists.
        while time.monotonic() < deadline and not list(out.glob("*/conform")):
            time.sleep(0.05)
        time.sleep(1.0)
        assert len(_processes_under(build)) >= 2, "echo-conform and its server should run"
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 143, stderr
    time.sleep(0.2)
    assert _processes_under(build) == []
    ctx = json.loads((only_run(out) / "run.json").read_text())["context"]
    assert ctx["echobench"]["incomplete"] == "interrupted by SIGTERM during conformance"


def test_numbers_take_fractional_suffixes_when_whole():
    from echobench_lib.util import UsageError, parse_count, parse_size
    assert parse_count("1.5k") == 1500 and parse_count("2M") == 2000000
    assert parse_size("1.5k") == 1536 and parse_size("16M") == 16 << 20
    for bad in ("1.5", "1.0001k", "k", "-1"):
        with pytest.raises(UsageError):
            parse_count(bad)

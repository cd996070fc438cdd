"""The command line: bad input is one line and exit 2 before anything starts (abbreviations
never match), options reach the programs, and a signal stops every child and still writes an
incomplete run."""
import json
import os
import signal
import subprocess
import time

import pytest

from echobench_testlib import ECHOBENCH, echobench, fake_build, processes_under

RUN = ["run", "--connections", "1", "--sizes", "64", "--modes", "closed", "--duration",
       "200ms", "--warmup", "50ms", "--repetitions", "1", "--conform", "none"]


@pytest.fixture
def build(tmp_path):
    return fake_build(tmp_path / "build")


def wait_for(cond, timeout):
    """Whether cond() became true within timeout seconds (a bound only a broken run reaches)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def only_run(out):
    runs = [d for d in out.iterdir() if d.is_dir() and not d.is_symlink()]
    assert len(runs) == 1, runs
    return runs[0]


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
    (["--cells", "churn:c=16"], "bad --cells item 'churn:c=16'"),
    (["--cells", "sideways:c=1:s=64"], "bad --cells mode 'sideways'"),
    (["--cells", "sweep:c=1:s=64"], "the sweep is not a cell"),
    (["--cells", "churn:c=0:s=64"], "bad --cells connections '0'"),
    (["--cells", "stream:c=4:s=10G"], "--sizes 10G"),
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
    (["--client-engine", "uring", "--cells", "churn:c=4:s=64"], "churn cells only on its epoll"),
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
        assert processes_under(build), "no child running at the signal"
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 128 + sig, stderr
    assert wait_for(lambda: not processes_under(build), 30), "children outlived the driver"
    assert not (out / "latest").exists()
    run_dir = only_run(out)
    ctx = json.loads((run_dir / "run.json").read_text())["context"]
    assert ctx["echobench"]["incomplete"] == f"interrupted by {signal.Signals(sig).name}"
    assert "ratios are vs None" not in stdout
    assert (run_dir / "report.html").is_file() and (run_dir / "summary.md").is_file()


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
        assert wait_for(lambda: len(processes_under(build)) >= 2, 30), \
            "echo-conform and its server should run"
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 143, stderr
    assert wait_for(lambda: not processes_under(build), 30)
    ctx = json.loads((only_run(out) / "run.json").read_text())["context"]
    assert ctx["echobench"]["incomplete"] == "interrupted by SIGTERM during conformance"

"""echo-load when things go wrong: no server, a server that dies, is frozen or sheds
connections, SIGINT, too low a file limit, bad options; each gives its exit code, an incomplete
marker or a failed check, and one clear line."""
import os
import resource
import signal
import subprocess

import pytest

from conftest import binary
from echobench_lib.net import free_port
from load_testlib import LoadProcess, checks, run_load


def test_no_server():
    rc, obj, err = run_load("-c", 3, "-d", "1s", f"127.0.0.1:{free_port()}", timeout=15)
    assert rc == 1
    assert obj["complete"] is False and "refused" in obj["error"].lower()
    assert obj["errors"]["refused"] == 3 and obj["messages"] == 0
    assert len(err.strip().splitlines()) == 1 and "refused" in err.lower()


def test_server_dies_mid_run(start_server):
    """The server killed 1 s into a 20 s window (by echo-load's clock, its first progress
    line): the run stops at once (within 5 s of the kill, where one that went on would take 19 s
    more), every connection is reported lost, and the measured duration reaches the kill."""
    sp = start_server("epoll")
    with LoadProcess("-c", 4, "-d", "20s", sp.addr) as lp:
        lp.into_window(1)
        os.kill(sp.pid, signal.SIGKILL)
        rc, obj, err = lp.finish(timeout=5)
    assert rc == 1
    assert obj["complete"] is False and "lost" in obj["error"]
    assert obj["messages"] > 0 and 1 <= obj["duration_s"] < 20
    assert sum(obj["errors"].values()) == 4
    assert "lost" in err.strip().splitlines()[-1]


def test_sigint_stops_promptly(start_server):
    """SIGINT 1 s into a 30 s window: echo-load stops within 5 s and reports what it measured
    until then, marked incomplete."""
    sp = start_server("epoll")
    with LoadProcess("-c", 2, "-d", "30s", sp.addr) as lp:
        lp.into_window(1)
        lp.proc.send_signal(signal.SIGINT)
        rc, obj, err = lp.finish(timeout=5)
    assert rc == 1, err
    assert obj["complete"] is False and "interrupted" in obj["error"]
    assert obj["messages"] > 0 and 1 <= obj["duration_s"] < 30


def test_fd_limit_too_low():
    def low_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    rc, obj, err = run_load("-c", 500, "-d", "1s", f"127.0.0.1:{free_port()}",
                            preexec_fn=low_limit)
    assert rc == 1 and obj is None
    assert len(err.strip().splitlines()) == 1 and "RLIMIT_NOFILE" in err


def test_shed_connections_are_not_counted_healthy(start_server):
    """A server that refuses connections beyond 4 (it accepts and closes them): the lost ones
    are counted, the connections check fails."""
    sp = start_server("epoll", "--max-conns", 4)
    rc, obj, err = run_load("-c", 8, "-t", 1, "-d", "500ms", "--timeout", "500ms", sp.addr)
    assert obj is not None, err
    assert obj["connections_lost"] + obj["starved_connections"] >= 4, obj
    assert checks(obj)["connections"]["ok"] is False
    assert checks(obj)["connections"]["value"] <= 4


def test_server_frozen_at_the_end_is_seen(start_server):
    """A server stopped from 1 s into a 2 s window (by echo-load's clock) to past its end and
    past --timeout: what it owed is not dropped silently. The connections fail on the timeout
    in the drain after the window (1 s + 1.5 s is past its end), and the check says so. (Only a
    test thread over 1 s late would stop the server after the window.)"""
    sp = start_server("epoll")
    with LoadProcess("-c", 4, "-t", 1, "-d", "2s", "--timeout", "1500ms", sp.addr) as lp:
        lp.into_window(1)
        os.kill(sp.pid, signal.SIGSTOP)
        try:
            rc, obj, err = lp.finish(timeout=30)
        finally:
            os.kill(sp.pid, signal.SIGCONT)
    assert obj is not None, err
    assert obj["errors"]["timeout"] == 4 and obj["connections_lost"] == 4, obj["errors"]
    assert obj["unanswered"] >= 4
    assert checks(obj)["connections"]["ok"] is False and obj["valid"] is False


@pytest.mark.parametrize("args", [
    [], ["-c", "0", "127.0.0.1:1"], ["-c", "x", "127.0.0.1:1"], ["--bogus", "127.0.0.1:1"],
    ["-Z", "127.0.0.1:1"], ["-d", "soon", "127.0.0.1:1"], ["-d", "0", "127.0.0.1:1"],
    ["-s", "0", "127.0.0.1:1"], ["-s", "9-3", "127.0.0.1:1"], ["-R", "-5", "127.0.0.1:1"],
    ["--stream", "-R", "1k", "127.0.0.1:1"], ["--udp", "unix:/tmp/x"],
    ["--udp", "-s", "70000", "127.0.0.1:1"], ["not-an-address"], ["127.0.0.1:99999"],
    ["127.0.0.1:1", "extra"], ["-p"], ["--csv-header", "127.0.0.1:1"],
    ["--json", "/nonexistent/dir/x.json", "127.0.0.1:1"], ["-t", "0", "127.0.0.1:1"],
    ["--json", "-", "--csv", "-", "127.0.0.1:1"], ["--hgrm", "-", "--json", "-", "127.0.0.1:1"],
    ["--intervals", "0", "127.0.0.1:1"], ["-d", "10s", "--intervals", "1ms", "127.0.0.1:1"],
    ["--phase", "2/2", "-R", "1k", "127.0.0.1:1"], ["--phase", "1/2", "127.0.0.1:1"],
    ["--start-at", "soon", "127.0.0.1:1"], ["--merge"], ["--stream", "udp:127.0.0.1:1"],
])
def test_bad_options(args):
    p = subprocess.run([binary("clients/echo-load"), *args], capture_output=True, text=True,
                       timeout=10)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert p.stdout == ""
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("echo-load: "), p.stderr


def test_help_and_version():
    p = subprocess.run([binary("clients/echo-load"), "--help"], capture_output=True, text=True,
                       timeout=10)
    assert p.returncode == 0 and "--rate" in p.stdout and "--hgrm" in p.stdout
    p = subprocess.run([binary("clients/echo-load"), "--version"], capture_output=True,
                       text=True, timeout=10)
    assert p.returncode == 0 and p.stdout.startswith("echo-load ")

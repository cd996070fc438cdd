"""echo-load's load engines: each engine but the default (which every other test runs) gives
the same verified figures in each mode, over a unix socket, catches a corrupting server and
starved connections, and stops when the server dies; engine options and an unusable engine.
The engines come from echo-load's own table (`--version`), so a new engine is tested without a
line here."""
import os
import signal
import tempfile
import threading

import pytest

from load_testlib import (DEFAULT_ENGINE, OTHER_ENGINES, assert_no_resets, check_sane, checks,
                          due, engine_state, faulty, need_engine, run_load)


@pytest.mark.parametrize("engine", OTHER_ENGINES)
@pytest.mark.parametrize("args,mode", [
    (["-c", 4, "-t", 2], "closed"),
    (["-c", 3, "-p", 8, "-s", "1-9000"], "closed"),
    (["-c", 2, "--stream", "-s", "64k"], "stream"),
    (["-c", 3, "-R", "2k"], "open"),
    (["-c", 1], "closed"),
])
def test_engine_modes_same_results(start_server, engine, args, mode):
    """Each mode under each other engine: the same verified figures as the default's checks
    ask for."""
    need_engine(engine)
    sp = start_server("epoll")
    n = args[1]
    for e in (engine, DEFAULT_ENGINE):
        rc, obj, err = run_load("--engine", e, *args, "-d", "500ms", sp.addr)
        assert rc == 0, err
        check_sane(obj, n)
        assert obj["engine"] == e and obj["mode"] == mode
        if mode == "open":
            assert abs(due(obj) - 1000) <= 3    # 2000/s for 0.5 s, on schedule
    assert_no_resets(sp)     # every engine closes cleanly


@pytest.mark.parametrize("engine", OTHER_ENGINES)
def test_engine_unix_socket(start_server, engine):
    need_engine(engine)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "echo.sock")
        sp = start_server("epoll", "--listen", f"unix:{path}")
        rc, obj, err = run_load("--engine", engine, "-c", 2, "-p", 2, "-d", "300ms",
                                f"unix:{path}")
        assert rc == 0, err
        check_sane(obj, 2)
        assert obj["transport"] == "unix" and obj["engine"] == engine


@pytest.mark.parametrize("engine", OTHER_ENGINES)
@pytest.mark.parametrize("fault,args", [
    ("corrupt-deep", ["-c", 2, "--stream", "-s", "64k", "-d", "700ms"]),
    ("prefix", ["-c", 2, "-d", "300ms"]),
])
def test_engine_catches_a_corrupting_server(engine, fault, args):
    need_engine(engine)
    sp = faulty("--fault", fault)
    try:
        rc, obj, err = run_load("--engine", engine, *args, sp.addr)
    finally:
        sp.stop(signal.SIGKILL)
    assert rc == 1, err
    assert obj["engine"] == engine
    assert obj["mismatches"] >= 1 or obj["extra_bytes"] > 0, obj
    assert checks(obj)["verify"]["ok"] is False


@pytest.mark.parametrize("engine", OTHER_ENGINES)
def test_engine_starved_connections(engine):
    need_engine(engine)
    sp = faulty("--fault", "one-at-a-time")
    try:
        # The default 5 s --timeout: the served connection must never time out (see
        # test_starved_connections_fail_the_check).
        rc, obj, err = run_load("--engine", engine, "-c", 16, "-t", 2, "-d", "1s", sp.addr,
                                timeout=60)
    finally:
        sp.stop(signal.SIGKILL)
    assert obj is not None, err
    assert obj["starved_connections"] == 15, obj["msgs_per_conn"]
    assert checks(obj)["connections"]["ok"] is False and obj["valid"] is False


@pytest.mark.parametrize("engine", OTHER_ENGINES)
def test_engine_server_dies_mid_run(start_server, engine):
    need_engine(engine)
    sp = start_server("epoll")
    threading.Timer(0.3, lambda: sp.stop(signal.SIGKILL)).start()
    rc, obj, err = run_load("--engine", engine, "-c", 4, "-d", "2s", "--timeout", "1s",
                            sp.addr)
    assert rc == 1, err
    assert obj["complete"] is False
    assert sum(obj["errors"].values()) == 4, obj["errors"]


def test_engine_options():
    rc, obj, err = run_load("--engine", "kqueue", "127.0.0.1:1")
    assert rc == 2 and "--engine" in err and len(err.strip().splitlines()) == 1
    # UDP has no uring path: asked for explicitly, that is a usage error...
    rc, obj, err = run_load("--engine", "uring", "--udp", "127.0.0.1:1")
    assert rc == 2 and "--udp" in err and len(err.strip().splitlines()) == 1, err
    usable, _ = engine_state("epoll")
    assert usable


def test_uring_engine_unavailable_is_exit_1():
    """Where the engine cannot run (no liburing at build time, or the kernel refuses io_uring),
    --engine uring exits 1 with the reason; where it can, this test has nothing to show."""
    usable, why = engine_state("uring")
    if usable:
        pytest.skip("io_uring works here")
    rc, obj, err = run_load("--engine", "uring", "127.0.0.1:1")
    assert rc == 1 and "--engine uring" in err and len(err.strip().splitlines()) == 1, err

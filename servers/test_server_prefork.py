"""echo-server --processes N (prefork): N worker processes, each with its own SO_REUSEPORT
listeners and event loop (or ring); SIGTERM drains every child and gives one summary that sums
them; a child that dies stops the whole server with a failure; children never outlive the
parent. Every deadline is generous: only a server that never does the thing fails."""
import os
import signal
import time

import pytest

from echobench_lib.procfs import children, is_gone
from echobench_lib.server import Pattern
from echobench_lib.procfs import fd_count
from test_server_support import (connect, echo_many, payload, roundtrip, stop_summary, wait_for)

NPROC = 3
SLOW = 30.0


def test_processes_serve_and_one_summary_sums_them(backend, start_server):
    sp = start_server(backend, "--processes", NPROC)
    kids = children(sp.pid)
    assert len(kids) == NPROC, f"expected {NPROC} worker processes, found {kids}"
    base = {k: fd_count(k) for k in kids}
    socks = [connect(sp) for _ in range(60)]
    datas = [payload(100 + i, seed=i) for i in range(60)]
    try:
        assert echo_many(socks, datas, timeout=SLOW, shut_wr=False) == datas
        # Each child has its own listener: the kernel spreads connections over all of them
        # (60 connections hashed over 3 sockets all landing on one: about 3 * 3^-60).
        holding = [k for k in kids if fd_count(k) > base[k]]
        assert sorted(holding) == sorted(kids), \
            f"connections landed only on {holding} of {kids}: the listeners are not per process"
    finally:
        for s in socks:
            s.close()
    st = stop_summary(sp)
    assert st["accepted"] == 60 and st["refused"] == 0 and st["resets"] == 0, st
    assert st["bytes_in"] == st["bytes_out"] == sum(map(len, datas)), st
    assert wait_for(lambda: all(is_gone(k) for k in kids), SLOW), "a worker process outlived stop"


def test_processes_drain_pending_echo_on_sigterm(backend, start_server):
    """A client with echo pending when SIGTERM comes gets what the server read (its child
    drains), and the summary counts it: everything read was written out."""
    sp = start_server(backend, "--processes", NPROC, "--drain-timeout", "20s")
    data = Pattern(seed=31).at(0, 256 << 10)
    how = "eof"
    with connect(sp) as s:
        s.sendall(data)                 # in flight, unread by the client, when the stop comes
        sp.proc.send_signal(signal.SIGTERM)
        got = bytearray()
        s.settimeout(SLOW)
        while True:
            try:
                b = s.recv(1 << 20)
            except ConnectionResetError:   # the server had not read all: RST, as for threads
                how = "reset"
                break
            if not b:
                break
            got += b
    st = stop_summary(sp, timeout=SLOW)
    assert bytes(got) == data[:len(got)], "echo differs"
    assert st["bytes_out"] == st["bytes_in"], f"pending echo was dropped: {st}"
    assert len(got) <= st["bytes_out"]
    if how == "eof":
        assert len(got) == st["bytes_out"], (st, len(got))


def test_dead_child_stops_the_server_with_failure(backend, start_server):
    sp = start_server(backend, "--processes", NPROC)
    kids = children(sp.pid)
    os.kill(kids[1], signal.SIGKILL)
    assert wait_for(lambda: sp.proc.poll() is not None, SLOW), \
        "the server went on with a worker process missing"
    rc, err = sp.stop()
    assert rc == 1, f"exit status {rc}, stderr {err!r}"
    assert f"worker process {kids[1]} died" in err, err
    assert wait_for(lambda: all(is_gone(k) for k in kids), SLOW), "worker processes left behind"


def test_children_never_outlive_the_parent(backend, start_server):
    sp = start_server(backend, "--processes", NPROC)
    kids = children(sp.pid)
    with connect(sp) as s:
        assert roundtrip(s, b"before") == b"before"
    os.kill(sp.pid, signal.SIGKILL)
    sp.proc.wait(SLOW)
    assert wait_for(lambda: all(is_gone(k) for k in kids), SLOW), \
        f"worker processes {[k for k in kids if not is_gone(k)]} outlived a killed parent"


@pytest.mark.parametrize("n", ["0", "65", "x"])
def test_bad_process_count_is_a_usage_error(n):
    from test_server_support import run_cli
    r = run_cli("--processes", n, "--listen", "127.0.0.1:0", timeout=30)
    assert r.returncode == 2, r
    assert "--processes" in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr


def test_sigint_to_the_process_group_is_a_clean_stop(backend, start_server):
    """Ctrl-C in a terminal sends SIGINT to the parent and its children at once: a child that
    stops first is not a failure. Exit 0 and one summary."""
    sp = start_server(backend, "--processes", NPROC)
    kids = children(sp.pid)
    with connect(sp) as s:
        assert roundtrip(s, b"ctrl-c") == b"ctrl-c"
    for k in kids:                      # the children first: the race a terminal can give
        try:
            os.kill(k, signal.SIGINT)
        except ProcessLookupError:
            # Descheduled between two kills (32 ms was seen on a busy machine), the test can
            # find that the parent has already stopped and reaped the next child: the stop
            # the test asks for began, which is what the rest checks.
            pass
    time.sleep(0.2)
    st = stop_summary(sp, signal.SIGINT, timeout=SLOW)
    assert st["accepted"] == 1 and st["bytes_out"] == 6, st

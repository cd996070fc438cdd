"""echo-server facing hostile clients, every usable backend: --idle-timeout closes silent
connections and those that stopped reading, and leaves talking ones alone; --max-conns-per-source
refuses one address's excess while another address is served; slowloris connections and a connect
storm do not keep a normal client from its echoes; bad values of the new options are usage errors.

As in test_server_limits.py, no verdict depends on the machine's speed: every wait is a generous
deadline for something a correct server does at once, and the one lower bound asserted (an idle
connection is not closed before the timeout) is the server's promise, not a speed. They must pass
with the server and the client on a loaded 2-CPU machine."""
import select
import socket
import time

import pytest

from conftest import ServerProcess, _VARIANTS
from echobench_lib.server import Pattern
from test_server_support import (closed_by_server, connect, payload, push_until_stalled,
                                 roundtrip, run_cli, server_exe, stays_open, stop_summary)

IDLE = 0.3        # --idle-timeout in the tests: six times a talking client's 50 ms gaps
IDLE_ARG = "300ms"
SLOW = 15.0       # a generous deadline for what a correct server does within 1.5 x IDLE
TALK_GAP = 0.05   # the talking client's pause between round trips


def connect_from(sp, source, timeout=10.0):
    """A TCP connection to sp from the loopback address source (127.0.0.0/8 is all loopback)."""
    host, port = sp.host_port()
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        s.bind((source, 0))
        s.connect((host, port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except BaseException:
        s.close()
        raise
    return s


def served(s, seed=0):
    """True when s echoes a message; False when the server closed or reset it instead."""
    data = payload(100, seed)
    try:
        return roundtrip(s, data) == data
    except (AssertionError, ConnectionError):
        return False


def test_idle_timeout_closes_silent_keeps_talking(backend, start_server):
    """A connection that says nothing gets EOF within a few idle periods (never before one),
    while one that keeps talking all that time is never closed; the summary counts one idle
    close."""
    sp = start_server(backend, "--idle-timeout", IDLE_ARG)
    talker = connect(sp)
    assert served(talker)           # accepted and running before the silent one starts
    silent = connect(sp)
    t0 = time.monotonic()
    closed_at, n, last = None, 0, time.monotonic()
    while time.monotonic() - t0 < SLOW:
        n += 1
        gap = time.monotonic() - last
        if not served(talker, seed=n):
            if gap >= IDLE:   # this process was starved, not the server wrong: no verdict
                pytest.skip(f"the test client paused {gap:.3f} s between round trips")
            pytest.fail(f"talking connection closed after {n} round trips, gap {gap:.3f} s")
        last = time.monotonic()
        if closed_at is None:
            r, _, _ = select.select([silent], [], [], TALK_GAP)
            if r:
                closed_at = time.monotonic() - t0
                silent.settimeout(1.0)
                assert silent.recv(1) == b"", "the silent connection got data, not EOF"
        else:
            time.sleep(TALK_GAP)
        # Done once the silent one closed and the talker outlived three idle periods.
        if closed_at is not None and time.monotonic() - t0 > 3 * IDLE:
            break
    assert closed_at is not None, f"silent connection still open after {SLOW} s"
    # It may not close early; 0.05 s of slack for the two clocks' start points.
    assert closed_at >= IDLE - 0.05, f"closed after {closed_at:.3f} s, timeout {IDLE} s"
    talker.close()
    silent.close()
    st = stop_summary(sp)
    assert st["idle_closed"] == 1, st
    assert st["resets"] == 0, st


def test_idle_timeout_off_by_default(start_server):
    """Without the option a silent connection stays open well past what the tests use."""
    sp = start_server("epoll")
    s = connect(sp)
    assert stays_open(s, seconds=3 * IDLE)
    assert served(s)
    s.close()
    assert stop_summary(sp)["idle_closed"] == 0


@pytest.mark.slow
def test_idle_timeout_resets_a_peer_that_stopped_reading(backend, start_server):
    """A peer that sends until flow control stalls it and never reads moves no byte either way:
    the server resets it (RST: the echo it never read is dropped, which a FIN would hide) and
    counts it idle. The peer waits without reading, since reading would move bytes."""
    sp = start_server(backend, "--idle-timeout", IDLE_ARG, "--bufsize", "16k")
    s = connect(sp, rcvbuf=16384, sndbuf=16384)
    try:
        # The server may find it idle before this does: it stops reading first.
        push_until_stalled(s, Pattern(seed=5), 64 << 20, quiet=0.2, timeout=SLOW)
    except ConnectionResetError:
        pass
    p = select.poll()
    p.register(s, select.POLLERR | select.POLLHUP)
    deadline = time.monotonic() + SLOW
    while time.monotonic() < deadline:
        ev = p.poll(200)
        if ev and ev[0][1] & (select.POLLERR | select.POLLHUP):
            break
    else:
        pytest.fail(f"no reset within {SLOW} s of the stall")
    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    s.close()
    st = stop_summary(sp)
    assert st["idle_closed"] == 1, st
    assert err in (0, 104), f"SO_ERROR {err}"   # ECONNRESET, or already taken by poll


def test_max_conns_per_source(backend, start_server):
    """Cap 2: a third connection from 127.0.0.1 is refused (accepted and closed), one from
    127.0.0.2 is served, and once one of the first two closes 127.0.0.1 is served again."""
    sp = start_server(backend, "--max-conns-per-source", "2")
    first = [connect_from(sp, "127.0.0.1") for _ in range(2)]
    for i, s in enumerate(first):
        assert served(s, seed=i)
    third = connect_from(sp, "127.0.0.1")
    assert closed_by_server(third, timeout=SLOW), "a third connection from 127.0.0.1 was kept"
    third.close()
    other = connect_from(sp, "127.0.0.2")
    assert served(other, seed=7), "127.0.0.2 was refused"
    assert all(served(s, seed=9) for s in first)   # the refusals cost the admitted nothing
    first.pop().close()
    # The release is the server's, after our close reached it: retry within the deadline.
    deadline = time.monotonic() + SLOW
    while True:
        again = connect_from(sp, "127.0.0.1")
        if served(again, seed=11):
            break
        again.close()
        assert time.monotonic() < deadline, "127.0.0.1 still refused after one of its closed"
        time.sleep(0.05)
    for s in (*first, other, again):
        s.close()
    st = stop_summary(sp)
    assert st["refused"] >= 1, st
    assert st["accepted"] >= 4, st


SLOWLORIS_CONNS = 200
SLOWLORIS_SECONDS = 3


@pytest.mark.slow
@pytest.mark.parametrize("name", ["blocking", "poll", "epoll", "uring"])
def test_slowloris_does_not_starve_a_normal_client(name, start_server):
    """200 connections trickle one byte a second each for a few seconds; meanwhile a normal
    client's round trips all come back intact and each within a generous deadline, and every
    trickled byte is echoed too."""
    ok, why = _VARIANTS.get(name, (False, "echo-server is not built"))
    if not ok:
        pytest.skip(f"backend {name}: {why}")
    sp = start_server(name)
    lorises = [connect(sp) for _ in range(SLOWLORIS_CONNS)]
    normal = connect(sp)
    stream = Pattern(seed=3)
    got = [bytearray() for _ in lorises]
    rounds = 0
    for sec in range(SLOWLORIS_SECONDS):
        t_end = time.monotonic() + 1.0
        for i, s in enumerate(lorises):
            s.sendall(bytes([(i + sec) % 256]))
        while time.monotonic() < t_end:
            data = stream.at(rounds * 4096, 4096)
            # Liveness, not speed: each round trip within 10 s (the default recv deadline).
            assert roundtrip(normal, data, timeout=10.0) == data
            rounds += 1
            time.sleep(0.02)
    for i, s in enumerate(lorises):
        want = bytes((i + sec) % 256 for sec in range(SLOWLORIS_SECONDS))
        while len(got[i]) < len(want):
            s.settimeout(10.0)
            b = s.recv(64)
            assert b, f"slow connection {i} closed early"
            got[i] += b
        assert bytes(got[i]) == want
        s.close()
    normal.close()
    assert rounds >= SLOWLORIS_SECONDS
    st = stop_summary(sp)
    assert st["accepted"] == SLOWLORIS_CONNS + 1, st
    assert st["resets"] == 0, st


STORM_CONNECTS = 2000
STORM_BURST = 100
STORM_TIME = 60.0


@pytest.mark.slow
@pytest.mark.parametrize("name", ["blocking", "blocking:pool", "select", "poll", "epoll",
                                  "splice", "uring"])
def test_connect_storm_then_still_serves(name, start_server):
    """2000 connects in bursts of 100, each closed at once (every other one with RST, before
    the server may even have accepted it); after that the listener still accepts and echoes,
    and the server accounts for no more connections than were made."""
    ok, why = _VARIANTS.get(name, (False, "echo-server is not built"))
    if not ok:
        pytest.skip(f"backend {name}: {why}")
    sp = start_server(name)
    host, port = sp.host_port()
    deadline = time.monotonic() + STORM_TIME
    made = 0
    while made < STORM_CONNECTS:
        assert time.monotonic() < deadline, f"storm: only {made} connects in {STORM_TIME} s"
        burst = []
        for _ in range(STORM_BURST):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.connect_ex((host, port))
            burst.append(s)
        # Wait for the handshakes (writable) so that each is a real connection, boundedly.
        pending = list(burst)
        t_end = time.monotonic() + SLOW
        while pending and time.monotonic() < t_end:
            _, w, _ = select.select([], pending, [], 1.0)
            pending = [s for s in pending if s not in w]
        for j, s in enumerate(burst):
            if j % 2:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
            s.close()
        made += len(burst)
    s = connect(sp)
    assert served(s), "no echo after the storm"
    s.close()
    st = stop_summary(sp)
    assert st["accepted"] + st["refused"] <= STORM_CONNECTS + 1, st
    assert st["accepted"] >= 1, st


@pytest.mark.parametrize("args", [
    ("--idle-timeout", "0"),
    ("--idle-timeout", "x"),
    ("--idle-timeout", "1ms"),
    ("--idle-timeout", ""),
    ("--max-conns-per-source", "0"),
    ("--max-conns-per-source", "x"),
    ("--max-conns-per-source", "-1"),
])
def test_bad_values_are_usage_errors(args):
    """Each is one line on stderr, nothing on stdout, exit 2, before anything is bound."""
    server_exe()
    r = run_cli(*args, "--listen", "127.0.0.1:0")
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert args[0] in lines[0], r.stderr


def test_idle_closes_summed_over_threads_and_processes(start_server):
    """With --processes 2 --threads 2, every silent connection is closed, whichever worker
    of which process took it, and the one summary counts them all."""
    sp = start_server("epoll", "--idle-timeout", IDLE_ARG, "--processes", "2", "--threads", "2")
    socks = [connect(sp) for _ in range(8)]
    for i, s in enumerate(socks):
        assert closed_by_server(s, timeout=SLOW), f"connection {i} still open"
        s.close()
    st = stop_summary(sp)
    assert st["accepted"] == 8 and st["idle_closed"] == 8, st

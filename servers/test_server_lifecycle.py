"""echo-server, every usable backend: connections that end badly (RST mid-stream, reset before
accept, close without reading, vanished peers and SIGPIPE) free their resources and serving goes
on; SIGTERM/SIGINT stop it with exit 0 and one summary line whose numbers match the traffic;
pending echo is drained within --drain-timeout, and no longer."""
import os
import signal
import socket
import time

import pytest

from echobench_lib.server import Pattern
from echobench_lib.procfs import fd_count, tcp_sockets
from test_server_support import (alive, connect, expect_eof, payload, pump, push_until_stalled,
                                 roundtrip, set_linger0, stop_summary, wait_for)

TCP_CLOSE_WAIT = 8


def read_stream(s, stream, expect, timeout=30.0, pace=None):
    """Reads until EOF, reset or `expect` bytes, checking every byte against stream. `pace`
    (bytes, seconds) reads slowly. Returns (bytes read, how it ended: 'eof', 'reset' or
    'count')."""
    got = 0
    deadline = time.monotonic() + timeout
    while got < expect:
        left = deadline - time.monotonic()
        assert left > 0, f"timed out after {got} of {expect} bytes"
        s.settimeout(left)
        try:
            b = s.recv(pace[0] if pace else 1 << 20)
        except ConnectionResetError:
            return got, "reset"
        if not b:
            return got, "eof"
        assert b == stream.at(got, len(b)), f"echo differs in the {len(b)} bytes at {got}"
        got += len(b)
        if pace:
            time.sleep(pace[1])
    return got, "count"


def still_serves(sp):
    with connect(sp, timeout=5) as s:
        assert roundtrip(s, b"still here?", timeout=5) == b"still here?"


def quiet_fd_count(sp, timeout=10.0):
    """The server's fd count once it has stopped changing (closing the connections of earlier
    clients is asynchronous). Only still_serves() ran before: one connection, closed."""
    last, since = fd_count(sp.pid), time.monotonic()
    deadline = since + timeout
    while time.monotonic() < deadline and time.monotonic() - since < 0.5:
        time.sleep(0.02)
        n = fd_count(sp.pid)
        if n != last:
            last, since = n, time.monotonic()
    return last


def settled_fds(sp, baseline, timeout=30.0):
    """Waits for the server's fd count to come back to baseline; returns the last count."""
    wait_for(lambda: fd_count(sp.pid) <= baseline, timeout)
    return fd_count(sp.pid)


def test_sigterm_summary_counts(backend, start_server):
    sp = start_server(backend)
    with connect(sp) as a:
        assert pump(a, payload(1000, seed=1), shut_wr=True) == payload(1000, seed=1)
    with connect(sp) as b:
        assert roundtrip(b, payload(500, seed=2)) == payload(500, seed=2)
        b.shutdown(socket.SHUT_WR)
        expect_eof(b)
    st = stop_summary(sp)
    assert st == {"backend": backend, "accepted": 2, "refused": 0, "resets": 0,
                  "bytes_in": 1500, "bytes_out": 1500, "datagrams": 0, "dropped": 0,
                  "idle_closed": 0}


def test_sigint_exits_0_with_summary(backend, start_server):
    sp = start_server(backend)
    with connect(sp) as s:
        assert roundtrip(s, b"x" * 77) == b"x" * 77
    st = stop_summary(sp, signal.SIGINT)
    assert st["backend"] == backend and st["accepted"] == 1
    assert st["bytes_in"] == st["bytes_out"] == 77


def test_sigterm_with_idle_clients(backend, start_server):
    """Idle connections do not keep the server from stopping, and they end with a clean EOF
    (nothing was pending, so FIN, not RST)."""
    sp = start_server(backend)
    socks = [connect(sp) for _ in range(5)]
    for s in socks:
        assert roundtrip(s, b"hi") == b"hi"
    t0 = time.monotonic()
    st = stop_summary(sp)
    took = time.monotonic() - t0
    print(f"stopped in {took:.2f}s with nothing pending")
    # Generous: a server that waits out the 2 s drain deadline for nothing is slower still,
    # but only a server that never ends fails here; the strict figure is printed.
    assert took < 2.0 + 10, f"took {took:.1f}s to stop with nothing pending"
    assert st["accepted"] == 5
    for s in socks:
        expect_eof(s, timeout=2)
        s.close()


def test_sigterm_drains_pending_echo_to_slow_reader(backend, start_server):
    """SIGTERM while echo is pending for a client that reads slowly: the server keeps sending
    until the client has it all (within --drain-timeout), then exits 0. Everything it read
    was written out (bytes_out == bytes_in) and the client got a correct prefix of its data."""
    sp = start_server(backend, "--drain-timeout", "10s")
    stream = Pattern(seed=11)
    with connect(sp) as s:
        sent = push_until_stalled(s, stream, 64 << 20)
        assert sent < 64 << 20, "the server never stopped reading a client that does not read"
        sp.proc.send_signal(signal.SIGTERM)
        # The server is draining now, and the client still does not read. Whether it is
        # still alive after a while is no verdict (on a slow machine the stall seen above may
        # have been the server being late, with nothing pending): a server that exits with
        # echo pending fails the byte counts below.
        time.sleep(0.5)
        got, how = read_stream(s, stream, sent, timeout=20, pace=(256 * 1024, 0.005))
        sp.proc.wait(timeout=15)
    st = stop_summary(sp)
    assert st["bytes_out"] == st["bytes_in"], f"pending echo was dropped: {st}"
    assert got <= st["bytes_out"] <= sent
    if how == "eof":      # the server had read everything: a clean close, all echoed
        assert got == st["bytes_out"]


def test_drain_timeout_bounds_the_wait(backend, start_server):
    """A client that never reads cannot keep a stopping server alive beyond --drain-timeout,
    and the server does try until then."""
    # The property needs echo pending in the server when it stops. A quiet send window is only a
    # guess at that (a server that was not scheduled for `quiet` seconds looks stalled too); the
    # summary's byte counts tell afterwards, so a guess that was wrong is taken again, longer.
    tried = []
    for quiet in (0.5, 1.0, 2.0):
        sp = start_server(backend, "--drain-timeout", "1s")
        stream = Pattern(seed=12)
        with connect(sp) as s:
            push_until_stalled(s, stream, 64 << 20, quiet=quiet)
            t0 = time.monotonic()
            st = stop_summary(sp, timeout=10)
            took = time.monotonic() - t0
        print(f"stopped after {took:.2f}s with --drain-timeout 1s: {st}")
        if st["bytes_out"] < st["bytes_in"]:
            break
        # Nothing was pending: stopping at once was right, and says nothing of the deadline.
        assert took < 1.0 + 10, f"stopped after {took:.2f}s with nothing pending"
        tried.append(quiet)
    else:
        pytest.fail(f"the server never held unsent echo after the client stalled (quiet "
                    f"windows {tried} s): it does not stop reading when it cannot send")
    # The lower bound is the property (it tried until the deadline); the upper one only
    # catches a server that ignores the deadline, so it is generous.
    assert 0.7 < took < 1.0 + 10, f"stopped after {took:.2f}s with --drain-timeout 1s"


def test_rst_mid_stream(backend, start_server):
    """Clients that reset (SO_LINGER 0) in the middle of a stream, with echo pending both ways:
    each is freed and counted as a reset, and serving goes on."""
    sp = start_server(backend)
    still_serves(sp)
    baseline = quiet_fd_count(sp)
    stream = Pattern(seed=13)
    for _ in range(5):
        s = connect(sp)
        push_until_stalled(s, stream, 512 * 1024, quiet=0.2)
        set_linger0(s)
        s.close()
    assert settled_fds(sp, baseline) == baseline, "reset connections were not closed"
    still_serves(sp)
    st = stop_summary(sp)
    assert st["resets"] >= 5, st


def test_reset_before_accept(backend, start_server):
    """A client that connects and resets at once (the server may accept it already reset)."""
    sp = start_server(backend)
    still_serves(sp)
    baseline = quiet_fd_count(sp)
    for _ in range(50):
        s = connect(sp)
        set_linger0(s)
        s.close()
    assert settled_fds(sp, baseline) == baseline
    still_serves(sp)
    assert alive(sp)


def test_close_without_reading(backend, start_server):
    """Clients that send a lot and close without reading their echo (the kernel answers the
    server's data with RST)."""
    sp = start_server(backend)
    still_serves(sp)
    baseline = quiet_fd_count(sp)
    stream = Pattern(seed=14)
    for n in (1, 1000, 1 << 20):
        s = connect(sp)
        push_until_stalled(s, stream, n, quiet=0.2)
        s.close()
    assert settled_fds(sp, baseline) == baseline
    still_serves(sp)


def test_sigpipe_never_kills(backend, start_server):
    """Writing to a peer that is gone raises SIGPIPE unless the server prevents it
    (MSG_NOSIGNAL or ignoring the signal). On a unix socket this is deterministic: the client
    fills the server's buffers without reading and closes; the server's next send to it fails
    with EPIPE. (Over TCP the same needs the server's socket in CLOSE-WAIT with echo owed when
    the RST comes, which depends on buffer autotuning: not reliable enough for a test.)"""
    path = f"/tmp/echo-sigpipe-{os.getpid()}-{backend}.sock"
    sp = start_server(backend, "--listen", f"unix:{path}")
    try:
        stream = Pattern(seed=16)
        for _ in range(5):
            s = connect(sp)
            push_until_stalled(s, stream, 64 << 20, quiet=0.2)
            s.close()
            time.sleep(0.05)
            assert alive(sp), f"server died: exit status {sp.proc.returncode} (-13 is SIGPIPE)"
        still_serves(sp)
        st = stop_summary(sp)
        assert st["resets"] == 5, st
    finally:
        if os.path.exists(path):
            os.unlink(path)


def test_no_fd_leak_and_no_close_wait(backend, start_server):
    """Hundreds of connect/echo/close cycles of every kind: the server's fd count comes back
    to where it was and none of its sockets is left in CLOSE-WAIT."""
    sp = start_server(backend)
    still_serves(sp)
    baseline = quiet_fd_count(sp)
    port = sp.host_port()[1]
    for i in range(150):
        s = connect(sp)
        assert roundtrip(s, b"%d" % i) == b"%d" % i
        kind = i % 3
        if kind == 0:          # orderly: half-close, read EOF, close
            s.shutdown(socket.SHUT_WR)
            expect_eof(s)
        elif kind == 1:        # plain close
            pass
        else:                  # reset
            set_linger0(s)
        s.close()
    assert settled_fds(sp, baseline) == baseline, "connections were not closed"
    assert wait_for(lambda: not [t for t in tcp_sockets(port) if t[2] == TCP_CLOSE_WAIT], 30.0), \
        f"server sockets left in CLOSE-WAIT: {tcp_sockets(port)}"
    still_serves(sp)
    st = stop_summary(sp)
    assert st["accepted"] == 152
    assert st["bytes_in"] == st["bytes_out"]

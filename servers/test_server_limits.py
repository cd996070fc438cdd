"""echo-server under pressure, every usable backend: a client that does not read stalls only
itself and server memory stays bounded; --max-conns; running out of fds (EMFILE) without a busy
spin; select's FD_SETSIZE limit.

No verdict here depends on the machine's speed: every wait is a generous deadline for something
that a correct server does at once (it fails only when the server never does it), time bounds
are derived from a measurement of the same server in the same run, and strict figures are
printed, not asserted. They must pass with everything on one CPU shared with a busy loop:
  taskset -c 0 sh -c 'while :; do :; done' & BUSY=$!
  ECHOBENCH_BUILD=build taskset -c 0 /usr/bin/python3 -m pytest -q servers/test_server_limits.py
  kill $BUSY"""
import os
import resource
import select
import signal
import socket
import time

import pytest

from echobench_lib.procfs import fd_count, proc_cpu_seconds, rss_kib
from echobench_lib.server import Pattern
from test_server_support import (alive, closed_by_server, connect, echo_many, is_event_loop,
                                 payload, push_until_stalled, roundtrip, start_limited,
                                 stop_summary, summary, wait_for)

PUSH_LIMIT = 256 << 20   # far beyond what kernel buffers and a bounded server can absorb
PUSH_TIME = 120.0        # a server that keeps reading absorbs PUSH_LIMIT long before this
RSS_GROWTH_MAX = 64 << 10   # KiB
SLOW = 30.0              # a generous deadline for what a correct server does at once
IDLE_CPU_SHARE = 0.1     # CPU seconds per second that an idle server may use: a spin uses all
IDLE_WINDOWS = 10        # a spin fails every window; a server still busy with earlier work
                         # passes once it is done


def rtt_bound(warmup):
    """Liveness, not speed: B's round trips beside a stalled A may not take more than 100
    times the slowest warm-up round trip of the same server in the same run (a stalled loop
    takes forever), nor less than 2 s (scheduling hiccups of a busy machine)."""
    return max(2.0, 100 * max(warmup))


class Timed:
    """Round trips on one connection, timed, with a count of the bytes echoed."""

    def __init__(self, s):
        self.s, self.bytes = s, 0

    def __call__(self, data):
        t0 = time.monotonic()
        assert roundtrip(self.s, data, timeout=10) == data
        self.bytes += len(data)
        return time.monotonic() - t0


def test_nonreading_client_stalls_only_itself(backend, start_server):
    """Client A sends as fast as it can and never reads. A must end up stalled by flow control
    (the server stops reading it), the server's memory must not grow with what A pushes, client
    B's round trips must stay fast all along, and when A finally reads, every byte it sent
    comes back intact and in order."""
    sp = start_server(backend)
    stream = Pattern(seed=21)
    b = connect(sp)
    a = connect(sp)
    rt = Timed(b)
    # Warm up (lazily allocated buffers, threads, rings) and measure this run's round trip.
    bound = rtt_bound([rt(payload(1000, seed=i)) for i in range(20)])
    rss0 = rss_kib(sp.pid)

    slowest = 0.0
    pushed = 0
    a.setblocking(False)
    deadline = time.monotonic() + PUSH_TIME
    last_rtt = 0.0
    while pushed < PUSH_LIMIT and time.monotonic() < deadline:
        # Not writable for a second: stalled. (On a slow machine the server may only be
        # late; A is then "stalled" too early, which weakens nothing below: A still must get
        # every byte back, B must still be served, memory must still stay bounded.)
        _, w, _ = select.select([], [a], [], 1.0)
        if not w:
            break
        try:
            pushed += a.send(stream.at(pushed, 65536))
        except BlockingIOError:
            pass
        if time.monotonic() - last_rtt > 0.05:
            slowest = max(slowest, rt(b"ping" * 25))
            last_rtt = time.monotonic()
    a.setblocking(True)
    a.settimeout(10)
    assert pushed < PUSH_LIMIT and time.monotonic() < deadline, (
        f"client A pushed {pushed >> 20} MiB in {PUSH_TIME:.0f}s without stalling: the server "
        "keeps reading a client that does not read")

    # A is stalled now; B goes on.
    for i in range(20):
        slowest = max(slowest, rt(payload(100, seed=100 + i)))
    grown = rss_kib(sp.pid) - rss0
    print(f"A pushed {pushed >> 10} KiB before stalling; server RSS grew {grown} KiB; "
          f"B's slowest round trip {slowest * 1000:.1f} ms (bound {bound:.2f} s)")
    assert slowest < bound, f"B's slowest round trip took {slowest:.2f}s beside A"
    assert grown < RSS_GROWTH_MAX, (
        f"server RSS grew {grown >> 10} MiB while A pushed {pushed >> 20} MiB")

    # A reads at last: all of it, in order, then a clean end.
    got = 0
    while got < pushed:
        chunk = a.recv(1 << 20)
        assert chunk, f"EOF after {got} of {pushed} bytes"
        assert chunk == stream.at(got, len(chunk)), f"echo differs at offset {got}"
        got += len(chunk)
    a.shutdown(socket.SHUT_WR)
    assert a.recv(1) == b""
    assert rt(b"after") < bound
    a.close()
    b.close()
    st = stop_summary(sp)
    assert st["bytes_in"] == st["bytes_out"] == pushed + rt.bytes, st
    assert st["accepted"] == 2 and st["resets"] == 0, st


STALLED_CLIENTS = 16
STALLED_KIB_MAX = 512    # server memory per stalled client; one 64 KiB buffer is the design


def test_many_stalled_clients_hold_bounded_memory(backend, start_server):
    """32 clients send without reading until flow control stops them. The server may hold
    about one echo buffer for each, not what the kernel can hand it at once: a multishot
    receive that is not stopped in time (io_uring) fills buffer after buffer (2.4 MB per
    client was seen), and past the buffer pool the other clients starve. Every byte sent must
    still come back once the clients read. Every backend and variant (uring:sqpoll too)."""
    sp = start_server(backend)
    warm = connect(sp)
    for i in range(20):     # lazily allocated rings, buffers, threads: before rss0
        assert roundtrip(warm, payload(1000, seed=i), timeout=SLOW) == payload(1000, seed=i)
    rss0 = rss_kib(sp.pid)
    clients = [(connect(sp), Pattern(300 + k))
               for k in range(STALLED_CLIENTS)]
    pushed = [push_until_stalled(s, stream, PUSH_LIMIT, quiet=0.3, timeout=SLOW)
              for s, stream in clients]
    time.sleep(0.5)         # completions still on their way are in the figure too
    grown = rss_kib(sp.pid) - rss0
    print(f"{STALLED_CLIENTS} stalled clients pushed {sum(pushed) >> 10} KiB; server RSS grew "
          f"{grown} KiB, {grown / STALLED_CLIENTS:.0f} KiB per client")
    assert grown < STALLED_CLIENTS * STALLED_KIB_MAX, (
        f"server RSS grew {grown} KiB for {STALLED_CLIENTS} clients that do not read "
        f"({grown // STALLED_CLIENTS} KiB each; bound {STALLED_KIB_MAX})")
    for (s, stream), sent in zip(clients, pushed):
        s.setblocking(True)
        s.settimeout(SLOW)
        s.shutdown(socket.SHUT_WR)
        got = 0
        while got < sent:
            chunk = s.recv(1 << 20)
            assert chunk, f"EOF after {got} of {sent} bytes"
            assert chunk == stream.at(got, len(chunk)), f"echo differs at offset {got}"
            got += len(chunk)
        assert s.recv(1) == b""
        s.close()
    warm.close()


def test_max_conns(backend, start_server):
    sp = start_server(backend, "--max-conns", "2")
    a, b = connect(sp), connect(sp)
    assert roundtrip(a, b"a") == b"a" and roundtrip(b, b"b") == b"b"
    refused = 0
    c = connect(sp)            # the third: accepted and closed at once
    assert closed_by_server(c, timeout=SLOW), "the connection beyond --max-conns was served"
    refused += 1
    c.close()
    assert roundtrip(a, b"a2") == b"a2" and roundtrip(b, b"b2") == b"b2"
    a.close()
    # A's slot comes free once the server has seen A go (asynchronous): retry until served.
    served = None
    deadline = time.monotonic() + SLOW
    while served is None and time.monotonic() < deadline:
        d = connect(sp)
        try:
            served = d if roundtrip(d, b"d", timeout=SLOW) == b"d" else None
        except (AssertionError, ConnectionResetError, BrokenPipeError):
            refused += 1
            d.close()
            time.sleep(0.05)
    assert served, "no connection served after one of the two closed"
    served.close()
    b.close()
    st = stop_summary(sp)
    assert st["accepted"] == 3 and st["refused"] == refused, st


def test_connect_burst_while_server_is_busy(backend, start_server):
    """The listen backlog is large (SOMAXCONN), not 5: 300 clients connecting while the server
    is not accepting at all (stopped) all complete their handshake at once, and all are served
    once it runs again."""
    sp = start_server(backend)
    os.kill(sp.pid, signal.SIGSTOP)
    socks = []
    try:
        for i in range(300):
            try:
                socks.append(connect(sp, timeout=SLOW))   # the kernel's handshake
            except socket.timeout:
                pytest.fail(f"connect #{i} did not complete while the server was busy: "
                            "listen backlog too small")
    finally:
        os.kill(sp.pid, signal.SIGCONT)
    try:
        datas = [b"%03d" % i for i in range(300)]
        assert echo_many(socks, datas, timeout=2 * SLOW) == datas
    finally:
        for s in socks:
            s.close()
    st = stop_summary(sp)
    assert st["accepted"] == 300 and st["refused"] == 0, st


def test_emfile_no_busy_spin_and_recovery(backend):
    """The server runs with 64 fds and gets 100 connections. It must not spin while it cannot
    accept (its CPU over an idle second falls low: a spin never does, a server still busy with
    the burst does once it is done), must keep serving the connections it has, and must serve
    new clients again once fds are free."""
    sp = start_limited(backend, 64)
    socks = []
    try:
        held = [connect(sp) for _ in range(10)]
        for i, s in enumerate(held):
            assert roundtrip(s, b"%d" % i) == b"%d" % i
        for _ in range(100):
            socks.append(connect(sp, timeout=SLOW))   # completes in the backlog if not accepted
        shares = []
        while len(shares) < IDLE_WINDOWS and (not shares or shares[-1] >= IDLE_CPU_SHARE):
            cpu0, t0 = proc_cpu_seconds(sp.pid), time.monotonic()
            time.sleep(1.0)
            shares.append((proc_cpu_seconds(sp.pid) - cpu0) / (time.monotonic() - t0))
        print("server CPU share per idle second at EMFILE: " +
              " ".join(f"{x:.2f}" for x in shares))
        assert shares[-1] < IDLE_CPU_SHARE, \
            f"server kept using CPU at EMFILE for {len(shares)} idle seconds: {shares}"
        assert alive(sp)
        for i, s in enumerate(held):
            assert roundtrip(s, b"again %d" % i) == b"again %d" % i
        for s in socks + held:
            s.close()
        socks = []
        served = False
        deadline = time.monotonic() + SLOW
        while not served and time.monotonic() < deadline:
            with connect(sp) as s:
                try:
                    served = roundtrip(s, b"back", timeout=SLOW) == b"back"
                except (AssertionError, ConnectionResetError):
                    time.sleep(0.1)
        assert served, "the server did not serve again after fds were freed"
        st = stop_summary(sp)
        assert st["refused"] >= 1, st
    finally:
        for s in socks:
            s.close()
        sp.stop(signal.SIGKILL)


def test_select_refuses_fds_beyond_fd_setsize(start_server):
    """select cannot watch fds >= FD_SETSIZE (1024). With a limit that allows more, connections
    that land on such fds are refused (closed), counted, logged once, and everything else is
    served, before and after."""
    from conftest import _BACKENDS
    if not _BACKENDS.get("select", (False,))[0]:
        pytest.skip("select backend not usable")
    total = 1100
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < total + 200:
        pytest.skip(f"fd hard limit {hard} is too low for {total} client sockets")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, total + 200), hard))
    sp = start_limited("select", 1500)
    socks = []
    try:
        for _ in range(total):
            socks.append(connect(sp, timeout=SLOW))
        # Each connection is either echoed or closed by the server, however long the server
        # takes to get to it: a round trip tells which, with no time window.
        served, refused = [], []
        for i, s in enumerate(socks):
            (served if echoed_or_closed(s, b"%d" % i) else refused).append(s)
        assert len(refused) >= total - 1024 + 1, (len(served), len(refused))
        assert len(served) >= 900, (len(served), len(refused))
        assert alive(sp)
        # Freeing low fds makes room again.
        for s in served[:50]:
            s.close()
        ok = wait_for(lambda: fd_count(sp.pid) <= 1024 - 40, SLOW)
        assert ok, f"server holds {fd_count(sp.pid)} fds after 50 clients left"
        with connect(sp) as s:
            assert roundtrip(s, b"room again") == b"room again"
        rc, err = sp.stop(signal.SIGTERM)
        assert rc == 0, err
        st = summary(err)
        assert st["refused"] == len(refused), (st, len(refused))
        assert st["accepted"] == len(served) + 1
        others = [l for l in err.splitlines() if not l.startswith("echo-server: stopped:")]
        assert len(others) <= 1, f"refusals should be logged once, stderr: {others[:5]}"
    finally:
        for s in socks:
            s.close()
        sp.stop(signal.SIGKILL)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def echoed_or_closed(s, data):
    """True when data comes back, False when the server closes (EOF or reset) instead; fails
    when neither happens within SLOW."""
    got = b""
    s.settimeout(SLOW)
    try:
        s.sendall(data)
        while len(got) < len(data):
            chunk = s.recv(len(data) - len(got))
            if not chunk:
                return False
            got += chunk
    except (ConnectionResetError, BrokenPipeError):
        return False
    except socket.timeout:
        pytest.fail(f"neither echoed nor closed within {SLOW:.0f}s ({len(got)} bytes back)")
    assert got == data, f"{data!r} echoed as {got!r}"
    return True


IDLE_CONNS = 500             # below FD_SETSIZE with room to spare, for select
IDLE_KIB_PER_CONN = 2.0      # a 64 KiB echo buffer held per idle connection is 4+ KiB of RSS


def test_idle_connections_hold_no_echo_buffer(backend, start_server):
    """An idle connection holds no echo buffer: after each of IDLE_CONNS connections has echoed
    one message and gone quiet, the server's RSS has grown by less than IDLE_KIB_PER_CONN per
    connection (a property of the allocation, not of speed)."""
    if not is_event_loop(backend):
        pytest.skip(f"{backend} holds a thread and its stack per connection by design")
    sp = start_server(backend)
    warm = [connect(sp) for _ in range(20)]
    for i, s in enumerate(warm):
        assert roundtrip(s, payload(128, seed=i)) == payload(128, seed=i)
    rss0 = rss_kib(sp.pid)
    socks = []
    try:
        for i in range(IDLE_CONNS):
            s = connect(sp)
            socks.append(s)
            assert roundtrip(s, payload(128, seed=i)) == payload(128, seed=i)
        per_conn = (rss_kib(sp.pid) - rss0) / IDLE_CONNS
        print(f"{backend}: {per_conn:.2f} KiB of server RSS per idle connection")
        assert per_conn < IDLE_KIB_PER_CONN, \
            f"{per_conn:.2f} KiB of RSS per idle connection: buffers held while idle"
    finally:
        for s in socks + warm:
            s.close()

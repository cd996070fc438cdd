"""echo-server, every usable backend: the ready line, byte-exact echo (small, 1 MiB full duplex,
byte by byte, random fragments), half-close, IPv6, unix sockets, dual stack, many clients,
--threads and --bufsize."""
import os
import random
import re
import select
import shutil
import socket
import tempfile
import time

import pytest

from conftest import ServerProcess, usable_backends
from echobench_lib.procfs import thread_count
from test_server_support import (alive, connect, echo_many, expect_eof, is_event_loop, needs_ipv6,
                                 payload, pump, recv_exact, roundtrip, server_exe, stays_open)


@pytest.fixture
def sockdir():
    d = tempfile.mkdtemp(prefix="echo-test-", dir="/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_ready_line(backend, start_server):
    sp = start_server(backend)
    assert len(sp.listening) == 1, sp.listening
    m = re.fullmatch(r"127\.0\.0\.1:(\d+)", sp.listening[0])
    assert m, f"ready line is 'listening {sp.listening[0]}'"
    assert 0 < int(m[1]) < 65536
    # The line comes once the server accepts: the first connect right after it is served.
    with connect(sp) as s:
        assert roundtrip(s, b"ready?") == b"ready?"


def test_ready_line_per_listener(backend, start_server, sockdir):
    path = os.path.join(sockdir, "x.sock")
    sp = start_server(backend, "--listen", "127.0.0.1:0", "--listen", f"unix:{path}")
    assert len(sp.listening) == 2, sp.listening
    tcp = [a for a in sp.listening if re.fullmatch(r"127\.0\.0\.1:[1-9]\d*", a)]
    assert len(tcp) == 1 and f"unix:{path}" in sp.listening, sp.listening
    for addr in sp.listening:
        with connect(addr) as s:
            assert roundtrip(s, addr.encode()) == addr.encode()


def test_default_listen_address():
    """Without --listen the server listens on 127.0.0.1:7007 (one backend suffices)."""
    backends = usable_backends()
    if not backends:
        pytest.skip("no usable backend")
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", 7007))
        except OSError:
            pytest.skip("127.0.0.1:7007 is in use here")
    try:
        sp = ServerProcess([server_exe(), "--backend", backends[0]], ready_timeout=30)
    except RuntimeError as e:
        if "in use" in str(e):
            pytest.skip("127.0.0.1:7007 was taken meanwhile")
        raise
    try:
        assert sp.listening == ["127.0.0.1:7007"]
    finally:
        sp.stop()


def test_small_echo(backend, start_server):
    sp = start_server(backend)
    with connect(sp) as s:
        assert roundtrip(s, b"hello, echo\n") == b"hello, echo\n"
        every_byte = bytes(range(256))
        assert roundtrip(s, every_byte) == every_byte
        # Never closes first, and sends nothing unasked.
        assert stays_open(s, 0.3), "the server sent more data, EOF or a reset unasked"
        assert roundtrip(s, b"again") == b"again"


def test_1mib_full_duplex(backend, start_server):
    data = payload(1 << 20, seed=1)
    sp = start_server(backend)
    with connect(sp) as s:
        got = pump(s, data, timeout=30)
        assert len(got) == len(data)
        assert got == data
        s.shutdown(socket.SHUT_WR)
        expect_eof(s)


def test_byte_by_byte(backend, start_server):
    """Data sent one byte per segment, and echo read back one byte per recv."""
    sp = start_server(backend)
    data = payload(200, seed=2)
    with connect(sp) as s:
        for i in range(len(data)):
            s.sendall(data[i:i + 1])
            assert recv_exact(s, 1, timeout=30) == data[i:i + 1], f"byte {i}"
        block = payload(300, seed=3)
        s.sendall(block)
        back = b"".join(recv_exact(s, 1, timeout=30) for _ in block)
        assert back == block


def test_random_fragments(backend, start_server):
    """Random write sizes and random read sizes over one stream, interleaved."""
    rng = random.Random(4)
    data = payload(64 * 1024, seed=4)
    sp = start_server(backend)
    got = bytearray()
    with connect(sp) as s:
        sent = 0
        while sent < len(data):
            n = rng.choice((1, 2, 3, 7, 100, 1460, 1461, 4096, 9000))
            s.sendall(data[sent:sent + n])
            sent += n
            want = rng.randint(0, max(0, min(sent, len(data)) - len(got)))
            if want:
                got += recv_exact(s, want, timeout=30)
        got += recv_exact(s, len(data) - len(got), timeout=30)
        assert bytes(got) == data


@pytest.mark.parametrize("n", [0, 5, 100000])
def test_half_close(backend, start_server, n):
    """send N, SHUT_WR, then exactly N bytes back and a clean EOF (not a reset)."""
    data = payload(n, seed=n)
    sp = start_server(backend)
    with connect(sp) as s:
        got = pump(s, data, timeout=20, shut_wr=True)   # raises on ECONNRESET
        assert len(got) == n
        assert got == data
        expect_eof(s)


def test_half_close_slow_reader(backend, start_server):
    """4 MiB sent before reading much, SHUT_WR while megabytes of echo are still owed, then a
    pause: all of it still arrives, then EOF."""
    data = payload(4 << 20, seed=5)
    sp = start_server(backend)
    assert push_then_half_close(sp, data, trickle=16384, pause=0.5) == data


def test_half_close_with_echo_pending_in_server(backend, start_server):
    """With a large --bufsize the server reads all 6 MiB and the FIN while most of the echo is
    still in its own buffer (the client has not read yet): none of it may be dropped."""
    data = payload(6 << 20, seed=9)
    sp = start_server(backend, "--bufsize", "8M")
    # Backends that cannot buffer that much (blocking) need the client to read a little.
    assert push_then_half_close(sp, data, trickle=65536, pause=0.3) == data


@needs_ipv6
def test_ipv6(backend, start_server):
    sp = start_server(backend, "--listen", "[::1]:0")
    assert len(sp.listening) == 1 and re.fullmatch(r"\[::1\]:[1-9]\d*", sp.listening[0]), \
        sp.listening
    with connect(sp) as s:
        assert s.family == socket.AF_INET6
        data = payload(100000, seed=6)
        assert pump(s, data, shut_wr=True) == data


def test_host_name_address(backend, start_server):
    """HOST:PORT goes through getaddrinfo; the ready line gives the numeric address."""
    sp = start_server(backend, "--listen", "localhost:0")
    assert len(sp.listening) == 1, sp.listening
    assert re.fullmatch(r"(127\.0\.0\.1|\[::1\]):[1-9]\d*", sp.listening[0]), sp.listening
    with connect(sp) as s:
        assert roundtrip(s, b"by name") == b"by name"


def test_unix_socket(backend, start_server, sockdir):
    path = os.path.join(sockdir, "x.sock")
    sp = start_server(backend, "--listen", f"unix:{path}")
    assert sp.listening == [f"unix:{path}"]
    with connect(sp) as s:
        assert s.family == socket.AF_UNIX
        assert roundtrip(s, b"over unix") == b"over unix"
        data = payload(1 << 20, seed=7)
        assert pump(s, data) == data
    with connect(sp) as s:
        assert pump(s, b"12345", shut_wr=True) == b"12345"


@needs_ipv6
def test_dual_stack(backend, start_server):
    sp = start_server(backend, "--listen", "[::]:0")
    assert len(sp.listening) == 1 and re.fullmatch(r"\[::\]:[1-9]\d*", sp.listening[0]), \
        sp.listening
    port = sp.host_port()[1]
    for addr in (f"127.0.0.1:{port}", f"[::1]:{port}"):
        with connect(addr) as s:
            assert roundtrip(s, addr.encode()) == addr.encode(), addr


def test_200_concurrent_clients(backend, start_server):
    """200 connections open at once, each with its own data (16 KiB, enough to need several
    buffers each at the same time): no cross-talk, nothing lost."""
    sp = start_server(backend)
    socks = [connect(sp) for _ in range(200)]
    try:
        datas = [b"%04d:" % i + payload(16 * 1024, seed=1000 + i) for i in range(200)]
        got = echo_many(socks, datas, timeout=60)
        bad = [i for i in range(200) if got[i] != datas[i]]
        assert not bad, f"{len(bad)} clients got wrong echo, e.g. #{bad[0]}: " \
                        f"{len(got[bad[0]])} bytes, starts {got[bad[0]][:5]!r}"
    finally:
        for s in socks:
            s.close()
    assert alive(sp)


@pytest.mark.parametrize("threads", [2])
def test_threads(backend, start_server, threads):
    if not is_event_loop(backend):
        pytest.skip("--threads is for the event-loop backends")
    one = start_server(backend, "--threads", "1")
    sp = start_server(backend, "--threads", threads)
    assert len(sp.listening) == 1, sp.listening
    # One more worker thread than with --threads 1.
    assert thread_count(sp.pid) > thread_count(one.pid)
    # SO_REUSEPORT spreads connections over the workers' listeners: with 40 connections both
    # get some, so one worker that does not serve makes some of them hang.
    socks = [connect(sp) for _ in range(40)]
    try:
        datas = [payload(5000, seed=2000 + i) for i in range(40)]
        assert echo_many(socks, datas, timeout=30) == datas
    finally:
        for s in socks:
            s.close()


@pytest.mark.parametrize("bufsize", ["1", "1k"])
def test_small_bufsize(backend, start_server, bufsize):
    """--bufsize far below the data size: the echo stays exact, in both directions at once."""
    sp = start_server(backend, "--bufsize", bufsize)
    data = payload(256 * 1024 if bufsize == "1k" else 20000, seed=8)
    with connect(sp) as s:
        assert pump(s, data, timeout=30, shut_wr=True) == data


def push_then_half_close(sp, data, trickle, pause):
    """Sends all of data without blocking, reading at most `trickle` bytes at a time and only
    when sending is stuck, then SHUT_WR, waits `pause` s, and reads to EOF. Returns what came
    back (asserting it never exceeds what was sent)."""
    with connect(sp) as s:
        s.setblocking(False)
        sent, got = 0, bytearray()
        deadline = time.monotonic() + 30
        while sent < len(data):
            assert time.monotonic() < deadline, f"stuck at {sent} sent, {len(got)} received"
            try:
                sent += s.send(data[sent:sent + 65536])
            except BlockingIOError:
                select.select([s], [], [], 0.5)
                try:
                    got += s.recv(trickle)
                except BlockingIOError:
                    pass
        s.shutdown(socket.SHUT_WR)
        time.sleep(pause)
        s.setblocking(True)
        s.settimeout(10)
        while True:
            b = s.recv(1 << 20)
            if not b:
                break
            got += b
            assert len(got) <= len(data)
        return bytes(got)

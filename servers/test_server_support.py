"""Helpers shared by the echo-server tests (servers/test_server_*.py); it holds no tests itself.

Every socket gets a timeout and every wait a deadline: a server that hangs makes a test fail
with a message, never hang. Data is the driver's seeded Pattern, so a failure repeats. Addresses,
sockets and /proc CPU time come from the driver's own helpers (scripts/echobench_lib).
"""
import re
import select
import socket
import struct
import subprocess
import time

import pytest

from conftest import ServerProcess, binary
from echobench_lib import net
from echobench_lib.server import Pattern

IO_TIMEOUT = 10.0
SUMMARY_RE = re.compile(
    r"echo-server: stopped: backend=(?P<backend>\S+) accepted=(?P<accepted>\d+) "
    r"refused=(?P<refused>\d+) resets=(?P<resets>\d+) bytes_in=(?P<bytes_in>\d+) "
    r"bytes_out=(?P<bytes_out>\d+) datagrams=(?P<datagrams>\d+) dropped=(?P<dropped>\d+) "
    r"idle_closed=(?P<idle_closed>\d+)")


def is_event_loop(backend):
    """Every backend and variant but blocking (thread per connection) runs event loops, which
    --threads multiplies. Variants are named BACKEND:VARIANT."""
    return backend.partition(":")[0] != "blocking"


def payload(n, seed=0):
    """n deterministic test bytes: the start of Pattern(seed)."""
    return Pattern(seed).at(0, n)


def connect(target, timeout=IO_TIMEOUT, nodelay=True, rcvbuf=None, sndbuf=None):
    """A connected TCP (or unix) socket to a ServerProcess or a listening text."""
    text = target if isinstance(target, str) else target.addr
    return net.connect(text, timeout, nodelay=nodelay, rcvbuf=rcvbuf, sndbuf=sndbuf)


def set_linger0(s):
    """close() will then send RST instead of FIN."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def recv_exact(s, n, timeout=IO_TIMEOUT):
    """Exactly n bytes; fails on early EOF or when they do not come in time."""
    buf = bytearray()
    deadline = time.monotonic() + timeout
    while len(buf) < n:
        left = deadline - time.monotonic()
        assert left > 0, f"timed out with {len(buf)} of {n} bytes received"
        s.settimeout(left)
        try:
            chunk = s.recv(min(n - len(buf), 1 << 20))
        except socket.timeout:
            raise AssertionError(f"timed out with {len(buf)} of {n} bytes received") from None
        assert chunk, f"EOF after {len(buf)} of {n} bytes"
        buf += chunk
    return bytes(buf)


def expect_eof(s, timeout=IO_TIMEOUT):
    """The next read is a clean EOF (not data, not a reset, not a timeout)."""
    s.settimeout(timeout)
    try:
        data = s.recv(65536)
    except socket.timeout:
        raise AssertionError("no EOF from the server in time") from None
    assert data == b"", f"expected EOF, got {len(data)} more bytes"


def stays_open(s, seconds=0.3):
    """True when nothing (no data, no EOF, no reset) arrives within `seconds`."""
    r, _, _ = select.select([s], [], [], seconds)
    return not r


def closed_by_server(s, timeout=3.0):
    """True when the server ended the connection (EOF or reset) within timeout, False when it
    is still open."""
    s.settimeout(timeout)
    try:
        return s.recv(65536) == b""
    except socket.timeout:
        return False
    except (ConnectionResetError, BrokenPipeError):
        return True


def pump(s, data, timeout=30.0, shut_wr=False, chunk=65536):
    """Sends data while reading the echo at the same time (one thread, select): neither side
    waits on the other, so any size works. With shut_wr, shuts down the write side after the
    last byte and reads until EOF; otherwise stops once len(data) bytes came back.
    Returns what was received."""
    view = memoryview(data)
    sent, got = 0, bytearray()
    done_writing = False
    deadline = time.monotonic() + timeout
    s.setblocking(False)
    try:
        while True:
            if not done_writing and sent == len(data):
                if shut_wr:
                    s.shutdown(socket.SHUT_WR)
                done_writing = True
            if done_writing and not shut_wr and len(got) >= len(data):
                break
            left = deadline - time.monotonic()
            assert left > 0, (f"timed out: sent {sent} of {len(data)}, received {len(got)}")
            r, w, _ = select.select([s], [] if done_writing else [s], [], min(left, 1.0))
            if w:
                try:
                    sent += s.send(view[sent:sent + chunk])
                except BlockingIOError:
                    pass
            if r:
                try:
                    b = s.recv(1 << 20)
                except BlockingIOError:
                    continue
                if not b:
                    assert shut_wr and done_writing, (
                        f"server closed first: sent {sent}, received {len(got)}")
                    break
                got += b
    finally:
        s.setblocking(True)
        s.settimeout(IO_TIMEOUT)
    return bytes(got)


def echo_many(socks, datas, timeout=30.0, shut_wr=True):
    """pump() for many connections at once; returns the list of what each received."""
    n = len(socks)
    sent = [0] * n
    got = [bytearray() for _ in range(n)]
    eof = [False] * n
    wdone = [False] * n
    for s in socks:
        s.setblocking(False)
    fdmap = {s.fileno(): i for i, s in enumerate(socks)}
    poller = select.poll()
    for s in socks:
        poller.register(s, select.POLLIN | select.POLLOUT)
    deadline = time.monotonic() + timeout
    pending = n
    while pending:
        left = deadline - time.monotonic()
        assert left > 0, (f"timed out: {pending} of {n} connections unfinished; e.g. "
                          + ", ".join(f"#{i}: sent {sent[i]} got {len(got[i])}"
                                      for i in range(n) if not eof[i])[:300])
        for fd, ev in poller.poll(min(left, 1.0) * 1000):
            i = fdmap[fd]
            s = socks[i]
            if ev & select.POLLOUT and not wdone[i]:
                try:
                    sent[i] += s.send(datas[i][sent[i]:sent[i] + 65536])
                except BlockingIOError:
                    pass
                if sent[i] == len(datas[i]):
                    wdone[i] = True
                    if shut_wr:
                        s.shutdown(socket.SHUT_WR)
                    poller.modify(s, select.POLLIN)
            if ev & (select.POLLIN | select.POLLHUP | select.POLLERR):
                try:
                    b = s.recv(1 << 20)
                except BlockingIOError:
                    continue
                if b:
                    got[i] += b
                    finished = not shut_wr and len(got[i]) >= len(datas[i])
                else:
                    assert shut_wr and wdone[i], f"#{i}: server closed first"
                    finished = True
                if finished and not eof[i]:
                    eof[i] = True
                    pending -= 1
                    poller.unregister(s)
    for s in socks:
        s.setblocking(True)
        s.settimeout(IO_TIMEOUT)
    return [bytes(g) for g in got]


def roundtrip(s, data, timeout=IO_TIMEOUT):
    s.sendall(data)
    return recv_exact(s, len(data), timeout)


def summary(stderr):
    """The summary line of a stopped server as a dict (backend: str, the rest ints); fails
    unless there is exactly one, as the last line."""
    # In the sanitizer build, UBSan reports and goes on: its report must still fail the test.
    assert "runtime error:" not in stderr and "Sanitizer" not in stderr, stderr
    lines = stderr.splitlines()
    found = [m for m in (SUMMARY_RE.fullmatch(line) for line in lines) if m]
    assert len(found) == 1, f"expected one summary line on stderr, got: {stderr!r}"
    assert SUMMARY_RE.fullmatch(lines[-1]), f"summary is not the last line: {stderr!r}"
    d = {k: int(v) for k, v in found[0].groupdict().items() if k != "backend"}
    d["backend"] = found[0]["backend"]
    return d


def stop_summary(sp, sig=None, timeout=15.0):
    """Stops sp with SIGTERM (or sig), checks exit 0 and returns the summary dict."""
    import signal as _signal
    rc, err = sp.stop(sig or _signal.SIGTERM, timeout=timeout)
    assert rc == 0, f"exit status {rc}, stderr {err!r}"
    return summary(err)


def wait_for(cond, timeout, interval=0.02):
    deadline = time.monotonic() + timeout
    while True:
        if cond():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


def alive(sp):
    return sp.proc.poll() is None


def have_ipv6():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


needs_ipv6 = pytest.mark.skipif(not have_ipv6(), reason="no IPv6 loopback (::1) here")


def server_exe():
    return binary("servers/echo-server")


def run_cli(*args, timeout=30.0, **kw):
    """echo-server run to completion (for options that make it exit)."""
    return subprocess.run([str(server_exe()), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, **kw)


def start_limited(backend, nofile, *args):
    """An echo-server whose fd limit (soft and hard) is nofile, through prlimit(1), which execs
    it (so .pid is the server's). The caller must stop it."""
    return ServerProcess(["prlimit", f"--nofile={nofile}:{nofile}", server_exe(),
                          "--backend", backend, "--listen", "127.0.0.1:0", *args])


def push_until_stalled(s, stream, limit, quiet=0.5, timeout=10.0):
    """Sends `stream` without reading until the socket stays unwritable for `quiet` seconds
    (the server stopped reading: flow control), `limit` bytes went out, or timeout.
    Returns the bytes sent."""
    s.setblocking(False)
    sent = 0
    deadline = time.monotonic() + timeout
    try:
        while sent < limit and time.monotonic() < deadline:
            _, w, _ = select.select([], [s], [], quiet)
            if not w:
                break
            try:
                sent += s.send(stream.at(sent, min(65536, limit - sent)))
            except BlockingIOError:
                pass
    finally:
        s.setblocking(True)
        s.settimeout(10)
    return sent

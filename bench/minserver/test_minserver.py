"""echo-minserver, the yardstick of bench/io_models.py: it must be a correct echo server (exact
bytes, backpressure that stalls only the client that does not read, bounded memory) or the
ratios against it mean nothing. Sizes and counts are fixed; nothing here depends on speed."""
import select
import signal
import socket
import subprocess
import time

import pytest

from conftest import ServerProcess, binary
from echobench_lib.server import Pattern, verify_echo


@pytest.fixture
def minserver():
    sp = ServerProcess([binary("bench/minserver/echo-minserver"), "--listen", "127.0.0.1:0"])
    yield sp
    sp.stop(signal.SIGKILL)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def test_echoes_exactly(minserver):
    assert minserver.addr.startswith("127.0.0.1:") and not minserver.addr.endswith(":0")
    # Up to 1 MiB: more than the 64 KiB buffer, so partial sends and EPOLLOUT are exercised.
    assert verify_echo(minserver.addr, [1, 128, 65536, 65537, 1 << 20], timeout=20) is None


def test_a_client_that_does_not_read_stalls_only_itself(minserver):
    host, port = minserver.host_port()
    rss0 = rss_kib(minserver.pid)
    stuck = socket.create_connection((host, port), timeout=5)
    stuck.setblocking(False)
    sent = bytearray()
    chunk = Pattern(3).chunk(0)
    deadline = time.monotonic() + 10
    # Write until the kernel stops taking bytes: the server must have stopped reading.
    while len(sent) < (256 << 20) and time.monotonic() < deadline:
        if not select.select([], [stuck], [], 0.5)[1]:
            break
        try:
            sent += chunk[:stuck.send(chunk)]
        except BlockingIOError:
            break
    assert len(sent) < (256 << 20), "the server kept reading from a client that never reads"
    assert rss_kib(minserver.pid) - rss0 < 4096, "memory grew with the unread echo"
    # Another client is served meanwhile.
    assert verify_echo(minserver.addr, [128, 4096], timeout=5) is None
    # And the stuck one gets every byte back, in order, once it reads.
    got = bytearray()
    stuck.setblocking(True)
    stuck.settimeout(10)
    while len(got) < len(sent):
        data = stuck.recv(1 << 20)
        assert data, f"closed after {len(got)} of {len(sent)} bytes"
        got += data
    assert got == sent
    stuck.close()


def test_sigterm_exits_zero(minserver):
    rc, _ = minserver.stop(signal.SIGTERM)
    assert rc == 0


@pytest.mark.parametrize("args", [["--listen", "nonsense"], ["--bogus"], ["extra"]])
def test_bad_usage_is_one_line_and_exit_2(args):
    p = subprocess.run([binary("bench/minserver/echo-minserver"), *args], capture_output=True,
                       text=True, timeout=10)
    assert p.returncode == 2
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr

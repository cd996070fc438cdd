"""echo-minserver, the yardstick of bench/io_models.py: it must be a correct echo server (exact
bytes, backpressure that stalls only the client that does not read, bounded memory) or the
ratios against it mean nothing; and with --cost-ns it must cost what it says, since the
power checks rest on it. Sizes and counts are fixed; nothing here depends on speed."""
import select
import signal
import socket
import subprocess
import time

import pytest

from conftest import ServerProcess, binary
from echobench_lib.procfs import CpuSample
from echobench_lib.server import Pattern, verify_echo


def start_minserver(*args):
    return ServerProcess([binary("bench/minserver/echo-minserver"), "--listen", "127.0.0.1:0",
                          *args])


@pytest.fixture
def minserver():
    sp = start_minserver()
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


def echo_round_trips(sock, msg, count):
    """count closed-loop round trips of msg on a blocking socket."""
    for _ in range(count):
        sock.sendall(msg)
        got = 0
        while got < len(msg):
            data = sock.recv(len(msg) - got)
            assert data, "the server closed the connection"
            got += len(data)


def test_cost_ns_adds_its_cpu_per_cost_unit():
    """--cost-ns N --cost-per 64 against the same server without it, in one run: 256-byte
    messages are 4 cost units each, so the server's CPU per message must grow by about 4 N.
    The rounds alternate between the two servers so that a busy spell of the machine falls on
    both. CPU time (schedstat) does not count time spent waiting for a CPU, so the property
    holds on a busy machine; half of the cost is the bound, which leaves room for the noise of
    the servers' own CPU per message, and four times it catches a unit error."""
    cost_ns, size, rounds, per_round = 20000, 256, 6, 150
    plain, costly = start_minserver(), start_minserver("--cost-ns", cost_ns, "--cost-per", 64)
    socks = {}
    try:
        cpu = {plain: 0.0, costly: 0.0}
        msg = Pattern(5).chunk(0)[:size]
        for sp in (plain, costly):
            socks[sp] = socket.create_connection(sp.host_port(), timeout=30)
            socks[sp].setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            echo_round_trips(socks[sp], msg, 10)   # connection set up, pages touched
        for r in range(rounds):
            for sp in ((plain, costly) if r % 2 == 0 else (costly, plain)):
                before = CpuSample.take(sp.pid)
                echo_round_trips(socks[sp], msg, per_round)
                cpu[sp] += before.delta(CpuSample.take(sp.pid))[0]
        msgs = rounds * per_round
        added_ns = (cpu[costly] - cpu[plain]) / msgs * 1e9
        units = size // 64
        assert added_ns >= 0.5 * units * cost_ns, (
            f"--cost-ns {cost_ns} added {added_ns:.0f} ns of server CPU per {size}-byte "
            f"message, expected about {units * cost_ns}")
        assert added_ns <= 4 * units * cost_ns, (
            f"--cost-ns {cost_ns} added {added_ns:.0f} ns per message, over 4x the "
            f"{units * cost_ns} ns asked")
        print(f"added {added_ns:.0f} ns per message ({units} x {cost_ns} asked)")
    finally:
        for s in socks.values():
            s.close()
        plain.stop(signal.SIGKILL)
        _, err = costly.stop(signal.SIGTERM)
    assert f"cost {cost_ns} ns of CPU per 64 bytes received" in err, err


def test_cost_keeps_the_echo_exact():
    sp = start_minserver("--cost-ns", 100, "--cost-per", "1k")
    try:
        assert verify_echo(sp.addr, [1, 1000, 65537, 1 << 20], timeout=20) is None
    finally:
        sp.stop(signal.SIGKILL)


@pytest.mark.parametrize("args", [["--listen", "nonsense"], ["--bogus"], ["extra"],
                                  ["--cost-ns", "-1"], ["--cost-ns", "abc"],
                                  ["--cost-ns", "100000001"], ["--cost-ns"],
                                  ["--cost-per", "0"], ["--cost-per", "1x"],
                                  ["--cost-per", "2G"]])
def test_bad_usage_is_one_line_and_exit_2(args):
    p = subprocess.run([binary("bench/minserver/echo-minserver"), *args], capture_output=True,
                       text=True, timeout=10)
    assert p.returncode == 2
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr

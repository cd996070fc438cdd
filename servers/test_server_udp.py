"""echo-server --udp (RFC 862 over UDP), every usable backend: each datagram comes back as one
identical datagram, any size from 0 to 65507 bytes; datagrams from source ports below 1024 are
dropped (no reflection loops between echo services); the summary counts both."""
import os
import re
import select
import socket

import pytest

from conftest import usable_backends

from echobench_lib.net import sockaddr
from echobench_lib.procfs import socket_inodes, tcp_inodes
from test_server_support import (alive, connect, needs_ipv6, payload, roundtrip,
                                 stop_summary)

SIZES = [0, 1, 1472, 65507]


def udp_socket(family=socket.AF_INET, bind=None):
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.settimeout(10)   # generous: only a datagram that never comes fails
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    if bind:
        s.bind(bind)
    return s


def udp_listener(sp):
    udp = [a for a in sp.listening if a.startswith("udp:")]
    assert len(udp) == 1, sp.listening
    return udp[0]


def nothing_arrives(s, seconds):
    r, _, _ = select.select([s], [], [], seconds)
    return not r


def test_udp_ready_line(backend, start_server):
    sp = start_server(backend, "--udp")
    m = re.fullmatch(r"udp:127\.0\.0\.1:([1-9]\d*)", udp_listener(sp))
    assert m, sp.listening
    # Same port as TCP, and TCP is still served.
    assert int(m[1]) == sp.host_port()[1]
    with connect(sp) as s:
        assert roundtrip(s, b"tcp too") == b"tcp too"


@pytest.mark.parametrize("size", SIZES)
def test_udp_sizes(backend, start_server, size):
    sp = start_server(backend, "--udp")
    _, addr = sockaddr(udp_listener(sp))
    data = payload(size, seed=size)
    with udp_socket() as s:
        s.sendto(data, addr)
        back, src = s.recvfrom(65536 + 1)
        assert len(back) == size
        assert back == data
        assert src == addr
        assert nothing_arrives(s, 0.1), "more than one datagram came back"


def test_udp_datagrams_stay_separate(backend, start_server):
    """A burst of datagrams of every size: each comes back whole, none merged or split, and
    the summary counts them."""
    sp = start_server(backend, "--udp")
    _, addr = sockaddr(udp_listener(sp))
    datas = [payload(n, seed=100 + n) for n in SIZES + [10, 9000]]
    with udp_socket() as s:
        for d in datas:
            s.sendto(d, addr)
        back = [s.recvfrom(65536 + 1)[0] for _ in datas]
        assert nothing_arrives(s, 0.1)
    assert sorted(back) == sorted(datas)
    st = stop_summary(sp)
    assert st["datagrams"] == len(datas)
    assert st["dropped"] == 0
    assert st["accepted"] == 0
    # Whether datagram bytes count in bytes_in/out is the server's choice (see the test below
    # for agreement between backends); they must at least balance.
    assert st["bytes_in"] == st["bytes_out"]
    assert st["bytes_in"] in (0, sum(map(len, datas)))


def test_udp_accounting_same_on_every_backend(start_server):
    """The same UDP traffic gives the same summary numbers on every backend: a report that
    compares backends must not compare different things."""
    seen = {}
    for b in usable_backends():
        sp = start_server(b, "--udp")
        _, addr = sockaddr(udp_listener(sp))
        with udp_socket() as s:
            for n in (0, 5, 1000):
                s.sendto(payload(n), addr)
                assert s.recvfrom(2000)[0] == payload(n)
        st = stop_summary(sp)
        seen[b] = {k: st[k] for k in ("accepted", "bytes_in", "bytes_out", "datagrams",
                                      "dropped")}
    if len(seen) < 2:
        pytest.skip("fewer than two usable backends")
    assert len({tuple(v.values()) for v in seen.values()}) == 1, seen


@needs_ipv6
def test_udp_ipv6(backend, start_server):
    sp = start_server(backend, "--udp", "--listen", "[::1]:0")
    text = udp_listener(sp)
    assert re.fullmatch(r"udp:\[::1\]:[1-9]\d*", text), sp.listening
    _, addr = sockaddr(text)
    with udp_socket(socket.AF_INET6) as s:
        for size in (0, 1000, 65507):
            data = payload(size, seed=size)
            s.sendto(data, addr)
            assert s.recvfrom(65536 + 1)[0] == data


def bind_privileged_udp():
    """A UDP socket bound to a free port below 1024 on 127.0.0.1 (needs root)."""
    for port in range(1023, 600, -1):
        s = udp_socket()
        try:
            s.bind(("127.0.0.1", port))
            return s
        except OSError:
            s.close()
    pytest.skip("no free UDP port below 1024")


def test_udp_privileged_source_dropped(backend, start_server):
    if os.geteuid() != 0:
        pytest.skip("binding a source port below 1024 needs root")
    sp = start_server(backend, "--udp")
    _, addr = sockaddr(udp_listener(sp))
    with bind_privileged_udp() as low:
        for _ in range(3):
            low.sendto(b"reflect me", addr)
        assert nothing_arrives(low, 0.5), "a datagram from a port below 1024 was echoed"
    # Still serving the others.
    with udp_socket() as s:
        s.sendto(b"fine", addr)
        assert s.recvfrom(100)[0] == b"fine"
    assert alive(sp)
    st = stop_summary(sp)
    assert st["datagrams"] == 1
    assert st["dropped"] == 3


def test_udp_prefix_in_listen_serves_udp_only(backend, start_server):
    """--listen udp:ADDR (the form echo-server prints for its UDP listeners) serves UDP on that
    address and nothing else: no TCP listener, no ready line without udp:."""
    sp = start_server(backend, "--listen", "udp:127.0.0.1:0")
    assert len(sp.listening) == 1 and sp.listening[0].startswith("udp:127.0.0.1:"), sp.listening
    _, addr = sockaddr(sp.listening[0])
    with udp_socket() as s:
        s.sendto(b"only udp", addr)
        data, _ = s.recvfrom(65536)
        assert data == b"only udp"
    # No TCP socket of the server's own (a connect to the port number would meet whatever other
    # process, another test's server, listens on it over TCP).
    assert not socket_inodes(sp.pid) & tcp_inodes()
    st = stop_summary(sp)
    assert st["datagrams"] == 1 and st["accepted"] == 0, st


def test_udp_prefix_beside_tcp_address(backend, start_server):
    """udp:ADDR and a TCP address in one server: each gets its own ready line, and --udp is not
    needed for the udp: one."""
    sp = start_server(backend, "--listen", "127.0.0.1:0", "--listen", "udp:127.0.0.1:0")
    tcp = [a for a in sp.listening if not a.startswith("udp:")]
    udp = [a for a in sp.listening if a.startswith("udp:")]
    assert len(tcp) == 1 and len(udp) == 1, sp.listening
    _, addr = sockaddr(udp[0])
    with udp_socket() as s:
        s.sendto(b"x" * 100, addr)
        assert s.recvfrom(65536)[0] == b"x" * 100

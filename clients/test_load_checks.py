"""echo-load checks what it measures: a damaged, extra or missing byte is caught; a stall is
taken into the corrected latency; overload is not reported as the target; each check agrees with
its value, and a run that must be valid is; starved connections fail the connections check."""
import os
import signal
import socket
import threading
import time

import pytest

from load_testlib import LoadProcess, checks, due, faulty, run_load


class CorruptingServer:
    """Echo over TCP or UDP that damages one byte: at stream offset `at` of every TCP connection
    it flips a bit (how="flip"), adds a byte (how="insert") or leaves the byte out
    (how="drop"); over UDP it flips a bit of byte 0 of datagram number `at`."""

    def __init__(self, udp=False, at=777, how="flip"):
        self.udp, self.at, self.how = udp, at, how
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if udp else
                                  socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        if not udp:
            self.sock.listen(16)
        self.addr = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.done = threading.Event()
        self.threads = [threading.Thread(target=self.serve_udp if udp else self.accept,
                                         daemon=True)]
        self.threads[0].start()

    def accept(self):
        while not self.done.is_set():
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            t = threading.Thread(target=self.echo, args=(c,), daemon=True)
            self.threads.append(t)
            t.start()

    def echo(self, c):
        c.settimeout(0.2)
        off = 0
        with c:
            while not self.done.is_set():
                try:
                    data = bytearray(c.recv(65536))
                except socket.timeout:
                    continue
                except OSError:
                    return
                if not data:
                    return
                n = len(data)
                if off <= self.at < off + n:
                    i = self.at - off
                    if self.how == "flip":
                        data[i] ^= 0x10
                    elif self.how == "insert":
                        data[i:i] = b"!"
                    else:
                        del data[i]
                off += n
                try:
                    c.sendall(data)
                except OSError:
                    return

    def serve_udp(self):
        n = 0
        while not self.done.is_set():
            try:
                data, peer = self.sock.recvfrom(65536)
            except socket.timeout:
                continue
            data = bytearray(data)
            if n == self.at and data:
                data[0] ^= 0x10
            n += 1
            self.sock.sendto(data, peer)

    def close(self):
        self.done.set()
        for t in self.threads:
            t.join(5)
        self.sock.close()


@pytest.mark.parametrize("udp", [False, True], ids=["tcp", "udp"])
def test_corrupted_byte_is_caught(udp):
    srv = CorruptingServer(udp=udp, at=777 if not udp else 20)
    try:
        args = ["--udp"] if udp else []
        rc, obj, err = run_load("-c", 2, "-d", "500ms", *args, srv.addr)
        assert rc == 1, err
        assert obj["mismatches"] >= 1
        assert "mismatch" in err.strip().splitlines()[-1]
        # The same run without verification passes: only the check saw the damage.
        rc, obj, err = run_load("-c", 2, "-d", "300ms", "--no-verify", *args, srv.addr)
        assert rc == 0, err
        assert obj["mismatches"] == 0 and obj["messages"] > 0
    finally:
        srv.close()


@pytest.mark.parametrize("how", ["insert", "drop"])
def test_extra_and_short_bytes(how):
    """A byte too many shifts the stream: mismatches, and one byte beyond what was sent. A byte
    too few leaves a message unanswered: the connection times out owing bytes."""
    srv = CorruptingServer(at=200, how=how)
    try:
        # Only for the missing byte is the timeout the property (it ends that connection on any
        # machine); the extra byte needs every reply back, however late.
        timeout = ["--timeout", "300ms"] if how == "drop" else []
        rc, obj, err = run_load("-c", 2, "-d", "800ms", *timeout, srv.addr)
        assert rc == 1, err
        if how == "insert":
            assert obj["mismatches"] >= 1 and obj["extra_bytes"] == 2   # one per connection
        else:
            assert obj["short_bytes"] > 0 and obj["errors"]["timeout"] == 2
            assert obj["complete"] is False
    finally:
        srv.close()


def test_open_loop_stall_is_corrected(start_server):
    """The server stopped (SIGSTOP) for 1 s in the middle of an open loop at 1000/s on 8
    connections (125/s each, far below what any build answers, busy machine and sanitizers
    included): messages keep falling due while nothing is answered, so the corrected p99 takes
    in the stall (a third of the messages fall due in it) while the uncorrected p99 does not
    (only the message in flight on each connection when it began saw it: 8 of 3000). With -p 1
    the messages that fall due meanwhile wait for the stuck one's slot: that wait is booked as
    the server's (slot_wait), not as the client's lateness (send_lag).

    The stall starts 1 s into the 3 s window by echo-load's own clock (however late echo-load
    started) and every bound is a share of the stall as measured here. Under a busy loop per CPU
    the uncorrected p99 (the machine's round trip) reached 15 ms and the send lag's p99 10 ms
    (client late): against a 1 s stall that leaves the 10x ratio and the S/4 bound 5x and 25x
    of room; with the stall booked as the client's, or uncorrected, they would be near S."""
    sp = start_server("epoll")
    with LoadProcess("-c", 8, "-R", 1000, "-d", "3s", sp.addr) as lp:
        lp.into_window(1)
        t0 = time.monotonic()
        os.kill(sp.pid, signal.SIGSTOP)
        try:
            time.sleep(1)
        finally:
            os.kill(sp.pid, signal.SIGCONT)
        stall_us = (time.monotonic() - t0) * 1e6
        rc, obj, err = lp.finish()
    assert rc == 0, err
    # On schedule, stall or not; and every message due, the stall's backlog too, is answered:
    # what the window leaves owed is sent after it and gets --timeout (5 s) to come back.
    assert abs(due(obj) - 3000) <= 8 and obj["unanswered"] == 0, obj
    cor, unc = obj["latency_us"], obj["latency_uncorrected_us"]
    assert cor["max"] >= 0.66 * stall_us, (cor, stall_us)
    assert cor["p99"] >= 0.5 * stall_us, (cor, stall_us)
    assert cor["p99"] >= 10 * unc["p99"], (cor, unc)
    assert obj["slot_wait_us"]["max"] >= 0.66 * stall_us, (obj["slot_wait_us"], stall_us)
    assert obj["slot_wait_share"] > 0
    assert obj["send_lag_us"]["p99"] < 0.25 * stall_us, (obj["send_lag_us"], stall_us)


def test_overload_is_not_reported_as_the_target(start_server):
    """Far above capacity, msgs/s is what was answered in the window, not the target; the
    rate check fails, what never came back is counted, and --strict turns that into exit 3."""
    sp = start_server("epoll")
    rc, obj, err = run_load("-R", "10M", "-c", 4, "-d", "1s", "--timeout", "500ms", sp.addr)
    assert rc == 0, err
    assert obj["rate_target"] == 10e6
    assert obj["msgs_per_sec"] < 0.5 * obj["rate_target"]
    assert obj["rate_achieved"] == obj["msgs_per_sec"] and obj["rate_sent"] < 0.5e7
    assert obj["unanswered"] > 0
    assert obj["valid"] is False and checks(obj)["rate"]["ok"] is False
    assert any(r.startswith("rate:") for r in obj["invalid_reasons"])
    assert "WARNING: rate:" in err
    assert obj["wall_s"] > obj["duration_s"]
    rc, obj, err = run_load("--strict", "-R", "10M", "-c", 2, "-d", "300ms", "--timeout",
                            "300ms", sp.addr)
    assert rc == 3, err


def test_checks_agree_with_their_values(start_server):
    """Whatever the machine makes of an open loop at -R 2000 -c 4 (a busy one can make the
    client late, or the server), every check agrees with its own value and limit, `valid` is
    the conjunction of the checks, and WARNING lines appear exactly when it is false."""
    sp = start_server("epoll")
    rc, obj, err = run_load("-R", 2000, "-c", 4, "-p", 64, "-d", "1s", sp.addr)
    assert rc == 0, err
    c = checks(obj)
    assert set(c) == {"rate", "send_lag", "client_cpu", "verify", "connections"}
    assert c["send_lag"]["ok"] == (c["send_lag"]["value"] <= c["send_lag"]["limit"])
    assert c["send_lag"]["limit"] == 1000.0       # 10 % of 2 ms is below 1 ms
    assert c["client_cpu"]["ok"] == (c["client_cpu"]["value"] < 0.9)
    assert c["rate"]["limit"] == 2000
    assert c["verify"]["ok"], obj["invalid_reasons"]
    assert obj["valid"] == all(x["ok"] for x in obj["checks"])
    assert obj["valid"] == (not obj["invalid_reasons"])
    assert ("WARNING" in err) == (not obj["valid"]), err


def slow_echo_server(delay_s):
    """A thread-per-connection echo server on 127.0.0.1 that holds every reply for delay_s:
    a client against it spends nearly all its time waiting. Returns (address, stop)."""
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(16)
    stop = threading.Event()

    def serve(conn):
        with conn:
            conn.settimeout(0.5)
            while not stop.is_set():
                try:
                    data = conn.recv(65536)
                except socket.timeout:
                    continue
                except OSError:
                    return
                if not data:
                    return
                time.sleep(delay_s)
                try:
                    conn.sendall(data)
                except OSError:
                    return

    threads = []

    def accept():
        lst.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = lst.accept()
            except socket.timeout:
                continue
            except OSError:     # the listener is closed
                return
            threads.append(threading.Thread(target=serve, args=(conn,), daemon=True))
            threads[-1].start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()

    def close():
        """Stops the acceptor before its listener is closed, then every connection's thread
        (each sees `stop` within its 0.5 s receive timeout)."""
        stop.set()
        acceptor.join(10)
        lst.close()
        for t in threads:
            t.join(10)
    return f"127.0.0.1:{lst.getsockname()[1]}", close


def test_valid_against_a_slow_server():
    """A closed loop against a server that holds each reply 2 ms: the client waits nearly all
    the time, so on any machine, however busy, every check holds (closed loop has no rate or
    send-lag condition; client CPU is CPU time, which waiting does not use; each connection is
    answered hundreds of times in the window)."""
    addr, close = slow_echo_server(0.002)
    try:
        rc, obj, err = run_load("-c", 2, "-d", "1s", "--warmup", "100ms", addr)
    finally:
        close()
    assert rc == 0, err
    assert obj["valid"] is True, obj["invalid_reasons"]
    assert all(x["ok"] for x in obj["checks"]) and obj["invalid_reasons"] == []
    assert checks(obj)["client_cpu"]["value"] < 0.5
    assert "WARNING" not in err


def test_starved_connections_fail_the_check():
    """A server that serves one client at a time: 15 of 16 connections never get a reply.
    They are named in the JSON and the connections check fails. (The default 5 s --timeout:
    the served connection's replies must never time out, or the server would move on to a
    second one.)"""
    sp = faulty("--fault", "one-at-a-time")
    try:
        rc, obj, err = run_load("-c", 16, "-t", 2, "-d", "1s", sp.addr, timeout=60)
    finally:
        sp.stop(signal.SIGKILL)
    assert obj is not None, err
    assert obj["starved_connections"] == 15, obj["msgs_per_conn"]
    assert obj["msgs_per_conn"]["min"] == 0 and obj["msgs_per_conn"]["max"] > 0
    assert checks(obj)["connections"]["ok"] is False and obj["valid"] is False
    assert any(r.startswith("connections:") for r in obj["invalid_reasons"])

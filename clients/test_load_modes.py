"""echo-load's modes and outputs, end to end against echo-server: closed loop, pipeline, stream,
open loop, UDP, unix and IPv6 targets give sane figures; warmup and connect pacing; the JSON,
hgrm and CSV outputs, progress lines, the interval series, units; a clean close; -p exact."""
import csv
import json
import os
import socket
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import binary
from load_testlib import PROGRESS, assert_no_resets, check_latency, check_sane, due, run_load


def test_closed_loop_sane(backend, start_server):
    sp = start_server(backend)
    rc, obj, err = run_load("-c", 4, "-t", 2, "-d", "700ms", "--warmup", "200ms", sp.addr)
    assert rc == 0, err
    check_sane(obj, 4)
    assert obj["mode"] == "closed" and obj["size"] == 64 and obj["bytes"] == 64 * obj["messages"]
    assert obj["latency_uncorrected_us"] is None
    assert 0.69 < obj["duration_s"] <= 0.71


@pytest.mark.parametrize("args,mode", [
    (["-p", 8, "-s", "1-9000"], "closed"),
    (["--stream", "-s", "64k"], "stream"),
    (["-R", "2k"], "open"),
])
def test_modes_sane(start_server, args, mode):
    sp = start_server("epoll")
    rc, obj, err = run_load("-c", 3, "-d", "600ms", *args, sp.addr)
    assert rc == 0, err
    check_sane(obj, 3)
    assert obj["mode"] == mode
    if mode == "closed":
        assert obj["pipeline"] == 8 and obj["size"] == "1-9000"
        assert obj["bytes"] > obj["messages"]      # sizes vary around 4.5 kB
    if mode == "stream":
        assert obj["bytes"] == 65536 * obj["messages"]     # counted in whole messages
    if mode == "open":
        assert abs(due(obj) - 1200) <= 3    # 2000/s for 0.6 s, on schedule
        check_latency(obj["latency_uncorrected_us"])


def test_udp_sane(start_server):
    sp = start_server("epoll", "--udp")
    udp = next(a for a in sp.listening if a.startswith("udp:"))[4:]
    rc, obj, err = run_load("--udp", "-c", 2, "-p", 4, "-s", "1-1400", "-d", "500ms", udp)
    assert rc == 0, err
    check_sane(obj, 2)
    assert obj["transport"] == "udp" and obj["lost"] == 0


def test_unix_socket(start_server):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "echo.sock")
        sp = start_server("epoll", "--listen", f"unix:{path}")
        rc, obj, err = run_load("-c", 2, "-d", "400ms", f"unix:{path}")
        assert rc == 0, err
        check_sane(obj, 2)
        assert obj["transport"] == "unix"


def have_ipv6():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not have_ipv6(), reason="no IPv6 loopback here")
def test_ipv6(start_server):
    sp = start_server("epoll", "--listen", "[::1]:0")
    rc, obj, err = run_load("-c", 2, "-d", "300ms", sp.addr)
    assert rc == 0, err
    check_sane(obj, 2)
    assert obj["target"].startswith("[::1]:")


def test_warmup_excluded(start_server):
    """Open loop at 2000/s: 300 ms of warmup then 600 ms measured count 1200 messages, not 1800;
    the measured window's length is the duration alone."""
    sp = start_server("epoll")
    rc, obj, err = run_load("-c", 2, "-R", "2k", "--warmup", "300ms", "-d", "600ms", sp.addr)
    assert rc == 0, err
    assert abs(due(obj) - 1200) <= 3, obj
    assert obj["latency_us"]["count"] == obj["messages"] + obj["drained_after_window"]
    assert obj["warmup_s"] == 0.3 and 0.59 < obj["duration_s"] < 0.61


def test_connect_rate_paces(start_server):
    sp = start_server("epoll")
    t0 = time.monotonic()
    rc, obj, err = run_load("-c", 20, "--connect-rate", 50, "-d", "100ms", sp.addr)
    assert rc == 0, err
    assert time.monotonic() - t0 >= 0.38     # connection 20 is due at 19/50 s
    assert obj["connect_us"]["count"] == 20


def test_json_hgrm_csv_outputs(start_server):
    sp = start_server("epoll")
    with tempfile.TemporaryDirectory() as d:
        jp, hp, cp = (os.path.join(d, n) for n in ("r.json", "r.hgrm", "r.csv"))
        rc, _, err = run_load("-c", 2, "-d", "400ms", "--json", jp, "--hgrm", hp, "--csv", cp,
                              "--csv-header", sp.addr)
        assert rc == 0, err
        obj = json.load(open(jp))
        check_sane(obj, 2)
        rows = []
        for line in open(hp):
            if line.startswith("#") or not line.strip() or line.split()[0] == "Value":
                continue
            rows.append([float(x) for x in line.split()])
        assert len(rows) > 10
        values = [r[0] for r in rows]
        pcts = [r[1] for r in rows]
        counts = [r[2] for r in rows]
        assert values == sorted(values) and pcts == sorted(pcts) and counts == sorted(counts)
        assert pcts[-1] == 1.0 and counts[-1] == obj["latency_us"]["count"]
        assert abs(values[-1] - obj["latency_us"]["max"]) < 0.01
        assert all(len(r) == 4 for r in rows[:-1]) and len(rows[-1]) == 3
        table = list(csv.DictReader(open(cp)))
        assert len(table) == 1
        assert int(table[0]["messages"]) == obj["messages"]
        assert table[0]["complete"] == "true"
        # A second run appends one line, no second header.
        rc, _, err = run_load("-c", 1, "-d", "200ms", "--csv", cp, sp.addr)
        assert rc == 0, err
        assert len(list(csv.DictReader(open(cp)))) == 2


def test_progress_lines(start_server):
    """--progress: a line a second of the window, at 1 s and 2 s of a 2.5 s run. Its main thread
    0.5 s late loses the second; a close longer than 0.5 s adds a third: either is allowed,
    every line says when in the window it came, in order, and parses."""
    sp = start_server("epoll")
    rc, obj, err = run_load("-c", 1, "-d", "2.5s", "--progress", sp.addr)
    assert rc == 0, err
    lines = [PROGRESS.match(l) for l in err.splitlines() if "msgs/s" in l]
    assert 2 <= len(lines) <= 3 and all(lines), err
    at = [float(m.group(1)) for m in lines]
    assert all(k + 1 <= t for k, t in enumerate(at)) and at == sorted(at), err
    assert all(int(m.group(3)) == 0 for m in lines), err
    assert int(lines[0].group(2)) > 0, err


def test_intervals_series(start_server):
    sp = start_server("epoll")
    rc, obj, err = run_load("-c", 2, "-d", "1s", "--intervals", 250, sp.addr)
    assert rc == 0, err
    iv = obj["intervals"]
    assert len(iv) == 4 and [i["start_s"] for i in iv] == [0, 0.25, 0.5, 0.75]
    assert sum(i["messages"] for i in iv) == obj["messages"]
    # An interval the machine stalled through has no messages, and then no percentiles.
    for i in iv:
        assert i["duration_s"] == 0.25, i
        if i["messages"]:
            assert 0 < i["p50_us"] <= i["p99_us"], i
        else:
            assert i["p50_us"] is None and i["p99_us"] is None, i


def test_clean_close_leaves_no_reset(start_server):
    sp = start_server("epoll", "--udp")
    for args in (["-c", 8, "-p", 4], ["-c", 4, "-R", "1.5k"], ["-c", 2, "--stream"]):
        rc, obj, err = run_load(*args, "-d", "300ms", sp.addr)
        assert rc == 0, err
    udp = next(a for a in sp.listening if a.startswith("udp:"))
    rc, obj, err = run_load("-c", 2, "-d", "300ms", udp)        # udp:ADDR means --udp
    assert rc == 0, err
    assert obj["transport"] == "udp"
    rc, obj, err = run_load("-u", "-c", 1, "-d", "200ms", udp[4:])
    assert rc == 0 and obj["transport"] == "udp", err
    assert_no_resets(sp)


def test_rate_fraction_and_csv_nulls(start_server):
    sp = start_server("epoll")
    with tempfile.TemporaryDirectory() as d:
        cp = os.path.join(d, "r.csv")
        rc, obj, err = run_load("-c", 2, "-d", "300ms", "--csv", cp, "--csv-header", sp.addr)
        assert rc == 0, err
        row = next(csv.DictReader(open(cp)))
        # Closed loop: no rate, no uncorrected latency, no send lag: empty, never 0.000.
        assert row["rate"] == "" and row["rate_target"] == ""
        assert row["uncorrected_p50_us"] == "" and row["send_lag_p99_us"] == ""
        assert float(row["latency_p50_us"]) > 0 and row["valid"] in ("true", "false")
    rc, obj, err = run_load("-c", 1, "-R", "1.5k", "-d", "200ms", sp.addr)
    assert rc == 0, err
    assert obj["rate_target"] == 1500


def test_transfer_rate_is_si(start_server):
    sp = start_server("epoll")
    argv = [str(binary("clients/echo-load")), "-c", "1", "-s", "1000", "-d", "300ms",
            "--json", "-", sp.addr]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    obj = json.loads(p.stdout)
    line = next(l for l in p.stderr.splitlines() if l.startswith("Transfer/sec:"))
    value = line.split()[1]
    num = float(value.rstrip("kMGB/s"))
    scale = {"k": 1e3, "M": 1e6, "G": 1e9}.get(value.replace("B/s", "")[-1], 1)
    assert abs(num * scale - obj["bytes_per_sec"]) <= 0.01 * obj["bytes_per_sec"], line


def test_open_loop_keeps_exactly_p_in_flight():
    """-p 3 means three messages in flight, not the next power of two: a server that holds
    every echo receives three messages' bytes, and nothing more in the 300 ms after them. (It
    waits for the 300 bytes however long they take, bounded for a broken client; a slow machine
    can only hide a fourth message, never add one.)"""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    srv.settimeout(30)
    got = {}

    def serve():
        try:
            c, _ = srv.accept()
        except OSError:
            return
        buf = b""
        c.settimeout(0.05)
        deadline, full = time.monotonic() + 10, None
        while time.monotonic() < deadline and (full is None or time.monotonic() - full < 0.3):
            try:
                d = c.recv(65536)
            except socket.timeout:
                continue
            if not d:
                break
            buf += d
            if full is None and len(buf) >= 300:
                full = time.monotonic()
        got["held"] = len(buf)
        c.settimeout(5)
        try:
            c.sendall(buf)
            while True:
                d = c.recv(65536)
                if not d:
                    break
                c.sendall(d)
        except OSError:
            pass
        c.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        rc, obj, err = run_load("-c", 1, "-p", 3, "-R", 1000, "-s", 100, "-d", "600ms",
                                "127.0.0.1:%d" % srv.getsockname()[1])
    finally:
        t.join(30)
        srv.close()
    assert got.get("held") == 300, (got, err)
    assert obj["pipeline"] == 3


def test_one_connection_deep_pipeline_uses_the_event_loop(start_server):
    """-c 1 -p 64 with 64 KiB messages: 4 MiB in flight is more than the socket buffers hold.
    A blocking send would stall in 100 ms slices: about 64 answers a second, where -p 1 gets
    thousands. The event loop keeps both directions moving, and -p 64 answers about as many as
    -p 1 (0.6 to 1.3 times, quiet or under a busy loop per CPU, both builds); the bound is an
    eighth. Both run in turn, twice, against the same server, so that the machine's load weighs
    on both alike."""
    sp = start_server("epoll")
    answered = {1: 0, 64: 0}
    for p in (1, 64, 1, 64):
        rc, obj, err = run_load("-c", 1, "-p", p, "-s", "64k", "-d", "500ms", sp.addr)
        assert rc == 0, err
        assert obj["pipeline"] == p and obj["mismatches"] == 0
        answered[p] += obj["messages"]
    assert answered[1] > 0 and answered[64] >= answered[1] / 8, answered

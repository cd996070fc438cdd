"""echo-load --churn end to end: each transaction connects, sends --churn-messages messages,
checks their echo and closes. Against echo-server the counts add up and every transaction is
verified; against servers that refuse, reset, stall or corrupt, each failure is counted by its
kind; the open loop keeps its schedule and books a stalled server's time as the server's;
--close rst leaves no TIME_WAIT; running out of local ports is said as the client's limit;
--processes and --hist-out/--merge carry every churn figure; bad usage exits 2 with one line."""
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import ServerProcess, binary
from echobench_lib.net import free_port

CHURN_FIELDS = ("transactions", "transactions_per_sec", "first_reply_us", "churn_messages",
                "close", "no_local_port")


def run_load(*args, timeout=60):
    """echo-load with --json - (unless given): (exit code, JSON object or None, stderr)."""
    argv = [str(binary("clients/echo-load")), *[str(a) for a in args]]
    if "--json" not in args:
        argv += ["--json", "-"]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    obj = json.loads(p.stdout) if p.stdout.strip().startswith("{") else None
    return p.returncode, obj, p.stderr


def checks(obj):
    return {c["name"]: c for c in obj["checks"]}


def stopped_line(sp):
    """{key: int} of echo-server's `stopped:` line (docs/CONTRACTS.md), after SIGTERM."""
    _, text = sp.stop(signal.SIGTERM)
    line = next(l for l in text.splitlines() if "stopped:" in l)
    return {k: int(v) for k, v in (f.split("=") for f in line.split() if "=" in f)
            if v.isdigit()}


def check_counts(obj, k, size):
    """What every clean churn run shows: the three histograms count the same transactions
    (those due in the window and done, inside it or after), messages are K per transaction,
    each transaction's latency holds its connect and its first reply."""
    lat, conn, first = obj["latency_us"], obj["connect_us"], obj["first_reply_us"]
    done = obj["transactions"] + obj["drained_after_window"]
    assert obj["mode"] == "churn" and obj["churn_messages"] == k, obj
    assert obj["complete"] is True and obj["error"] is None
    assert obj["transactions"] > 0
    assert lat["count"] == conn["count"] == first["count"] == done
    assert obj["connected"] == done
    assert obj["messages"] == k * obj["transactions"]
    assert obj["bytes"] == size * obj["messages"]
    assert abs(obj["transactions_per_sec"] * obj["duration_s"] - obj["transactions"]) <= 1
    assert abs(obj["msgs_per_sec"] - k * obj["transactions_per_sec"]) <= 0.01 * k
    assert obj["rate_achieved"] == obj["transactions_per_sec"]
    assert obj["mismatches"] == 0 and obj["extra_bytes"] == 0 and obj["unanswered"] == 0
    assert not any(obj["errors"].values()) and obj["no_local_port"] == 0, obj["errors"]
    assert obj["starved_connections"] == 0 and obj["msgs_per_conn"]["min"] > 0
    # Per transaction: latency = connect + first reply + the rest, so it holds both.
    assert lat["min"] >= conn["min"] and lat["max"] >= conn["max"]
    assert lat["mean"] >= conn["mean"] + first["mean"] - 0.002, (lat, conn, first)
    assert 0 < conn["min"] and 0 < first["min"]


def test_counts_add_up_and_every_transaction_is_verified(start_server):
    """Closed loop, 4 slots, 3 messages of 100 B per transaction: the counts add up, and the
    server accepted exactly the transactions the client reports (every one of them done; none
    started outside the window, which has no warmup). A FIN close is clean: no reset."""
    sp = start_server("epoll")
    with tempfile.TemporaryDirectory() as d:
        cp = os.path.join(d, "r.csv")
        rc, obj, err = run_load("--churn", "--churn-messages", 3, "-s", 100, "-c", 4, "-d", "1s",
                                "--csv", cp, "--csv-header", sp.addr)
        assert rc == 0, err
        row = open(cp).read().splitlines()
    check_counts(obj, 3, 100)
    assert obj["close"] == "fin" and obj["connections"] == 4 and obj["rate"] is None
    assert obj["valid"] or not checks(obj)["client_cpu"]["ok"], obj["invalid_reasons"]
    assert sum(i["messages"] for i in obj["intervals"]) == obj["transactions"]
    server = stopped_line(sp)
    assert server["accepted"] == obj["latency_us"]["count"], (server, obj["latency_us"])
    assert server["resets"] == 0, server
    cols = dict(zip(row[0].split(","), row[1].split(",")))
    assert cols["mode"] == "churn" and int(cols["transactions"]) == obj["transactions"]
    assert cols["churn_messages"] == "3" and float(cols["first_reply_p50_us"]) > 0


def test_unix_socket(start_server):
    """A unix socket connects at once (no connect in progress): the same counts."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "echo.sock")
        sp = start_server("epoll", "--listen", f"unix:{path}")
        rc, obj, err = run_load("--churn", "-c", 2, "-d", "500ms", f"unix:{path}")
    assert rc == 0, err
    check_counts(obj, 1, 64)
    assert obj["transport"] == "unix"


def test_fields_are_null_outside_churn(start_server):
    sp = start_server("epoll")
    rc, obj, err = run_load("-c", 2, "-d", "300ms", sp.addr)
    assert rc == 0, err
    assert obj["mode"] == "closed"
    assert all(obj[k] is None for k in CHURN_FIELDS), {k: obj[k] for k in CHURN_FIELDS}


def test_refused():
    """Nothing listens: every transaction is refused, counted as such; exit 1, one line."""
    rc, obj, err = run_load("--churn", "-c", 2, "-d", "300ms", f"127.0.0.1:{free_port()}")
    assert rc == 1, err
    assert obj["errors"]["refused"] > 0 and obj["transactions"] == 0
    assert sum(obj["errors"].values()) == obj["errors"]["refused"] == obj["connections_lost"]
    assert obj["complete"] is False and checks(obj)["connections"]["ok"] is False
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "refused" in lines[0], err


class TinyServer:
    """A TCP listener on 127.0.0.1 whose accepted connections get `how`: "reset" closes each
    at once with SO_LINGER 0 (a reset); "stall" keeps each open and never answers."""

    def __init__(self, how):
        self.how, self.held = how, []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.sock.settimeout(0.1)
        self.addr = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while not self.done.is_set():
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            if self.how == "reset":
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                c.close()
            else:
                self.held.append(c)

    def close(self):
        self.done.set()
        self.thread.join(5)
        for c in self.held:
            c.close()
        self.sock.close()


def test_reset():
    srv = TinyServer("reset")
    try:
        rc, obj, err = run_load("--churn", "-c", 2, "-d", "500ms", srv.addr)
    finally:
        srv.close()
    assert rc == 1, err
    assert obj["errors"]["reset"] > 0 and obj["transactions"] == 0, obj["errors"]
    assert obj["errors"]["refused"] == obj["errors"]["eof"] == 0, obj["errors"]
    assert obj["connections_lost"] == sum(obj["errors"].values())
    assert "reset" in err.strip().splitlines()[-1], err


def test_stall():
    """A server that accepts and never answers: each transaction times out (--timeout 300ms,
    checked every 100 ms), the first of each slot well inside the 1.5 s window."""
    srv = TinyServer("stall")
    try:
        rc, obj, err = run_load("--churn", "-c", 2, "-d", "1500ms", "--timeout", "300ms",
                                srv.addr)
    finally:
        srv.close()
    assert rc == 1, err
    assert obj["errors"]["timeout"] >= 2 and obj["transactions"] == 0, obj["errors"]
    assert obj["errors"]["refused"] == obj["errors"]["reset"] == 0, obj["errors"]
    assert obj["short_bytes"] >= 64 * obj["errors"]["timeout"]   # sent, never echoed
    assert "timeout" in err.strip().splitlines()[-1], err


def test_corrupt():
    """faulty-echo --fault prefix answers "|From Server| " + data: caught, exit 1."""
    sp = ServerProcess([binary("conformance/faulty-echo"), "--fault", "prefix"])
    try:
        rc, obj, err = run_load("--churn", "-c", 2, "-d", "300ms", sp.addr)
    finally:
        sp.stop(signal.SIGKILL)
    assert rc == 1, err
    assert obj["mismatches"] >= 1 and checks(obj)["verify"]["ok"] is False
    assert "mismatch" in err.strip().splitlines()[-1], err


def due(obj):
    """Open loop: the transactions due in the window, however each ended."""
    return (obj["transactions"] + obj["drained_after_window"] + obj["unanswered"] +
            sum(obj["errors"].values()))


def test_open_loop_keeps_the_schedule(start_server):
    """-R 400 for 1 s: 400 transactions fall due, whatever the machine's speed; latency from
    the due time holds the uncorrected one (from the connect) of each transaction."""
    sp = start_server("epoll")
    rc, obj, err = run_load("--churn", "-R", 400, "-c", 8, "-d", "1s", sp.addr)
    assert rc == 0, err
    assert abs(due(obj) - 400) <= 3, obj
    assert obj["rate"] == 400 and obj["rate_target"] == 400
    lat, unc = obj["latency_us"], obj["latency_uncorrected_us"]
    assert lat["count"] == unc["count"] == obj["connect_us"]["count"] == \
        obj["transactions"] + obj["drained_after_window"]
    assert lat["min"] >= unc["min"] and lat["max"] >= unc["max"] and \
        lat["mean"] >= unc["mean"] - 0.002
    assert obj["send_lag_us"] is not None and obj["slot_wait_us"] is not None
    assert obj["rate_achieved"] == obj["transactions_per_sec"]
    # A slot the schedule never needed is not a slot the server starved.
    assert checks(obj)["connections"]["ok"], obj["invalid_reasons"]


def test_open_loop_stall_is_the_servers(start_server):
    """The server stopped for 300 ms mid-run at 200 transactions/s on 4 slots: the slots fill
    with transactions it does not answer, and the ones due meanwhile wait for a slot. That wait
    is the server's (slot_wait, inside the corrected latency), not the client's (send_lag),
    which no machine able to run this test makes 100 ms."""
    sp = start_server("epoll")

    def stall():
        time.sleep(1.2)
        os.kill(sp.pid, signal.SIGSTOP)
        time.sleep(0.3)
        os.kill(sp.pid, signal.SIGCONT)

    t = threading.Thread(target=stall)
    t.start()
    try:
        rc, obj, err = run_load("--churn", "-R", 200, "-c", 4, "-d", "3s", sp.addr)
    finally:
        t.join()
        os.kill(sp.pid, signal.SIGCONT)
    assert rc == 0, err
    assert obj["latency_us"]["max"] >= 200000, obj["latency_us"]
    assert obj["slot_wait_us"]["max"] >= 200000, obj["slot_wait_us"]
    assert obj["slot_wait_share"] > 0
    assert obj["send_lag_us"]["p99"] < 100000, obj["send_lag_us"]
    assert obj["unanswered"] == 0 and not any(obj["errors"].values()), obj


def time_waits(local_ip, remote_port):
    """TIME_WAIT sockets (state 06) in /proc/net/tcp from local_ip to remote_port."""
    want = socket.inet_aton(local_ip)[::-1].hex().upper()
    n = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            local, remote, state = fields[1], fields[2], fields[3]
            if state == "06" and local.split(":")[0] == want and \
                    int(remote.split(":")[1], 16) == remote_port:
                n += 1
    return n


def test_close_rst_leaves_no_time_wait(start_server):
    """Each run from its own source address: a FIN close leaves the client's side of its
    connections in TIME_WAIT (60 s); --close rst leaves none."""
    sp = start_server("epoll")
    port = int(sp.addr.rsplit(":", 1)[1])
    runs = {}
    for close, src in (("fin", "127.0.0.61"), ("rst", "127.0.0.62")):
        rc, obj, err = run_load("--churn", "--close", close, "--source", src, "-c", 2,
                                "-d", "300ms", sp.addr)
        assert rc == 0, err
        assert obj["close"] == close and obj["transactions"] > 0
        runs[close] = time_waits(src, port)
    assert runs["fin"] > 0, runs
    assert runs["rst"] == 0, runs


NETNS_SCRIPT = r"""
set -e
ip link set lo up
echo "40000 40009" > /proc/sys/net/ipv4/ip_local_port_range
echo 0 > /proc/sys/net/ipv4/tcp_tw_reuse
"$SERVER" --backend epoll --listen 127.0.0.1:0 > "$DIR/server.out" &
srv=$!
i=0
while [ ! -s "$DIR/server.out" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
addr=$(awk '{print $2; exit}' "$DIR/server.out")
rc=0
"$LOAD" --churn -c 2 -d 2s --close "$CLOSE" --json "$DIR/r.json" "$addr" > /dev/null \
    2> "$DIR/err" || rc=$?
kill $srv
exit $rc
"""


def in_own_netns(close):
    """Runs echo-server and echo-load --churn in a network namespace of their own with 10
    ephemeral ports and no TIME_WAIT reuse (settings of that namespace only): (exit code, JSON,
    stderr). Skips where no namespace can be made (not root)."""
    if not shutil.which("unshare") or not shutil.which("ip"):
        pytest.skip("unshare or ip is not installed")
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, timeout=10)
    if probe.returncode != 0:
        pytest.skip("cannot create a network namespace here (needs root): "
                    + probe.stderr.decode(errors="replace").strip())
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, SERVER=str(binary("servers/echo-server")),
                   LOAD=str(binary("clients/echo-load")), DIR=d, CLOSE=close)
        p = subprocess.run(["unshare", "-n", "sh", "-c", NETNS_SCRIPT], env=env,
                           capture_output=True, text=True, timeout=60)
        assert os.path.exists(os.path.join(d, "r.json")), p.stderr
        return p.returncode, json.load(open(os.path.join(d, "r.json"))), \
            open(os.path.join(d, "err")).read()


def test_ports_run_out_is_said_as_the_clients_limit():
    """10 local ports, each held 60 s in TIME_WAIT after a FIN close: after about 10
    transactions no start finds a port. That is said in one line and fails the connections
    check, and is not counted as a failure of the server; --close rst frees each port at once,
    so the same 10 ports carry many more transactions."""
    rc, obj, err = in_own_netns("fin")
    assert rc == 0, err
    assert 0 < obj["transactions"] <= 10 and obj["no_local_port"] > 0, obj
    assert not any(obj["errors"].values()), obj["errors"]
    lines = [l for l in err.splitlines() if "no local port" in l]
    assert len(lines) == 1 and "--source" in lines[0] and "TIME_WAIT" in lines[0], err
    assert checks(obj)["connections"]["ok"] is False
    assert any("no local port" in r for r in obj["invalid_reasons"])
    rc, obj, err = in_own_netns("rst")
    assert rc == 0, err
    assert obj["transactions"] > 10 and obj["no_local_port"] == 0, obj
    assert "no local port" not in err


def test_processes_add_up(start_server):
    """--processes 2: the merged counts are those of both processes, and the server accepted
    exactly the transactions they report."""
    sp = start_server("epoll")
    rc, obj, err = run_load("--churn", "--processes", 2, "-c", 4, "-d", "1s", sp.addr)
    assert rc == 0, err
    check_counts(obj, 1, 64)
    assert obj["processes"] == 2 and obj["intervals"] is None
    server = stopped_line(sp)
    assert server["accepted"] == obj["latency_us"]["count"], (server, obj["latency_us"])


def test_hist_out_merge_round_trip(start_server):
    """A record merged alone reports what its run reported; two add up; records of another
    mode or another --churn-messages are refused with one line."""
    sp = start_server("epoll")
    with tempfile.TemporaryDirectory() as d:
        a, b, c, k1 = (os.path.join(d, n) for n in ("a", "b", "c", "k1"))
        rc, ja, err = run_load("--churn", "--churn-messages", 2, "-c", 2, "-d", "400ms",
                               "--hist-out", a, sp.addr)
        assert rc == 0, err
        rc, jb, err = run_load("--churn", "--churn-messages", 2, "-R", 300, "-c", 4,
                               "-d", "400ms", "--hist-out", b, sp.addr)
        assert rc == 0, err
        rc, one, err = run_load("--merge", a)
        assert rc == 0, err
        for key in ("mode", "churn_messages", "close", "transactions", "transactions_per_sec",
                    "messages", "latency_us", "connect_us", "first_reply_us",
                    "drained_after_window", "connected", "no_local_port", "errors"):
            assert one[key] == ja[key], (key, one[key], ja[key])
        rc, m, err = run_load("--merge", a, b)
        assert rc == 0, err
        assert m["mode"] == "churn" and m["churn_messages"] == 2
        assert m["transactions"] == ja["transactions"] + jb["transactions"]
        assert m["messages"] == 2 * m["transactions"]
        for h in ("latency_us", "connect_us", "first_reply_us"):
            assert m[h]["count"] == ja[h]["count"] + jb[h]["count"], h
            assert m[h]["max"] == max(ja[h]["max"], jb[h]["max"]), h
        rc, _, err = run_load("-c", 1, "-d", "200ms", "--hist-out", c, sp.addr)
        assert rc == 0, err
        rc, _, err = run_load("--churn", "-c", 1, "-d", "200ms", "--hist-out", k1, sp.addr)
        assert rc == 0, err
        for other in (c, k1):
            rc, m, err = run_load("--merge", a, other)
            assert rc == 1 and m is None and len(err.strip().splitlines()) == 1, err
            assert "--churn" in err


@pytest.mark.parametrize("args,word", [
    (["--churn", "--stream"], "--stream"),
    (["--churn", "--churn-messages", 0], "--churn-messages"),
    (["--churn", "--close", "bogus"], "--close"),
    (["--close", "rst"], "--close"),
    (["--churn-messages", 2], "--churn-messages"),
    (["--churn", "--udp"], "--udp"),
    (["--churn", "-R", 100, "-p", "unbounded"], "unbounded"),
    (["--churn", "--engine", "uring"], "--churn"),
    (["--churn", "--connect-rate", 100], "--connect-rate"),
])
def test_bad_usage(args, word):
    rc, obj, err = run_load(*args, "127.0.0.1:1")
    assert rc == 2 and obj is None, err
    assert len(err.strip().splitlines()) == 1 and word in err, err


def test_help_names_the_options():
    out = subprocess.run([str(binary("clients/echo-load")), "--help"], capture_output=True,
                         text=True, timeout=10).stdout
    for opt in ("--churn ", "--churn-messages K", "--close fin|rst"):
        assert opt in out, opt

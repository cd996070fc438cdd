"""Load from other hosts (scripts/echobench_lib/remote.py): unit tests of the split and the
combination, and real runs through OpenSSH into network namespaces (scripts/netns.py): the
server in one namespace, two load hosts in two others, addresses from 198.18.0.0/15 only.

`load_net()` is the set-up the driver's end-to-end test (`echobench run --target ...
--load-hosts ...`) reuses: namespaces, sshds, and an echo-server in the server namespace."""
import contextlib
import json
import os
import pathlib
import subprocess
import threading
import time

import pytest

import netns
from echobench_lib import remote_plan
from echobench_lib.remote import LoadHosts
from echobench_lib.remote_plan import combine, parse_dest, plan
from echobench_lib.server import Server
from echobench_lib.util import RunError, UsageError

ROOT = pathlib.Path(__file__).resolve().parent.parent
BUILD = pathlib.Path(os.environ.get("ECHOBENCH_BUILD", ROOT / "build")).resolve()
LOAD = BUILD / "clients" / "echo-load"
SERVER = BUILD / "servers" / "echo-server"


# -- unit: destinations, split, combination ---------------------------------------------------
@pytest.mark.parametrize("dest,want", [
    ("host", ("host", None)), ("root@198.18.0.10", ("root@198.18.0.10", None)),
    ("u@h:2222", ("u@h", 2222)), ("[::1]:22", ("::1", 22)), ("fe80::1", ("fe80::1", None)),
    ("u@[2001:db8::1]", ("u@2001:db8::1", None))])
def test_parse_dest(dest, want):
    assert parse_dest(dest) == want


@pytest.mark.parametrize("dest", ["", "@h", "h:x", "h:0", "h:70000", "a b"])
def test_parse_dest_bad(dest):
    with pytest.raises(UsageError):
        parse_dest(dest)


@pytest.mark.parametrize("conns,rate,hosts", [
    (5, None, 2), (1, None, 3), (64, 1001, 3), (7, 3, 5), (10, 10000, 4), (3, 2, 2)])
def test_plan_splits_evenly_and_adds_up(conns, rate, hosts):
    parts = plan(conns, rate, hosts)
    cs = [c for c, _ in parts]
    assert sum(cs) == conns and max(cs) - min(cs) <= 1 and min(cs) >= 1
    assert len(parts) == min(hosts, conns, rate or hosts)
    if rate is None:
        assert all(r is None for _, r in parts)
    else:
        rs = [r for _, r in parts]
        assert sum(rs) == rate and min(rs) >= 1
        # in proportion to connections, within one message per second
        assert all(abs(r - rate * c / conns) < 1 for c, r in parts)


def test_combine_adds_counters_and_never_averages_percentiles():
    hosts = [{"json": {"messages": 10, "connections": 2, "mismatches": 0, "target": "t",
                       "errors": {"reset": 1, "eof": 0}, "duration_s": 1.0, "verify": True,
                       "latency_us": {"p99": 10.0}}},
             {"json": {"messages": 30, "connections": 1, "mismatches": 2, "target": "t",
                       "errors": {"reset": 0, "eof": 3}, "duration_s": 1.2, "verify": True,
                       "latency_us": {"p99": 50.0}}},
             {"json": None}]
    out = combine({"latency_us": {"p99": 42.0}}, hosts)
    assert out["messages"] == 40 and out["connections"] == 3 and out["mismatches"] == 2
    assert out["errors"] == {"reset": 1, "eof": 3} and out["duration_s"] == 1.2
    assert out["latency_us"] == {"p99": 42.0} and out["target"] == "t" and out["verify"]
    # no merged histogram: the latency stays absent, never a mean of the hosts' p99
    assert "latency_us" not in combine(None, hosts)
    # the merged JSON's own figures win over the hosts' sums
    assert combine({"messages": 7}, hosts)["messages"] == 7


def test_a_failed_check_on_one_host_is_named():
    shares = [{"dest": "a", "json": {"checks": [{"name": "send_lag", "ok": False}],
                                     "invalid_reasons": ["send_lag: p99 5 ms late"]}},
              {"dest": "b", "json": {"checks": [{"name": "send_lag", "ok": True}]}},
              {"dest": "c", "json": None}]
    assert remote_plan.host_check_reasons(shares) == ["load host a: send_lag: p99 5 ms late"]


def test_no_or_duplicate_destinations_are_usage_errors():
    with pytest.raises(UsageError):
        LoadHosts([], [], LOAD)
    with pytest.raises(UsageError, match="twice"):
        LoadHosts(["a", "a"], [], LOAD)


# -- real hosts: namespaces + sshd ------------------------------------------------------------
def _skip_reason():
    why = netns.unavailable()
    if why:
        return f"no test hosts: {why}"
    for exe in (LOAD, SERVER):
        if not exe.exists():
            return f"{exe} is not built"
    return None


@contextlib.contextmanager
def load_net(loads=2, backend="epoll"):
    """Namespaces with `loads` sshd load hosts and an echo-server (listening on 198.18.0.1)
    in the server namespace. Yields (net, server); net.dests() and net.ssh_options() are what
    --load-hosts and --ssh-option take from the root namespace. Skips with the reason where
    this cannot be had. Everything is removed at exit, also on failure."""
    why = _skip_reason()
    if why:
        pytest.skip(why)
    with netns.TestNet(loads=loads) as net:
        srv = Server(net.server_argv([SERVER, "--backend", backend, "--listen",
                                      f"{net.server_addr}:0"]))
        try:
            yield net, srv
        finally:
            srv.stop()


@pytest.fixture(scope="module")
def net_and_server():
    with load_net() as ns:
        yield ns


def _merge(files, tmp):
    res = subprocess.run([LOAD, "--merge", *map(str, files), "--json", "-", "--hgrm",
                          str(tmp / "mine.hgrm")], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


@pytest.mark.slow
def test_two_hosts_merged_exactly(net_and_server, tmp_path):
    net, srv = net_and_server
    logs = []
    with LoadHosts(net.dests(), net.ssh_options(), LOAD, log=logs.append) as hosts:
        dirs = [h.dir for h in hosts.hosts]
        assert all(os.path.isfile(f"{d}/echo-load") for d in dirs)
        closed, rc = hosts.run(["-d", "1s", "-s", "64", "-t", "1"], srv.addr, 4, None,
                               tmp_path, "closed", seconds=1.0)
        opened, rc_open = hosts.run(["-d", "1s", "-s", "100", "-t", "1"], srv.addr, 3, 300,
                                    tmp_path, "open", seconds=1.0)
    # the remote directories and the control sockets are gone
    assert not any(os.path.exists(d) for d in dirs)
    assert not os.path.exists(hosts.hosts[0].socket)
    assert len(logs) == 2 and all("clock offset" in line for line in logs)

    assert rc == 0, closed.get("error")
    per = [h["json"] for h in closed["hosts"]]
    assert [h["dest"] for h in closed["hosts"]] == net.dests()
    assert [(h["connections"], h["rate"], h["phase"]) for h in closed["hosts"]] == \
        [(2, None, None), (2, None, None)]
    assert all(h["ok"] and h["error"] is None for h in closed["hosts"])
    assert all(p["messages"] > 0 for p in per)
    # the merged message count is the sum of the hosts' counts
    assert closed["messages"] == sum(p["messages"] for p in per)
    assert closed["latency_us"]["count"] == sum(p["latency_us"]["count"] for p in per)
    # every byte verified on both hosts
    assert all(p["verify"] and p["mismatches"] == 0 for p in per) and closed["mismatches"] == 0
    # the merged p99 is the p99 of the union: the same when we merge the files ourselves, in
    # the other order, and inside the hosts' own p99s (a union's percentile always is)
    mine = _merge(reversed([h["hist_file"] for h in closed["hosts"]]), tmp_path)
    for key in ("p50", "p99", "p999", "max", "min", "count"):
        assert closed["latency_us"][key] == mine["latency_us"][key], key
    p99s = [p["latency_us"]["p99"] for p in per]
    assert min(p99s) <= closed["latency_us"]["p99"] <= max(p99s)
    assert (tmp_path / "closed.hgrm").stat().st_size > 0
    assert closed["start_spread_us"] is not None and closed["start_spread_us"] >= 0

    # open loop: the rate is split with the connections, schedules phase-offset
    assert rc_open == 0, opened.get("error")
    assert [(h["connections"], h["rate"], h["phase"]) for h in opened["hosts"]] == \
        [(2, 200, "0/2"), (1, 100, "1/2")]
    assert opened["messages"] == sum(h["json"]["messages"] for h in opened["hosts"])


def _kill_when_running(rdir, stop, delay=0.8):
    """Kills (SIGKILL) the echo-load that runs in the load host's directory `rdir` once it
    has run `delay` seconds. The "hosts" share our pid namespace and /tmp, so it is visible."""
    while not stop.is_set():
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")[:2]      # [interpreter,] program
                if os.readlink(f"/proc/{pid}/cwd") == rdir and b"./echo-load" in argv:
                    time.sleep(delay)
                    os.kill(int(pid), 9)
                    return
            except OSError:
                continue
        time.sleep(0.05)


@pytest.mark.slow
def test_killed_load_host_fails_the_cell_and_keeps_the_other(net_and_server, tmp_path):
    net, srv = net_and_server
    with LoadHosts(net.dests(), net.ssh_options(), LOAD, log=None) as hosts:
        victim = hosts.hosts[0]
        stop = threading.Event()
        killer = threading.Thread(target=_kill_when_running,
                                  args=(victim.dir, stop), daemon=True)
        killer.start()
        try:
            result, rc = hosts.run(["-d", "3s", "-s", "64", "-t", "1"], srv.addr, 2, None,
                                   tmp_path, "kill", seconds=3.0)
        finally:
            stop.set()
            killer.join(5)
    assert rc == 1
    assert result["complete"] is False
    assert result["error"].startswith(f"load host {victim.dest}: echo-load killed by signal 9")
    assert "\n" not in result["error"]
    dead, alive = result["hosts"]
    assert not dead["ok"] and "killed" in dead["error"]
    assert alive["ok"] and alive["json"]["messages"] > 0 and alive["json"]["mismatches"] == 0
    # the surviving host's figures are kept: the cell's counts are its counts
    assert result["messages"] == alive["json"]["messages"]


def test_unreachable_load_host_names_it_and_cleans_up():
    why = netns.unavailable() or (None if LOAD.exists() else f"{LOAD} is not built")
    if why:
        pytest.skip(why)
    with netns.TestNet(loads=1) as net:
        bad = f"root@{net.server_addr}"            # no sshd there: connection refused
        before = set(os.listdir("/tmp"))
        with pytest.raises(RunError, match=f"load host {bad}: ssh failed"):
            with LoadHosts([net.dests()[0], bad], net.ssh_options(), LOAD, log=None):
                pass
        # the good host's directory and both control sockets were removed all the same
        left = {d for d in set(os.listdir("/tmp")) - before
                if d.startswith(("echobench-load.", "echobench-ssh-"))}
        assert not left


# -- the driver end to end: echobench run --target ... --load-hosts ... ----------------------
ECHOBENCH = ROOT / "scripts" / "echobench"


@pytest.fixture(scope="module")
def driver_run(tmp_path_factory):
    """`echobench run --target mine=SERVER --load-hosts L0,L1`: one closed-loop cell, run from
    the control namespace (the driver checks the target's echo itself, so it must reach it)."""
    out = tmp_path_factory.mktemp("results")
    with load_net() as (net, srv):
        argv = ["/usr/bin/python3", ECHOBENCH, "run", "--backends", "none",
                "--target", f"mine={srv.addr}", "--connections", "4", "--sizes", "64",
                "--modes", "closed", "--duration", "1s", "--warmup", "200ms",
                "--repetitions", "1", "--conform", "none", "--out", str(out),
                "--load-hosts", ",".join(net.dests())]
        for o in net.ssh_options(proxy=False):
            argv += ["--ssh-option", o]
        res = subprocess.run(net.ctl_argv(argv), capture_output=True, text=True, timeout=120,
                             env={**os.environ, "ECHOBENCH_BUILD": str(BUILD)})
        # The run directory itself, not out/latest: latest moves only to a run with a valid
        # cell, and whether the real cell's checks hold depends on the machine.
        runs = [p for p in out.iterdir() if p.is_dir() and p.name != "latest"]
        yield res, runs[0] if len(runs) == 1 else out / "latest", net


@pytest.mark.slow
def test_driver_runs_one_cell_on_two_load_hosts(driver_run):
    res, run_dir, net = driver_run
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    raws = [json.loads(p.read_text()) for p in (run_dir / "raw").glob("*.json")
            if "hosts" in p.read_text()]
    assert len(raws) == 1, "one cell"
    cell = raws[0]
    per = [h["json"] for h in cell["hosts"]]
    assert [h["dest"] for h in cell["hosts"]] == net.dests()
    assert all(h["ok"] for h in cell["hosts"]) and cell.get("complete") is not False
    assert cell["messages"] == sum(p["messages"] for p in per) > 0
    assert cell["latency_us"]["count"] == sum(p["latency_us"]["count"] for p in per)
    mine = _merge([h["hist_file"] for h in cell["hosts"]][::-1], run_dir)
    assert cell["latency_us"]["p99"] == mine["latency_us"]["p99"]
    assert all(p["verify"] and p["mismatches"] == 0 for p in per)
    assert len(list((run_dir / "hgrm").glob("*.hgrm"))) == 1


@pytest.mark.slow
def test_driver_report_shows_per_host_detail(driver_run):
    res, run_dir, net = driver_run
    assert res.returncode == 0
    md = (run_dir / "summary.md").read_text()
    html = (run_dir / "report.html").read_text()
    for report in (md, html):
        assert all(d in report for d in net.dests())
        assert "the load is remote" in report and "start spread" in report
    # one sub-row per host: its share of the 4 connections, ok, its own figures
    rows = [ln for ln in md.splitlines() if any(f"| {d} |" in ln for d in net.dests())]
    assert len(rows) == 2 and all("| 2 | closed loop | - | ok |" in r for r in rows), rows
    assert 'id="table-hosts"' in html and html.count("load host ") >= 2

"""`echobench run` end to end against the fake programs (scripts/fixtures/): every result
file, failed and invalid cells, the open-loop rates every entry shares, placements,
--until-ci, the user's servers and targets, load hosts, and the paired design."""
import csv
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys

import pytest

from echobench_testlib import HERE, echobench, fake_build, processes_under

RUN = ["run", "--connections", "1", "--sizes", "64", "--modes", "closed", "--duration",
       "200ms", "--warmup", "50ms", "--repetitions", "1", "--conform", "none"]
EXAMPLE = HERE / "examples" / "asyncio_echo.py"


@pytest.fixture
def build(tmp_path):
    return fake_build(tmp_path / "build")


def only_run(out):
    runs = [d for d in out.iterdir() if d.is_dir() and not d.is_symlink()]
    assert len(runs) == 1, runs
    return runs[0]


def peak(ctx, entry, c, s=64):
    return ctx["closed_loop_peaks"][f"echo/{entry}/c:{c}/s:{s}/closed/msgs_per_sec"]


def test_run_writes_every_result_file(build, tmp_path):
    out = tmp_path / "results"
    r = echobench("run", "--build", build, "--out", out, "--connections", "2", "--sizes", "64",
                  "--modes", "closed,open50", "--duration", "300ms", "--warmup", "100ms",
                  "--repetitions", "2")
    assert r.returncode == 0, r.stderr
    run_dir = out / "latest"
    assert run_dir.is_symlink() and not os.path.isabs(os.readlink(run_dir))
    for name in ("run.json", "cells.csv", "summary.md", "report.html", "conform.json"):
        assert (run_dir / name).is_file(), name
    # Two backends x one connection count x two modes x two repetitions.
    assert len(list((run_dir / "hgrm").glob("*.hgrm"))) == 8
    data = json.loads((run_dir / "run.json").read_text())
    ctx = data["context"]
    assert ctx["placement"]["server_cpus"] and ctx["placement"]["client_cpus"]
    assert ctx["backends"] == ["epoll", "poll"] and ctx["repetitions"] == 2
    names = {b["name"] for b in data["benchmarks"]}
    assert "echo/epoll/c:2/s:64/closed/msgs_per_sec" in names
    assert "echo/poll/c:2/s:64/open50/p99_us" in names
    assert "echo/epoll/c:2/s:64/closed/msgs_per_sec_median" in names
    it = [b for b in data["benchmarks"] if b["name"] == "echo/epoll/c:2/s:64/closed/msgs_per_sec"]
    assert [b["repetition_index"] for b in it] == [0, 1]
    for b in it:
        assert b["run_type"] == "iteration" and b["time_unit"] == "ns"
        assert b["real_time"] == pytest.approx(1e9 / b["echobench"]["value"])
        assert b["echobench"]["value"] > 0
    open_rate = [b["echobench"]["offered_rate"] for b in data["benchmarks"]
                 if b["name"] == "echo/epoll/c:2/s:64/open50/p99_us"]
    p = peak(ctx, "epoll", 2)
    assert open_rate and all(x == pytest.approx(p / 2, rel=0.01) for x in open_rate)
    # the peak is the median of the reference's closed-loop rounds, and so recorded
    closed = [b["echobench"]["value"] for b in it]
    assert p == pytest.approx(sorted(closed)[0] + (sorted(closed)[1] - sorted(closed)[0]) / 2)
    rates = ctx["open_loop_rates"]["echo/*/c:2/s:64/open50/offered_rate"]
    assert rates["fraction_asked"] == 0.5 and rates["fraction_of_this_runs_peak"] == \
        pytest.approx(0.5) and rates["peak_source"].startswith("median of 2")
    with open(run_dir / "cells.csv") as f:
        rows = list(csv.DictReader(f))
    assert {"entry", "connections", "size", "mode", "repetition", "valid", "client_bound",
            "metric", "value", "unit"} <= set(rows[0])
    cpu = [float(x["value"]) for x in rows if x["metric"] == "server_cpu_ns_per_msg"]
    assert cpu and all(v > 0 for v in cpu)
    # The run ends with the summary table and the report's path.
    assert "### Closed loop" in r.stdout
    assert "| c=2 s=64 closed | " in r.stdout and "| epoll | poll (× epoll) |" in r.stdout
    assert r.stdout.strip().splitlines()[-1] == f"report: {run_dir.resolve() / 'report.html'}"
    conform = json.loads((run_dir / "conform.json").read_text())
    assert conform["epoll"]["verdict"] == "pass"


def test_run_records_a_failed_cell_and_goes_on(build, tmp_path):
    out = tmp_path / "results"
    r = echobench("run", "--build", build, "--out", out, "--backends", "epoll",
                  "--connections", "1", "--sizes", "64", "--modes", "closed", "--duration",
                  "200ms", "--warmup", "50ms", "--repetitions", "1", "--conform", "none",
                  env={"FAKE_LOAD_FAIL": "1"})
    assert r.returncode == 1   # nothing was measured
    assert "FAILED" in r.stderr and "every connection failed" in r.stderr
    # The run is written, but results/latest does not move to a run without a valid cell.
    assert not (out / "latest").exists()
    run_dir = only_run(out)
    ctx = json.loads((run_dir / "run.json").read_text())["context"]
    assert ctx["failed_cells"][0]["cell"] == "epoll c=1 s=64 closed"
    assert "Every cell ran cleanly" not in (run_dir / "report.html").read_text()
    assert "ratios are vs None" not in r.stdout + (run_dir / "summary.md").read_text()


def test_rates_from_reuses_the_baseline_peaks(build, tmp_path):
    base = tmp_path / "base"
    args = ["run", "--build", build, "--backends", "epoll", "--connections", "1", "--sizes",
            "64", "--modes", "closed,open50", "--duration", "200ms", "--warmup", "50ms",
            "--repetitions", "1", "--conform", "none"]
    assert echobench(*args, "--out", base).returncode == 0
    p = peak(json.loads((base / "latest" / "run.json").read_text())["context"], "epoll", 1)
    new = tmp_path / "new"
    r = echobench(*args, "--out", new, "--rates-from", base / "latest")
    assert r.returncode == 0, r.stderr
    data = json.loads((new / "latest" / "run.json").read_text())
    rates = [b["echobench"]["offered_rate"] for b in data["benchmarks"]
             if b["name"] == "echo/epoll/c:1/s:64/open50/p99_us"]
    assert rates == [pytest.approx(p / 2, rel=1e-3)]
    bad = echobench(*args, "--out", new, "--rates-from", tmp_path / "nothing")
    assert bad.returncode == 2 and "no results at" in bad.stderr


def _rates(data, mode):
    return {b["echobench"]["entry"]: b["echobench"]["offered_rate"] for b in data["benchmarks"]
            if b.get("run_type") == "iteration" and b["echobench"]["mode"] == mode
            and b["echobench"]["metric"] == "p99_us"}


def test_open_loop_rates_are_the_same_for_every_entry(build, tmp_path):
    out = tmp_path / "results"
    r = echobench("run", "--build", build, "--out", out, "--rates", "1.0001k")
    assert r.returncode == 2 and "bad rate '1.0001k'" in r.stderr
    r = echobench("run", "--build", build, "--out", out, "--connections", "2", "--sizes", "64",
                  "--modes", "closed,open50", "--rates", "1.5k", "--duration", "300ms",
                  "--warmup", "50ms", "--repetitions", "1", "--conform", "none")
    assert r.returncode == 0, r.stderr
    data = json.loads((out / "latest" / "run.json").read_text())
    p = peak(data["context"], "epoll", 2)
    assert data["context"]["reference"] == "epoll"
    assert _rates(data, "open50") == {"epoll": pytest.approx(p / 2, rel=0.01),
                                      "poll": pytest.approx(p / 2, rel=0.01)}
    assert _rates(data, "rate1500") == {"epoll": 1500.0, "poll": 1500.0}
    with open(out / "latest" / "cells.csv") as f:
        rows = list(csv.DictReader(f))
    assert {float(x["offered_rate"]) for x in rows if x["mode"] == "rate1500"} == {1500.0}
    assert {x["offered_rate"] for x in rows if x["mode"] == "closed"} == {""}


# --- placement, until-ci, the sweep ----------------------------------------------

def test_placement_is_a_matrix_axis(build, tmp_path):
    r = echobench(*RUN, "--build", build, "--out", tmp_path, "--backends", "epoll",
                  "--placement", "split,shared,free")
    assert r.returncode == 0, r.stderr
    data = json.loads((tmp_path / "latest" / "run.json").read_text())
    names = {b["name"] for b in data["benchmarks"]}
    assert {"echo/epoll/c:1/s:64/closed/msgs_per_sec",
            "echo/epoll/c:1/s:64/closed/p:shared/msgs_per_sec",
            "echo/epoll/c:1/s:64/closed/p:free/msgs_per_sec"} <= names
    place = data["context"]["placement"]["placements"]
    assert place["shared"]["server_cpus"] == place["shared"]["client_cpus"]
    assert place["free"]["server_cpus"] is None
    assert data["context"]["echobench"]["placements"] == ["split", "shared", "free"]
    with open(tmp_path / "latest" / "cells.csv") as f:
        assert {x["placement"] for x in csv.DictReader(f)} == {"split", "shared", "free"}


@pytest.mark.slow
def test_until_ci_repeats_until_reached_or_max(build, tmp_path):
    # 0.001 %: never reached with real noise, so every cell runs --max-repetitions times.
    r = echobench(*RUN, "--build", build, "--out", tmp_path, "--backends", "epoll",
                  "--repetitions", "2", "--until-ci", "0.001", "--max-repetitions", "4")
    assert r.returncode == 0, r.stderr
    data = json.loads((tmp_path / "latest" / "run.json").read_text())
    reps = [b["repetition_index"] for b in data["benchmarks"]
            if b["name"] == "echo/epoll/c:1/s:64/closed/msgs_per_sec"]
    assert reps == [0, 1, 2, 3]
    cells = data["context"]["echobench"]["until_ci"]["cells"]
    assert cells["echo/epoll/c:1/s:64/closed/msgs_per_sec"]["reached"] is False
    # 99 %: reached at the first check (two repetitions).
    r = echobench(*RUN, "--build", build, "--out", tmp_path / "b", "--backends", "epoll",
                  "--repetitions", "2", "--until-ci", "99", "--max-repetitions", "4")
    data = json.loads((tmp_path / "b" / "latest" / "run.json").read_text())
    reps = [b["repetition_index"] for b in data["benchmarks"]
            if b["name"] == "echo/epoll/c:1/s:64/closed/msgs_per_sec"]
    assert reps == [0, 1]
    assert data["context"]["echobench"]["until_ci"]["cells"][
        "echo/epoll/c:1/s:64/closed/msgs_per_sec"]["reached"] is True


def test_invalid_cells_are_recorded_and_latest_does_not_move(build, tmp_path):
    out = tmp_path / "results"
    r = echobench(*RUN, "--build", build, "--out", out, "--backends", "epoll",
                  env={"FAKE_LOAD_INVALID": "1"})
    assert "self-checks failed" in r.stderr
    assert not (out / "latest").exists()
    data = json.loads((only_run(out) / "run.json").read_text())
    assert data["context"]["invalid_cells"][0]["reasons"] == ["connections check failed"]
    assert all(b["echobench"]["valid"] is False for b in data["benchmarks"])


@pytest.mark.slow
def test_user_servers_and_targets_beside_backends(build, tmp_path):
    fake = build / "servers" / "echo-server"
    with subprocess.Popen([str(fake), "--backend", "epoll", "--listen", "127.0.0.1:0"],
                          stdout=subprocess.PIPE, text=True,
                          start_new_session=True) as running:
        addr = running.stdout.readline().split()[1]
        try:
            r = echobench(
                "run", "--build", build, "--out", tmp_path, "--backends", "epoll",
                "--server", f"asyncio=/usr/bin/python3 {EXAMPLE} {{port}}",
                "--server", f"printer={fake} --backend poll --listen 127.0.0.1:0",
                "--target", f"running={addr}",
                "--connections", "2", "--sizes", "64", "--modes", "closed,open50",
                "--duration", "200ms", "--warmup", "50ms", "--repetitions", "1",
                "--conform", "must", timeout=180)
        finally:
            os.killpg(running.pid, signal.SIGTERM)
    assert r.returncode == 0, r.stderr
    run_dir = tmp_path / "latest"
    data = json.loads((run_dir / "run.json").read_text())
    names = {b["name"] for b in data["benchmarks"]}
    for entry in ("epoll", "asyncio", "printer", "running"):
        assert f"echo/{entry}/c:2/s:64/closed/msgs_per_sec" in names, entry
    kinds = {e["name"]: e["kind"] for e in data["context"]["echobench"]["entries"]}
    assert kinds == {"epoll": "backend", "asyncio": "server", "printer": "server",
                     "running": "target"}
    cpu = {b["echobench"]["entry"] for b in data["benchmarks"]
           if b["echobench"]["metric"] == "server_cpu_ns_per_msg"}
    assert {"epoll", "asyncio", "printer"} <= cpu and "running" not in cpu
    rates = _rates(data, "open50")
    assert len(set(rates.values())) == 1 and set(rates) == {"epoll", "asyncio", "printer",
                                                            "running"}
    with open(run_dir / "cells.csv") as f:
        assert {x["entry_kind"] for x in csv.DictReader(f)} == {"backend", "server", "target"}
    conf = json.loads((run_dir / "conform.json").read_text())
    assert {k: v["verdict"] for k, v in conf.items()} == {
        "epoll": "pass", "asyncio": "pass", "printer": "pass", "running": "pass"}
    assert (run_dir / "conform" / "asyncio.tap").is_file()
    assert processes_under(EXAMPLE) == []


def test_backends_none_runs_only_user_entries(build, tmp_path):
    r = echobench(*RUN, "--build", build, "--out", tmp_path, "--backends", "none",
                  "--server", f"mine=/usr/bin/python3 {EXAMPLE} {{port}}")
    assert r.returncode == 0, r.stderr
    data = json.loads((tmp_path / "latest" / "run.json").read_text())
    assert {b["echobench"]["entry"] for b in data["benchmarks"]} == {"mine"}
    assert data["context"]["reference"] == "mine"


def test_load_hosts_go_through_remote_load_hosts(build, tmp_path, monkeypatch):
    """The runner's hook: with --load-hosts, echo-load runs through remote.LoadHosts (a
    stand-in here that runs the fake echo-load locally and records its calls)."""
    import types
    from echobench_lib import cli
    calls = []

    class LoadHosts:
        def __init__(self, dests, ssh_options, echo_load_path):
            calls.append(("init", dests, ssh_options, echo_load_path))

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            calls.append(("exit",))

        def run(self, base_args, target, connections, rate, out_dir, tag, seconds):
            calls.append(("run", list(base_args), target, connections, rate, tag, seconds))
            js = pathlib.Path(out_dir) / "x.json"
            argv = [str(build / "clients" / "echo-load"), *base_args, "--connections",
                    str(connections), "--json", str(js), target]
            if rate:
                argv[1:1] = ["--rate", str(rate)]
            rc = subprocess.run(argv, capture_output=True).returncode
            load = json.loads(js.read_text())
            load["hosts"] = [{"dest": d, "messages": load["messages"]} for d in ("h1", "h2")]
            return load, rc

    monkeypatch.setitem(sys.modules, "echobench_lib.remote",
                        types.SimpleNamespace(LoadHosts=LoadHosts))
    monkeypatch.setattr(sys.modules["echobench_lib"], "remote",
                        sys.modules["echobench_lib.remote"], raising=False)
    rc = cli.main([*RUN, "--build", str(build), "--out", str(tmp_path), "--backends", "epoll",
                   "--modes", "closed,open50", "--load-hosts", "h1,user@h2:2222",
                   "--ssh-option", "StrictHostKeyChecking=no"])
    assert rc == 0
    assert calls[0] == ("init", ["h1", "user@h2:2222"], ["StrictHostKeyChecking=no"],
                        str(build.resolve() / "clients" / "echo-load"))
    runs = [c for c in calls if c[0] == "run"]
    assert len(runs) == 2 and calls[-1] == ("exit",)
    for _, base, target, conns, rate, tag, seconds in runs:
        assert conns == 1 and target.startswith("127.0.0.1:") and seconds == 0.25
        assert not {"--connections", "--rate", "--json", "--hgrm", target} & set(base)
    assert runs[0][4] is None and runs[1][4] > 0
    data = json.loads((tmp_path / "latest" / "run.json").read_text())
    assert data["context"]["echobench"]["load_hosts"] == ["h1", "user@h2:2222"]


@pytest.mark.skipif(not shutil.which("socat"), reason="socat is not installed")
def test_socat_as_a_user_server(build, tmp_path):
    r = echobench(*RUN, "--build", build, "--out", tmp_path, "--backends", "none",
                  "--server", "socat=socat TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork "
                  "EXEC:cat")
    assert r.returncode == 0, r.stderr
    data = json.loads((tmp_path / "latest" / "run.json").read_text())
    assert "echo/socat/c:1/s:64/closed/msgs_per_sec" in {b["name"] for b in data["benchmarks"]}


def test_quick_conformance_leaves_out_the_catalogues_long_cases(build, tmp_path):
    r = echobench(*RUN[:-2], "--conform", "quick", "--build", build, "--out", tmp_path,
                  "--backends", "epoll")
    assert r.returncode == 0, r.stderr
    conf = json.loads((tmp_path / "latest" / "conform.json").read_text())
    assert conf["epoll"]["left_out"] == ["LIMIT-CHURN-10"]
    assert conf["epoll"]["verdict"] == "pass" and conf["epoll"]["passed"] == 2


def _targets(run_dir):
    """{(entry, mode): [echo-load's target per repetition, in repetition order]} from raw/."""
    out = {}
    for p in sorted((run_dir / "raw").glob("*_r*.json")):
        entry, rest = p.stem.split("_c", 1)
        mode = rest.split("_")[2]
        rep = int(p.stem.rsplit("_r", 1)[1])
        out.setdefault((entry, mode), {})[rep] = json.loads(p.read_text())["target"]
    return {k: [v[r] for r in sorted(v)] for k, v in out.items()}


def test_paired_rounds_alternate_entries_on_servers_that_stay_up(build, tmp_path):
    """Paired (the default): per cell each entry's server starts once and serves every round;
    the rounds measure the entries in a balanced order (AB BA BA AB), recorded as seq."""
    r = echobench(*RUN, "--build", build, "--out", tmp_path, "--repetitions", "4",
                  "--modes", "closed,open50")
    assert r.returncode == 0, r.stderr
    run_dir = tmp_path / "latest"
    data = json.loads((run_dir / "run.json").read_text())
    assert data["context"]["echobench"]["design"] == "paired"
    for key, targets in _targets(run_dir).items():
        assert len(targets) == 4 and len(set(targets)) == 1, (key, targets)
    seq = {}
    for b in data["benchmarks"]:
        eb = b["echobench"]
        if b.get("run_type") == "iteration" and eb["metric"] == "msgs_per_sec" and \
                eb["mode"] == "closed":
            seq[eb["seq"]] = (b["repetition_index"], eb["entry"])
    order = [seq[k] for k in sorted(seq)]
    assert order == [(0, "epoll"), (0, "poll"), (1, "poll"), (1, "epoll"),
                     (2, "poll"), (2, "epoll"), (3, "epoll"), (3, "poll")]
    assert "Paired design" in (run_dir / "summary.md").read_text()


def test_unpaired_starts_a_fresh_server_per_repetition(build, tmp_path):
    r = echobench(*RUN, "--build", build, "--out", tmp_path, "--repetitions", "3",
                  "--unpaired")
    assert r.returncode == 0, r.stderr
    run_dir = tmp_path / "latest"
    assert json.loads((run_dir / "run.json").read_text())["context"]["echobench"][
        "design"] == "unpaired"
    for key, targets in _targets(run_dir).items():
        assert len(set(targets)) == 3, (key, targets)
    assert "Unpaired design" in (run_dir / "summary.md").read_text()


def test_client_bound_cells_are_ranked_by_server_cpu(build, tmp_path):
    """A client at 99 % of its thread, busier than the server: the cell is client-bound, not
    invalid, and the summary ranks it by the server's CPU per message."""
    r = echobench(*RUN, "--build", build, "--out", tmp_path, "--repetitions", "2",
                  env={"FAKE_LOAD_CLIENT_BOUND": "1"})
    assert r.returncode == 0, r.stderr
    run_dir = tmp_path / "latest"
    data = json.loads((run_dir / "run.json").read_text())
    it = [b["echobench"] for b in data["benchmarks"] if b.get("run_type") == "iteration"]
    assert it and all(e["client_bound"] is True and e["valid"] is True for e in it)
    assert data["context"]["invalid_cells"] == []
    md = (run_dir / "summary.md").read_text()
    assert "| c=1 s=64 closed | client-bound | server_cpu_ns_per_msg (ns/msg) |" in md


def test_run_adds_itself_to_the_history(build, tmp_path):
    db = tmp_path / "h.sqlite"
    for out in ("a", "b"):
        r = echobench(*RUN, "--build", build, "--out", tmp_path / out, "--backends", "epoll",
                      "--history", db)
        assert r.returncode == 0, r.stderr
    r = echobench("history", "--db", db, "show", "--json", "-")
    assert r.returncode == 0, r.stderr
    series = json.loads(r.stdout)
    tput = [s for s in series if s["metric"] == "msgs_per_sec"]
    assert tput and len(tput[0]["points"]) == 2, series


def test_cells_beside_the_matrix_and_churn(build, tmp_path):
    """--cells adds cells beside the cross product (the quick preset's churn and 64 KiB
    streaming cells): a churn cell is measured with echo-load --churn and ranked by
    transactions/s (or, client-bound, by server CPU per transaction)."""
    r = echobench(*RUN, "--build", build, "--out", tmp_path, "--backends", "epoll,poll",
                  "--cells", "churn:c=2:s=64,stream:c=1:s=4k", "--repetitions", "2")
    assert r.returncode == 0, r.stderr
    data = json.loads((tmp_path / "latest" / "run.json").read_text())
    names = {b["name"] for b in data["benchmarks"]}
    for e in ("epoll", "poll"):
        assert f"echo/{e}/c:1/s:64/closed/msgs_per_sec" in names
        assert f"echo/{e}/c:2/s:64/churn/transactions_per_sec" in names
        assert f"echo/{e}/c:2/s:64/churn/server_cpu_ns_per_tx" in names
        assert f"echo/{e}/c:1/s:4096/stream/bytes_per_sec" in names
    assert not [n for n in names if "/c:2/" in n and "/closed/" in n]     # not a cross product
    raw = json.loads(next((tmp_path / "latest" / "raw").glob("epoll_c2_s64_churn_r0.json"))
                     .read_text())
    assert raw["mode"] == "churn" and raw["transactions"] > 0
    md = (tmp_path / "latest" / "summary.md").read_text()
    assert "### Connection churn" in md and "| c=2 s=64 churn |" in md

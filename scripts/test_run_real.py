"""End to end with the real programs: `echobench check` and `echobench run` on two backends x
one cell, then compare and Google Benchmark's compare.py on the result. Skipped (with the
reason) until echo-server and echo-load are built in $ECHOBENCH_BUILD."""
import json
import os
import pathlib
import subprocess

import pytest

from echobench_testlib import HERE, echobench

BUILD = pathlib.Path(os.environ.get("ECHOBENCH_BUILD", HERE.parent / "build")).resolve()
SERVER = BUILD / "servers" / "echo-server"
LOAD = BUILD / "clients" / "echo-load"
FAULTY = BUILD / "conformance" / "faulty-echo"

pytestmark = pytest.mark.skipif(not (SERVER.exists() and LOAD.exists()),
                                reason=f"echo-server and echo-load are not both built in {BUILD}")


def usable():
    from echobench_lib.build import is_variant, list_backends
    return [n for n, ok, _ in list_backends(SERVER) if ok and not is_variant(n)]


def run_dir_of(out):
    """The one run directory under out. Not out/latest: latest moves only to a run with a valid
    cell, and whether real cells pass echo-load's self-checks (a saturated client thread, late
    sends) depends on the machine, not on the code under test."""
    runs = [p for p in out.iterdir() if p.is_dir() and p.name != "latest"]
    assert len(runs) == 1, runs
    return runs[0]


def run_clean(out, *args, timeout=300):
    """`echobench run` of the real programs into out: it exits 0 with no failed cell; returns
    its run.json."""
    r = echobench("run", "--build", BUILD, "--out", out, *args, timeout=timeout)
    assert r.returncode == 0, r.stdout + r.stderr
    data = json.loads((run_dir_of(out) / "run.json").read_text())
    assert data["context"]["failed_cells"] == []
    return data


def test_check_real_backends():
    r = echobench("check", "--build", BUILD, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert {ln.split(":")[0] for ln in lines} >= set(usable())
    for b in usable():
        assert f"{b}: ok (echo verified, 3 sizes)" in lines


@pytest.mark.slow
def test_run_two_backends_one_cell(tmp_path):
    names = usable()
    backends = [b for b in ("epoll", "poll", "select") if b in names][:2]
    if len(backends) < 2:
        pytest.skip(f"fewer than two of epoll/poll/select usable: {names}")
    out = tmp_path / "results"
    # quick: --must-only without the cases that wait seconds by design (about 5 s a backend).
    conform = "quick" if (BUILD / "conformance" / "echo-conform").exists() else "none"
    data = run_clean(out, "--backends", ",".join(backends),
                     "--connections", "4", "--sizes", "64", "--modes", "closed",
                     "--duration", "1s", "--warmup", "200ms", "--repetitions", "2",
                     "--conform", conform, "--conform-timeout", "90s", timeout=400)
    run_dir = run_dir_of(out)
    for b in backends:
        tput = [e for e in data["benchmarks"]
                if e["name"] == f"echo/{b}/c:4/s:64/closed/msgs_per_sec"]
        assert len(tput) == 2 and all(e["echobench"]["value"] > 100 for e in tput), tput
        cpu = [e for e in data["benchmarks"]
               if e["name"] == f"echo/{b}/c:4/s:64/closed/server_cpu_ns_per_msg"]
        assert cpu and all(0 < e["echobench"]["value"] < 1e7 for e in cpu)
        assert (run_dir / "hgrm" / f"{b}_c4_s64_closed_r0.hgrm").is_file()
        print(f"{b}: {tput[0]['echobench']['value']:.0f} msgs/s, "
              f"{cpu[0]['echobench']['value']:.0f} ns server CPU/msg")
    html = (run_dir / "report.html").read_text()
    assert html.count("<svg") >= 3
    conf = json.loads((run_dir / "conform.json").read_text())
    if conform == "quick":
        assert all(conf[b]["verdict"] == "pass" for b in backends), conf
    # A run compared with itself: never a regression. One run a side cannot separate a change
    # from a run-to-run shift, so compare says it cannot tell (3); assuming the shift away, two
    # repetitions a side still cannot reach significance (untestable, 3), and an invalid cell
    # is not comparable (3).
    for extra in ([], ["--assume-no-run-shift"]):
        c = echobench("compare", *extra, run_dir, run_dir)
        assert c.returncode == 3, c.stdout + c.stderr
    assert "regression" not in c.stdout.splitlines()[0]
    gb = "/usr/share/benchmark/compare.py"
    if os.path.exists(gb):
        g = subprocess.run(["/usr/bin/python3", gb, "--no-color", "benchmarks",
                            run_dir / "run.json", run_dir / "run.json"],
                           capture_output=True, text=True, timeout=60)
        assert g.returncode == 0 and "OVERALL_GEOMEAN" in g.stdout, g.stderr


@pytest.mark.parametrize("option, largest", [
    ("--size", "64M"), ("--connections", "1000000"), ("--pipeline", "65536"),
    ("--duration", "24h"), ("--threads", "1024"),
])
def test_driver_bounds_are_echo_loads(option, largest):
    """The driver's bounds (echobench_lib/bounds.py) are echo-load's: the largest value passes
    its option parsing (it then fails to connect to port 1: exit 1), one more is a usage error."""
    from echobench_lib import bounds
    one_more = {"--size": str(bounds.MAX_SIZE + 1), "--connections": str(
        bounds.MAX_CONNECTIONS + 1), "--pipeline": str(bounds.MAX_PIPELINE + 1),
        "--duration": "86401s", "--threads": str(bounds.MAX_CLIENT_THREADS + 1)}[option]
    base = [str(LOAD), "--duration", "1ms", "--timeout", "1s"]
    ok = subprocess.run(base + [option, largest, "127.0.0.1:1"], capture_output=True,
                        text=True, timeout=60)
    assert ok.returncode != 2, ok.stderr
    bad = subprocess.run(base + [option, one_more, "127.0.0.1:1"], capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2, bad.stderr


@pytest.mark.slow
def test_run_16M_messages_and_user_servers(tmp_path):
    """--sizes 16M passes the echo pre-check; a user's asyncio server ({port}) and socat run
    beside a backend with the real echo-load."""
    names = usable()
    if "epoll" not in names:
        pytest.skip("epoll is not usable here")
    out = tmp_path / "r16"
    run_clean(out, "--backends", "epoll", "--connections", "1", "--sizes", "16M",
              "--modes", "closed",
              # echo-load takes most of a second per 16 MiB round trip here.
              "--duration", "3s", "--warmup", "50ms", "--repetitions", "1", "--conform", "none")
    servers = ["--server", f"asyncio=/usr/bin/python3 {HERE / 'examples' / 'asyncio_echo.py'} "
               "{port}"]
    import shutil
    if shutil.which("socat"):
        servers += ["--server", "socat=socat TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork "
                                "EXEC:cat"]
    out = tmp_path / "mine"
    # A fixed, modest open-loop rate: a fraction of epoll's peak can be more than a forking
    # server keeps up with on a busy machine, and then its cell measures nothing.
    data = run_clean(out, "--backends", "epoll", *servers,
                     "--connections", "4", "--sizes", "64", "--modes", "closed",
                     "--rates", "200", "--duration", "500ms", "--warmup", "100ms",
                     "--repetitions", "1", "--conform", "none")
    rates = {e["echobench"]["entry"]: e["echobench"]["offered_rate"]
             for e in data["benchmarks"] if e.get("run_type") == "iteration"
             and e["name"].endswith("/rate200/p99_us")}
    assert len(rates) == len(servers) // 2 + 1 and len(set(rates.values())) == 1, rates
    for e in data["benchmarks"]:
        if e["name"].endswith("/closed/msgs_per_sec"):
            print(f"{e['echobench']['entry']}: {e['echobench']['value']:.0f} msgs/s")


@pytest.mark.slow
def test_report_reads_what_a_real_run_writes(tmp_path):
    """A short real run with a backend, a --server, a --target, placement shared, --until-ci
    and a small sweep: the report must read the runner's context as docs/RESULTS.md gives it
    (reference, entries[].server_cpu, until_ci cells, the sweep's SLO, hgrm files named with
    the placement, context.invalid_cells) and colour each entry differently. The user's server
    `mine` is faulty-echo serving one client at a time, so with two connections one of them is
    starved and its cells are invalid on every machine (echo-load's connections check): the
    report and the runner must label them alike."""
    from echobench_lib import plots
    from echobench_lib.report_fmt import slo_text
    from echobench_lib.rundata import RunData
    from echobench_lib.server import Server
    names = usable()
    if "poll" not in names or "epoll" not in names:
        pytest.skip(f"poll and epoll are not both usable here: {names}")
    if not FAULTY.exists():
        pytest.skip(f"{FAULTY} is not built")
    far = Server([SERVER, "--backend", "epoll", "--listen", "127.0.0.1:0"])
    try:
        out = tmp_path / "res"
        r = echobench("run", "--build", BUILD, "--out", out, "--backends", "poll",
                      "--server",
                      f"mine={FAULTY} --fault one-at-a-time --listen 127.0.0.1:{{port}}",
                      "--target", f"far={far.addr}", "--placement", "shared",
                      "--connections", "2", "--sizes", "64", "--modes", "closed,sweep",
                      "--duration", "200ms", "--warmup", "50ms", "--repetitions", "2",
                      "--until-ci", "50", "--max-repetitions", "3", "--slo", "p99:5ms",
                      "--conform", "none", timeout=300)
    finally:
        far.stop()
    assert r.returncode == 0, r.stdout + r.stderr
    run_dir = run_dir_of(out)
    ctx = json.loads((run_dir / "run.json").read_text())["context"]
    eb = ctx["echobench"]
    d = RunData(run_dir)
    assert d.reference == eb["reference"] == "poll" and d.backends == ["poll", "mine", "far"]
    assert [e["server_cpu"] for e in eb["entries"]] == [True, True, False]
    assert not d.has_cpu("far") and d.has_cpu("mine")
    # hgrm files of placement shared are found: a spectrum per entry
    assert {k.entry for k in d.spectra} == {"poll", "mine", "far"}
    uc, misses = d.until_ci_misses()
    assert uc["pct"] == 50 and len(uc["cells"]) == 3
    assert {m[0] for m in misses} == {n for n, v in uc["cells"].items() if not v["reached"]}
    invalid = {(b, lab) for b, lab, *_ in d.invalid_cells()}
    assert invalid == {(x["cell"].split(" ", 1)[0], x["cell"].split(" ", 1)[1])
                       for x in ctx["invalid_cells"]}
    assert ("mine", "c=2 s=64 closed shared") in invalid
    md = (run_dir / "summary.md").read_text()
    html = (run_dir / "report.html").read_text()
    assert eb["slo"] == "p99:5ms" and slo_text(eb["slo"]) == "p99 ≤ 5 ms"
    assert set(d.knees()) == {"poll", "mine", "far"} and md.count("| p99 ≤ 5 ms |") == 3
    assert "reference <b>poll</b>" in html and "Ratios are vs poll" in md
    assert "far is a target" in md and "n/a (target)" in html
    assert "far (target: " + far.addr in html and "mine (server: " in html
    cols = [plots.colour(b, d.backends) for b in d.backends]
    assert len(set(cols)) == 3 and all(f"stroke: {c}" in html for c in cols)


def test_client_engine_is_passed_and_recorded(tmp_path):
    """--client-engine reaches every echo-load run and is recorded in run.json and the report;
    an engine echo-load lacks (or cannot run here) is one line and exit 2, before anything."""
    from echobench_lib.build import list_engines
    engines = list_engines(LOAD)
    bad = echobench("run", "--build", BUILD, "--out", tmp_path / "bad", "--backends", "epoll",
                    "--client-engine", "kqueue", timeout=60)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert "--client-engine kqueue" in bad.stderr and not (tmp_path / "bad").exists()
    if "epoll" not in usable():
        pytest.skip("epoll is not usable here")
    engine = "uring" if engines.get("uring", (False,))[0] else "epoll"
    out = tmp_path / "r"
    data = run_clean(out, "--backends", "epoll", "--client-engine", engine,
                     "--connections", "4", "--sizes", "64", "--modes", "closed",
                     "--duration", "200ms", "--warmup", "50ms", "--repetitions", "1",
                     "--conform", "none")
    assert data["context"]["client_engine"] == engine
    run_dir = run_dir_of(out)
    loads = [json.loads(p.read_text()) for p in (run_dir / "raw").glob("*.json")]
    assert loads and all(obj["engine"] == engine for obj in loads), loads
    assert f"client engine</td><td>{engine}<" in (run_dir / "report.html").read_text()
    # Without the option: echo-load's own default, named.
    default = next(n for n, (_, st) in engines.items() if "(default)" in st)
    data = run_clean(tmp_path / "d", "--backends", "epoll", "--connections", "4", "--sizes",
                     "64", "--modes", "closed", "--duration", "200ms", "--warmup", "50ms",
                     "--repetitions", "1", "--conform", "none")
    assert data["context"]["client_engine"] == default


def test_worker_models_side_by_side(tmp_path):
    """`epoll+t2` (thread per core) and `epoll+p2` (process per core, prefork) are two entries
    of one cell, each started with its worker model; the prefork server's CPU is the sum over
    its processes. The conformance runner starts them the same way."""
    from echobench_lib.build import backend_args
    from echobench_lib.conform import backend_exec
    assert backend_args("epoll+t2") == ["--backend", "epoll", "--threads", "2"]
    assert backend_args("uring:sqpoll+p3") == ["--backend", "uring:sqpoll", "--processes", "3"]
    assert backend_args("epoll", threads=4) == ["--backend", "epoll", "--threads", "4"]
    assert "--backend epoll --processes 2 " in backend_exec(SERVER, "epoll+p2")
    if "epoll" not in usable():
        pytest.skip("epoll is not usable here")
    data = run_clean(tmp_path / "r", "--backends", "epoll+t2,epoll+p2", "--placement", "free",
                     "--connections", "8", "--sizes", "64", "--modes", "closed",
                     "--duration", "300ms", "--warmup", "50ms", "--repetitions", "1",
                     "--conform", "none")
    cpu = {e["echobench"]["entry"]: e["echobench"]["value"] for e in data["benchmarks"]
           if e["name"].endswith("/server_cpu_ns_per_msg") and e.get("run_type") == "iteration"}
    assert set(cpu) == {"epoll+t2", "epoll+p2"} and all(v > 0 for v in cpu.values()), cpu

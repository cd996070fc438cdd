"""The results history (echobench_lib/history.py, historydb.py, history_cmd.py): runs added and
imported once however often they are given, series as run.json has them, the schema version
and a broken file refused in one line, the run-to-run spread for compare, the command's exit
codes. Every store test runs against SQLite and against a real PostgreSQL server started in a
temporary directory (skipped, with the reason, where that cannot be done)."""
import glob
import json
import os
import pathlib
import shutil
import subprocess
import tempfile

import pytest

import synthetic
from echobench_testlib import HERE, echobench

from echobench_lib import changepoint, gbjson, history, historydb
from echobench_lib.util import RunError, UsageError  # noqa: E402

ONE_CELL = dict(backends=("epoll",), connections=(16,), modes=("closed",))
CELL = "epoll/c:16/s:64/closed"


def make_run(root, i, factor=1.0, noise=0.01, commit=None, **kw):
    """Synthetic run number i (its own start time and commit) under root."""
    d = synthetic.make_run(pathlib.Path(root) / f"2025010{1 + i // 100}T{i:06d}Z-synth",
                           repetitions=3, noise=noise, factor=factor, seed=100 + i,
                           **{**ONE_CELL, **kw})
    data = json.loads((d / "run.json").read_text())
    data["context"].update({"utc_start": f"2025-01-01T00:{i // 60:02d}:{i % 60:02d}+00:00",
                            "git_commit": commit or f"{i + 1:04d}" + "ab" * 18,
                            "git_dirty": False, "virtualization": "kvm"})
    (d / "run.json").write_text(json.dumps(data))
    return d


# --- PostgreSQL: a real server in a temporary directory, unix socket only -----------------

def _pg_bin():
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return pathlib.Path(found[-1]).parent if found else None


@pytest.fixture(scope="module")
def pg_server():
    """A PostgreSQL server of Debian's postgresql package, listening only on a unix socket in
    a temporary directory, run as `nobody` when the tests run as root; yields the socket
    directory and stops and removes it at the end."""
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        pytest.skip("python3-psycopg2 is not installed (scripts/setup.sh installs it)")
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("no /usr/lib/postgresql/*/bin/initdb (Debian's postgresql package)")
    user = None
    base = tempfile.mkdtemp(prefix="echobench-pg-")
    if os.geteuid() == 0:
        user = "nobody"     # initdb and postgres refuse to run as root
        try:
            shutil.chown(base, user=user)
        except (LookupError, OSError) as e:
            shutil.rmtree(base, ignore_errors=True)
            pytest.skip(f"cannot hand a directory to user nobody for PostgreSQL: {e}")
    os.chmod(base, 0o755)
    data, log = os.path.join(base, "data"), os.path.join(base, "log")

    def run(*argv, timeout=120):
        return subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                              timeout=timeout, user=user, cwd=base, stdin=subprocess.DEVNULL)
    try:
        res = run(bindir / "initdb", "-D", data, "-A", "trust", "-U", "postgres", "-E",
                  "UTF8", "--locale=C", "--no-sync")
        if res.returncode != 0:
            pytest.skip(f"initdb failed: {(res.stderr or res.stdout).strip()[-300:]}")
        res = run(bindir / "pg_ctl", "-D", data, "-l", log, "-w", "-t", "120", "-o",
                  f"-k {base} -c listen_addresses='' -F", "start", timeout=180)
        if res.returncode != 0:
            tail = pathlib.Path(log).read_text()[-300:] if os.path.exists(log) else ""
            pytest.skip(f"pg_ctl start failed: {res.stderr.strip()[-200:]} {tail}")
        yield base
    finally:
        if os.path.exists(os.path.join(data, "postmaster.pid")):
            run(bindir / "pg_ctl", "-D", data, "-m", "immediate", "-w", "-t", "60", "stop")
        shutil.rmtree(base, ignore_errors=True)


_db_counter = [0]


def _pg_database(sock):
    import psycopg2
    _db_counter[0] += 1
    name = f"hist{os.getpid()}_{_db_counter[0]}"
    conn = psycopg2.connect(host=sock, user="postgres", dbname="postgres")
    conn.autocommit = True
    conn.cursor().execute(f"CREATE DATABASE {name}")
    conn.close()
    return f"postgresql://postgres@/{name}?host={sock}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path):
    """The store spec of one test: an SQLite file, or a fresh database of the test server."""
    if request.param == "sqlite":
        return str(tmp_path / "history.sqlite")
    return _pg_database(request.getfixturevalue("pg_server"))


# --- the command, as the driver runs it ---------------------------------------------------

def hist(*args, env=None):
    """`echobench history ARGS`."""
    return echobench("history", *args, env=env)


def one_line_error(res, code=2):
    assert res.returncode == code, res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    return lines[0]


# --- the store ------------------------------------------------------------------------------

def test_add_stores_every_repetition_with_its_validity(tmp_path, db):
    run = make_run(tmp_path / "runs", 0, invalid={("epoll", 16, "closed")})
    with history.Store(db, create=True) as st:
        added, key, n = st.add_run(run, branch="main")
        assert added and n == 3 * 7                # 3 repetitions x 7 gated metrics
        (s,) = st.series(cells=[CELL], metrics=["msgs_per_sec"])
    rows = [r for r in gbjson.iterations(gbjson.load(run)) if r["metric"] == "msgs_per_sec"]
    assert s.cell == CELL and s.branch == "main"
    assert s.machine_class == "2 x Synthetic CPU / kvm"
    (pt,) = s.points
    assert sorted(pt.values) == sorted(r["value"] for r in rows)
    assert pt.valid == [False] * 3 and pt.median is None and s.usable() == []
    assert pt.commit.startswith("0001") and pt.utc_start == "2025-01-01T00:00:00Z"


def test_import_twice_adds_nothing_the_second_time(tmp_path, db):
    for i in range(4):
        make_run(tmp_path / "runs", i)
    os.symlink(tmp_path / "runs" / sorted(os.listdir(tmp_path / "runs"))[-1],
               tmp_path / "runs" / "latest")
    with history.Store(db, create=True) as st:
        first = [st.add_run(r, branch="main")[0] for r in history.find_runs(tmp_path / "runs")]
        again = [st.add_run(r, branch="main")[0] for r in history.find_runs(tmp_path / "runs")]
        # a copy of a run (cp -rL results/latest ci/baseline) is the same run
        shutil.copytree(tmp_path / "runs" / "latest", tmp_path / "copy")
        assert st.add_run(tmp_path / "copy")[0] is False
        assert first == [True] * 4 and again == [False] * 4
        assert len(st.runs()) == 4
        (s,) = st.series(cells=[CELL], metrics=["p99_us"])
        assert len(s.points) == 4 and all(len(p.values) == 3 for p in s.points)


def test_series_follow_time_and_filters(tmp_path, db):
    with history.Store(db, create=True) as st:
        for i in (2, 0, 1):                                   # added out of order
            st.add_run(make_run(tmp_path / "a", i), branch="main")
        st.add_run(make_run(tmp_path / "b", 3), branch="feature")
        st.add_run(make_run(tmp_path / "c", 4, connections=(1,)), branch="main")
        main = st.series(cells=["epoll/c:16/*"], metrics=["msgs_per_sec"], branch="main")
        assert [p.utc_start[-3:-1] for p in main[0].points] == ["00", "01", "02"]
        assert len(main) == 1
        both = st.series(cells=[CELL], metrics=["msgs_per_sec"], by_branch=False)
        assert len(both) == 1 and len(both[0].points) == 4
        assert {s.cell for s in st.series(metrics=["p50_us"])} == {CELL,
                                                                    "epoll/c:1/s:64/closed"}
        assert st.series(machine="*EPYC*") == []
        # p90_us and p99_us of 3 series: 2 cells on main, 1 on feature
        assert len(st.series(machine="2 x * / kvm", metrics=["p9?_us"])) == 6
        assert st.series(metrics=["MSGS*"]) == [] and st.series(metrics=["p99%"]) == []
        st.add_run(make_run(tmp_path / "d", 5))                # commit not in git: no branch
        (none,) = st.series(metrics=["msgs_per_sec"], branch="-")
        assert none.branch is None and len(none.points) == 1
        (last,) = st.series(cells=[CELL], metrics=["p50_us"], branch="main", last=2)
        assert [p.utc_start[-3:-1] for p in last.points] == ["01", "02"]


def test_a_newer_schema_is_refused_in_one_line(tmp_path, db):
    with history.Store(db, create=True) as st:
        st.add_run(make_run(tmp_path, 0))
        st.db.execute("UPDATE echobench_schema SET version = ?",
                      (historydb.SCHEMA_VERSION + 1,))
    with pytest.raises(UsageError, match=f"schema version {historydb.SCHEMA_VERSION + 1}"):
        history.Store(db)
    line = one_line_error(hist("show", "--db", db))
    assert "schema version" in line and "update echobench" in line


def test_run_to_run_spread_from_the_history(tmp_path, db):
    # 3 % run-to-run: each run's speed factor drawn once; 1 % within a run.
    import random
    rng = random.Random(5)
    with history.Store(db, create=True) as st:
        for i in range(2):
            st.add_run(make_run(tmp_path, i, factor=1 + rng.gauss(0, 0.03)))
        mc = "2 x Synthetic CPU / kvm"
        assert history.run_to_run_spread(st, CELL, "msgs_per_sec", mc) is None
        for i in range(2, 24):
            shift = 0.8 if i >= 14 else 1.0                    # a real change at run 14
            st.add_run(make_run(tmp_path, i, factor=shift * (1 + rng.gauss(0, 0.03))))
        sp = history.run_to_run_spread(st, CELL, "msgs_per_sec", mc)
        assert sp.runs == 24 and [abs(c.index - 14) <= 1 for c in sp.changes] == [True]
        assert 0.015 < sp.sd_log < 0.06 and sp.df == 22
        assert history.run_to_run_spread(st, ("epoll", 16, 64, "closed", "split"),
                                         "msgs_per_sec", mc) == sp
        assert history.run_to_run_spread(st, CELL, "msgs_per_sec", "other") is None
    assert history.run_to_run_spread(db, CELL, "msgs_per_sec", mc).sd_log == sp.sd_log
    with history.existing(db) as st:
        assert len(st.runs()) == 24
    assert history.existing(tmp_path / "none.sqlite") is None


def test_a_corrupted_sqlite_file_is_one_line_naming_it(tmp_path):
    bad = tmp_path / "history.sqlite"
    bad.write_bytes(b"this is not a database\n" * 200)
    for args in (("show", "--db", bad), ("add", make_run(tmp_path, 0), "--db", bad)):
        line = one_line_error(hist(*args))
        assert str(bad) in line and "not a readable SQLite file" in line
    other = tmp_path / "other.sqlite"
    import sqlite3
    with sqlite3.connect(other) as c:
        c.execute("CREATE TABLE t (x)")
    line = one_line_error(hist("add", make_run(tmp_path, 1), "--db", other))
    assert "not an echobench history" in line


def test_branch_from_git_when_the_commit_is_in_this_checkout():
    head = history._git("rev-parse", "HEAD")
    branch = history._git("symbolic-ref", "--short", "-q", "HEAD")
    if head is None or head.returncode != 0 or branch.returncode != 0:
        pytest.skip("not a git checkout on a branch")
    got, how = history.git_branch(head.stdout.strip())
    assert got == branch.stdout.strip() and "checked-out branch" in how
    assert history.git_branch("0123456789abcdef0123456789abcdef01234567") == (None, None)
    assert history.git_branch("--all") == (None, None)          # never handed to git


def test_cell_names_round_trip():
    assert history.cell_name("epoll", 16, 64, "closed", None) == CELL
    assert history.cell_name("epoll", 16, 64, "closed", "shared") == CELL + "/p:shared"
    assert history.parse_cell(CELL + "/p:shared") == ("epoll", 16, 64, "closed", "shared")
    assert history.parse_cell("echo/epoll/c:16/s:64/closed/msgs_per_sec")[0] == "epoll"
    with pytest.raises(UsageError):
        history.parse_cell("epoll-16")


# --- the command ----------------------------------------------------------------------------

def _regressed_history(root, db, fix=False):
    """20 runs, 20 % slower from run 8 (and back from run 14 when fix)."""
    runs = [make_run(root, i, factor=0.8 if 8 <= i and not (fix and i >= 14) else 1.0)
            for i in range(20)]
    res = hist("add", *runs, "--db", db, "--branch", "main")
    assert res.returncode == 0 and "20 run(s) added" in res.stdout, res.stdout + res.stderr


def test_changes_names_the_first_commit_and_fails_on_a_newest_regression(tmp_path, db):
    _regressed_history(tmp_path / "runs", db)
    res = hist("changes", "--db", db, "--metric", "msgs_per_sec", "--json",
               tmp_path / "c.json", "--html", tmp_path / "t.html")
    assert res.returncode == 0, res.stderr
    assert "first commit 0009abab" in res.stdout and "regression" in res.stdout
    got = json.loads((tmp_path / "c.json").read_text())
    (c,) = got["changes"]
    assert c["index"] == 8 and c["commit"].startswith("0009") and c["newest"]
    assert c["size"] == pytest.approx(-0.2, abs=0.03) and c["size_lo"] <= c["size"]
    assert c["direction"] == "regression" and got["alpha"] == changepoint.DEFAULT_ALPHA
    html = (tmp_path / "t.html").read_text()
    assert html.count("<svg") == 1 and "0009abab" in html
    res = hist("changes", "--db", db, "--fail-on-change")
    assert res.returncode == 1 and "exit 1" in res.stdout, res.stdout + res.stderr
    # latency rose with the slowdown: a regression there too, never an improvement
    assert "improvement" not in res.stdout


def test_fail_on_change_passes_once_the_newest_change_is_an_improvement(tmp_path):
    db = tmp_path / "h.sqlite"
    _regressed_history(tmp_path / "runs", db, fix=True)
    res = hist("changes", "--db", db, "--metric", "msgs_per_sec", "--fail-on-change",
               "--json", "-")
    assert res.returncode == 0, res.stdout + res.stderr
    changes = json.loads(res.stdout)["changes"]
    assert [c["direction"] for c in changes] == ["regression", "improvement"]
    assert [c["index"] for c in changes] == [8, 14]


def test_show_lists_each_run_once_and_import_is_idempotent(tmp_path):
    db = tmp_path / "h.sqlite"
    for i in range(3):
        make_run(tmp_path / "runs", i)
    broken = tmp_path / "runs" / "20250109T000000Z-interrupted"
    broken.mkdir()
    (broken / "run.json").write_text('{"context": {}, "benchmarks": []}')
    res = hist("import", tmp_path / "runs", "--db", db)
    assert res.returncode == 0 and "3 run(s) added" in res.stdout and "1 skipped" in res.stdout
    assert f"skipped: {broken}: " in res.stdout and "no echobench measurements" in res.stdout
    res = hist("import", tmp_path / "runs", "--db", db)
    assert res.returncode == 0 and "0 run(s) added" in res.stdout and "3 already" in res.stdout
    assert "no echobench measurements" in one_line_error(hist("add", broken, "--db", db))
    res = hist("--db", db, "show", "--metric", "msgs_per_sec", "--cell", "epoll/*")
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("2025-01-01T00:00:0") == 3 and "3/3" in res.stdout
    res = hist("show", "--db", db, "--json", "-", "--metric", "p99_us")
    (s,) = json.loads(res.stdout)
    assert s["cell"] == CELL and len(s["points"]) == 3 and s["higher_is_better"] is False


@pytest.fixture(scope="module")
def small_db(tmp_path_factory):
    """A history with one run."""
    root = tmp_path_factory.mktemp("small")
    with history.Store(root / "h.sqlite", create=True) as st:
        st.add_run(make_run(root / "runs", 0))
    return root / "h.sqlite"


@pytest.mark.parametrize("args,words", [
    ((), "needs a verb"),
    (("frobnicate",), "invalid choice"),
    (("show", "--db"), "expected one argument"),
    (("changes", "--alpha", "2"), "bad --alpha"),
    (("changes", "--min-effect", "x"), "bad --min-effect"),
    (("changes", "--permutations", "0"), "bad --permutations"),
    (("changes", "--alpha", "0.001"), "cannot reach p <= 0.001"),
    (("show", "--last", "0"), "bad --last"),
    (("show", "--sho"), "unrecognized arguments"),
    (("add",), "required"),
    (("add", "/nonexistent/run"), "no results at"),
    (("import", "/nonexistent/dir"), "no results at"),
    (("show", "--cell", "nothing/*"), "no series"),
    (("changes", "--html", "/nonexistent/dir/t.html"), "cannot write --html"),
    (("show", "--json", "/nonexistent/dir/s.json"), "cannot write --json"),
])
def test_usage_errors_exit_2_with_one_line(small_db, args, words):
    db = small_db
    if args and args[0] in ("show", "changes") and "--db" not in args:
        args = args + ("--db", db)
    assert words in one_line_error(hist(*args))


def test_missing_history_and_postgresql_without_psycopg2_are_one_line(tmp_path):
    assert "no history at" in one_line_error(hist("show", "--db", tmp_path / "none.sqlite"))
    block = tmp_path / "block"
    (block / "psycopg2").mkdir(parents=True)
    (block / "psycopg2" / "__init__.py").write_text("raise ImportError('blocked')\n")
    env = {"PYTHONPATH": str(block)}
    line = one_line_error(hist("show", "--db", "postgresql://u:secret@127.0.0.1/x", env=env))
    assert "python3-psycopg2" in line and "secret" not in line


def test_an_unreachable_postgresql_server_is_a_run_time_error(tmp_path):
    pytest.importorskip("psycopg2", reason="python3-psycopg2 is not installed")
    url = f"postgresql://nobody@/none?host={tmp_path}"           # no server there
    with pytest.raises(RunError, match="cannot connect"):
        history.Store(url)
    assert "cannot connect" in one_line_error(hist("show", "--db", url), code=1)


def test_changes_help_gives_the_detector_defaults():
    text = hist("changes", "--help").stdout
    assert f"default {changepoint.DEFAULT_ALPHA:g}" in text
    assert f"default {changepoint.DEFAULT_PERMUTATIONS})" in text
    assert f"default {changepoint.DEFAULT_MIN_EFFECT * 100:g})" in text


@pytest.mark.slow
def test_a_real_run_is_imported(tmp_path):
    """One real `echobench run` (epoll, 1 cell, 2 short repetitions) into a history."""
    build = pathlib.Path(os.environ.get("ECHOBENCH_BUILD") or HERE.parent / "build").resolve()
    if not (build / "servers" / "echo-server").exists():
        pytest.skip(f"{build} is not built")
    res = echobench("--build", build, "run", "--backends", "epoll", "--connections", "1",
                    "--sizes", "64", "--modes", "closed", "--duration", "200ms", "--warmup",
                    "50ms", "--repetitions", "2", "--conform", "none", "--out",
                    tmp_path / "out", timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    db = tmp_path / "h.sqlite"
    res = hist("import", tmp_path / "out", "--db", db)
    assert res.returncode == 0 and "1 run(s) added" in res.stdout, res.stdout + res.stderr
    with history.Store(db) as st:
        (run,) = st.runs()
        (s,) = st.series(cells=["epoll/c:1/s:64/closed"], metrics=["msgs_per_sec"])
    data = gbjson.load(history.find_runs(tmp_path / "out")[0])
    ctx = data["context"]
    assert run["git_commit"] == ctx["git_commit"] and run["machine_class"] == \
        history.machine_class(ctx)
    assert len(s.points[0].values) == 2 and s.points[0].median > 0

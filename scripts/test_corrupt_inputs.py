"""The readers of run directories and of the results history against corrupted input: valid
directories (synthetic, one with load hosts, and a run of the fake programs) and a valid
history, corrupted in many seeded ways (fixtures/corrupt.py: truncations, flipped bits, wrong
types, missing keys, NaN and Infinity, huge and negative numbers, wrong schema versions,
directories for files, damaged SQLite). For every variant the command (`report`, `compare`,
`history add/show/import`, `compare --history`), run in-process through cli.main, either
succeeds (its output shows no NaN or Infinity) or exits 2 with one line on stderr naming the
file; the in-process readers (RunData, gbjson, compare.load_side) raise nothing but
UsageError and hand out only finite figures. Each test prints how many inputs it tried
(pytest -s). The report's plots are drawn for a seeded sample of the accepted variants (the
rest run with the figures left out, for time); the `sweep` tests (pytest -m sweep, by hand: about 3 minutes) try more of everything."""
import contextlib
import functools
import io
import json
import math
import os
import pathlib
import random
import re
import shutil
import signal
import subprocess
import sys
import traceback
import warnings
from unittest import mock

import pytest

import corrupt
import synthetic
from echobench_testlib import ECHOBENCH, fake_build

from echobench_lib import cli, compare, gbjson, plots
from echobench_lib.rundata import RunData
from echobench_lib.util import UsageError

SEED = 2117
DEADLINE_S = 120          # per variant: only a reader that hangs gets near it
NAN_INF = re.compile(r"(?<![A-Za-z_])(-?inf(inity)?|nan)(?![A-Za-z_])", re.I)


# ---- valid inputs ---------------------------------------------------------------------------
def _hosts_run(src, dst):
    """A copy of a synthetic run made as a --load-hosts run: context.echobench.load_hosts and
    raw/<cell>_r<rep>.json with each host's share (remote.py's `hosts` list)."""
    shutil.copytree(src, dst)
    data = json.loads((dst / "run.json").read_text())
    data["context"]["echobench"]["load_hosts"] = ["lh1", "user@lh2:2222"]
    (dst / "run.json").write_text(json.dumps(data, indent=1))
    (dst / "raw").mkdir()
    d = RunData(dst)
    for cell, reps in d.samples.items():
        for rep in reps:
            hosts = [{"dest": "lh1", "connections": 1, "rate": None, "phase": "main",
                      "clock_offset_us": 3.5, "ok": True, "error": None, "failed_checks": [],
                      "json": {"msgs_per_sec": 1000.0, "latency_us": {"p99": 80.0},
                               "mismatches": 0}, "hist_file": "h.hist"},
                     {"dest": "user@lh2:2222", "connections": 1, "rate": 500.0,
                      "phase": "main", "clock_offset_us": -2.0, "ok": False,
                      "error": "timed out", "failed_checks": ["rate"],
                      "json": {"msgs_per_sec": 400.0, "latency_us": {"p99": 95.5},
                               "mismatches": 0}, "hist_file": None}]
            (dst / "raw" / f"{cell.key}_r{rep}.json").write_text(json.dumps(
                {"msgs_per_sec": 1400.0, "start_spread_us": 12.5, "hosts": hosts}, indent=1))
    return dst


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{name: pristine run directory} and the BASE run that compare sets them against."""
    root = tmp_path_factory.mktemp("valid")
    kw = dict(backends=("epoll", "poll"), connections=(1,), modes=("closed", "open50",
                                                                   "stream"),
              repetitions=2, sweep=True, until_ci=5.0, unresolved=("p9999",),
              invalid={("poll", 1, "open50")}, client_bound={(1, "stream")})
    out = {"synthetic": synthetic.make_run(root / "synthetic", seed=3, **kw)}
    out["hosts"] = _hosts_run(out["synthetic"], root / "hosts")
    build = fake_build(root / "build")
    rc, _, err = run_cli(["run", "--build", str(build), "--out", str(root / "results"),
                          "--connections", "1", "--sizes", "64", "--modes", "closed,open50",
                          "--duration", "200ms", "--warmup", "50ms", "--repetitions", "2"])
    # exit 1 when a cell failed (a busy machine starves the fakes): still a run directory
    assert rc in (0, 1) and (root / "results" / "latest" / "run.json").is_file(), err
    out["fake"] = (root / "results" / "latest").resolve()
    base = synthetic.make_run(root / "base", seed=4, **kw)
    for d in out.values():
        for name in ("report.html", "summary.md"):
            (d / name).unlink(missing_ok=True)
    return out, base


# ---- running a reader -----------------------------------------------------------------------
class Deadline(Exception):
    pass


@contextlib.contextmanager
def deadline(seconds):
    def fire(*_):
        raise Deadline(f"no answer in {seconds} s")
    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# The command line's parser, made once: making it takes longer than most variants' reading.
_PARSER = functools.lru_cache(maxsize=1)(cli.make_parser)


def run_cli(argv):
    """cli.main(argv) in-process -> (exit code, stdout, stderr); an exception that escapes is
    the traceback the real program would print (exit code 'traceback'); every warning raised
    is written to stderr, as the real program would."""
    out, err = io.StringIO(), io.StringIO()
    with warnings.catch_warnings(record=True) as caught, \
            mock.patch.object(cli, "make_parser", _PARSER):
        warnings.simplefilter("always")
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
                    deadline(DEADLINE_S):
                rc = cli.main(argv)
        except BaseException:                          # noqa: B902 (what the user would see)
            return "traceback", out.getvalue(), short_tb()
    for w in caught:
        err.write(f"{w.category.__name__}: {w.message}\n")
    return rc, out.getvalue(), err.getvalue()


def short_tb():
    """The exception being handled and where in echobench_lib it was raised, in one line."""
    etype, e, tb = sys.exc_info()
    frames = [f for f in traceback.extract_tb(tb) if "echobench_lib" in f.filename]
    where = f" at {pathlib.Path(frames[-1].filename).name}:{frames[-1].lineno}" \
        if frames else ""
    return f"traceback: {etype.__name__}: {str(e)[:200]}{where}"


class Tally:
    """Per reader: inputs tried, how each ended, and the failures (with their variant)."""

    def __init__(self):
        self.counts, self.failures = {}, []

    def add(self, reader, variant, problem, outcome):
        c = self.counts.setdefault(reader, {})
        c[outcome] = c.get(outcome, 0) + 1
        if problem:
            self.failures.append(f"{reader} [{variant}]: {problem}")

    def report(self, title):
        for reader, c in self.counts.items():
            print(f"{title}: {reader}: {sum(c.values())} inputs tried (" +
                  ", ".join(f"{n} {k}" for k, n in sorted(c.items())) + ")")
        shown = self.failures[:25]
        if os.environ.get("CORRUPT_FAILURES"):      # every failure, for whoever fixes them
            pathlib.Path(os.environ["CORRUPT_FAILURES"]).write_text("\n".join(self.failures))
        assert not self.failures, f"{len(self.failures)} failures:\n" + "\n".join(shown)


def judge(rc, out, err, names, ok_codes=(0,)):
    """None when the command behaved, else what was wrong. names: the file (or directory)
    names one of which the error line must contain."""
    if rc in ok_codes:
        hits = NAN_INF.findall(out)
        if hits:
            return f"exit {rc}, output shows {hits[0][0]!r}"
        if err.strip():
            return f"exit {rc} with stderr: {err.strip()[:300]}"
        return None
    lines = err.strip().splitlines()
    if rc != 2:
        return f"exit {rc}: {err.strip()[-600:]}"
    if len(lines) != 1:
        return f"exit 2 with {len(lines)} stderr lines: {err.strip()[-600:]}"
    if not any(str(n) in lines[0] for n in names):
        return f"exit 2 but the line names none of {list(map(str, names))}: {lines[0]}"
    return None


def outcome(rc):
    return "succeeded" if rc in (0, 1, 3) else ("refused (exit 2)" if rc == 2 else "FAILED")


# ---- applying a variant to a working copy ---------------------------------------------------
def apply(work, rels, content):
    """Writes a variant's content to each of rels under work (DIRECTORY, MISSING: the file is
    a directory, is gone)."""
    for rel in rels:
        p = work / rel
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
        if content is corrupt.DIRECTORY:
            p.mkdir()
        elif content is not corrupt.MISSING:
            p.write_bytes(content)


def restore(work, pristine, rels):
    for rel in rels:
        p = work / rel
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
        shutil.copy2(pristine / rel, p)
    for name in ("report.html", "summary.md"):
        (work / name).unlink(missing_ok=True)


# How much of each file's damage a sweep tries: (mutations per key path of run.json,
# of the other JSON files, truncations, flipped bits). None: every mutation at every path.
QUICK = {"synthetic": (3, 3, 6, 6), "hosts": (3, 3, 6, 6), "fake": (1, 2, 4, 4)}
SWEEP = {"synthetic": (None, None, 16, 24), "hosts": (None, None, 16, 24),
         "fake": (4, None, 8, 12)}


def variants_of(pristine, what, rng, depth):
    """[(rels, label, content)] for one kind of file of a run directory; depth: a QUICK or
    SWEEP row."""
    per_run, per_other, trunc, flips = depth
    if what in ("run.json", "cells.csv", "conform.json"):
        rels = [what]
    else:
        sub, ext = ("hgrm", ".hgrm") if what == "hgrm" else ("raw", ".json")
        rels = sorted(str(p.relative_to(pristine)) for p in (pristine / sub).glob("*" + ext))
    data = (pristine / rels[0]).read_bytes()
    if what == "cells.csv":
        vs = list(corrupt.csv_variants(data.decode(), rng))
    elif what == "hgrm":
        vs = list(corrupt.hgrm_variants(data.decode(), rng))
    else:
        vs = list(corrupt.json_variants(json.loads(data), rng,
                                        per_path=per_run if what == "run.json" else per_other))
    vs += list(corrupt.file_variants(data, rng, trunc, flips))
    return [(rels, label, c) for label, c in vs]


FILES = {"synthetic": ("run.json", "cells.csv", "conform.json", "hgrm"),
         "hosts": ("raw",),
         "fake": ("run.json", "cells.csv", "conform.json", "hgrm")}


# ---- what the in-process readers hand out ---------------------------------------------------
def _bad_number(v):
    return isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
        or v < 0


def check_rundata(d):
    """None when every figure RunData gives is a finite number >= 0 and every count whole."""
    for cell, metrics in d.values.items():
        for n in (cell.connections, cell.size):
            if not isinstance(n, int) or n < 0:
                return f"cell {cell} has count {n!r}"
        for metric, reps in metrics.items():
            for rep, v in reps.items():
                if _bad_number(v) or not isinstance(rep, int) or rep < 0:
                    return f"{cell.label()} {metric} rep {rep!r} = {v!r}"
    for cell, pts in d.spectra.items():
        if any(_bad_number(v) or _bad_number(p) for v, p in pts):
            return f"spectrum of {cell.label()} has {pts[:3]}"
    if not isinstance(d.conform, dict) or \
            not all(isinstance(v, dict) for v in d.conform.values()):
        return f"conform is {type(d.conform).__name__}"
    return None


def check_gbjson(data):
    for r in gbjson.iterations(data):
        if _bad_number(r["value"]) or not isinstance(r["repetition"], int) \
                or r["repetition"] < 0:
            return f"iteration {r['cell'].label()} {r['metric']} = {r['value']!r}"
    for name, s in gbjson.series(data).items():
        if not isinstance(name, str) or any(not math.isfinite(v) for v in s.values):
            return f"series {name!r} = {s.values[:3]}"
    return None


def check_rows(rows):
    for name, row in rows.items():
        if any(not math.isfinite(v) for v in row.values):
            return f"row {name} = {row.values[:3]}"
    return None


def in_process(tally, label, fn):
    """fn() -> None or a problem; UsageError is the only exception a reader may raise."""
    reader = fn.__name__
    try:
        with deadline(DEADLINE_S):
            problem = fn()
        tally.add(reader, label, problem, "FAILED" if problem else "succeeded")
    except UsageError as e:
        msg = str(e)
        problem = None if msg.strip() and "\n" not in msg else f"UsageError {msg!r}"
        tally.add(reader, label, problem, "refused (UsageError)")
    except BaseException:                              # noqa: B902
        tally.add(reader, label, short_tb(), "FAILED")


def readers(work, json_too):
    """The in-process readers of a run directory, as named functions for in_process."""
    def RunData_(work=work):
        return check_rundata(RunData(work))
    RunData_.__name__ = "RunData"
    out = [RunData_]
    if json_too:
        def gbjson_load_iterations_series():
            return check_gbjson(gbjson.load(work))

        def compare_load_side_rows_of():
            return check_rows(compare.rows_of(compare.load_side(work))[0])
        out += [gbjson_load_iterations_series, compare_load_side_rows_of]
    return out


@contextlib.contextmanager
def figures(real):
    """The report's plots drawn (real) or left out (a stub that draws nothing, for time)."""
    saved = plots.FIGURES
    if not real:
        plots.FIGURES = [(fid, title, lambda d: None, cap) for fid, title, _, cap in saved]
    try:
        yield
    finally:
        plots.FIGURES = saved


def report_once(work, names, real_plots):
    with figures(real_plots):
        rc, out, err = run_cli(["report", str(work)])
    if rc == 0:
        for name in ("report.html", "summary.md"):
            p = work / name
            out += p.read_text(errors="replace") if p.is_file() else f"\n{name} missing: nan"
    return rc, judge(rc, out, err, names)


def _names(work, rels, content):
    names = {pathlib.PurePath(r).name for r in rels} | {pathlib.PurePath(rels[0]).parent.name}
    if "run.json" in rels and content in (corrupt.DIRECTORY, corrupt.MISSING):
        names.add(str(work))
    return names - {""}


def sweep_run_dirs(runs, tmp, slow, plots_budget):
    """Every variant of every file of every valid run through `report` and the in-process
    readers; run.json's also through `compare` and `history add`."""
    pristines, base = runs
    rng = random.Random(SEED + slow)
    depth = SWEEP if slow else QUICK
    tally = Tally()
    n = 0
    accepted = []
    for name, whats in FILES.items():
        pristine = pristines[name]
        work = tmp / name
        shutil.copytree(pristine, work, symlinks=True)
        for what in whats:
            for rels, label, content in variants_of(pristine, what, rng, depth[name]):
                variant = f"{name} {what}: {label}"
                apply(work, rels, content)
                names = _names(work, rels, content)
                rc, problem = report_once(work, names, False)
                tally.add("echobench report", variant, problem, outcome(rc))
                if rc == 0:
                    accepted.append((name, rels, label, content))
                for fn in readers(work, what == "run.json"):
                    in_process(tally, variant, fn)
                n += 1
                if what == "run.json":
                    rc, out, err = run_cli(["compare", str(base), str(work)])
                    tally.add("echobench compare", variant,
                              judge(rc, out, err, names, (0, 1, 3)), outcome(rc))
                if what == "run.json" and (slow or n % 3 == 0):
                    # a third of them in the quick sweep: a new history costs 40 ms
                    db = tmp / "add.sqlite"
                    db.unlink(missing_ok=True)
                    rc, out, err = run_cli(["history", "add", str(work), "--db", str(db)])
                    tally.add("echobench history add", variant, judge(rc, out, err, names),
                              outcome(rc))
                restore(work, pristine, rels)
    # The plots of a seeded sample of the accepted variants: numeric damage first.
    rng.shuffle(accepted)
    accepted.sort(key=lambda a: not (any(k in a[2] for k in corrupt.NUMERIC) or
                                     a[1][0].startswith("hgrm")))
    for name, rels, label, content in accepted[:plots_budget]:
        work = tmp / name
        apply(work, rels, content)
        rc, problem = report_once(work, _names(work, rels, content), True)
        tally.add("echobench report (with plots)", f"{name}: {label}", problem, outcome(rc))
        restore(work, pristines[name], rels)
    return tally


def test_run_directory_readers(runs, tmp_path):
    """Quick sweep: every file of the three runs, a seeded half of the wrong values at every
    key path, 6 truncations, 6 flipped bits, the plots of 12 accepted variants."""
    sweep_run_dirs(runs, tmp_path, False, 12).report("run directories")


@pytest.mark.sweep
def test_run_directory_readers_sweep(runs, tmp_path):
    """Every wrong value at every key path (and two more paths of each shape), 16
    truncations, 24 flipped bits, the plots of 80 accepted variants."""
    sweep_run_dirs(runs, tmp_path, True, 80).report("run directories (sweep)")


# ---- the results history --------------------------------------------------------------------
@pytest.fixture(scope="module")
def history_db(runs, tmp_path_factory):
    """A valid history of three synthetic runs (a series compare --history can use)."""
    root = tmp_path_factory.mktemp("history")
    db = root / "history.sqlite"
    for seed in (5, 6, 7):
        d = synthetic.make_run(root / f"run{seed}", seed=seed, backends=("epoll",),
                               connections=(1,), modes=("closed",), repetitions=2)
        rc, _, err = run_cli(["history", "add", str(d), "--db", str(db), "--branch", "main"])
        assert rc == 0, err
    return db, root / "run5", root / "run6"


def db_variants(db, rng, slow):
    """[(label, fn(path))]: the file's bytes damaged, and SQL edits of a copy."""
    data = db.read_bytes()
    out = []
    for label, content in corrupt.file_variants(data, rng, 24 if slow else 8,
                                                48 if slow else 12):
        out.append((label, lambda p, c=content: apply(p.parent, [p.name], c)))
    edits = corrupt.db_edits(db)
    if not slow:
        edits = [e for i, e in enumerate(edits) if "schema" in e[0] or "missing" in e[0]
                 or rng.random() < 0.25]
    for label, edit in edits:
        def fn(p, edit=edit):
            import sqlite3
            with sqlite3.connect(p) as conn:
                conn.execute("PRAGMA synchronous = OFF")     # a test file: no fsync
                edit(conn)
            conn.close()
        out.append((label, fn))
    return out


def sweep_history(history_db, tmp, slow):
    db, run_a, run_b = history_db
    rng = random.Random(SEED + 10 + slow)
    tally = Tally()
    work = tmp / "history.sqlite"
    for label, damage in db_variants(db, rng, slow):
        commands = [("history show", ["history", "show", "--db", str(work)], (0,)),
                    ("history import", ["history", "import", str(run_a), "--db", str(work)],
                     (0,)),
                    ("compare --history", ["compare", str(run_a), str(run_b), "--history",
                                           str(work)], (0, 1, 3))]
        if slow:
            commands.append(("history changes", ["history", "changes", "--db", str(work),
                                                 "--all"], (0, 1)))
        for reader, argv, ok in commands:
            if work.is_dir():
                shutil.rmtree(work)
            shutil.copy2(db, work)
            damage(work)
            rc, out, err = run_cli(argv)
            tally.add(f"echobench {reader}", label, judge(rc, out, err, [work.name], ok),
                      outcome(rc))
    if work.is_dir():
        shutil.rmtree(work)
    return tally


def test_history_store(history_db, tmp_path):
    """Quick: 8 truncations, 12 flipped bits, every schema edit, a seeded quarter of the
    column edits; show, import into it, compare with it."""
    sweep_history(history_db, tmp_path, False).report("history")


@pytest.mark.sweep
def test_history_store_sweep(history_db, tmp_path):
    sweep_history(history_db, tmp_path, True).report("history (sweep)")


# ---- the real program -----------------------------------------------------------------------
def test_the_program_itself(runs, tmp_path):
    """A few variants through scripts/echobench in a process of its own, with a deadline: the
    exit code and the one line are the real ones (no in-process difference), and no hang."""
    pristines, base = runs
    rng = random.Random(SEED + 20)
    tried = 0
    work = tmp_path / "synthetic"
    shutil.copytree(pristines["synthetic"], work)
    picks = []
    for what in ("run.json", "cells.csv", "conform.json"):
        vs = variants_of(pristines["synthetic"], what, rng, QUICK["synthetic"])
        picks += rng.sample(vs, 1)
    for rels, label, content in picks:
        apply(work, rels, content)
        for argv, ok in ((["report", work], (0,)), (["compare", base, work], (0, 1, 3))):
            if argv[0] == "compare" and rels != ["run.json"]:
                continue
            r = subprocess.run(["/usr/bin/python3", str(ECHOBENCH), *map(str, argv)],
                               capture_output=True, text=True, timeout=DEADLINE_S,
                               stdin=subprocess.DEVNULL)
            out = r.stdout + "".join((work / n).read_text() for n in ("report.html",
                                                                       "summary.md")
                                     if r.returncode == 0 and argv[0] == "report")
            problem = judge(r.returncode, out, r.stderr, _names(work, rels, content), ok)
            assert problem is None, f"{argv[0]} [{what} {label}]: {problem}"
            tried += 1
        restore(work, pristines["synthetic"], rels)
    print(f"the program itself: {tried} inputs tried")

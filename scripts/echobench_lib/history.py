"""The results history: every run's repetitions in one store, keyed by commit, branch, machine
class, cell and metric, so that a figure can be followed across commits (`echobench history`,
changepoint.py) and `compare` can know the run-to-run spread.

Stores: an SQLite file (Python's sqlite3; results/history.sqlite by default), or PostgreSQL for
a team (`postgresql://...`, through Debian's python3-psycopg2, imported only then). One schema
for both (historydb.py). docs/RESULTS.md "History" describes the tables and the rules below.

- A run is identified by the SHA-256 of its run.json content (canonical JSON: key order and
  spacing do not count), so adding or importing the same run twice, or a copy of it, adds
  nothing.
- Machine class: `<num_cpus> x <cpu_model> / <virtualization>` from run.json's context, e.g.
  `2 x AMD EPYC 7B13 / kvm`. Figures are compared only within one class: a kernel or host
  name may differ inside a class (both are kept per run), the CPU and what runs it may not.
- Branch: given (`--branch`), else read from git in this checkout when the run's commit is in
  it: the checked-out branch when the commit is reachable from it, else the only local branch
  containing it; else none (shown as `-`).
- Cell: entry, connections, size, mode, placement (a null placement is `split`, as run.json
  names without `/p:` are). Name: run.json's without `echo/` and the
  metric, e.g. `epoll/c:16/s:64/closed` or `epoll/c:16/s:64/closed/p:shared`.
- A point of a series is one run: the median of its valid repetitions (invalid ones, where
  echo-load's self-checks failed, are kept and shown but not counted).
"""
import collections
import dataclasses
import datetime
import fnmatch
import functools
import hashlib
import json
import math
import os
import pathlib
import re
import statistics
import subprocess

from . import changepoint, gbjson
from .build import ROOT
from . import historydb
from .matrix import DEFAULT_PLACEMENT, Cell, parse_name
from .metrics import higher_is_better, unit
from .util import UsageError

DEFAULT_DB = ROOT / "results" / "history.sqlite"
_COMMIT = re.compile(r"^[0-9a-f]{7,64}$")


def machine_class(ctx):
    """`2 x AMD EPYC 7B13 / kvm` from a run's context ('?' for what it lacks)."""
    model = " ".join(str(ctx.get("cpu_model") or "?").split())
    return f"{ctx.get('num_cpus') or '?'} x {model} / {ctx.get('virtualization') or '?'}"


def cell_name(entry, connections, size, mode, placement):
    """'epoll/c:16/s:64/closed' (+ '/p:shared' when not split): run.json's benchmark name
    without `echo/` and the metric."""
    full = Cell(entry, int(connections), int(size), mode, placement or DEFAULT_PLACEMENT)
    return full.name("m")[len("echo/"):-len("/m")]


def parse_cell(text):
    """A cell name (or a full run.json benchmark name) -> (entry, connections, size, mode,
    placement); UsageError when it is neither."""
    got = parse_name(text if text.startswith("echo/") else f"echo/{text}/m")
    if got is None:
        raise UsageError(f"bad cell '{text}': expected e.g. epoll/c:16/s:64/closed")
    c = got[0]
    return (c.entry, c.connections, c.size, c.mode, c.placement)


def run_key(data):
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _utc(text):
    try:
        t = datetime.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=datetime.timezone.utc)
    return t.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def start_time(ctx, path):
    """When the run started, in UTC: context.utc_start, else context.date, else the run
    directory's name (<UTC>-<host>), else run.json's modification time."""
    for key in ("utc_start", "date"):
        if ctx.get(key) and _utc(ctx[key]):
            return _utc(ctx[key])
    m = re.match(r"(\d{8}T\d{6})Z?", pathlib.Path(path).parent.name)
    if m:
        t = datetime.datetime.strptime(m.group(1), "%Y%m%dT%H%M%S")
        return t.strftime("%Y-%m-%dT%H:%M:%SZ")
    mtime = os.stat(path).st_mtime
    return datetime.datetime.fromtimestamp(mtime, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def _git(*args):
    try:
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                              timeout=20, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None


@functools.lru_cache(maxsize=256)
def git_branch(commit):
    """(branch, how) for a commit from git in this checkout, or (None, None): the checked-out
    branch when the commit is reachable from it, else the only local branch containing it."""
    if not commit or not _COMMIT.match(str(commit)):
        return None, None
    res = _git("cat-file", "-e", f"{commit}^{{commit}}")
    if res is None or res.returncode != 0:
        return None, None
    head = _git("symbolic-ref", "--short", "-q", "HEAD")
    if head is not None and head.returncode == 0 and head.stdout.strip():
        anc = _git("merge-base", "--is-ancestor", commit, "HEAD")
        if anc is not None and anc.returncode == 0:
            return head.stdout.strip(), "git: reachable from the checked-out branch"
    res = _git("for-each-ref", "--contains", commit, "--format=%(refname:short)",
               "refs/heads")
    names = res.stdout.split() if res is not None and res.returncode == 0 else []
    if len(names) == 1:
        return names[0], "git: the only local branch containing the commit"
    return None, None


def find_runs(path):
    """Run directories under `path` (itself when it has run.json), oldest name first;
    symbolic links (results/latest) are not followed, so no run is found twice."""
    p = pathlib.Path(path)
    if (p / "run.json").is_file():
        return [p]
    if not p.is_dir():
        raise UsageError(f"no results at '{path}': expected a run directory or a directory of "
                         f"runs")
    found = []
    for dirpath, dirnames, filenames in os.walk(p):
        dirnames.sort()
        if "run.json" in filenames:
            found.append(pathlib.Path(dirpath))
            dirnames.clear()
    return found


@dataclasses.dataclass
class Point:
    """One run of a series: its repetitions' values and validity, and their median (valid
    repetitions only; None when none was valid)."""
    run_key: str
    utc_start: str
    commit: str
    dirty: bool
    values: list
    valid: list

    @property
    def median(self):
        good = [v for v, ok in zip(self.values, self.valid) if ok]
        return statistics.median(good) if good else None

    @property
    def label(self):
        c = (self.commit or "?")[:10]
        return c + ("+dirty" if self.dirty else "")


@dataclasses.dataclass
class Series:
    machine_class: str
    branch: str
    cell: str
    metric: str
    points: list

    @property
    def unit(self):
        return unit(self.metric)

    @property
    def higher_is_better(self):
        return higher_is_better(self.metric)

    def usable(self):
        """The points with a median (a valid repetition), oldest first."""
        return [p for p in self.points if p.median is not None and p.median > 0]

    @property
    def title(self):
        return (f"{self.cell} {self.metric} [{self.machine_class}, branch "
                f"{self.branch or '-'}]")


class Store:
    """A history: Store(db) opens (and with create=True makes) an SQLite file or a PostgreSQL
    database. UsageError for a file that is not a history, a newer schema, a PostgreSQL URL
    without psycopg2; RunError for a server that cannot be reached."""

    def __init__(self, db=None, create=False):
        self.db = historydb.open_db(str(db or DEFAULT_DB), create)

    def close(self):
        self.db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def add_run(self, path, branch=None, source=None):
        """Adds one run directory (or run.json). -> (added, key, samples): added is False when
        the run was there already (nothing is written)."""
        p = gbjson.run_json_path(path)
        data = gbjson.load(p)
        rows = gbjson.iterations(data)
        if not rows:
            raise UsageError(f"'{p}' has no echobench measurements to add")
        ctx = data.get("context") or {}
        key = run_key(data)
        commit = ctx.get("git_commit")
        how = "given" if branch else None
        if not branch:
            branch, how = git_branch(commit)
        run_placement = (ctx.get("echobench") or {}).get("placement")
        default_place = run_placement if isinstance(run_placement, str) else DEFAULT_PLACEMENT
        dirty = ctx.get("git_dirty")
        run = {"run_key": key, "utc_start": start_time(ctx, p), "git_commit": commit,
               "git_dirty": None if dirty is None else int(bool(dirty)), "branch": branch,
               "branch_source": how, "machine_class": machine_class(ctx),
               "host_name": ctx.get("host_name"), "num_cpus": ctx.get("num_cpus"),
               "cpu_model": ctx.get("cpu_model"), "virtualization": ctx.get("virtualization"),
               "kernel": ctx.get("kernel"), "preset": ctx.get("preset"),
               "source": str(source or pathlib.Path(p).parent.resolve()),
               "added_utc": datetime.datetime.now(datetime.timezone.utc).strftime(
                   "%Y-%m-%dT%H:%M:%SZ")}
        samples = {}
        for r in rows:
            if not isinstance(r["value"], (int, float)) or not math.isfinite(r["value"]):
                continue
            k = (key, r["entry"], int(r["connections"]), int(r["size"]), r["mode"],
                 r["placement"] or default_place, r["metric"], int(r["repetition"]))
            samples[k] = k + (float(r["value"]), int(bool(r["valid"])),
                              "; ".join(r["invalid_reasons"]) or None, r["offered_rate"])
        added = self.db.add_run(run, list(samples.values()))
        return added, key, len(samples)

    def runs(self):
        return self.db.runs()

    def series(self, cells=None, metrics=None, branch=None, machine=None, by_branch=True,
               last=None):
        """[Series] matching the filters, each oldest first. cells, metrics: lists of glob
        patterns (fnmatch) on cell names and metric names; branch: exact ('-' for none);
        machine: a glob on machine classes; by_branch=False pools every branch of a machine
        class into one series; last: keep each series' newest `last` runs."""
        groups = collections.OrderedDict()
        runs = {}
        for row in self.db.samples(metrics, machine, branch):
            (key, utc, commit, dirty, br, mc, entry, conns, size, mode, place, metric, rep,
             value, valid) = row
            name = cell_name(entry, conns, size, mode, place)
            if cells and not any(fnmatch.fnmatchcase(name, c) for c in cells):
                continue
            if metrics and not any(fnmatch.fnmatchcase(metric, m) for m in metrics):
                continue
            if branch is not None and (br or "-") != branch:
                continue
            if machine and not fnmatch.fnmatchcase(mc, machine):
                continue
            g = (mc, br if by_branch else None, name, metric)
            pts = groups.setdefault(g, collections.OrderedDict())
            pt = pts.get(key)
            if pt is None:
                pt = pts[key] = Point(key, utc, commit, bool(dirty), [], [])
                runs[key] = utc
            pt.values.append(float(value))
            pt.valid.append(bool(valid))
        out = []
        for (mc, br, name, metric), pts in groups.items():
            points = sorted(pts.values(), key=lambda p: (p.utc_start, p.run_key))
            if last:
                points = points[-last:]
            out.append(Series(mc, br, name, metric, points))
        out.sort(key=lambda s: (s.machine_class, s.branch or "", s.cell, s.metric))
        return out


def existing(db=None):
    """An open Store (read only) when the history exists, else None: for readers such as
    compare, to which a missing history means no history, not an error. A PostgreSQL URL is
    always opened (its errors are the caller's, as Store's)."""
    spec = str(db or DEFAULT_DB)
    if not historydb.is_url(spec) and not pathlib.Path(spec).is_file():
        return None
    return Store(spec)


Spread = collections.namedtuple("Spread", "sd_log runs df changes")
Spread.__doc__ = """sd_log: the standard deviation of log(value) between runs (per-run medians,
pooled within the segments between change points); runs: how many runs it rests on; df: its
degrees of freedom (runs - segments); changes: the change points it was pooled around."""


def run_to_run_spread(store, cell, metric, machine_class, branch=None):
    """The history's run-to-run spread of one cell and metric on one machine class, for
    compare: a Spread, or None when fewer than 3 runs have a valid figure (or the segments
    leave fewer than 2 degrees of freedom). cell: a cell name ('epoll/c:16/s:64/closed'), a
    tuple (entry, connections, size, mode, placement) or a matrix.Cell; branch None pools every
    branch. store: a Store, or a path/URL to open one (read only)."""
    if isinstance(cell, str):
        cell = parse_cell(cell)
    elif isinstance(cell, Cell):
        cell = (cell.entry, cell.connections, cell.size, cell.mode, cell.placement)
    name = cell_name(*cell)
    own = not isinstance(store, Store)
    st = Store(store) if own else store
    try:
        found = [s for s in st.series(cells=[glob_escape(name)], metrics=[glob_escape(metric)],
                                      branch=branch, by_branch=False)
                 if s.machine_class == machine_class]
    finally:
        if own:
            st.close()
    if not found:
        return None
    points = found[0].usable()
    if len(points) < 3:
        return None
    # A median that is not a positive finite figure (an overflowing store value) is no run.
    points = [p for p in points if math.isfinite(p.median) and p.median > 0]
    if len(points) < 3:
        return None
    values = [p.median for p in points]
    changes = changepoint.detect(values, [p.label for p in points])
    sd, df = changepoint.pooled_log_sd(values, changes)
    if sd is None:
        return None
    return Spread(sd, len(values), df, changes)


def glob_escape(text):
    """A name as a glob that matches only itself."""
    return re.sub(r"([*?\[])", r"[\1]", text)

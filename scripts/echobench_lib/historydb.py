"""Where the results history lives: one schema in an SQLite file (Python's sqlite3) or in a
PostgreSQL database (`postgresql://...`, Debian's python3-psycopg2, imported only for a URL).

The schema (docs/RESULTS.md "History"): echobench_schema holds its version; echobench_runs one
row per run; echobench_samples one row per run, cell, metric and repetition. The tables carry
an `echobench_` prefix so that a team's PostgreSQL database can hold other things too. A store
written by a newer echobench (a higher version) is refused, never guessed at.
"""
import pathlib
import re
import sqlite3

from . import shape
from .shape import count, number, text
from .util import RunError, UsageError

SCHEMA_VERSION = 1

RUN_COLUMNS = ("run_key", "utc_start", "git_commit", "git_dirty", "branch", "branch_source",
               "machine_class", "host_name", "num_cpus", "cpu_model", "virtualization",
               "kernel", "preset", "source", "added_utc")
SAMPLE_COLUMNS = ("run_key", "entry", "connections", "size", "mode", "placement", "metric",
                  "repetition", "value", "valid", "invalid_reasons", "offered_rate")

SCHEMA = (
    "CREATE TABLE echobench_schema (version INTEGER NOT NULL)",
    """CREATE TABLE echobench_runs (
        run_key TEXT PRIMARY KEY,       -- SHA-256 of the canonical run.json
        utc_start TEXT NOT NULL,        -- YYYY-MM-DDTHH:MM:SSZ: the order of a series
        git_commit TEXT, git_dirty INTEGER, branch TEXT, branch_source TEXT,
        machine_class TEXT NOT NULL, host_name TEXT, num_cpus INTEGER, cpu_model TEXT,
        virtualization TEXT, kernel TEXT, preset TEXT, source TEXT,
        added_utc TEXT NOT NULL)""",
    """CREATE TABLE echobench_samples (
        run_key TEXT NOT NULL REFERENCES echobench_runs (run_key) ON DELETE CASCADE,
        entry TEXT NOT NULL, connections INTEGER NOT NULL, size INTEGER NOT NULL,
        mode TEXT NOT NULL, placement TEXT NOT NULL, metric TEXT NOT NULL,
        repetition INTEGER NOT NULL, value DOUBLE PRECISION NOT NULL, valid INTEGER NOT NULL,
        invalid_reasons TEXT, offered_rate DOUBLE PRECISION,
        PRIMARY KEY (run_key, entry, connections, size, mode, placement, metric, repetition))""",
    "CREATE INDEX echobench_runs_order ON echobench_runs (machine_class, branch, utc_start)",
)
TABLES = {"echobench_schema", "echobench_runs", "echobench_samples"}

SELECT_SAMPLES = (
    "SELECT r.run_key, r.utc_start, r.git_commit, r.git_dirty, r.branch, r.machine_class, "
    "s.entry, s.connections, s.size, s.mode, s.placement, s.metric, s.repetition, s.value, "
    "s.valid FROM echobench_samples s JOIN echobench_runs r ON r.run_key = s.run_key")
ORDER_SAMPLES = (" ORDER BY r.utc_start, r.run_key, s.entry, s.connections, s.size, s.mode, "
                 "s.placement, s.metric, s.repetition")


def _zero_one(v):
    if isinstance(v, bool) or not isinstance(v, int) or v not in (0, 1):
        raise shape.ShapeError(f"expected 0 or 1, got {v!r:.40}")


def _maybe(spec):
    return lambda v: None if v is None else spec(v)


# What a row of SELECT_SAMPLES must hold: a store that another program (or a damaged file)
# filled otherwise is refused with the row and the column, never read as a figure.
SAMPLE_ROW = (("run_key", text), ("utc_start", text), ("git_commit", _maybe(text)),
              ("git_dirty", _maybe(_zero_one)), ("branch", _maybe(text)),
              ("machine_class", text), ("entry", text), ("connections", count),
              ("size", count), ("mode", text), ("placement", text), ("metric", text),
              ("repetition", count), ("value", number), ("valid", _zero_one))


def is_url(spec):
    return re.match(r"^postgres(ql)?://", spec) is not None


def redact(url):
    """The URL without its password, for messages."""
    return re.sub(r"(://[^:/@]*):[^@]*@", r"\1:***@", url)


def open_db(spec, create):
    """An SQLite path or a postgresql:// URL -> an open _Db (see Store)."""
    return _Postgres(spec, create) if is_url(spec) else _Sqlite(spec, create)


class _Db:
    """The SQL both stores share; subclasses connect and say how a parameter is written."""
    name = ""
    errors = ()

    def _sql(self, text):
        return text

    def _check(self, create):
        tables = self._tables()
        if "echobench_schema" in tables:
            cur = self.conn.cursor()
            cur.execute("SELECT version FROM echobench_schema")
            versions = [r[0] for r in cur.fetchall()]
            bad = [v for v in versions if isinstance(v, bool) or not isinstance(v, int)
                   or v < 1]
            if bad:
                raise UsageError(f"history {self.name} has schema version {bad[0]!r:.40}: "
                                 f"not a version echobench writes (1 to {SCHEMA_VERSION})")
            if versions and max(versions) > SCHEMA_VERSION:
                raise UsageError(f"history {self.name} has schema version {max(versions)}; "
                                 f"this echobench reads version {SCHEMA_VERSION}: update "
                                 f"echobench")
            if not TABLES <= tables:
                raise UsageError(f"history {self.name} lacks tables "
                                 f"{', '.join(sorted(TABLES - tables))}")
            self.conn.rollback()
            return
        if not create:
            raise UsageError(f"no echobench history in {self.name} (`echobench history add "
                             f"RUN_DIR` makes one)")
        self._refuse_foreign(tables)
        cur = self.conn.cursor()
        for stmt in SCHEMA:
            cur.execute(stmt)
        cur.execute(self._sql("INSERT INTO echobench_schema (version) VALUES (?)"),
                    (SCHEMA_VERSION,))
        self.conn.commit()

    def _refuse_foreign(self, tables):
        pass

    def _run(self, fn):
        """fn() with the store's errors as one line: a failed statement is a run-time error,
        unless it says the store is damaged or not one of ours (_damaged): a usage error."""
        try:
            return fn()
        except self.errors as e:
            try:
                self.conn.rollback()
            except self.errors:
                pass
            if self._damaged(e):
                raise UsageError(f"history {self.name} is damaged or not an echobench history: "
                                 f"{_first_line(e)}") from None
            raise RunError(f"history {self.name}: {_first_line(e)}") from None

    def _damaged(self, e):
        return False

    def add_run(self, run, samples):
        """Inserts a run and its samples in one transaction; False when the run was there."""
        def go():
            cur = self.conn.cursor()
            cols = ", ".join(RUN_COLUMNS)
            marks = ", ".join("?" for _ in RUN_COLUMNS)
            cur.execute(self._sql(f"INSERT INTO echobench_runs ({cols}) VALUES ({marks}) "
                                  f"ON CONFLICT (run_key) DO NOTHING"),
                        tuple(run[c] for c in RUN_COLUMNS))
            if cur.rowcount == 0:
                self.conn.rollback()
                return False
            cols = ", ".join(SAMPLE_COLUMNS)
            marks = ", ".join("?" for _ in SAMPLE_COLUMNS)
            self._many(cur, self._sql(f"INSERT INTO echobench_samples ({cols}) VALUES "
                                      f"({marks})"), samples)
            self.conn.commit()
            return True
        return self._run(go)

    def _many(self, cur, sql, rows):
        cur.executemany(sql, rows)

    def _select(self, sql, args=()):
        def go():
            cur = self.conn.cursor()
            cur.execute(self._sql(sql), args)
            rows = cur.fetchall()
            self.conn.rollback()
            return rows
        return self._run(go)

    def samples(self, metrics=None, machine=None, branch=None):
        """Sample rows with run fields, oldest run first. The filters only narrow what is
        read (metrics, machine: glob patterns, passed on as LIKE when they have no [set];
        branch: exact, '-' for none); the caller still applies its own."""
        where, args = [], []
        for column, globs in (("s.metric", metrics), ("r.machine_class", [machine] if machine
                                                       else None)):
            likes = [_like(g) for g in globs or []]
            if likes and None not in likes:
                where.append("(" + " OR ".join(f"{column} LIKE ? ESCAPE '!'" for _ in likes)
                             + ")")
                args += likes
        if branch is not None:
            where.append("r.branch IS NULL" if branch == "-" else "r.branch = ?")
            args += [] if branch == "-" else [branch]
        sql = SELECT_SAMPLES + (" WHERE " + " AND ".join(where) if where else "")
        rows = self._select(sql + ORDER_SAMPLES, tuple(args))
        for row in rows:
            for (column, spec), v in zip(SAMPLE_ROW, row):
                try:
                    spec(v)
                except shape.ShapeError as e:
                    raise UsageError(f"history {self.name}: a sample of run {str(row[0])[:12]} "
                                     f"has {column}: {e.what}") from None
        return rows

    def runs(self):
        cols = ", ".join(RUN_COLUMNS)
        return [dict(zip(RUN_COLUMNS, r)) for r in
                self._select(f"SELECT {cols} FROM echobench_runs ORDER BY utc_start, run_key")]

    def execute(self, sql, args=()):
        """One statement, committed (tests use it to age or break a store)."""
        def go():
            self.conn.cursor().execute(self._sql(sql), args)
            self.conn.commit()
        return self._run(go)

    def close(self):
        self.conn.close()


class _Sqlite(_Db):
    errors = (sqlite3.Error,)
    # What the machine, not the file, is to blame for (exit 1); any other failure of a
    # statement means the file is damaged or was made by something else (exit 2).
    RUN_TIME = ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_IOERR", "SQLITE_FULL",
                "SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_NOMEM", "SQLITE_INTERRUPT",
                "SQLITE_PERM", "SQLITE_PROTOCOL")

    def _damaged(self, e):
        name = getattr(e, "sqlite_errorname", None) or ""
        return not name.startswith(self.RUN_TIME)

    def __init__(self, path, create):
        p = self.path = pathlib.Path(path)
        self.name = f"'{p}'"
        if p.is_dir():
            raise UsageError(f"history '{p}' is a directory: expected an SQLite file or a "
                             f"postgresql:// URL")
        if not p.exists():
            if not create:
                raise UsageError(f"no history at '{p}' (`echobench history add RUN_DIR` makes "
                                 f"one)")
            try:
                p.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise UsageError(f"cannot create history '{p}': {e.strerror or e}") from None
        try:
            if create:
                self.conn = sqlite3.connect(str(p), timeout=30)
            else:
                self.conn = sqlite3.connect(p.resolve().as_uri() + "?mode=ro", uri=True,
                                            timeout=30)
        except sqlite3.Error as e:
            raise UsageError(f"cannot open history '{p}': {_first_line(e)}") from None
        try:
            self.conn.execute("PRAGMA foreign_keys = ON")
            self._check(create)
        except sqlite3.OperationalError as e:
            self.conn.close()
            raise UsageError(f"cannot read history '{p}': {_first_line(e)}") from None
        except sqlite3.DatabaseError as e:
            self.conn.close()
            raise UsageError(f"history '{p}' is not a readable SQLite file: "
                             f"{_first_line(e)}") from None
        except UsageError:
            self.conn.close()
            raise

    def _tables(self):
        cur = self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {r[0] for r in cur.fetchall()}

    def _refuse_foreign(self, tables):
        if tables:
            raise UsageError(f"'{self.path}' is an SQLite file of something "
                             f"else (tables {', '.join(sorted(tables)[:5])}), not an echobench "
                             f"history")


class _Postgres(_Db):
    def __init__(self, url, create):
        self.name = redact(url)
        try:
            import psycopg2
            import psycopg2.extras
        except ImportError:
            raise UsageError(f"a PostgreSQL history ({self.name}) needs python3-psycopg2: "
                             f"apt-get install python3-psycopg2") from None
        self.errors = (psycopg2.Error,)
        self._extras = psycopg2.extras
        try:
            self.conn = psycopg2.connect(url, connect_timeout=30)
        except psycopg2.ProgrammingError as e:
            raise UsageError(f"bad PostgreSQL URL {self.name}: {_first_line(e)}") from None
        except psycopg2.Error as e:
            raise RunError(f"cannot connect to the PostgreSQL history {self.name}: "
                           f"{_first_line(e)}") from None

        def check():
            if create:
                # Two team members creating the schema at once: one waits for the other.
                self.conn.cursor().execute("SELECT pg_advisory_xact_lock(7415104243)")
            self._check(create)
        try:
            self._run(check)
        except (UsageError, RunError):
            self.conn.close()
            raise

    def _sql(self, text):
        return text.replace("?", "%s")

    def _tables(self):
        cur = self.conn.cursor()
        cur.execute("SELECT table_name FROM information_schema.tables "
                    "WHERE table_schema = current_schema()")
        return {r[0] for r in cur.fetchall()}

    def _many(self, cur, sql, rows):
        self._extras.execute_batch(cur, sql, rows, page_size=500)


def _like(glob):
    """An fnmatch pattern as a LIKE pattern (escape '!'), or None when it has a [set]."""
    if "[" in glob:
        return None
    out = "".join("!" + ch if ch in "%_!" else ch for ch in glob)
    return out.replace("*", "%").replace("?", "_")


def _first_line(e):
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0]

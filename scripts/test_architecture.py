"""docs/ARCHITECTURE.md stays true: every file its "Where to add" table names exists, the backend
table and `echo-server --list` agree, no module is over its size, and the driver's modules
import each other without a cycle."""
import ast
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
LIB = ROOT / "scripts" / "echobench_lib"
DOC = ROOT / "docs" / "ARCHITECTURE.md"
TRACKED_DIRS = ("common", "servers", "clients", "conformance", "bench", "scripts")


def where_to_add():
    text = DOC.read_text()
    section = text.split("## Where to add", 1)[1]
    rows = re.findall(r"^\| ([^|]+) \| (.+) \|$", section, re.M)
    return [(what.strip(), how) for what, how in rows if what.strip() not in ("addition", "---")]


def test_every_file_the_table_names_exists():
    rows = where_to_add()
    assert len(rows) >= 8
    named = 0
    for what, how in rows:
        for path in re.findall(r"`([A-Za-z0-9_./-]+\.(?:c|h|py|md|build))`", how):
            if "/" not in path:
                continue
            named += 1
            assert (ROOT / path).exists(), f"'{what}' names {path}, which does not exist"
    assert named >= 15


def test_the_backend_table_is_what_echo_server_lists():
    """The "a backend" row says the table in servers/backends.c is the one list: every row of
    it is a line of `echo-server --list`, in the same order."""
    import subprocess
    from echobench_lib.build import build_dir
    exe = build_dir() / "servers" / "echo-server"
    if not exe.exists():
        pytest.skip(f"{exe} is not built")
    names = re.findall(r'\.name = "([^"]+)"', (ROOT / "servers" / "backends.c").read_text())
    listed = [ln.split()[0] for ln in subprocess.run([exe, "--list"], capture_output=True,
                                                     text=True, timeout=10).stdout.splitlines()]
    assert names == listed
    # every run function the table uses is declared where the row says
    decl = (ROOT / "servers" / "backend.h").read_text() + (ROOT / "servers" / "mux.h").read_text()
    for fn in set(re.findall(r"\.run = (\w+)", (ROOT / "servers" / "backends.c").read_text())):
        assert re.search(rf"\b{fn}\s*\(", decl), fn


def _sources(suffix):
    for d in TRACKED_DIRS:
        yield from (p for p in (ROOT / d).rglob(f"*{suffix}") if "build" not in p.parts)


def test_no_module_over_its_size():
    """No Python module of the driver over 500 lines, no C file over 600."""
    big = [(p.relative_to(ROOT), n) for p in LIB.glob("*.py")
           if (n := len(p.read_text().splitlines())) > 500]
    big += [(p.relative_to(ROOT), n) for p in _sources(".c")
            if (n := len(p.read_text().splitlines())) > 600]
    assert not big, big


def imports(path):
    """The echobench_lib modules that path imports (at any level: a function-level import is
    a dependency too)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                out.add(node.module.split(".")[0])
            else:
                out.update(a.name for a in node.names)
    return out - {path.stem}


def test_the_driver_has_no_import_cycle():
    graph = {p.stem: imports(p) for p in LIB.glob("*.py") if p.stem != "__init__"}
    assert set().union(*graph.values()) <= set(graph), "imports of modules that do not exist"
    state = {}

    def visit(m, path):
        if state.get(m) == "done":
            return
        assert state.get(m) != "open", "import cycle: " + " -> ".join(path + [m])
        state[m] = "open"
        for n in sorted(graph[m]):
            visit(n, path + [m])
        state[m] = "done"
    for m in sorted(graph):
        visit(m, [])


def test_bench_imports_only_small_helpers():
    """bench/ takes a few helpers from the driver, never the driver itself."""
    allowed = {"build", "placement", "procfs", "server", "util", "net"}
    for p in (ROOT / "bench").rglob("*.py"):
        used = set(re.findall(r"from echobench_lib\.(\w+) import", p.read_text()))
        used |= set(re.findall(r"from echobench_lib import (\w+)", p.read_text()))
        assert used <= allowed, (p.name, used - allowed)

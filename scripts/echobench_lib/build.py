"""Where the programs under test are: $ECHOBENCH_BUILD, --build or <repo>/build."""
import os
import pathlib
import re
import subprocess

from .util import RunError, UsageError

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
SERVER = "servers/echo-server"
LOAD = "clients/echo-load"
CONFORM = "conformance/echo-conform"


def build_dir(option=None):
    """The build directory to use: --build, else $ECHOBENCH_BUILD, else <repo>/build."""
    path = option or os.environ.get("ECHOBENCH_BUILD") or ROOT / "build"
    return pathlib.Path(path).resolve()


def program(build, rel, required=True):
    """Path of a built program, or None when it is not built and not required."""
    path = build / rel
    if path.is_file() and os.access(path, os.X_OK):
        return path
    if required:
        raise UsageError(f"{path} is not built (build with `meson compile -C {build}` or give "
                         f"--build DIR)")
    return None


def parse_backend_list(text):
    """[(name, usable, reason)] from `echo-server --list` output: one line per backend or
    variant (`epoll:et`), `NAME usable` or `NAME unusable: REASON`."""
    found = []
    for line in text.splitlines():
        name, _, status = line.strip().partition(" ")
        if not name:
            continue
        status = status.strip()
        usable = status == "usable"
        reason = status.split(":", 1)[1].strip() if ":" in status else status
        found.append((name, usable, "" if usable else reason))
    return found


def list_backends(server):
    """[(name, usable, reason)] in the order `echo-server --list` prints them."""
    try:
        res = subprocess.run([str(server), "--list"], capture_output=True, text=True,
                             timeout=10, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise RunError(f"{server} --list failed: {e}") from e
    if res.returncode != 0:
        raise RunError(f"{server} --list exited {res.returncode}: {res.stderr.strip()[:200]}")
    found = parse_backend_list(res.stdout)
    if not found:
        raise RunError(f"{server} --list printed no backend")
    return found


def list_engines(load):
    """{engine: (usable, state)} from the `engine NAME: STATE` lines of `echo-load --version`
    (STATE: `usable`, `usable (default)` or `unusable: REASON`); empty when it cannot say."""
    try:
        p = subprocess.run([str(load), "--version"], capture_output=True, text=True, timeout=10,
                           stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    found = {}
    for line in p.stdout.splitlines():
        if line.startswith("engine ") and ": " in line:
            name, state = line[len("engine "):].split(": ", 1)
            found[name] = (state.startswith("usable"), state)
    return found


def is_variant(name):
    """'epoll:et' is a variant of epoll; the default matrix runs base backends only."""
    return ":" in name


# A backend entry may name its worker model: `epoll+t4` is echo-server --threads 4 (thread per
# core: one process, one loop per thread), `epoll+p4` is --processes 4 (process per core, as
# nginx: prefork workers with their own listeners). Side by side, they compare the two models.
WORKERS = re.compile(r"^(?P<base>[^+]+)\+(?P<kind>[tp])(?P<n>[1-9][0-9]{0,3})$")


def backend_args(name, threads=None):
    """echo-server's arguments for backend entry `name`: ['--backend', NAME] plus its worker
    model (`+tN`: --threads N, `+pN`: --processes N), else --threads `threads` when given."""
    m = WORKERS.match(name)
    if m:
        return ["--backend", m["base"], "--threads" if m["kind"] == "t" else "--processes",
                m["n"]]
    return ["--backend", name] + (["--threads", str(threads)] if threads else [])


def base_backend(name):
    """The backend or variant of an entry name: 'epoll:et+p2' -> 'epoll:et'."""
    m = WORKERS.match(name)
    return m["base"] if m else name


def pick_backends(server, wanted=None):
    """The backends to run: the usable ones, or the names in `wanted` (all must be usable).
    Returns (names, skipped) where skipped is [(name, reason)] of unusable ones not asked for."""
    listed = list_backends(server)
    by_name = {n: (u, r) for n, u, r in listed}
    if wanted is None:
        names = [n for n, u, _ in listed if u and not is_variant(n)]
        skipped = [(n, r) for n, u, r in listed if not u and not is_variant(n)]
        if not names:
            raise RunError("no usable backend: " + "; ".join(f"{n}: {r}" for n, r in skipped))
        return names, skipped
    for name in wanted:
        base = base_backend(name)
        if "+" in name and base == name:
            raise UsageError(f"bad backend entry '{name}': a worker model is +tN (N threads) or "
                             f"+pN (N processes), N from 1 to 9999")
        if base not in by_name:
            raise UsageError(f"unknown backend '{base}' (this build has: "
                             f"{', '.join(n for n, _, _ in listed)})")
        if not by_name[base][0]:
            raise UsageError(f"backend '{base}' is not usable here: {by_name[base][1]}")
    if len(set(wanted)) != len(wanted):
        raise UsageError(f"a backend is named twice in {','.join(wanted)}")
    return list(wanted), []

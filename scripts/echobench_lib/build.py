"""Where the programs under test are: $ECHOBENCH_BUILD, --build or <repo>/build."""
import os
import pathlib
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


def list_backends(server):
    """[(name, usable, reason)] in the order `echo-server --list-backends` prints them."""
    try:
        res = subprocess.run([str(server), "--list-backends"], capture_output=True, text=True,
                             timeout=10, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise RunError(f"{server} --list-backends failed: {e}") from e
    if res.returncode != 0:
        raise RunError(f"{server} --list-backends exited {res.returncode}: "
                       f"{res.stderr.strip()[:200]}")
    found = []
    for line in res.stdout.splitlines():
        name, _, status = line.strip().partition(" ")
        if not name:
            continue
        status = status.strip()
        usable = status == "usable"
        reason = status.split(":", 1)[1].strip() if ":" in status else status
        found.append((name, usable, "" if usable else reason))
    if not found:
        raise RunError(f"{server} --list-backends printed no backend")
    return found


def pick_backends(server, wanted=None):
    """The backends to run: the usable ones, or the names in `wanted` (all must be usable).
    Returns (names, skipped) where skipped is [(name, reason)] of unusable ones not asked for."""
    listed = list_backends(server)
    by_name = {n: (u, r) for n, u, r in listed}
    if wanted is None:
        names = [n for n, u, _ in listed if u]
        skipped = [(n, r) for n, u, r in listed if not u]
        if not names:
            raise RunError("no usable backend: " + "; ".join(f"{n}: {r}" for n, r in skipped))
        return names, skipped
    for name in wanted:
        if name not in by_name:
            raise UsageError(f"unknown backend '{name}' (this build has: "
                             f"{', '.join(n for n, _, _ in listed)})")
        if not by_name[name][0]:
            raise UsageError(f"backend '{name}' is not usable here: {by_name[name][1]}")
    return list(wanted), []

"""`echobench check`: does every backend start, echo exactly and stop on SIGTERM?

One line per backend, the verdict the main job shows:
  epoll: ok (echo verified, 3 sizes)
  uring: skipped (REASON)
  poll: FAILED (reason)
"""
import signal

from .build import SERVER, list_backends, program
from .server import Server, verify_echo
from .util import RunError

# One byte, one page, and more than the default socket buffers so partial sends must happen.
CHECK_SIZES = (1, 4096, 262144)


def check_backend(server_exe, name, timeout=10.0):
    """None when `name` starts, echoes CHECK_SIZES exactly and exits 0 on SIGTERM; else why."""
    try:
        srv = Server([server_exe, "--backend", name, "--listen", "127.0.0.1:0"])
    except RunError as e:
        return str(e)
    try:
        why = verify_echo(srv.addr, CHECK_SIZES, timeout=timeout)
    finally:
        rc, err = srv.stop(signal.SIGTERM, timeout=timeout)
    if why:
        return why
    if rc is None or rc < 0:
        return f"did not exit on SIGTERM within {timeout:g}s (killed)" if rc == -9 else \
            f"killed by signal {-rc} after SIGTERM"
    if rc != 0:
        last = err.strip().splitlines()[-1] if err.strip() else "no message"
        return f"exit status {rc} after SIGTERM: {last}"
    return None


def run_check(build, out=print):
    """Checks every backend that --list-backends reports; returns the exit code (1 if any usable
    backend failed)."""
    exe = program(build, SERVER)
    failed = 0
    for name, usable, reason in list_backends(exe):
        if not usable:
            out(f"{name}: skipped ({reason})")
            continue
        why = check_backend(exe, name)
        if why:
            failed += 1
            out(f"{name}: FAILED ({why})")
        else:
            out(f"{name}: ok (echo verified, {len(CHECK_SIZES)} sizes)")
    return 1 if failed else 0

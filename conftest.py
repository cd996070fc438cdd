"""Fixtures shared by every pytest suite in the tree (servers/, clients/, conformance/, scripts/).

The build under test is $ECHOBENCH_BUILD (default: build/). Servers are started on port 0 and
their real address is read from the `listening ADDR` lines they print: never pick a free port
and hand it over, that races.
"""
import os
import pathlib
import signal

import pytest

from echobench_lib import build as _build
from echobench_lib.net import split_addr
from echobench_lib.server import Server
from echobench_lib.util import RunError

ROOT = pathlib.Path(__file__).resolve().parent
BUILD = _build.build_dir()


def binary(rel):
    """Path of a built program, e.g. binary('servers/echo-server'); skips when not built."""
    path = BUILD / rel
    if not path.exists():
        pytest.skip(f"{path} is not built (run scripts/run-tests.sh)")
    return path


def list_backends(variants=False):
    """{name: (usable, status)} as `echo-server --list` reports them: the backends, and with
    variants=True also their variants (`epoll:et`). Empty when echo-server is not built."""
    exe = BUILD / _build.SERVER
    if not exe.exists():
        return {}
    try:
        listed = _build.list_backends(exe)
    except RunError:
        return {}
    return {name: (usable, "usable" if usable else f"unusable: {why}")
            for name, usable, why in listed if variants or not _build.is_variant(name)}


# Derived from echo-server's own table, never written here: the backends, and every backend
# and variant in --list order.
_BACKENDS = list_backends()
ALL_BACKENDS = list(_BACKENDS)
_VARIANTS = list_backends(variants=True)
BACKEND_VARIANTS = list(_VARIANTS)


def usable_backends():
    return [b for b, (ok, _) in _BACKENDS.items() if ok]


class ServerProcess(Server):
    """An echo-server (or any program honouring the `listening ADDR` contract) run for a test:
    the driver's own Server (scripts/echobench_lib/server.py), so tests and benchmarks start
    servers the same way. Adds host_port(); a server that never gets ready is a RuntimeError."""

    def __init__(self, argv, ready_timeout=10.0):
        try:
            super().__init__(argv, ready_timeout=ready_timeout)
        except RunError as e:
            raise RuntimeError(f"{[str(a) for a in argv]}: {e}") from e

    def host_port(self, which=None):
        """(host, port) of the first TCP listener, or of `which` (a listening text)."""
        return split_addr(which or self.addr)


@pytest.fixture
def start_server():
    """start_server(backend, *args) -> ServerProcess on 127.0.0.1:0 unless --listen is given.
    Every server started is stopped (SIGKILL if it does not exit) when the test ends."""
    started = []

    def start(backend, *args, ready_timeout=10.0):
        args = [str(a) for a in args]
        if "--listen" not in args:
            args += ["--listen", "127.0.0.1:0"]
        sp = ServerProcess([binary("servers/echo-server"), "--backend", backend, *args],
                           ready_timeout=ready_timeout)
        started.append(sp)
        return sp

    yield start
    for sp in started:
        sp.stop(signal.SIGKILL)


# Variants (epoll:et, uring:singleshot, uring:sqpoll) share all but a few paths with their
# backend, so their runs are marked slow: run-tests.sh runs them once, on the plain build, beside
# the other slow tests, instead of again under the sanitizers.
BACKEND_PARAMS = [pytest.param(name, marks=pytest.mark.slow) if _build.is_variant(name) else name
                  for name in BACKEND_VARIANTS]


@pytest.fixture(params=BACKEND_PARAMS)
def backend(request):
    """Each test that takes `backend` runs once per backend and variant (`epoll:et`); unusable
    ones skip with the reason that --list gives."""
    name = request.param
    ok, why = _VARIANTS.get(name, (False, "echo-server is not built"))
    if not ok:
        pytest.skip(f"backend {name}: {why}")
    if name == "uring:sqpoll" and len(os.sched_getaffinity(0)) < 2:
        # Its kernel thread polls the submission queue and takes a CPU to do it. Confined with
        # the server and the client to one busy CPU (the README's slow-machine check), every
        # step of a connection waits for that thread's turn: 200 concurrent connects and
        # 10,000 connect/echo/close cycles then time out, a verdict of the spare CPU.
        pytest.skip("uring:sqpoll: its SQ thread needs a CPU besides the server's and the "
                    "client's; this test may run on one")
    return name


# Verdicts that a test records but must not assert (a third-party server's failures that depend
# on the machine): printed together at the end of the session, so they are seen in every run.
_REPORTED = []


@pytest.fixture
def report_line():
    """report_line(text): a line for the session's summary ("reported, not asserted")."""
    return _REPORTED.append


def pytest_terminal_summary(terminalreporter):
    if _REPORTED:
        terminalreporter.section("reported, not asserted")
        for line in _REPORTED:
            terminalreporter.write_line(line)

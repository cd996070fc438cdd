"""Fixtures shared by every pytest suite in the tree (servers/, clients/, conformance/, scripts/).

The build under test is $ECHOBENCH_BUILD (default: build/). Servers are started on port 0 and
their real address is read from the `listening ADDR` lines they print: never pick a free port
and hand it over, that races.
"""
import os
import pathlib
import select
import signal
import subprocess
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parent
BUILD = pathlib.Path(os.environ.get("ECHOBENCH_BUILD", ROOT / "build")).resolve()
ALL_BACKENDS = ["blocking", "select", "poll", "epoll", "uring"]


def binary(rel):
    """Path of a built program, e.g. binary('servers/echo-server'); skips when not built."""
    path = BUILD / rel
    if not path.exists():
        pytest.skip(f"{path} is not built (run scripts/run-tests.sh)")
    return path


def list_backends():
    """{name: (usable, reason)} as `echo-server --list-backends` reports them."""
    exe = BUILD / "servers" / "echo-server"
    if not exe.exists():
        return {}
    out = subprocess.run([exe, "--list-backends"], capture_output=True, text=True, timeout=10,
                         check=True).stdout
    found = {}
    for line in out.splitlines():
        name, _, status = line.partition(" ")
        status = status.strip()
        found[name] = (status == "usable", status)
    return found


_BACKENDS = list_backends()


def usable_backends():
    return [b for b, (ok, _) in _BACKENDS.items() if ok]


class ServerProcess:
    """An echo-server (or any program honouring the `listening ADDR` contract) run for a test."""

    def __init__(self, argv, ready_timeout=10.0, env=None):
        self.argv = [str(a) for a in argv]
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        self.listening = []
        self.stderr_text = None
        deadline = time.monotonic() + ready_timeout
        buf = b""
        # Every listener prints its line before the server accepts; the first line may come
        # before the rest, so wait a moment for the others once one has arrived.
        while time.monotonic() < deadline:
            wait = deadline - time.monotonic() if not self.listening else 0.2
            r, _, _ = select.select([self.proc.stdout], [], [], max(wait, 0))
            if not r:
                if self.listening:
                    break
                continue
            chunk = os.read(self.proc.stdout.fileno(), 4096)
            if not chunk:
                break
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                if line.startswith(b"listening "):
                    self.listening.append(line[len(b"listening "):].decode())
        if not self.listening:
            self.stop(signal.SIGKILL)
            raise RuntimeError(f"{self.argv} printed no 'listening' line; stderr: "
                               f"{self.stderr_text!r}")

    @property
    def addr(self):
        """The first TCP listener ("127.0.0.1:40123", "[::1]:40123" or "unix:/path")."""
        return next(a for a in self.listening if not a.startswith("udp:"))

    def host_port(self, which=None):
        """(host, port) of the first TCP listener, or of `which` (a listening text)."""
        a = which or self.addr
        if a.startswith("udp:"):
            a = a[4:]
        host, _, port = a.rpartition(":")
        return host.strip("[]"), int(port)

    @property
    def pid(self):
        return self.proc.pid

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        """Sends sig and waits; returns (exit code, stderr text)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.stderr_text is None:
            self.stderr_text = self.proc.stderr.read().decode(errors="replace")
            self.proc.stderr.close()
            self.proc.stdout.close()
        return self.proc.returncode, self.stderr_text


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


@pytest.fixture(params=ALL_BACKENDS)
def backend(request):
    """Each test that takes `backend` runs once per backend; unusable ones skip with the reason
    that --list-backends gives."""
    name = request.param
    if name not in _BACKENDS:
        pytest.skip(f"echo-server is not built or has no backend {name}")
    ok, why = _BACKENDS[name]
    if not ok:
        pytest.skip(f"backend {name}: {why}")
    return name

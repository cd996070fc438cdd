"""One echo-server process as the driver uses it: pinned start, address, CPU time, echo check,
stop. Follows the start-up contract in docs/CONTRACTS.md (`listening ADDR` lines on stdout)."""
import os
import select
import signal
import subprocess
import tempfile
import time

from .net import connect, free_port, wait_accepting
from .placement import pinned
from .procfs import CpuSample
from .util import RunError

# How long a server may take to print its `listening` line ($ECHOBENCH_START_TIMEOUT seconds).
START_TIMEOUT = float(os.environ.get("ECHOBENCH_START_TIMEOUT") or 10.0)


class Server:
    """echo-server (or anything honouring its contract) started from argv, in its own process
    group so that stopping it stops whatever it started too.

    Ready means: the `listening ADDR` lines are in, or, with wait_addr, that address accepts a
    connection (for servers that print nothing). stderr (and stdout when it is not read) goes
    to a temporary file so that a chatty server can never block on a full pipe while we
    measure it."""

    def __init__(self, argv, cpus=None, ready_timeout=None, wait_addr=None):
        self.argv = [str(a) for a in argv]
        self._err = tempfile.TemporaryFile()
        try:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                         stdout=self._err if wait_addr else subprocess.PIPE,
                                         stderr=self._err, preexec_fn=pinned(cpus),
                                         start_new_session=True)
        except OSError as e:
            self._err.close()
            raise RunError(f"cannot start {self.argv[0]}: {e}") from e
        self.listening = []
        try:
            if wait_addr:
                self._await_accepting(wait_addr, ready_timeout or START_TIMEOUT)
            else:
                self._await_listening(ready_timeout or START_TIMEOUT)
        except BaseException:
            # Interrupted while waiting: the server must not outlive us.
            if self.proc.poll() is None:
                self.stop(signal.SIGKILL)
            raise

    def _not_ready(self, why):
        rc, err = self.stop(signal.SIGKILL)
        last = err.strip().splitlines()[-1] if err.strip() else ""
        if rc is not None and rc >= 0:
            why = f"exited {rc} before it was ready"
        raise RunError(f"server did not start ({why}){': ' + last if last else ''}")

    def _await_accepting(self, addr, timeout):
        if not wait_accepting(addr, self.proc, timeout):
            self._not_ready(f"{addr} did not accept within {timeout:g}s")
        self.listening = [addr]

    def _await_listening(self, timeout):
        deadline = time.monotonic() + timeout
        buf = b""
        while time.monotonic() < deadline:
            # Once the first line is in, give the others a moment rather than the whole timeout.
            wait = 0.2 if self.listening else deadline - time.monotonic()
            r, _, _ = select.select([self.proc.stdout], [], [], max(wait, 0))
            if not r:
                if self.listening:
                    return
                continue
            chunk = os.read(self.proc.stdout.fileno(), 4096)
            if not chunk:
                break
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                if line.startswith(b"listening "):
                    self.listening.append(line[len(b"listening "):].decode().strip())
        if not self.listening:
            self._not_ready(f"no 'listening' line within {timeout:g}s")

    @property
    def addr(self):
        return next(a for a in self.listening if not a.startswith("udp:"))

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def cpu_sample(self):
        """A CpuSample of the server's process group now (None when it is gone): a user's
        server may be a shell and its child, or fork per connection."""
        return CpuSample.take_group(self.proc.pid)

    def serving_pid(self):
        """The pid that serves: our child, or the one child of a `/bin/sh -c CMD` that did not
        exec its command."""
        pid = self.proc.pid
        try:
            with open(f"/proc/{pid}/comm") as f:
                comm = f.read().strip()
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                kids = f.read().split()
        except OSError:
            return pid
        return int(kids[0]) if comm in ("sh", "dash", "bash") and len(kids) == 1 else pid

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        """Signals the process group, waits (SIGKILL to the group after timeout); returns (exit
        code, stderr text)."""
        if self.proc.poll() is None:
            _signal_group(self.proc.pid, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal_group(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        # Anything it left behind in its group (a forking server's children) goes too.
        _signal_group(self.proc.pid, signal.SIGKILL)
        text = ""
        if not self._err.closed:
            self._err.seek(0)
            text = self._err.read().decode(errors="replace")
            self._err.close()
            if self.proc.stdout:
                self.proc.stdout.close()
            self._stderr = text
        return self.proc.returncode, getattr(self, "_stderr", text)


def _signal_group(pgid, sig):
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def start_command(cmd, cpus=None, ready_timeout=None, attempts=3):
    """A user's server from a shell command: `{port}` in it is replaced by a free port and the
    server is ready when that port accepts; without `{port}` it must print `listening ADDR`.
    A lost race for the port (the command exits before it is ready) is retried."""
    if "{port}" not in cmd:
        return Server(["/bin/sh", "-c", cmd], cpus=cpus, ready_timeout=ready_timeout)
    for attempt in range(attempts):
        port = free_port()
        try:
            return Server(["/bin/sh", "-c", cmd.replace("{port}", str(port))], cpus=cpus,
                          ready_timeout=ready_timeout, wait_addr=f"127.0.0.1:{port}")
        except RunError:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


_BLOCK = 65536


class Pattern:
    """Deterministic test bytes of any length in bounded memory: 64 KiB blocks, each the same
    pseudo-random block rotated by a different amount, so that a byte echoed at the wrong
    offset (even a whole block off) differs."""

    def __init__(self, seed):
        import random
        self.block = random.Random(seed).randbytes(_BLOCK)

    def chunk(self, k):
        r = (k * 251) % _BLOCK
        return self.block[r:] + self.block[:r]

    def at(self, offset, n):
        """The n pattern bytes from offset."""
        out = bytearray()
        while n > 0:
            k, i = divmod(offset, _BLOCK)
            piece = self.chunk(k)[i:i + n]
            out += piece
            offset += len(piece)
            n -= len(piece)
        return bytes(out)


def echo_roundtrip(addr, size, timeout=5.0, seed=0):
    """Sends `size` pattern bytes and verifies what comes back while still sending (so a large
    size cannot deadlock on full socket buffers): linear time, memory bounded by a few blocks.
    Returns None when the echo was exact, else the reason."""
    pat = Pattern(seed)
    deadline = time.monotonic() + timeout
    try:
        s = connect(addr, timeout)
    except OSError as e:
        return f"connect to {addr}: {e.strerror or e}"
    with s:
        s.setblocking(False)
        sent, got, out = 0, 0, b""
        while got < size:
            left = deadline - time.monotonic()
            if left <= 0:
                return f"timeout after {timeout:g}s: {got} of {size} bytes echoed"
            if not out and sent < size:
                out = pat.at(sent, min(_BLOCK, size - sent))
            r, w, _ = select.select([s], [s] if out else [], [], left)
            try:
                if w:
                    n = s.send(out)
                    sent += n
                    out = out[n:]
                if r:
                    chunk = s.recv(_BLOCK)
                    if not chunk:
                        return f"connection closed after {got} of {size} bytes echoed"
                    if got + len(chunk) > size:
                        return f"{got + len(chunk) - size} extra bytes echoed"
                    want = pat.at(got, len(chunk))
                    if chunk != want:
                        at = next(i for i in range(len(chunk)) if chunk[i] != want[i])
                        return f"echoed data differs at byte {got + at} of {size}"
                    got += len(chunk)
            except BlockingIOError:
                continue
            except OSError as e:
                return f"{e.strerror or e} after {got} of {size} bytes echoed"
    return None


def verify_echo(addr, sizes, timeout=5.0):
    """Round trips of each size; None when all were exact, else the first reason. The time
    limit grows with the size (at least 8 MB/s)."""
    for i, size in enumerate(sizes):
        why = echo_roundtrip(addr, size, timeout + size / 8e6, seed=i)
        if why:
            return f"{size} B: {why}"
    return None

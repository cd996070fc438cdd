"""One echo-server process as the driver uses it: pinned start, address, CPU time, echo check,
stop. Follows the start-up contract in docs/CONTRACTS.md (`listening ADDR` lines on stdout)."""
import os
import select
import signal
import socket
import subprocess
import tempfile
import time

from .util import RunError

CLK_TCK = os.sysconf("SC_CLK_TCK")
# How long a server may take to print its `listening` line ($ECHOBENCH_START_TIMEOUT seconds).
START_TIMEOUT = float(os.environ.get("ECHOBENCH_START_TIMEOUT") or 10.0)


def pinned(cpus):
    """preexec_fn that pins the child to `cpus` (None: inherit the driver's affinity)."""
    if not cpus:
        return None

    def pin():
        os.sched_setaffinity(0, cpus)
    return pin


class Server:
    """echo-server (or anything honouring its contract) started from argv.

    The listening line is awaited with a timeout; stderr goes to a temporary file so that a
    chatty server can never block on a full pipe while we measure it."""

    def __init__(self, argv, cpus=None, ready_timeout=None):
        self.argv = [str(a) for a in argv]
        self._err = tempfile.TemporaryFile()
        try:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.PIPE, stderr=self._err,
                                         preexec_fn=pinned(cpus))
        except OSError as e:
            self._err.close()
            raise RunError(f"cannot start {self.argv[0]}: {e}") from e
        self.listening = []
        self._await_listening(ready_timeout or START_TIMEOUT)

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
            rc, err = self.stop(signal.SIGKILL)
            last = err.strip().splitlines()[-1] if err.strip() else ""
            why = f"exited {rc}" if rc is not None and rc >= 0 and last else \
                f"no 'listening' line within {timeout:g}s"
            raise RunError(f"server did not start ({why}){': ' + last if last else ''}")

    @property
    def addr(self):
        return next(a for a in self.listening if not a.startswith("udp:"))

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def cpu_sample(self):
        """A CpuSample of the server process now (None when it is gone)."""
        return CpuSample.take(self.proc.pid)

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        """Signals, waits (SIGKILL after timeout); returns (exit code, stderr text)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        text = ""
        if not self._err.closed:
            self._err.seek(0)
            text = self._err.read().decode(errors="replace")
            self._err.close()
            self.proc.stdout.close()
            self._stderr = text
        return self.proc.returncode, getattr(self, "_stderr", text)


class CpuSample:
    """The CPU time of a process at one moment, two ways.

    /proc/PID/stat's utime+stime covers every thread, dead ones included, but counts in clock
    ticks (10 ms): a server that used 8 ms in the window would read 0 or 10 ms. The sum of
    /proc/PID/task/*/schedstat (field 1, ns on the CPU) has no such step but forgets threads
    that exited. delta() uses schedstat when the same threads were there at both moments, stat
    otherwise."""

    def __init__(self, stat_s, tids, sched_ns):
        self.stat_s, self.tids, self.sched_ns = stat_s, tids, sched_ns

    @classmethod
    def take(cls, pid):
        stat_s = proc_cpu_seconds(pid)
        if stat_s is None:
            return None
        tids, sched_ns = None, None
        try:
            tids = frozenset(os.listdir(f"/proc/{pid}/task"))
            total = 0
            for tid in tids:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
            sched_ns = total
        except (OSError, ValueError, IndexError):
            tids, sched_ns = None, None
        return cls(stat_s, tids, sched_ns)

    def delta(self, later):
        """(CPU seconds from self to later, 'schedstat' | 'stat')."""
        if self.sched_ns is not None and later.sched_ns is not None and self.tids == later.tids:
            return (later.sched_ns - self.sched_ns) / 1e9, "schedstat"
        return later.stat_s - self.stat_s, "stat"


def proc_cpu_seconds(pid):
    """CPU seconds (user + system, all threads) of a live process, None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: fields start after the last ')'.
    fields = stat[stat.rfind(")") + 2:].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / CLK_TCK


def connect(addr, timeout):
    """A connected socket to '127.0.0.1:P', '[::1]:P', 'HOST:P' or 'unix:/path'."""
    if addr.startswith("unix:"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(addr[5:])
        return s
    host, _, port = addr.rpartition(":")
    s = socket.create_connection((host.strip("[]"), int(port)), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def payload(size, seed):
    """Deterministic bytes with every value represented and no period shorter than 251."""
    return bytes((i * 7 + seed + i // 251) & 0xFF for i in range(size))


def echo_roundtrip(addr, size, timeout=5.0, seed=0):
    """Sends `size` bytes and reads them back while still sending (so a large size cannot
    deadlock on full socket buffers). Returns None when the echo was exact, else the reason."""
    data = payload(size, seed)
    deadline = time.monotonic() + timeout
    try:
        s = connect(addr, timeout)
    except OSError as e:
        return f"connect to {addr}: {e.strerror or e}"
    with s:
        s.setblocking(False)
        sent, got = 0, bytearray()
        while len(got) < size:
            left = deadline - time.monotonic()
            if left <= 0:
                return f"timeout after {timeout:g}s: {len(got)} of {size} bytes echoed"
            want_w = [s] if sent < size else []
            r, w, _ = select.select([s], want_w, [], left)
            try:
                if w:
                    sent += s.send(data[sent:sent + 65536])
                if r:
                    chunk = s.recv(65536)
                    if not chunk:
                        return f"connection closed after {len(got)} of {size} bytes echoed"
                    got += chunk
            except BlockingIOError:
                continue
            except OSError as e:
                return f"{e.strerror or e} after {len(got)} of {size} bytes echoed"
            n = min(len(got), size)
            if got[:n] != data[:n]:
                at = next(i for i in range(n) if got[i] != data[i])
                return f"echoed data differs at byte {at} of {size}"
        if len(got) > size:
            return f"{len(got) - size} extra bytes echoed"
    return None


def verify_echo(addr, sizes, timeout=5.0):
    """Round trips of each size; None when all were exact, else the first reason."""
    for i, size in enumerate(sizes):
        why = echo_roundtrip(addr, size, timeout, seed=i)
        if why:
            return f"{size} B: {why}"
    return None

"""One echo-server process as the driver uses it: pinned start, address, CPU time, echo check,
stop. Follows the start-up contract in docs/CONTRACTS.md (`listening ADDR` lines on stdout)."""
import os
import select
import signal
import subprocess
import tempfile
import time

from .net import connect, free_port, wait_accepting
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


class CpuSample:
    """The CPU time of a process at one moment, two ways.

    /proc/PID/stat's utime+stime(+cutime+cstime) covers every thread, dead ones included, and
    reaped children, but counts in clock ticks (10 ms): a server that used 8 ms in the window
    would read 0 or 10 ms. The sum of /proc/PID/task/*/schedstat (field 1, ns on the CPU) has
    no such step but forgets threads and processes that exited. delta() uses schedstat when
    every thread of the first moment is still there at the second, stat otherwise."""

    def __init__(self, stat_s, tids, sched_ns, procs=1):
        self.stat_s, self.tids, self.sched_ns, self.procs = stat_s, tids, sched_ns, procs

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

    @classmethod
    def take_group(cls, pgid):
        """The sum over every process of process group pgid (None when there is none)."""
        total = None
        for entry, fields in proc_stats():
            if len(fields) < 3 or int(fields[2]) != pgid:
                continue
            one = cls.take(entry)
            if one is None:
                continue
            if total is None:
                total = cls(0.0, frozenset(), 0, 0)
            total.procs += 1
            total.stat_s += one.stat_s
            if one.tids is None or total.tids is None:
                total.tids, total.sched_ns = None, None
            else:
                total.tids = total.tids | {f"{entry}/{t}" for t in one.tids}
                total.sched_ns += one.sched_ns
        return total

    def delta(self, later):
        """(CPU seconds from self to later, 'schedstat' | 'stat'). schedstat is exact when no
        thread exited in between (a thread that started in between ran only inside the
        window, so all of its time counts), unless one started and exited in between (a
        forking server's child): then stat says more than schedstat by over its tick error
        (under 4 ticks per process), and stat is taken."""
        stat = later.stat_s - self.stat_s
        if self.sched_ns is not None and later.sched_ns is not None and \
                self.tids <= later.tids:
            sched = (later.sched_ns - self.sched_ns) / 1e9
            if stat - sched <= 4 * max(self.procs, later.procs) / CLK_TCK:
                return sched, "schedstat"
        return stat, "stat"


def proc_stat(pid):
    """The fields of /proc/PID/stat after the command name (fields[0] is the state, [1] the
    parent, [2] the process group), None when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: fields start after the last ')'.
    return stat[stat.rfind(")") + 2:].split()


def proc_stats():
    """(pid, proc_stat(pid)) of every process, skipping those that end while being read."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = proc_stat(entry)
            if fields is not None:
                yield int(entry), fields


def proc_cpu_seconds(pid):
    """CPU seconds (user + system, all threads) of a live process and of the children it has
    reaped, None when it is gone. The reaped children count because a forking server (socat,
    xinetd) serves each connection in a child: when it exits its time moves to the parent's
    cutime/cstime, and a sum over live processes alone would lose it."""
    fields = proc_stat(pid)
    if fields is None:
        return None
    utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
    return (utime + stime + cutime + cstime) / CLK_TCK


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

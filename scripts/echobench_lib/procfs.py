"""The one reader of /proc for the driver, bench/ and the tests: a process's CPU time (with ns
precision where the kernel gives it, per thread, with the children it has reaped), its memory,
its fds, its threads, its children, and the TCP sockets of a port.

Why several CPU sources: /proc/PID/stat's utime+stime(+cutime+cstime) covers every thread, dead
ones included, and reaped children, but counts in clock ticks (10 ms): a server that used 8 ms
in a window would read 0 or 10 ms. /proc/PID/task/*/schedstat (field 1: ns on the CPU) has no
such step but forgets threads that exited (a server whose connection threads end inside the
window). A process's CPU clock (clock_getcpuclockid) has neither flaw: ns, and exited threads
included. CpuSample.delta() uses it, and stat where it cannot be read.
"""
import ctypes
import os
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


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


def proc_cpu_seconds(pid, children=True):
    """CPU seconds (user + system, all threads) of a live process, and with children=True of
    the children it has reaped; None when it is gone. The reaped children count because a
    forking server (socat, xinetd) serves each connection in a child: when it exits its time
    moves to the parent's cutime/cstime, and a sum over live processes alone would lose it."""
    fields = proc_stat(pid)
    if fields is None:
        return None
    ticks = [int(f) for f in fields[11:15 if children else 13]]
    return sum(ticks) / CLK_TCK


def is_gone(pid):
    """True when pid does not exist or is a zombie (it serves nothing; its parent just has not
    reaped it yet)."""
    fields = proc_stat(pid)
    return fields is None or fields[0] in ("Z", "X")


def thread_ns(pid):
    """{tid: ns on the CPU} of every thread of pid (schedstat), None when it cannot be read."""
    try:
        out = {}
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                out[tid] = int(f.read().split()[0])
        return out
    except (OSError, ValueError, IndexError):
        return None


def status_kib(pid, field):
    """A `kB` field of /proc/PID/status (VmRSS, VmHWM, ...), None when absent or gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_kib(pids):
    """Resident memory in KiB of a pid, or the sum over a list of pids (those gone, and zombies
    with no memory of their own, count 0)."""
    if isinstance(pids, int):
        pids = [pids]
    return sum(status_kib(p, "VmRSS") or 0 for p in pids)


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def thread_count(pid):
    return len(os.listdir(f"/proc/{pid}/task"))


def children(pid):
    """The pids of pid's children (every thread's), [] when it is gone."""
    out = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
        except OSError:
            continue
    return out


def descendants(pid):
    """pid and every process below it (prefork workers, a shell's command)."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo += children(p)
    return found


def group_pids(pgid):
    """The pids of process group pgid."""
    return [pid for pid, fields in proc_stats() if len(fields) > 2 and int(fields[2]) == pgid]


def cmdline(pid):
    """argv of pid as a list of str ([] when gone or a kernel thread)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def tcp_sockets(port):
    """[(local_port, remote_port, state, tx_queue, rx_queue)] of every TCP socket in this netns
    whose local port is `port` (from /proc/net/tcp and tcp6; state as in
    include/net/tcp_states.h: 1 ESTABLISHED, 8 CLOSE_WAIT, 10 LISTEN)."""
    out = []
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                lines = f.readlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            p = line.split()
            lport = int(p[1].rpartition(":")[2], 16)
            if lport != port:
                continue
            rport = int(p[2].rpartition(":")[2], 16)
            tx, rx = (int(x, 16) for x in p[4].split(":"))
            out.append((lport, rport, int(p[3], 16), tx, rx))
    return out


def socket_inodes(pid):
    """The inodes of pid's open sockets (from /proc/PID/fd's `socket:[N]` links)."""
    out = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return out
    for fd in fds:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            out.add(int(link[8:-1]))
    return out


def tcp_inodes():
    """The inodes of every TCP socket in this netns (/proc/net/tcp and tcp6): with
    socket_inodes, which of a process's sockets are TCP, whatever other processes listen on."""
    out = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                out.update(int(line.split()[9]) for line in f.readlines()[1:])
        except FileNotFoundError:
            continue
    return out


_libc = ctypes.CDLL(None, use_errno=True)


def process_cpu_ns(pid):
    """The CPU time of every thread of pid, those that exited included, in ns (its process
    CPU clock, clock_getcpuclockid(3)); None when the kernel will not say (gone, or not
    ours)."""
    cid = ctypes.c_int()
    if _libc.clock_getcpuclockid(int(pid), ctypes.byref(cid)) != 0:
        return None
    try:
        return time.clock_gettime_ns(cid.value)
    except OSError:
        return None


def children_cpu_seconds(pid):
    """CPU seconds of pid's reaped children (cutime + cstime, clock ticks), None when gone."""
    fields = proc_stat(pid)
    return None if fields is None else (int(fields[13]) + int(fields[14])) / CLK_TCK


class CpuSample:
    """The CPU time of a process (or a process group) at one moment, three ways:
    - `clock_ns`: each process's CPU clock (ns, exited threads included) plus the time of the
      children it reaped (ticks): exact but for children that exit inside the interval;
    - `stat_s`: utime+stime+cutime+cstime (clock ticks), when a CPU clock cannot be read;
    - `threads`: per thread the schedstat ns (keys 'PID/TID'), for the busiest thread."""

    def __init__(self, stat_s, threads, procs=1, clock_ns=None):
        self.stat_s, self.threads, self.procs = stat_s, threads, procs
        self.clock_ns = clock_ns

    @classmethod
    def take(cls, pid):
        stat_s = proc_cpu_seconds(pid)
        if stat_s is None:
            return None
        ns = thread_ns(pid)
        clock = process_cpu_ns(pid)
        kids = children_cpu_seconds(pid)
        return cls(stat_s, None if ns is None else {f"{pid}/{t}": v for t, v in ns.items()},
                   clock_ns=None if clock is None or kids is None else clock + kids * 1e9)

    @classmethod
    def take_group(cls, pgid):
        """The sum over the processes of the group that pgid leads, found as its descendants
        (cheap to read many times a second, where scanning /proc is not; a process that left
        the tree, reparented to init, is not counted). None when there is none."""
        total = None
        for pid in descendants(pgid):
            one = cls.take(pid)
            if one is None:
                continue
            if total is None:
                total = cls(0.0, {}, 0, 0.0)
            total.procs += 1
            total.stat_s += one.stat_s
            if one.threads is None or total.threads is None:
                total.threads = None
            else:
                total.threads.update(one.threads)
            if one.clock_ns is None or total.clock_ns is None:
                total.clock_ns = None
            else:
                total.clock_ns += one.clock_ns
        return total

    def delta(self, later):
        """(CPU seconds from self to later, 'cpuclock' | 'stat'): the CPU clocks when both
        moments have them (a thread that exited keeps its time in its process's clock; a
        child that exited moves its time to its parent's reaped-children ticks), else the
        clock-tick figures of /proc/PID/stat."""
        if self.clock_ns is not None and later.clock_ns is not None:
            return max(0.0, (later.clock_ns - self.clock_ns) / 1e9), "cpuclock"
        return later.stat_s - self.stat_s, "stat"

    def busiest_thread(self, later):
        """CPU seconds of the busiest thread from self to later (schedstat), None when a thread
        list is missing."""
        if self.threads is None or later.threads is None or not later.threads:
            return None
        return max(later.threads[t] - self.threads.get(t, 0) for t in later.threads) / 1e9

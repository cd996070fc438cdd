"""The one /proc reader: CPU time below a clock tick, children that exited, the busiest thread,
processes and their children."""
import os
import subprocess
import threading
import time

from echobench_lib import procfs
from echobench_lib.procfs import CpuSample


def test_cpu_sample_sees_cpu_time_below_one_clock_tick():
    a = CpuSample.take(os.getpid())
    t_end = time.thread_time() + 0.004     # 4 ms of CPU: under one 10 ms tick
    while time.thread_time() < t_end:
        pass
    b = CpuSample.take(os.getpid())
    seconds, method = a.delta(b)
    assert method == "cpuclock"
    assert 0.003 < seconds < 0.5
    assert CpuSample.take(2 ** 22 + 12345) is None    # no such process


def test_a_thread_that_exits_keeps_its_time():
    """A server's connection thread that ends inside the window: its CPU time must stay in the
    figure (per-thread counters forget it; the paired design keeps servers up while threads of
    earlier rounds end)."""
    t = threading.Thread(target=lambda: time.sleep(0.05))
    t.start()
    a = CpuSample.take(os.getpid())

    def spin_and_exit():
        end = time.thread_time() + 0.05
        while time.thread_time() < end:
            pass
    u = threading.Thread(target=spin_and_exit)
    u.start()
    u.join()
    t.join()
    b = CpuSample.take(os.getpid())
    seconds, method = a.delta(b)
    assert method == "cpuclock" and seconds >= 0.045


def test_busiest_thread_is_one_thread_not_the_sum():
    """Two threads spin 50 ms of CPU each (and live on past the second sample: per-thread
    counters see live threads only): the process used about 100 ms, its busiest thread about
    50 ms."""
    done, spun = threading.Event(), threading.Semaphore(0)

    def spin():
        end = time.thread_time() + 0.05
        while time.thread_time() < end:
            pass
        spun.release()
        done.wait(30)
    a = CpuSample.take(os.getpid())
    ts = [threading.Thread(target=spin) for _ in range(2)]
    for t in ts:
        t.start()
    for _ in ts:
        spun.acquire()
    b = CpuSample.take(os.getpid())
    done.set()
    for t in ts:
        t.join()
    total, _ = a.delta(b)
    busiest = a.busiest_thread(b)
    assert 0.045 <= busiest < total and total >= 0.095


def test_group_cpu_keeps_the_time_of_children_that_exited():
    """A forking server's per-connection child that burns CPU and exits inside the window: its
    time must stay in the group's figure (it moves to the parent's cutime/cstime when reaped);
    summing the live processes alone lost it, and a forking server showed about 0 CPU."""
    code = ("import os, time\n"
            "os.setpgid(0, 0)\n"
            "print('ready', flush=True)\n"
            "input()\n"
            "pid = os.fork()\n"
            "if pid == 0:\n"
            "    end = time.thread_time() + 0.3\n"
            "    while time.thread_time() < end:\n"
            "        pass\n"
            "    os._exit(0)\n"
            "os.waitpid(pid, 0)\n"
            "print('done', flush=True)\n"
            "input()\n")
    p = subprocess.Popen(["/usr/bin/python3", "-c", code], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline() == "ready\n"
        a = CpuSample.take_group(p.pid)
        p.stdin.write("\n")
        p.stdin.flush()
        assert p.stdout.readline() == "done\n"
        b = CpuSample.take_group(p.pid)
        seconds, method = a.delta(b)
        assert seconds >= 0.25, (seconds, method)
    finally:
        p.kill()
        p.wait()


def test_processes_children_memory_and_fds():
    p = subprocess.Popen(["/bin/sh", "-c", "sleep 30 & wait"], start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not [
                k for k in procfs.children(p.pid) if procfs.cmdline(k)[:1] == ["sleep"]]:
            time.sleep(0.01)            # forked, then exec'd: wait for both
        kids = procfs.children(p.pid)
        assert len(kids) == 1 and procfs.cmdline(kids[0])[:2] == ["sleep", "30"]
        assert set(procfs.descendants(p.pid)) == {p.pid, kids[0]}
        assert set(procfs.group_pids(p.pid)) == {p.pid, kids[0]}
        assert procfs.rss_kib(p.pid) > 0 and procfs.rss_kib([p.pid, kids[0]]) > \
            procfs.rss_kib(p.pid)
        assert procfs.fd_count(p.pid) >= 3 and procfs.thread_count(p.pid) == 1
        assert not procfs.is_gone(p.pid)
    finally:
        p.kill()
        p.wait()
    assert procfs.is_gone(p.pid) and procfs.proc_cpu_seconds(p.pid) is None
    assert procfs.rss_kib(p.pid) == 0 and procfs.children(p.pid) == []

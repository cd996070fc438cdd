#!/usr/bin/python3
"""100,000 concurrent connections against echo-server --processes N, each echoing a distinct message.

One process is capped at 20,000 descriptors here (hard RLIMIT_NOFILE, which root cannot
raise), so the server runs as N prefork workers with SO_REUSEPORT listeners, and the clients are
several processes of this script, each under its own descriptor limit, spreading their
connections over loopback source addresses (127.0.0.2, 127.0.0.3, ...: one source address has
only the ephemeral port range, about 28k ports, towards one server port). All connections are opened and held
open together; then every one sends a message naming its own number and must get exactly that
message back. Per backend it prints the time to establish them all and the server's RSS per
connection, summed over its processes (VmRSS with all connections open minus VmRSS before the
first, divided by the connections).

A check and a benchmark, not a timed test: exit 0 when every connection echoed its own message,
1 when one did not (or a program failed), 2 for bad usage, 77 when it cannot run here
(echo-server has no --processes yet, too little memory). Every phase is bounded by --timeout.
"""
import errno
import math
import multiprocessing
import os
import pathlib
import resource
import selectors
import socket
import subprocess
import sys
import time

# The driver's pieces: finding programs, listing backends, starting a server.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "scripts"))
from echobench_lib.build import build_dir, list_backends  # noqa: E402
from echobench_lib.procfs import descendants, rss_kib  # noqa: E402
from echobench_lib.server import Server  # noqa: E402
from echobench_lib.util import Parser, RunError, UsageError, parse_duration  # noqa: E402

SKIP = 77
# Not in every Python's socket module: defer the source port choice to connect(), so a port is
# unique per (source, destination) pair instead of per source address.
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
# Kernel memory per open loopback connection (two sockets, two files), for the memory check.
KERNEL_BYTES_PER_CONN = 8192


def message(index, size):
    """The distinct message of connection `index`: its number, then filler derived from it."""
    head = b"%09d:" % index
    fill = bytes((index * 31 + i * 7) & 0xFF for i in range(max(size - len(head), 0)))
    return (head + fill)[:size]


def errname(code):
    return errno.errorcode.get(code, str(code))


def client(pipe, first, count, sources, target, size, window, timeout):
    """One client process: opens `count` connections, connection i from sources[i % len], reports, echoes, reports,
    holds them until told to close. Messages on `pipe`: ('connected', n, {error: n}, seconds),
    ('echoed', ok, {problem: n})."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if pipe.recv() != "go":
        return
    t0 = time.monotonic()
    deadline = t0 + timeout
    sel = selectors.DefaultSelector()
    socks, errors = {}, {}
    nxt = pending = failed = 0

    def fail(i, s, why):
        nonlocal failed
        errors[why] = errors.get(why, 0) + 1
        failed += 1
        s.close()
        socks.pop(i, None)

    # Connects are kept at most `window` in flight, so that the listeners' SYN queues never
    # overflow (a dropped SYN is retried only after a second).
    while len(socks) - pending + failed < count and time.monotonic() < deadline:
        while nxt < count and pending < window:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                s.bind((sources[(first + nxt) % len(sources)], 0))
                rc = s.connect_ex(target)
            except OSError as e:
                rc = e.errno
            socks[nxt] = s
            if rc in (0, errno.EINPROGRESS):
                sel.register(s, selectors.EVENT_WRITE, nxt)
                pending += 1
            else:
                fail(nxt, s, f"connect: {errname(rc)}")
            nxt += 1
        for key, _ in sel.select(timeout=min(1.0, max(deadline - time.monotonic(), 0))):
            s, i = key.fileobj, key.data
            sel.unregister(s)
            pending -= 1
            rc = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if rc:
                fail(i, s, f"connect: {errname(rc)}")
    if pending:
        errors[f"connect: not done within {timeout:g}s"] = pending
    pipe.send(("connected", len(socks) - pending, errors, time.monotonic() - t0))

    if pipe.recv() != "echo":
        return
    deadline = time.monotonic() + timeout
    problems, ok = {}, 0
    sel = selectors.DefaultSelector()
    for i, s in socks.items():
        msg = message(first + i, size)
        try:
            if s.send(msg) == size:     # a small message fits an empty socket buffer
                sel.register(s, selectors.EVENT_READ, [i, msg, b""])
                continue
            why = "short send"
        except OSError as e:
            why = f"send: {errname(e.errno)}"
        problems[why] = problems.get(why, 0) + 1
    left = len(sel.get_map())
    while left and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=min(1.0, max(deadline - time.monotonic(), 0))):
            i, msg, got = key.data
            try:
                chunk = key.fileobj.recv(size - len(got))
            except OSError as e:
                chunk, why = None, f"recv: {errname(e.errno)}"
            if chunk:
                got = key.data[2] = got + chunk
                if len(got) < size:
                    continue
                why = None if got == msg else ("another connection's message"
                                               if got[:10] != msg[:10] else "bytes differ")
            elif chunk is not None:
                why = "closed by the server"
            sel.unregister(key.fileobj)
            left -= 1
            if why:
                problems[why] = problems.get(why, 0) + 1
            else:
                ok += 1
    if left:
        problems[f"no echo within {timeout:g}s"] = left
    pipe.send(("echoed", ok, problems))
    pipe.recv()          # 'close' (or EOF): the connections live until the parent has measured
    for s in socks.values():
        s.close()


def merge(into, counts):
    for k, v in counts.items():
        into[k] = into.get(k, 0) + v


def check(a, backend, nclients, per_client, sources):
    """One backend: returns True when every connection echoed its own message."""
    argv = [a.server, "--backend", backend, "--processes", a.processes, "--listen", "127.0.0.1:0"]
    try:
        srv = Server(argv)
    except RunError as e:
        print(f"  {backend}: FAILED: echo-server did not start: {e}")
        return False
    ctx = multiprocessing.get_context("fork")
    procs, pipes = [], []
    host, _, port = srv.addr.rpartition(":")
    target = (host, int(port))
    try:
        time.sleep(0.5)                 # let the workers finish starting before 'before'
        pids = descendants(srv.pid)
        before = rss_kib(pids)
        left = a.connections
        for k in range(nclients):
            n = min(per_client, left)
            left -= n
            parent, child = ctx.Pipe()
            p = ctx.Process(target=client, args=(child, a.connections - left - n, n,
                                                 sources, target, a.size, a.window,
                                                 a.timeout), daemon=True)
            p.start()
            procs.append(p)
            pipes.append(parent)
        t0 = time.monotonic()
        for pipe in pipes:
            pipe.send("go")
        established, errors = 0, {}
        for pipe in pipes:
            reply = receive(pipe, a.timeout + 30)
            established += reply[1]
            merge(errors, reply[2])
        took = time.monotonic() - t0
        pids = descendants(srv.pid)
        during = rss_kib(pids)
        for pipe in pipes:
            pipe.send("echo")
        ok, problems = 0, {}
        for pipe in pipes:
            reply = receive(pipe, a.timeout + 30)
            ok += reply[1]
            merge(problems, reply[2])
        per_conn = (during - before) / established if established else float("nan")
        print(f"  {backend:<12} {len(pids):>9} {established:>12} {took:>9.2f} "
              f"{before / 1024:>10.1f} {during / 1024:>10.1f} {per_conn:>9.2f} {ok:>10}")
        for why, n in sorted(errors.items()):
            print(f"    {n} connection(s) not established: {why}")
        for why, n in sorted(problems.items()):
            print(f"    {n} echo(es) wrong: {why}")
        return established == a.connections and ok == a.connections
    except RunError as e:
        print(f"  {backend}: FAILED: {e}")
        return False
    finally:
        for pipe in pipes:
            try:
                pipe.send("close")
            except OSError:
                pass
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join()
        rc, err = srv.stop()
        if rc != 0:
            last = err.strip().splitlines()[-1] if err.strip() else ""
            print(f"  {backend}: echo-server exited {rc} on SIGTERM: {last}")


def receive(pipe, timeout):
    if not pipe.poll(timeout):
        raise RunError(f"a client process did not report within {timeout:g}s")
    try:
        return pipe.recv()
    except EOFError as e:
        raise RunError("a client process died") from e


def skip(why):
    print(f"conn100k.py: skipped: {why}")
    sys.exit(SKIP)


def main():
    ap = Parser(description=__doc__.splitlines()[0], allow_abbrev=False)
    ap.add_argument("--build", help="build directory (default: $ECHOBENCH_BUILD or <repo>/build)")
    ap.add_argument("--server", help="echo-server (default: BUILD/servers/echo-server)")
    ap.add_argument("--backends", default="epoll,uring",
                    help="comma list (default epoll,uring; unusable ones are skipped)")
    ap.add_argument("--connections", type=int, default=100000, help="default 100000")
    ap.add_argument("--processes", type=int, default=0,
                    help="echo-server worker processes (default: one per 15,000 connections)")
    ap.add_argument("--size", type=int, default=64, help="message bytes (10..4096, default 64)")
    ap.add_argument("--window", type=int, default=256,
                    help="connects in flight per client process (default 256)")
    ap.add_argument("--per-source", type=int, default=5000,
                    help="connections per loopback source address (default 5000)")
    ap.add_argument("--timeout", default="120s", help="bound on each phase (default 120s)")
    try:
        a = ap.parse_args()  # raises UsageError
        a.timeout = parse_duration(a.timeout, "--timeout")
        if not 1 <= a.connections <= 1000000 or not 10 <= a.size <= 4096:
            raise UsageError("--connections must be 1..1000000 and --size 10..4096")
        if not 0 <= a.processes <= 256 or not 1 <= a.window <= 65536 or a.per_source < 1:
            raise UsageError("--processes must be 0..256, --window 1..65536, --per-source >= 1")
        a.server = pathlib.Path(a.server or build_dir(a.build) / "servers/echo-server")
        if not (a.server.is_file() and os.access(a.server, os.X_OK)):
            raise UsageError(f"--server: {a.server} is not an executable (build first)")
    except UsageError as e:
        print(f"conn100k.py: {e}", file=sys.stderr)
        return 2

    try:
        help_text = subprocess.run([str(a.server), "--help"], capture_output=True, text=True,
                                   timeout=10, stdin=subprocess.DEVNULL).stdout
        listed = list_backends(a.server)
    except (OSError, subprocess.TimeoutExpired, RunError) as e:
        print(f"conn100k.py: {a.server}: {e}", file=sys.stderr)
        return 1
    if "--processes" not in help_text:
        skip(f"{a.server.name} has no --processes option (prefork), and one process cannot "
             f"hold {a.connections} connections under this RLIMIT_NOFILE")

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    lo, hi = map(int, open("/proc/sys/net/ipv4/ip_local_port_range").read().split())
    # Each client process stays below its descriptor limit. Connections go round-robin over
    # source addresses with at most --per-source each: the kernel's search for a free source
    # port slows down as an address's range fills.
    per_client = max(1, hard - 64)
    nclients = math.ceil(a.connections / per_client)
    per_source = min(a.per_source, hi - lo + 1 - 512)
    nsources = math.ceil(a.connections / per_source)
    if nsources > 250:
        skip(f"{a.connections} connections need {nsources} source addresses of 127.0.0.x "
             f"(at most {per_source} each)")
    sources = [f"127.0.0.{2 + k}" for k in range(nsources)]
    if not a.processes:
        a.processes = max(1, math.ceil(a.connections / 15000))
    if a.connections / a.processes > hard - 64:
        print(f"conn100k.py: --processes {a.processes}: {a.connections} connections would give "
              f"each server process more than its {hard} descriptors", file=sys.stderr)
        return 2
    with open("/proc/meminfo") as f:
        avail = next(int(line.split()[1]) for line in f if line.startswith("MemAvailable:"))
    need = a.connections * KERNEL_BYTES_PER_CONN // 1024
    if avail < 2 * need:
        skip(f"{avail // 1024} MiB available, {a.connections} connections want about "
             f"{2 * need // 1024} MiB")

    usable = {n: (u, r) for n, u, r in listed}
    backends = [b for b in a.backends.split(",") if b]
    print(f"{a.connections} concurrent connections, {a.size} B distinct message each; "
          f"echo-server --processes {a.processes}; {nclients} client processes of up to "
          f"{per_client} connections, from {sources[0]}-{sources[-1]} "
          f"round-robin "
          f"(RLIMIT_NOFILE hard {hard}, ephemeral ports {lo}-{hi})")
    print(f"  {'backend':<12} {'processes':>9} {'established':>12} {'connect s':>9} "
          f"{'RSS0 MiB':>10} {'RSS MiB':>10} {'KiB/conn':>9} {'echoed ok':>10}")
    good = True
    ran = 0
    for b in backends:
        if b not in usable or not usable[b][0]:
            print(f"  {b:<12} skipped: {usable[b][1] if b in usable else 'not in --list'}")
            continue
        ran += 1
        good = check(a, b, nclients, per_client, sources) and good
    print("  (processes: the server's processes whose RSS is summed, the parent and its "
          f"{a.processes} workers; RSS: VmRSS summed over them, before the first connection and "
          "with all open; KiB/conn = the difference / connections. 'connect s': from the first "
          "connect to the last established)")
    if not ran:
        skip("none of the backends is usable here")
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())

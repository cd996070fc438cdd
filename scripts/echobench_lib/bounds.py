"""What echo-load and echo-server accept, checked before a run starts (exit 2 with one line)
rather than discovered as a failed cell per cell. The limits are those of
clients/load_options.c and servers/main.c; test_echobench_run_real.py checks them against the
real programs at each edge."""
import resource

from .util import UsageError
from .matrix import mode_kind

MAX_SIZE = 64 << 20              # echo-load --size: 1..64M
MAX_CONNECTIONS = 1000000        # echo-load --connections
MAX_PIPELINE = 65536             # echo-load --pipeline
MAX_RATE = 1000000000            # echo-load --rate
MAX_DURATION_S = 24 * 3600.0     # echo-load --duration, --warmup: at most 24h
MIN_DURATION_S = 0.001           # the driver passes whole milliseconds
MAX_CLIENT_THREADS = 1024        # echo-load --threads
MAX_SERVER_THREADS = 256         # echo-server --threads
INFLIGHT_BYTES = 1 << 30         # echo-load: connections x pipeline slots x 32 B


def _fmt_size(n):
    for div, suf in ((1 << 30, "G"), (1 << 20, "M"), (1 << 10, "k")):
        if n % div == 0 and n >= div:
            return f"{n // div}{suf}"
    return str(n)


def check(opts, local_load=True):
    """UsageError naming the first option value outside what the programs accept."""
    sizes = list(opts.sizes) + [s for _, _, s in opts.cells]
    conns = list(opts.connections) + [c for _, c, _ in opts.cells]
    for size in sizes:
        if size > MAX_SIZE:
            raise UsageError(f"--sizes {_fmt_size(size)}: echo-load takes messages of at most "
                             f"64M")
    for c in conns:
        if c > MAX_CONNECTIONS:
            raise UsageError(f"--connections {c}: echo-load opens at most {MAX_CONNECTIONS}")
    if local_load:
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        threads = opts.client_threads or 1
        for c in conns:
            need = c + 2 * threads + 16
            if hard != resource.RLIM_INFINITY and need > hard:
                raise UsageError(f"--connections {c}: needs {need} open files but the hard "
                                 f"limit (ulimit -Hn) is {hard}")
    churn = any(mode_kind(m) == "churn" for m in opts.modes) or \
        any(mode_kind(m) == "churn" for m, _, _ in opts.cells)
    if churn and opts.client_engine == "uring":
        # echo-load's uring engine sets its sockets up once, before the run.
        raise UsageError("--client-engine uring: echo-load runs churn cells only on its epoll "
                         "engine (leave churn out: --cells none, or no churn in --modes)")
    if opts.pipeline > MAX_PIPELINE:
        raise UsageError(f"--pipeline {opts.pipeline}: echo-load allows at most {MAX_PIPELINE}")
    slots = 1
    while slots < opts.pipeline:
        slots <<= 1
    for c in conns:
        if c * slots * 32 > INFLIGHT_BYTES:
            raise UsageError(f"--connections {c} x --pipeline {opts.pipeline}: echo-load "
                             f"needs more than 1 GiB of in-flight records")
    for what, value in (("--duration", opts.duration), ("--warmup", opts.warmup)):
        if value > MAX_DURATION_S:
            raise UsageError(f"{what} {value:g}s: echo-load measures at most 24h")
    if opts.duration < MIN_DURATION_S:
        raise UsageError(f"--duration {opts.duration:g}s: at least 1ms")
    for mode in opts.modes:
        if mode.startswith("rate") and int(mode[4:]) > MAX_RATE:
            raise UsageError(f"--rates {mode[4:]}: echo-load offers at most {MAX_RATE} msgs/s")
    if opts.client_threads and opts.client_threads > MAX_CLIENT_THREADS:
        raise UsageError(f"--client-threads {opts.client_threads}: echo-load runs at most "
                         f"{MAX_CLIENT_THREADS}")
    if opts.server_threads and opts.server_threads > MAX_SERVER_THREADS:
        raise UsageError(f"--server-threads {opts.server_threads}: echo-server runs at most "
                         f"{MAX_SERVER_THREADS}")

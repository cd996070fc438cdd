"""Where server and client run: the CPUs of a placement (split, shared, free), and how many
load threads that gives echo-load."""
import os

from .util import UsageError

PLACEMENTS = ("split", "shared", "free")
DEFAULT_PLACEMENT = "split"


def allowed_cpus():
    return sorted(os.sched_getaffinity(0))


def cpus_for(placement, server_cpus=None, client_cpus=None):
    """(server CPUs, client CPUs, note) for a placement: split = different CPUs (the server on
    the first allowed CPU, the client on the second, or as --server-cpus/--client-cpus say),
    shared = both on the server's CPU, free = unpinned (None, None). UsageError for a CPU this
    process may not use."""
    allowed = allowed_cpus()
    for cpus, what in ((server_cpus, "--server-cpus"), (client_cpus, "--client-cpus")):
        for c in cpus or []:
            if c not in allowed:
                raise UsageError(f"{what}: CPU {c} is not available here (allowed: "
                                 f"{','.join(map(str, allowed))})")
    if placement == "free":
        return None, None, "unpinned: the kernel places server and client"
    if placement == "shared":
        cpus = server_cpus or client_cpus or allowed[:1]
        return cpus, cpus, "server and client share CPU(s) " + ",".join(map(str, cpus))
    if server_cpus is None and client_cpus is None:
        if len(allowed) >= 2:
            server_cpus, client_cpus = [allowed[0]], [allowed[1]]
        else:
            server_cpus = client_cpus = allowed
    elif server_cpus is None:
        server_cpus = [c for c in allowed if c not in client_cpus] or allowed
    elif client_cpus is None:
        client_cpus = [c for c in allowed if c not in server_cpus] or allowed
    shared = sorted(set(server_cpus) & set(client_cpus))
    note = ("server and client share CPU(s) " + ",".join(map(str, shared))) if shared else \
        "server and client on separate CPUs"
    return server_cpus, client_cpus, note


def client_threads(client_cpus, wanted=None):
    """echo-load's threads: `wanted` (--client-threads), else one per client CPU (unpinned: one
    per CPU this process may use)."""
    if wanted:
        return wanted
    return len(client_cpus) if client_cpus else len(allowed_cpus())


def pinned(cpus):
    """preexec_fn that pins the child to `cpus` (None: inherit the driver's affinity)."""
    if not cpus:
        return None

    def pin():
        os.sched_setaffinity(0, cpus)
    return pin

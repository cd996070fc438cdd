"""What load over ssh decides without ssh (remote.py does the ssh): a load host's destination,
how a cell's connections and rate are split across the hosts, and how the hosts' results
combine into the cell's echo-load JSON (the histograms are merged by `echo-load --merge`;
this completes the rest and says which host failed which self-check)."""
import re

from .loadresult import LoadResult
from .util import RunError, UsageError


def parse_dest(dest):
    """'[user@]host[:port]' -> (ssh destination, port or None). IPv6: '[::1]:22' or bare."""
    text = str(dest).strip()
    user, at, host = text.rpartition("@")
    prefix = user + at
    port = None
    m = re.fullmatch(r"\[([^\]]+)\](?::([0-9]+))?", host)
    if m:
        host, port = m.group(1), m.group(2)
    elif host.count(":") == 1:
        host, port = host.split(":")
        if not port.isdigit():
            raise UsageError(f"bad load host '{dest}': port '{port}' is not a number")
    if not host or (at and not user) or any(c.isspace() for c in text):
        raise UsageError(f"bad load host '{dest}': expected [user@]host[:port]")
    if port is not None and not 0 < int(port) < 65536:
        raise UsageError(f"bad load host '{dest}': port {port} out of range")
    return prefix + host, (int(port) if port else None)


def split_evenly(total, parts):
    """total split into `parts` whole numbers differing by at most one, larger ones first."""
    base, extra = divmod(int(total), parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def plan(connections, rate, hosts):
    """[(connections, rate or None)] per host that takes part: connections as even as
    possible, the rate in proportion to them (largest remainder, so the parts add up to the
    whole rate). A host that would get no connection, or no message per second, is left out."""
    connections = int(connections)
    n = min(hosts, connections)
    if rate is not None:
        rate = int(round(rate))
        n = min(n, rate)
    if n < 1:
        raise RunError(f"cannot split {connections} connections"
                       f"{'' if rate is None else f' at {rate} msgs/s'} across load hosts")
    conns = split_evenly(connections, n)
    if rate is None:
        return [(c, None) for c in conns]
    exact = [rate * c / connections for c in conns]
    rates = [int(x) for x in exact]
    for i in sorted(range(n), key=lambda i: exact[i] - rates[i], reverse=True)[:rate - sum(rates)]:
        rates[i] += 1
    return list(zip(conns, rates))


# Counters that are a part of a total: added over hosts when the merged JSON lacks them.
_SUMMED = ("connections", "connected", "threads", "messages", "bytes", "msgs_per_sec",
           "bytes_per_sec", "mismatches", "short_bytes", "extra_bytes", "lost", "unanswered",
           "rate", "transactions", "transactions_per_sec", "no_local_port")
# The same on every host: taken from the first.
_DESCRIPTIVE = ("target", "transport", "mode", "pipeline", "size", "size_min", "size_max",
                "seed")


def combine(merged, shares):
    """The cell's JSON: the merged one (histograms from echo-load --merge), completed from the
    hosts' own JSONs where it has no figure: counters added, descriptive fields (target, mode,
    size...) from the first host, windows the longest. Latency figures are never derived from
    per-host percentiles: a missing one stays null."""
    out = dict(merged or {})
    got = [s["json"] for s in shares if isinstance(s.get("json"), dict)]
    for key in _SUMMED:
        vals = [j.get(key) for j in got if isinstance(j.get(key), (int, float))]
        if out.get(key) is None and vals:
            out[key] = sum(vals)
    errs = [j.get("errors") for j in got if isinstance(j.get("errors"), dict)]
    if out.get("errors") is None and errs:
        out["errors"] = {k: sum(e.get(k) or 0 for e in errs) for k in errs[0]}
    for key in ("duration_s", "warmup_s"):
        vals = [j.get(key) for j in got if isinstance(j.get(key), (int, float))]
        if out.get(key) is None and vals:
            out[key] = max(vals)
    for key in _DESCRIPTIVE:
        if out.get(key) is None and got and key in got[0]:
            out[key] = got[0][key]
    if got and "verify" in got[0]:
        out["verify"] = all(j.get("verify") for j in got)
    return out


def host_check_reasons(shares):
    """One line per failed self-check on any host, naming the host: a check that failed on
    one host marks the cell even when the merged record's checks pass."""
    out = []
    for s in shares:
        raw, dest = s.get("json"), s.get("dest") or s["host"].dest
        if not isinstance(raw, dict):
            continue
        load = LoadResult(raw)
        out += [f"load host {dest}: {load.reason_of(name)}" for name in load.failed_checks]
    return out

"""The measurement matrix: backends x connections x sizes x modes, its presets and its names.

A mode is `closed` (closed loop), `openNN` (open loop at NN % of the reference entry's
measured closed-loop peak for that connection count, size and placement: every entry of a cell
group gets the same offered rate), `rateN` (open loop at N msgs/s, from --rates) or `stream`.
`sweep` is not a cell mode: it asks for the knee search (runner.sweep). Benchmark names follow
`echo/<entry>/c:<connections>/s:<size>/<mode>[/p:<placement>]/<metric>` (the placement part only
when it is not the default, split), stable across runs so that compare and dashboards can match
them. An entry is one of our backends or a user's server (--server, --target).
"""
import re
from dataclasses import dataclass, field

from .util import UsageError, parse_count, parse_list, parse_size
from .placement import DEFAULT_PLACEMENT, PLACEMENTS  # noqa: F401  (re-exported)

# Rounds: the paired design's interval of a ratio reaches 95 % from 6 pairs on (stats.
# walsh_ci_rank), and its two-sided signed-rank test can reach p <= 0.05 from 6 on (2/64); 8
# leave room for a pair lost to a failed measurement.
DEFAULT = {
    "connections": [1, 16, 64, 256, 1024],
    "sizes": [64, 512, 4096],
    "modes": ["closed", "open25", "open50", "open75", "stream"],
    "duration": 2.0,
    "warmup": 0.5,
    "repetitions": 8,
    "sweep_duration": 1.0,
    "sweep_warmup": 0.25,
}

# The main job (scripts/run-main.sh): paired rounds of short slices, so that many pairs fit in
# its time. Per cell and entry: 8 rounds x (0.25 + 0.05 s + ~0.15 s to start echo-load and
# connect) = 3.6 s; with six backends and 6 cells about 130 s; the knee of each entry about 9
# steps of 0.35 s; quick conformance about 25 s; check about 5 s: about 3 minutes on a 2-CPU
# machine after installation (measured: README, "The two commands"). Beside the cross product,
# a connection-churn cell (where the cost is accept and close, and thread per connection
# pays a thread per transaction) and a 64 KiB streaming cell (where the cost is copying).
QUICK = {
    "connections": [1, 64],
    "sizes": [64],
    "modes": ["closed", "open50", "sweep"],
    "duration": 0.25,
    "warmup": 0.05,
    "repetitions": 8,
    "sweep_duration": 0.3,
    "sweep_warmup": 0.05,
    "cells": "churn:c=16:s=64,stream:c=4:s=64k",
}

# `echobench ab`, the CI gate: two entries (BASE and NEW) per backend, so more rounds fit:
# 20 rounds x 2 entries x 4 cells x ~0.45 s is about 72 s per backend (measured power and
# false-alarm rates: docs/RESULTS.md "echobench ab").
# The extra cells are left to --cells: each adds about 18 s per backend.
AB = dict(QUICK, modes=["closed", "open50"], repetitions=20, cells="")


# What a mode is: its kind and, for open loop, its load. One parser of mode names: every other
# module asks a Cell (or mode_kind) instead of slicing the name.
_MODE = re.compile(r"^(?P<kind>closed|stream|churn|open|rate)(?P<n>[0-9]*)$")


def mode_kind(mode):
    """'closed', 'open' (openNN), 'rate' (rateN), 'stream' or 'churn'; None for other text."""
    m = _MODE.match(str(mode))
    if not m or (m["kind"] in ("open", "rate")) != bool(m["n"]):
        return None
    return m["kind"]


def _mode_number(mode):
    m = _MODE.match(str(mode))
    return int(m["n"]) if m and m["n"] else None


@dataclass(frozen=True)
class Cell:
    """One entry at one point of the matrix. With entry None it is the point itself (a
    "spot": connections, size, mode, placement), which every entry of a run shares."""
    entry: str                     # the entry's name: a backend or a user's server
    connections: int
    size: int
    mode: str
    placement: str = DEFAULT_PLACEMENT
    # Not part of the cell's identity: what this run offered (open loop) and what the entry is.
    offered_rate: float = field(default=None, compare=False)
    entry_kind: str = field(default="backend", compare=False)

    @property
    def kind(self):
        return mode_kind(self.mode)

    @property
    def is_open(self):
        """Open loop: a rate is offered (openNN or rateN)."""
        return self.kind in ("open", "rate")

    @property
    def open_fraction(self):
        """openNN: the offered load as a fraction of the reference's closed-loop peak."""
        return _mode_number(self.mode) / 100.0 if self.kind == "open" else None

    @property
    def fixed_rate(self):
        """rateN: the absolute open-loop rate (msgs/s)."""
        return _mode_number(self.mode) if self.kind == "rate" else None

    @property
    def spot(self):
        """The point of the matrix without the entry (and without what the run offered)."""
        return Cell(None, self.connections, self.size, self.mode, self.placement)

    def of(self, entry, kind="backend"):
        """This point for `entry`."""
        return Cell(entry, self.connections, self.size, self.mode, self.placement,
                    entry_kind=kind)

    @property
    def peak_cell(self):
        """The closed-loop cell of this entry whose peak sets open-loop rates."""
        return Cell(self.entry, self.connections, self.size, "closed", self.placement,
                    entry_kind=self.entry_kind)

    @property
    def sort_key(self):
        """Report order: placement, size, connections, mode, entry."""
        return (PLACEMENTS.index(self.placement) if self.placement in PLACEMENTS else 99,
                self.size, self.connections, mode_order(self.mode), self.entry or "")

    @property
    def _place(self):
        return "" if self.placement == DEFAULT_PLACEMENT else f"/p:{self.placement}"

    def name(self, metric):
        """The benchmark name in run.json: echo/ENTRY/c:N/s:N/MODE[/p:PLACEMENT]/METRIC."""
        return (f"echo/{self.entry}/c:{self.connections}/s:{self.size}/{self.mode}"
                f"{self._place}/{metric}")

    @property
    def key(self):
        """File-name form (never parsed back): epoll_c256_s64_closed (_shared when not
        split)."""
        place = "" if self.placement == DEFAULT_PLACEMENT else f"_{self.placement}"
        safe = re.sub(r"[^A-Za-z0-9_.-]", "-", self.entry)
        return f"{safe}_c{self.connections}_s{self.size}_{self.mode}{place}"

    def where(self):
        """The cell without its entry, as every table and message labels it: 'c=64 s=64
        closed', with the placement when it is not the default ('... closed shared')."""
        place = "" if self.placement == DEFAULT_PLACEMENT else f" {self.placement}"
        return f"c={self.connections} s={self.size} {self.mode}{place}"

    def label(self):
        """'epoll c=64 s=64 closed': the entry, then where()."""
        return f"{self.entry} {self.where()}"


NAME_RE = re.compile(r"^echo/(?P<entry>[^/]+)/c:(?P<c>\d+)/s:(?P<s>\d+)/(?P<mode>[^/]+)/"
                     r"(?:p:(?P<p>[a-z]+)/)?(?P<metric>[^/]+)$")


def parse_name(name):
    """'echo/epoll/c:256/s:64/closed/p99_us' -> (Cell, 'p99_us'), or None for other names."""
    m = NAME_RE.match(str(name))
    if not m:
        return None
    return Cell(m["entry"], int(m["c"]), int(m["s"]), m["mode"],
                m["p"] or DEFAULT_PLACEMENT), m["metric"]


def parse_mode(text, what="mode"):
    """One --modes item -> list of canonical modes. 'open' means open25, open50, open75."""
    t = text.strip().lower()
    if t in ("closed", "stream", "churn", "sweep"):
        return [t]
    if t == "open":
        return ["open25", "open50", "open75"]
    m = re.fullmatch(r"open[:@]?(\d+)%?", t)
    if m and 1 <= int(m.group(1)) <= 100:
        return [f"open{int(m.group(1))}"]
    raise UsageError(f"bad {what} '{text}': expected closed, stream, churn, sweep, open or "
                     f"openNN (NN = percent of the reference's closed-loop peak, 1-100)")


def parse_modes(text):
    out = []
    for item in str(text).split(","):
        if not item.strip():
            continue
        for mode in parse_mode(item):
            if mode not in out:
                out.append(mode)
    if not out:
        raise UsageError(f"empty mode list '{text}'")
    return out


def parse_connections(text):
    return parse_list(text, parse_count, "connection count")


def parse_sizes(text):
    return parse_list(text, parse_size, "message size")


def parse_placements(text):
    out = parse_list(text, _placement, "placement")
    return out


def _placement(text, what):
    t = text.strip().lower()
    if t not in PLACEMENTS:
        raise UsageError(f"bad {what} '{text}': expected split, shared or free")
    return t


def parse_rates(text):
    """--rates '5k,20000' -> ['rate5000', 'rate20000'] modes."""
    return [f"rate{r}" for r in parse_list(text, parse_count, "rate")]


def mode_order(mode):
    """closed first (its result sets the open-loop rates), then open by load, then fixed rates,
    then stream, then churn; names that are no mode last."""
    kind = mode_kind(mode)
    rank = {"closed": 0, "open": 1, "rate": 2, "stream": 3, "churn": 4}.get(kind, 5)
    return (rank, _mode_number(mode) or 0, "" if kind else str(mode))


def parse_cells(text):
    """--cells 'churn:c=16:s=64,stream:c=4:s=64k' -> [(mode, connections, size)]: cells beside
    the cross product of --connections, --sizes and --modes (the open-loop modes need a closed
    cell of the same connections and size)."""
    out = []
    for item in (t.strip() for t in str(text).split(",") if t.strip()):
        parts = item.split(":")
        m = re.fullmatch(r"c=([^:]+)", parts[1]) if len(parts) == 3 else None
        z = re.fullmatch(r"s=([^:]+)", parts[2]) if len(parts) == 3 else None
        if not (m and z):
            raise UsageError(f"bad --cells item '{item}': expected MODE:c=N:s=SIZE, e.g. "
                             f"churn:c=16:s=64")
        modes = parse_mode(parts[0], "--cells mode")
        if "sweep" in modes:
            raise UsageError(f"bad --cells item '{item}': the sweep is not a cell")
        for mode in modes:
            cell = (mode, parse_count(m.group(1), "--cells connections"),
                    parse_size(z.group(1), "--cells size"))
            if cell not in out:
                out.append(cell)
    if not out:
        raise UsageError(f"empty --cells list '{text}'")
    return out


def build_matrix(backends, connections, sizes, modes, placements=(DEFAULT_PLACEMENT,),
                 kinds=None, extra=()):
    """Every cell, ordered placement -> size -> connections -> entry -> mode so that each
    entry's closed-loop cell runs just before the open-loop cells that depend on it. The first
    entry must be the reference (its peak sets every entry's open-loop rates). kinds maps an
    entry to its kind (backend, server, target); extra: [(mode, connections, size)] cells
    beside the cross product (parse_cells)."""
    kinds = kinds or {}
    cells = [Cell(b, c, s, m, p, entry_kind=kinds.get(b, "backend"))
             for p in placements for s in sizes for c in connections for b in backends
             for m in sorted(modes, key=mode_order) if m != "sweep"]
    for m, c, s in extra:
        cells += [x for x in (Cell(b, c, s, m, p, entry_kind=kinds.get(b, "backend"))
                              for p in placements for b in backends) if x not in cells]
    if not cells and "sweep" not in modes:
        raise UsageError("empty matrix: no backend, connection count, size or mode selected")
    return cells

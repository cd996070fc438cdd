"""The measurement matrix: backends x connections x sizes x modes, its presets and its names.

A mode is `closed` (closed loop), `openNN` (open loop at NN % of the same backend's measured
closed-loop peak for that connection count and size) or `stream`. Benchmark names follow
`echo/<backend>/c:<connections>/s:<size>/<mode>/<metric>`, stable across runs so that compare
and dashboards can match them.
"""
import re
from dataclasses import dataclass

from .util import UsageError, parse_count, parse_list, parse_size

DEFAULT = {
    "connections": [1, 16, 64, 256, 1024],
    "sizes": [64, 512, 4096],
    "modes": ["closed", "open25", "open50", "open75", "stream"],
    "duration": 3.0,
    "warmup": 1.0,
    "repetitions": 3,
}

# Under two minutes with five backends on a 2-core box: 3 connection counts x 1 size x 3 modes
# x 1 repetition, 1 s each. One repetition means `compare` cannot test significance on it.
QUICK = {
    "connections": [1, 16, 64],
    "sizes": [64],
    "modes": ["closed", "open50", "stream"],
    "duration": 1.0,
    "warmup": 0.25,
    "repetitions": 1,
}


@dataclass(frozen=True)
class Cell:
    backend: str
    connections: int
    size: int
    mode: str

    @property
    def open_pct(self):
        """The open-loop load in percent of the closed-loop peak, None for other modes."""
        return int(self.mode[4:]) if self.mode.startswith("open") else None

    @property
    def group(self):
        """Cells sharing a closed-loop peak: same backend, connections, size."""
        return (self.backend, self.connections, self.size)

    def name(self, metric):
        return f"echo/{self.backend}/c:{self.connections}/s:{self.size}/{self.mode}/{metric}"

    @property
    def key(self):
        """File-name form: epoll_c256_s64_closed."""
        return f"{self.backend}_c{self.connections}_s{self.size}_{self.mode}"

    def label(self):
        return f"{self.backend} c={self.connections} s={self.size} {self.mode}"


NAME_RE = re.compile(r"^echo/(?P<backend>[^/]+)/c:(?P<c>\d+)/s:(?P<s>\d+)/(?P<mode>[^/]+)/"
                     r"(?P<metric>[^/]+)$")


def parse_name(name):
    """'echo/epoll/c:256/s:64/closed/p99_us' -> (Cell, 'p99_us'), or None for other names."""
    m = NAME_RE.match(name)
    if not m:
        return None
    return Cell(m["backend"], int(m["c"]), int(m["s"]), m["mode"]), m["metric"]


def parse_mode(text, what="mode"):
    """One --modes item -> list of canonical modes. 'open' means open25, open50, open75."""
    t = text.strip().lower()
    if t in ("closed", "stream"):
        return [t]
    if t == "open":
        return ["open25", "open50", "open75"]
    m = re.fullmatch(r"open[:@]?(\d+)%?", t)
    if m and 1 <= int(m.group(1)) <= 100:
        return [f"open{int(m.group(1))}"]
    raise UsageError(f"bad {what} '{text}': expected closed, stream, open or openNN "
                     f"(NN = percent of the closed-loop peak, 1-100)")


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


def mode_order(mode):
    """closed first (its result sets the open-loop rates), then open by load, then stream."""
    if mode == "closed":
        return (0, 0)
    if mode.startswith("open"):
        return (1, int(mode[4:]))
    return (2, 0)


def build_matrix(backends, connections, sizes, modes):
    """Every cell, ordered size -> connections -> backend -> mode so that each backend's
    closed-loop cell runs just before the open-loop cells that depend on it."""
    cells = [Cell(b, c, s, m)
             for s in sizes for c in connections for b in backends
             for m in sorted(modes, key=mode_order)]
    if not cells:
        raise UsageError("empty matrix: no backend, connection count, size or mode selected")
    return cells

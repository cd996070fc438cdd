"""HdrHistogram percentile-distribution text (.hgrm), as echo-load --hgrm writes it."""
import math


def parse(text):
    """[(value, percentile 0..1)] from the table lines; comment and header lines are skipped,
    and so are lines that are no such point (a value that is not a finite number >= 0):
    a damaged file gives fewer points, never a NaN."""
    points = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 3 or line.lstrip().startswith("#"):
            continue
        try:
            value, pct = float(parts[0]), float(parts[1])
        except ValueError:
            continue
        if 0.0 <= pct <= 1.0 and 0.0 <= value < math.inf:
            points.append((value, pct))
    return points


def read(path):
    """The points of an .hgrm file; none when it is not there or not readable (bytes that
    are not UTF-8 are no table lines)."""
    try:
        with open(path, errors="replace") as f:
            return parse(f.read())
    except OSError:
        return []


def value_at(points, pct):
    """The value at percentile pct (0..1): the first point at or above it."""
    for value, p in points:
        if p >= pct:
            return value
    return points[-1][0] if points else None


def scale_to_us(points, p99_us):
    """Factor that turns the file's values into microseconds, found by matching its p99 with
    the JSON's p99 (in us): .hgrm files carry no unit, producers pick us or ns or ms."""
    v = value_at(points, 0.99)
    if not v or not p99_us:
        return 1.0
    ratio = p99_us / v
    return min((1e-3, 1.0, 1e3), key=lambda f: abs(math.log10(ratio / f)))

"""Small shared pieces: the two error kinds, the argument parser every tool uses,
number/duration parsing, human formatting."""
import argparse
import math
import re
from fractions import Fraction


class UsageError(Exception):
    """Bad input (option, value, missing build): one line on stderr, exit 2."""


class RunError(Exception):
    """Something failed while running: one line on stderr, exit 1."""


class Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line (exit 2, through UsageError), as every
    echobench tool does, and never matches an abbreviated option (--server must never mean
    --server-cpus)."""

    def __init__(self, *args, **kwargs):
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    def error(self, message):
        raise UsageError(message)


_DUR_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text, what="duration"):
    """'500ms', '2s', '1.5m' or a bare number of seconds -> seconds (float > 0)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(ns|us|ms|s|m|h)?\s*", str(text))
    if not m:
        raise UsageError(f"bad {what} '{text}': expected e.g. 500ms, 2s, 1m")
    value = float(m.group(1)) * _DUR_UNITS[m.group(2) or "s"]
    if value <= 0:
        raise UsageError(f"bad {what} '{text}': must be more than zero")
    return value


def duration_arg(seconds):
    """Seconds -> the form every echobench tool parses, in whole milliseconds ('1500ms')."""
    return f"{max(1, round(seconds * 1000))}ms"


def _suffixed(text, base):
    """'1.5k' -> 1500 (base 1000) or 1536 (base 1024), as common/parse.c reads it: a fraction
    is allowed only when the result is a whole number; None when text is not such a number."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([kKmMgG]?)\s*", str(text))
    if not m:
        return None
    mul = {"": 1, "k": base, "m": base ** 2, "g": base ** 3}[m.group(2).lower()]
    value = Fraction(m.group(1)) * mul
    return int(value) if value.denominator == 1 else None


def _positive(text, base, what, expected):
    """_suffixed(text, base), which must be more than zero; UsageError naming `what` and what
    was `expected` otherwise."""
    value = _suffixed(text, base)
    if value is None:
        raise UsageError(f"bad {what} '{text}': expected {expected}")
    if value <= 0:
        raise UsageError(f"bad {what} '{text}': must be more than zero")
    return value


def parse_size(text, what="size"):
    """Byte size with optional binary suffix k/M/G (x1024), fractions allowed when whole
    ('1.5k' = 1536), as common/parse.h reads it."""
    return _positive(text, 1024, what, "a byte count like 64, 4k, 1M")


def parse_count(text, what="count"):
    """Whole number with optional decimal suffix k/M/G (x1000), fractions allowed when whole:
    '1k' = 1000, '1.5k' = 1500."""
    return _positive(text, 1000, what, "a whole number like 16, 1k or 1.5k")


def parse_list(text, parse, what):
    """'1,16,64' -> [1, 16, 64] with each item parsed by parse(); duplicates dropped, order kept."""
    items = [t for t in str(text).split(",") if t.strip()]
    if not items:
        raise UsageError(f"empty {what} list '{text}'")
    out = []
    for t in items:
        v = parse(t.strip(), what)
        if v not in out:
            out.append(v)
    return out


def parse_cpus(text, what):
    """'0', '0,2', '1-3' -> sorted list of CPU numbers."""
    cpus = set()
    for part in str(text).split(","):
        part = part.strip()
        m = re.fullmatch(r"([0-9]+)(?:-([0-9]+))?", part)
        if not m:
            raise UsageError(f"bad {what} '{text}': expected CPU numbers like 0 or 0,2 or 1-3")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo:
            raise UsageError(f"bad {what} '{text}': range {part} goes backwards")
        cpus.update(range(lo, hi + 1))
    return sorted(cpus)


def percent_arg(what, zero=False, below=100.0, fraction=True):
    """An argparse type for a percentage ("5", "2.5%"): > 0 (>= 0 with zero) and < below; the
    fraction (0.05) or, with fraction=False, the percentage itself."""
    def parse(text):
        try:
            v = float(str(text).strip().rstrip("%"))
        except ValueError:
            v = math.nan
        if not (math.isfinite(v) and (v >= 0 if zero else v > 0) and v < below):
            raise UsageError(f"bad {what} '{text}': expected a percentage like 5 or 2.5%")
        return v / 100.0 if fraction else v
    return parse


def alpha_arg(text):
    """An argparse type for a significance level: a probability strictly between 0 and 1."""
    try:
        v = float(text)
    except ValueError:
        v = math.nan
    if not 0 < v < 1:
        raise UsageError(f"bad --alpha '{text}': expected a probability like 0.05")
    return v


def human(value, unit=""):
    """12345.6 -> '12.3k'; keeps 3 significant digits, which is what a table needs."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    a = abs(value)
    for div, suf in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if a >= div:
            return f"{value / div:.3g}{suf}{unit}"
    if a >= 100 or a == 0:
        return f"{value:.0f}{unit}"
    return f"{value:.3g}{unit}"


def human_us(us):
    """Latency in microseconds -> '87.3us', '1.25ms', '2.1s'."""
    if us is None or (isinstance(us, float) and math.isnan(us)):
        return "-"
    if us >= 1e6:
        return f"{us / 1e6:.3g}s"
    if us >= 1e3:
        return f"{us / 1e3:.3g}ms"
    return f"{us:.3g}us"

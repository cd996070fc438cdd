"""The shape a reader needs of the JSON it reads (run.json, conform.json, a load host's raw
file), stated once beside the reader and checked before anything is used: a file that was
truncated, edited or written by something else is refused with one line that names the key
path and what was wrong, never a traceback or a figure made of NaN.

A spec is a function of a value that raises ShapeError; require() turns that into a
UsageError naming the file and the key path. Numbers must be finite (Python's json reads NaN
and Infinity) and within a double; counts whole, non-negative and exact in a double. Keys a
spec does not name are not looked at (older and newer writers add fields); a named key that
is absent or null reads as absent unless the spec requires it.
"""
import math

from .util import UsageError

MAX_COUNT = 2 ** 53        # whole numbers beyond this are not exact in a double (or SQLite)


class ShapeError(ValueError):
    """What was wrong; `keys` is the path to it, filled in as the error leaves each level."""

    def __init__(self, what, keys=()):
        super().__init__(what)
        self.what, self.keys = what, list(keys)

    def at(self, key):
        self.keys.insert(0, key)
        return self

    @property
    def path(self):
        out = "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in self.keys)
        return out.lstrip(".") or "the top level"

    def __str__(self):
        return f"{self.path}: {self.what}"


def _show(v):
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _fail(expected, v):
    raise ShapeError(f"expected {expected}, got {_show(v)}")


def finite(v):
    """A number (not a bool) that is finite and within a double."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(v)       # an int past a double raises OverflowError
    except OverflowError:
        return False


def number(v):
    """A finite number >= 0 (every figure, rate and duration echobench writes)."""
    if not finite(v) or v < 0:
        _fail("a finite number >= 0", v)


def count(v):
    """A whole number from 0 to 2^53."""
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_COUNT:
        _fail("a whole number >= 0", v)


def text(v):
    if not isinstance(v, str):
        _fail("a string", v)


def flag(v):
    if not isinstance(v, bool):
        _fail("true or false", v)


def either(*specs, expected):
    def check(v):
        for spec in specs:
            try:
                return spec(v)
            except ShapeError:
                pass
        _fail(expected, v)
    return check


def nullable(spec):
    """spec, or null (inside lists, where an absent value is written as null)."""
    return lambda v: None if v is None else spec(v)


def list_of(spec):
    def check(v):
        if not isinstance(v, list):
            _fail("a list", v)
        for i, x in enumerate(v):
            try:
                spec(x)
            except ShapeError as e:
                raise e.at(i) from None
    return check


def dict_of(spec):
    def check(v):
        if not isinstance(v, dict):
            _fail("an object", v)
        for k, x in v.items():
            try:
                spec(x)
            except ShapeError as e:
                raise e.at(k) from None
    return check


def obj(required=(), **fields):
    """A JSON object whose named fields, when present and not null, have their spec; the
    required ones must be present and not null."""
    items = tuple(fields.items())

    def check(v):
        if not isinstance(v, dict):
            _fail("an object", v)
        for k in required:
            if v.get(k) is None:
                raise ShapeError("missing", [k])
        for k, spec in items:
            x = v.get(k)
            if x is not None:
                try:
                    spec(x)
                except ShapeError as e:
                    raise e.at(k) from None
    return check


def require(spec, value, where):
    """spec(value), its ShapeError as a UsageError: "'<where>': <key path>: expected ...".
    where: the file read."""
    try:
        spec(value)
    except ShapeError as e:
        raise UsageError(f"'{where}': {e}") from None

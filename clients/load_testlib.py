"""What the echo-load tests share (clients/test_load_*.py, test_open_loop.py): running echo-load
and reading its JSON, the checks every sane run passes, echo-load in the background for a test
that acts at a moment of the measured window, faulty-echo, the load engines from echo-load's own
table, and a histogram read from a --hist-out record."""
import json
import re
import signal
import subprocess
import threading
import time

import pytest

from conftest import BUILD, ServerProcess, binary
from echobench_lib.build import list_engines

LATENCY_KEYS = ("p50", "p90", "p99", "p999", "p9999", "max", "mean", "stdev")
REQUIRED = ("target", "mode", "connections", "threads", "pipeline", "size", "duration_s",
            "messages", "bytes", "msgs_per_sec", "bytes_per_sec", "latency_us",
            "latency_uncorrected_us", "connect_us", "errors", "mismatches", "complete",
            "rate_target", "rate_sent", "rate_achieved", "wall_s", "drained_after_window",
            "send_lag_us", "slot_wait_us", "slot_wait_share", "pacing", "inflight_max",
            "client_cpu", "latency_ci_us", "intervals", "msgs_per_conn",
            "starved_connections", "checks", "valid", "invalid_reasons")
CHECK_NAMES = ["rate", "send_lag", "client_cpu", "verify", "connections"]
# A --progress line: "echo-load:    1.0s        49734 msgs/s  errors 0", once a second of the
# window by echo-load's own clock.
PROGRESS = re.compile(r"^echo-load: +(\d+\.\d)s +(\d+) msgs/s +errors (\d+)$")


def echo_load_argv(*args):
    argv = [str(binary("clients/echo-load")), *[str(a) for a in args]]
    if "--json" not in argv:
        argv += ["--json", "-"]
    return argv


def parse_json(out):
    return json.loads(out) if out.strip().startswith("{") else None


def run_load(*args, timeout=30, preexec_fn=None):
    """Runs echo-load with --json - and returns (exit code, JSON object or None, stderr)."""
    p = subprocess.run(echo_load_argv(*args), capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL, preexec_fn=preexec_fn)
    return p.returncode, parse_json(p.stdout), p.stderr


class LoadProcess:
    """echo-load in the background with --progress, for a test that acts at a moment of the
    measured window. The moment is read from echo-load's own clock: its first progress line
    comes 1 s into the window, however long the start-up and the connects took. (A timer started
    beside the process counts the start-up too, which a sanitizer build on a busy machine makes
    longer than a second; --start-at T does not help either, as a connect later than T moves
    the window, not the test's timer.) A process still running when the `with` ends is killed."""

    def __init__(self, *args):
        self.proc = subprocess.Popen(echo_load_argv(*args, "--progress"), text=True,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.err, self.out = [], []
        self.progress = threading.Event()     # the first progress line, or stderr's end
        self.readers = [threading.Thread(target=self._read_err, daemon=True),
                        threading.Thread(target=lambda: self.out.append(self.proc.stdout.read()),
                                         daemon=True)]
        for t in self.readers:
            t.start()

    def _read_err(self):
        for line in self.proc.stderr:
            self.err.append(line)
            if PROGRESS.match(line.rstrip("\n")):
                self.progress.set()
        self.progress.set()

    def into_window(self, seconds, deadline=60):
        """Returns once at least `seconds` (1 or more) of the measured window have passed; a
        late return only moves the moment later. The deadline is for an echo-load that never
        starts its window."""
        assert seconds >= 1
        assert self.progress.wait(deadline), f"no progress line in {deadline} s"
        assert any(PROGRESS.match(l.rstrip("\n")) for l in self.err), \
            "echo-load ended before 1 s of its window: " + "".join(self.err)
        time.sleep(seconds - 1)

    def finish(self, timeout=30):
        """(exit code, JSON object or None, stderr) of echo-load, which must exit within
        `timeout` s of this call."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"echo-load still running {timeout} s later: "
                                 + "".join(self.err)) from None
        for t in self.readers:
            t.join(10)
        return rc, parse_json("".join(self.out)), "".join(self.err)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for t in self.readers:
            t.join(10)


def check_latency(lat):
    assert set(LATENCY_KEYS) <= set(lat), lat
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p999"] <= lat["p9999"] <= \
        lat["max"], lat
    assert lat["min"] <= lat["mean"] <= lat["max"], lat
    assert lat["stdev"] >= 0


def checks(obj):
    return {c["name"]: c for c in obj["checks"]}


def check_sane(obj, connections, all_served=True):
    for key in REQUIRED:
        assert key in obj, key
    assert obj["complete"] is True and obj["error"] is None, obj
    assert obj["messages"] > 0 and obj["bytes"] > 0
    assert obj["msgs_per_sec"] > 0 and obj["bytes_per_sec"] > 0
    assert abs(obj["msgs_per_sec"] * obj["duration_s"] - obj["messages"]) <= 1
    # Every message due in the window is in the histogram, answered in it or after it.
    assert obj["latency_us"]["count"] == obj["messages"] + obj["drained_after_window"]
    assert obj["rate_achieved"] == obj["msgs_per_sec"]
    assert obj["wall_s"] >= obj["duration_s"]
    assert [c["name"] for c in obj["checks"]] == CHECK_NAMES
    assert obj["valid"] == all(c["ok"] for c in obj["checks"])
    assert len(obj["invalid_reasons"]) == sum(not c["ok"] for c in obj["checks"])
    assert (obj["starved_connections"] == 0) == (obj["msgs_per_conn"]["min"] > 0)
    if all_served:
        assert obj["starved_connections"] == 0
    assert sum(i["messages"] for i in obj["intervals"]) == obj["messages"]
    check_latency(obj["latency_us"])
    assert obj["connect_us"]["count"] == connections == obj["connected"]
    assert obj["connect_us"]["max"] > 0
    assert obj["mismatches"] == 0 and obj["extra_bytes"] == 0
    assert not any(obj["errors"].values()), obj["errors"]
    # A loopback round trip takes microseconds to milliseconds, not nanoseconds or seconds.
    assert 1 <= obj["latency_us"]["p50"] < 1e6


def due(obj):
    """Open loop: the messages due in the window. How many of them are answered inside it rather
    than just after it (drained) depends on the machine's speed; the sum does not."""
    return obj["messages"] + obj["drained_after_window"] + obj["unanswered"]


def assert_no_resets(sp):
    """Stops an echo-server and asserts that no connection of the test ended with a reset."""
    _, summary = sp.stop(signal.SIGTERM)
    line = [l for l in summary.splitlines() if "stopped:" in l]
    assert line and " resets=0 " in line[0], summary


def faulty(*args):
    """conformance/faulty-echo with these arguments, ready; the caller stops it."""
    return ServerProcess([binary("conformance/faulty-echo"), *args])


# The load engines come from echo-load's own table (`--version`): the default one runs through
# every test, each other one through the engine tests, so a new engine is tested without a line
# in the tests.
_ENGINE_STATES = list_engines(BUILD / "clients" / "echo-load")
ENGINES = list(_ENGINE_STATES)
DEFAULT_ENGINE = next((n for n, (_, state) in _ENGINE_STATES.items()
                       if state.endswith("(default)")), "epoll")
OTHER_ENGINES = [e for e in ENGINES if e != DEFAULT_ENGINE]


def engine_state(name):
    """(usable, reason) of a load engine, from `echo-load --version`."""
    return list_engines(binary("clients/echo-load")).get(
        name, (False, f"echo-load --version does not list engine {name}"))


def need_engine(name):
    usable, why = engine_state(name)
    if not usable:
        pytest.skip(f"--engine {name}: {why}")


def read_record_hist(path, name):
    """{bucket index: count} and the header fields of histogram `name` in a --hist-out file."""
    buckets, head, inside = {}, None, False
    for line in open(path):
        parts = line.split()
        if parts[0] == "hist":
            inside = parts[1] == name
            if inside:
                head = dict(p.split("=") for p in parts[2:])
            continue
        if inside and parts[0].isdigit():
            buckets[int(parts[0])] = int(parts[1])
        elif inside:
            inside = False
    return buckets, head

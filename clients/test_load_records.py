"""echo-load's records and synchronised start: --hist-out records merge losslessly (--merge adds
the counts, its p99 is that of the union), a damaged record is refused, --start-at waits for
the given time and says how late it started."""
import math
import os
import tempfile
import time

from load_testlib import read_record_hist, run_load


def bucket_high(i):
    """hist.h's bucket geometry: 2048 exact buckets, then 1024 per power of two."""
    if i < 2048:
        return i
    shift = i // 1024 - 1
    return ((i - 1024 * shift + 1) << shift) - 1


def test_merge_two_runs(start_server):
    """Two runs write their records; --merge adds the counts, and its p99 is the p99 of the
    union of the two histograms (HdrHistogram's rank rule), computed here independently."""
    sp = start_server("epoll")
    with tempfile.TemporaryDirectory() as d:
        a, b, hg = (os.path.join(d, n) for n in ("a.hist", "b.hist", "m.hgrm"))
        rc, ja, err = run_load("-c", 2, "-d", "500ms", "--hist-out", a, sp.addr)
        assert rc == 0, err
        rc, jb, err = run_load("-c", 3, "-R", "2k", "--phase", "1/2", "-d", "500ms",
                               "--hist-out", b, sp.addr)
        assert rc == 0, err
        rc, m, err = run_load("--merge", a, b, "--hgrm", hg)
        assert rc == 0, err
        assert m["messages"] == ja["messages"] + jb["messages"]
        assert m["bytes"] == ja["bytes"] + jb["bytes"]
        assert m["connections"] == 5 and m["connected"] == 5
        assert m["latency_us"]["count"] == ja["latency_us"]["count"] + jb["latency_us"]["count"]
        assert m["latency_us"]["max"] == max(ja["latency_us"]["max"], jb["latency_us"]["max"])
        union, n, top = {}, 0, 0
        for path in (a, b):
            buckets, head = read_record_hist(path, "latency")
            for i, c in buckets.items():
                union[i] = union.get(i, 0) + c
            n += int(head["count"])
            top = max(top, int(head["max"]))
        assert sum(union.values()) == n == m["latency_us"]["count"]
        rank = max(1, math.ceil(math.nextafter(99.0, 0) * n / 100))
        seen = 0
        for i in sorted(union):
            seen += union[i]
            if seen >= rank:
                want = min(bucket_high(i), top)
                break
        assert abs(m["latency_us"]["p99"] - want / 1000) < 0.0015, (m["latency_us"], want)
        assert m["msgs_per_conn"]["min"] > 0 and m["starved_connections"] == 0
        assert set(m["latency_ci_us"]) == {"p50", "p90", "p99", "p999", "p9999"}
        assert m["intervals"] is None and len(m["checks"]) == 5
        assert open(hg).read().count("#[Mean") == 1
        # A damaged record is refused with one line, exit 1.
        with open(a, "a") as f:
            f.write("junk\n")
        rc, m, err = run_load("--merge", a, b)
        assert rc == 1 and m is None and len(err.strip().splitlines()) == 1, err


def test_start_at_waits_for_the_given_time(start_server):
    """--start-at T, 3 s ahead: echo-load connects, then starts at T (the run ends 200 ms
    later, not before), and its start_lag_us says how late it was, which only a start-up longer
    than 3 s or a broken wait makes half a second."""
    sp = start_server("epoll")
    t0, t = time.monotonic(), time.time() + 3
    rc, obj, err = run_load("-c", 1, "-d", "200ms", "--start-at", f"{t:.3f}", sp.addr)
    assert rc == 0, err
    assert time.monotonic() - t0 >= 3.15, "the run ended before T + 200 ms"
    assert 0 <= obj["start_lag_us"] < 500000
    rc, obj, err = run_load("-c", 1, "-d", "200ms", sp.addr)
    assert obj["start_lag_us"] is None

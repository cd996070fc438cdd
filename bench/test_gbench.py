"""The Google Benchmark programs of bench/ (C benchmarks over the gbench_c.h wrapper): their JSON
has the runs, names and counters that `echobench compare` and Google Benchmark's compare.py
need, and compare.py reads two of them.

Runs use a tiny --benchmark_min_time: these tests check the output, not the speed.
"""
import json
import pathlib
import subprocess

import pytest

from conftest import binary, list_backends

COMPARE_PY = pathlib.Path("/usr/share/benchmark/compare.py")
MIN_TIME = "--benchmark_min_time=0.01"
PAYLOAD_SIZES = (64, 4096, 65536)


def run_json(exe, *args, timeout=60):
    """Runs a benchmark program with JSON on stdout; returns (exit code, parsed JSON)."""
    proc = subprocess.run([str(exe), MIN_TIME, "--benchmark_format=json", *args],
                          capture_output=True, text=True, timeout=timeout)
    assert proc.stdout.lstrip().startswith("{"), f"no JSON on stdout; stderr: {proc.stderr}"
    return proc.returncode, json.loads(proc.stdout)


def by_name(doc):
    entries = {}
    for b in doc["benchmarks"]:
        assert b["name"] not in entries, f"{b['name']} reported twice"
        entries[b["name"]] = b
    return entries


def assert_measured(entry, *counters):
    assert not entry.get("error_occurred"), f"{entry['name']}: {entry.get('error_message')}"
    assert entry["iterations"] > 0, entry
    assert entry["real_time"] > 0 and entry["cpu_time"] > 0, entry
    for c in counters:
        assert c in entry, f"{entry['name']} has no {c}: {entry}"
        assert entry[c] > 0, f"{entry['name']}: {c} = {entry[c]}"


def test_shim_counters_through_json(tmp_path):
    """The wrapper's own test program: its self-check passes (exit 0) and the JSON file it
    writes carries the counters with their flags applied, as compare.py will see them."""
    out = tmp_path / "shim.json"
    proc = subprocess.run([str(binary("bench/test-gbench-c")), f"--benchmark_out={out}",
                           "--benchmark_out_format=json"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    runs = by_name(json.loads(out.read_text()))
    c = runs["t_counters/iterations:1000"]
    assert_measured(c, "bytes_per_second", "items_per_second", "rate")
    assert c["iterations"] == 1000 and c["loops"] == 1000
    assert c["avg"] == pytest.approx(3.0)          # GB_COUNTER_AVG_ITERATIONS
    assert c["per_iter"] == pytest.approx(5000.0)  # GB_COUNTER_PER_ITERATION
    assert c["inverse"] == pytest.approx(0.25)     # GB_COUNTER_INVERT
    assert c["bytes_per_second"] == pytest.approx(64 * c["items_per_second"])
    assert runs["t_args/3/70"]["r0"] == 3 and runs["t_args/3/70"]["r1"] == 70
    assert runs["t_skip"]["error_message"] == "skipped: not here"
    assert runs["t_fail"]["error_message"] == "broken on purpose"


def test_loadcore_json():
    rc, doc = run_json(binary("bench/bench-loadcore"))
    assert rc == 0
    assert doc["context"]["num_cpus"] > 0
    runs = by_name(doc)
    expected = {"hist_record", "hist_percentile", "hist_merge"} | {
        f"{op}/{n}" for op in ("payload_fill", "payload_check", "payload_fill_check")
        for n in PAYLOAD_SIZES}
    assert set(runs) == expected
    for name in ("hist_record", "hist_percentile", "hist_merge"):
        assert_measured(runs[name], "items_per_second")
    for name in expected - {"hist_record", "hist_percentile", "hist_merge"}:
        assert_measured(runs[name], "bytes_per_second")
        # bytes per second is the payload size times the iterations per CPU second
        b = runs[name]
        size = int(name.rsplit("/", 1)[1])
        per_s = {"ns": 1e9, "us": 1e6, "ms": 1e3, "s": 1.0}[b["time_unit"]]
        assert b["bytes_per_second"] == pytest.approx(size * per_s / b["cpu_time"], rel=1e-3)


def test_echo_round_trip_json(backend):
    rc, doc = run_json(binary("bench/bench-echo"), f"--benchmark_filter=^echo_rtt/{backend}/")
    assert rc == 0, [b.get("error_message") for b in doc["benchmarks"] if b.get("error_occurred")]
    runs = by_name(doc)
    assert set(runs) == {f"echo_rtt/{backend}/{n}/real_time" for n in (64, 4096)}
    for name, entry in runs.items():
        assert_measured(entry, "items_per_second", "bytes_per_second")
        size = int(name.split("/")[2])
        assert entry["bytes_per_second"] == pytest.approx(size * entry["items_per_second"])


def test_echo_unusable_backends_are_skipped_with_reason():
    """Backends the server reports unusable are in the JSON as skipped, with the reason;
    the run still succeeds. Usable ones are not skipped."""
    backends = list_backends()
    if not backends:
        pytest.skip("servers/echo-server is not built")
    rc, doc = run_json(binary("bench/bench-echo"), "--benchmark_filter=^echo_rtt/.*/64/")
    assert rc == 0
    runs = by_name(doc)
    for name, (usable, status) in backends.items():
        entry = runs[f"echo_rtt/{name}/64/real_time"]
        if usable:
            assert not entry.get("error_occurred"), entry
        else:
            assert entry["error_occurred"], entry
            assert entry["error_message"].startswith(f"skipped: backend {name}: "), entry


@pytest.mark.parametrize("arg", ["--no-such-flag", "stray", "--benchmark_format=xml",
                                 "--benchmark_repetitions=x", "--benchmark_context=nokey"])
def test_bad_argument_is_one_line_exit_2(arg):
    proc = subprocess.run([str(binary("bench/bench-loadcore")), arg],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and arg.split("=")[0] in lines[0], proc.stderr


@pytest.mark.skipif(not COMPARE_PY.exists(),
                    reason="Google Benchmark's compare.py (libbenchmark-tools) is not installed")
def test_compare_py_reads_two_runs(tmp_path):
    exe = binary("bench/bench-loadcore")
    outs = []
    for i in range(2):
        out = tmp_path / f"run{i}.json"
        subprocess.run([str(exe), MIN_TIME, "--benchmark_filter=^payload_fill/",
                        "--benchmark_repetitions=3", f"--benchmark_out={out}",
                        "--benchmark_out_format=json"],
                       check=True, capture_output=True, timeout=60)
        outs.append(out)
    # compare.py needs numpy and scipy: Debian's interpreter has them, pyenv's may not.
    proc = subprocess.run(["/usr/bin/python3", str(COMPARE_PY), "--no-color", "benchmarks",
                           str(outs[0]), str(outs[1])],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for n in PAYLOAD_SIZES:
        assert f"payload_fill/{n}" in proc.stdout
    assert "pvalue" in proc.stdout   # the U test over the 3 repetitions ran

"""run.json in Google Benchmark's schema: each metric encoded lower-is-better, the per-sample
fields written and read back, the run-level fields with their defaults."""
from echobench_lib import gbjson
from echobench_lib.loadresult import LoadResult
from echobench_lib.matrix import Cell
from echobench_lib.measure import Sample


def test_google_benchmark_encoding_is_lower_is_better():
    assert gbjson.encode("msgs_per_sec", 50000.0) == (20000.0, "ns")
    assert gbjson.encode("bytes_per_sec", float(1 << 20)) == (1e6, "us")
    assert gbjson.encode("p99_us", 87.5) == (87.5, "us")
    assert gbjson.encode("server_cpu_ns_per_msg", 900.0) == (900.0, "ns")
    assert gbjson.encode("msgs_per_sec", 0.0) is None


def test_sample_fields_are_written_and_read_back():
    ok = Sample(cell=Cell("epoll", 16, 64, "open50", offered_rate=1000.0), repetition=0,
                metrics={"msgs_per_sec": 1000.0, "p99_us": 80.0, "offered_rate": 1000.0},
                load=LoadResult({"messages": 500}), client_bound=False, t_s=1.5, seq=3)
    bad = Sample(cell=Cell("mine", 16, 64, "open50", "shared", offered_rate=2500.0,
                           entry_kind="target"), repetition=1,
                 metrics={"msgs_per_sec": 2400.0, "p99_us": 90.0},
                 load=LoadResult({}), valid=False, reasons=["rate: 61 % of target"])
    f = gbjson.sample_fields(bad)
    assert f == {"entry": "mine", "entry_kind": "target", "connections": 16, "size": 64,
                 "mode": "open50", "placement": "shared", "offered_rate": 2500.0,
                 "valid": False, "invalid_reasons": ["rate: 61 % of target"],
                 "client_bound": None, "t_s": None, "seq": None}
    data = gbjson.build_run_json({"echobench": {"incomplete": "SIGTERM"}}, [ok, bad], 2)
    eb = data["context"]["echobench"]
    assert eb["incomplete"] == "SIGTERM" and eb["sweep"] == {} and eb["until_ci"] is None
    assert eb["entries"] == [{"name": "epoll", "kind": "backend"},
                             {"name": "mine", "kind": "target"}]
    it = next(e for e in data["benchmarks"] if e["name"] == ok.cell.name("msgs_per_sec"))
    assert it["iterations"] == 500 and it["repetitions"] == 2
    rows = {r["entry"]: r for r in gbjson.iterations(data) if r["metric"] == "p99_us"}
    assert rows["mine"]["valid"] is False and rows["epoll"]["valid"] is True
    assert rows["mine"]["cell"] == bad.cell and rows["mine"]["cell"].entry_kind == "target"
    assert rows["epoll"]["client_bound"] is False and rows["epoll"]["seq"] == 3
    assert rows["epoll"]["t_s"] == 1.5 and rows["mine"]["repetition"] == 1
    s = gbjson.series(data)["echo/mine/c:16/s:64/open50/p:shared/p99_us"]
    assert s.invalid == 1 and s.invalid_reasons == ["rate: 61 % of target"]


def test_foreign_google_benchmark_json_reads_as_series():
    data = {"benchmarks": [
        {"name": "BM_x", "run_type": "iteration", "real_time": 2.0, "cpu_time": 1.5,
         "time_unit": "us", "items_per_second": 10.0, "my_counter": 3},
        {"name": "BM_x_mean", "run_name": "BM_x", "run_type": "aggregate",
         "aggregate_name": "mean", "real_time": 2.0},
        {"name": "BM_y", "run_type": "iteration", "error_occurred": True}]}
    s = gbjson.series(data)
    assert s["BM_x real_time"].values == [2000.0] and s["BM_x real_time"].higher is False
    assert s["BM_x items_per_second"].higher is True and s["BM_x my_counter"].higher is None
    assert not [k for k in s if k.startswith("BM_y")]
    assert gbjson.iterations(data) == []

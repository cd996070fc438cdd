"""echo-load's JSON read in one place (LoadResult), and what a measurement's Sample says about
itself: valid, and client-bound when the client was at least as busy as the server."""
import types

import pytest

from echobench_lib.loadresult import LoadResult
from echobench_lib.matrix import Cell
from echobench_lib.measure import Measurer

FULL = {"msgs_per_sec": 20000.0, "bytes_per_sec": 1280000.0, "messages": 20000,
        "latency_us": {"p50": 40.0, "p90": 50.0, "p99": 90.0, "p999": 200.0,
                       "p9999": 400.0, "max": 900.0, "mean": 45.0, "stdev": 5.0},
        "latency_uncorrected_us": {"p99": 80.0}, "connect_us": {"p99": 60.0},
        "errors": {"refused": 1, "reset": 2}, "mismatches": 0}


def test_metrics_from_echo_load_json():
    m = LoadResult(FULL).metrics(server_cpu_s=0.4, cpu_window_s=0.8, offered_rate=20000)
    assert m["p99_us"] == 90.0 and m["p99_uncorrected_us"] == 80.0 and m["errors"] == 3.0
    # 0.5 s of CPU per second at 20k msgs/s = 25 us per message.
    assert m["server_cpu_ns_per_msg"] == pytest.approx(25000.0)
    stream = LoadResult({"bytes_per_sec": 1e9, "latency_us": {"p50": 0.0}}).metrics()
    assert "p50_us" not in stream    # zero means "not measured"


def test_self_check_figures_go_to_cells_csv_metrics():
    load = {"msgs_per_sec": 900.0, "latency_us": {"p99": 90.0}, "rate_target": 1000.0,
            "rate_achieved": 900.0, "send_lag_us": {"p50": 3.0, "p99": 12.0, "max": 50.0},
            "slot_wait_us": {"p50": 0.0, "p99": 700.0, "max": 900.0},
            "client_cpu": {"user_s": 0.1, "sys_s": 0.1, "busiest_thread": 0.42}}
    m = LoadResult(load).metrics(offered_rate=1000.0)
    assert (m["rate_achieved"], m["send_lag_p99_us"], m["slot_wait_p99_us"],
            m["client_cpu_busiest"]) == (900.0, 12.0, 700.0, 0.42)
    assert "rate_achieved" not in LoadResult({"msgs_per_sec": 5.0, "rate_target": None,
                                              "rate_achieved": 5.0}).metrics()


def test_checks_validity_and_reasons():
    r = LoadResult({"checks": [{"name": "rate", "ok": False, "value": 0.6, "limit": 0.95},
                               {"name": "send_lag", "ok": True}, "junk", {"ok": False}],
                    "valid": False, "invalid_reasons": ["rate: 61 % of the target"],
                    "rate_target": 1000.0, "rate_achieved": 2000.0})
    assert set(r.checks) == {"rate", "send_lag"} and r.failed_checks == ["rate"]
    assert r.checks["rate"].value == 0.6 and not r.valid and r.rate_ok is False
    assert r.reason_of("rate") == "rate: 61 % of the target"
    assert r.reason_of("verify") == "verify failed"
    # no checks at all: valid, and the rate judged from its figures
    bare = LoadResult({"rate_target": 1000.0, "rate_achieved": 960.0})
    assert bare.valid and bare.rate_ok and not bare.failed_checks
    assert LoadResult({"rate_target": 1000.0, "rate_achieved": 900.0}).rate_ok is False
    # what echo-load may write that is no number reads as absent
    odd = LoadResult({"messages": "many", "latency_us": {"p99": float("nan")},
                      "client_cpu": {"busiest_thread": True}})
    assert odd.messages == 0 and odd.latency_us("p99") is None and odd.client_busiest is None
    assert not LoadResult(None).measured_something


def _sample(client, server, failed=("client_cpu",)):
    load = {"msgs_per_sec": 1000.0, "messages": 1000,
            "client_cpu": {"busiest_thread": client},
            "checks": [{"name": n, "ok": n not in failed} for n in
                       ("rate", "client_cpu", "connections")],
            "valid": not failed, "invalid_reasons": [f"{n}: failed" for n in failed]}
    m = types.SimpleNamespace()
    cpu = (0.5, 1.0, "schedstat", server) if server is not None else (None, None, None, None)
    return Measurer._sample(m, Cell("e", 1, 64, "closed"), 0, None, LoadResult(load), cpu)


def test_client_bound_is_the_busier_side_not_an_invalid_run():
    """client_cpu alone does not invalidate a run whose server was measured: the run is
    client-bound when the client's busiest thread was at least as busy as the server's."""
    s = _sample(0.97, 0.60)
    assert s.valid and s.client_bound is True and s.reasons == []
    assert s.metrics["server_cpu_busiest"] == pytest.approx(0.60)
    s = _sample(0.93, 0.99)          # the server was busier: it was the limit
    assert s.valid and s.client_bound is False
    s = _sample(0.50, 0.99, failed=())
    assert s.valid and s.client_bound is False
    # another check failed too: invalid, and that reason stays
    s = _sample(0.97, 0.60, failed=("client_cpu", "connections"))
    assert not s.valid and s.reasons == ["connections: failed"]
    # no server CPU (a --target): echo-load's verdict stands
    s = _sample(0.97, None)
    assert not s.valid and s.client_bound is True and s.reasons == ["client_cpu: failed"]

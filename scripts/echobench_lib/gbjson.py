"""run.json in Google Benchmark's JSON schema, and reading any Google Benchmark JSON back.

Google Benchmark's compare.py and the dashboards that read its JSON compare `real_time` and
`cpu_time`, where lower is better. So each echobench metric is written as a time in which lower
is better, and its natural value sits beside it:
  msgs_per_sec  -> real_time = ns per message (1e9 / msgs_per_sec), cpu_time = server CPU ns per
                   message; items_per_second / bytes_per_second carry the rates themselves
  bytes_per_sec -> real_time = us per MiB echoed
  *_us          -> real_time = cpu_time = the latency in us
  *_ns_per_*    -> real_time = cpu_time = the CPU time in ns
and every entry carries an `echobench` object: entry, entry_kind, connections, size, mode,
placement, offered_rate, valid, invalid_reasons, client_bound, t_s, seq, metric, value, unit,
higher_is_better,
which is what echobench compare and the report read; context.echobench has the run-level fields.
docs/RESULTS.md describes every field.
"""
import json
import pathlib
import statistics
from dataclasses import replace

from . import shape
from .matrix import parse_name
from .metrics import GATED_LATENCY, gated_metrics, higher_is_better, unit
from .shape import count, dict_of, either, flag, list_of, nullable, number, obj, text
from .util import UsageError

_TO_NS = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}


def encode(metric, value):
    """(real_time, time_unit) for a metric value, or None when it cannot be a time (rate 0)."""
    if metric in ("msgs_per_sec", "transactions_per_sec"):
        return (1e9 / value, "ns") if value > 0 else None
    if metric == "bytes_per_sec":
        return ((1 << 20) / value * 1e6, "us") if value > 0 else None
    if metric.endswith("_us"):
        return value, "us"
    return value, "ns"


ENTRY_KINDS = ("backend", "server", "target")


def sample_fields(sample):
    """The per-sample part of an entry's `echobench` object (docs/RESULTS.md): who was measured,
    where, at what offered rate, whether it can be trusted, what limited it and when it ran.
    sample: a measure.Sample."""
    cell = sample.cell
    return {"entry": cell.entry, "entry_kind": cell.entry_kind or "backend",
            "connections": cell.connections, "size": cell.size, "mode": cell.mode,
            "placement": cell.placement,
            "offered_rate": float(cell.offered_rate) if cell.offered_rate else None,
            "valid": bool(sample.valid), "invalid_reasons": [str(r) for r in sample.reasons],
            "client_bound": sample.client_bound, "t_s": sample.t_s, "seq": sample.seq}


def _iteration(name, family, rep, reps, sample, metric):
    value = sample.metrics[metric]
    enc = encode(metric, value)
    if enc is None:
        return None
    real, tu = enc
    cpu = real
    if metric == "msgs_per_sec" and "server_cpu_ns_per_msg" in sample.metrics:
        cpu = sample.metrics["server_cpu_ns_per_msg"]
    entry = {
        "name": name, "family_index": family, "per_family_instance_index": 0,
        "run_name": name, "run_type": "iteration", "repetitions": reps,
        "repetition_index": rep, "threads": 1,
        "iterations": int(sample.messages or 1),
        "real_time": real, "cpu_time": cpu, "time_unit": tu,
    }
    if metric == "msgs_per_sec":
        entry["items_per_second"] = value
        if "bytes_per_sec" in sample.metrics:
            entry["bytes_per_second"] = sample.metrics["bytes_per_sec"]
    if metric == "bytes_per_sec":
        entry["bytes_per_second"] = value
    entry["label"] = f"{metric} {unit(metric)}"
    eb = sample_fields(sample)
    eb.update({"metric": metric, "value": value, "unit": unit(metric),
               "higher_is_better": higher_is_better(metric)})
    if metric in GATED_LATENCY:
        # whether echo-load could give this percentile a confidence interval: compare and ab
        # judge only resolved ones
        eb["resolved"] = metric not in sample.unresolved
    entry["echobench"] = eb
    return entry


def _aggregates(entries):
    """mean/median/stddev entries over repetitions, as Google Benchmark writes them."""
    first = entries[0]
    out = []
    funcs = (("mean", statistics.fmean), ("median", statistics.median),
             ("stddev", lambda xs: statistics.stdev(xs) if len(xs) > 1 else 0.0))
    for agg, fn in funcs:
        e = {k: first[k] for k in ("family_index", "per_family_instance_index", "run_name",
                                    "repetitions", "threads", "time_unit", "label")}
        e.update({"name": f"{first['name']}_{agg}", "run_type": "aggregate",
                  "aggregate_name": agg, "aggregate_unit": "time",
                  "iterations": len(entries),
                  "real_time": fn([x["real_time"] for x in entries]),
                  "cpu_time": fn([x["cpu_time"] for x in entries])})
        for counter in ("items_per_second", "bytes_per_second"):
            if all(counter in x for x in entries):
                e[counter] = fn([x[counter] for x in entries])
        eb = dict(first["echobench"])
        eb["value"] = fn([x["echobench"]["value"] for x in entries])
        # the aggregate is valid only when every repetition was
        eb["valid"] = all(x["echobench"].get("valid", True) for x in entries)
        eb["invalid_reasons"] = sorted({r for x in entries
                                        for r in x["echobench"].get("invalid_reasons") or []})
        e["echobench"] = eb
        out.append(e)
    return out


RUN_FIELDS = {"incomplete": None, "placement": None, "until_ci": None, "entries": None,
              "sweep": {}}


def run_fields(context, samples=()):
    """context.echobench with every run-level field present (docs/RESULTS.md); `entries` is
    derived from the samples when the runner did not list them."""
    eb = dict(RUN_FIELDS)
    eb.update((context or {}).get("echobench") or {})
    if eb["entries"] is None:
        seen = {}
        for s in samples:
            seen.setdefault(s.cell.entry, {"name": s.cell.entry, "kind": s.cell.entry_kind})
        eb["entries"] = list(seen.values())
    if eb["sweep"] is None:
        eb["sweep"] = {}
    return eb


def build_run_json(context, samples, repetitions):
    """context: dict; samples: [measure.Sample] -> the run.json object. context["echobench"]
    carries the run-level fields (run_fields fills defaults)."""
    context = dict(context)
    context["echobench"] = run_fields(context, samples)
    by_name = {}
    order = []
    for s in samples:
        for metric in gated_metrics(s.cell.mode):
            if metric not in s.metrics:
                continue
            name = s.cell.name(metric)
            if name not in by_name:
                by_name[name] = []
                order.append(name)
            by_name[name].append((s, metric))
    benchmarks = []
    for family, name in enumerate(order):
        entries = [e for e in (_iteration(name, family, s.repetition, repetitions, s, m)
                               for s, m in sorted(by_name[name], key=lambda t: t[0].repetition))
                   if e is not None]
        benchmarks += entries
        if len(entries) > 1:
            benchmarks += _aggregates(entries)
    return {"context": context, "benchmarks": benchmarks}


def run_json_path(path):
    """A run directory or a JSON file -> the JSON file's path (UsageError if neither)."""
    p = pathlib.Path(path)
    if p.is_dir():
        p = p / "run.json"
    if not p.is_file():
        raise UsageError(f"no results at '{path}': expected a run directory or a JSON file")
    return p


# What the readers (rundata, compare, history, rates) use of run.json, and so what load()
# checks (shape.py): the fields docs/RESULTS.md describes, with their types. Google
# Benchmark's own entries and context have the same names and types.
_EB = obj(value=number, entry=text, entry_kind=text, connections=count, size=count, mode=text,
          placement=text, offered_rate=number, valid=flag, invalid_reasons=list_of(text),
          client_bound=flag, t_s=number, seq=count, metric=text, unit=text,
          higher_is_better=flag, resolved=flag)
_ENTRY = obj(required=("name",), name=text, run_name=text, run_type=text,
             aggregate_name=text, time_unit=text, real_time=number, cpu_time=number,
             repetition_index=count, echobench=_EB)


_VALUE = obj(required=("value",))


def _benchmark(v):
    _ENTRY(v)
    if v.get("run_type") == "iteration" and v.get("echobench") is not None:
        try:
            _VALUE(v["echobench"])
        except shape.ShapeError as e:
            raise e.at("echobench") from None


_STEP = obj(offered_rate=number, rate_achieved=number, p50_us=number, p99_us=number,
            slo_value_us=number, rate_ok=flag, valid=flag, verdict=text, error=text)
_RUN_FIELDS = obj(
    incomplete=text, placement=either(text, list_of(text), expected="a placement or a list"),
    placements=list_of(text), design=text, order_seed=count, reference=text, slo=text,
    load_hosts=list_of(text),
    entries=list_of(obj(required=("name",), name=text, kind=text, command=text, address=text,
                        server_cpu=flag, server_exe=text)),
    until_ci=obj(pct=number, max_repetitions=count,
                 cells=dict_of(obj(reached=flag, repetitions=count, median=number,
                                   half_width=number))),
    sweep=dict_of(obj(max_rate_at_slo=number, bracket=list_of(nullable(number)),
                      decided=flag, slo=text, peak=number, error=text, connections=count,
                      size=count, placement=text, steps=list_of(_STEP))))
_SOME = either(count, text, expected="a count or a word")
_CONTEXT = obj(
    host_name=text, date=text, utc_start=text, utc_end=text, num_cpus=count,
    mhz_per_cpu=number, cpu_model=text, virtualization=text, kernel=text, compiler=text,
    build_dir=text, buildtype=text, sanitize=text, git_commit=text, git_dirty=flag,
    preset=text, note=text, repetitions=count, duration_s=number, warmup_s=number,
    load_avg=list_of(number), interrupted=flag, reference=text, backends=list_of(text),
    connections=list_of(count), sizes=list_of(count), modes=list_of(text),
    server_threads=_SOME, client_threads=_SOME, client_engine=text, pipeline=_SOME,
    placement=obj(server_cpus=list_of(count), client_cpus=list_of(count), method=text,
                  note=text),
    failed_cells=list_of(obj(required=("cell", "reason"), cell=text, repetition=count,
                             reason=text)),
    warnings=list_of(obj(required=("cell", "warning"), cell=text, repetition=count,
                         warning=text)),
    unusable_backends=dict_of(text), closed_loop_peaks=dict_of(number),
    echobench=_RUN_FIELDS)
RUN_JSON = obj(required=("benchmarks",), benchmarks=list_of(_benchmark), context=_CONTEXT)


def load(path):
    """Reads a Google Benchmark JSON file (ours or any other). UsageError when it is not one,
    or when a field a reader uses has the wrong type or a value out of range (RUN_JSON)."""
    p = run_json_path(path)
    try:
        with open(p) as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot read '{p}': {e}") from e
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise UsageError(f"'{p}' is not Google Benchmark JSON (no 'benchmarks' list)")
    shape.require(RUN_JSON, data, p)
    return data


class Series:
    """Repeated measurements of one metric of one benchmark."""

    def __init__(self, name, unit_, higher, from_aggregate=False):
        self.name, self.unit, self.higher = name, unit_, higher
        self.values = []
        self.from_aggregate = from_aggregate
        self.invalid_reasons = []   # echo-load self-check failures of any repetition
        self.invalid = 0            # how many repetitions failed a self-check



# Google Benchmark fields that are not user counters.
_GB_FIELDS = {"name", "family_index", "per_family_instance_index", "run_name", "run_type",
              "repetitions", "repetition_index", "threads", "iterations", "real_time",
              "cpu_time", "time_unit", "aggregate_name", "aggregate_unit", "label",
              "error_occurred", "error_message", "big_o", "rms", "complexity_n",
              "echobench"}
_KNOWN_COUNTERS = {"items_per_second": True, "bytes_per_second": True}


def series(data):
    """{series name: Series} from a loaded JSON object. Our entries give one series per
    benchmark (its natural value); plain Google Benchmark entries give `NAME real_time`,
    `NAME cpu_time` (in ns, lower is better) and one per counter (items/bytes_per_second higher
    is better; other counters have no known direction and are shown, never judged). When a
    benchmark has only aggregates (--benchmark_report_aggregates_only), its mean is one sample."""
    out = {}
    iter_names = {e.get("run_name") or e["name"] for e in data["benchmarks"]
                  if e.get("run_type", "iteration") == "iteration"}

    def add(name, unit_, higher, value, agg=False, eb=None):
        if not shape.finite(value):
            return
        s = out.get(name)
        if s is None:
            s = out[name] = Series(name, unit_, higher, agg)
        s.values.append(float(value))
        if eb is not None and eb.get("valid") is False:
            s.invalid += 1
            for r in eb.get("invalid_reasons") or ["echo-load's self-checks failed"]:
                if r not in s.invalid_reasons:
                    s.invalid_reasons.append(r)

    for e in data["benchmarks"]:
        if e.get("error_occurred"):
            continue
        run_type = e.get("run_type", "iteration")
        base = e.get("run_name") or e["name"]
        if run_type == "aggregate":
            if base in iter_names or e.get("aggregate_name") != "mean":
                continue
            agg = True
        else:
            agg = False
        eb = e.get("echobench")
        if isinstance(eb, dict) and "value" in eb:
            add(base, eb.get("unit", ""), eb.get("higher_is_better"), eb["value"], agg, eb)
            continue
        scale = _TO_NS.get(e.get("time_unit", "ns"), 1.0)
        if "real_time" in e:
            add(f"{base} real_time", "ns", False, e["real_time"] * scale, agg)
        if "cpu_time" in e:
            add(f"{base} cpu_time", "ns", False, e["cpu_time"] * scale, agg)
        for k, v in e.items():
            if k in _GB_FIELDS or isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            add(f"{base} {k}", "/s" if k.endswith("_per_second") else "",
                _KNOWN_COUNTERS.get(k), v, agg)
    return out


def iterations(data):
    """Our iteration entries as flat rows: [{cell (matrix.Cell, with entry_kind and
    offered_rate), entry, entry_kind, connections, size, mode, placement, metric, value,
    repetition, offered_rate, valid, invalid_reasons, client_bound, t_s, seq}] (entries
    written by other tools are ignored; a field a run did not write gets its default)."""
    rows = []
    for e in data["benchmarks"]:
        eb = e.get("echobench")
        if e.get("run_type") != "iteration" or not isinstance(eb, dict):
            continue
        parsed = parse_name(e.get("name"))
        if parsed is None:
            continue
        cell, metric = parsed
        kind = eb.get("entry_kind") or "backend"
        offered = eb.get("offered_rate")
        cell = replace(cell, entry_kind=kind, offered_rate=offered)
        rows.append({"cell": cell, "entry": cell.entry, "entry_kind": kind,
                     "connections": cell.connections, "size": cell.size, "mode": cell.mode,
                     "placement": cell.placement, "metric": eb.get("metric") or metric,
                     "value": eb.get("value"), "repetition": e.get("repetition_index") or 0,
                     "offered_rate": offered,
                     "valid": eb.get("valid", True) is not False,
                     "invalid_reasons": list(eb.get("invalid_reasons") or []),
                     "client_bound": eb.get("client_bound"), "t_s": eb.get("t_s"),
                     "seq": eb.get("seq"), "resolved": eb.get("resolved")})
    return rows

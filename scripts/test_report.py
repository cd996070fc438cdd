"""echobench report on synthetic results directories: every plot and table is in the HTML,
the HTML needs nothing from the network, every figure carries its interval, a winner is named
only when the data say so (A/A: ties), invalid cells are marked and in no winner, the knee
shows, user entries stand beside backends."""
import re

import pytest

import synthetic
from echobench_testlib import echobench

from echobench_lib.matrix import Cell
from echobench_lib.rundata import RunData

CONFORM = {
    "epoll": {"verdict": "pass", "passed": 40, "failed": 0, "skipped": 2, "failed_ids": [],
              "exit": 0, "seconds": 11.5, "note": "", "suite": "must-only"},
    "poll": {"verdict": "fail", "passed": 39, "failed": 1, "skipped": 2,
             "failed_ids": ["limits.emfile-spin"], "exit": 1, "seconds": 14.0, "note": "",
             "suite": "must-only"},
}
FIGURES = ("plot-throughput", "plot-latency", "plot-p99-rate", "plot-cpu")
TABLES = ("table-ratios", "table-conform", "table-problems", "table-cells", "table-machine",
          "table-winners-closed", "table-winners-open", "table-winners-stream")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = synthetic.make_run(tmp_path_factory.mktemp("run") / "r", backends=("epoll", "poll",
                                                                           "uring"),
                           connections=(1, 16, 64), modes=("closed", "open25", "open75",
                                                           "stream"),
                           repetitions=8, noise=0.01, seed=42, conform=CONFORM)
    r = echobench("report", d)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"report: {d.resolve() / 'report.html'}"
    return d


def figure(html, fid):
    m = re.search(rf'<figure id="{fid}">(.*?)</figure>', html, re.S)
    assert m, f"figure {fid} missing"
    return m.group(1)


def table(html, tid):
    m = re.search(rf'<table id="{tid}">(.*?)</table>', html, re.S)
    assert m, f"table {tid} missing"
    return m.group(1)


def md_row(md, start):
    return next(ln for ln in md.splitlines() if ln.startswith(start))


def test_every_plot_is_an_inline_svg_with_lines(run_dir):
    html = (run_dir / "report.html").read_text()
    for fid in FIGURES:
        body = figure(html, fid)
        assert "<svg" in body and "</svg>" in body, fid
        assert "No cells of this kind" not in body, fid
        # matplotlib draws each data line as a path with a stroke in the backend's colour.
        assert body.count("<path") > 10, fid
    assert figure(html, "plot-throughput").count("stroke: #d62728") > 0   # uring's colour
    assert 'id="plot-knee"' not in html     # no sweep in this run


def test_every_table_is_there(run_dir):
    html = (run_dir / "report.html").read_text()
    assert '<div id="table-winners">' in html
    for tid in TABLES:
        assert f'<table id="{tid}">' in html, tid


def test_report_is_self_contained(run_dir):
    html = (run_dir / "report.html").read_text()
    assert not re.search(r"<(script|link|img|iframe)\b", html)
    assert not re.search(r"url\((?!#)", html)   # clip-path="url(#id)" is local
    # The only absolute URLs are SVG namespace names, which are never fetched.
    urls = set(re.findall(r"https?://[^\s\"'<>]+", html))
    assert urls <= {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}, urls


def test_conformance_verdicts_per_backend(run_dir):
    html = (run_dir / "report.html").read_text()
    rows = {m.group(1): m.group(2) for m in
            re.finditer(r"<tr><td>(\w+)</td>(.*?)</tr>", table(html, "table-conform"), re.S)}
    assert ">pass<" in rows["epoll"]
    assert ">fail<" in rows["poll"] and "limits.emfile-spin" in rows["poll"]
    assert ">not run<" in rows["uring"]


def test_ratios_vs_epoll_carry_their_interval(run_dir):
    html = (run_dir / "report.html").read_text()
    t = table(html, "table-ratios")
    assert "uring / epoll (×)" in t
    row = re.search(r"<tr><td>c=64 s=64 closed</td><td>msgs_per_sec</td>(.*?)</tr>", t,
                    re.S).group(1)
    assert "1 (reference)" in row
    triples = [tuple(map(float, m)) for m in
               re.findall(r">([0-9.]+) \[([0-9.]+), ([0-9.]+)\]<", row)]
    assert len(triples) == 2, row     # 8 pairs: a real 95 % interval, no level label
    # Synthetic speeds: epoll 1, poll 0.9, uring 1.15 (1 % noise).
    (poll, plo, phi), (uring, ulo, uhi) = triples
    assert poll == pytest.approx(0.9, abs=0.05) and plo <= poll <= phi
    assert uring == pytest.approx(1.15, abs=0.05) and ulo <= uring <= uhi < 1.25
    assert 'class="better">1.1' in row and 'class="worse">0.9' in row


def test_every_figure_is_a_median_with_an_interval(run_dir):
    md = (run_dir / "summary.md").read_text()
    line = md_row(md, "| c=16 s=64 closed |")
    figs = re.findall(r"([0-9.]+k?) \[([0-9.]+k?), ([0-9.]+k?)\]", line)
    assert len(figs) == 5, line     # 3 medians and 2 ratios, each with its interval
    assert "%)" not in line         # 8 repetitions reach 95 %: no lower level to label
    assert "order statistics" in md and "Hodges-Lehmann" in md and "MB/s = 10⁶ B/s" in md
    html = (run_dir / "report.html").read_text()
    legend = re.search(r'<p class="note" id="legend">(.*?)</p>', html, re.S).group(1)
    assert "order statistics" in legend and "signed-rank" in legend and "SI" in legend


def test_intervals_below_95_percent_say_their_level(tmp_path):
    """With 4 repetitions no 95 % interval of a median exists: each interval says what it
    covers (87.5 %), in the summary and the report, and so does the paired ratio's (87.5 %
    too: the extreme Walsh averages of 4 pairs)."""
    d = synthetic.make_run(tmp_path / "r4", backends=("epoll", "poll"), connections=(16,),
                           modes=("closed",), repetitions=4, seed=3)
    assert echobench("report", d).returncode == 0
    line = md_row((d / "summary.md").read_text(), "| c=16 s=64 closed |")
    assert line.count("(87.5 %)") == 3, line
    assert "(87.5 %)" in table((d / "report.html").read_text(), "table-winners-closed")


def test_units_said_once_per_row_not_in_each_figure(run_dir):
    html = (run_dir / "report.html").read_text()
    t = table(html, "table-winners-closed")
    head = re.search(r"<thead>(.*?)</thead>", t, re.S).group(1)
    assert "<th>ranked by</th>" in head and "<th>epoll</th>" in head
    for row in re.findall(r"<tr>(.*?)</tr>", re.search(r"<tbody>(.*?)</tbody>", t,
                                                          re.S).group(1)):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
        assert cells[2] == "msgs_per_sec (msgs/s)", cells
        assert not any("/s" in c for c in cells[3:]), cells
    assert "bytes_per_sec (MB/s)" in table(html, "table-winners-stream")
    openh = table(html, "table-winners-open")
    assert "offered (msgs/s)" in openh and "server_cpu_ns_per_msg (ns/msg)" in openh


def test_summary_names_winner_with_margin_and_its_interval(run_dir):
    md = (run_dir / "summary.md").read_text()
    assert "| cell | bound | ranked by | epoll | poll (× epoll) | uring (× epoll) " \
        "| verdict | margin (×) | p |" in md
    line = md_row(md, "| c=16 s=64 closed |")
    m = re.search(r"\| \*\*uring\*\* \| ([0-9.]+)× \[([0-9.]+), ([0-9.]+)\] \| ([0-9.]+) \|$",
                  line)
    assert m, line
    margin, lo, hi, p = map(float, m.groups())
    assert margin == pytest.approx(1.15, abs=0.04) and lo <= margin <= hi and p <= 0.05
    assert "| server-bound | msgs_per_sec (msgs/s) |" in line
    # Open loop: the same offered rate for every entry, shown; won on p99 (lower is better).
    line = md_row(md, "| c=16 s=64 open75 |")
    rate = float(line.split("|")[2].strip().rstrip("k")) * 1e3
    assert rate == pytest.approx(0.75 * synthetic.nominal_peak(1.0, 16), rel=0.01)
    assert "**uring**" in line
    assert "poll: FAIL" in md and "limits.emfile-spin" in md


def test_failed_cells_and_machine_are_shown(run_dir):
    html = (run_dir / "report.html").read_text()
    assert "synthetic failure for the report" in html
    machine = table(html, "table-machine")
    assert "Synthetic CPU" in machine and "server CPUs 0, client CPUs 1" in machine
    assert "<b>Placement:</b> split: server CPUs 0, client CPUs 1" in html


def test_report_without_epoll_uses_first_backend(tmp_path):
    d = synthetic.make_run(tmp_path / "r", backends=("poll", "select"), connections=(1,),
                           modes=("closed",), repetitions=1)
    assert echobench("report", d).returncode == 0
    html = (d / "report.html").read_text()
    assert "select / poll" in html
    # No open loop and no streaming here: those figures say so instead of drawing nothing.
    assert "No cells of this kind" in figure(html, "plot-p99-rate")
    # One repetition: no interval, no winner.
    md = (d / "summary.md").read_text()
    assert "‡" in md and "inconclusive" in md and "**select**" not in md


def test_report_from_run_json_alone(tmp_path):
    d = synthetic.make_run(tmp_path / "r", connections=(1, 16), repetitions=1)
    (d / "cells.csv").unlink()
    assert echobench("report", d).returncode == 0
    assert "<svg" in figure((d / "report.html").read_text(), "plot-throughput")


# ---- the winner rule on synthetic matrices ------------------------------------------------

def test_a_a_same_server_twice_names_few_winners(tmp_path):
    """The same server as two entries, 60 cells of 8 pairs, 10 % noise and 20 % drift between
    rounds: at most 5 % of cells name a winner in expectation; 9 or more of 60 would happen by
    chance less than once in 200 runs (binomial), so more means a broken rule."""
    d = synthetic.make_run(tmp_path / "aa", backends=("a", "b"), speeds={"a": 1.0, "b": 1.0},
                           connections=(1, 4, 16, 64, 256), sizes=(64, 512, 4096),
                           modes=("closed", "open50", "open75", "stream"), repetitions=8,
                           noise=0.10, drift=0.2, seed=9)
    rd = RunData(d)
    decisions = [rd.decide(spot) for spot in rd.spots()]
    assert len(decisions) == 60
    wins = [x for x in decisions if x["winner"]]
    assert len(wins) <= 8, wins
    assert all(x["testable"] for x in decisions)     # no winner by the data, not by too few


def test_twenty_percent_faster_with_low_noise_is_named_the_winner(tmp_path):
    d = synthetic.make_run(tmp_path / "fast", backends=("a", "b"),
                           speeds={"a": 1.0, "b": 1.2}, connections=(1, 16, 64),
                           modes=("closed", "open50", "stream"), repetitions=6, noise=0.02,
                           drift=0.2, seed=10)
    rd = RunData(d)
    decisions = [rd.decide(spot) for spot in rd.spots()]
    assert [x["winner"] for x in decisions] == ["b"] * len(decisions)
    closed = [x for spot, x in zip(rd.spots(), decisions) if spot.kind == "closed"]
    assert all(x["margin"] == pytest.approx(1.2, abs=0.05) for x in closed)


def test_invalid_cell_is_marked_with_reasons_and_in_no_winner(tmp_path):
    d = synthetic.make_run(tmp_path / "inv", backends=("epoll", "uring"), connections=(16,),
                           modes=("closed",), repetitions=6, noise=0.01, seed=11,
                           invalid={("uring", 16, "closed")})
    assert echobench("report", d).returncode == 0
    rd = RunData(d)
    dec = rd.decide(Cell(None, 16, 64, "closed"))
    assert dec["invalid"] == ["uring"] and dec["winner"] is None   # uring was faster
    html = (d / "report.html").read_text()
    inv = table(html, "table-invalid")
    assert "uring" in inv and "achieved 61 % of the target" in inv and "6 of 6" in inv
    assert 'class="invalid"' in table(html, "table-winners-closed")
    md = (d / "summary.md").read_text()
    line = md_row(md, "| c=16 s=64 closed |")
    assert "✗" in line and "**uring**" not in line
    assert "uring c=16 s=64 closed: 6 of 6 repetition(s): rate: achieved 61 %" in md


def test_sweep_shows_max_rate_at_slo_and_the_hockey_stick(tmp_path):
    d = synthetic.make_run(tmp_path / "sw", backends=("epoll", "uring"), connections=(16,),
                           modes=("closed",), repetitions=3, sweep=True, seed=12)
    assert echobench("report", d).returncode == 0
    want = {b: synthetic.sweep_steps(synthetic.SPEED[b]) for b in ("epoll", "uring")}
    assert want["uring"]["max_rate_at_slo"] > want["epoll"]["max_rate_at_slo"] > 0
    md = (d / "summary.md").read_text()
    for b, k in want.items():
        lo, hi = k["bracket"]
        assert lo == k["max_rate_at_slo"] and hi > lo
        assert re.search(rf"\| {b} \| p99 ≤ 1 ms \| {lo / 1e3:.3g}k \[{lo / 1e3:.3g}k, "
                         rf"{hi / 1e3:.3g}k\] \| 8 \|", md), md
    want = {b: k["max_rate_at_slo"] for b, k in want.items()}
    html = (d / "report.html").read_text()
    assert f"{want['uring'] / 1e3:.3g}k" in table(html, "table-knee")
    body = figure(html, "plot-knee")
    assert "<svg" in body and body.count("stroke: #d62728") >= 2   # uring p50 and p99
    assert "SLO" in html and "horizontal line is the SLO" in body


def test_user_entries_beside_backends_and_target_has_no_cpu(tmp_path):
    d = synthetic.make_run(tmp_path / "user", backends=("epoll", "mine", "far"),
                           speeds={"mine": 0.8, "far": 1.0},
                           kinds={"mine": "server", "far": "target"}, connections=(16,),
                           modes=("closed",), repetitions=3, seed=13)
    assert echobench("report", d).returncode == 0
    html = (d / "report.html").read_text()
    head = table(html, "table-winners-closed")
    assert "<th>mine [server]</th>" in head and "<th>far [target]</th>" in head
    assert "far is a target" in html and "no server-CPU figure" in html
    assert "n/a (target)" in table(html, "table-cells")
    assert "Not shown: far" in figure(html, "plot-cpu")
    assert "mine (server: my-server --port {port}" in html
    assert "far (target: 127.0.0.1:9)" in html
    md = (d / "summary.md").read_text()
    assert "far (× epoll)" in md and "far is a target" in md


def test_incomplete_run_and_until_ci_are_said_at_the_top(tmp_path):
    d = synthetic.make_run(tmp_path / "inc", backends=("epoll",), connections=(16,),
                           modes=("closed",), repetitions=3, noise=0.2, seed=14,
                           incomplete="SIGTERM after 2 of 6 cells",
                           until_ci=1.0)
    assert echobench("report", d).returncode == 0
    html = (d / "report.html").read_text()
    body = html[html.index("<body>"):]
    assert body.index('id="incomplete"') < body.index("<h1>")
    assert "incomplete (SIGTERM after 2 of 6 cells)" in body
    assert "--until-ci 1 % was not reached for 1 cell(s) within 3 repetitions" in html
    md = (d / "summary.md").read_text()
    assert md.splitlines()[2].startswith("**This run is incomplete (SIGTERM")


def test_trends_from_the_history_with_the_change_marked(tmp_path):
    """Twelve past runs, the last six 20 % slower, then this run: `report --history` shows the
    trend of each cell's deciding metric with the change point it finds (named in the summary),
    and without a history there is no trends section."""
    import math
    past = tmp_path / "past"
    for i in range(12):
        synthetic.make_run(past / f"r{i:02d}", backends=("epoll",), connections=(16,),
                           modes=("closed",), repetitions=3, noise=0.01, seed=100 + i,
                           factor=(0.8 if i >= 6 else 1.0) * math.exp(0.005 * (i % 3)),
                           utc_start=f"2025-01-{i + 1:02d}T00:00:00+00:00")
    db = tmp_path / "h.sqlite"
    assert echobench("history", "--db", db, "import", past).returncode == 0
    run = synthetic.make_run(tmp_path / "now", backends=("epoll",), connections=(16,),
                             modes=("closed",), repetitions=3, noise=0.01, seed=200,
                             factor=0.8)
    assert echobench("report", run).returncode == 0
    assert 'id="trends"' not in (run / "report.html").read_text()
    r = echobench("report", run, "--history", db)
    assert r.returncode == 0, r.stderr
    html = (run / "report.html").read_text()
    assert 'id="trends"' in html and html.count("<svg") > 4
    md = (run / "summary.md").read_text()
    assert "### Trends" in md and "regression of -20" in md, md[-800:]

"""echobench report on synthetic results directories: every plot and table is in the HTML,
the HTML needs nothing from the network, every figure carries its interval, a winner is named
only when the data say so (A/A: ties), invalid cells are marked and in no winner, the knee
shows, user entries stand beside backends."""
import pathlib
import re
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "fixtures"))
from echobench_testlib import echobench, synthetic  # noqa: E402

from echobench_lib import report, stats  # noqa: E402

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
                           repetitions=5, noise=0.01, seed=42, conform=CONFORM)
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
    # Synthetic speeds: epoll 1, poll 0.9, uring 1.15 (1 % noise).
    (poll, plo, phi), (uring, ulo, uhi) = triples
    assert poll == pytest.approx(0.9, abs=0.05) and plo <= poll <= phi
    assert uring == pytest.approx(1.15, abs=0.05) and ulo <= uring <= uhi < 1.25
    assert 'class="better">1.1' in row and 'class="worse">0.9' in row


def test_every_figure_is_a_median_with_an_interval(run_dir):
    md = (run_dir / "summary.md").read_text()
    line = md_row(md, "| c=16 s=64 closed |")
    figs = re.findall(r"([0-9.]+k?) \[([0-9.]+k?), ([0-9.]+k?)\] †", line)
    assert len(figs) == 3, line              # 5 repetitions: the range, marked †
    assert "order statistics" in md and "bootstrap" in md and "MB/s = 10⁶ B/s" in md
    html = (run_dir / "report.html").read_text()
    legend = re.search(r'<p class="note" id="legend">(.*?)</p>', html, re.S).group(1)
    assert "order statistics" in legend and "Mann-Whitney" in legend and "SI" in legend


def test_units_in_headers_not_in_cells(run_dir):
    html = (run_dir / "report.html").read_text()
    t = table(html, "table-winners-closed")
    head = re.search(r"<thead>(.*?)</thead>", t, re.S).group(1)
    assert "epoll (msgs/s)" in head
    body = re.search(r"<tbody>(.*?)</tbody>", t, re.S).group(1)
    assert "/s" not in body and "us<" not in body
    assert "uring (MB/s)" in table(html, "table-winners-stream")
    openh = table(html, "table-winners-open")
    assert "offered (msgs/s)" in openh and "uring (µs)" in openh


def test_summary_names_winner_with_margin_and_its_interval(run_dir):
    md = (run_dir / "summary.md").read_text()
    assert "| cell | epoll (msgs/s) | poll (msgs/s; × epoll) | uring (msgs/s; × epoll) " \
        "| winner | margin (×) | p |" in md
    line = md_row(md, "| c=16 s=64 closed |")
    m = re.search(r"\| \*\*uring\*\* \| ([0-9.]+)× \[([0-9.]+), ([0-9.]+)\] \| ([0-9.]+) \|$",
                  line)
    assert m, line
    margin, lo, hi, p = map(float, m.groups())
    assert margin == pytest.approx(1.15, abs=0.04) and lo <= margin <= hi and p <= 0.025
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
    assert "‡" in md and stats.TIE in md and "**select**" not in md


def test_report_from_run_json_alone(tmp_path):
    d = synthetic.make_run(tmp_path / "r", connections=(1, 16), repetitions=1)
    (d / "cells.csv").unlink()
    assert echobench("report", d).returncode == 0
    assert "<svg" in figure((d / "report.html").read_text(), "plot-throughput")


# ---- the winner rule on synthetic matrices ------------------------------------------------

def test_a_a_same_server_twice_is_a_tie_in_at_least_95_percent_of_cells(tmp_path):
    d = synthetic.make_run(tmp_path / "aa", backends=("a", "b"), speeds={"a": 1.0, "b": 1.0},
                           connections=(1, 4, 16, 64, 256), sizes=(64, 512, 4096),
                           modes=("closed", "open50", "open75", "stream"), repetitions=5,
                           noise=0.10, seed=9)
    rd = report.RunData(d)
    decisions = [rd.decide(*cell) for cell in rd.cells()]
    assert len(decisions) == 60
    ties = sum(1 for x in decisions if x["winner"] is None)
    assert ties / len(decisions) >= 0.95, [x for x in decisions if x["winner"]]
    assert all(x["testable"] for x in decisions)     # ties by the data, not by too few reps


def test_twenty_percent_faster_with_low_noise_is_named_the_winner(tmp_path):
    d = synthetic.make_run(tmp_path / "fast", backends=("a", "b"),
                           speeds={"a": 1.0, "b": 1.2}, connections=(1, 16, 64),
                           modes=("closed", "open50", "stream"), repetitions=5, noise=0.02,
                           seed=10)
    rd = report.RunData(d)
    decisions = [rd.decide(*cell) for cell in rd.cells()]
    assert [x["winner"] for x in decisions] == ["b"] * len(decisions)
    closed = [x for cell, x in zip(rd.cells(), decisions) if cell[2] == "closed"]
    assert all(x["margin"] == pytest.approx(1.2, abs=0.05) for x in closed)


def test_invalid_cell_is_marked_with_reasons_and_in_no_winner(tmp_path):
    d = synthetic.make_run(tmp_path / "inv", backends=("epoll", "uring"), connections=(16,),
                           modes=("closed",), repetitions=5, noise=0.01, seed=11,
                           invalid={("uring", 16, "closed")})
    assert echobench("report", d).returncode == 0
    rd = report.RunData(d)
    dec = rd.decide(64, 16, "closed", "split")
    assert dec["invalid"] == ["uring"] and dec["winner"] is None   # uring was faster
    html = (d / "report.html").read_text()
    inv = table(html, "table-invalid")
    assert "uring" in inv and "achieved 61 % of the target" in inv and "5 of 5" in inv
    assert 'class="invalid"' in table(html, "table-winners-closed")
    md = (d / "summary.md").read_text()
    line = md_row(md, "| c=16 s=64 closed |")
    assert "✗" in line and "**uring**" not in line
    assert "uring c=16 s=64 closed: 5 of 5 repetition(s): rate: achieved 61 %" in md


def test_sweep_shows_max_rate_at_slo_and_the_hockey_stick(tmp_path):
    d = synthetic.make_run(tmp_path / "sw", backends=("epoll", "uring"), connections=(16,),
                           modes=("closed",), repetitions=3, sweep=True, seed=12)
    assert echobench("report", d).returncode == 0
    want = {b: synthetic.sweep_steps(synthetic.SPEED[b])["max_rate_at_slo"]
            for b in ("epoll", "uring")}
    assert want["uring"] > want["epoll"] > 0
    md = (d / "summary.md").read_text()
    for b, v in want.items():
        assert re.search(rf"\| {b} \| p99 ≤ 1 ms \| {v / 1e3:.3g}k ‡ \| 8 \|", md), md
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
    assert "mine [server] (msgs/s)" in head and "far [target] (msgs/s)" in head
    assert "far is a target" in html and "no server-CPU figure" in html
    assert "n/a (target)" in table(html, "table-cells")
    assert "Not shown: far" in figure(html, "plot-cpu")
    assert "mine (server: my-server --port {port}" in html
    assert "far (target: 127.0.0.1:9)" in html
    md = (d / "summary.md").read_text()
    assert "far [target] (msgs/s; × epoll)" in md and "far is a target" in md


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

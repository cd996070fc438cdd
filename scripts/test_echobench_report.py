"""echobench report on synthetic results directories: every plot and table is in the HTML,
the HTML needs nothing from the network, summary.md names the winners with their ratios."""
import pathlib
import re
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "fixtures"))
from echobench_testlib import echobench, synthetic  # noqa: E402

CONFORM = {
    "epoll": {"verdict": "pass", "passed": 40, "failed": 0, "skipped": 2, "failed_ids": [],
              "exit": 0, "seconds": 11.5, "note": "", "suite": "must-only"},
    "poll": {"verdict": "fail", "passed": 39, "failed": 1, "skipped": 2,
             "failed_ids": ["limits.emfile-spin"], "exit": 1, "seconds": 14.0, "note": "",
             "suite": "must-only"},
}
FIGURES = ("plot-throughput", "plot-latency", "plot-p99-rate", "plot-cpu")
TABLES = ("table-winners", "table-ratios", "table-conform", "table-problems", "table-cells",
          "table-machine")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = synthetic.make_run(tmp_path_factory.mktemp("run") / "r", backends=("epoll", "poll",
                                                                           "uring"),
                           connections=(1, 16, 64), modes=("closed", "open25", "open75",
                                                           "stream"),
                           repetitions=2, noise=0.01, seed=42, conform=CONFORM)
    r = echobench("report", d)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"report: {d.resolve() / 'report.html'}"
    return d


def figure(html, fid):
    m = re.search(rf'<figure id="{fid}">(.*?)</figure>', html, re.S)
    assert m, f"figure {fid} missing"
    return m.group(1)


def test_every_plot_is_an_inline_svg_with_lines(run_dir):
    html = (run_dir / "report.html").read_text()
    for fid in FIGURES:
        body = figure(html, fid)
        assert "<svg" in body and "</svg>" in body, fid
        assert "No cells of this kind" not in body, fid
        # matplotlib draws each data line as a path with a stroke in the backend's colour.
        assert body.count("<path") > 10, fid
    assert figure(html, "plot-throughput").count("stroke: #d62728") > 0   # uring's colour


def test_every_table_is_there(run_dir):
    html = (run_dir / "report.html").read_text()
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
    table = re.search(r'<table id="table-conform">(.*?)</table>', html, re.S).group(1)
    rows = {m.group(1): m.group(2) for m in
            re.finditer(r"<tr><td>(\w+)</td>(.*?)</tr>", table, re.S)}
    assert ">pass<" in rows["epoll"]
    assert ">fail<" in rows["poll"] and "limits.emfile-spin" in rows["poll"]
    assert ">not run<" in rows["uring"]


def test_ratios_vs_epoll(run_dir):
    html = (run_dir / "report.html").read_text()
    table = re.search(r'<table id="table-ratios">(.*?)</table>', html, re.S).group(1)
    assert "uring / epoll" in table
    row = re.search(r"<tr><td>c=64 s=64 closed</td><td>msgs_per_sec</td>(.*?)</tr>", table,
                    re.S).group(1)
    ratios = [float(x) for x in re.findall(r">([0-9.]+)x<", row)]
    # Synthetic speeds: epoll 1, poll 0.9, uring 1.15 (1 % noise).
    assert ratios[0] == 1.0
    assert ratios[1] == pytest.approx(0.9, abs=0.05)
    assert ratios[2] == pytest.approx(1.15, abs=0.05)
    assert 'class="better">1.1' in row and 'class="worse">0.9' in row


def test_summary_names_winner_and_ratios(run_dir):
    md = (run_dir / "summary.md").read_text()
    assert "| cell | metric | epoll | poll | uring | winner |" in md
    line = next(ln for ln in md.splitlines() if ln.startswith("| c=16 s=64 closed |"))
    assert line.endswith("| **uring** |")
    assert "(1.00x)" in line and "(0.9" in line
    # Open loop is won on p99 (lower is better).
    line = next(ln for ln in md.splitlines() if ln.startswith("| c=16 s=64 open75 |"))
    assert "p99_us" in line and line.endswith("| **uring** |")
    assert "poll: FAIL" in md and "limits.emfile-spin" in md


def test_failed_cells_and_machine_are_shown(run_dir):
    html = (run_dir / "report.html").read_text()
    assert "synthetic failure for the report" in html
    machine = re.search(r'<table id="table-machine">(.*?)</table>', html, re.S).group(1)
    assert "Synthetic CPU" in machine and "server CPUs 0, client CPUs 1" in machine


def test_report_without_epoll_uses_first_backend(tmp_path):
    d = synthetic.make_run(tmp_path / "r", backends=("poll", "select"), connections=(1,),
                           modes=("closed",), repetitions=1)
    assert echobench("report", d).returncode == 0
    html = (d / "report.html").read_text()
    assert "select / poll" in html
    # No open loop and no streaming here: those figures say so instead of drawing nothing.
    assert "No cells of this kind" in figure(html, "plot-p99-rate")


def test_report_from_run_json_alone(tmp_path):
    d = synthetic.make_run(tmp_path / "r", connections=(1, 16), repetitions=1)
    (d / "cells.csv").unlink()
    assert echobench("report", d).returncode == 0
    assert "<svg" in figure((d / "report.html").read_text(), "plot-throughput")

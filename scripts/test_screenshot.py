"""The report opened in headless Chromium renders with its plots visible.

Debian's chromium, no sandbox (tests may run as root), a fresh profile, every background
network feature off; the page itself loads nothing from the network. The plots are the only
saturated colour on the page (tables use pale tints), so counting saturated pixels with and
without the SVGs shows whether the plots were drawn.
"""
import os
import re
import shutil
import signal
import subprocess

import pytest

import synthetic
from echobench_testlib import echobench

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")

WIDTH, HEIGHT = 1280, 5200


def screenshot(html_path, png_path, profile):
    argv = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--hide-scrollbars", f"--user-data-dir={profile}", f"--screenshot={png_path}",
            f"--window-size={WIDTH},{HEIGHT}", f"file://{html_path}"]
    # Its own session, so that a hung browser goes down with all its helper processes.
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, err = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail("chromium did not finish its screenshot within 90 s")
    assert png_path.is_file(), f"chromium wrote no screenshot (exit {proc.returncode}): " \
                               f"{err[-500:]}"


def pixel_counts(png_path):
    """(non-white pixels, saturated pixels) of a PNG."""
    import matplotlib.image
    img = matplotlib.image.imread(str(png_path))[..., :3]
    assert img.shape[0] == HEIGHT and img.shape[1] == WIDTH
    non_white = int((img.min(axis=2) < 0.9).sum())
    saturated = int(((img.max(axis=2) - img.min(axis=2)) > 0.3).sum())
    return non_white, saturated


def test_report_renders_with_visible_plots(tmp_path):
    d = synthetic.make_run(tmp_path / "r", backends=("epoll", "poll", "uring"),
                           connections=(1, 16, 64), modes=("closed", "open25", "open75",
                                                           "stream"), repetitions=1)
    assert echobench("report", d).returncode == 0
    html = (d / "report.html").read_text()
    no_plots = tmp_path / "no-plots.html"
    no_plots.write_text(re.sub(r"<svg.*?</svg>", "", html, flags=re.S))

    shot = tmp_path / "report.png"
    screenshot(d / "report.html", shot, tmp_path / "profile1")
    bare = tmp_path / "no-plots.png"
    screenshot(no_plots, bare, tmp_path / "profile2")

    non_white, saturated = pixel_counts(shot)
    _, saturated_bare = pixel_counts(bare)
    print(f"report screenshot: {non_white} non-white px, {saturated} saturated px "
          f"(without plots: {saturated_bare})")
    assert non_white > 0.02 * WIDTH * HEIGHT, "page is (almost) blank"
    # Plot lines and markers in the backends' colours: thousands of pixels, none without them.
    assert saturated > 5000
    assert saturated > 5 * saturated_bare
    if os.environ.get("ECHOBENCH_KEEP_SCREENSHOT"):
        shutil.copy(shot, os.environ["ECHOBENCH_KEEP_SCREENSHOT"])

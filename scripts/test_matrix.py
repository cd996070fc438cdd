"""The plan of a run: modes, the matrix and its cells (one Cell type, one name, one label),
placements, and the numbers every option takes."""
import os

import pytest

from echobench_lib import matrix, placement, util
from echobench_lib.matrix import Cell


@pytest.mark.parametrize("text, modes", [
    ("closed", ["closed"]),
    ("open", ["open25", "open50", "open75"]),
    ("closed,open:90,stream,open90", ["closed", "open90", "stream"]),
    ("OPEN50%", ["open50"]),
])
def test_parse_modes(text, modes):
    assert matrix.parse_modes(text) == modes


@pytest.mark.parametrize("text", ["open0", "open101", "half", ",", ""])
def test_bad_modes(text):
    with pytest.raises(util.UsageError):
        matrix.parse_modes(text)


def test_matrix_order_puts_closed_before_open_and_names_round_trip():
    cells = matrix.build_matrix(["epoll", "poll"], [1, 16], [64],
                                ["stream", "open75", "closed", "open25"])
    assert len(cells) == 16
    assert [c.mode for c in cells[:4]] == ["closed", "open25", "open75", "stream"]
    c = cells[5]
    name = c.name("p99_us")
    assert name == "echo/poll/c:1/s:64/open25/p99_us"
    assert matrix.parse_name(name) == (c, "p99_us")
    assert c.key == "poll_c1_s64_open25" and c.open_fraction == 0.25
    with pytest.raises(util.UsageError):
        matrix.build_matrix([], [1], [64], ["closed"])


def test_cell_knows_its_mode():
    """Every module asks the Cell what its mode means; nothing slices the mode's name."""
    kinds = {m: Cell("e", 1, 64, m) for m in ("closed", "open50", "rate2000", "stream", "churn")}
    assert {m: c.kind for m, c in kinds.items()} == {
        "closed": "closed", "open50": "open", "rate2000": "rate", "stream": "stream",
        "churn": "churn"}
    assert [c.is_open for c in kinds.values()] == [False, True, True, False, False]
    assert kinds["open50"].open_fraction == 0.5 and kinds["rate2000"].fixed_rate == 2000
    assert kinds["closed"].open_fraction is None and kinds["open50"].fixed_rate is None
    assert matrix.mode_kind("open") is None and matrix.mode_kind("rate") is None
    assert matrix.mode_kind("sweep") is None and matrix.mode_kind("closed5") is None
    order = sorted(["stream", "rate5", "open75", "closed", "open25", "churn"],
                   key=matrix.mode_order)
    assert order == ["closed", "open25", "open75", "rate5", "stream", "churn"]


def test_one_label_everywhere():
    """The spot (a cell without its entry) labels every table and message; the placement is
    part of it whenever it is not the default, in a run of one placement too."""
    c = Cell("epoll:et+p2", 64, 512, "open50", "shared", offered_rate=1.0, entry_kind="server")
    assert c.where() == "c=64 s=512 open50 shared"
    assert c.label() == "epoll:et+p2 c=64 s=512 open50 shared"
    assert Cell("epoll", 1, 64, "closed").where() == "c=1 s=64 closed"
    spot = c.spot
    assert spot.entry is None and spot.where() == c.where() and spot.offered_rate is None
    assert spot.of("poll") == Cell("poll", 64, 512, "open50", "shared")
    assert c.peak_cell == Cell("epoll:et+p2", 64, 512, "closed", "shared")
    assert c.peak_cell.entry_kind == "server"
    # identity ignores what the run offered and the entry's kind
    assert c == Cell("epoll:et+p2", 64, 512, "open50", "shared")
    assert c.key == "epoll-et-p2_c64_s512_open50_shared"
    assert matrix.parse_name(c.name("p99_us"))[0] == c


def test_number_parsing():
    assert util.parse_duration("500ms") == 0.5 and util.parse_duration("2") == 2.0
    assert util.parse_duration("1.5m") == 90.0
    assert util.duration_arg(0.25) == "250ms"
    assert util.parse_size("4k") == 4096 and util.parse_count("1k") == 1000
    assert util.parse_cpus("0,2-3", "x") == [0, 2, 3]
    for bad in ("fast", "-1s", "0"):
        with pytest.raises(util.UsageError):
            util.parse_duration(bad)
    with pytest.raises(util.UsageError):
        util.parse_cpus("3-1", "x")


def test_numbers_take_fractional_suffixes_when_whole():
    assert util.parse_count("1.5k") == 1500 and util.parse_count("2M") == 2000000
    assert util.parse_size("1.5k") == 1536 and util.parse_size("16M") == 16 << 20
    for bad in ("1.5", "1.0001k", "k", "-1"):
        with pytest.raises(util.UsageError):
            util.parse_count(bad)


def test_default_placement_separates_server_and_client():
    allowed = sorted(os.sched_getaffinity(0))
    s, c, note = placement.cpus_for("split")
    if len(allowed) >= 2:
        assert s == [allowed[0]] and c == [allowed[1]] and "separate" in note
    else:
        assert s == c == allowed and "share" in note
    s, c, _ = placement.cpus_for("split", [allowed[0]], None)
    assert s == [allowed[0]] and (c == [x for x in allowed if x != allowed[0]] or c == allowed)
    assert placement.cpus_for("free")[:2] == (None, None)
    s, c, _ = placement.cpus_for("shared")
    assert s == c == allowed[:1]
    with pytest.raises(util.UsageError):
        placement.cpus_for("split", [10 ** 6], None)
    assert placement.client_threads([0, 1]) == 2 and placement.client_threads(None, 3) == 3


def test_cells_beside_the_cross_product():
    extra = matrix.parse_cells("churn:c=16:s=64, stream:c=4:s=64k,churn:c=16:s=64")
    assert extra == [("churn", 16, 64), ("stream", 4, 65536)]
    cells = matrix.build_matrix(["epoll", "poll"], [1], [64], ["closed"], extra=extra)
    assert [(c.entry, c.mode, c.connections, c.size) for c in cells] == [
        ("epoll", "closed", 1, 64), ("poll", "closed", 1, 64),
        ("epoll", "churn", 16, 64), ("poll", "churn", 16, 64),
        ("epoll", "stream", 4, 65536), ("poll", "stream", 4, 65536)]
    # a cell already in the cross product is not measured twice
    assert len(matrix.build_matrix(["e"], [1], [64], ["closed"],
                                   extra=[("closed", 1, 64)])) == 1
    for bad in ("churn", "churn:c=1", "churn:s=64:c=1", "sweep:c=1:s=64", ""):
        with pytest.raises(util.UsageError):
            matrix.parse_cells(bad)

"""The change-point detector (echobench_lib/changepoint.py) on synthetic series whose change
points are known: found where they are, none where there is none, the first commit after the
change named, sizes with intervals that hold them, the same answer for the same seed. The
error rates (share found, false changes per 100 points, location error) are figures that
scripts/changepoint_check.py prints, not asserted here."""
import math

import numpy as np
import pytest

from echobench_lib import changepoint as cp


def series(seed, n=30, noise=0.05, at=None, factor=1.0, level=50000.0):
    """n log-normal values with sd `noise`, multiplied by `factor` from index `at` on."""
    rng = np.random.default_rng(seed)
    v = level * np.exp(rng.normal(0.0, noise, n))
    if at is not None:
        v[at:] *= factor
    return [float(x) for x in v]


@pytest.mark.parametrize("seed", range(8))
def test_a_20_percent_shift_in_5_percent_noise_is_found_where_it_is(seed):
    at = 8 + (seed * 5) % 15                       # 8 .. 22: spread over the series
    v = series(seed, at=at, factor=0.8)
    changes = cp.detect(v, seed=seed)
    near = [c for c in changes if abs(c.index - at) <= 2]
    assert near, f"no change within 2 of {at}: {changes}"
    c = near[0]
    assert c.size == pytest.approx(-0.2, abs=0.06)
    assert c.size_lo <= c.size <= c.size_hi
    assert c.size_hi < 0                           # the interval excludes "no change"
    assert c.p_value <= cp.DEFAULT_ALPHA
    assert c.direction(higher_is_better=True) == "regression"
    assert c.direction(higher_is_better=False) == "improvement"
    assert c.direction(higher_is_better=None) == "shift"


@pytest.mark.parametrize("seed", range(20))
def test_a_series_without_a_change_gives_none_at_the_default_significance(seed):
    # the rate of false changes is a figure of scripts/changepoint_check.py (docs/RESULTS.md)
    assert cp.detect(series(5000 + seed)) == []


def test_the_commit_named_is_the_first_after_the_change():
    commits = [f"c{i:02d}" for i in range(24)]
    v = series(3, n=24, noise=0.01, at=13, factor=1.3)
    (c,) = cp.detect(v, commits)
    assert c.index == 13 and c.label == "c13"
    assert c.before_n == 13 and c.after_n == 11
    assert c.before_median == pytest.approx(float(np.median(v[:13])))
    assert c.after_median == pytest.approx(float(np.median(v[13:])))
    assert c.size == pytest.approx(c.after_median / c.before_median - 1)


def test_two_changes_are_both_found_and_sized_against_their_own_segments():
    v = series(4, n=36, noise=0.02, at=12, factor=0.8)
    v = v[:24] + [x * 1.4 for x in v[24:]]
    changes = cp.detect(v, list(range(36)))
    assert [c.index for c in changes] == [12, 24]
    assert changes[0].size == pytest.approx(-0.2, abs=0.03)
    assert changes[1].size == pytest.approx(0.4, abs=0.04)
    assert changes[0].after_n == 12 and changes[1].before_n == 12


def test_the_same_seed_gives_the_same_answer_and_the_p_value_is_attainable():
    v = series(5, noise=0.05, at=15, factor=0.9)
    a = cp.detect(v, seed=7)
    b = cp.detect(v, seed=7)
    assert [x.as_dict() for x in a] == [x.as_dict() for x in b]
    for c in a:
        # a permutation p is (1 + k) / (1 + R) for a whole k
        k = c.p_value * (cp.DEFAULT_PERMUTATIONS + 1) - 1
        assert k == pytest.approx(round(k)) and k >= 0


def test_a_shift_below_the_minimum_effect_is_not_reported():
    v = series(6, noise=0.002, at=15, factor=1.03)
    found = cp.detect(v, min_effect=0.02)
    assert [c.index for c in found] == [15]
    assert cp.detect(v, min_effect=0.05) == []


def test_a_change_is_reported_only_when_its_p_is_within_alpha():
    # 6 % in 3 % noise near the end of a short series: p = 0.01 with the default seed. The
    # same seed gives the same shuffles, so at alpha 0.005 the same p is too large.
    v = series(12, n=14, noise=0.03, at=10, factor=0.94)
    (loose,) = cp.detect(v, alpha=0.05, min_effect=0.0)
    assert abs(loose.index - 10) <= 1 and 0.005 < loose.p_value <= 0.05
    assert cp.detect(v, alpha=0.005, min_effect=0.0) == []
    assert cp.detect(v, alpha=loose.p_value, min_effect=0.0)[0].index == loose.index


def test_a_series_too_short_for_two_segments_has_no_change():
    assert cp.detect([1.0, 1.0, 1.0, 2.0, 2.0]) == []
    assert cp.detect([]) == []


@pytest.mark.parametrize("bad", [[1.0, 0.0, 2.0], [1.0, -3.0], [1.0, math.nan], [math.inf]])
def test_values_that_are_not_positive_and_finite_are_refused(bad):
    with pytest.raises(ValueError):
        cp.detect(bad)


def test_labels_must_match_the_values():
    with pytest.raises(ValueError):
        cp.detect([1.0, 2.0, 3.0], ["a"])


def test_pooled_spread_recovers_the_noise_and_ignores_a_past_shift():
    v = series(8, n=200, noise=0.05, at=100, factor=0.7)
    changes = cp.detect(v)
    assert [abs(c.index - 100) <= 2 for c in changes] == [True]
    sd, df = cp.pooled_log_sd(v, changes)
    assert sd == pytest.approx(0.05, rel=0.2)
    assert df == 198
    sd_all, _ = cp.pooled_log_sd(v, [])
    assert sd_all > 2 * sd                         # the shift, had it not been cut out
    assert cp.pooled_log_sd([1.0, 2.0], []) == (None, 1)


def test_segments_cover_the_series():
    v = series(9, n=30, noise=0.01, at=10, factor=2.0)
    assert cp.segments(30, cp.detect(v)) == [(0, 10), (10, 30)]

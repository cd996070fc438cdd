"""The statistics: confidence intervals of a median and of a ratio, the exact tests, the
paired design's Hodges-Lehmann intervals and signed-rank test, and the verdict of a cell. Each
claim about coverage or false winners is checked by simulation here."""
import math
import random

import pytest

from echobench_lib import stats, verdict


def test_median_ci_order_statistics_and_small_n():
    # n = 10 at 95 %: [x_(2), x_(9)], exact coverage 1 - 2 * 11/1024
    assert stats.median_ci(range(1, 11)) == (5.5, 2.0, 9.0)
    k, cov = stats.median_ci_coverage(10)
    assert k == 2 and cov == pytest.approx(1 - 2 * 11 / 1024)
    # n < 6 cannot reach 95 %: (min, max), flagged as not reachable
    assert [stats.ci_level_reachable(n) for n in range(1, 8)] == [False] * 5 + [True] * 2
    assert stats.median_ci([3, 1, 2, 5, 4]) == (3.0, 1.0, 5.0)
    assert stats.median_ci_coverage(5)[1] == pytest.approx(1 - 2 / 32)
    assert stats.median_ci([7]) == (7.0, 7.0, 7.0)
    with pytest.raises(ValueError):
        stats.median_ci([])


def test_median_ci_covers_the_true_median_at_least_95_percent():
    import random
    rng = random.Random(7)
    hits = 0
    for _ in range(2000):
        xs = [rng.expovariate(1.0) for _ in range(9)]
        _, lo, hi = stats.median_ci(xs)
        hits += lo <= 0.6931471805599453 <= hi
    cov = stats.median_ci_coverage(9)[1]     # 0.961
    assert cov >= 0.95 and abs(hits / 2000 - cov) < 0.02


def test_mann_whitney_exact_matches_scipy_and_known_values():
    from scipy.stats import mannwhitneyu
    import random
    assert stats.mann_whitney_one_sided([4, 5, 6], [1, 2, 3], "greater") == pytest.approx(1 / 20)
    assert stats.mann_whitney_one_sided([3, 4], [1, 2], "greater") == pytest.approx(1 / 6)
    assert stats.mann_whitney_one_sided([1, 2, 3], [4, 5, 6], "greater") == 1.0
    rng = random.Random(3)
    for _ in range(100):
        a = [rng.random() for _ in range(rng.randint(1, 7))]
        b = [rng.random() for _ in range(rng.randint(1, 7))]
        for alt in ("greater", "less"):
            want = mannwhitneyu(a, b, alternative=alt, method="exact").pvalue
            assert stats.mann_whitney_one_sided(a, b, alt) == pytest.approx(want)
    # ties: exact enumeration; a full tie is no evidence
    assert stats.mann_whitney_one_sided([1, 1, 1], [1, 1, 1], "greater") == 1.0
    assert stats.mann_whitney_one_sided([2, 2, 2], [1, 1, 1], "greater") == pytest.approx(1 / 20)


def test_min_reps_to_test():
    assert stats.min_reps_to_test(0.05) == 3          # 2 vs 2: 1/6; 3 vs 3: 1/20
    assert not stats.can_test(2, 2) and stats.can_test(3, 3)
    assert stats.min_reps_to_test(0.025) == 4         # 1/70
    assert stats.min_reps_to_test(0.05, other=1) == 19
    assert stats.min_reps_to_test(0.05, other=0) is None


def test_ratio_ci_is_reproducible_and_brackets_the_ratio():
    r = stats.ratio_ci([1.2, 1.25, 1.18, 1.22, 1.21], [1.0, 1.02, 0.98, 1.01, 0.99])
    assert r == stats.ratio_ci([1.2, 1.25, 1.18, 1.22, 1.21], [1.0, 1.02, 0.98, 1.01, 0.99])
    ratio, lo, hi = r
    assert ratio == pytest.approx(1.21) and 1.1 < lo <= ratio <= hi < 1.3
    assert stats.ratio_ci([2.0], [1.0]) == (2.0, 2.0, 2.0)
    with pytest.raises(ValueError):
        stats.ratio_ci([1.0], [0.0])


def test_decide_winner_names_a_clear_winner_with_margin():
    g = {"fast": [120, 121, 119, 122, 120], "slow": [100, 101, 99, 100, 102],
         "slower": [80, 81, 79, 80, 82]}
    d = stats.decide_winner(g, higher_is_better=True)
    assert d["winner"] == d["label"] == "fast" and d["runner_up"] == "slow"
    assert d["margin"] == pytest.approx(1.2) and d["margin_lo"] > 1.1 and d["p_value"] < 0.025
    # lower is better (latency): margin still reads "times better"
    d = stats.decide_winner({"a": [10, 11, 10, 10.5], "b": [20, 21, 19, 20]}, False)
    assert d["winner"] == "a" and d["margin"] == pytest.approx(2.0, rel=0.05)


def test_decide_winner_ties_when_small_effect_or_too_few_reps():
    d = stats.decide_winner({"a": [102, 103, 102.5, 102.2], "b": [100, 100.5, 100.2, 100.1]},
                            True)
    assert d["winner"] is None and d["label"] == stats.TIE and "minimum effect" in d["reason"]
    d = stats.decide_winner({"a": [200, 201, 202], "b": [100, 101, 102]}, True)
    assert d["winner"] is None and not d["testable"] and "needs 4" in d["reason"]
    d = stats.decide_winner({"a": [200, 201]}, True)
    assert d["winner"] is None and d["label"] == "-"


def test_decide_winner_a_a_false_winners_at_most_5_percent():
    """Identical entries: the leader is chosen from the data, so the rule must not name one
    more often than alpha (a one-sided test at alpha would, about twice as often)."""
    import random
    rng = random.Random(11)
    wins = sum(1 for _ in range(400) if stats.decide_winner(
        {"a": [rng.lognormvariate(0, 0.1) for _ in range(5)],
         "b": [rng.lognormvariate(0, 0.1) for _ in range(5)]}, True)["winner"])
    assert wins / 400 <= 0.05
    loose = sum(1 for _ in range(400) if stats.decide_winner(
        {"a": [rng.lognormvariate(0, 0.1) for _ in range(5)],
         "b": [rng.lognormvariate(0, 0.1) for _ in range(5)]}, True,
        direction_chosen=False)["winner"])
    assert loose > wins


# ---- the paired design --------------------------------------------------------------------

def test_balanced_order_puts_each_entry_first_as_often_as_last():
    rounds = [stats.balanced_order(["a", "b"], r) for r in range(4)]
    assert rounds == [["a", "b"], ["b", "a"], ["b", "a"], ["a", "b"]]
    three = [stats.balanced_order("abc", r) for r in range(6)]
    assert all(sorted(r) == ["a", "b", "c"] for r in three)
    assert {r[0] for r in three} == {"a", "b", "c"} and {r[-1] for r in three} == {"a", "b", "c"}
    assert stats.balanced_order([], 3) == []


def test_signed_rank_is_exact_and_matches_scipy():
    from scipy.stats import wilcoxon
    assert stats.signed_rank_p([1, 2, 3, 4, 5, 6]) == pytest.approx(2 / 64)
    assert stats.signed_rank_p([0, 0]) == 1.0
    rng = random.Random(4)
    for _ in range(50):
        d = [rng.gauss(0.2, 1) for _ in range(rng.randint(3, 14))]
        assert stats.signed_rank_p(d) == pytest.approx(wilcoxon(d).pvalue)
    # ties by midranks: no tie in |d| gets the same p as scipy's exact test would
    assert stats.signed_rank_p([1, 1, -1, 2, 3]) <= 1.0


def test_paired_interval_level_is_the_one_it_has():
    """Below 6 pairs no 95 % interval exists: the interval is (min, max) of the Walsh averages
    and its real coverage is reported (93.75 % at 5)."""
    assert [round(stats.walsh_ci_rank(n)[1], 4) for n in (2, 5, 6, 8)] == \
        [0.5, 0.9375, 0.9688, 0.9609]
    assert all(stats.walsh_ci_rank(n)[1] >= 0.95 for n in range(6, 40))
    r = stats.paired_ratio([1.1] * 5, [1.0] * 5)
    assert r[0] == pytest.approx(1.1) and r[3] == pytest.approx(0.9375)
    assert stats.paired_ratio([0, -1], [1, 1]) is None


def test_paired_interval_covers_at_its_level_under_drift():
    """Each pair shares a drift factor (a shared VM that speeds up and slows down by 20 %):
    the pairwise interval still covers the true ratio at >= 95 % (simulated, 2000 trials of 8
    pairs); an interval of two independent medians would not have seen the drift cancel."""
    rng = random.Random(9)
    hits = 0
    for _ in range(2000):
        drift = [math.exp(rng.gauss(0, 0.2)) for _ in range(8)]
        a = [1.05 * d * math.exp(rng.gauss(0, 0.02)) for d in drift]
        b = [d * math.exp(rng.gauss(0, 0.02)) for d in drift]
        est, lo, hi, cover, _ = stats.paired_ratio(a, b)
        hits += lo <= 1.05 <= hi
    assert hits / 2000 >= 0.94


def test_pairs_needed_grows_as_the_interval_narrows_too_slowly():
    assert stats.pairs_needed(8, 0.9, 1.1, 1.0) > 8
    assert stats.pairs_needed(8, 0.99, 1.01, 1.0) is not None
    assert stats.pairs_needed(1, 0.9, 1.1, 1.0) is None


def _paired_values(entries, n, rng, noise=0.02, drift=0.1):
    out = {e: {} for e in entries}
    for r in range(n):
        d = math.exp(rng.gauss(0, drift))
        for e, speed in entries.items():
            out[e][r] = speed * d * math.exp(rng.gauss(0, noise))
    return out


def test_verdict_names_a_winner_equivalence_or_inconclusive():
    rng = random.Random(2)
    dec = verdict.decide(_paired_values({"a": 1.0, "b": 1.10}, 10, rng), True, True, "a")
    assert dec["verdict"] == "winner" and dec["winner"] == "b" and dec["margin"] > 1.05
    dec = verdict.decide(_paired_values({"a": 1.0, "b": 1.0}, 30, rng, noise=0.005), True,
                         True, "a")
    assert dec["verdict"] == "equivalent" and dec["winner"] is None
    dec = verdict.decide(_paired_values({"a": 1.0, "b": 1.0}, 6, rng, noise=0.2), True, True,
                         "a")
    assert dec["verdict"] == "inconclusive" and dec["pairs_needed"] > 6
    # lower is better (latency): the smaller one wins, the margin still reads "times better"
    dec = verdict.decide(_paired_values({"a": 100.0, "b": 50.0}, 8, rng), False, True, "a")
    assert dec["winner"] == "b" and dec["margin"] == pytest.approx(2.0, rel=0.05)
    # too few pairs can never name a winner
    dec = verdict.decide(_paired_values({"a": 1.0, "b": 2.0}, 5, rng), True, True, "a")
    assert dec["winner"] is None and not dec["testable"]
    assert verdict.decide({"a": {0: 1.0}}, True, True)["verdict"] == "-"


def test_paired_verdict_a_a_names_few_winners():
    """Two identical entries under drift: a winner in at most 5 % of 400 simulated cells (the
    signed-rank test at 0.05, two-sided)."""
    rng = random.Random(17)
    wins = sum(1 for _ in range(400) if verdict.decide(
        _paired_values({"a": 1.0, "b": 1.0}, 10, rng, drift=0.3), True, True, "a")["winner"])
    assert wins / 400 <= 0.05


def test_paired_verdict_finds_a_5_percent_difference_under_drift():
    """A 5 % difference with 2 % noise per measurement and 30 % drift between rounds: found in
    at least 90 % of 200 simulated cells of 10 pairs (unpaired medians would drown in the
    drift)."""
    rng = random.Random(23)
    found = sum(1 for _ in range(200) if verdict.decide(
        _paired_values({"a": 1.0, "b": 1.05}, 10, rng, drift=0.3), True, True, "a")["winner"]
        == "b")
    assert found / 200 >= 0.9


def test_verdict_leaders_are_the_best_ones_tied_the_rest_worse():
    """Five entries, two of them equal and 20 % ahead: 'leaders' names both, the other three
    are worse; one of the three made as fast as the leaders turns the verdict to inconclusive
    only while its interval is not within ±5 % (here it is, so it joins the leaders)."""
    rng = random.Random(5)
    speeds = {"a": 1.0, "b": 1.0, "c": 1.0, "d": 1.2, "e": 1.2}
    dec = verdict.decide(_paired_values(speeds, 12, rng, noise=0.005), True, True, "a")
    assert dec["verdict"] == "leaders", dec
    assert {dec["leader"]} | set(dec["tied"]) == {"d", "e"}
    assert set(dec["worse"]) == {"a", "b", "c"} and not dec["undecided"]
    assert dec["label"].endswith("(within ±5%)") and "d" in dec["label"] and "e" in dec["label"]
    # a 3 % gap with 10 % noise in 8 pairs: neither worse nor tied, so inconclusive
    dec = verdict.decide(_paired_values({"a": 1.0, "b": 1.03}, 8, rng, noise=0.1), True, True,
                         "a")
    assert dec["verdict"] == "inconclusive" and dec["undecided"] == ["a"]


def test_holm_needs_eight_pairs_for_five_entries():
    """Holm's first step over four others needs 2/2^n <= 0.0125: 7 pairs can name nothing
    however clear the difference, 8 can."""
    rng = random.Random(9)
    speeds = {"a": 1.0, "b": 1.0, "c": 1.0, "d": 1.0, "e": 2.0}
    dec = verdict.decide(_paired_values(speeds, 7, rng), True, True, "a")
    assert not dec["testable"] and dec["winner"] is None and dec["pairs_needed"] >= 8
    dec = verdict.decide(_paired_values(speeds, 8, rng), True, True, "a")
    assert dec["testable"] and dec["winner"] == "e"


def test_paired_verdict_a_a_five_entries_few_winners():
    """Five identical entries, 8 pairs, 30 % drift: the leader named winner (or leaders named
    with some entry 'worse') in at most 5 % of 400 simulated cells: the leader is the best of
    five, picked after looking, and Holm over the four others keeps the family's error."""
    rng = random.Random(31)
    bad = 0
    for _ in range(400):
        dec = verdict.decide(_paired_values(dict.fromkeys("abcde", 1.0), 8, rng, drift=0.3),
                             True, True, "a")
        bad += bool(dec["worse"])
    assert bad / 400 <= 0.05

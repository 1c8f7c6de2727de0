"""The two-sample tests behind the findings (tutorial_rl.experiments.inference), against
hand-computed null distributions and textbook examples."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

from tutorial_rl.experiments.inference import (
    cliffs_delta,
    hodges_lehmann,
    holm,
    iqm_difference,
    mann_whitney,
    min_p_value,
    tost_shift,
)


def test_complete_separation_reaches_the_smallest_attainable_p() -> None:
    u, p, method = mann_whitney([5, 6, 7, 8], [1, 2, 3, 4])
    assert u == 16 and method == "exact"
    assert p == pytest.approx(2 / math.comb(8, 4)) == pytest.approx(min_p_value(4, 4))
    _, p_one, _ = mann_whitney([5, 6, 7, 8], [1, 2, 3, 4], "greater")
    assert p_one == pytest.approx(1 / 70) == pytest.approx(min_p_value(4, 4, "greater"))
    assert min_p_value(7, 7) == pytest.approx(2 / 3432)


def test_ties_use_an_exact_permutation_of_u() -> None:
    x, y = [1.0, 2.0, 3.0, 3.0], [3.0, 6.0, 7.0, 8.0]
    u, p, method = mann_whitney(x, y)
    assert "permutation" in method and u == 1.0
    # brute force: U over every split of the pooled sample, ties counted one half
    pooled = np.array(x + y)
    from itertools import combinations

    def stat(idx: tuple[int, ...]) -> float:
        a = pooled[list(idx)]
        b = np.delete(pooled, list(idx))
        return float(np.sum(a[:, None] > b) + 0.5 * np.sum(a[:, None] == b))

    null = np.array([stat(c) for c in combinations(range(8), 4)])
    centre = 8.0
    expected = np.mean(np.abs(null - centre) >= abs(u - centre) - 1e-12)
    assert p == pytest.approx(expected)


def test_all_scores_tied_give_p_one() -> None:
    assert mann_whitney([2.0] * 5, [2.0] * 5)[1:] == (1.0, "all scores tied")
    assert cliffs_delta([2.0] * 5, [2.0] * 5) == 0.0


def test_cliffs_delta_and_hodges_lehmann() -> None:
    assert cliffs_delta([5, 6], [1, 2, 3]) == 1.0
    assert cliffs_delta([1, 2, 3], [5, 6]) == -1.0
    assert cliffs_delta([1, 3], [2, 2]) == 0.0
    u, _, _ = mann_whitney([1, 4, 6], [2, 3, 5, 7])
    assert cliffs_delta([1, 4, 6], [2, 3, 5, 7]) == pytest.approx(2 * u / 12 - 1)
    assert hodges_lehmann([10, 11, 12], [1, 2, 3]) == 9.0


def test_tost_shows_equivalence_only_inside_the_margin() -> None:
    rng = np.random.default_rng(0)
    x = 0.5 + rng.uniform(-0.01, 0.01, 7)
    y = 0.5 + rng.uniform(-0.01, 0.01, 7)
    assert tost_shift(x, y, margin=0.1) == pytest.approx(1 / 3432)  # both tests maximal
    assert tost_shift(x + 0.3, y, margin=0.1) > 0.5  # shifted beyond the margin
    wide = 0.5 + rng.uniform(-1, 1, 7)
    assert tost_shift(wide, y, margin=0.1) > 0.05  # same centre, too noisy to show it
    with pytest.raises(ValueError, match="margin"):
        tost_shift(x, y, margin=0.0)


def test_iqm_difference_is_seeded_and_brackets_its_estimate() -> None:
    x, y = np.arange(7.0) + 10, np.arange(7.0)
    est, low, high = iqm_difference(x, y, reps=500, seed=3)
    assert est == pytest.approx(10.0) and low <= est <= high
    assert iqm_difference(x, y, reps=500, seed=3) == (est, low, high)
    assert iqm_difference(x, x, reps=100)[0] == 0.0


def test_holm_step_down() -> None:
    adjusted = holm([0.01, 0.04, 0.03, np.nan])
    # sorted 0.01, 0.03, 0.04 -> 3*0.01, max(0.03, 2*0.03), max(0.06, 1*0.04)
    assert adjusted[:3] == pytest.approx([0.03, 0.06, 0.06]) and np.isnan(adjusted[3])
    assert np.isnan(holm([np.nan])).all() and holm([]).size == 0
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    # agrees with the textbook rule: reject p_(i) while p_(i) <= level / (k - i + 1)
    p = scipy.stats.uniform.rvs(size=9, random_state=1) / 10
    level, order = 0.05, np.argsort(p)
    rejected = np.zeros(9, bool)
    for i, j in enumerate(order):
        if p[j] > level / (9 - i):
            break
        rejected[j] = True
    assert np.array_equal(holm(p) <= level, rejected)


def test_bad_samples_are_named() -> None:
    with pytest.raises(ValueError, match="x is empty"):
        mann_whitney([], [1.0])
    with pytest.raises(ValueError, match="non-finite"):
        cliffs_delta([1.0, np.nan], [1.0])


def test_scores_equal_up_to_rounding_are_ties() -> None:
    """Two algorithms equal by construction differ in the 13th digit (A2C's penalty critic and
    its SE-RL penalty): no rank statistic may read that noise as a difference."""
    from tutorial_rl.experiments.inference import cliffs_delta, mann_whitney

    scores = np.array([-80.5, -61.25, -70.0, -90.125, -55.0, -66.5, -75.75])
    noise = scores * (1 + 1e-14)  # all seven "higher" in the last bits
    assert cliffs_delta(noise, scores) == 0.0
    assert mann_whitney(noise, scores, "greater") == mann_whitney(scores, scores, "greater")
    assert mann_whitney(scores + 1e-3, scores)[1] < 1.0  # a real difference stays one


def test_non_inferiority_is_the_lower_half_of_tost() -> None:
    from tutorial_rl.experiments.inference import noninferiority_shift, tost_shift

    rng = np.random.default_rng(3)
    x, y = rng.normal(0, 1, 7), rng.normal(0.3, 1, 7)
    assert noninferiority_shift(x, y, 0.5) <= tost_shift(x, y, 0.5)
    assert noninferiority_shift(x + 10, y, 0.5) == pytest.approx(1 / 3432)  # far better: shown
    with pytest.raises(ValueError, match="margin"):
        noninferiority_shift(x, y, 0.0)


def test_equal_up_to_rounding_is_paired_and_relative() -> None:
    from tutorial_rl.experiments.inference import equal_up_to_rounding

    x = np.array([-120.0, 3.5, 0.0])
    assert equal_up_to_rounding(x, x * (1 + 1e-13))  # relative to the largest score
    assert not equal_up_to_rounding(x, x + 1e-6)
    assert not equal_up_to_rounding(x, x[::-1])  # paired: the same values in another order
    assert not equal_up_to_rounding(x, x[:2])

"""Two-sample inference on per-seed scores: the tests behind the verdicts of
:mod:`tutorial_rl.experiments.findings` (Chapter 8, chapters/08_experiments.py, "The four
findings").

A run's score is one number per training seed, and a configuration has a handful of seeds (7 in
the paper), so everything here is distribution-free and exact where it can be:

- :func:`mann_whitney`: the Mann-Whitney U (Wilcoxon rank-sum) test. Exact null distribution
  without ties (scipy); with ties, an exact permutation test of U over every split of the pooled
  scores while there are at most :data:`EXACT_PARTITIONS` splits, the tie-corrected normal
  approximation beyond that.
- :func:`cliffs_delta`: Cliff's δ = P(X > Y) − P(X < Y), the effect size that goes with U
  (δ = 2U/(n_x n_y) − 1); the common-language effect size is (1 + δ)/2.
- :func:`tost_shift`: equivalence by two one-sided Mann-Whitney tests (TOST) under the
  location-shift model Y ~ X + Δ: H0 |Δ| ≥ m against H1 |Δ| < m.
- :func:`noninferiority_shift`: the lower of those two one-sided tests alone, H0 Δ ≤ −m against
  H1 Δ > −m ("x is not worse than y by m or more").

Scores that differ only by floating-point rounding (relative :data:`ROUNDING_RTOL`) are ties in
every rank statistic here: two algorithms that are equal by construction (A2C's penalty critic
and its SE-RL penalty, chapter 7) differ in the 13th digit, and ranking that noise could make a
"significant" difference out of nothing.
- :func:`hodges_lehmann`: the shift estimate that goes with those tests (median of the pairwise
  differences).
- :func:`iqm_difference`: IQM(x) − IQM(y) with a percentile bootstrap interval, resampling each
  sample's seeds independently (the two-sample analogue of rliable's stratified bootstrap).
- :func:`holm`: Holm's step-down adjustment, which controls the family-wise error rate.
- :func:`min_p_value`: the smallest p-value a rank test can reach with n_x and n_y seeds; with
  4 against 4 seeds it is 2/70 ≈ 0.029 two-sided, so some verdicts are undecidable by design.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import scipy.stats

__all__ = ["EXACT_PARTITIONS", "ROUNDING_RTOL", "cliffs_delta", "equal_up_to_rounding",
           "hodges_lehmann", "holm", "iqm_difference", "mann_whitney", "min_p_value",
           "noninferiority_shift", "tost_shift"]

#: Largest number of splits of the pooled sample enumerated by the exact permutation test.
EXACT_PARTITIONS = 20_000
#: Scores closer than this, relative to the largest |score| of the comparison, are ties.
ROUNDING_RTOL = 1e-9

Alternative = Literal["two-sided", "greater", "less"]


def _sample(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(values, dtype=float).ravel()
    if x.size == 0:
        raise ValueError(f"{name} is empty: a test needs at least one score per sample")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} holds a non-finite score: {x.tolist()}")
    return x


def _rounding_tolerance(scores: np.ndarray) -> float:
    """The largest difference of two of ``scores`` that is rounding (:data:`ROUNDING_RTOL`)."""
    return ROUNDING_RTOL * max(1.0, float(np.abs(scores).max(initial=0.0)))


def equal_up_to_rounding(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray
                         ) -> bool:
    """Whether x and y (same length, paired) differ element by element by rounding only."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape:
        return False
    return bool((np.abs(x - y) <= _rounding_tolerance(np.concatenate([x, y]))).all())


def _tie_rounding(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x and y with scores that differ by rounding only (:data:`ROUNDING_RTOL`) made equal.

    The pooled scores are sorted and each run of neighbours closer than the tolerance takes the
    value of its first member, so a cluster never splits on a grid boundary.
    """
    pooled = np.concatenate([x, y])
    tol = _rounding_tolerance(pooled)
    order = np.argsort(pooled, kind="stable")
    ranked = pooled[order]
    starts = np.concatenate([[True], np.diff(ranked) > tol])
    merged = np.empty_like(pooled)
    merged[order] = ranked[np.flatnonzero(starts)[np.cumsum(starts) - 1]]
    return merged[:x.size], merged[x.size:]


def mann_whitney(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray,
                 alternative: Alternative = "two-sided") -> tuple[float, float, str]:
    """Mann-Whitney U test of x against y; returns (U of x, p-value, method).

    ``alternative="greater"``: x tends to be larger than y. Identical pooled values everywhere
    give p = 1 (no evidence of a difference).
    """
    x, y = _tie_rounding(_sample(x, "x"), _sample(y, "y"))
    pooled = np.concatenate([x, y])
    if np.ptp(pooled) == 0:
        return x.size * y.size / 2, 1.0, "all scores tied"
    ties = np.unique(pooled).size < pooled.size
    partitions = math.comb(x.size + y.size, x.size)
    if not ties:
        method, how = "exact", "exact"
    elif partitions <= EXACT_PARTITIONS:
        method = scipy.stats.PermutationMethod(n_resamples=partitions)
        how = "exact permutation (ties)"
    else:
        method, how = "asymptotic", "normal approximation (ties)"
    result = scipy.stats.mannwhitneyu(x, y, alternative=alternative, method=method)
    return float(result.statistic), float(min(1.0, result.pvalue)), how


def min_p_value(n_x: int, n_y: int, alternative: Alternative = "two-sided") -> float:
    """Smallest p-value a rank test can reach with samples of n_x and n_y (no ties): all of one
    sample above all of the other is one of C(n_x + n_y, n_x) equally likely orders."""
    one_sided = 1 / math.comb(n_x + n_y, n_x)
    return min(1.0, 2 * one_sided if alternative == "two-sided" else one_sided)


def cliffs_delta(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Cliff's δ = P(X > Y) − P(X < Y) over all pairs, in [−1, 1]; 0 for identical samples
    (and for samples equal up to rounding)."""
    x, y = _tie_rounding(_sample(x, "x"), _sample(y, "y"))
    return float(np.mean(np.sign(x[:, None] - y[None, :])))


def hodges_lehmann(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Hodges-Lehmann estimate of the shift of x over y: the median of all x_i − y_j."""
    x, y = _sample(x, "x"), _sample(y, "y")
    return float(np.median(x[:, None] - y[None, :]))


def tost_shift(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray,
               margin: float) -> float:
    """p-value of equivalence within ±``margin`` by two one-sided Mann-Whitney tests.

    Under the shift model x ~ y + Δ: H0⁻ Δ ≤ −m is rejected when x + m is stochastically larger
    than y, H0⁺ Δ ≥ m when x − m is stochastically smaller; equivalence is shown at level a when
    both are rejected at level a (Schuirmann 1987), so the TOST p-value is the larger of the two.
    """
    x, y = _sample(x, "x"), _sample(y, "y")
    p_low = noninferiority_shift(x, y, margin)
    _, p_high, _ = mann_whitney(x - margin, y, "less")
    return max(p_low, p_high)


def noninferiority_shift(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray,
                         margin: float) -> float:
    """p-value of non-inferiority of x to y with margin ``margin``: one Mann-Whitney test.

    Under the shift model x ~ y + Δ, H0 Δ ≤ −m is rejected when x + m is stochastically larger
    than y: x is then shown not to be worse than y by m or more ("matches or beats").
    """
    if not (math.isfinite(margin) and margin > 0):
        raise ValueError(f"the equivalence margin must be a positive number; got {margin!r}")
    x, y = _sample(x, "x"), _sample(y, "y")
    return mann_whitney(x + margin, y, "greater")[1]


def iqm_difference(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray,
                   reps: int = 2_000, confidence: float = 0.95, seed: int = 0
                   ) -> tuple[float, float, float]:
    """IQM(x) − IQM(y) with a percentile bootstrap interval; returns (estimate, low, high).

    Each sample's seeds are resampled separately (strata = the two configurations). The IQM is
    ``scipy.stats.trim_mean(·, 0.25)``, the same as rliable's ``aggregate_iqm``.
    """
    x, y = _sample(x, "x"), _sample(y, "y")
    rng = np.random.default_rng(seed)
    bx = x[rng.integers(0, x.size, (reps, x.size))]
    by = y[rng.integers(0, y.size, (reps, y.size))]
    diffs = scipy.stats.trim_mean(bx, 0.25, axis=1) - scipy.stats.trim_mean(by, 0.25, axis=1)
    tail = (1 - confidence) / 2 * 100
    estimate = float(scipy.stats.trim_mean(x, 0.25) - scipy.stats.trim_mean(y, 0.25))
    return (estimate, float(np.percentile(diffs, tail)),
            float(np.percentile(diffs, 100 - tail)))


def holm(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error rate); NaN entries (tests not
    made) stay NaN and do not count towards the family size.

    Sorted p_(1) ≤ … ≤ p_(k): adjusted p_(i) = max_{j ≤ i} min(1, (k − j + 1) p_(j)).
    """
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    made = np.flatnonzero(~np.isnan(p))
    if made.size == 0:
        return out
    order = made[np.argsort(p[made], kind="stable")]
    k = order.size
    scaled = np.minimum(1.0, (k - np.arange(k)) * p[order])
    out[order] = np.maximum.accumulate(scaled)
    return out

"""Significance across the configurations of a task × algorithm (Chapter 8,
chapters/08_experiments.py, "Significance across all variants"): a Kruskal-Wallis H test, then
Dunn's pairwise tests with Bonferroni-adjusted p-values (scikit-posthocs), on the best α per
mitigated variant (the paper's choice) or on every α. Both are rank tests, so they need no
normality, which seven RL scores never give. The paper's four findings have their own stated
tests (:mod:`~tutorial_rl.experiments.findings`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Literal

import numpy as np
import pandas as pd
import scipy.stats

from tutorial_rl.experiments.inference import equal_up_to_rounding
from tutorial_rl.experiments.stats import CONFIG, _groups, iqm

__all__ = ["significance"]


def _best_alpha(runs: pd.DataFrame) -> pd.DataFrame:
    """Keep, per task × algorithm × variant, the α with the highest IQM (the paper's figure 4
    choice; it favours the mitigated variants, which get to pick among several α)."""
    keep = []
    for _, group in _groups(runs, ["env", "algo", "variant"]):
        if group["alpha"].isna().all():  # a vanilla variant: nothing to choose
            keep.append(group)
            continue
        by_alpha = {a: iqm(g["score"]) for a, g in group.groupby("alpha")}
        best = max(sorted(by_alpha), key=by_alpha.__getitem__)  # ties: the smallest α
        keep.append(group[group["alpha"] == best])
    return pd.concat(keep) if keep else runs


def significance(runs: pd.DataFrame, alphas: Literal["best", "all"] = "best",
                 level: float = 0.05) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Kruskal-Wallis across configurations, then Dunn with Bonferroni, per task × algorithm.

    Configurations whose scores are the same seed by seed (up to rounding,
    :data:`~tutorial_rl.experiments.inference.ROUNDING_RTOL`) are one sample, tested once: A2C's
    SE-RL and SP-RL vanilla, and its penalty critic and SE-RL penalty, are identical by
    construction (chapters 5 and 7), and counting the same seven scores twice would treat them as
    independent observations. Their Dunn pair gets p = 1 and their pairs with the others the
    p-value of the sample they share; ``note`` names them.

    :param alphas: ``best``: one α per mitigated variant (highest IQM), as the paper reports;
        ``all``: every (variant, α) is a group.
    :param level: significance level of the ``significant`` columns.
    :returns: (kruskal: env, algo, groups, n, H, p, significant, note;
        dunn: env, algo, a, b, p_adj, significant), where identical data everywhere gives
        H = 0 and p = 1 (no evidence of a difference; scipy would return NaN). ``groups`` and
        ``n`` count the distinct samples tested.
    """
    import scikit_posthocs as sp

    data = _best_alpha(runs) if alphas == "best" else runs
    kruskal_rows, dunn_rows = [], []
    for (env, algo), cell in _groups(data, ["env", "algo"]):
        samples = {c[0]: g for c, g in _groups(cell, [CONFIG])}
        names = list(samples)
        same = _same_as(samples)  # name -> the earlier configuration with the same scores
        distinct = [c for c in names if c not in same]
        tested = cell[cell[CONFIG].isin(distinct)]
        base = {"env": env, "algo": algo}
        notes = [f"{c} = {same[c]} seed by seed (tested once)" for c in names if c in same]
        if len(samples) < 2:
            kruskal_rows.append({**base, "groups": len(samples), "n": len(cell), "H": np.nan,
                                 "p": np.nan, "significant": False, "note": "one group"})
            continue
        constant = np.ptp(cell["score"].to_numpy(float)) == 0
        if constant or len(distinct) < 2:
            h, p = 0.0, 1.0
            notes.insert(0, "all scores identical" if constant else "")
        else:
            h, p = scipy.stats.kruskal(*(samples[c]["score"].to_numpy(float) for c in distinct))
        kruskal_rows.append({**base, "groups": len(distinct), "n": len(tested), "H": float(h),
                             "p": float(p), "significant": bool(p < level),
                             "note": "; ".join(n for n in notes if n)})
        matrix = None
        if len(distinct) >= 2:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                matrix = sp.posthoc_dunn(tested, val_col="score", group_col=CONFIG,
                                         p_adjust="bonferroni")
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                ra, rb = same.get(a, a), same.get(b, b)
                p_ab = 1.0 if ra == rb or matrix is None else float(matrix.loc[ra, rb])
                p_ab = 1.0 if math.isnan(p_ab) else p_ab  # NaN only when all ranks tie
                dunn_rows.append({**base, "a": a, "b": b, "p_adj": p_ab,
                                  "significant": bool(p_ab < level)})
    return (pd.DataFrame(kruskal_rows, columns=["env", "algo", "groups", "n", "H", "p",
                                                "significant", "note"]),
            pd.DataFrame(dunn_rows, columns=["env", "algo", "a", "b", "p_adj", "significant"]))


def _same_as(samples: Mapping[str, pd.DataFrame]) -> dict[str, str]:
    """For each configuration whose scores equal an earlier one's on the same seeds (up to
    rounding), that earlier configuration; tables without a ``seed`` column have none."""
    series = {name: g.set_index("seed")["score"].sort_index().astype(float)
              for name, g in samples.items() if "seed" in g.columns}
    same: dict[str, str] = {}
    names = list(series)
    for i, name in enumerate(names):
        x = series[name]
        for earlier in names[:i]:
            y = series[earlier]
            if earlier not in same and not x.index.has_duplicates and x.index.equals(y.index) \
                    and equal_up_to_rounding(x.to_numpy(), y.to_numpy()):
                same[name] = earlier
                break
    return same

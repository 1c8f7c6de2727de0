"""The checks of the paper's four findings (tutorial_rl.experiments.findings) on tables whose
verdicts are known by construction."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tutorial_rl.experiments.findings import (
    HOLDS,
    INCONCLUSIVE,
    NOT_HOLD,
    best_per_variant,
    check_findings,
    finding_1,
    finding_2,
    finding_3,
    finding_4,
)
from tutorial_rl.experiments.stats import final_performance


def final_row(env: str, algo: str, variant: str, iqm: float, half: float = 1.0,
              alpha: float = np.nan) -> dict:
    config = variant if np.isnan(alpha) else f"{variant} α={alpha:g}"
    return {"env": env, "algo": algo, "variant": variant, "alpha": alpha, "config": config,
            "n": 7, "iqm": iqm, "ci_low": iqm - half, "ci_high": iqm + half, "mean": iqm,
            "std": half}


def runs_table(scores: dict[tuple[str, str, str], list[float]]) -> pd.DataFrame:
    rows = []
    for (env, algo, variant), values in scores.items():
        for seed, score in enumerate(values):
            rows.append({"key": f"{algo}-{variant}-{env}-s{seed}", "env": env, "algo": algo,
                         "variant": variant, "alpha": np.nan, "config": variant, "seed": seed,
                         "score": score})
    return pd.DataFrame(rows)


def test_best_per_variant_keeps_the_highest_iqm_alpha() -> None:
    final = pd.DataFrame([final_row("seeker", "td3", "se-penalty", -5, alpha=0.1),
                          final_row("seeker", "td3", "se-penalty", -3, alpha=1.0),
                          final_row("seeker", "td3", "se-penalty", -3, alpha=2.0),
                          final_row("seeker", "td3", "se-vanilla", -4)])
    best = best_per_variant(final)
    assert len(best) == 2
    assert best.set_index("variant").loc["se-penalty", "alpha"] == 1.0  # ties: smallest α


def test_finding_1_compares_seed_by_seed() -> None:
    same = [-3.0, -4.0, -5.0]
    runs = runs_table({("pendulum", "a2c", "se-vanilla"): same,
                       ("pendulum", "a2c", "sp-vanilla"): same,
                       ("seeker", "a2c", "se-vanilla"): same,
                       ("seeker", "a2c", "sp-vanilla"): [-3.0, -4.0, -5.1]})
    final = final_performance(runs, reps=200)
    table = finding_1(runs, final).set_index("env")
    assert table.loc["pendulum", "verdict"] == HOLDS
    assert table.loc["seeker", "verdict"] == NOT_HOLD
    assert "1.0e-01" in table.loc["seeker", "evidence"]


@pytest.mark.parametrize(("se", "sp", "verdict"), [(-2.0, -6.0, HOLDS), (-2.0, -2.5, INCONCLUSIVE),
                                                   (-6.0, -2.0, NOT_HOLD)])
def test_finding_2_needs_disjoint_intervals(se: float, sp: float, verdict: str) -> None:
    final = pd.DataFrame([final_row("quadrotor", "td3", "se-vanilla", se),
                          final_row("quadrotor", "td3", "sp-vanilla", sp)])
    assert finding_2(final)["verdict"].tolist() == [verdict]


@pytest.mark.parametrize(("se", "psl", "penc", "verdict"), [
    (-2.0, -2.5, -6.0, HOLDS),    # intervals overlap: "matches"
    (-6.0, -9.0, -2.0, HOLDS),    # the penalty critic beats it
    (-2.0, -6.0, -7.0, NOT_HOLD),  # SE + penalty beats both
])
def test_finding_3_takes_the_better_sp_mitigation(se: float, psl: float, penc: float,
                                                  verdict: str) -> None:
    final = pd.DataFrame([final_row("seeker", "a2c", "se-penalty", se, alpha=0.1),
                          final_row("seeker", "a2c", "sp-per-sample-loss", psl, alpha=1.0),
                          final_row("seeker", "a2c", "sp-penalty-critic", penc, alpha=1.0)])
    assert finding_3(final)["verdict"].tolist() == [verdict]


def test_finding_4_names_the_task_specific_winner_and_ignores_unsafe() -> None:
    final = pd.DataFrame([
        final_row("pendulum", "td3", "sp-penalty-critic", -2.0, alpha=1.0),
        final_row("pendulum", "td3", "se-vanilla", -5.0),
        final_row("pendulum", "td3", "unsafe", 10.0),  # not a safeguarded variant
        final_row("seeker", "td3", "sp-per-sample-loss", -3.0, alpha=1.0),
        final_row("seeker", "td3", "se-vanilla", -2.5),  # higher, intervals overlap
        final_row("seeker", "a2c", "sp-per-sample-loss", -9.0, alpha=1.0),
        final_row("seeker", "a2c", "se-penalty", -2.0, alpha=0.1),  # clearly higher
    ])
    verdicts = finding_4(final).set_index(["env", "algo"])["verdict"]
    assert verdicts[("pendulum", "td3")] == HOLDS
    assert verdicts[("seeker", "td3")] == INCONCLUSIVE
    assert verdicts[("seeker", "a2c")] == NOT_HOLD


def test_check_findings_on_an_empty_sweep_is_empty() -> None:
    empty = pd.DataFrame(columns=["key", "env", "algo", "variant", "alpha", "config", "seed",
                                  "score"])
    final = pd.DataFrame(columns=["env", "algo", "variant", "alpha", "config", "n", "iqm",
                                  "ci_low", "ci_high", "mean", "std"])
    assert check_findings(empty, final).empty

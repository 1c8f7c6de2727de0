"""The paper's four findings, checked against a sweep's tables (Chapter 8,
chapters/08_experiments.py, "The four findings, one by one"; paper section 8).

1. A2C: SE-RL and SP-RL without mitigation perform identically (Lemma 1).
2. TD3 without mitigation: SE-RL beats SP-RL on the quadrotor and the seeker.
3. With mitigations, SP-RL (per-sample loss or penalty critic) matches or beats SE-RL with a
   reward penalty.
4. The penalty critic is the best variant on the balancing tasks (pendulum, quadrotor); the
   per-sample loss is the best on the seeker.

Each check returns one row per task × algorithm it concerns, with the numbers it used and a
verdict: ``"holds"``, ``"does not hold"`` or ``"inconclusive"``. "Beats" means the IQM is higher
*and* the two 95 % bootstrap intervals do not overlap; "matches" means the intervals overlap.
Mitigated variants are compared at their best α (the paper's choice for its figure 4), which is
the comparison the paper makes; it favours variants with several α to choose from, so a verdict
on a finding that claims a mitigated variant wins is optimistic for that variant.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tutorial_rl.experiments.stats import CONFIG

__all__ = ["HOLDS", "INCONCLUSIVE", "NOT_HOLD", "best_per_variant", "check_findings",
           "finding_1", "finding_2", "finding_3", "finding_4"]

HOLDS, NOT_HOLD, INCONCLUSIVE = "holds", "does not hold", "inconclusive"
BALANCING_TASKS = ("pendulum", "quadrotor")
COLUMNS = ["finding", "env", "algo", "claim", "evidence", "verdict"]


def best_per_variant(final: pd.DataFrame) -> pd.DataFrame:
    """One row per task × algorithm × variant of :func:`~.stats.final_performance`: the α with
    the highest IQM (ties: the smallest α); vanilla variants have a single row already."""
    order = final.sort_values(["env", "algo", "variant", "iqm", "alpha"],
                              ascending=[True, True, True, False, True])
    return order.groupby(["env", "algo", "variant"], sort=True).head(1).reset_index(drop=True)


def _row(best: pd.DataFrame, env: str, algo: str, variant: str) -> pd.Series | None:
    hit = best[(best["env"] == env) & (best["algo"] == algo) & (best["variant"] == variant)]
    return None if hit.empty else hit.iloc[0]


def _fmt(row: pd.Series) -> str:
    return f"{row[CONFIG]} {row['iqm']:.2f} [{row['ci_low']:.2f}, {row['ci_high']:.2f}]"


def _overlap(a: pd.Series, b: pd.Series) -> bool:
    return bool(a["ci_low"] <= b["ci_high"] and b["ci_low"] <= a["ci_high"])


def _beats(a: pd.Series, b: pd.Series) -> bool:
    """IQM higher and the 95 % intervals disjoint."""
    return bool(a["iqm"] > b["iqm"] and not _overlap(a, b))


def finding_1(runs: pd.DataFrame, final: pd.DataFrame, atol: float = 1e-9) -> pd.DataFrame:
    """A2C SE vanilla vs SP vanilla: identical per-seed scores (Lemma 1 with shared seeds).

    Lemma 1 says the two learn the same policy in distribution; with the package's shared random
    streams the same seed gives the same numbers, so the check compares seed by seed.
    """
    rows = []
    best = best_per_variant(final)
    a2c = runs[runs["algo"] == "a2c"]
    for env in sorted(a2c["env"].unique()):
        cell = a2c[a2c["env"] == env]
        se = cell[cell["variant"] == "se-vanilla"].set_index("seed")["score"]
        sp = cell[cell["variant"] == "sp-vanilla"].set_index("seed")["score"]
        seeds = se.index.intersection(sp.index)
        if len(seeds) == 0:
            continue
        diff = float(np.max(np.abs(se[seeds].to_numpy() - sp[seeds].to_numpy())))
        r_se, r_sp = _row(best, env, "a2c", "se-vanilla"), _row(best, env, "a2c", "sp-vanilla")
        evidence = f"{len(seeds)} seeds, max |score SE − score SP| = {diff:.1e}"
        if r_se is not None and r_sp is not None:
            evidence += f"; IQM {r_se['iqm']:.2f} vs {r_sp['iqm']:.2f}"
        rows.append({"finding": 1, "env": env, "algo": "a2c",
                     "claim": "A2C: SE-RL and SP-RL (vanilla) identical",
                     "evidence": evidence, "verdict": HOLDS if diff <= atol else NOT_HOLD})
    return pd.DataFrame(rows, columns=COLUMNS)


def finding_2(final: pd.DataFrame, envs: tuple[str, ...] = ("quadrotor", "seeker")
              ) -> pd.DataFrame:
    """TD3 vanilla: SE-RL beats SP-RL (higher IQM, disjoint intervals) on ``envs``."""
    best = best_per_variant(final)
    rows = []
    for env in envs:
        se, sp = _row(best, env, "td3", "se-vanilla"), _row(best, env, "td3", "sp-vanilla")
        if se is None or sp is None:
            continue
        verdict = HOLDS if _beats(se, sp) else NOT_HOLD if _beats(sp, se) else INCONCLUSIVE
        rows.append({"finding": 2, "env": env, "algo": "td3",
                     "claim": "TD3 vanilla: SE-RL beats SP-RL",
                     "evidence": f"{_fmt(se)} vs {_fmt(sp)}", "verdict": verdict})
    return pd.DataFrame(rows, columns=COLUMNS)


def finding_3(final: pd.DataFrame) -> pd.DataFrame:
    """Best mitigated SP-RL (per-sample loss or penalty critic) matches or beats SE-RL with a
    reward penalty: it holds unless SE + penalty beats the best SP variant outright."""
    best = best_per_variant(final)
    rows = []
    for (env, algo), cell in best.groupby(["env", "algo"], sort=True):
        se = _row(cell, env, algo, "se-penalty")
        sps = [r for v in ("sp-per-sample-loss", "sp-penalty-critic")
               if (r := _row(cell, env, algo, v)) is not None]
        if se is None or not sps:
            continue
        sp = max(sps, key=lambda r: r["iqm"])
        verdict = NOT_HOLD if _beats(se, sp) else HOLDS
        how = "beats" if _beats(sp, se) else "matches" if verdict == HOLDS else "loses to"
        rows.append({"finding": 3, "env": env, "algo": algo,
                     "claim": "improved SP-RL matches or beats improved SE-RL",
                     "evidence": f"{_fmt(sp)} {how} {_fmt(se)}", "verdict": verdict})
    return pd.DataFrame(rows, columns=COLUMNS)


def finding_4(final: pd.DataFrame) -> pd.DataFrame:
    """The paper's winner per task (penalty critic on balancing tasks, per-sample loss on the
    seeker) has the highest IQM among the safeguarded variants; "inconclusive" when it is not
    the highest but its interval overlaps the winner's."""
    best = best_per_variant(final)
    best = best[best["variant"] != "unsafe"]
    rows = []
    for (env, algo), cell in best.groupby(["env", "algo"], sort=True):
        claimed = "sp-penalty-critic" if env in BALANCING_TASKS else "sp-per-sample-loss"
        mine = _row(cell, env, algo, claimed)
        if mine is None:
            continue
        top = cell.sort_values("iqm", ascending=False).iloc[0]
        if top["variant"] == claimed:
            verdict = HOLDS
        else:
            verdict = INCONCLUSIVE if _overlap(mine, top) else NOT_HOLD
        evidence = _fmt(mine) + ("" if verdict == HOLDS else f"; best is {_fmt(top)}")
        rows.append({"finding": 4, "env": env, "algo": algo,
                     "claim": f"{claimed} is the best variant", "evidence": evidence,
                     "verdict": verdict})
    return pd.DataFrame(rows, columns=COLUMNS)


def check_findings(runs: pd.DataFrame, final: pd.DataFrame) -> pd.DataFrame:
    """All four findings, one row per finding × task × algorithm it concerns."""
    parts = [finding_1(runs, final), finding_2(final), finding_3(final), finding_4(final)]
    return pd.concat([p for p in parts if not p.empty], ignore_index=True) if any(
        not p.empty for p in parts) else pd.DataFrame(columns=COLUMNS)

"""The paper's four findings, decided by stated tests on a sweep's per-seed scores (Chapter 8,
chapters/08_experiments.py, "The four findings, one by one"; paper section 8).

1. A2C: SE-RL and SP-RL without mitigation perform identically.
2. TD3 without mitigation: SE-RL beats SP-RL on the quadrotor and the seeker.
3. With mitigations, one of the improved SP-RL variants (per-sample loss, penalty critic) matches
   or beats SE-RL with a reward penalty.
4. The penalty critic is the best safeguarded variant on the balancing tasks (pendulum,
   quadrotor); the per-sample loss is the best on the seeker.

The data of every test are the runs' scores (mean evaluation return, one per training seed); the
tests are in :mod:`~tutorial_rl.experiments.inference`. The protocol, fixed before looking at any
result:

- **Finding 1** is true *by construction*: with a state-value critic and the log-likelihood of
  the unsafe sample, the SE-RL and SP-RL updates of A2C coincide (Lemma 1, chapter 5), and the
  package's runs share their random streams, so each seed must give the same score to the bit.
  The check is the largest per-seed difference; a nonzero one is a bug, not a statistical result.
- **Finding 2**: two-sided Mann-Whitney U test of SE-RL against SP-RL (vanilla TD3), effect size
  Cliff's δ (> 0: SE-RL higher) and the IQM difference with a bootstrap 95 % interval. Verdict
  "SE better" / "SP better" when the Holm-adjusted p < ``level`` (in the direction of δ),
  otherwise "no significant difference".
- **Finding 3**: "improved SP-RL" is the better of the per-sample loss and the penalty critic
  for TD3, and the per-sample loss alone for A2C, whose penalty critic *is* A2C with the SE-RL
  penalty, bit for bit (chapter 7), so that comparing it with SE-RL would be level by
  construction. On normalised scores (0 = zero action, 1 = reference controller; see
  :mod:`~tutorial_rl.experiments.references`), an equivalence test (TOST with two one-sided
  Mann-Whitney tests) with margin ±``margin`` = ±0.1, and the two-sided Mann-Whitney test.
  "matches" only when equivalence is shown; otherwise "SP better" / "SE better" when the
  difference is significant; otherwise "undecided". The margin is a tenth of the gap between doing
  nothing and a competent controller: a difference below it would not change which method a
  practitioner picks. It is fixed in task units, not fitted to the seed noise, and it is the
  same for every task because normalised scores are comparable across tasks. Without reference
  scores there is no margin, and "matches" cannot be reached. Strictly, "matches or beats" is a
  non-inferiority claim; a review after the protocol was fixed pointed this out, so the rows
  also give the one-sided non-inferiority p (``p_noninf``: H0 SP ≤ SE − margin, Holm over the
  cells as its own family) as a secondary analysis. The verdict stays the protocol's.
- **Finding 4**: the claimed variant must beat *every* other safeguarded variant (an
  intersection-union test: each pairwise two-sided Mann-Whitney p < ``level`` with the claimed
  variant higher; its p-value is the largest pairwise p, the one against the closest
  competitor). "does not hold" when some competitor is significantly better (Bonferroni over the
  competitors of the cell); otherwise "undecided". The unsafe baseline is no competitor.

**Best-of-α selection.** The paper reports each mitigated variant at its best α, chosen on the
same seeds it is then compared on: the winner's curse makes that comparison optimistic for the
variants with several α (and, in finding 3, for the better of the two SP-RL mitigations). With
``selection="split"`` (the default) every choice of a cell (α of each variant, which SP-RL
mitigation) is made by the highest IQM on the *selection seeds*, the first half of the sorted
seeds (0-2 of 0-6), and the test uses only the *test seeds* (3-6), for every variant of the
comparison. The test seeds played no part in the choice, so the test is valid, at the price of
fewer seeds: with 4 against 4 the smallest two-sided p a rank test can reach is 2/70 ≈ 0.029.
A cell where nothing is chosen (vanilla variants, or a sweep that ran one α per variant chosen
elsewhere) uses all seeds. ``selection="none"`` reproduces the paper's choice on all seeds; the
rows say so, and their p-values are then optimistic. ``selection=[0, ..., 6]`` chooses on the
given seeds and tests on every other seed: the design with the most power runs the grid on seeds
0-6, then every safeguarded variant at its chosen α (:func:`~.selection.chosen_configs`) on
fresh seeds 7-13 (:mod:`~tutorial_rl.experiments.confirmation`: ``tutorial-rl sweep --confirm``
and ``tutorial-rl report --confirmation``).

**Multiple comparisons.** Holm's step-down adjustment within each finding, over the cells
(task × algorithm) it concerns, so that all the verdicts of one finding together keep a
family-wise error rate of ``level``. The equivalence tests of finding 3 and the "does not hold"
tests of finding 4 are separate families. Cells with fewer than :data:`MIN_SEEDS` seeds per
sample are "undecided" with that reason and are not tested.

**Unfinished grids.** Given the grid's runs (``check_findings(..., grid=...)``), a finding is
tested in a cell only once every run of the grid that it compares there has finished: findings
1 and 2 compare the two vanilla variants, so they need those 2 × 7 runs; findings 3 and 4 choose
among every variant and α, so they need the whole cell. A half-finished variant would otherwise
be compared on the seeds that happen to be done, or a mitigation's best α chosen among the α that
happen to be done.

Seeds are treated as independent samples, as in the paper and rliable, although variants run with
the same seed share their initialisation and evaluation episodes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from tutorial_rl.experiments.config import RunSpec
from tutorial_rl.experiments.inference import (
    cliffs_delta,
    hodges_lehmann,
    holm,
    iqm_difference,
    mann_whitney,
    min_p_value,
    noninferiority_shift,
    tost_shift,
)
from tutorial_rl.experiments.references import Reference
from tutorial_rl.experiments.selection import (
    CellSelection,
    cell_selection,
    choose_configs,
    seed_span,
)
from tutorial_rl.experiments.stats import CONFIG

__all__ = ["CLAIMS", "COLUMNS", "DIFFER", "HOLDS", "IDENTICAL", "MATCHES", "MIN_SEEDS", "NOT_HOLD",
           "NO_DIFFERENCE", "SE_BETTER", "SP_BETTER", "UNDECIDED", "check_findings",
           "compared_variants", "expected_cells", "finding_1", "finding_2", "finding_3",
           "finding_4", "finished_for", "grid_table", "summarise", "to_markdown"]

#: Verdicts (column ``verdict``).
IDENTICAL, DIFFER = "identical (by construction)", "differ"
SE_BETTER, SP_BETTER, NO_DIFFERENCE = "SE better", "SP better", "no significant difference"
MATCHES, UNDECIDED = "matches", "undecided"
#: Whether the verdict supports the paper's claim (column ``status``).
HOLDS, NOT_HOLD = "holds", "does not hold"

#: Fewest seeds per sample for a test (3 against 3: smallest two-sided p 0.1, one-sided 0.05).
MIN_SEEDS = 3
BALANCING_TASKS = ("pendulum", "quadrotor")
SP_MITIGATIONS = ("sp-per-sample-loss", "sp-penalty-critic")
#: Finding 3's "improved SP-RL" per algorithm: A2C's penalty critic equals its SE-RL penalty.
IMPROVED_SP = {"td3": SP_MITIGATIONS, "a2c": ("sp-per-sample-loss",)}
SAFEGUARDED = ("se-vanilla", "se-penalty", "sp-vanilla", *SP_MITIGATIONS)
#: The variants findings 1 and 2 compare within a cell (findings 3 and 4 compare all of them).
VANILLA = ("se-vanilla", "sp-vanilla")
#: The paper's four claims, in one line each (the rows' ``claim`` is per cell).
CLAIMS = {1: "A2C: SE-RL and SP-RL (vanilla) identical",
          2: "TD3 vanilla: SE-RL beats SP-RL on the quadrotor and the seeker",
          3: "improved SP-RL matches or beats SE-RL with a reward penalty",
          4: "penalty critic best on the balancing tasks, per-sample loss on the seeker"}
#: Columns of a findings table. claim: the claim of that cell; verdict, status: above; test:
#: what was tested on which configurations, and how they were chosen; seeds: the seeds tested
#: (and those α was chosen on); n: sample sizes ("4 vs 4"); diff [diff_low, diff_high]: IQM of
#: the side the claim favours (SE in 2, SP in 3, the claimed variant in 4) minus the other, with
#: a 95 % bootstrap interval, in return units (finding 1: the largest per-seed |difference|);
#: diff_norm: diff in normalised units (NaN without references); cliffs_delta: > 0 favours the
#: claim's side; p, p_holm: the two-sided Mann-Whitney p, raw and Holm-adjusted (finding 4: the
#: intersection-union p, i.e. the closest competitor's); p_equiv, p_equiv_holm: the TOST p of
#: finding 3; p_noninf, p_noninf_holm: finding 3's non-inferiority p (secondary); evidence: the
#: numbers in one line.
COLUMNS = ["finding", "env", "algo", "claim", "verdict", "status", "test", "seeds", "n",
           "diff", "diff_low", "diff_high", "diff_norm", "cliffs_delta", "p", "p_holm",
           "p_equiv", "p_equiv_holm", "p_noninf", "p_noninf_holm", "evidence"]


def summarise(findings: pd.DataFrame) -> pd.DataFrame:
    """One row per finding of a :func:`check_findings` table: the claim and how many of its
    cells hold, do not hold, or are undecided."""
    counts = pd.crosstab(findings["finding"], findings["status"])
    for status in (HOLDS, NOT_HOLD, UNDECIDED):
        if status not in counts:
            counts[status] = 0
    claims = pd.Series({f: CLAIMS.get(f, "") for f in counts.index})
    return pd.DataFrame({"claim": claims, "cells": counts.sum(axis=1), HOLDS: counts[HOLDS],
                         NOT_HOLD: counts[NOT_HOLD], UNDECIDED: counts[UNDECIDED]}
                        ).rename_axis("finding").reset_index()


def expected_cells(envs: Sequence[str], algos: Sequence[str] = ("td3", "a2c")
                   ) -> list[tuple[int, str, str]]:
    """(finding, task, algorithm) of every cell a grid over ``envs`` × ``algos`` decides: finding 1
    for A2C, finding 2 for TD3 on the quadrotor and the seeker, findings 3 and 4 everywhere."""
    cells = [(1, env, "a2c") for env in envs if "a2c" in algos]
    cells += [(2, env, "td3") for env in envs if env in ("quadrotor", "seeker") and "td3" in algos]
    cells += [(f, env, algo) for f in (3, 4) for env in envs for algo in algos]
    return sorted(cells, key=lambda c: (c[0], list(envs).index(c[1]), c[2] != "td3"))


def to_markdown(findings: pd.DataFrame, envs: Sequence[str] | None = None,
                algos: Sequence[str] = ("td3", "a2c")) -> str:
    """A :func:`check_findings` table as text for a reader: per finding the paper's claim, then
    one line per cell with our verdict, whether it supports the claim, and its evidence.

    :param envs: the tasks of the whole grid; cells of a task the table does not cover yet are
        listed as "not finished yet" (default: only the table's own cells).
    """
    envs = list(envs) if envs is not None else list(dict.fromkeys(findings["env"]))
    rows = {(int(r["finding"]), r["env"], r["algo"]): r for _, r in findings.iterrows()}
    lines: list[str] = []
    for finding in sorted({f for f, _, _ in expected_cells(envs, algos)}):
        lines += ["", f"**Finding {finding}.** The paper: *{CLAIMS[finding]}*.", ""]
        for f, env, algo in expected_cells(envs, algos):
            if f != finding:
                continue
            label = f"{algo.upper()} · {env}"
            row = rows.get((f, env, algo))
            if row is None:
                lines.append(f"- {label}: not finished yet.")
                continue
            stance = {HOLDS: ", as the paper says", NOT_HOLD: ", against the paper"}.get(
                row["status"], "")
            # what was compared, where the cell chose it (findings 3 and 4): "A vs B"
            chosen = str(row["test"]).partition("; ")[2].replace(
                " (chosen on the selection seeds)", "")
            label += f" ({chosen})" if chosen else ""
            lines.append(f"- {label}: **{row['verdict']}**{stance}. {row['evidence']}.")
    return "\n".join(lines).strip() + "\n"


def _scores(cell: pd.DataFrame, config: str, seeds: Sequence[int]) -> np.ndarray:
    rows = cell[(cell[CONFIG] == config) & cell["seed"].isin(seeds)]
    return rows.sort_values("seed")["score"].to_numpy(float)


def _scale(references: Mapping[str, Reference] | None, env: str) -> float:
    ref = (references or {}).get(env)
    return np.nan if ref is None else ref.controller - ref.zero


@dataclass
class _Pair:
    """A two-sample comparison of ``a`` against ``b`` (positive effects favour ``a``)."""

    a: np.ndarray
    b: np.ndarray
    reps: int
    seed: int

    def __post_init__(self) -> None:
        self.enough = min(self.a.size, self.b.size) >= MIN_SEEDS
        self.n = f"{self.a.size} vs {self.b.size}"
        if self.enough:
            self.u, self.p, self.method = mann_whitney(self.a, self.b)
            self.delta = cliffs_delta(self.a, self.b)
            self.diff, self.low, self.high = iqm_difference(self.a, self.b, reps=self.reps,
                                                            seed=self.seed)
            self.min_p = min_p_value(self.a.size, self.b.size)

    def too_few(self) -> str:
        return f"too few seeds to test: {self.n} (need >= {MIN_SEEDS} each)"

    def text(self, name_a: str, name_b: str) -> str:
        return (f"IQM {name_a} − {name_b} = {self.diff:.3g} [{self.low:.3g}, {self.high:.3g}], "
                f"Cliff's δ = {self.delta:+.2f}, U = {self.u:g}, {self.method} p = {self.p:.3g}")


def _row(finding: int, env: str, algo: str, claim: str, test: str, **values: object) -> dict:
    return {"finding": finding, "env": env, "algo": algo, "claim": claim, "test": test,
            **values}


def _frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=COLUMNS)


def _best_holm(min_p: float, others: Sequence[float]) -> float:
    """The smallest Holm-adjusted p a test could reach with ``min_p``, the smallest p its sample
    sizes allow, given the raw p-values ``others`` of the other tests of its family (NaN: not
    tested). Holm steps down, so a test ranked last needs only p < level once every other test
    has rejected; with the others' actual p-values this says whether any data could pass."""
    ps = sorted([min_p, *(q for q in others if not np.isnan(q))])
    rank = ps.index(min_p)  # ties with another test: the more favourable rank
    return min(1.0, max((len(ps) - j) * ps[j] for j in range(rank + 1)))


def _design_note(level: float, *limits: tuple[float, Sequence[float], str]) -> str:
    """Say so when no data of this size could pass, given the other tests of the family.

    :param limits: (smallest attainable p, the raw p-values of the family's other tests, name of
        the test) per test of the verdict; one sentence names those that cannot pass.
    """
    out = [f"{what} {min_p:.2g}, Holm-adjusted at best {best:.2g}" for min_p, others, what
           in limits if (best := _best_holm(min_p, others)) >= level]
    if not out:
        return ""
    return (f"undecidable at this n: smallest attainable {' and '.join(out)} (given the other "
            f"cells' p) >= {level:g}")


def _others(values: Sequence[float], i: int) -> list[float]:
    return [v for j, v in enumerate(values) if j != i]


def _pair_values(pair: _Pair, scale: float) -> dict:
    if not pair.enough:
        return {"n": pair.n}
    return {"n": pair.n, "diff": pair.diff, "diff_low": pair.low, "diff_high": pair.high,
            "diff_norm": pair.diff / scale, "cliffs_delta": pair.delta, "p": pair.p}


def finding_1(runs: pd.DataFrame, atol: float = 1e-9) -> pd.DataFrame:
    """A2C SE vanilla against SP vanilla: identical by construction (Lemma 1), checked as the
    largest per-seed |score SE − score SP| over the seeds both have."""
    rows = []
    a2c = runs[runs["algo"] == "a2c"]
    for env in sorted(a2c["env"].unique()):
        cell = a2c[a2c["env"] == env]
        se = cell[cell["variant"] == "se-vanilla"].set_index("seed")["score"]
        sp = cell[cell["variant"] == "sp-vanilla"].set_index("seed")["score"]
        seeds = sorted(se.index.intersection(sp.index))
        if not seeds:
            continue
        diff = float(np.max(np.abs(se[seeds].to_numpy(float) - sp[seeds].to_numpy(float))))
        same = diff <= atol
        rows.append(_row(
            1, env, "a2c", "A2C: SE-RL and SP-RL (vanilla) identical",
            "per-seed equality, identical by construction (Lemma 1, shared random streams)",
            verdict=IDENTICAL if same else DIFFER, status=HOLDS if same else NOT_HOLD,
            seeds=seed_span(seeds), n=str(len(seeds)), diff=diff,
            evidence=f"max over {len(seeds)} seeds of |score SE − score SP| = {diff:.1e}"
                     + ("" if same else f" > {atol:g}: the implementation departs from "
                                        "Lemma 1")))
    return _frame(rows)


def finding_2(runs: pd.DataFrame, envs: tuple[str, ...] = ("quadrotor", "seeker"),
              references: Mapping[str, Reference] | None = None, level: float = 0.05,
              reps: int = 2_000, seed: int = 0) -> pd.DataFrame:
    """Vanilla TD3, SE-RL against SP-RL on ``envs``: two-sided Mann-Whitney U on all seeds,
    Holm over the tasks; "SE better", "SP better" or "no significant difference"."""
    rows, pairs = [], []
    td3 = runs[runs["algo"] == "td3"]
    for env in envs:
        cell = td3[td3["env"] == env]
        choice = choose_configs(cell, {"se": ["se-vanilla"], "sp": ["sp-vanilla"]})
        if choice is None:
            continue
        pair = _Pair(_scores(cell, choice.configs["se"], choice.test_seeds),
                     _scores(cell, choice.configs["sp"], choice.test_seeds), reps, seed)
        pairs.append(pair)
        rows.append(_row(2, env, "td3", "TD3 vanilla: SE-RL beats SP-RL",
                         "two-sided Mann-Whitney U, Holm over tasks",
                         seeds=choice.seeds_text(), **_pair_values(pair, _scale(references, env))))
    adjusted = holm([row.get("p", np.nan) for row in rows])
    raw = [row.get("p", np.nan) for row in rows]
    for i, (row, pair, p_adj) in enumerate(zip(rows, pairs, adjusted, strict=True)):
        if not pair.enough:
            row.update(verdict=UNDECIDED, status=UNDECIDED, evidence=pair.too_few())
            continue
        significant = p_adj < level
        row["p_holm"] = p_adj
        row["verdict"] = (SE_BETTER if pair.delta > 0 else SP_BETTER) if significant \
            else NO_DIFFERENCE
        row["status"] = {SE_BETTER: HOLDS, SP_BETTER: NOT_HOLD}.get(row["verdict"], UNDECIDED)
        note = "" if significant else _design_note(level, (pair.min_p, _others(raw, i), "p"))
        row["evidence"] = "; ".join(filter(None, [pair.text("SE", "SP")
                                                  + f", Holm p = {p_adj:.3g}", note]))
    return _frame(rows)


def finding_3(runs: pd.DataFrame, references: Mapping[str, Reference] | None = None,
              margin: float = 0.1, selection: CellSelection = "split", level: float = 0.05,
              reps: int = 2_000, seed: int = 0) -> pd.DataFrame:
    """Best SP-RL mitigation against SE-RL with a reward penalty, per task × algorithm:
    "matches" (TOST within ±``margin`` normalised), else "SP better" / "SE better" (two-sided
    Mann-Whitney), else "undecided"; Holm over the cells for each of the two tests."""
    rows, pairs, equiv, noninf = [], [], [], []
    for (env, algo), cell in runs.groupby(["env", "algo"], sort=True):
        choice = choose_configs(cell, {"sp": IMPROVED_SP.get(algo, SP_MITIGATIONS),
                                       "se": ["se-penalty"]},
                                cell_selection(selection, env, algo))
        if choice is None:
            continue
        sp_cfg, se_cfg = choice.configs["sp"], choice.configs["se"]
        pair = _Pair(_scores(cell, sp_cfg, choice.test_seeds),
                     _scores(cell, se_cfg, choice.test_seeds), reps, seed)
        scale = _scale(references, env)
        p_equiv, p_noninf, why = np.nan, np.nan, ""
        if not pair.enough:
            why = pair.too_few()
        elif np.isnan(scale):
            why = f"no equivalence test: no reference scores for {env}"
        else:
            ref = references[env]  # type: ignore[index]
            sp_n, se_n = ref.normalise(pair.a), ref.normalise(pair.b)
            p_equiv = tost_shift(sp_n, se_n, margin)
            p_noninf = noninferiority_shift(sp_n, se_n, margin)
            why = (f"shift SP − SE (Hodges-Lehmann, normalised) = "
                   f"{hodges_lehmann(sp_n, se_n):+.3f}, TOST ±{margin:g} p = {p_equiv:.3g}")
        pairs.append(pair)
        equiv.append(p_equiv)
        noninf.append(p_noninf)
        rows.append(_row(3, env, algo, "improved SP-RL matches or beats improved SE-RL",
                         f"TOST ±{margin:g} normalised (equivalence) and two-sided Mann-Whitney "
                         f"U, Holm over cells; {sp_cfg} vs {se_cfg} ({choice.note})",
                         seeds=choice.seeds_text(), p_equiv=p_equiv, p_noninf=p_noninf,
                         evidence=why, **_pair_values(pair, scale)))
    p_adj = holm([row.get("p", np.nan) for row in rows])
    e_adj, n_adj = holm(equiv), holm(noninf)
    raw = [row.get("p", np.nan) for row in rows]
    for i, (row, pair, pd_, pe, pn) in enumerate(zip(rows, pairs, p_adj, e_adj, n_adj,
                                                     strict=True)):
        if not pair.enough:
            row.update(verdict=UNDECIDED, status=UNDECIDED)
            continue
        row.update(p_holm=pd_, p_equiv_holm=pe, p_noninf_holm=pn)
        if pe < level:
            verdict = MATCHES
        elif pd_ < level:
            verdict = SP_BETTER if pair.delta > 0 else SE_BETTER
        else:
            verdict = UNDECIDED
        row["verdict"] = verdict
        row["status"] = {MATCHES: HOLDS, SP_BETTER: HOLDS, SE_BETTER: NOT_HOLD}.get(verdict,
                                                                                  UNDECIDED)
        equivalence = [] if np.isnan(pe) else [
            (min_p_value(pair.a.size, pair.b.size, "greater"), _others(equiv, i), "TOST p")]
        notes = [] if verdict != UNDECIDED else [
            _design_note(level, (pair.min_p, _others(raw, i), "p"), *equivalence)]
        secondary = "" if np.isnan(pn) else (
            f"(secondary) non-inferiority −{margin:g} p = {row['p_noninf']:.3g}, Holm p = {pn:.3g}")
        row["evidence"] = "; ".join(filter(None, [
            pair.text("SP", "SE") + f", Holm p = {pd_:.3g}", row["evidence"]
            + (f", Holm p = {pe:.3g}" if not np.isnan(pe) else ""), *notes, secondary]))
    return _frame(rows)


def finding_4(runs: pd.DataFrame, references: Mapping[str, Reference] | None = None,
              selection: CellSelection = "split", level: float = 0.05, reps: int = 2_000,
              seed: int = 0) -> pd.DataFrame:
    """The paper's winner per task (penalty critic on the balancing tasks, per-sample loss on
    the seeker) against every other safeguarded variant: "holds" only if it beats each of them
    significantly (intersection-union test, Holm over cells); "does not hold" if one beats it."""
    rows, worst, against = [], [], []
    for (env, algo), cell in runs.groupby(["env", "algo"], sort=True):
        claimed = "sp-penalty-critic" if env in BALANCING_TASKS else "sp-per-sample-loss"
        others = [v for v in SAFEGUARDED if v != claimed and (cell["variant"] == v).any()]
        choice = choose_configs(cell, {claimed: [claimed], **{v: [v] for v in others}},
                                cell_selection(selection, env, algo))
        if choice is None or not others:
            continue
        mine = _scores(cell, choice.configs[claimed], choice.test_seeds)
        pairs = {v: _Pair(mine, _scores(cell, choice.configs[v], choice.test_seeds), reps, seed)
                 for v in others}
        row = _row(4, env, algo, f"{claimed} is the best safeguarded variant",
                   f"each pairwise two-sided Mann-Whitney U (intersection-union), Holm over "
                   f"cells; {choice.configs[claimed]} vs {len(others)} variants ({choice.note})",
                   seeds=choice.seeds_text())
        if not all(p.enough for p in pairs.values()):
            short = next(p for p in pairs.values() if not p.enough)
            row.update(verdict=UNDECIDED, status=UNDECIDED, n=short.n, evidence=short.too_few())
            rows.append(row)
            worst.append(np.nan)
            against.append(np.nan)
            continue
        # the closest competitor: one it does not beat, else the largest p; ties: the smallest
        # effect, then the smallest IQM difference (the runner-up)
        closest = max(others, key=lambda v: (pairs[v].delta <= 0, pairs[v].p, -pairs[v].delta,
                                             -pairs[v].diff))
        pair = pairs[closest]
        p_holds = 1.0 if pair.delta <= 0 else pair.p
        losing = [pairs[v].p for v in others if pairs[v].delta < 0]
        p_against = min(1.0, len(others) * min(losing)) if losing else 1.0
        row.update(_pair_values(pair, _scale(references, env)), p=p_holds, min_p=pair.min_p,
                   evidence=f"closest: {choice.configs[closest]}; "
                            + pair.text(claimed, closest))
        rows.append(row)
        worst.append(p_holds)
        against.append(p_against)
    adj, adj_against = holm(worst), holm(against)
    for i, (row, p_h, p_a) in enumerate(zip(rows, adj, adj_against, strict=True)):
        min_p = row.pop("min_p", np.nan)
        if row.get("verdict") == UNDECIDED:
            continue
        verdict = HOLDS if p_h < level else NOT_HOLD if p_a < level else UNDECIDED
        row.update(verdict=verdict, status=verdict, p_holm=p_h)
        row["evidence"] += (f", Holm p = {p_h:.3g}; a competitor better: Bonferroni-Holm p = "
                            f"{p_a:.3g}")
        note = _design_note(level, (min_p, _others(worst, i), "p")) if verdict == UNDECIDED \
            else ""
        row["evidence"] += f"; {note}" if note else ""
    return _frame(rows)


def compared_variants(finding: int) -> tuple[str, ...] | None:
    """The variants finding ``finding`` compares within a cell; None: every variant."""
    if finding not in CLAIMS:
        raise ValueError(f"the paper has findings {sorted(CLAIMS)}; got {finding!r}")
    return VANILLA if finding in (1, 2) else None


def finished_for(runs: pd.DataFrame, grid: pd.DataFrame, finding: int) -> pd.DataFrame:
    """The rows of ``runs`` that finding ``finding`` compares, in the cells (task × algorithm)
    where every run of ``grid`` that it compares is among ``runs`` (see "Unfinished grids")

    :param runs: finished runs, with ``key``, ``env`` and ``algo`` (:func:`~.stats.load_runs`;
        a confirmation's runs may be among them: a cell is judged by the grid's runs alone).
    :param grid: every run of the sweep's grid, with ``key``, ``env``, ``algo`` and ``variant``
        (:func:`grid_table`).
    """
    variants = compared_variants(finding)
    needed = grid if variants is None else grid[grid["variant"].isin(variants)]
    have = set(runs["key"])
    ready = {cell for cell, keys in needed.groupby(["env", "algo"])["key"]
             if set(keys) <= have}
    keep = np.array([cell in ready for cell in zip(runs["env"], runs["algo"], strict=True)],
                    dtype=bool)
    if variants is not None:
        keep &= runs["variant"].isin(variants).to_numpy()
    return runs[keep]


def grid_table(specs: Sequence[RunSpec]) -> pd.DataFrame:
    """``key``, ``env``, ``algo``, ``variant`` of a grid's runs (``profile.runs()``), for
    :func:`finished_for` and ``check_findings(..., grid=...)``."""
    return pd.DataFrame([{"key": s.key, "env": s.env, "algo": s.algo, "variant": s.variant}
                         for s in specs], columns=["key", "env", "algo", "variant"])


def check_findings(runs: pd.DataFrame, references: Mapping[str, Reference] | None = None, *,
                   selection: CellSelection = "split", level: float = 0.05, margin: float = 0.1,
                   reps: int = 2_000, seed: int = 0,
                   grid: pd.DataFrame | None = None) -> pd.DataFrame:
    """All four findings on a table of runs (:func:`~.stats.load_runs`, or the ``runs`` table of
    a committed report): one row per finding × task × algorithm it concerns, columns
    :data:`COLUMNS`. ``references`` (:func:`~.references.load_references`) enable the
    equivalence test of finding 3 and the normalised differences (``diff_norm``).
    ``selection``: how a cell chooses α and variants (see the module docstring), for every cell
    or per ``(env, algo)`` (cells not named: ``"split"``), as a report does for the cells its
    confirmation sweep has finished. ``grid`` (:func:`grid_table` of the sweep's profile): test
    each finding only in the cells where the runs it compares have all finished
    (:func:`finished_for`); None: in every cell of ``runs`` (a finished grid)."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1); got {level!r}")
    missing = {"env", "algo", "variant", "alpha", CONFIG, "seed", "score"} - set(runs.columns)
    if missing:
        raise ValueError(f"runs lacks the columns {sorted(missing)} (use stats.load_runs)")
    if grid is not None and "key" not in runs.columns:
        raise ValueError("runs lacks the column 'key', which grid= needs (use stats.load_runs)")

    def ready(finding: int) -> pd.DataFrame:
        return runs if grid is None else finished_for(runs, grid, finding)

    kw = {"level": level, "reps": reps, "seed": seed}
    parts = [finding_1(ready(1)), finding_2(ready(2), references=references, **kw),
             finding_3(ready(3), references, margin=margin, selection=selection, **kw),
             finding_4(ready(4), references, selection=selection, **kw)]
    parts = [p for p in parts if not p.empty]
    return pd.concat(parts, ignore_index=True) if parts else _frame([])

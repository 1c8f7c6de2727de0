"""The verdicts on the paper's four findings (tutorial_rl.experiments.findings) on synthetic
tables of per-seed scores whose answer is known by construction, edge cases included."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from tutorial_rl.experiments.config import get_profile
from tutorial_rl.experiments.findings import (
    DIFFER,
    HOLDS,
    IDENTICAL,
    MATCHES,
    NO_DIFFERENCE,
    NOT_HOLD,
    SE_BETTER,
    SP_BETTER,
    UNDECIDED,
    check_findings,
    expected_cells,
    finding_1,
    finding_2,
    finding_3,
    finding_4,
    finished_for,
    grid_table,
    summarise,
    to_markdown,
)
from tutorial_rl.experiments.inference import holm
from tutorial_rl.experiments.references import Reference
from tutorial_rl.experiments.selection import choose_configs, chosen_configs, split_seeds
from tutorial_rl.experiments.stats import final_performance

#: Normalised 0 = −100, 1 = 0 on every task: a normalised difference of 0.1 is 10 return units.
REFS = {env: Reference(env, zero=-100.0, controller=0.0)
        for env in ("pendulum", "quadrotor", "seeker")}
SPREAD = np.array([-3, -2, -1, 0, 1, 2, 3], float)  # 7 seeds around a centre


def runs_table(scores: dict[tuple, list[float] | np.ndarray]) -> pd.DataFrame:
    """Runs from {(env, algo, variant[, alpha]): scores by seed 0, 1, ...}."""
    rows = []
    for key, values in scores.items():
        env, algo, variant = key[:3]
        alpha = key[3] if len(key) > 3 else np.nan
        config = variant if np.isnan(alpha) else f"{variant} α={alpha:g}"
        for seed, score in enumerate(values):
            rows.append({"key": f"{algo}-{config}-{env}-s{seed}", "env": env, "algo": algo,
                         "variant": variant, "alpha": alpha, "config": config, "seed": seed,
                         "score": float(score)})
    return pd.DataFrame(rows)


def around(centre: float, scale: float = 1.0, seeds: int = 7) -> np.ndarray:
    return centre + scale * np.resize(SPREAD, seeds)


def one(table: pd.DataFrame) -> pd.Series:
    assert len(table) == 1, table
    return table.iloc[0]


# --- seeds and the choice of α -------------------------------------------------------------

def test_split_seeds_chooses_on_the_first_half() -> None:
    assert split_seeds(range(7)) == ([0, 1, 2], [3, 4, 5, 6])
    assert split_seeds([5, 1, 3, 1]) == ([1], [3, 5])


def test_choice_uses_only_the_selection_seeds() -> None:
    # α = 1 wins on seeds 0-2 and loses on 3-6, α = 2 the reverse; over all seeds α = 2 wins
    lucky = [10, 10, 10, -10, -10, -10, -10]
    steady = [0, 0, 0, 5, 5, 5, 5]
    cell = runs_table({("seeker", "td3", "se-penalty", 1.0): lucky,
                       ("seeker", "td3", "se-penalty", 2.0): steady})
    split = choose_configs(cell, {"se": ["se-penalty"]}, "split")
    assert split.configs == {"se": "se-penalty α=1"}
    assert split.selection_seeds == [0, 1, 2] and split.test_seeds == [3, 4, 5, 6]
    paper = choose_configs(cell, {"se": ["se-penalty"]}, "none")
    assert paper.configs == {"se": "se-penalty α=2"} and paper.test_seeds == list(range(7))
    assert "optimistic" in paper.note
    with pytest.raises(ValueError, match="selection"):
        choose_configs(cell, {"se": ["se-penalty"]}, "best")  # type: ignore[arg-type]


def test_explicit_selection_seeds_and_fresh_test_seeds_at_the_chosen_alpha() -> None:
    # the grid on seeds 0-6, then only the chosen α (= 1) on fresh seeds 7-13
    grid = runs_table({("seeker", "td3", "se-penalty", 1.0): around(5),
                       ("seeker", "td3", "se-penalty", 2.0): around(0)})
    chosen = chosen_configs(grid)
    assert chosen[["variant", "alpha", "n"]].values.tolist() == [["se-penalty", 1.0, 7]]
    fresh = runs_table({("seeker", "td3", "se-penalty", 1.0): around(5, seeds=14)})
    table = pd.concat([grid, fresh[fresh["seed"] >= 7]], ignore_index=True)
    choice = choose_configs(table, {"se": ["se-penalty"]}, selection=range(7))
    assert choice.configs == {"se": "se-penalty α=1"}
    assert choice.test_seeds == list(range(7, 14)) and choice.seeds_text() == \
        "test 7-13, chosen on 0-6"


def test_nothing_to_choose_keeps_every_seed() -> None:
    cell = runs_table({("seeker", "td3", "se-vanilla"): around(0),
                       ("seeker", "td3", "se-penalty", 0.5): around(1)})
    choice = choose_configs(cell, {"a": ["se-vanilla"], "b": ["se-penalty"]})
    assert choice.test_seeds == list(range(7)) and choice.selection_seeds == []
    assert choose_configs(cell, {"a": ["sp-vanilla"]}) is None


# --- finding 1 -----------------------------------------------------------------------------

def test_finding_1_identical_by_construction_and_checked_seed_by_seed() -> None:
    same = [-3.0, -4.0, -5.0]
    runs = runs_table({("pendulum", "a2c", "se-vanilla"): same,
                       ("pendulum", "a2c", "sp-vanilla"): same,
                       ("seeker", "a2c", "se-vanilla"): same,
                       ("seeker", "a2c", "sp-vanilla"): [-3.0, -4.0, -5.1]})
    table = finding_1(runs).set_index("env")
    assert table.loc["pendulum", "verdict"] == IDENTICAL
    assert table.loc["pendulum", "status"] == HOLDS and table.loc["pendulum", "diff"] == 0
    assert "by construction" in table.loc["pendulum", "test"]
    assert table.loc["seeker", "verdict"] == DIFFER
    assert table.loc["seeker", "status"] == NOT_HOLD
    assert table.loc["seeker", "diff"] == pytest.approx(0.1)


# --- finding 2 -----------------------------------------------------------------------------

@pytest.mark.parametrize(("se", "sp", "verdict", "status"), [
    (around(10), around(0), SE_BETTER, HOLDS),         # complete separation
    (around(0), around(10), SP_BETTER, NOT_HOLD),
    (around(0), around(1), NO_DIFFERENCE, UNDECIDED),  # overlapping samples
    (around(0), around(0), NO_DIFFERENCE, UNDECIDED),  # ties everywhere
])
def test_finding_2_from_a_two_sided_rank_test(se: np.ndarray, sp: np.ndarray, verdict: str,
                                              status: str) -> None:
    runs = runs_table({("quadrotor", "td3", "se-vanilla"): se,
                       ("quadrotor", "td3", "sp-vanilla"): sp})
    row = one(finding_2(runs))
    assert (row["verdict"], row["status"]) == (verdict, status)
    assert row["n"] == "7 vs 7" and row["seeds"] == "0-6"
    if verdict in (SE_BETTER, SP_BETTER):
        assert row["p"] == pytest.approx(2 / math.comb(14, 7))
        assert abs(row["cliffs_delta"]) == 1.0
    if np.array_equal(se, sp):
        assert row["p"] == 1.0 and row["cliffs_delta"] == 0.0 and row["diff"] == 0.0


def test_finding_2_holm_over_the_two_tasks() -> None:
    # quadrotor: separated (p = 2/3432); seeker: 6 of 7 above, p about 0.007 -> Holm 0.007
    runs = runs_table({("quadrotor", "td3", "se-vanilla"): around(10),
                       ("quadrotor", "td3", "sp-vanilla"): around(0),
                       ("seeker", "td3", "se-vanilla"): around(4.5),
                       ("seeker", "td3", "sp-vanilla"): around(0),
                       ("seeker", "td3", "se-penalty", 1.0): around(50)})  # not part of it
    table = finding_2(runs, references=REFS).set_index("env")
    assert list(table.index) == ["quadrotor", "seeker"]
    assert np.allclose(table["p_holm"], holm(table["p"]))
    assert (table["p_holm"] >= table["p"]).all()
    assert table.loc["quadrotor", "diff_norm"] == pytest.approx(0.1)  # 10 units of 100


def test_finding_2_with_too_few_seeds_is_undecided_with_the_reason() -> None:
    runs = runs_table({("seeker", "td3", "se-vanilla"): [10.0, 11.0],
                       ("seeker", "td3", "sp-vanilla"): [0.0, 1.0]})
    row = one(finding_2(runs))
    assert row["verdict"] == UNDECIDED and "too few seeds" in row["evidence"]
    assert np.isnan(row["p"])


# --- finding 3 -----------------------------------------------------------------------------

def f3_runs(sp: np.ndarray, se: np.ndarray, env: str = "seeker", algo: str = "td3"
            ) -> pd.DataFrame:
    """One cell; 14 seeds so that the split tests on 7 against 7. Two α per mitigation: the
    worse one is far below, so the choice is never in doubt."""
    return runs_table({(env, algo, "se-penalty", 1.0): se,
                       (env, algo, "se-penalty", 2.0): se - 50,
                       (env, algo, "sp-penalty-critic", 1.0): sp,
                       (env, algo, "sp-per-sample-loss", 1.0): sp - 50})


def test_finding_3_matches_only_through_equivalence() -> None:
    tight = around(-50, 0.1, 14)  # normalised spread ±0.003, margin 0.1
    row = one(finding_3(f3_runs(tight + 0.2, tight), REFS))
    assert row["verdict"] == MATCHES and row["status"] == HOLDS
    assert row["p_equiv_holm"] < 0.05 and row["seeds"] == "test 7-13, chosen on 0-6"
    assert "sp-penalty-critic α=1 vs se-penalty α=1" in row["test"]


def test_finding_3_for_a2c_compares_the_per_sample_loss() -> None:
    """A2C's penalty critic is A2C with the SE penalty, bit for bit (chapter 7): it would win a
    tie with itself, so for A2C "improved SP-RL" is the per-sample loss, even where the penalty
    critic scores higher."""
    se = around(-50, 1, 14)
    runs = runs_table({("seeker", "a2c", "se-penalty", 1.0): se,
                       ("seeker", "a2c", "sp-penalty-critic", 1.0): se,
                       ("seeker", "a2c", "sp-per-sample-loss", 1.0): se - 30})
    row = one(finding_3(runs, REFS))
    assert "sp-per-sample-loss α=1 vs se-penalty α=1" in row["test"]
    assert row["verdict"] == SE_BETTER
    td3 = one(finding_3(runs.assign(algo="td3"), REFS))
    assert "sp-penalty-critic α=1 vs se-penalty α=1" in td3["test"]


def test_finding_3_overlapping_intervals_without_equivalence_are_undecided() -> None:
    # same centre, wide spread: the old rule ("intervals overlap") called this "matches"
    wide = around(-50, 10, 14)
    runs = f3_runs(wide + 1, wide)
    final = final_performance(runs, reps=300)
    sp, se = (final[final["config"] == c].iloc[0] for c in ("sp-penalty-critic α=1",
                                                           "se-penalty α=1"))
    assert sp["ci_low"] <= se["ci_high"] and se["ci_low"] <= sp["ci_high"]
    row = one(finding_3(runs, REFS))
    assert row["verdict"] == UNDECIDED and row["p_equiv_holm"] > 0.05
    assert "undecidable" not in row["evidence"]  # 7 vs 7 could decide it


@pytest.mark.parametrize(("shift", "verdict", "status"), [(30.0, SP_BETTER, HOLDS),
                                                          (-30.0, SE_BETTER, NOT_HOLD)])
def test_finding_3_significant_differences(shift: float, verdict: str, status: str) -> None:
    se = around(-50, 1, 14)
    row = one(finding_3(f3_runs(se + shift, se), REFS))
    assert (row["verdict"], row["status"]) == (verdict, status)
    assert row["p_holm"] == pytest.approx(2 / math.comb(14, 7))
    assert row["diff_norm"] == pytest.approx(shift / 100)


def test_seven_seeds_split_over_six_cells_cannot_decide_and_say_so() -> None:
    """The quick sweep's design: 7 seeds, α chosen on 3, tested on 4 against 4 in 6 cells. Even
    complete separation gives p = 2/70 per cell, and Holm multiplies the smallest by 6."""
    runs = pd.concat([f3_runs(around(0, 1), around(-30, 1), env, algo)
                      for env in ("pendulum", "quadrotor", "seeker") for algo in ("td3", "a2c")],
                     ignore_index=True)
    table = finding_3(runs, REFS)
    assert len(table) == 6 and (table["verdict"] == UNDECIDED).all()
    assert np.allclose(table["p"], 2 / 70) and (table["n"] == "4 vs 4").all()
    assert table["evidence"].str.contains("smallest attainable p 0.029, Holm-adjusted at best "
                                          "0.17").all()
    # one sentence names every test that cannot pass: the rank test and the equivalence test
    assert (table["evidence"].str.count("undecidable at this n") == 1).all()
    assert table["evidence"].str.contains("and TOST p 0.014, Holm-adjusted at best 0.086 (given "
                                          "the other cells' p) >= 0.05", regex=False).all()


def test_holm_steps_down_so_a_small_cell_can_pass_once_the_others_have() -> None:
    """A 4 vs 4 cell cannot pass Holm's first step among six tests (6 × 2/70 > 0.05), but ranked
    last after five tests that reject it needs only p < 0.05: no 'undecidable' note then."""
    from tutorial_rl.experiments.findings import _best_holm

    smallest = 2 / 70
    assert _best_holm(smallest, [smallest] * 5) == pytest.approx(6 * smallest)
    assert _best_holm(smallest, [1e-5] * 5) == pytest.approx(smallest)  # ranked last: × 1
    assert _best_holm(smallest, [1e-5, 0.5, 0.6, np.nan]) == pytest.approx(3 * smallest)
    runs = pd.concat([f3_runs(around(0, 1, 14), around(-30, 1, 14), env, "td3")
                      for env in ("pendulum", "quadrotor")]
                     + [f3_runs(around(0, 1), around(-30, 1), "seeker", "td3")],
                     ignore_index=True)
    table = finding_3(runs, REFS)
    seeker = table[table["env"] == "seeker"].iloc[0]
    assert seeker["n"] == "4 vs 4" and "undecidable" not in seeker["evidence"]


def test_non_inferiority_is_reported_beside_the_verdict() -> None:
    """Finding 3's secondary analysis: the one-sided test of SP ≥ SE − margin, Holm over cells;
    SP a little worse than SE but within the margin is non-inferior, not equivalent-or-better."""
    se = around(-50, 0.5, 14)
    row = one(finding_3(f3_runs(se - 3, se), REFS))  # 0.03 normalised worse, margin 0.1
    assert row["p_noninf"] == pytest.approx(1 / math.comb(14, 7))
    assert row["p_noninf_holm"] == pytest.approx(row["p_noninf"])
    assert "(secondary) non-inferiority −0.1 p = " in row["evidence"]


def test_finding_3_without_references_cannot_match() -> None:
    tight = around(-50, 0.1, 14)
    row = one(finding_3(f3_runs(tight, tight), references=None))
    assert row["verdict"] == UNDECIDED and np.isnan(row["p_equiv"])
    assert "no reference scores for seeker" in row["evidence"]


def test_finding_3_too_few_test_seeds() -> None:
    row = one(finding_3(f3_runs(around(0, 1, 4), around(0, 1, 4)), REFS))
    assert row["verdict"] == UNDECIDED and "too few seeds to test: 2 vs 2" in row["evidence"]


# --- finding 4 -----------------------------------------------------------------------------

def f4_runs(claimed: np.ndarray, runner_up: np.ndarray, env: str = "pendulum") -> pd.DataFrame:
    """The claimed winner of ``env`` against a runner-up (SE penalty) and two weak variants."""
    winner = "sp-penalty-critic" if env in ("pendulum", "quadrotor") else "sp-per-sample-loss"
    loser = "sp-per-sample-loss" if winner == "sp-penalty-critic" else "sp-penalty-critic"
    seeds = len(claimed)
    return runs_table({(env, "td3", winner, 1.0): claimed,
                       (env, "td3", winner, 2.0): claimed - 100,
                       (env, "td3", "se-penalty", 1.0): runner_up,
                       (env, "td3", "se-vanilla"): around(-200, 1, seeds),
                       (env, "td3", loser, 1.0): around(-200, 1, seeds),
                       (env, "td3", "unsafe"): around(1000, 1, seeds)})  # no competitor


def test_finding_4_holds_when_the_claimed_variant_beats_every_competitor() -> None:
    row = one(finding_4(f4_runs(around(0, 1, 14), around(-20, 1, 14)), REFS))
    assert row["verdict"] == HOLDS == row["status"]
    assert "closest: se-penalty α=1" in row["evidence"]
    assert row["p"] == pytest.approx(2 / math.comb(14, 7))


def test_finding_4_top_point_estimate_that_is_not_significant_does_not_hold() -> None:
    runner_up = around(-50, 10, 14)
    row = one(finding_4(f4_runs(runner_up + 2, runner_up)))
    assert row["diff"] > 0  # the claimed variant has the highest IQM ...
    assert row["verdict"] == UNDECIDED  # ... but does not beat the runner-up significantly


def test_finding_4_a_significantly_better_competitor_refutes_it() -> None:
    row = one(finding_4(f4_runs(around(-20, 1, 14), around(0, 1, 14), env="seeker")))
    assert row["verdict"] == NOT_HOLD and row["claim"].startswith("sp-per-sample-loss")


def test_finding_4_tie_with_the_runner_up_is_undecided() -> None:
    same = around(0, 1, 14)
    row = one(finding_4(f4_runs(same, same)))
    assert row["verdict"] == UNDECIDED and row["cliffs_delta"] == 0.0 and row["p"] == 1.0


def test_finding_4_with_too_few_seeds_is_undecided_with_the_reason() -> None:
    row = one(finding_4(f4_runs(around(0, 1, 4), around(-20, 1, 4))))  # tests on 2 vs 2
    assert row["verdict"] == UNDECIDED and "too few seeds to test: 2 vs 2" in row["evidence"]


def test_finding_4_holm_over_cells() -> None:
    runs = pd.concat([f4_runs(around(0, 1, 14), around(-20, 1, 14), env)
                      for env in ("pendulum", "quadrotor", "seeker")], ignore_index=True)
    table = finding_4(runs)
    assert len(table) == 3
    assert np.allclose(table["p_holm"], holm(table["p"]))
    assert (table["verdict"] == HOLDS).all()


# --- all together --------------------------------------------------------------------------

def test_check_findings_on_an_empty_sweep_is_empty() -> None:
    empty = pd.DataFrame(columns=["key", "env", "algo", "variant", "alpha", "config", "seed",
                                  "score"])
    assert check_findings(empty).empty


def test_check_findings_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="lacks the columns"):
        check_findings(pd.DataFrame({"env": ["pendulum"]}))
    runs = runs_table({("pendulum", "a2c", "se-vanilla"): [1.0]})
    with pytest.raises(ValueError, match="level"):
        check_findings(runs, level=1.5)


def test_check_findings_is_deterministic_and_covers_every_finding() -> None:
    """Also: summarise counts each finding's cells by status."""
    runs = pd.concat([
        runs_table({("seeker", "a2c", "se-vanilla"): around(0),
                    ("seeker", "a2c", "sp-vanilla"): around(0),
                    ("seeker", "td3", "se-vanilla"): around(5),
                    ("seeker", "td3", "sp-vanilla"): around(0)}),
        f3_runs(around(-50, 1, 14), around(-50, 1, 14)),
    ], ignore_index=True)
    table = check_findings(runs, REFS)
    assert sorted(set(table["finding"])) == [1, 2, 3, 4]
    pd.testing.assert_frame_equal(table, check_findings(runs, REFS))
    summary = summarise(table).set_index("finding")
    assert list(summary.index) == [1, 2, 3, 4]
    assert summary.loc[1, HOLDS] == 1 and summary.loc[1, "cells"] == 1
    assert (summary[[HOLDS, NOT_HOLD, UNDECIDED]].sum(axis=1) == summary["cells"]).all()


def test_unfinished_cells_are_tested_only_for_the_findings_whose_runs_have_finished() -> None:
    """The paper grid's TD3 seeker cell with only its vanilla variants finished: finding 2 is
    tested there, findings 3 and 4 wait for the whole cell, even with some α finished."""
    paper = get_profile("paper")
    grid = grid_table(paper.runs())
    assert len(grid) == len(paper.runs()) == 588 and grid["key"].is_unique
    scores = {("seeker", "td3", "se-vanilla"): around(10), ("seeker", "td3", "sp-vanilla"):
              around(-10), ("seeker", "td3", "se-penalty", 0.1): around(0),
              ("seeker", "td3", "sp-per-sample-loss", 0.5): around(0)}
    runs = runs_table(scores)
    # the keys a sweep writes (runs_table's stand-ins are not the grid's)
    spec_key = {(s.env, s.algo, s.variant, s.alpha, s.seed): s.key for s in paper.runs()}
    runs["key"] = [spec_key[(r.env, r.algo, r.variant, None if np.isnan(r.alpha) else r.alpha,
                             r.seed)] for r in runs.itertuples()]
    assert len(finished_for(runs, grid, 2)) == 14  # the two vanilla variants, all 7 seeds
    assert finished_for(runs, grid, 3).empty and finished_for(runs, grid, 4).empty
    table = check_findings(runs, REFS, grid=grid)
    assert list(table["finding"]) == [2]
    assert one(table)["verdict"] == SE_BETTER
    # one vanilla seed missing: finding 2 waits too
    assert check_findings(runs.iloc[1:], REFS, grid=grid).empty
    # without the grid every cell counts as finished (the behaviour for finished sweeps)
    assert {3, 4} <= set(check_findings(runs, REFS)["finding"])
    with pytest.raises(ValueError, match="findings"):
        finished_for(runs, grid, 5)
    with pytest.raises(ValueError, match="'key'"):
        check_findings(runs.drop(columns="key"), REFS, grid=grid)


# --- the text a reader sees ------------------------------------------------------------------

def test_expected_cells_of_a_grid() -> None:
    cells = expected_cells(["pendulum", "quadrotor", "seeker"])
    assert len(cells) == 3 + 2 + 6 + 6
    assert (2, "pendulum", "td3") not in cells and (2, "seeker", "td3") in cells
    assert {algo for f, _, algo in cells if f == 1} == {"a2c"}


def test_markdown_of_a_partial_grid_names_every_verdict_and_every_missing_cell() -> None:
    same = [-3.0, -4.0, -5.0]
    runs = runs_table({("pendulum", "a2c", "se-vanilla"): same,
                       ("pendulum", "a2c", "sp-vanilla"): same,
                       ("seeker", "a2c", "se-vanilla"): same,
                       ("seeker", "a2c", "sp-vanilla"): [-3.0, -4.0, -5.1]})
    text = to_markdown(finding_1(runs), envs=["pendulum", "quadrotor", "seeker"],
                       algos=["a2c"])
    assert "**Finding 1.** The paper: *A2C: SE-RL and SP-RL (vanilla) identical*." in text
    assert f"- A2C · pendulum: **{IDENTICAL}**, as the paper says." in text
    assert f"- A2C · seeker: **{DIFFER}**, against the paper." in text
    assert "- A2C · quadrotor: not finished yet." in text
    assert "Finding 2" not in text  # no TD3 in this grid


def test_markdown_names_what_a_cell_compared() -> None:
    tight = around(-50, 0.1, 14)
    text = to_markdown(finding_3(f3_runs(tight + 0.2, tight), REFS))
    assert "(sp-penalty-critic α=1 vs se-penalty α=1): **matches**" in text

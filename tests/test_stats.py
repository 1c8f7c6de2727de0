"""Statistics and figures of the experiments (Chapter 8) on synthetic data with known answers.

No training here: :func:`fake_sweep` writes run folders (done.json, progress.csv) by hand.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import scikit_posthocs
import scipy.stats

from tutorial_rl.experiments import plots, stats
from tutorial_rl.experiments.commands import add_report_parser
from tutorial_rl.experiments.config import run_key
from tutorial_rl.experiments.references import (
    CONTROLLER_LABEL,
    ZERO_LABEL,
    Reference,
    load_references,
)
from tutorial_rl.experiments.report import REPORT_TABLES, read_report, write_report
from tutorial_rl.experiments.significance import significance


def fake_sweep(root: Path, scores: dict[tuple[str, float | None], list[float]],
               env: str = "pendulum", algo: str = "td3", steps: int = 1000) -> Path:
    """A sweep folder with one finished run per score; training returns rise linearly from
    score − 10 to the score over five episodes."""
    root.mkdir(parents=True, exist_ok=True)
    alphas = sorted({alpha for _, alpha in scores if alpha is not None})
    settings = {"name": "test", "envs": [env], "algos": [algo],  # the grid these runs make up
                "variants": list(dict.fromkeys(v for v, _ in scores)), "alphas": alphas,
                "seeds": max(len(v) for v in scores.values()), "steps": {f"{algo}/{env}": steps},
                "eval_episodes": 3}
    (root / "sweep.json").write_text(json.dumps({
        "profile": "test", "overrides": {}, "only": [], "settings": settings}))
    for (variant, alpha), values in scores.items():
        for seed, score in enumerate(values):
            key = run_key(algo, variant, alpha, env, seed)
            run = root / "runs" / key
            run.mkdir(parents=True)
            (run / "done.json").write_text(json.dumps({
                "key": key,
                "spec": {"env": env, "algo": algo, "variant": variant, "alpha": alpha,
                         "seed": seed, "steps": steps},
                "evaluation": {"mean_return": score, "interventions_per_episode": [seed, seed + 2],
                               "constraint_violations": 0},
                "training": {"interventions": 10 * seed, "steps": steps, "episodes": 5,
                             "constraint_violations": int(seed == 6), "wall_time_s": 2.0},
                "evaluation_wall_time_s": 0.5, "wall_time_s": 2.5}))
            ends = np.linspace(steps / 5, steps, 5)
            pd.DataFrame({"step": ends, "episode": range(5),
                          "episode_return": np.linspace(score - 10, score, 5),
                          "complete": 1}).to_csv(run / "progress.csv", index=False)
    return root


SEPARATED = {("se-vanilla", None): [0.0, 1, 2, 3, 4, 5, 6],
             ("sp-vanilla", None): [100.0, 101, 102, 103, 104, 105, 106],
             ("sp-penalty-critic", 1.0): [200.0, 201, 202, 203, 204, 205, 206]}
IDENTICAL = {v: [1.0, 2, 3, 4, 5, 6, 7] for v in SEPARATED}


def test_iqm_is_the_mean_of_the_middle_half() -> None:
    assert stats.iqm(np.arange(1, 9)) == pytest.approx(4.5)  # drops 1, 2 and 7, 8
    assert stats.iqm([1, 2, 3, 4, 5, 6, 1000]) == pytest.approx(4.0)  # 7 seeds: drops 1 and 1000


def test_load_runs_reads_every_finished_run(tmp_path: Path) -> None:
    runs = stats.load_runs(fake_sweep(tmp_path, SEPARATED))
    assert len(runs) == 21
    assert set(runs["config"]) == {"se-vanilla", "sp-vanilla", "sp-penalty-critic α=1"}
    assert runs["alpha"].isna().sum() == 14
    row = runs[runs["key"] == "td3-sp-penalty-critic-a1-pendulum-s3"].iloc[0]
    assert row["score"] == 203 and row["eval_interventions"] == 4
    assert row["train_intervention_rate"] == pytest.approx(30 / 1000)
    # violations are counted per run, never assumed: seed 6 of each configuration has one
    assert runs["train_violations"].sum() == 3 and runs["eval_violations"].sum() == 0


def test_final_performance_iqm_and_bootstrap_ci(tmp_path: Path) -> None:
    runs = stats.load_runs(fake_sweep(tmp_path, SEPARATED))
    table = stats.final_performance(runs, reps=500, seed=1)
    assert len(table) == 3 and (table["n"] == 7).all()
    vanilla = table[table["config"] == "se-vanilla"].iloc[0]
    assert vanilla["iqm"] == pytest.approx(3.0)  # mean of 1..5
    assert (table["ci_low"] <= table["iqm"]).all() and (table["iqm"] <= table["ci_high"]).all()
    assert (table["ci_high"] - table["ci_low"] > 0).all()
    again = stats.final_performance(runs, reps=500, seed=1)
    pd.testing.assert_frame_equal(table, again)  # seeded: reproducible


def test_constant_scores_give_a_zero_width_interval() -> None:
    runs = pd.DataFrame({"env": "pendulum", "algo": "td3", "variant": "se-vanilla",
                         "alpha": np.nan, "config": "se-vanilla", "score": [5.0] * 7})
    row = stats.final_performance(runs, reps=200).iloc[0]
    assert row["iqm"] == row["ci_low"] == row["ci_high"] == 5.0


def test_kruskal_and_dunn_detect_separated_groups(tmp_path: Path) -> None:
    runs = stats.load_runs(fake_sweep(tmp_path, SEPARATED))
    kruskal, dunn = significance(runs)
    assert len(kruskal) == 1 and kruskal["p"].iloc[0] < 0.05 and kruskal["significant"].iloc[0]
    assert len(dunn) == 3
    extreme = dunn[(dunn["a"] == "se-vanilla") & (dunn["b"] == "sp-penalty-critic α=1")]
    assert extreme["p_adj"].iloc[0] < 0.05
    # Bonferroni: each raw Dunn p-value times the number of pairs, capped at 1
    raw = scikit_posthocs.posthoc_dunn(runs, val_col="score", group_col="config")
    for row in dunn.itertuples():
        assert row.p_adj == pytest.approx(min(1.0, 3 * raw.loc[row.a, row.b]))


def test_identical_groups_are_not_significant(tmp_path: Path) -> None:
    kruskal, dunn = significance(stats.load_runs(fake_sweep(tmp_path, IDENTICAL)))
    assert kruskal["p"].iloc[0] > 0.05 and not kruskal["significant"].iloc[0]
    assert (dunn["p_adj"] > 0.05).all()


def test_configurations_identical_seed_by_seed_are_tested_once(tmp_path: Path) -> None:
    """A2C's SE and SP vanilla (and its penalty critic and SE penalty) give the same score on
    every seed by construction: one sample, not two independent ones."""
    low = [0.0, 1, 2, 3, 4, 5, 6]
    high = [10.0, 11, 12, 13, 14, 15, 16]
    scores = {("se-vanilla", None): low,
              ("sp-vanilla", None): [x + 1e-13 * (1 + x) for x in low],  # rounding only
              ("sp-penalty-critic", 1.0): high}
    runs = stats.load_runs(fake_sweep(tmp_path, scores))
    kruskal, dunn = significance(runs)
    row = kruskal.iloc[0]
    assert (row["groups"], row["n"]) == (2, 14)
    assert row["p"] == pytest.approx(scipy.stats.kruskal(low, high).pvalue)
    assert "sp-vanilla = se-vanilla seed by seed" in row["note"]
    pairs = {frozenset((r.a, r.b)): r.p_adj for r in dunn.itertuples()}
    assert pairs[frozenset(("se-vanilla", "sp-vanilla"))] == 1.0
    assert pairs[frozenset(("se-vanilla", "sp-penalty-critic α=1"))] == \
        pairs[frozenset(("sp-vanilla", "sp-penalty-critic α=1"))] < 0.05
    # the same scores on other seeds, or a real difference, keep them apart
    shifted = dict(scores)
    shifted[("sp-vanilla", None)] = [x + 1e-6 for x in low]
    kruskal, _ = significance(stats.load_runs(fake_sweep(tmp_path / "b", shifted)))
    assert kruskal["groups"].iloc[0] == 3 and kruskal["note"].iloc[0] == ""


def test_all_scores_equal_is_reported_not_nan() -> None:
    runs = pd.DataFrame({"env": "pendulum", "algo": "td3", "variant": ["a"] * 3 + ["b"] * 3,
                         "alpha": np.nan, "config": ["a"] * 3 + ["b"] * 3, "score": 1.0})
    kruskal, dunn = significance(runs)
    assert kruskal["p"].iloc[0] == 1.0 and kruskal["note"].iloc[0] == "all scores identical"
    assert dunn["p_adj"].iloc[0] == 1.0


def test_significance_keeps_the_best_alpha_per_variant(tmp_path: Path) -> None:
    scores = {("se-vanilla", None): [0.0, 1, 2], ("se-penalty", 0.1): [5.0, 6, 7],
              ("se-penalty", 2.0): [50.0, 51, 52]}
    runs = stats.load_runs(fake_sweep(tmp_path, scores))
    _, dunn = significance(runs, alphas="best")
    assert set(dunn["a"]) | set(dunn["b"]) == {"se-vanilla", "se-penalty α=2"}
    _, dunn_all = significance(runs, alphas="all")
    assert len(dunn_all) == 3


def test_interventions_and_compute_cost_tables(tmp_path: Path) -> None:
    runs = stats.load_runs(fake_sweep(tmp_path, SEPARATED))
    table = stats.interventions(runs)
    assert len(table) == 3
    assert table["train_total"].iloc[0] == pytest.approx(30.0)  # mean of 0, 10, ..., 60
    assert table["eval_per_episode"].iloc[0] == pytest.approx(4.0)  # mean of seed + 1
    for column in ("train_rate", "eval_per_episode"):
        assert (table[f"{column}_low"] <= table[column]).all()
        assert (table[column] <= table[f"{column}_high"]).all()
    cost = stats.compute_cost(runs)
    assert len(cost) == 3 and (cost["ms_per_step"] == 2.0).all()
    assert cost["core_hours"].iloc[0] == pytest.approx(7 * 2.5 / 3600)


def test_curves_on_a_common_grid_and_their_bands(tmp_path: Path) -> None:
    root = fake_sweep(tmp_path, {("se-vanilla", None): [10.0, 10.0, 10.0]})
    curves = stats.load_curves(root, points=10, window=1)
    assert len(curves) == 30 and curves["step"].max() == 1000
    first = curves[curves["step"] == 100]["episode_return"]
    assert first.isna().all()  # before the first episode ended
    bands = stats.curve_bands(curves, reps=100)
    assert len(bands) == 9  # grid steps 200 .. 1000
    assert np.allclose(bands["center"], bands["low"]) and np.allclose(bands["low"],
                                                                      bands["high"])
    assert bands["center"].iloc[-1] == pytest.approx(10.0)


def test_markdown_table() -> None:
    table = pd.DataFrame({"a": ["x|y"], "p": [0.012345], "q": [np.nan]})
    assert stats.markdown_table(table) == "| a | p | q |\n|---|---|---|\n| x\\|y | 0.0123 |  |"


def test_plots_draw_on_given_axes(tmp_path: Path) -> None:
    root = fake_sweep(tmp_path, SEPARATED)
    runs = stats.load_runs(root)
    final = stats.final_performance(runs, reps=100)
    bands = stats.curve_bands(stats.load_curves(root), reps=100)
    fig, axes = plt.subplots(1, 3)
    assert plots.plot_final_performance(final, "pendulum", "td3", ax=axes[0]) is axes[0]
    assert len(axes[0].get_yticklabels()) == 3
    assert plots.plot_training_curves(bands, "pendulum", "td3", ax=axes[1], final=final) \
        is axes[1]
    assert len(axes[1].get_lines()) == 3
    table = stats.interventions(runs)
    assert plots.plot_interventions(table, "pendulum", "td3", ax=axes[2]) is axes[2]
    plt.close(fig)
    grid = plots.figure_grid(final, plots.plot_final_performance, "title")
    assert len(grid.axes) == 1
    plt.close(grid)


def test_report_of_a_synthetic_sweep(tmp_path: Path) -> None:
    root = fake_sweep(tmp_path / "sweep", SEPARATED)
    report = write_report(root, tmp_path / "report", reps=200)
    text = report.read_text()
    for heading in ("Final performance", "Training curves", "Interventions", "Significance",
                    "Compute cost"):
        assert f"## {heading}" in text
    for name in ("final_performance", "training_curves", "interventions"):
        assert (tmp_path / "report" / f"{name}.png").stat().st_size > 1000
    assert len(pd.read_csv(tmp_path / "report" / "final_performance.csv")) == 3
    assert len(pd.read_csv(tmp_path / "report" / "dunn.csv")) == 3
    assert "No finding can be tested" not in text  # finding 4 is tested here


def test_a_report_without_testable_findings_says_so(tmp_path: Path) -> None:
    """A slice of a grid (its sweep.json declares an SE-RL penalty it did not run): the cell is
    not finished, so no finding is tested, and the page says why instead of an empty table."""
    root = fake_sweep(tmp_path / "sweep", SEPARATED)
    sweep = json.loads((root / "sweep.json").read_text())
    sweep["settings"]["variants"].append("se-penalty")
    (root / "sweep.json").write_text(json.dumps(sweep))
    text = write_report(root, reps=100).read_text()
    assert pd.read_csv(root / "report" / "findings.csv").empty
    assert "No finding can be tested on this sweep alone" in text


def test_read_report_returns_what_write_report_wrote(tmp_path: Path) -> None:
    root = fake_sweep(tmp_path / "sweep", SEPARATED)
    with pytest.raises(FileNotFoundError, match="tutorial-rl report"):
        read_report(root)
    write_report(root, reps=200)
    tables = read_report(root)
    assert set(tables) == {*REPORT_TABLES, "findings"}  # no references: no normalised tables
    final = stats.final_performance(stats.load_runs(root), reps=200)
    pd.testing.assert_frame_equal(tables["final_performance"], final, check_dtype=False)
    assert tables["failures"].empty


#: Pendulum references: 0 = −10, 1 = 190, so a score of s normalises to (s + 10) / 200.
REFS = {"pendulum": Reference("pendulum", zero=-10.0, controller=190.0)}


def write_references(path: Path) -> Path:
    """A reference.json in the format of `tutorial-rl reference` (issue 12)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "pendulum": {"zero": {"mean": -10.0, "returns": [-10.0, -10.0]},
                     "controller": {"mean": 190.0, "returns": [180.0, 200.0]}},
        "provenance": {"command": "test fixture"}}))
    return path


def test_normalised_iqm_and_interval_are_the_raw_ones_rescaled(tmp_path: Path) -> None:
    runs = stats.load_runs(fake_sweep(tmp_path, SEPARATED))
    raw = stats.final_performance(runs, reps=300, seed=2)
    norm = stats.normalised_performance(runs, REFS, reps=300, seed=2)
    # the IQM and percentile intervals commute with an increasing affine map
    for column in ("iqm", "ci_low", "ci_high"):
        assert np.allclose(norm[f"{column}_norm"], (raw[column] + 10) / 200)
    assert stats.add_normalised(runs, REFS)["score_norm"].iloc[0] == pytest.approx(
        (runs["score"].iloc[0] + 10) / 200)


def test_aggregate_over_tasks_is_the_iqm_of_all_normalised_runs(tmp_path: Path) -> None:
    a = stats.load_runs(fake_sweep(tmp_path / "a", {("se-vanilla", None): [0.0, 1, 2, 3]}))
    b = stats.load_runs(fake_sweep(tmp_path / "b", {("se-vanilla", None): [10.0, 20, 30, 40]},
                                   env="seeker"))
    runs = pd.concat([a, b], ignore_index=True)
    refs = {**REFS, "seeker": Reference("seeker", zero=0.0, controller=100.0)}
    table = stats.aggregate_performance(runs, refs, reps=300)
    row = table.iloc[0]
    assert (row["tasks"], row["n"]) == (2, 4)
    pooled = np.concatenate([(np.array([0.0, 1, 2, 3]) + 10) / 200, [0.1, 0.2, 0.3, 0.4]])
    assert row["iqm_norm"] == pytest.approx(stats.iqm(pooled))
    assert row["ci_low_norm"] <= row["iqm_norm"] <= row["ci_high_norm"]


def _reference_lines(ax: plt.Axes) -> dict[str, object]:
    return {line.get_label(): line for line in ax.get_lines()
            if line.get_label() in (ZERO_LABEL, CONTROLLER_LABEL)}


def test_performance_figures_draw_the_reference_lines(tmp_path: Path) -> None:
    root = fake_sweep(tmp_path, SEPARATED)
    final = stats.final_performance(stats.load_runs(root), reps=100)
    bands = stats.curve_bands(stats.load_curves(root), reps=100)
    fig, (left, right, bare) = plt.subplots(1, 3)
    plots.plot_final_performance(final, "pendulum", "td3", ax=left, references=REFS)
    lines = _reference_lines(left)  # across the return axis, which is x here
    assert set(lines) == {ZERO_LABEL, CONTROLLER_LABEL}
    assert list(lines[ZERO_LABEL].get_xdata()) == [-10.0, -10.0]
    assert list(lines[CONTROLLER_LABEL].get_xdata()) == [190.0, 190.0]
    plots.plot_training_curves(bands, "pendulum", "td3", ax=right, final=final, references=REFS)
    lines = _reference_lines(right)  # horizontal: returns on y
    assert list(lines[ZERO_LABEL].get_ydata()) == [-10.0, -10.0]
    assert list(lines[CONTROLLER_LABEL].get_ydata()) == [190.0, 190.0]
    assert CONTROLLER_LABEL in [t.get_text() for t in right.get_legend().get_texts()]
    plots.plot_training_curves(bands, "pendulum", "td3", ax=bare, references={})
    assert _reference_lines(bare) == {}  # no reference for the task: no line
    plt.close(fig)
    grid = plots.figure_grid(final, plots.plot_final_performance, "t", references=REFS)
    assert [t.get_text() for t in grid.legends[0].get_texts()] == [ZERO_LABEL, CONTROLLER_LABEL]
    plt.close(grid)


def test_report_with_references_adds_normalised_scores(tmp_path: Path) -> None:
    root = fake_sweep(tmp_path / "results" / "sweep", SEPARATED)
    refs_path = write_references(tmp_path / "results" / "reference" / "reference.json")
    report = write_report(root, reps=200)  # "auto": results/reference/reference.json
    text = report.read_text()
    assert f"Reference scores from `{refs_path}`" in text
    assert "## The paper's four findings" in text
    tables = read_report(root)
    assert {"references", "aggregate_normalised", "findings"} <= set(tables)
    final = tables["final_performance"]
    assert np.allclose(final["iqm_norm"], (final["iqm"] + 10) / 200)
    assert np.allclose(tables["runs"]["score_norm"], (tables["runs"]["score"] + 10) / 200)
    assert tables["references"].iloc[0].to_dict() == {
        "env": "pendulum", "zero": -10.0, "controller": 190.0, "zero_episodes": 2,
        "controller_episodes": 2}
    assert load_references(refs_path)["pendulum"].controller == 190.0


def test_report_says_when_no_references_are_used(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    root = fake_sweep(tmp_path / "sweep", SEPARATED)
    text = write_report(root, reps=100).read_text()  # "auto", and there is no reference file
    assert "No reference scores used" in text and "iqm_norm" not in text
    parser = argparse.ArgumentParser()
    add_report_parser(parser.add_subparsers())

    def report(references: str) -> int:
        args = parser.parse_args(["report", str(root), "--references", references,
                                  "--reps", "50"])
        return args.run(args)

    # an explicit file that is missing or malformed: exit code 2 and one clear line
    assert report(str(tmp_path / "missing.json")) == 2
    assert "no reference file at" in capsys.readouterr().err
    (tmp_path / "broken.json").write_text("{broken")
    assert report(str(tmp_path / "broken.json")) == 2
    assert "not valid JSON" in capsys.readouterr().err
    assert report("none") == 0
    assert "No reference scores used (--references none)" in capsys.readouterr().out


def test_intervention_intervals_never_reach_below_zero(tmp_path: Path) -> None:
    """One seed intervening often and six never: mean − std < 0, the bootstrap interval of the
    mean stays within [0, max] and still contains the mean."""
    runs = stats.load_runs(fake_sweep(tmp_path, SEPARATED))
    runs["eval_interventions"] = np.where(runs["seed"] == 6, 70.0, 0.0)
    row = stats.interventions(runs).iloc[0]
    assert row["eval_per_episode"] - row["eval_per_episode_std"] < 0
    assert 0.0 <= row["eval_per_episode_low"] <= row["eval_per_episode"] == pytest.approx(10.0)
    assert row["eval_per_episode_high"] <= 70.0
    fig, ax = plt.subplots()
    plots.plot_interventions(stats.interventions(runs), "pendulum", "td3", ax=ax)
    lows = [seg[:, 1].min() for coll in ax.collections for seg in coll.get_segments()]
    assert lows and min(lows) >= 0.0  # the drawn error bars
    plt.close(fig)


def test_in_cells_keeps_only_the_named_task_algorithm_cells() -> None:
    table = pd.DataFrame({"env": ["pendulum", "pendulum", "seeker"], "algo": ["td3", "a2c", "td3"],
                          "x": [1, 2, 3]})
    kept = stats.in_cells(table, [("pendulum", "a2c"), ("seeker", "td3")])
    assert kept["x"].tolist() == [2, 3] and kept.index.tolist() == [0, 1]

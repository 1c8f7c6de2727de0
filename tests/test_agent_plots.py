"""The figures and tables of single training runs (Chapters 4 and 5): tutorial_rl.agents.plots."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest

from tutorial_rl.agents.plots import (
    METRICS,
    MODE_COLORS,
    parameter_table,
    plot_critic_slice,
    plot_mode_comparison,
    plot_progress,
    read_progress,
    safe_interval,
)
from tutorial_rl.experiments.training import RunConfig, RunResult, train


def tiny(mode: str, algo: str = "td3", seed: int = 0, out: Path | None = None,
         steps: int = 250) -> RunResult:
    agent = {"learning_starts": 100, "batch_size": 32} if algo == "td3" else {"n_steps": 8}
    return train(RunConfig(env="pendulum", algo=algo, mode=mode, steps=steps, seed=seed, out=out,
                           agent=agent, num_threads=1, progress_bar=False))


def test_read_progress_matches_the_returned_rows(tmp_path: Path) -> None:
    result = tiny("se", out=tmp_path / "run")
    for source in (tmp_path / "run", tmp_path / "run" / "progress.csv"):
        rows = read_progress(source)
        assert len(rows) == len(result.progress)
        for read, returned in zip(rows, result.progress, strict=True):
            assert read.keys() == returned.keys()
            assert isinstance(read["step"], int) and isinstance(read["episode_return"], float)
            assert read["step"] == returned["step"]
            assert read["episode_return"] == pytest.approx(returned["episode_return"])


def test_plot_progress_draws_finished_episodes_only() -> None:
    rows = [
        {"step": 200, "episode_return": -10.0, "interventions": 5, "constraint_violations": 0,
         "complete": 1},
        {"step": 400, "episode_return": -8.0, "interventions": 3, "constraint_violations": 0,
         "complete": 1},
        {"step": 450, "episode_return": -1.0, "interventions": 1, "constraint_violations": 0,
         "complete": 0},
    ]
    axes = plot_progress(rows, label="se", window=2)
    axes[0].figure.canvas.draw()
    assert len(axes) == len(METRICS)
    returns = axes[0].get_lines()
    assert len(returns) == 2  # the episodes and their moving average
    np.testing.assert_array_equal(returns[0].get_xdata(), [200, 400])
    np.testing.assert_allclose(returns[1].get_ydata(), [-10.0, -9.0])
    np.testing.assert_array_equal(axes[1].get_lines()[0].get_ydata(), [5, 3])
    with pytest.raises(ValueError, match="3 axes"):
        plot_progress(rows, axes=axes[:2])
    plt.close("all")


def test_plot_mode_comparison_one_line_per_mode() -> None:
    runs = {mode: tiny(mode, steps=220).progress for mode in ("unsafe", "se")}
    figure = plot_mode_comparison(runs)
    first = figure.axes[0]
    assert [line.get_label() for line in first.get_lines()] == ["unsafe", "se"]
    assert matplotlib.colors.same_color(first.get_lines()[1].get_color(), MODE_COLORS["se"])
    violations = figure.axes[2].get_lines()[1].get_ydata()
    assert np.all(violations == 0)  # the safeguard's run
    plt.close("all")


def test_safe_interval() -> None:
    assert safe_interval(np.array([[8.0], [-8.0]]), np.array([4.0, 2.0])) == (-0.25, 0.5)
    assert safe_interval(np.array([[1.0]]), np.array([0.3])) == (-np.inf, 0.3)
    low, high = safe_interval(np.array([[8.0], [-8.0]]), np.array([-1.0, -1.0]))
    assert low > high  # empty


def test_plot_critic_slice_marks_the_policy_and_its_projection() -> None:
    agent = tiny("se").agent
    obs = np.array([0.0, 1.0], dtype=np.float32)
    ax = plot_critic_slice(agent, obs, (np.array([[1.0], [-1.0]]), np.array([-0.2, 1.0])))
    q_line = ax.get_lines()[0]
    assert len(q_line.get_xdata()) == 201
    assert np.all(np.isfinite(q_line.get_ydata()))
    labels = [line.get_label() for line in ax.get_lines()]
    assert r"$\mu_\theta(x)$" in labels and r"$\Phi(x, \mu_\theta(x))$" in labels
    projected = ax.get_lines()[labels.index(r"$\Phi(x, \mu_\theta(x))$")].get_xdata()[0]
    assert -1.0 <= projected <= -0.2
    ax.legend()
    ax.figure.canvas.draw()  # the labels' mathtext renders
    plt.close("all")


def test_parameter_table_identical_and_different() -> None:
    first, again, other = (tiny("se", "a2c", seed=s, steps=64).agent for s in (1, 1, 2))
    same = parameter_table(first, again)
    assert same and all(row["identical"] and row["max_abs_difference"] == 0 for row in same)
    assert {row["parameter"].split(".")[0] for row in same} == {"actor", "critic"}
    different = parameter_table(first, other)
    assert not any(row["identical"] for row in different)
    with pytest.raises(ValueError, match="different networks"):
        parameter_table(first, tiny("se", seed=1).agent)

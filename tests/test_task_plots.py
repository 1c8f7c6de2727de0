"""Rollout records and the chapter-3 figures built from them."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

import tutorial_rl  # noqa: F401  (registers the environments)
from tutorial_rl.projection import is_feasible
from tutorial_rl.task_plots import (
    animation_html,
    filmstrip,
    plot_safe_actions_along,
    plot_safe_interval,
    plot_safety_counts,
    plot_seeker_map,
    rollout,
)


def test_rollout_records_safe_applied_actions_and_is_deterministic() -> None:
    first = rollout("tutorial_rl/Quadrotor2D-v0", steps=30, seed=5)
    again = rollout("tutorial_rl/Quadrotor2D-v0", steps=30, seed=5)
    np.testing.assert_array_equal(first.observations, again.observations)
    assert first.violations.sum() == 0
    assert len(first.safe_sets) == len(first.applied_actions) == 30
    for (A, b), applied in zip(first.safe_sets, first.applied_actions, strict=True):
        assert bool(is_feasible(torch.as_tensor(applied), torch.as_tensor(A), torch.as_tensor(b),
                                atol=1e-7))
    assert 0 < first.interventions <= 30


def test_rollout_without_safeguard_applies_the_proposal() -> None:
    record = rollout("tutorial_rl/Pendulum-v0", steps=20, seed=0, safeguard=False)
    np.testing.assert_array_equal(record.proposed_actions, record.applied_actions)
    assert record.interventions == 0


def test_figures_from_rollouts() -> None:
    seeker = rollout("tutorial_rl/Seeker-v0", steps=15, seed=1, render=True)
    assert len(seeker.frames) == len(seeker.rewards) + 1
    assert seeker.frames[0].dtype == np.uint8
    filmstrip(seeker.frames, count=3)
    plot_seeker_map(seeker.observations[0], trajectory=seeker.observations[:, :2])
    plot_safe_actions_along(seeker, steps=[0, 1])
    pendulum = rollout("tutorial_rl/Pendulum-v0", steps=10, seed=0)
    plot_safe_interval(pendulum)
    html = animation_html(seeker.frames[:3])
    assert "<script" in html
    rows = [{"env_id": "a/X-v0", "safeguard": s, "violations": v, "steps": 10}
            for s, v in ((False, 7), (True, 0))]
    ax = plot_safety_counts(rows)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["X-v0"]
    plt.close("all")


def test_greedy_goal_policy_and_step_timer() -> None:
    import gymnasium as gym

    from tutorial_rl.envs.seeker import greedy_goal_policy
    from tutorial_rl.task_plots import seconds_per_step

    obs = np.zeros(15)
    obs[4:6] = [10.0, -0.5]  # goal far right, slightly below; at rest
    np.testing.assert_allclose(greedy_goal_policy(obs), [1.0, -0.25])
    record = rollout("tutorial_rl/Seeker-v0", policy=greedy_goal_policy, steps=100, seed=12)
    assert record.violations.sum() == 0 and record.interventions > 0
    assert 0 < seconds_per_step(gym.make("tutorial_rl/Pendulum-v0"), steps=20) < 1


def test_quadrotor_filmstrip_draws_each_step_to_scale() -> None:
    from tutorial_rl.task_plots import quadrotor_filmstrip

    record = rollout("tutorial_rl/Quadrotor2D-v0", steps=12, seed=0)
    axes = quadrotor_filmstrip(record, count=3)
    for ax, t in zip(axes, (0, 6, 11), strict=True):
        x, z = record.observations[t, 0], record.observations[t, 1]
        assert np.allclose(np.mean(ax.get_xlim()), x) and np.allclose(np.mean(ax.get_ylim()), z)
        assert ax.get_title().startswith(f"step {t},")
    assert axes[0].get_ylabel() == "z (m)"
    plt.close("all")

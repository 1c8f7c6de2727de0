"""The fixed-state aliasing experiments (tutorial_rl.aliasing): the qualitative results that
chapters 6 and 7 claim, asserted on the experiment's output.

The experiment runs once per module with an explicit CI-sized configuration (the same sizes as the
``ci`` profile), so the assertions do not depend on ``TUTORIAL_RL_PROFILE``.
"""

from __future__ import annotations

import types

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from tutorial_rl.aliasing import (
    SETTINGS,
    AliasingResult,
    ExperimentConfig,
    boundary_points,
    compare_jacobians,
    is_on_boundary,
    normal_derivatives,
    penalty_gradient_check,
    quadrotor_scenario,
    run_experiment,
    se_critic_sweep,
    seeker_scenario,
)
from tutorial_rl.projection import is_feasible, projection_jacobian
from tutorial_rl.sets.polygon import polygon_area

CONFIG = ExperimentConfig(n_samples=1024, epochs=1000, grid_size=41, seed=0)


def inside(point: np.ndarray, A: np.ndarray, b: np.ndarray, margin: float = 0.0) -> bool:
    """Whether the point satisfies every row with at least ``margin`` slack (unit rows)."""
    slack = (b - A @ point) / np.linalg.norm(A, axis=1)
    return bool(slack.min() > margin)


@pytest.fixture(scope="module")
def results() -> dict[str, AliasingResult]:
    return {s.name: run_experiment(s, CONFIG) for s in (quadrotor_scenario(), seeker_scenario())}


# ---------------------------------------------------------------------------- the scenarios
def test_quadrotor_scenario_is_aligned_and_starts_outside(results) -> None:
    r = results["quadrotor"]
    s = r.scenario
    assert 0.2 < polygon_area(s.A, s.b[None])[0] / 4 < 0.9  # a proper subset of the box
    assert not inside(s.initial_action, s.A, s.b) and np.all(np.abs(s.initial_action) < 1)
    assert inside(r.best_action, s.A, s.b, margin=0.1)  # task and safety aligned


def test_seeker_scenario_is_not_aligned(results) -> None:
    r = results["seeker"]
    s = r.scenario
    assert not inside(s.initial_action, s.A, s.b)
    assert not inside(r.best_action, s.A, s.b)  # the best action is unsafe
    assert np.all(np.abs(r.best_action) < 1)  # ... but inside the box
    assert is_on_boundary(r.best_safe_action, s.A, s.b, tol=0.05)


def test_seeker_obstacle_lies_between_agent_and_goal() -> None:
    from tutorial_rl.aliasing import SEEKER_LAYOUT
    from tutorial_rl.envs.seeker import AGENT_RADIUS

    p, g = np.array(SEEKER_LAYOUT["position"]), np.array(SEEKER_LAYOUT["goal"])
    cx, cy, r = SEEKER_LAYOUT["obstacles"][0]
    t = np.clip((np.array([cx, cy]) - p) @ (g - p) / ((g - p) @ (g - p)), 0, 1)
    assert np.hypot(*(p + t * (g - p) - (cx, cy))) < r + AGENT_RADIUS


def test_values_are_the_environments_rewards() -> None:
    """With a horizon of one step, V is the environment's (standardised) reward."""
    from tutorial_rl.aliasing import QUADROTOR_STATE, SEEKER_LAYOUT
    from tutorial_rl.envs.quadrotor import MODEL, QuadrotorEnv
    from tutorial_rl.envs.seeker import SeekerEnv

    actions = np.array([[0.3, -0.2], [-0.9, 0.8]])
    q = quadrotor_scenario(horizon=1)
    env = QuadrotorEnv()
    for a in actions:
        env.reset(seed=0)
        env.state = np.array(QUADROTOR_STATE)
        mid = (MODEL.disturbance_box.lower + MODEL.disturbance_box.upper) / 2
        env.np_random = types.SimpleNamespace(uniform=lambda lo, hi, mid=mid: mid)
        reward = env.step(a)[1]
        assert q.returns(a[None])[0] == pytest.approx(reward, abs=1e-6)
    s = seeker_scenario(horizon=1)
    env = SeekerEnv()
    for a in actions:
        env.reset(seed=0)
        env.position = np.array(SEEKER_LAYOUT["position"])
        env.velocity = np.array(SEEKER_LAYOUT["velocity"])
        env.goal = np.array(SEEKER_LAYOUT["goal"])
        env.obstacles = np.array(SEEKER_LAYOUT["obstacles"])
        reward = env.step(a)[1]
        assert s.returns(a[None])[0] == pytest.approx(reward, abs=1e-9)


# ---------------------------------------------------------------------------- the six settings
@pytest.mark.parametrize("name", ["quadrotor", "seeker"])
def test_every_projected_action_is_safe(results, name: str) -> None:
    r = results[name]
    A, b = torch.as_tensor(r.scenario.A), torch.as_tensor(r.scenario.b)
    for setting in SETTINGS:
        safe = torch.as_tensor(r.trajectories[setting].safe)
        assert bool(is_feasible(safe, A, b).all()), setting


def test_no_safeguard_reaches_the_optimum_inside_when_aligned(results) -> None:
    r = results["quadrotor"]
    tr = r.trajectories["none"]
    assert inside(tr.unsafe[-1], r.scenario.A, r.scenario.b)
    assert tr.final_value > r.best_safe_value - 0.1


def test_no_safeguard_leaves_the_safe_set_when_not_aligned(results) -> None:
    r = results["seeker"]
    tr = r.trajectories["none"]
    assert not inside(tr.unsafe[-1], r.scenario.A, r.scenario.b)
    assert not bool(is_feasible(torch.as_tensor(tr.unsafe[-1]), torch.as_tensor(r.scenario.A),
                                torch.as_tensor(r.scenario.b)))
    assert tr.final_value > r.best_safe_value + 1.0  # better than any safe action: it is unsafe


@pytest.mark.parametrize("name", ["quadrotor", "seeker"])
def test_sp_rl_ends_on_the_boundary_with_no_normal_gradient(results, name: str) -> None:
    r = results[name]
    s = r.scenario
    tr = r.trajectories["sp"]
    assert is_on_boundary(tr.safe[-1], s.A, s.b)
    assert np.linalg.norm(tr.unsafe[-1] - tr.safe[-1]) > 0.1  # ũ stays in a normal cone
    u = torch.as_tensor(tr.unsafe[-1:])
    J = projection_jacobian(u, torch.as_tensor(s.A), torch.as_tensor(s.b))[0]
    assert int(torch.linalg.matrix_rank(J, atol=1e-9, rtol=0.0)) < 2
    safe = torch.as_tensor(tr.safe[-1:]).requires_grad_(True)
    (grad_q,) = torch.autograd.grad(r.critics["sp"](safe).sum(), safe)
    sp_grad = (J.T @ grad_q[0]).numpy()
    normal = tr.unsafe[-1] - tr.safe[-1]
    assert abs(sp_grad @ normal) < 1e-12 * (1 + np.linalg.norm(grad_q))  # exactly tangential


def test_sp_rl_misses_the_interior_optimum_when_aligned(results) -> None:
    r = results["quadrotor"]
    assert r.trajectories["sp"].final_value < r.best_safe_value - 0.3


def test_per_sample_loss_approaches_the_boundary_from_outside(results) -> None:
    r = results["quadrotor"]
    tr = r.trajectories["sp_per_sample"]
    gap = np.linalg.norm(tr.unsafe - tr.safe, axis=1)
    assert gap[0] > 0.1 and 0 < gap[-1] < 1e-3  # geometric decay, never crossing
    assert np.all(np.diff(gap) <= 0)
    assert is_on_boundary(tr.safe[-1], r.scenario.A, r.scenario.b)
    assert tr.final_value < r.best_safe_value - 0.3


@pytest.mark.parametrize("setting", ["sp_penalty_critic", "se_penalty"])
def test_penalised_settings_reach_the_interior_when_aligned(results, setting: str) -> None:
    r = results["quadrotor"]
    tr = r.trajectories[setting]
    assert inside(tr.unsafe[-1], r.scenario.A, r.scenario.b, margin=0.05)
    assert tr.final_value > r.best_safe_value - 0.1


def test_when_not_aligned_every_safeguarded_setting_ends_near_the_best_safe_value(results) -> None:
    r = results["seeker"]
    for setting in SETTINGS[1:]:
        assert r.trajectories[setting].final_value > r.best_safe_value - 0.05, setting


# ---------------------------------------------------------------------------- Lemma 2
@pytest.mark.parametrize("name", ["quadrotor", "seeker"])
def test_se_critic_is_nearly_flat_along_normal_cones(results, name: str) -> None:
    nd = normal_derivatives(results[name])
    assert len(nd.points) >= 1
    assert np.abs(nd.exact).max() < 1e-6  # Lemma 2: the exact target is constant on the ray
    assert nd.ratio < 0.25  # the fitted SE critic: small but not zero
    assert np.abs(nd.se).max() > 0
    assert np.abs(nd.raw).mean() > 0.5 * nd.raw_norm.mean()  # the raw critic is steep there


def test_a_poorly_fitted_se_critic_lets_the_policy_escape_a_good_one_traps_it() -> None:
    # chapter 6, "How flat is a fitted SE critic?": the claim is about fit quality, so both seeds
    sweep = se_critic_sweep(quadrotor_scenario(), epochs=(100, 2000), seeds=(0, 1),
                            config=ExperimentConfig(n_samples=1024, grid_size=5))
    poor = [r for r in sweep if r.epochs == 100]
    good = [r for r in sweep if r.epochs == 2000]
    assert all(r.inside for r in poor) and not any(r.inside for r in good)
    assert min(r.rmse for r in poor) > 5 * max(r.rmse for r in good)
    assert min(r.value for r in poor) > max(r.value for r in good) + 0.3


def test_unsafe_proposals_stay_outside_the_kink_tolerance(results) -> None:
    # chapter 6: the boundary convention (a ~1e-9 band) never decides a Jacobian of the runs
    for r in results.values():
        gaps = np.concatenate([np.linalg.norm(tr.unsafe - tr.safe, axis=1)
                               for tr in r.trajectories.values()])
        assert gaps[gaps > 0].min() > 1e-8


# ---------------------------------------------------------------------------- Jacobians
def test_exact_and_cvxpylayers_jacobians_agree_at_generic_points_only() -> None:
    s = seeker_scenario()
    rows = compare_jacobians(s.A, s.b, boundary_points(s.A, s.b, vertex=2))
    by_name = {r.name: r for r in rows}
    for name in ("interior", "facing the face", "inside the vertex cone"):
        assert by_name[name].agree, name
        assert len(by_name[name].pieces) == 1
    for r in rows:
        assert r.exact_piece >= 0  # the package returns one of the neighbouring pieces
    for name in ("exactly on a face", "exactly at the vertex"):
        np.testing.assert_allclose(by_name[name].exact, np.eye(2))  # smallest active set: none
        assert len(by_name[name].pieces) >= 2
    edge = by_name["edge of the vertex cone"]
    assert len(edge.active) == 1 and np.linalg.matrix_rank(edge.exact) == 1


def test_penalty_gradient_acts_where_the_jacobian_vanishes() -> None:
    s = quadrotor_scenario()
    pts = np.array([[0.5, -0.6], [1.6, 1.8], [0.0, 0.0]])  # face strip, vertex cone, inside
    check = penalty_gradient_check(s.A, s.b, pts, alpha=2.0)
    np.testing.assert_allclose(check["autograd"], check["closed_form"], atol=1e-12)
    assert np.all(check["J_residual"] < 1e-12)
    assert list(check["rank"]) == [1, 0, 2]
    assert np.all(check["distance"][:2] > 0.1) and check["distance"][2] == 0


# ---------------------------------------------------------------------------- determinism, API
def test_same_seed_gives_identical_trajectories() -> None:
    small = ExperimentConfig(n_samples=256, epochs=60, grid_size=11, seed=3)
    s = seeker_scenario()
    first = run_experiment(s, small, settings=("se", "sp_penalty_critic"))
    second = run_experiment(s, small, settings=("se", "sp_penalty_critic"))
    for setting in ("se", "sp_penalty_critic"):
        np.testing.assert_array_equal(first.trajectories[setting].unsafe,
                                      second.trajectories[setting].unsafe)
    assert set(first.critics) == {"se", "sp", "penalty"}
    other = run_experiment(s, ExperimentConfig(n_samples=256, epochs=60, grid_size=11, seed=4),
                           settings=("se",))
    assert not np.array_equal(other.trajectories["se"].unsafe, first.trajectories["se"].unsafe)


def test_unknown_setting_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown settings"):
        run_experiment(seeker_scenario(), ExperimentConfig(epochs=1), settings=("nope",))


def test_global_torch_state_is_left_alone() -> None:
    threads = torch.get_num_threads()
    state = torch.random.get_rng_state()
    run_experiment(seeker_scenario(), ExperimentConfig(n_samples=64, epochs=5, grid_size=5),
                   settings=("se",))
    assert torch.get_num_threads() == threads
    assert torch.equal(torch.random.get_rng_state(), state)


def test_figures_draw(results) -> None:
    from tutorial_rl.aliasing.plots import (
        plot_critic_surfaces,
        plot_normal_derivatives,
        plot_rank,
        plot_settings,
    )

    r = results["seeker"]
    axes = plot_settings(r)
    assert len(axes) == len(SETTINGS) and all(len(ax.lines) >= 4 for ax in axes)
    assert len(plot_critic_surfaces(r)) == 4
    ax = plot_rank(r, resolution=60)
    assert len(ax.texts) >= 3  # the vertices are labelled with their active constraints
    # the quadrotor's vertex wedges are rank 0 (J is zero up to rounding there)
    ax = plot_rank(results["quadrotor"], extent=(-2.2, 2.2, -2.2, 2.2), resolution=60)
    g = np.linspace(-2.2, 2.2, 60)
    rank = np.asarray(ax.collections[0].get_array())
    assert rank[np.abs(g - 1.8).argmin(), np.abs(g - 1.6).argmin()] == 0
    assert rank[np.abs(g - 0.0).argmin(), np.abs(g - 0.0).argmin()] == 2
    assert len(plot_normal_derivatives(r, normal_derivatives(r))) == 2
    plt.close("all")


def test_widget_builds(results) -> None:
    widgets = pytest.importorskip("ipywidgets")
    from tutorial_rl.widgets import aliasing_widget

    assert isinstance(aliasing_widget(results), widgets.VBox)
    plt.close("all")


# ------------------------------------------------------------------ long-horizon penalties (ch. 7)
LONG_HORIZON_SEEDS = (0, 1, 2)
#: Three inside the safe set's interior or facing its face u1 = 0.45 or its vertex (0.45, 1).
DECOMPOSITION_POINTS = np.array([[0.0, 0.0], [0.2, -0.4], [0.9, 0.0], [0.9, -0.5], [0.8, 1.25],
                                 [1.0, 1.2]])


@pytest.fixture(scope="module")
def long_horizon() -> dict:
    """The long-horizon experiment at the ``ci`` sizes for three seeds (a few seconds each)."""
    from tutorial_rl.aliasing import LongHorizonConfig, run_long_horizon

    return {seed: run_long_horizon(config=LongHorizonConfig(n_samples=256, epochs=500, seed=seed),
                                   grid_size=9 if seed == 0 else 0)
            for seed in LONG_HORIZON_SEEDS}


def test_approach_scenario_trades_task_against_future_penalties() -> None:
    from tutorial_rl.aliasing import approach_scenario

    s = approach_scenario()
    # the first action's safe set ends at the braking distance u1 = 0.45, inside the box
    assert np.allclose(s.project(np.array([[1.0, 0.0], [1.0, 2.0]])).numpy(),
                       [[0.45, 0.0], [0.45, 1.0]], atol=1e-5)
    u1 = np.linspace(-0.2, 0.45, 14)
    task, future, interventions = s.rollout(np.stack([u1, 0 * u1], -1))
    assert np.all(np.diff(task) > 0)  # accelerating helps the task ...
    assert np.all(np.diff(future) > -1e-12) and future[-1] > 2 * future[0]  # ... and costs later
    assert np.all(interventions > 0)
    again = s.rollout(np.stack([u1, 0 * u1], -1))
    assert all(np.array_equal(a, b) for a, b in zip(again, (task, future, interventions),
                                                     strict=True))


@pytest.mark.parametrize("seed", LONG_HORIZON_SEEDS)
def test_penalty_critic_sees_the_future_penalties_the_per_sample_loss_misses(long_horizon,
                                                                               seed: int) -> None:
    out = long_horizon[seed].outcomes
    psl, penc, se = out["sp_per_sample"], out["sp_penalty_critic"], out["se_penalty"]
    assert psl.applied[0] > 0.449  # up to the face: the fastest safe approach
    for mitigated in (penc, se):
        assert mitigated.applied[0] < 0.0  # braked today
        assert mitigated.future_penalty < 0.6 * psl.future_penalty
        assert mitigated.penalised > psl.penalised + 0.15
        assert mitigated.task < psl.task  # the price of braking early: the trade α sets
    # the penalty critic and the SE penalty follow the same gradient (eq-mit-same-gradient)
    assert abs(penc.penalised - se.penalised) < 0.05


def test_fitted_penalty_critic_follows_the_gradient_decomposition(long_horizon) -> None:
    from tutorial_rl.aliasing import decomposition_check

    result = long_horizon[0]
    c = decomposition_check(result, DECOMPOSITION_POINTS)
    assert c["rank"].tolist() == [2, 2, 1, 1, 0, 0]
    # the immediate part is exactly −2α(ũ − Φ): zero inside, the full pull outside
    assert np.all(c["immediate"][:2] == 0)
    assert np.all(np.linalg.norm(c["immediate"][2:], axis=1) > 1.5)
    # the predicted long-term part Jᵀ∇F lies in range(J) exactly (zero at the vertex)
    assert np.allclose(c["predicted"][4:], 0.0, atol=1e-12)
    predicted = c["immediate"] + c["predicted"]
    error = np.linalg.norm(c["gradient"] - predicted, axis=1) / np.linalg.norm(predicted, axis=1)
    assert np.all(error[2:] < 0.2)  # outside: the fitted gradient is the decomposition's
    # inside: the fitted gradient is the long-term part, in the direction of Jᵀ∇F (braking)
    long_term, jf = c["long_term"][:2], c["predicted"][:2]
    norms = np.linalg.norm(long_term, axis=1) * np.linalg.norm(jf, axis=1)
    cosine = (long_term * jf).sum(1) / norms
    assert np.all(cosine > 0.9) and np.all(jf[:, 0] < 0)
    # the fitted long-term part leaks little outside range(J) (exact critics: none)
    leak = c["normal"][2:] / np.linalg.norm(c["immediate"][2:], axis=1)
    assert np.all(leak < 0.15)


def test_long_horizon_figure_draws(long_horizon) -> None:
    from tutorial_rl.aliasing.plots import plot_long_horizon

    axes = plot_long_horizon(long_horizon[0])
    assert len(axes) == 2 and len(axes[1].get_lines()) == 6
    plt.close("all")
    with pytest.raises(ValueError, match="grid"):
        plot_long_horizon(long_horizon[1])


def test_epoch_sweep_writes_reads_and_draws(tmp_path) -> None:
    from tutorial_rl.aliasing.epoch_sweep import load_sweep, run_sweep, summarise
    from tutorial_rl.aliasing.plots import plot_epoch_sweep
    from tutorial_rl.provenance import invocations

    small = ExperimentConfig(n_samples=128, grid_size=5)
    written = run_sweep(tmp_path / "sweep", epochs=(10, 20), seeds=(0,), config=small)
    frame = load_sweep(tmp_path / "sweep")
    assert frame.equals(written) and len(frame) == 2
    assert set(frame.columns) == {"epochs", "seed", "rmse", "ratio", "escaped", "value"}
    table = summarise(frame)
    assert table["seeds"].tolist() == [1, 1] and table.index.tolist() == [10, 20]
    record = invocations(tmp_path / "sweep")[-1]
    assert record["epochs"] == [10, 20] and record["config"]["n_samples"] == 128
    assert len(plot_epoch_sweep(frame, best_safe_value=1.0)) == 2
    plt.close("all")
    with pytest.raises(FileNotFoundError, match="epoch_sweep"):
        load_sweep(tmp_path / "missing")

"""The reference controllers and ``tutorial-rl reference`` (the yardsticks of Chapter 8)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tutorial_rl.controllers import CONTROLLERS, controller_policy, lqr_gain, zero_policy
from tutorial_rl.experiments.cli import main
from tutorial_rl.experiments.reference_runs import evaluate_references
from tutorial_rl.systems import pendulum_linear_model, quadrotor_linear_model


@pytest.mark.parametrize("model, Q, R", [
    (pendulum_linear_model(), np.diag([1.0, 0.1]), np.array([[1e-3]])),
    (quadrotor_linear_model(), np.diag([1.0, 1, 1, 1, 1, 0.1]), np.eye(2)),
])
def test_lqr_gain_solves_the_discrete_riccati_equation(model, Q, R) -> None:
    A, B = model.A, model.B
    K = lqr_gain(A, B, Q, R)
    # Riccati recursion from P = Q, independently of scipy's solver, converges to the same gain
    P = Q.copy()
    for _ in range(20_000):
        K_i = np.linalg.solve(R + B.T @ P @ B, B.T @ P @ A)
        P_next = Q + A.T @ P @ (A - B @ K_i)
        if np.max(np.abs(P_next - P)) < 1e-12 * max(1.0, np.max(np.abs(P))):
            break
        P = P_next
    np.testing.assert_allclose(K, np.linalg.solve(R + B.T @ P @ B, B.T @ P @ A), rtol=1e-6,
                               atol=1e-8)
    # P solves the DARE and A − BK is stable
    residual = A.T @ P @ A - A.T @ P @ B @ np.linalg.solve(R + B.T @ P @ B, B.T @ P @ A) + Q - P
    assert np.max(np.abs(residual)) < 1e-6 * np.max(np.abs(P))
    assert np.max(np.abs(np.linalg.eigvals(A - B @ K))) < 1.0


def test_lqr_gain_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="shapes do not fit"):
        lqr_gain(np.eye(2), np.ones((2, 1)), np.eye(3), np.eye(1))


@pytest.mark.parametrize("env", list(CONTROLLERS))
def test_reference_controllers_stay_safe_behind_the_safeguard(env: str) -> None:
    result = evaluate_references(env, episodes=2, seed=1_000_000)
    for name in ("zero", "controller"):
        assert result[name]["constraint_violations"] == 0
        assert len(result[name]["returns"]) == 2
    # the controller is the better yardstick: it beats doing nothing on every task
    assert result["controller"]["mean"] > result["zero"]["mean"]


def test_without_the_safeguard_the_seeker_controller_hits_obstacles() -> None:
    """The PD-to-goal controller ignores the obstacles: the safeguard, not its design, keeps it
    safe (the appendix's point), and a bad mode is refused by name."""
    result = evaluate_references("seeker", episodes=3, seed=2_000_000, mode="unsafe")
    assert result["controller"]["constraint_violations"] > 0
    with pytest.raises(ValueError, match="mode must be 'se' or 'unsafe'"):
        evaluate_references("seeker", episodes=1, mode="sp")


def test_policies_act_in_the_normalised_box() -> None:
    rng = np.random.default_rng(0)
    pendulum = controller_policy("pendulum")
    for obs in rng.uniform([-3, -8], [3, 8], size=(50, 2)):
        a = pendulum(obs)
        assert a.shape == (1,) and np.all(np.abs(a) <= 1.0)
    assert np.all(pendulum(np.zeros(2)) == 0.0)  # the upright equilibrium needs no torque
    quad = controller_policy("quadrotor")
    from tutorial_rl.envs.quadrotor import ACTION_MAP, MODEL

    hover = ACTION_MAP.to_normalized(MODEL.u_eq)
    np.testing.assert_allclose(quad(MODEL.x_eq), hover, atol=1e-6)  # hover at the equilibrium
    assert np.all(zero_policy(2)(np.ones(15)) == 0.0)
    with pytest.raises(ValueError, match="unknown env"):
        controller_policy("cartpole")


def test_reference_command_writes_json_with_provenance(tmp_path: Path, capsys) -> None:
    out = tmp_path / "reference"
    assert main(["reference", "--env", "seeker", "--episodes", "2", "--out", str(out)]) == 0
    assert main(["reference", "--env", "pendulum", "--episodes", "2", "--out", str(out)]) == 0
    data = json.loads((out / "reference.json").read_text())
    assert set(data) == {"seeker", "pendulum"}  # a second task is merged, not overwritten
    for entry in data.values():
        assert entry["zero"]["mean"] == pytest.approx(np.mean(entry["zero"]["returns"]))
        assert entry["controller"]["mean"] == pytest.approx(np.mean(entry["controller"]["returns"]))
    prov = json.loads((out / "provenance.json").read_text())
    assert "reference --env pendulum" in prov["command"] and len(prov["previous_invocations"]) == 1
    assert "pd-to-goal" in capsys.readouterr().out
    assert main(["reference", "--env", "seeker", "--episodes", "0", "--out", str(out)]) == 2


def test_noise_rollouts_start_from_the_zero_action_and_show_the_crash_incentive() -> None:
    """σ = 0 is exactly the zero action of the unsafe yardstick (same start states, same
    penalty); on the quadrotor, whose zero action also leaves the state limits, a noisy policy
    ends its episodes sooner and scores *better*: the incentive the appendix explains."""
    from tutorial_rl.experiments.reference_runs import unsafe_noise_rollouts

    rows = unsafe_noise_rollouts("quadrotor", (0.0, 0.6), episodes=3, seed=2_000_000)
    zero = evaluate_references("quadrotor", episodes=3, seed=2_000_000, mode="unsafe")["zero"]
    assert rows[0]["mean_return"] == pytest.approx(zero["mean"], abs=1e-12)
    assert rows[0]["terminated"] == 3  # without a safeguard, doing nothing crashes too
    assert rows[1]["mean_length"] < rows[0]["mean_length"]
    assert rows[1]["mean_return"] > rows[0]["mean_return"]
    with pytest.raises(ValueError, match="noise_stds must be finite and >= 0"):
        unsafe_noise_rollouts("quadrotor", (-0.1,))
    with pytest.raises(ValueError, match="unknown env 'cartpole'"):
        unsafe_noise_rollouts("cartpole")

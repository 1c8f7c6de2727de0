"""Tests of the SE-RL projection safeguard (Chapter 3, chapters/03_tasks.py; DESIGN.md §3, §5)."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

import tutorial_rl  # noqa: F401  (registers the environments)
from tutorial_rl.envs import ENV_IDS, pendulum, quadrotor
from tutorial_rl.envs.pendulum import pendulum_safe_set
from tutorial_rl.envs.quadrotor import quadrotor_safe_set
from tutorial_rl.projection import project_polytope
from tutorial_rl.safeguards import (
    INTERVENTION_RTOL,
    ProjectionSafeguard,
    least_violating_action,
    random_policy_safety,
)
from tutorial_rl.systems import pendulum_linear_model, quadrotor_linear_model

IDS = list(ENV_IDS)
PENDULUM, QUADROTOR, SEEKER = IDS
STATE_LIMITS = {
    PENDULUM: pendulum_linear_model().state_box,
    QUADROTOR: quadrotor_linear_model().state_box,
}
SAFE_SETS = {PENDULUM: pendulum_safe_set, QUADROTOR: quadrotor_safe_set}
#: Physical action bounds (float64) of the two envs with normalised actions, and their maps.
BOUNDS64 = {key: (box.lower, box.upper) for key, box in (
    (PENDULUM, pendulum_linear_model().input_box), (QUADROTOR, quadrotor_linear_model().input_box)
)}
ACTION_MAPS = {PENDULUM: pendulum.ACTION_MAP, QUADROTOR: quadrotor.ACTION_MAP}
INFO_KEYS = {"unsafe_action", "safe_action", "intervened", "projection_distance", "safe_set_empty"}


@pytest.mark.parametrize("env_id", IDS)
def test_random_actions_never_violate_with_the_safeguard(env_id: str) -> None:
    steps = 3000 if env_id == SEEKER else 2000
    safe = random_policy_safety(env_id, steps=steps, seed=0, safeguard=True)
    assert safe["violations"] == 0 and safe["safe_set_empty"] == 0
    assert safe["interventions"] > 0 and safe["steps"] == steps
    unsafe = random_policy_safety(env_id, steps=steps, seed=0, safeguard=False)
    assert unsafe["violations"] > 0 and unsafe["interventions"] == 0
    assert unsafe["episodes"] > safe["episodes"]  # unsafe episodes end early by violations


@pytest.mark.parametrize("env_id", IDS)
def test_info_keys_and_safe_action_is_the_projection(env_id: str) -> None:
    env = ProjectionSafeguard(gym.make(env_id))
    env.reset(seed=1)
    rng = np.random.default_rng(1)
    space = env.action_space
    seen_intervention = False
    for _ in range(30):
        A, b = env.unwrapped.safe_action_set()
        # twice the box: the projection also brings actions outside the box back into it
        centre, half = (space.high + space.low) / 2, (space.high - space.low) / 2
        action = centre + 2 * half * rng.uniform(-1, 1, space.shape)
        expected = project_polytope(*(torch.from_numpy(x) for x in (action, A, b)))
        _, _, terminated, truncated, info = env.step(action)
        assert INFO_KEYS <= set(info)
        np.testing.assert_array_equal(info["unsafe_action"], action)
        np.testing.assert_allclose(info["safe_action"], expected.numpy(), atol=1e-12)
        assert np.all(A @ info["safe_action"] <= b + 1e-9)
        distance = np.linalg.norm(action - info["safe_action"])
        assert info["projection_distance"] == pytest.approx(distance, abs=1e-12)
        assert info["intervened"] == (distance > INTERVENTION_RTOL * (1 + np.abs(action).max()))
        seen_intervention |= info["intervened"]
        if terminated or truncated:
            env.reset()
    assert seen_intervention


@pytest.mark.parametrize("env_id", IDS)
def test_penalty_subtracts_exactly_penalty_times_squared_distance(env_id: str) -> None:
    plain, penalised = (ProjectionSafeguard(gym.make(env_id), penalty=p) for p in (0.0, 0.7))
    plain.reset(seed=2)
    penalised.reset(seed=2)
    rng = np.random.default_rng(2)
    for _ in range(20):
        action = rng.uniform(plain.action_space.low, plain.action_space.high)
        _, r0, term, trunc, info0 = plain.step(action)
        _, r1, *_, info1 = penalised.step(action)
        assert info0["projection_distance"] == info1["projection_distance"]
        assert r1 == pytest.approx(r0 - 0.7 * info0["projection_distance"] ** 2, rel=0, abs=1e-12)
        if term or trunc:
            break


def test_make_vec_with_the_safeguard_as_wrapper() -> None:
    envs = gym.make_vec(
        "tutorial_rl/Seeker-v0", num_envs=2, vectorization_mode="sync",
        wrappers=[ProjectionSafeguard],
    )
    obs, _ = envs.reset(seed=0)
    assert obs.shape == (2, 15)
    for _ in range(20):
        obs, reward, terminated, truncated, info = envs.step(envs.action_space.sample())
        assert obs.shape == (2, 15) and reward.shape == (2,)
        assert info["safe_action"].shape == (2, 2) and info["intervened"].dtype == bool
        assert not info["constraint_violation"].any()
    envs.close()


@pytest.mark.parametrize("env_id", IDS)
def test_third_party_agent_uses_the_wrapped_env_as_a_black_box(env_id: str) -> None:
    """A minimal agent that knows only the gymnasium API runs an episode unchanged."""

    class RandomAgent:
        def __init__(self, action_space: gym.spaces.Box, seed: int) -> None:
            self.space = action_space
            self.space.seed(seed)

        def act(self, observation: np.ndarray) -> np.ndarray:
            return self.space.sample()

    env = ProjectionSafeguard(gym.make(env_id))
    agent = RandomAgent(env.action_space, seed=0)
    assert env.action_space == gym.make(env_id).action_space
    obs, _ = env.reset(seed=0)
    total, done = 0.0, False
    while not done:
        obs, reward, terminated, truncated, info = env.step(agent.act(obs))
        assert obs in env.observation_space and math.isfinite(reward)
        assert not info["constraint_violation"]
        total += reward
        done = terminated or truncated
    assert math.isfinite(total)


@pytest.mark.parametrize("env_id", IDS)
@pytest.mark.parametrize(
    ("bad", "message"), [("shape", "shape"), (math.nan, "finite"), (-math.inf, "finite")]
)
def test_wrapper_rejects_bad_actions(env_id: str, bad: object, message: str) -> None:
    env = ProjectionSafeguard(gym.make(env_id))
    env.reset(seed=0)
    action = env.action_space.sample().astype(np.float64)
    if bad == "shape":
        action = action[None, :]
    else:
        action[-1] = bad
    with pytest.raises(ValueError, match=message):
        env.step(action)


def test_wrapper_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="safe_action_set"):
        ProjectionSafeguard(gym.make("Pendulum-v1"))
    with pytest.raises(ValueError, match="penalty"):
        ProjectionSafeguard(gym.make(SEEKER), penalty=-1.0)
    with pytest.raises(ValueError, match="method"):
        ProjectionSafeguard(gym.make(SEEKER), method="magic")


def test_seeker_that_cannot_stop_gets_the_braking_fallback() -> None:
    env = ProjectionSafeguard(gym.make(SEEKER))
    env.reset(seed=0)
    seeker = env.unwrapped
    seeker.position, seeker.velocity = np.array([7.0, 0.0]), np.array([4.0, 0.0])  # wall at 9.8
    A, b = seeker.safe_action_set()
    _, _, terminated, _, info = env.step(np.array([1.0, 0.0]))
    assert info["safe_set_empty"] and info["intervened"]
    np.testing.assert_array_equal(info["safe_action"], [-1.0, -0.0])
    assert terminated and info["constraint_violation"]  # too late to stop: the fallback brakes


@pytest.mark.parametrize("env_id", [PENDULUM, QUADROTOR])
def test_outside_the_rci_set_the_least_violating_action_is_used(env_id: str) -> None:
    env = ProjectionSafeguard(gym.make(env_id))
    env.reset(seed=0)
    inner = env.unwrapped
    limits = STATE_LIMITS[env_id]
    rng = np.random.default_rng(0)
    while True:  # a state inside the limits but outside the RCI set
        inner.state = rng.uniform(limits.lower, limits.upper)
        if inner.safe_set_is_empty():
            break
    safe_set = SAFE_SETS[env_id]()
    b = safe_set.offsets(inner.state)[0]  # the real offsets, not the empty-set marker
    box = inner.action_space
    # computed by hand in physical units; the env's fallback is its normalised image
    physical = least_violating_action(safe_set.action_rows, b, *BOUNDS64[env_id])
    expected = ACTION_MAPS[env_id].to_normalized(physical)
    np.testing.assert_allclose(inner.fallback_action(), expected, atol=1e-12)
    _, _, _, _, info = env.step(box.sample())
    assert info["safe_set_empty"]
    assert box.contains(info["safe_action"].astype(np.float32))
    np.testing.assert_allclose(info["safe_action"], expected, atol=1e-6)
    np.testing.assert_allclose(info["physical_action"], physical, atol=1e-6)


@pytest.mark.parametrize("env_id", [PENDULUM, QUADROTOR])
def test_safeguard_projects_in_normalised_units_onto_the_physical_safe_set(env_id: str) -> None:
    """The applied physical action is safe, and it is the physical projection (uniform scale)."""
    env = ProjectionSafeguard(gym.make(env_id))
    env.reset(seed=6)
    action_map = ACTION_MAPS[env_id]
    rng = np.random.default_rng(6)
    for _ in range(40):
        A_phys, b_phys = env.unwrapped.safe_action_set_physical()
        action = rng.uniform(-1.5, 1.5, env.action_space.shape)
        physical = project_polytope(*(torch.from_numpy(x) for x in (
            action_map.to_physical(action), A_phys, b_phys))).numpy()
        _, _, terminated, truncated, info = env.step(action)
        applied = info["physical_action"]
        np.testing.assert_allclose(applied, action_map.to_physical(info["safe_action"]),
                                   rtol=0, atol=1e-12)
        np.testing.assert_allclose(applied, physical, rtol=0, atol=1e-9)
        assert np.all(A_phys @ applied <= b_phys + 1e-9)
        scale = action_map.scale[0]  # distances: normalised units = physical / scale
        physical_distance = np.linalg.norm(action_map.to_physical(action) - applied)
        assert info["projection_distance"] == pytest.approx(physical_distance / scale, abs=1e-9)
        if terminated or truncated:
            env.reset()


@pytest.mark.parametrize("env_id", [PENDULUM, QUADROTOR])
def test_exact_projection_matches_the_containment_reference(env_id: str) -> None:
    env = ProjectionSafeguard(gym.make(env_id))
    env.reset(seed=4)
    rng = np.random.default_rng(4)
    space = env.action_space
    for _ in range(3):
        action = rng.uniform(space.low, space.high)
        safe, empty = env.safe_action(action)
        assert not empty
        reference = env.unwrapped.project_reference(action)
        np.testing.assert_allclose(safe, reference, atol=1e-4)
        assert np.all(np.abs(reference) <= 1 + 1e-6)  # normalised, like the safe action
        env.step(action)


def test_least_violating_action_is_feasible_when_the_set_is_not_empty() -> None:
    A = np.array([[1.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    b = np.array([0.5, 0.0, 0.0])
    u = least_violating_action(A, b, -np.ones(2), np.ones(2))
    assert np.all(A @ u <= b + 1e-9)
    # an empty set: u >= 0.6 and u <= 0.4; the least violating point is in the middle
    u = least_violating_action(np.array([[1.0], [-1.0]]), np.array([0.4, -0.6]), [-1.0], [1.0])
    assert u == pytest.approx([0.5])


def test_cvxpylayers_method_gives_the_same_safe_action() -> None:
    exact, reference = (ProjectionSafeguard(gym.make(SEEKER), method=m)
                        for m in ("exact", "cvxpylayers"))
    exact.reset(seed=5)
    reference.reset(seed=5)
    rng = np.random.default_rng(5)
    for _ in range(5):
        action = rng.uniform(-2, 2, 2)  # often outside the box, so the projection is needed
        u_exact, _ = exact.safe_action(action)
        u_reference, _ = reference.safe_action(action)
        np.testing.assert_allclose(u_exact, u_reference, atol=1e-5)
        exact.step(action)
        reference.step(u_exact)  # keep both on the same trajectory

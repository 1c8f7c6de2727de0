"""Tests of the course environments (Chapter 3, chapters/03_tasks.py; DESIGN.md §5)."""

from __future__ import annotations

import copy
import math
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import tutorial_rl  # noqa: F401  (registers the environments)
from tutorial_rl.envs import ENV_IDS, pendulum, quadrotor
from tutorial_rl.envs import seeker as seeker_module
from tutorial_rl.envs.seeker import (
    AGENT_RADIUS,
    GOAL_RADIUS,
    MAP_HALF_WIDTH,
    MAX_RADIUS,
    MIN_RADIUS,
    WALL,
    braking_action,
    braking_box,
    safe_action_set,
)
from tutorial_rl.systems import PendulumParameters, QuadrotorParameters

IDS = list(ENV_IDS)
PENDULUM, QUADROTOR, SEEKER = IDS
#: The envs that map normalised actions to physical units (the seeker's are physical already).
ACTION_MAPS = {PENDULUM: pendulum.ACTION_MAP, QUADROTOR: quadrotor.ACTION_MAP}


def rollout(env_id: str, seed: int, steps: int) -> tuple[list[np.ndarray], list[float]]:
    env = gym.make(env_id)
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    observations, rewards = [obs], []
    low, high = env.action_space.low, env.action_space.high
    for _ in range(steps):
        obs, reward, terminated, truncated, _ = env.step(rng.uniform(low, high))
        observations.append(obs)
        rewards.append(reward)
        if terminated or truncated:
            obs, _ = env.reset()
            observations.append(obs)
    return observations, rewards


@pytest.mark.parametrize("env_id", IDS)
def test_registered_with_episode_length(env_id: str) -> None:
    env = gym.make(env_id)
    assert env.spec is not None and env.spec.max_episode_steps == ENV_IDS[env_id]
    assert {"safe_action_set", "fallback_action"} <= set(dir(env.unwrapped))


@pytest.mark.parametrize("env_id", IDS)
def test_check_env_passes_without_warnings(env_id: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every warning fails the test; nothing is exempt
        check_env(gym.make(env_id).unwrapped)


@pytest.mark.parametrize("env_id", IDS)
def test_action_space_is_normalised(env_id: str) -> None:
    space = gym.make(env_id).action_space
    assert isinstance(space, gym.spaces.Box) and space.dtype == np.float32
    assert np.all(space.low == -1.0) and np.all(space.high == 1.0)


@pytest.mark.parametrize("env_id", IDS)
def test_same_seed_same_rollout(env_id: str) -> None:
    obs_a, rew_a = rollout(env_id, seed=7, steps=50)
    obs_b, rew_b = rollout(env_id, seed=7, steps=50)
    assert all(np.array_equal(a, b) for a, b in zip(obs_a, obs_b, strict=True))
    assert rew_a == rew_b
    obs_c, _ = rollout(env_id, seed=8, steps=50)
    assert not np.array_equal(obs_a[0], obs_c[0])


@pytest.mark.parametrize("env_id", IDS)
def test_render_gives_small_uint8_frames(env_id: str) -> None:
    env = gym.make(env_id, render_mode="rgb_array")
    env.reset(seed=0)
    env.step(env.action_space.sample())
    frame = env.render()
    assert frame.shape == (240, 240, 3) and frame.dtype == np.uint8
    assert len(np.unique(frame.reshape(-1, 3), axis=0)) > 2  # something was drawn


@pytest.mark.parametrize("env_id", IDS)
@pytest.mark.parametrize(
    ("bad", "message"),
    [("shape", "shape"), (math.nan, "finite"), (math.inf, "finite"), ("text", "numeric")],
)
def test_bad_actions_raise_value_error(env_id: str, bad: object, message: str) -> None:
    env = gym.make(env_id)
    env.reset(seed=0)
    good = env.action_space.sample()
    if bad == "shape":
        action = np.concatenate([good, good])
    elif bad == "text":
        action = "fast"
    else:
        action = good.copy()
        action[0] = bad
    with pytest.raises(ValueError, match=message):
        env.step(action)


@pytest.mark.parametrize("env_id", IDS)
def test_actions_outside_the_box_are_clipped(env_id: str) -> None:
    envs = [gym.make(env_id).unwrapped for _ in range(2)]
    for env in envs:
        env.reset(seed=3)
    far = np.where(np.arange(envs[0].action_space.shape[0]) % 2 == 0, 1e3, -1e3)
    edge = np.sign(far)
    out_far, out_edge = envs[0].step(far), envs[1].step(edge)
    assert np.array_equal(out_far[0], out_edge[0]) and out_far[1] == out_edge[1]
    if env_id in ACTION_MAPS:  # the clipped action is the physical bound, exactly
        action_map = ACTION_MAPS[env_id]
        bound = np.where(far > 0, action_map.high, action_map.low)
        np.testing.assert_array_equal(out_far[-1]["physical_action"], bound)


@pytest.mark.parametrize("env_id", IDS)
def test_info_reports_constraint_violation(env_id: str) -> None:
    env = gym.make(env_id)
    env.reset(seed=0)
    info = env.step(env.action_space.sample())[-1]
    keys = {"constraint_violation"}
    if env_id != SEEKER:
        keys |= {"state_limit_violation", "outside_rci"}
        assert info["physical_action"].shape == env.action_space.shape
        assert info["physical_action"].dtype == np.float64
    assert keys <= set(info) and all(isinstance(info[k], bool) for k in keys)


@pytest.mark.parametrize("env_id", IDS)
def test_safe_action_set_shapes_and_start_is_safe(env_id: str) -> None:
    env = gym.make(env_id).unwrapped
    for seed in range(5):
        env.reset(seed=seed)
        A, b = env.safe_action_set()
        m = env.action_space.shape[0]
        assert A.ndim == 2 and A.shape[1] == m and b.shape == (A.shape[0],)
        assert A.dtype == np.float64 and b.dtype == np.float64
        # the start is safe: some action satisfies every constraint (the fallback, here)
        assert np.all(A @ env.fallback_action() <= b + 1e-9)


@pytest.mark.parametrize("env_id", [PENDULUM, QUADROTOR])
def test_safe_action_set_is_the_physical_set_in_normalised_coordinates(env_id: str) -> None:
    """a is in safe_action_set() iff u = to_physical(a) is in safe_action_set_physical()."""
    env, action_map = gym.make(env_id).unwrapped, ACTION_MAPS[env_id]
    rng = np.random.default_rng(0)
    for seed in range(5):
        env.reset(seed=seed)
        A, b = env.safe_action_set()
        A_phys, b_phys = env.safe_action_set_physical()
        a = rng.uniform(-1.2, 1.2, (500, A.shape[1]))
        u = action_map.to_physical(a)
        slack_norm, slack_phys = b - a @ A.T, b_phys - u @ A_phys.T
        np.testing.assert_allclose(slack_norm, slack_phys, rtol=0, atol=1e-12)
        clear = np.all(np.abs(slack_phys) > 1e-9, axis=1)
        np.testing.assert_array_equal(np.all(slack_norm >= 0, axis=1)[clear],
                                      np.all(slack_phys >= 0, axis=1)[clear])
        # the physical set lies in the physical box, the normalised one in [-1, 1]^m
        assert np.all(np.abs(a[np.all(slack_norm >= 1e-12, axis=1)]) <= 1 + 1e-12)
        # the env applies exactly to_physical(a) for an action inside the box
        inside = a[np.all(np.abs(a) <= 1, axis=1)][0]
        info = env.step(inside)[-1]
        np.testing.assert_allclose(info["physical_action"], action_map.to_physical(inside),
                                   rtol=0, atol=1e-15)


# --- pendulum ----------------------------------------------------------------------------------


def test_pendulum_observation_reward_and_one_step_by_hand() -> None:
    p = PendulumParameters()
    assert (p.mass, p.length, p.gravity, p.dt, p.max_torque) == (1.0, 1.0, 9.81, 0.05, 8.0)
    env = gym.make(PENDULUM).unwrapped
    env.reset(seed=0)
    env.state = np.array([0.1, -0.3])
    noise = copy.deepcopy(env.np_random).uniform(-0.1, 0.1, 2)  # the draw step() will make
    obs, reward, terminated, truncated, info = env.step(np.array([0.25]))  # u = 8 · 0.25 = 2 N m
    assert info["physical_action"].tolist() == [2.0] and env.last_action == 2.0
    theta_dot = -0.3 + 0.05 * (3 * 9.81 / 2 * math.sin(0.1) + 3.0 * 2.0)
    theta = 0.1 + 0.05 * theta_dot
    expected = np.array([theta, theta_dot]) + noise
    np.testing.assert_allclose(env.state, expected, rtol=0, atol=1e-14)
    np.testing.assert_allclose(obs, expected.astype(np.float32))
    assert reward == pytest.approx(-(expected[0] ** 2 + 0.1 * expected[1] ** 2 + 0.001 * 4.0))
    assert not terminated and not truncated and not info["state_limit_violation"]


def test_pendulum_wraps_theta_and_terminates_outside_the_limits() -> None:
    env = gym.make(PENDULUM).unwrapped
    env.reset(seed=0)
    env.state = np.array([3.3, 0.0])
    obs, reward, terminated, _, info = env.step(np.array([0.0]))
    assert -math.pi <= obs[0] < math.pi and obs[0] == pytest.approx(env.state[0] - 2 * math.pi)
    assert reward == pytest.approx(-(obs[0] ** 2 + 0.1 * obs[1] ** 2), rel=1e-6)
    assert terminated and info["state_limit_violation"] and info["constraint_violation"]


# --- quadrotor ---------------------------------------------------------------------------------


def test_quadrotor_vertical_step_and_reward_by_hand() -> None:
    p = QuadrotorParameters()
    env = gym.make(QUADROTOR).unwrapped
    env.reset(seed=0)
    env.state = np.array([0.0, 1.0, 0.0, 0.2, 0.0, 0.0])
    w = copy.deepcopy(env.np_random).uniform([0.0, 0.0], [0.08, 0.08])
    a = np.array([0.5, 0.5])
    obs, reward, _, _, info = env.step(a)
    # thrust per rotor: box centre + half-width · a, by hand from the thrust bounds
    u = (p.thrust_min + p.thrust_max) / 2 + (p.thrust_max - p.thrust_min) / 2 * 0.5
    assert u == pytest.approx(8.15618, abs=1e-12)
    np.testing.assert_allclose(info["physical_action"], [u, u], rtol=0, atol=1e-14)
    # the vertical channel is a double integrator with constant acceleration over the step
    accel = -9.81 + 0.89 / 1.4 * 2 * u + w[1]
    assert env.state[3] == pytest.approx(0.2 + 0.05 * accel, abs=1e-12)
    assert env.state[1] == pytest.approx(1.0 + 0.05 * 0.2 + 0.05**2 / 2 * accel, abs=1e-12)
    np.testing.assert_array_equal(obs, env.state.astype(np.float32))
    effort = 0.5  # mean |a|: the normalised action itself
    distance = np.linalg.norm(env.state - np.array([0.0, 1.0, 0.0, 0.0, 0.0, 0.0]))
    assert reward == pytest.approx(-1 + math.exp(-(distance + 0.01 * effort)))
    assert not info["state_limit_violation"]


def test_quadrotor_hover_is_the_zero_reward_equilibrium() -> None:
    env = gym.make(QUADROTOR).unwrapped
    env.reset(seed=0)
    p = QuadrotorParameters()
    env.state = p.equilibrium_state.copy()
    env.np_random = np.random.default_rng(0)
    _, reward, *_ = env.step(np.zeros(2))  # a = 0: the box centre, within 4e-7 of hover thrust
    np.testing.assert_allclose(env.last_action, p.equilibrium_input, atol=1e-6)
    # no effort term at a = 0, so only the disturbance (<= 0.08 m/s² for 0.05 s) costs
    drift = np.linalg.norm(env.state - p.equilibrium_state)
    assert drift < 0.01 and reward == pytest.approx(-1 + math.exp(-drift), abs=1e-8)


# --- seeker ------------------------------------------------------------------------------------


def test_seeker_observation_layout_dynamics_and_reward() -> None:
    env = gym.make(SEEKER).unwrapped
    obs, _ = env.reset(seed=1)
    assert obs.shape == (15,) and obs.dtype == np.float32
    expected = np.concatenate([env.position, env.velocity, env.goal, env.obstacles.ravel()])
    np.testing.assert_array_equal(obs, expected.astype(np.float32))
    p, v, a = env.position.copy(), env.velocity.copy(), np.array([0.5, -0.25])
    A, b = env.safe_action_set()
    assert np.all(A @ a <= b)
    obs, reward, *_ = env.step(a)
    np.testing.assert_allclose(env.velocity, v + a)
    np.testing.assert_allclose(env.position, p + v + a)
    assert reward == pytest.approx(-1 + math.exp(-np.linalg.norm(env.position - env.goal) / 10))


def test_seeker_layouts_follow_the_design() -> None:
    env = gym.make(SEEKER).unwrapped
    for seed in range(200):
        env.reset(seed=seed)
        start, goal, obstacles = env.position, env.goal, env.obstacles
        assert np.linalg.norm(goal - start) >= 5.0
        assert np.all(np.abs(start) <= WALL) and np.all(np.abs(goal) + GOAL_RADIUS <= 10)
        c0 = obstacles[0, :2]
        fraction = (c0 - start) @ (goal - start) / np.sum((goal - start) ** 2)
        assert 0.4 <= fraction <= 0.6
        assert np.linalg.norm(start + fraction * (goal - start) - c0) < 1e-9  # on the segment
        for i, (x, y, r) in enumerate(obstacles):
            assert MIN_RADIUS <= r <= MAX_RADIUS
            assert abs(x) + r <= MAP_HALF_WIDTH and abs(y) + r <= MAP_HALF_WIDTH
            assert np.hypot(x - start[0], y - start[1]) > r + AGENT_RADIUS
            assert np.hypot(x - goal[0], y - goal[1]) > r + GOAL_RADIUS
            for xo, yo, ro in obstacles[:i]:
                assert np.hypot(x - xo, y - yo) > r + ro


def test_seeker_terminates_at_goal_and_on_collision() -> None:
    env = gym.make(SEEKER).unwrapped
    env.reset(seed=0)
    env.position, env.velocity = env.goal - np.array([0.5, 0.0]), np.zeros(2)
    _, _, terminated, _, info = env.step(np.array([0.4, 0.0]))
    assert terminated and info["goal_reached"] and not info["constraint_violation"]
    env.reset(seed=0)
    env.position, env.velocity = np.array([WALL - 0.5, 0.0]), np.array([1.0, 0.0])
    obs, _, terminated, _, info = env.step(np.array([1.0, 0.0]))
    assert terminated and info["collision_wall"] and info["constraint_violation"]
    assert obs[0] == pytest.approx(WALL) and obs[2] == 0.0  # stopped at the wall
    env.reset(seed=0)
    c, r = env.obstacles[0, :2], env.obstacles[0, 2]
    env.position, env.velocity = c - np.array([r + 1.0, 0.0]), np.array([1.0, 0.0])
    _, _, terminated, _, info = env.step(np.array([1.0, 0.0]))
    assert terminated and info["collision_obstacle"]


def _invariant_holds(p: np.ndarray, v: np.ndarray, obstacles: np.ndarray) -> bool:
    lo, hi = braking_box(p, v)
    if np.any(hi > WALL) or np.any(lo < -WALL):
        return False
    closest = np.clip(obstacles[:, :2], lo, hi)
    return bool(np.all(np.hypot(*(obstacles[:, :2] - closest).T) >= obstacles[:, 2] + AGENT_RADIUS))


def _segment_clear(p: np.ndarray, q: np.ndarray, obstacles: np.ndarray) -> bool:
    for x, y, r in obstacles:
        c, d = np.array([x, y]), q - p
        t = np.clip((c - p) @ d / (d @ d), 0, 1) if d @ d > 0 else 0.0
        if np.linalg.norm(p + t * d - c) < r + AGENT_RADIUS:
            return False
    return bool(np.all(np.abs(q) <= WALL))


def test_seeker_safe_set_is_invariant_and_collision_free() -> None:
    """Soundness and recursive feasibility of the braking-distance set on random states."""
    rng = np.random.default_rng(0)
    obstacles = np.array([[0.0, 0.0, 2.0], [5.0, 4.0, 1.0], [-6.0, 5.0, 0.5]])
    checked = 0
    while checked < 300:
        p, v = rng.uniform(-9.8, 9.8, 2), rng.uniform(-4, 4, 2)
        if not _invariant_holds(p, v, obstacles):
            continue
        checked += 1
        A, b = safe_action_set(p, v, obstacles)
        assert np.all(A @ braking_action(v) <= b)  # (i) braking is always available
        actions = rng.uniform(-1, 1, (200, 2))
        for a in actions[np.all(actions @ A.T <= b, axis=1)]:
            p_next, v_next = p + v + a, v + a
            assert _segment_clear(p, p_next, obstacles)  # (ii) no collision in this step
            assert _invariant_holds(p_next, v_next, obstacles)  # (iii) safe next state


def test_seeker_safe_set_is_not_needlessly_small() -> None:
    far = np.array([[9.0, 9.0, 0.2]])
    A, b = safe_action_set(np.zeros(2), np.zeros(2), far)
    assert A.shape == (4, 2)  # at rest in open space: the whole acceleration box
    # speed 3 towards a wall 3.5 away: need s + D(s) = 3 s - 3 <= 3.5 for s = 3 + a in [2, 3),
    # i.e. exactly a <= -5/6
    A, b = safe_action_set(np.array([WALL - 3.5, 0.0]), np.array([3.0, 0.0]), far)
    assert np.all(A @ np.array([-0.84, 0.0]) <= b) and not np.all(A @ np.array([-0.83, 0.0]) <= b)


def test_seeker_stopping_distance_matches_simulated_braking() -> None:
    for speed in np.linspace(0, 6, 61):
        v, travelled = speed, 0.0
        while v > 0:
            v -= min(v, 1.0)
            travelled += v
        assert seeker_module.stopping_distance(np.array(speed)) == pytest.approx(travelled)

"""Rollouts and figures for chapter 3 (chapters/03_tasks.py): the three tasks and their safe sets.

:func:`rollout` runs any policy on a task (optionally behind the projection safeguard) and keeps
what the figures need: rendered frames, states, proposed and applied actions, and the safe action
set at every step. The plotting functions draw those records; none calls ``plt.show``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.patches import Circle

from tutorial_rl.players import frames_player
from tutorial_rl.plotting import plot_safe_set
from tutorial_rl.safeguards import ProjectionSafeguard
from tutorial_rl.style import (
    CONE_COLOR,
    LEGEND_SIZE,
    PROJECTION_COLOR,
    SAFE_COLOR,
    SMALL_SIZE,
    TITLE_SIZE,
    UNSAFE_COLOR,
)

Policy = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def random_policy(action_space: gym.spaces.Box) -> Policy:
    """Uniformly random actions from the box: the policy of the chapter's safety experiment."""
    low, high = action_space.low.astype(float), action_space.high.astype(float)
    return lambda _obs, rng: rng.uniform(low, high)


@dataclass
class Rollout:
    """What one episode left behind (all arrays have one row per step)."""

    env_id: str
    observations: np.ndarray
    proposed_actions: np.ndarray
    applied_actions: np.ndarray
    rewards: np.ndarray
    violations: np.ndarray
    safe_sets: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    frames: list[np.ndarray] = field(default_factory=list)

    @property
    def interventions(self) -> int:
        """Steps whose applied action differs from the proposed one."""
        return int(np.sum(np.any(np.abs(self.applied_actions - self.proposed_actions) > 1e-9,
                                 axis=1)))


def rollout(
    env_id: str,
    policy: Policy | None = None,
    steps: int = 100,
    seed: int = 0,
    safeguard: bool = True,
    render: bool = False,
    env_kwargs: dict[str, Any] | None = None,
) -> Rollout:
    """Run one episode (at most ``steps`` steps) and record it.

    :param policy: maps (observation, rng) to an action; uniformly random if ``None``.
    :param safeguard: wrap the task in :class:`~tutorial_rl.safeguards.ProjectionSafeguard`.
    :param render: keep an ``rgb_array`` frame of every state (first one included).
    """
    env = gym.make(env_id, render_mode="rgb_array" if render else None, **(env_kwargs or {}))
    if safeguard:
        env = ProjectionSafeguard(env)
    rng = np.random.default_rng(seed)
    policy = policy or random_policy(env.action_space)
    obs, _ = env.reset(seed=seed)
    record: dict[str, list[Any]] = {k: [] for k in
                                    ("obs", "proposed", "applied", "reward", "violation")}
    safe_sets, frames = [], []
    if render:
        frames.append(env.render())
    for _ in range(steps):
        safe_sets.append(env.unwrapped.safe_action_set())
        action = np.asarray(policy(obs, rng), dtype=float)
        record["obs"].append(obs)
        obs, reward, terminated, truncated, info = env.step(action)
        record["proposed"].append(action)
        record["applied"].append(info.get("safe_action", action))
        record["reward"].append(reward)
        record["violation"].append(bool(info["constraint_violation"]))
        if render:
            frames.append(env.render())
        if terminated or truncated:
            break
    env.close()
    return Rollout(env_id, np.array(record["obs"]), np.array(record["proposed"]),
                   np.array(record["applied"]), np.array(record["reward"]),
                   np.array(record["violation"]), safe_sets, frames)


def seconds_per_step(env: gym.Env, steps: int, seed: int = 0) -> float:
    """Mean wall time of ``env.step`` with uniformly random actions (sampled beforehand), resetting
    at episode ends: the per-step cost figure of Chapter 3."""
    env.reset(seed=seed)
    env.action_space.seed(seed)
    actions = [env.action_space.sample() for _ in range(steps)]
    start = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    return (time.perf_counter() - start) / steps


def filmstrip(frames: Sequence[np.ndarray], count: int = 6, axes: Sequence[Axes] | None = None,
              title: str = "") -> Sequence[Axes]:
    """``count`` evenly spaced frames side by side, labelled with their step."""
    index = np.linspace(0, len(frames) - 1, count).round().astype(int)
    if axes is None:
        _, axes = plt.subplots(1, count, figsize=(2.0 * count, 2.3))
    for ax, i in zip(axes, index, strict=True):
        ax.imshow(frames[i])
        ax.set_title(f"step {i}", fontsize=TITLE_SIZE)
        ax.axis("off")
    if title:
        axes[0].figure.suptitle(title)
    return axes


def animation_html(frames: Sequence[np.ndarray], fps: int = 10, every: int = 1,
                   alt: str = "Animation of the episode, one rendered frame per step") -> str:
    """A self-contained HTML/JavaScript player of the frames (works offline in the static book).

    See :func:`tutorial_rl.players.frames_player`; ``alt`` describes what the frames show.
    """
    return frames_player(frames, alt=alt, fps=fps, every=every, size=2.6)


def quadrotor_filmstrip(record: Rollout, count: int = 6, axes: Sequence[Axes] | None = None,
                        radius: float = 0.8, title: str = "") -> Sequence[Axes]:
    """``count`` evenly spaced steps of a 2-D quadrotor episode, each drawn large and to scale.

    Each panel is a window of ``radius`` metres around the quadrotor, in world coordinates
    ``x`` (m) and ``z`` (m): the body (blue), the two rotor thrusts as arrows along the thrust
    direction, scaled by the applied normalised thrust (orange), the hover target (green cross),
    the ground, and the tilt θ in the title. The rendered frames of the environment show the
    whole arena, where the vehicle is only a few pixels wide.
    """
    from tutorial_rl.systems.quadrotor import QuadrotorParameters

    target = QuadrotorParameters().equilibrium_state[:2]
    index = np.linspace(0, len(record.applied_actions) - 1, count).round().astype(int)
    if axes is None:
        _, axes = plt.subplots(1, count, figsize=(2.5 * count, 2.9), sharey=False,
                               layout="constrained")
    for ax, t in zip(axes, index, strict=True):
        x, z, theta = (record.observations[t, k] for k in (0, 1, 4))
        centre = np.array([x, z])
        axis = 0.3 * np.array([np.cos(theta), -np.sin(theta)])
        up = np.array([np.sin(theta), np.cos(theta)])
        ax.plot(*np.stack([centre - axis, centre + axis]).T, color=PROJECTION_COLOR, linewidth=4,
                solid_capstyle="round")
        for end, thrust in ((centre + axis, record.applied_actions[t, 0]),
                            (centre - axis, record.applied_actions[t, 1])):
            length = 0.08 + 0.3 * (thrust + 1) / 2  # normalised thrust in [-1, 1]
            ax.annotate("", xy=end + length * up, xytext=end,
                        arrowprops={"arrowstyle": "-|>", "color": CONE_COLOR, "linewidth": 2})
        ax.plot(*target, "+", color=SAFE_COLOR, markersize=12, markeredgewidth=2)
        ax.axhline(0.0, color="0.4", linewidth=2)
        ax.set_xlim(x - radius, x + radius)
        ax.set_ylim(z - radius, z + radius)
        ax.set_aspect("equal")
        ax.set_title(f"step {t}, θ = {theta:+.2f} rad", fontsize=TITLE_SIZE)
        ax.set_xlabel("x (m)")
        ax.tick_params(labelsize=SMALL_SIZE)
    axes[0].set_ylabel("z (m)")
    if title:
        axes[0].figure.suptitle(title)
    return axes


def plot_seeker_map(observation: np.ndarray, ax: Axes | None = None,
                    trajectory: np.ndarray | None = None) -> Axes:
    """The seeker's map: walls, obstacles, goal, agent (and its path, if given).

    :param observation: a seeker observation [p, v, goal, (x, y, r) x 3].
    :param trajectory: positions [T, 2] to draw as a path.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 5))
    position, goal = observation[0:2], observation[4:6]
    obstacles = observation[6:].reshape(-1, 3)
    ax.set_xlim(-10, 10)
    ax.set_ylim(-10, 10)
    ax.set_aspect("equal")
    for x, y, r in obstacles:
        ax.add_patch(Circle((x, y), r, color="0.35"))
    ax.add_patch(Circle(goal, 0.5, color=SAFE_COLOR, alpha=0.8, label="goal"))
    if trajectory is not None:
        ax.plot(*np.asarray(trajectory).T, "-", color="0.6", linewidth=1, label="path")
    ax.add_patch(Circle(position, 0.2, color=UNSAFE_COLOR, label="agent"))
    ax.set_xlabel("$p_x$")
    ax.set_ylabel("$p_y$")
    return ax


def plot_safe_actions_along(
    record: Rollout,
    steps: Sequence[int],
    axes: Sequence[Axes] | None = None,
    extent: Sequence[float] = (-1.3, 1.3, -1.3, 1.3),
) -> Sequence[Axes]:
    """The safe action polygon of a 2-D-action task at several steps of a rollout, with the
    proposed and the applied action of that step."""
    if axes is None:
        _, axes = plt.subplots(1, len(steps), figsize=(3.2 * len(steps), 3.3))
    for ax, t in zip(axes, steps, strict=True):
        A, b = record.safe_sets[t]
        plot_safe_set(A, b, ax=ax, extent=extent, label="safe actions")
        ax.plot([-1, 1, 1, -1, -1], [-1, -1, 1, 1, -1], ":", color="0.5", label="action box")
        ax.annotate("", xy=record.applied_actions[t], xytext=record.proposed_actions[t],
                    arrowprops={"arrowstyle": "->", "color": "0.3"})
        ax.scatter(*record.proposed_actions[t], color=UNSAFE_COLOR, zorder=3, label="proposed")
        ax.scatter(*record.applied_actions[t], color="#00798c", zorder=4, label="applied")
        ax.set_title(f"step {t}", fontsize=TITLE_SIZE)
    axes[0].legend(fontsize=LEGEND_SIZE, loc="lower left")
    return axes


def plot_safe_interval(record: Rollout, ax: Axes | None = None) -> Axes:
    """For a 1-D-action task: the safe action interval at every step, with both actions."""
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 3))
    lows, highs = [], []
    for A, b in record.safe_sets:
        upper = b[A[:, 0] > 0] / A[A[:, 0] > 0, 0]
        lower = b[A[:, 0] < 0] / A[A[:, 0] < 0, 0]
        lows.append(lower.max() if len(lower) else -np.inf)
        highs.append(upper.min() if len(upper) else np.inf)
    t = np.arange(len(record.safe_sets))
    ax.fill_between(t, lows, highs, color=SAFE_COLOR, alpha=0.35, step="mid",
                    label="safe actions")
    ax.plot(t, record.proposed_actions[:, 0], ".", color=UNSAFE_COLOR, markersize=4,
            label="proposed")
    ax.plot(t, record.applied_actions[:, 0], ".", color=PROJECTION_COLOR, markersize=4,
            label="applied")
    ax.set_xlabel("step")
    ax.set_ylabel("normalised action")
    # above the axes, not over the data (the proposals fill the whole action range)
    ax.legend(fontsize=LEGEND_SIZE, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncols=3,
              frameon=False)
    return ax


def plot_safety_counts(rows: Sequence[dict[str, Any]], ax: Axes | None = None) -> Axes:
    """Grouped bars: constraint violations per task, random policy with and without safeguard.

    ``rows`` are the records of :func:`tutorial_rl.safeguards.random_policy_safety`.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.5))
    tasks = list(dict.fromkeys(r["env_id"] for r in rows))
    width = 0.38
    for offset, safeguard, color in ((-width / 2, False, UNSAFE_COLOR),
                                     (width / 2, True, SAFE_COLOR)):
        values = [next(r["violations"] for r in rows
                       if r["env_id"] == task and r["safeguard"] == safeguard) for task in tasks]
        bars = ax.bar(np.arange(len(tasks)) + offset, values, width, color=color,
                      label="with safeguard" if safeguard else "without safeguard")
        ax.bar_label(bars, labels=[f"{v:,}" for v in values], fontsize=SMALL_SIZE)
    ax.set_xticks(np.arange(len(tasks)), [t.split("/")[-1] for t in tasks])
    steps = rows[0]["steps"]
    ax.set_ylabel(f"constraint violations in {steps:,} steps")
    ax.legend(fontsize=LEGEND_SIZE)
    ax.margins(y=0.15)
    return ax

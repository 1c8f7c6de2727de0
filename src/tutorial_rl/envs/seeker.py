"""Seeker navigation task: a point mass reaches a goal around three circular obstacles.

Chapter 3 (chapters/03_tasks.py) introduces the task; DESIGN.md §5 lists its parameters and §4 the
shape of its safe action set. The braking-distance safe set is built by :func:`safe_action_set`, a
pure function of the layout and the state, so the chapter and the tests can call it directly.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from tutorial_rl.envs import rendering
from tutorial_rl.safeguards import check_action

MAP_HALF_WIDTH = 10.0  # the map is [-10, 10]^2
AGENT_RADIUS = 0.2
GOAL_RADIUS = 0.5
NUM_OBSTACLES = 3
MIN_RADIUS, MAX_RADIUS = 0.2, math.sqrt(10.0)
MIN_GOAL_DISTANCE = 5.0
MAX_ACCELERATION = 1.0  # |a_i| <= 1 per axis; dt = 1, so one step changes a velocity by <= 1
MAX_EPISODE_STEPS = 100
SAFETY_MARGIN = 1e-6  # absorbs the feasibility tolerance of the projection (~1e-8)
#: The agent's centre must stay in [-WALL, WALL]^2 for its disc to stay inside the map.
WALL = MAP_HALF_WIDTH - AGENT_RADIUS
#: Speed bound of every emitted observation: speed 6 along an axis needs 6+5+...+1 = 21 > 2 WALL of
#: straight travel from rest (or from moving the other way), so the wall is hit first.
MAX_SPEED = 6.0


def greedy_goal_policy(observation: np.ndarray, rng: np.random.Generator | None = None
                       ) -> np.ndarray:
    """A baseline controller: accelerate towards the goal while damping the velocity.

    a = clip(0.5 (goal − p) − v, −1, 1). It ignores obstacles and relies on a safeguard to stay
    safe, which makes it the simplest illustration of the conflict between task and safety
    (Chapter 3). ``rng`` is unused; it matches the policy signature of
    :func:`tutorial_rl.task_plots.rollout`.
    """
    return np.clip(0.5 * (observation[4:6] - observation[0:2]) - observation[2:4],
                   -MAX_ACCELERATION, MAX_ACCELERATION)


def stopping_distance(speed: np.ndarray) -> np.ndarray:
    """Distance D(s) covered along one axis while braking from speed s >= 0 with |a| <= 1, dt = 1.

    Braking lowers the speed by 1 per step (to 0 in the last step) and the position moves by the
    new speed, so D(s) = (s-1) + (s-2) + ... + (s-q) = q s - q(q+1)/2 with q = floor(s). D is convex
    and piecewise linear: D(s) = max over integers k >= 0 of (k s - k(k+1)/2).
    """
    q = np.floor(speed)
    return q * speed - q * (q + 1) / 2


def braking_action(velocity: np.ndarray) -> np.ndarray:
    """The per-axis braking action -clip(v, -1, 1): it brings each velocity component to 0."""
    return -np.clip(velocity, -MAX_ACCELERATION, MAX_ACCELERATION)


def braking_box(position: np.ndarray, velocity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned box [lo, hi] swept by the agent's centre while it brakes to a stop.

    Under :func:`braking_action` each axis moves monotonically by ``sign(v_i) D(|v_i|)``, so the
    whole braking trajectory (samples and the straight segments between them) lies in this box.
    """
    shift = np.sign(velocity) * stopping_distance(np.abs(velocity))
    return position + np.minimum(shift, 0.0), position + np.maximum(shift, 0.0)


_PIECE_OFFSETS = np.array([(i, j) for i in range(3) for j in range(3)], dtype=float)


def _box_in_halfspace_rows(
    normals: np.ndarray, offsets: np.ndarray, position: np.ndarray, velocity: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of {a : braking box after the step lies in {q : n.q <= h}} for each (n, h), exactly.

    After the step p+ = p + v + a, v+ = v + a, and the box's extreme point along n is
    n.p+ + sum_i |n_i| g(s_i v+_i) with s_i = sign(n_i) and g(w) = D(max(w, 0)) = max_{k >= 0}
    (k w - k(k+1)/2). "max of pieces <= h" is "every piece <= h", and each piece is linear in a:
    sum_i n_i (1 + k_i) a_i <= h - n.(p + v) - sum_i (k_i n_i v_i - |n_i| k_i (k_i + 1)/2).
    For |a_i| <= 1, s_i v+_i lies in [w_i - 1, w_i + 1] (w_i = s_i v_i), where only the pieces
    k_i = k0_i, k0_i + 1, k0_i + 2 with k0_i = max(0, floor(w_i - 1)) can be the maximum; any other
    piece would only add a redundant row. So 9 rows per halfspace, exact on the action box.

    :param normals: unit normals n, shape [H, 2]; :param offsets: h, shape [H].
    :returns: A [r, 2], b [r], r <= 9 H.
    """
    w = np.sign(normals) * velocity
    k0 = np.maximum(0.0, np.floor(w - 1.0))
    k = k0[:, None, :] + _PIECE_OFFSETS[None]  # [H, 9, 2]
    n = normals[:, None, :]
    A = n * (1.0 + k)
    b = (offsets - normals @ (position + velocity))[:, None] - (k * n * velocity).sum(-1)
    b = b + (np.abs(n) * k * (k + 1) / 2).sum(-1)
    # an axis with n_i = 0 contributes nothing, so its pieces k_i > k0_i only repeat rows
    distinct = ~((normals == 0)[:, None, :] & (_PIECE_OFFSETS[None] > 0)).any(-1)
    return A[distinct], b[distinct]


_WALL_NORMALS = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
_BOX_A = np.vstack([np.eye(2), -np.eye(2)])


def safe_action_set(
    position: np.ndarray, velocity: np.ndarray, obstacles: np.ndarray, margin: float = SAFETY_MARGIN
) -> tuple[np.ndarray, np.ndarray]:
    """Safe accelerations {a : A a <= b} of the seeker (DESIGN.md §4), rows that can bind.

    Invariant I(p, v): the braking box B(p, v) (:func:`braking_box`) keeps the agent inside the
    walls and at least R_j = r_j + agent radius away from every obstacle centre c_j. For each
    obstacle take the point q* of B(p, v) closest to c_j and the halfspace H_j = {q : n.q <=
    n.c_j - R_j - margin}, n = (c_j - q*)/|c_j - q*|: it is tangent to the (inflated) obstacle and
    contains B(p, v), since q* is the projection of c_j onto the convex box. Each wall gives
    H = {q : ±q_i <= WALL - margin}. The set is every a in the box [-1, 1]^2 whose next braking box
    B(p+, v+) lies in all H (exact linear rows from :func:`_box_in_halfspace_rows`).

    Why it is safe: (i) if I holds, braking now is in the set, because braking from (p, v) sweeps a
    sub-box of B(p, v) (the remaining stopping distance shrinks by exactly the step taken), so the
    set is non-empty; (ii) for any a in it, the segment from p (in B(p, v)) to p+ (in B(p+, v+))
    stays in every H, so the step is collision-free, and B(p+, v+) avoids every obstacle and wall,
    so I holds again. At rest, I says no more than that the start is collision-free. Where
    floating-point error left B(p, v) between R_j and R_j + margin away, H is moved out to support
    B(p, v) so that braking stays feasible; where I is violated (the agent cannot stop in time) the
    set may be empty.

    :param position: agent centre p, shape [2].
    :param velocity: agent velocity v, shape [2].
    :param obstacles: rows (x, y, r), shape [n, 3].
    :param margin: clearance kept to obstacles and walls on top of the agent radius.
    :returns: ``(A, b)`` with A [k, 2], b [k]: the four box rows first, then the rows of the
        halfspaces, without rows that every action in the box satisfies.
    """
    p, v = np.asarray(position, dtype=float), np.asarray(velocity, dtype=float)
    obstacles = np.asarray(obstacles, dtype=float).reshape(-1, 3)
    lo, hi = braking_box(p, v)
    # walls: offset WALL - margin, moved out to the box's extent if rounding left it in between
    extent = np.array([hi[0], -lo[0], hi[1], -lo[1]])
    wall_offsets = np.where(extent > WALL, WALL - margin, np.maximum(WALL - margin, extent))
    centres, reach = obstacles[:, :2], obstacles[:, 2] + AGENT_RADIUS
    gap = centres - np.clip(centres, lo, hi)
    dist = np.hypot(gap[:, 0], gap[:, 1])
    inside = dist < 1e-12  # the centre is inside the braking box: I fails; any direction will do
    gap[inside] = centres[inside] - p + np.array([1e-12, 0.0])
    normals = gap / np.hypot(gap[:, 0], gap[:, 1])[:, None]
    clearance = np.where(dist >= reach, np.minimum(dist, reach + margin), reach + margin)
    obstacle_offsets = (normals * centres).sum(1) - clearance
    A, b = _box_in_halfspace_rows(
        np.vstack([_WALL_NORMALS, normals]), np.concatenate([wall_offsets, obstacle_offsets]), p, v
    )
    keep = np.abs(A).sum(1) > b  # rows met by all of [-1, 1]^2 cannot bind
    return np.vstack([_BOX_A, A[keep]]), np.concatenate([np.full(4, MAX_ACCELERATION), b[keep]])


class SeekerEnv(gym.Env[np.ndarray, np.ndarray]):
    """Seeker navigation (paper appendix A.8.3; DESIGN.md §5; Chapter 3, chapters/03_tasks.py).

    ## Description
    A point mass (radius 0.2) in the map [-10, 10]^2 must reach a goal (radius 0.5) around three
    circular obstacles; one of them always sits 40-60 % of the way from the start to the goal.
    Dynamics (semi-implicit Euler, dt = 1): v <- v + a dt, then p <- p + v dt, so between two
    samples the agent moves on the straight segment from p to p+. No disturbances (the paper names
    none for this task).

    ## Action Space
    ``Box(-1, 1, (2,), float32)``: accelerations [a_x, a_y]. Finite actions outside the box are
    clipped to it; wrong shapes, NaN and inf raise ``ValueError``. The step computes in float64,
    so a float64 action from a safeguard is applied without rounding.

    ## Observation Space
    ``Box(float32, (15,))``: [p_x, p_y, v_x, v_y, goal_x, goal_y, then (x, y, r) of each obstacle].
    Bounds: p in [-9.8, 9.8] (the agent's disc stays inside the map), v in [-6, 6] (see
    ``MAX_SPEED``), goal in [-9.5, 9.5], obstacle centres in [-9.8, 9.8], radii in [0.2, sqrt(10)].

    ## Rewards
    ``-1 + exp(-|p+ - goal| / 10)`` per step, p+ the position after the step, plus
    ``-termination_penalty`` on a step that ends in a collision. All rewards are negative, so
    without a safeguard an agent can gain by crashing early: set ``termination_penalty`` (e.g. 100,
    the most an episode can lose) when training without one.

    ## Starting State
    At rest, at a random layout: start uniform in [-9.5, 9.5]^2 (0.3 from the walls); goal uniform
    in [-9.5, 9.5]^2 at least 5 away; obstacle 0 on the segment start-goal at a fraction
    U(0.4, 0.6); obstacles 1, 2 uniform; radii U(0.2, sqrt(10)). A candidate obstacle that leaves
    the map, overlaps another obstacle, the goal disc, or the agent at the start is redrawn (so the
    radius of obstacle 0 is U(0.2, sqrt(10)) conditioned on fitting between start and goal). The
    start is collision-free at rest, hence safe: braking (a = 0) is in :meth:`safe_action_set`.

    ## Episode End
    Termination when the agent's centre ends a step within 0.5 of the goal, or on a collision:
    the step's segment passes within r_j + 0.2 of an obstacle centre, or the agent's disc crosses a
    wall (the agent is then stopped at the wall: its position clipped to [-9.8, 9.8] and that
    velocity component zeroed). Truncation after 100 steps (``max_episode_steps`` of the registered
    ``tutorial_rl/Seeker-v0``, applied by gymnasium's ``TimeLimit``).

    ## Arguments
    ``gymnasium.make("tutorial_rl/Seeker-v0", render_mode=None, termination_penalty=0.0)``;
    ``render_mode="rgb_array"`` gives 240x240x3 uint8 frames.

    ## Info and safety
    ``info`` holds ``constraint_violation`` (a collision in this step, whatever chose the action),
    ``collision_obstacle``, ``collision_wall``, ``goal_reached`` and ``distance_to_goal``.
    :meth:`safe_action_set` returns the braking-distance polytope of the current state (derivation
    in :func:`safe_action_set`); :meth:`fallback_action` is braking.

    Deviations from DESIGN.md §5: the wall stop and the optional ``termination_penalty`` (default
    0, so the reward is DESIGN's) are additions; the paper names no disturbance, so there is none.
    """

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, render_mode: str | None = None, termination_penalty: float = 0.0) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.render_mode = render_mode
        self.termination_penalty = float(termination_penalty)
        self.action_space = spaces.Box(-MAX_ACCELERATION, MAX_ACCELERATION, (2,), np.float32)
        obstacle_lo = [-(MAP_HALF_WIDTH - MIN_RADIUS)] * 2 + [MIN_RADIUS]
        obstacle_hi = [MAP_HALF_WIDTH - MIN_RADIUS] * 2 + [MAX_RADIUS]
        goal_bound = MAP_HALF_WIDTH - GOAL_RADIUS
        high = np.array([WALL, WALL, MAX_SPEED, MAX_SPEED, goal_bound, goal_bound]
                        + obstacle_hi * NUM_OBSTACLES)
        low = np.array([-WALL, -WALL, -MAX_SPEED, -MAX_SPEED, -goal_bound, -goal_bound]
                       + obstacle_lo * NUM_OBSTACLES)
        self.observation_space = spaces.Box(low.astype(np.float32), high.astype(np.float32))
        self.position = np.zeros(2)
        self.velocity = np.zeros(2)
        self.goal = np.zeros(2)
        self.obstacles = np.zeros((NUM_OBSTACLES, 3))

    # --- layout -------------------------------------------------------------------------------
    def _fits(self, center: np.ndarray, radius: float, placed: list[np.ndarray]) -> bool:
        """Whether an obstacle candidate is inside the map and clear of start, goal and others."""
        if np.any(np.abs(center) + radius > MAP_HALF_WIDTH):
            return False
        if np.hypot(*(center - self.position)) <= radius + AGENT_RADIUS + 10 * SAFETY_MARGIN:
            return False
        if np.hypot(*(center - self.goal)) <= radius + GOAL_RADIUS:
            return False
        return all(np.hypot(*(center - o[:2])) > radius + o[2] for o in placed)

    def _sample_layout(self) -> bool:
        rng = self.np_random
        self.position = rng.uniform(-(WALL - 0.3), WALL - 0.3, 2)
        self.goal = rng.uniform(-(MAP_HALF_WIDTH - GOAL_RADIUS), MAP_HALF_WIDTH - GOAL_RADIUS, 2)
        if np.hypot(*(self.goal - self.position)) < MIN_GOAL_DISTANCE:
            return False
        placed: list[np.ndarray] = []
        for i in range(NUM_OBSTACLES):
            for _ in range(200):
                radius = rng.uniform(MIN_RADIUS, MAX_RADIUS)
                if i == 0:  # the obstacle that blocks the straight path
                    center = self.position + rng.uniform(0.4, 0.6) * (self.goal - self.position)
                else:
                    center = rng.uniform(-(MAP_HALF_WIDTH - radius), MAP_HALF_WIDTH - radius, 2)
                if self._fits(center, radius, placed):
                    placed.append(np.array([*center, radius]))
                    break
            else:
                return False  # this start/goal pair leaves no room: draw a new one
        self.obstacles = np.stack(placed)
        return True

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Draw a new layout (see the class docstring, Starting State); ``options`` is unused."""
        super().reset(seed=seed)
        while not self._sample_layout():
            pass
        self.velocity = np.zeros(2)
        return self._observation(), {"distance_to_goal": self._distance_to_goal()}

    # --- dynamics -----------------------------------------------------------------------------
    def _observation(self) -> np.ndarray:
        parts = [self.position, self.velocity, self.goal, self.obstacles.ravel()]
        return np.concatenate(parts).astype(np.float32)

    def _distance_to_goal(self) -> float:
        return float(np.hypot(*(self.position - self.goal)))

    def _hits_obstacle(self, start: np.ndarray, end: np.ndarray) -> bool:
        """Whether the segment start-end passes strictly within r_j + agent radius of a centre."""
        d = end - start
        for cx, cy, r in self.obstacles:
            c = np.array([cx, cy])
            t = float(np.clip((c - start) @ d / (d @ d), 0.0, 1.0)) if d @ d > 0 else 0.0
            if np.hypot(*(start + t * d - c)) < r + AGENT_RADIUS:
                return True
        return False

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Apply the (clipped) acceleration for one step of dt = 1."""
        a = np.clip(check_action(action, self.action_space), -MAX_ACCELERATION, MAX_ACCELERATION)
        start = self.position
        self.velocity = self.velocity + a
        self.position = start + self.velocity
        hit_obstacle = self._hits_obstacle(start, self.position)
        outside = np.abs(self.position) > WALL
        hit_wall = bool(outside.any())
        if hit_wall:  # the wall stops the agent; the episode ends here anyway
            self.position = np.clip(self.position, -WALL, WALL)
            self.velocity = np.where(outside, 0.0, self.velocity)
        distance = self._distance_to_goal()
        reached = distance <= GOAL_RADIUS
        collision = hit_obstacle or hit_wall
        reward = -1.0 + math.exp(-distance / 10.0) - self.termination_penalty * collision
        info = {
            "constraint_violation": collision,
            "collision_obstacle": hit_obstacle,
            "collision_wall": hit_wall,
            "goal_reached": bool(reached),
            "distance_to_goal": distance,
        }
        return self._observation(), float(reward), bool(reached or collision), False, info

    # --- safety -------------------------------------------------------------------------------
    def safe_action_set(self) -> tuple[np.ndarray, np.ndarray]:
        """Safe accelerations {a : A a <= b} at the current state; see :func:`safe_action_set`."""
        return safe_action_set(self.position, self.velocity, self.obstacles)

    def fallback_action(self) -> np.ndarray:
        """Braking, the action used where the safe set is empty (the agent cannot stop in time)."""
        return braking_action(self.velocity)

    # --- rendering ----------------------------------------------------------------------------
    def render(self) -> np.ndarray | None:
        """A 240x240x3 uint8 frame: walls, obstacles (grey), goal (green), agent (blue)."""
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; use render_mode='rgb_array'")
            return None
        half = MAP_HALF_WIDTH + 0.5
        canvas = rendering.Canvas(240, (-half, half, -half, half))
        canvas.box_outline((-MAP_HALF_WIDTH,) * 2, (MAP_HALF_WIDTH,) * 2, 0.3, rendering.BLACK)
        for cx, cy, r in self.obstacles:
            canvas.circle((cx, cy), r, rendering.GREY)
        canvas.circle(self.goal, GOAL_RADIUS, rendering.GREEN)
        canvas.segment(self.position, self.position + self.velocity, 0.15, rendering.ORANGE)
        canvas.circle(self.position, max(AGENT_RADIUS, 0.25), rendering.BLUE)
        return canvas.frame()

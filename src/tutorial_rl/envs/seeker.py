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
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of {a : braking box after the step lies in {q : n.q <= h}} for each (n, h), exactly.

    After the step p+ = p + v + a, v+ = v + a, and the box's extreme point along n is
    n.p+ + sum_i |n_i| g(s_i v+_i) with s_i = sign(n_i) and g(w) = D(max(w, 0)) = max_{k >= 0}
    (k w - k(k+1)/2). "max of pieces <= h" is "every piece <= h", and each piece is linear in a:
    sum_i n_i (1 + k_i) a_i <= h - n.(p + v) - sum_i (k_i n_i v_i - |n_i| k_i (k_i + 1)/2).
    For |a_i| <= 1, s_i v+_i lies in [w_i - 1, w_i + 1] (w_i = s_i v_i), where only the pieces
    k_i = k0_i, k0_i + 1, k0_i + 2 with k0_i = max(0, floor(w_i - 1)) can be the maximum; any other
    piece would only add a redundant row. So 9 rows per halfspace, exact on the action box.

    For K states at once (every operation row by row, so a state's rows do not depend on the
    others): :param normals: unit normals n, [K, H, 2]; :param offsets: h, [K, H];
    :param position: [K, 2]; :param velocity: [K, 2].
    :returns: A [K, 9 H, 2], b [K, 9 H] and ``distinct`` [K, 9 H]: False marks the repeated rows
        of an axis with n_i = 0 (its pieces k_i > k0_i add nothing).
    """
    K = len(normals)
    v = velocity[:, None, :]
    w = np.sign(normals) * v
    k0 = np.maximum(0.0, np.floor(w - 1.0))
    k = k0[:, :, None, :] + _PIECE_OFFSETS  # [K, H, 9, 2]
    n = normals[:, :, None, :]
    A = n * (1.0 + k)
    reach = (normals * (position + velocity)[:, None, :]).sum(-1)  # n.(p + v), [K, H]
    b = (offsets - reach)[..., None] - (k * n * v[:, :, None, :]).sum(-1)
    b = b + (np.abs(n) * k * (k + 1) / 2).sum(-1)
    distinct = ~((normals == 0)[:, :, None, :] & (_PIECE_OFFSETS > 0)).any(-1)
    return A.reshape(K, -1, 2), b.reshape(K, -1), distinct.reshape(K, -1)


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
    A, b, count = safe_action_sets(p[None], v[None], obstacles[None], margin)
    return A[0, :count[0]], b[0, :count[0]]


#: A padding row 0 · a <= 1: every action meets it, so it never binds.
PAD_OFFSET = 1.0


def safe_action_sets(
    position: np.ndarray, velocity: np.ndarray, obstacles: np.ndarray, margin: float = SAFETY_MARGIN
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`safe_action_set` of K states at once, padded to one row count.

    The K sets keep different numbers of rows; run i's rows are ``A[i, :count[i]]``,
    ``b[i, :count[i]]`` (exactly :func:`safe_action_set`'s, which calls this with K = 1), and
    the rest are padding rows 0 · a <= 1 (:data:`PAD_OFFSET`) that never bind, so ``(A, b)``
    also describe the K sets as they are.

    :param position: [K, 2]; :param velocity: [K, 2]; :param obstacles: [K, n, 3].
    :returns: A [K, r, 2], b [K, r], count [K] (r = max count).
    """
    p, v = np.asarray(position, dtype=float), np.asarray(velocity, dtype=float)
    K = len(p)
    lo, hi = braking_box(p, v)
    # walls: offset WALL - margin, moved out to the box's extent if rounding left it in between
    extent = np.stack([hi[:, 0], -lo[:, 0], hi[:, 1], -lo[:, 1]], axis=1)
    wall_offsets = np.where(extent > WALL, WALL - margin, np.maximum(WALL - margin, extent))
    centres, reach = obstacles[..., :2], obstacles[..., 2] + AGENT_RADIUS
    gap = centres - np.clip(centres, lo[:, None], hi[:, None])
    dist = np.hypot(gap[..., 0], gap[..., 1])
    inside = dist < 1e-12  # the centre is inside the braking box: I fails; any direction will do
    away = centres - p[:, None] + np.array([1e-12, 0.0])
    gap = np.where(inside[..., None], away, gap)
    normals = gap / np.hypot(gap[..., 0], gap[..., 1])[..., None]
    clearance = np.where(dist >= reach, np.minimum(dist, reach + margin), reach + margin)
    obstacle_offsets = (normals * centres).sum(-1) - clearance
    A, b, distinct = _box_in_halfspace_rows(
        np.concatenate([np.broadcast_to(_WALL_NORMALS, (K, 4, 2)), normals], axis=1),
        np.concatenate([wall_offsets, obstacle_offsets], axis=1), p, v)
    keep = distinct & (np.abs(A).sum(-1) > b)  # rows met by all of [-1, 1]^2 cannot bind
    count = keep.sum(1)
    order = np.argsort(~keep, axis=1, kind="stable")[:, :count.max()]  # kept rows first, in order
    A, b = np.take_along_axis(A, order[..., None], 1), np.take_along_axis(b, order, 1)
    pad = np.arange(order.shape[1]) >= count[:, None]
    A[pad], b[pad] = 0.0, PAD_OFFSET
    A = np.concatenate([np.broadcast_to(_BOX_A, (K, 4, 2)), A], axis=1)
    b = np.concatenate([np.full((K, 4), MAX_ACCELERATION), b], axis=1)
    return A, b, count + 4


def segments_hit_obstacles(start: np.ndarray, end: np.ndarray, obstacles: np.ndarray
                           ) -> np.ndarray:
    """Whether each segment start-end passes strictly within r_j + agent radius of a centre.

    :param start: [K, 2]; :param end: [K, 2]; :param obstacles: [K, n, 3]. :returns: [K] bool.
    """
    d = end - start
    dd = (d * d).sum(-1)[:, None]
    c = obstacles[..., :2]
    along = ((c - start[:, None]) * d[:, None]).sum(-1)
    with np.errstate(divide="ignore", invalid="ignore"):  # a standing agent: t = 0 below
        t = np.where(dd > 0, np.clip(along / dd, 0.0, 1.0), 0.0)
    closest = start[:, None] + t[..., None] * d[:, None] - c
    return (np.hypot(closest[..., 0], closest[..., 1]) < obstacles[..., 2] + AGENT_RADIUS).any(1)


def seeker_transition(position: np.ndarray, velocity: np.ndarray, goal: np.ndarray,
                      obstacles: np.ndarray, action: np.ndarray, termination_penalty: float = 0.0
                      ) -> dict[str, np.ndarray]:
    """One step of K seekers at once: what :meth:`SeekerEnv.step` computes, for K states.

    The single environment calls it with K = 1 and :class:`~tutorial_rl.envs.vector.
    TaskVectorEnv` with K runs; every operation is row by row, so run i gets the same bits
    either way.

    :param position, velocity, goal: [K, 2]; :param obstacles: [K, n, 3];
    :param action: [K, 2] validated accelerations (clipped here).
    :returns: ``position``, ``velocity`` (after the step and the wall stop), ``reward`` [K],
        ``terminated``, ``collision_obstacle``, ``collision_wall``, ``goal_reached`` [K] bool and
        ``distance_to_goal`` [K].
    """
    a = np.clip(action, -MAX_ACCELERATION, MAX_ACCELERATION)
    velocity = velocity + a
    end = position + velocity
    hit_obstacle = segments_hit_obstacles(position, end, obstacles)
    outside = np.abs(end) > WALL
    hit_wall = outside.any(1)
    # the wall stops the agent (the episode ends here anyway); clipping moves no inside point
    end = np.clip(end, -WALL, WALL)
    velocity = np.where(outside, 0.0, velocity)
    distance = np.hypot(end[:, 0] - goal[:, 0], end[:, 1] - goal[:, 1])
    reached = distance <= GOAL_RADIUS
    collision = hit_obstacle | hit_wall
    reward = -1.0 + np.exp(-distance / 10.0) - termination_penalty * collision
    return {"position": end, "velocity": velocity, "reward": reward,
            "terminated": reached | collision, "collision_obstacle": hit_obstacle,
            "collision_wall": hit_wall, "goal_reached": reached, "distance_to_goal": distance}


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

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Apply the (clipped) acceleration for one step of dt = 1 (:func:`seeker_transition`)."""
        a = check_action(action, self.action_space)
        out = seeker_transition(self.position[None], self.velocity[None], self.goal[None],
                                self.obstacles[None], a[None], self.termination_penalty)
        self.position, self.velocity = out["position"][0], out["velocity"][0]
        info = {
            "constraint_violation": bool(out["collision_obstacle"][0] | out["collision_wall"][0]),
            "collision_obstacle": bool(out["collision_obstacle"][0]),
            "collision_wall": bool(out["collision_wall"][0]),
            "goal_reached": bool(out["goal_reached"][0]),
            "distance_to_goal": float(out["distance_to_goal"][0]),
        }
        return (self._observation(), float(out["reward"][0]), bool(out["terminated"][0]), False,
                info)

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

"""Pendulum stabilisation task with a robust control invariant (RCI) safe set.

Chapter 3 (chapters/03_tasks.py) introduces the task; DESIGN.md §5 lists its parameters, which
live in :class:`tutorial_rl.systems.PendulumParameters` (the safe sets read the same object, so the
simulator and the safe set cannot disagree). The safe action set comes from
:func:`tutorial_rl.sets.safe_actions.pendulum_safe_action_set` (physical torques) and is handed to
agents and the safeguard in normalised coordinates through :data:`ACTION_MAP`
(:mod:`tutorial_rl.envs.action_scaling`).
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from tutorial_rl.envs import rendering
from tutorial_rl.envs.action_scaling import AffineActionMap
from tutorial_rl.envs.rci_safety import RCISafeActions
from tutorial_rl.safeguards import check_action
from tutorial_rl.systems import PendulumParameters, pendulum_step

if TYPE_CHECKING:  # the sets package is imported lazily (see below)
    from tutorial_rl.sets.safe_actions import LinearSafeActionSet

PARAMS = PendulumParameters()
#: Normalised torque a ∈ [-1, 1] -> physical torque u = 8 a (N m): one scale, no offset.
ACTION_MAP = AffineActionMap(np.array([-PARAMS.max_torque]), np.array([PARAMS.max_torque]))


@functools.cache
def pendulum_safe_set() -> LinearSafeActionSet:
    """The pendulum's safe action set object of :mod:`tutorial_rl.sets.safe_actions` (cached).

    Imported lazily: building it loads the precomputed RCI set once per process.
    """
    from tutorial_rl.sets.safe_actions import pendulum_safe_action_set

    return pendulum_safe_action_set()


def wrap_angle(theta: float) -> float:
    """θ wrapped to [−π, π)."""
    return (theta + math.pi) % (2 * math.pi) - math.pi


#: The state limits |θ| <= 2, |θ̇| <= 6.5.
LIMITS = np.array([PARAMS.theta_bound, PARAMS.theta_dot_bound])


def pendulum_transition(
    state: np.ndarray, action: np.ndarray, noise: np.ndarray, termination_penalty: float = 0.0
) -> dict[str, np.ndarray]:
    """One step of K pendulums at once: what :meth:`PendulumEnv.step` computes, for K states.

    The single environment calls it with K = 1 and :class:`~tutorial_rl.envs.vector.
    TaskVectorEnv` with K runs; every operation is row by row, so run i gets the same bits
    either way.

    :param state: [K, 2] physical states; :param action: [K, 1] validated normalised torques
        (clipped here); :param noise: [K, 2].
    :returns: ``state`` (next, [K, 2]), ``obs`` (float32 [K, 2]), ``reward`` [K],
        ``terminated`` [K] (off the state limits), ``outside_rci`` [K] and ``physical_action``
        [K, 1].
    """
    u = ACTION_MAP.to_physical(np.clip(action, -1.0, 1.0))
    nxt = pendulum_step(state, u, PARAMS, noise)
    theta, theta_dot = (nxt[:, 0] + math.pi) % (2 * math.pi) - math.pi, nxt[:, 1]
    off_limits = np.any(np.abs(nxt) > LIMITS, axis=1)
    outside_rci = off_limits | ~np.asarray(pendulum_safe_set().contains_state(nxt))
    reward = -(theta**2 + 0.1 * theta_dot**2 + 0.001 * u[:, 0] ** 2)
    reward = reward - termination_penalty * off_limits
    obs = np.stack([theta, theta_dot], axis=1).astype(np.float32)
    return {"state": nxt, "obs": obs, "reward": reward, "terminated": off_limits,
            "outside_rci": outside_rci, "physical_action": u}


class PendulumEnv(RCISafeActions, gym.Env[np.ndarray, np.ndarray]):
    """Inverted pendulum stabilisation (paper A.8.1; DESIGN.md §5; Chapter 3, chapters/03_tasks.py).

    ## Description
    A pendulum (m = 1, l = 1, g = 9.81) must be held upright (θ = 0). Semi-implicit Euler with
    dt = 0.05 (the paper's "explicit Euler" as its code implements it):
    θ̇ <- θ̇ + dt (3g/(2l) sin θ + 3/(m l²) u), then θ <- θ + dt θ̇, then additive noise
    w ~ U([-0.1, 0.1]²) on both states, drawn from ``self.np_random``. These are the coefficients
    of a uniform rod (moment of inertia m l²/3 about the pivot), as in gym's Pendulum and in the
    paper's code; the paper's eq. 53 writes the point-mass form g/l and 1/(m l²) instead. We follow
    the code, whose results the paper reports. The safe set (an RCI set
    inside |θ| <= 2, |θ̇| <= 6.5, computed for the linearisation with the linearisation error
    and the noise bounded as disturbance) keeps the state recoverable under any noise.

    ## Action Space
    ``Box(-1, 1, (1,), float32)``: the normalised torque a ∈ [-1, 1]; the applied torque is
    u = 8 a N m (:data:`ACTION_MAP`). Finite actions outside [-1, 1] are clipped to it (so
    |u| <= 8); wrong shapes, NaN and inf raise ``ValueError``. The step computes in float64, so a
    float64 action from a safeguard is applied without rounding. ``info["physical_action"]`` is
    the torque u that was applied.

    ## Observation Space
    ``Box(float32, (2,))``: [θ, θ̇], θ wrapped to [-π, π) (θ = 0 upright), θ̇ in rad/s within
    ±(6.5 + dt (3g/2 + 3·8) + 0.1) ≈ ±8.54, the most one step can add to a state inside the
    limits (the episode ends when the limits are left).

    ## Rewards
    ``-(θ² + 0.1 θ̇² + 0.001 u²)`` on the state after the step (θ wrapped) and the applied
    (clipped) torque u in N m (physical units, as in the paper), minus ``termination_penalty``
    on a step that leaves the state limits.

    ## Starting State
    Uniform in the RCI set: drawn uniformly from the RCI set's bounding box (about |θ| <= 1.02,
    |θ̇| <= 4.08, inside the limits) and redrawn until inside the RCI set.

    ## Episode End
    Truncation after 200 steps (``max_episode_steps`` of ``tutorial_rl/Pendulum-v0``, gymnasium's
    ``TimeLimit``). Termination only if the state leaves the limits |θ| <= 2, |θ̇| <= 6.5, which
    never happens under :class:`~tutorial_rl.safeguards.ProjectionSafeguard`.

    ## Arguments
    ``gymnasium.make("tutorial_rl/Pendulum-v0", render_mode=None, termination_penalty=0.0)``;
    ``render_mode="rgb_array"`` gives 240x240x3 uint8 frames. All rewards are <= 0, so without a
    safeguard an agent can gain by ending the episode early: set ``termination_penalty`` then.

    ## Info and safety
    ``info`` holds ``physical_action`` (the applied torque u, shape (1,), N m),
    ``state_limit_violation`` (the state after the step is outside the limits), ``outside_rci``
    (it is outside the RCI set, so no safe action need exist) and ``constraint_violation`` (either
    of them; the RCI set lies inside the limits), computed from the state whatever chose the
    action. :meth:`safe_action_set` is the exact safe polytope {a : A a <= b} for the current state
    in normalised torques (what agents and the safeguard project onto),
    :meth:`safe_action_set_physical` the same set {u : A u <= b} in N m (for plots);
    :meth:`project_reference` projects with the cvxpy containment form; :meth:`fallback_action` is
    the least-violating action. The map u = 8 a has the same scale on every component, so the
    Euclidean projection onto the safe set is the same in either coordinates (distances scale
    by 8).

    Deviations from DESIGN.md §5: the agent acts in normalised torques a = u / 8 (DESIGN states
    |u| <= 8 N m, which is exactly what is applied); the optional ``termination_penalty``
    (default 0); the episode terminates when the state limits are left (the paper's code has no
    such case because it always safeguards).
    """

    action_map = ACTION_MAP
    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(self, render_mode: str | None = None, termination_penalty: float = 0.0) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.render_mode = render_mode
        self.termination_penalty = float(termination_penalty)
        p = PARAMS
        self.limits = LIMITS
        self.action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        # One step adds at most dt (a |sin θ| + b |u|) + noise to θ̇ of a state inside the limits.
        max_speed = p.theta_dot_bound + p.dt * (
            p.gravity_coefficient + p.input_coefficient * p.max_torque
        ) + p.noise_bound
        high = np.array([math.pi, max_speed])
        self.observation_space = spaces.Box(-high.astype(np.float32), high.astype(np.float32))
        self.state = np.zeros(2)
        self.last_action = 0.0  # the last applied torque (N m), for rendering

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Draw a start state uniformly from the RCI set (rejection from its bounding box)."""
        super().reset(seed=seed)
        safe_set = pendulum_safe_set()
        low, high = safe_set.X.interval_hull()
        while True:
            self.state = self.np_random.uniform(low, high)
            if safe_set.contains_state(self.state):
                break
        self.last_action = 0.0
        return self._observation(), {}

    def _observation(self) -> np.ndarray:
        return np.array([wrap_angle(self.state[0]), self.state[1]], dtype=np.float32)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Apply the torque u = 8 a (a clipped to [-1, 1]) for dt = 0.05 s plus the noise."""
        a = check_action(action, self.action_space)
        noise = self.np_random.uniform(-PARAMS.noise_bound, PARAMS.noise_bound, 2)
        out = pendulum_transition(self.state[None], a[None], noise[None], self.termination_penalty)
        self.state = out["state"][0]
        u = out["physical_action"][0]
        self.last_action = float(u[0])
        off_limits, outside_rci = bool(out["terminated"][0]), bool(out["outside_rci"][0])
        info = {
            "physical_action": u,
            "constraint_violation": outside_rci,
            "state_limit_violation": off_limits,
            "outside_rci": outside_rci,
        }
        return out["obs"][0], float(out["reward"][0]), off_limits, False, info

    # --- safety: safe_action_set, safe_action_set_physical, safe_set_is_empty,
    # project_reference and fallback_action come from RCISafeActions ----------------------------
    def rci_safe_set(self) -> LinearSafeActionSet:
        """The pendulum's safe action set object (physical units; cached per process)."""
        return pendulum_safe_set()

    # --- rendering ----------------------------------------------------------------------------
    def render(self) -> np.ndarray | None:
        """A 240x240x3 uint8 frame: rod (blue), bob, pivot, and the torque as an orange bar.

        The bar shows the applied physical torque (full length at |u| = 8 N m).
        """
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; use render_mode='rgb_array'")
            return None
        canvas = rendering.Canvas(240, (-1.4, 1.4, -1.4, 1.4))
        tip = (PARAMS.length * math.sin(self.state[0]), PARAMS.length * math.cos(self.state[0]))
        bar = 1.2 * self.last_action / PARAMS.max_torque  # full length at |u| = 8 N m
        canvas.segment((0.0, -1.25), (bar, -1.25), 0.08, rendering.ORANGE)
        canvas.segment((0.0, 0.0), tip, 0.12, rendering.BLUE)
        canvas.circle(tip, 0.1, rendering.BLUE)
        canvas.circle((0.0, 0.0), 0.05, rendering.BLACK)
        return canvas.frame()

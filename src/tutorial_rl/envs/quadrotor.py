"""Planar (2-D) quadrotor stabilisation task with a robust control invariant (RCI) safe set.

Chapter 3 (chapters/03_tasks.py) introduces the task; DESIGN.md §5 lists its parameters, which
live in :class:`tutorial_rl.systems.QuadrotorParameters`, and the simulator is
:func:`tutorial_rl.systems.quadrotor_step`, the same exact discretisation the safe set is computed
for. The safe action set comes from
:func:`tutorial_rl.sets.safe_actions.quadrotor_safe_action_set` (physical thrusts) and is handed to
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
from tutorial_rl.systems import QuadrotorParameters, quadrotor_linear_model, quadrotor_step

if TYPE_CHECKING:  # the sets package is imported lazily (see below)
    from tutorial_rl.sets.safe_actions import LinearSafeActionSet

PARAMS = QuadrotorParameters()
MODEL = quadrotor_linear_model(PARAMS)
#: Normalised thrusts a ∈ [-1, 1]² -> physical thrusts u = 7.71573 + 0.88090 a per rotor (the
#: thrust box's midpoint, ≈ hover, and half-width: one scale for both rotors).
ACTION_MAP = AffineActionMap(MODEL.input_box.lower, MODEL.input_box.upper)


@functools.cache
def quadrotor_safe_set() -> LinearSafeActionSet:
    """The quadrotor's safe action set object of :mod:`tutorial_rl.sets.safe_actions` (cached).

    Imported lazily: building it loads the precomputed RCI set once per process.
    """
    from tutorial_rl.sets.safe_actions import quadrotor_safe_action_set

    return quadrotor_safe_action_set()


def one_step_bounds(low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Interval hull of every next state from the box [low, high] under any thrust and disturbance.

    Exact for a linear map of boxes: centre ``A c + B u_c + c + D w_c``, radius
    ``|A| r_x + |B| r_u + |D| r_w``.
    """
    def centre_radius(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (lo + hi) / 2, (hi - lo) / 2

    (xc, xr), (uc, ur), (wc, wr) = (
        centre_radius(low, high),
        centre_radius(MODEL.input_box.lower, MODEL.input_box.upper),
        centre_radius(MODEL.disturbance_box.lower, MODEL.disturbance_box.upper),
    )
    centre = MODEL.A @ xc + MODEL.B @ uc + MODEL.c + MODEL.D @ wc
    radius = np.abs(MODEL.A) @ xr + np.abs(MODEL.B) @ ur + np.abs(MODEL.D) @ wr
    return centre - radius, centre + radius


def quadrotor_transition(
    state: np.ndarray, action: np.ndarray, disturbance: np.ndarray,
    termination_penalty: float = 0.0,
) -> dict[str, np.ndarray]:
    """One step of K quadrotors at once: what :meth:`QuadrotorEnv.step` computes, for K states.

    The single environment calls it with K = 1 and :class:`~tutorial_rl.envs.vector.
    TaskVectorEnv` with K runs; every operation is row by row, so run i gets the same bits
    either way.

    :param state: [K, 6]; :param action: [K, 2] validated normalised thrusts (clipped here);
    :param disturbance: [K, 2], held over the step.
    :returns: ``state`` (next, [K, 6]), ``obs`` (float32), ``reward`` [K], ``terminated`` [K]
        (off the state limits), ``outside_rci`` [K] and ``physical_action`` [K, 2].
    """
    a = np.clip(action, -1.0, 1.0)
    # the outer clip only absorbs rounding of the map at a = ±1
    u = np.clip(ACTION_MAP.to_physical(a), ACTION_MAP.low, ACTION_MAP.high)
    nxt = quadrotor_step(state, u, PARAMS, disturbance)
    off_limits = ~np.asarray(MODEL.state_box.contains(nxt), dtype=bool).reshape(-1)
    outside_rci = off_limits | ~np.asarray(quadrotor_safe_set().contains_state(nxt))
    effort = np.abs(a).mean(axis=1)
    distance = np.sqrt(np.square(nxt - PARAMS.equilibrium_state).sum(axis=1))
    reward = -1.0 + np.exp(-(distance + 0.01 * effort)) - termination_penalty * off_limits
    return {"state": nxt, "obs": nxt.astype(np.float32), "reward": reward,
            "terminated": off_limits, "outside_rci": outside_rci, "physical_action": u}


class QuadrotorEnv(RCISafeActions, gym.Env[np.ndarray, np.ndarray]):
    """Planar quadrotor stabilisation (paper A.8.2; DESIGN.md §5; Chapter 3, chapters/03_tasks.py).

    ## Description
    A quadrotor in the x-z plane (Mitchell et al. 2019, as in Stolz et al. 2024) must hover at
    x_eq = [0, 1, 0, 0, 0, 0]. Dynamics: ẍ = g θ + w0, z̈ = -g + K (u1 + u2) + w1,
    θ̈ = -d0 θ - d1 θ̇ + n0 (-u1 + u2) with K = 0.89/1.4, d0 = 70, d1 = 17, n0 = 55, g = 9.81,
    discretised exactly (zero-order hold on thrusts and disturbance, dt = 0.05); the model is
    linear, so the discretisation is the simulator and the RCI set is exact for it. This is our
    choice, not the paper's: its appendix A.8.2 discretises the same linear model with explicit
    Euler (x+ = x + dt f(x, u, w)). The two differ most in the stiff attitude loop (poles of
    θ̈ = -70 θ - 17 θ̇ at -7 and -10 1/s): its discrete poles are e^(-7 dt) = 0.705 and
    e^(-10 dt) = 0.607 here, 1 - 7 dt = 0.65 and 1 - 10 dt = 0.50 under Euler. So states, safe
    sets and returns are close to, not identical with, the paper's. Disturbance
    w ~ U([0, 0.08]²) on the accelerations, one-sided as in the paper's code, drawn from
    ``self.np_random``.

    ## Action Space
    ``Box(-1, 1, (2,), float32)``: normalised rotor thrusts a = [a1, a2]; the applied thrusts are
    u = 7.71573 + 0.88090 a per rotor (:data:`ACTION_MAP`), so a = ±1 is the thrust bound
    6.83483 / 8.59663 and a = 0 the box centre (hover is u_eq = g/(2K) ≈ 7.7157, a ≈ 0). Finite
    actions outside [-1, 1] are clipped to it; wrong shapes, NaN and inf raise ``ValueError``.
    The step computes in float64, so a float64 action from a safeguard is applied without
    rounding. ``info["physical_action"]`` is the thrust pair u that was applied.

    ## Observation Space
    ``Box(float32, (6,))``: [x, z, ẋ, ż, θ, θ̇] in m, m/s, rad, rad/s. Bounds: the state limits
    |x| <= 1.7, 0.3 <= z <= 2, |ẋ| <= 0.8, |ż| <= 1, |θ| <= π/12, |θ̇| <= π/2, widened by what
    one step can add (:func:`one_step_bounds`), since the episode ends once they are left.

    ## Rewards
    ``-1 + exp(-(|x+ - x_eq| + 0.01 mean_i |a_i|))`` on the state x+ after the step, where a is
    the applied (clipped) normalised action, i.e. (u - 7.71573) / 0.88090 about the box centre
    (≈ hover); the reward is 0 at the equilibrium with a = 0. Minus ``termination_penalty`` on a
    step that leaves the state limits.

    ## Starting State
    Uniform in the RCI set: drawn uniformly from the RCI set's bounding box (inside the state
    limits) and redrawn until inside the RCI set.

    ## Episode End
    Truncation after 200 steps (``max_episode_steps`` of ``tutorial_rl/Quadrotor2D-v0``,
    gymnasium's ``TimeLimit``; the paper does not state its episode length). Termination only if
    the state leaves the state limits, which never happens under
    :class:`~tutorial_rl.safeguards.ProjectionSafeguard`.

    ## Arguments
    ``gymnasium.make("tutorial_rl/Quadrotor2D-v0", render_mode=None, termination_penalty=0.0)``;
    ``render_mode="rgb_array"`` gives 240x240x3 uint8 frames. All rewards are <= 0, so without a
    safeguard an agent can gain by ending the episode early: set ``termination_penalty`` then.

    ## Info and safety
    ``info`` holds ``physical_action`` (the applied thrusts u, shape (2,)),
    ``state_limit_violation``, ``outside_rci`` (no safe action need exist) and
    ``constraint_violation`` (either; the RCI set lies inside the limits), computed from the state
    after the step whatever chose the action. :meth:`safe_action_set` is the exact safe polytope
    {a : A a <= b} in normalised thrusts for the current state (what agents and the safeguard
    project onto), :meth:`safe_action_set_physical` the same set {u : A u <= b} in physical
    thrusts (for plots); :meth:`project_reference` projects with the cvxpy containment form;
    :meth:`fallback_action` is the least-violating action. Both rotors share one scale (0.88090),
    so the Euclidean projection onto the safe set is the same in either coordinates (distances
    scale by 0.88090).

    Deviations from DESIGN.md §5: the agent acts in normalised thrusts (DESIGN states the thrust
    box in physical units, which is exactly what is applied); the reward's "normalised action" is
    the agent's action a (DESIGN leaves it open); 200 steps per episode (not stated in the paper);
    the optional ``termination_penalty`` (default 0); termination when the state limits are left.
    """

    action_map = ACTION_MAP
    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(self, render_mode: str | None = None, termination_penalty: float = 0.0) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.render_mode = render_mode
        self.termination_penalty = float(termination_penalty)
        self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        limits = MODEL.state_box
        reach_lo, reach_hi = one_step_bounds(limits.lower, limits.upper)
        low, high = np.minimum(limits.lower, reach_lo), np.maximum(limits.upper, reach_hi)
        slack = 1e-6 * (high - low)  # float64 rounding of the step must not leave the space
        low, high = (low - slack).astype(np.float32), (high + slack).astype(np.float32)
        self.observation_space = spaces.Box(low, high)
        self.state = PARAMS.equilibrium_state.copy()
        self.last_action = PARAMS.equilibrium_input.copy()  # last applied thrusts, for rendering

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Draw a start state uniformly from the RCI set (rejection from its bounding box)."""
        super().reset(seed=seed)
        safe_set = quadrotor_safe_set()
        low, high = safe_set.X.interval_hull()  # the RCI set's bounding box
        while True:
            self.state = self.np_random.uniform(low, high)
            if safe_set.contains_state(self.state):
                break
        self.last_action = PARAMS.equilibrium_input.copy()
        return self.state.astype(np.float32), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Apply the thrusts u = 7.71573 + 0.88090 a (a clipped to [-1, 1]) for dt = 0.05 s.

        The disturbance is drawn uniformly from [0, 0.08]² and held over the step.
        """
        a = check_action(action, self.action_space)
        w = self.np_random.uniform(MODEL.disturbance_box.lower, MODEL.disturbance_box.upper)
        out = quadrotor_transition(self.state[None], a[None], w[None], self.termination_penalty)
        self.state = out["state"][0]
        u = out["physical_action"][0]
        self.last_action = u
        off_limits, outside_rci = bool(out["terminated"][0]), bool(out["outside_rci"][0])
        info = {
            "physical_action": u.copy(),  # not the array rendering keeps
            "constraint_violation": outside_rci,
            "state_limit_violation": off_limits,
            "outside_rci": outside_rci,
        }
        return out["obs"][0], float(out["reward"][0]), off_limits, False, info

    # --- safety: safe_action_set, safe_action_set_physical, safe_set_is_empty,
    # project_reference and fallback_action come from RCISafeActions ----------------------------
    def rci_safe_set(self) -> LinearSafeActionSet:
        """The quadrotor's safe action set object (physical units; cached per process)."""
        return quadrotor_safe_set()

    # --- rendering ----------------------------------------------------------------------------
    def render(self) -> np.ndarray | None:
        """A 240x240x3 uint8 frame: state limits (grey box), target (green), quadrotor (blue).

        The rotor dots grow with the applied physical thrust (smallest at 6.83483).
        """
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; use render_mode='rgb_array'")
            return None
        canvas = rendering.Canvas(240, (-2.1, 2.1, -0.95, 3.25))
        canvas.segment((-2.1, 0.0), (2.1, 0.0), 0.04, rendering.GREY)  # the ground
        limits = MODEL.state_box
        canvas.box_outline(limits.lower[:2], limits.upper[:2], 0.025, rendering.LIGHT_GREY)
        canvas.circle(PARAMS.equilibrium_state[:2], 0.05, rendering.GREEN)
        x, z, theta = self.state[0], self.state[1], self.state[4]
        # body axis, perpendicular to the thrust direction (sin θ, cos θ): ẍ = g θ tilts to +x
        axis = 0.3 * np.array([math.cos(theta), -math.sin(theta)])
        centre = np.array([x, z])
        canvas.segment(centre - axis, centre + axis, 0.06, rendering.BLUE)
        rotors = ((centre + axis, self.last_action[0]), (centre - axis, self.last_action[1]))
        for end, thrust in rotors:  # rotor dots grow with their thrust
            size = 0.03 + 0.05 * (thrust - ACTION_MAP.low[0]) / (2 * ACTION_MAP.scale[0])
            canvas.circle(end, size, rendering.ORANGE)
        return canvas.frame()

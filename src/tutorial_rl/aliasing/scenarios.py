"""The frozen states of the fixed-state aliasing experiment (Chapter 6, chapters/06_aliasing.py;
paper section 6.3 and appendix A.7).

A :class:`Scenario` is one state of a course environment: its safe action polygon
{u : A u <= b} in normalised actions and the true value V(u) of applying u there. V(u) is a short
deterministic rollout (the step reward after u plus the discounted rewards of a fixed
continuation policy), affinely standardised to zero mean and unit standard deviation over the
action box, so that one step size and one α serve both scenarios (a shift and a scale change no
gradient direction).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import torch
from torch import Tensor

from tutorial_rl.projection import project_polytope
from tutorial_rl.sets.polygon import ordered_vertices

__all__ = [
    "QUADROTOR_INITIAL_ACTION", "QUADROTOR_STATE", "SEEKER_INITIAL_ACTION", "SEEKER_LAYOUT",
    "Scenario", "as_float64", "quadrotor_scenario", "seeker_scenario",
]


def as_float64(x: np.ndarray | Tensor) -> Tensor:
    """A float64 tensor of ``x`` (the experiment computes in float64 throughout)."""
    return torch.as_tensor(np.asarray(x, dtype=np.float64))


@dataclass(frozen=True)
class Scenario:
    """One frozen state: its safe polytope {u : A u <= b} (normalised actions), true values.

    :param returns: discounted return of a batch of APPLIED first actions [N, 2] -> [N].
    :param offset, scale: the standardisation, :meth:`value` = (returns − offset) / scale.
    """

    name: str
    A: np.ndarray
    b: np.ndarray
    initial_action: np.ndarray
    returns: Callable[[np.ndarray], np.ndarray]
    offset: float
    scale: float
    description: str
    extent: tuple[float, float, float, float] = (-1.25, 1.25, -1.25, 1.25)

    def value(self, actions: np.ndarray) -> np.ndarray:
        """Standardised true value V(u) of applied actions (clipped to the box, as the env does)."""
        u = np.clip(np.atleast_2d(np.asarray(actions, dtype=float)), -1.0, 1.0)
        return (self.returns(u) - self.offset) / self.scale

    def project(self, actions: np.ndarray) -> np.ndarray:
        """Φ(ũ), the exact projection onto the safe set (numpy in and out)."""
        u = as_float64(np.atleast_2d(actions))
        return project_polytope(u, as_float64(self.A), as_float64(self.b)).numpy()


def _standardised(name: str, A: np.ndarray, b: np.ndarray, u0: np.ndarray,
                  returns: Callable[[np.ndarray], np.ndarray], description: str) -> Scenario:
    if len(ordered_vertices(A, b)) == 0:
        raise ValueError(f"{name}: the safe action set of this state is empty")
    g = np.linspace(-1, 1, 41)
    ref = returns(np.stack(np.meshgrid(g, g), -1).reshape(-1, 2))
    return Scenario(name, A, b, np.asarray(u0, dtype=float), returns, float(ref.mean()),
                    float(ref.std()), description)


#: A quadrotor state [x, z, ẋ, ż, θ, θ̇] inside the RCI set, near hover but tilted by 0.11 rad:
#: the safe differential thrust is limited (a diagonal band in the action box) and the best first
#: action lies inside that band.
QUADROTOR_STATE = (-0.18, 0.98, -0.11, 0.01, 0.11, 0.09)
QUADROTOR_INITIAL_ACTION = (0.5, -0.6)


def quadrotor_scenario(state: tuple[float, ...] = QUADROTOR_STATE,
                       initial_action: tuple[float, float] = QUADROTOR_INITIAL_ACTION,
                       horizon: int = 40, gamma: float = 0.99) -> Scenario:
    """Task and safety aligned (paper section 6.3): the best action lies inside U_s(x).

    V(u): the environment's reward after applying thrusts u, then ``horizon − 1`` steps of an LQR
    controller (weights diag(1, 1, 1, 1, 1, 0.1), R = I, clipped to the thrust box), with the
    disturbance fixed at the midpoint of its box (deterministic dynamics, as in the paper).
    """
    from tutorial_rl.envs.quadrotor import ACTION_MAP, MODEL, PARAMS, QuadrotorEnv
    from tutorial_rl.systems import quadrotor_step

    env = QuadrotorEnv()
    env.state = np.asarray(state, dtype=float)
    A, b = env.safe_action_set()
    P = scipy.linalg.solve_discrete_are(MODEL.A, MODEL.B, np.diag([1, 1, 1, 1, 1, 0.1]),
                                        np.eye(2))
    K = np.linalg.solve(np.eye(2) + MODEL.B.T @ P @ MODEL.B, MODEL.B.T @ P @ MODEL.A)
    x_eq, u_eq = PARAMS.equilibrium_state, PARAMS.equilibrium_input
    w = (MODEL.disturbance_box.lower + MODEL.disturbance_box.upper) / 2

    def returns(a: np.ndarray) -> np.ndarray:
        x = np.tile(env.state, (len(a), 1))
        total = np.zeros(len(a))
        for t in range(horizon):
            if t > 0:
                a = np.clip(ACTION_MAP.to_normalized(u_eq - (x - x_eq) @ K.T), -1.0, 1.0)
            x = quadrotor_step(x, ACTION_MAP.to_physical(a), PARAMS, w)
            dist = np.linalg.norm(x - x_eq, axis=1)  # the reward of QuadrotorEnv.step
            total += gamma**t * (np.exp(-(dist + 0.01 * np.abs(a).mean(1))) - 1.0)
        return total

    return _standardised("quadrotor", A, b, np.asarray(initial_action), returns,
                         f"quadrotor at x = {list(state)}: task and safety aligned")


#: Seeker layout: agent at the origin moving at v = (2, −0.45) towards an obstacle that sits on the
#: straight line to the goal; the two other obstacles are far away and never bind.
SEEKER_LAYOUT = {
    "position": (0.0, 0.0), "velocity": (2.0, -0.45), "goal": (5.3, -0.45),
    "obstacles": ((3.0, -0.45, 0.7), (-6.0, 6.0, 1.5), (5.0, -7.0, 1.0)),
}
SEEKER_INITIAL_ACTION = (0.1, 0.75)


def seeker_scenario(layout: dict[str, tuple] | None = None,
                    initial_action: tuple[float, float] = SEEKER_INITIAL_ACTION,
                    horizon: int = 15, gamma: float = 0.99, kp: float = 0.3,
                    kd: float = 1.0) -> Scenario:
    """Task and safety NOT aligned (paper appendix A.7): the best action lies outside U_s(x).

    V(u): the seeker's reward ``−1 + exp(−|p⁺ − goal| / 10)`` after u, then a PD controller
    a = clip(kp (goal − p) − kd v) towards the goal that ignores obstacles (so the task prefers
    going through the obstacle). Unlike SeekerEnv the rollout does not stop at the goal (the PD
    controller settles there), which keeps V smooth in u.
    """
    from tutorial_rl.envs.seeker import safe_action_set

    lay = {**SEEKER_LAYOUT, **(layout or {})}
    p0, v0, goal = (np.asarray(lay[k], dtype=float) for k in ("position", "velocity", "goal"))
    A, b = safe_action_set(p0, v0, np.asarray(lay["obstacles"], dtype=float))

    def returns(a: np.ndarray) -> np.ndarray:
        p, v = np.tile(p0, (len(a), 1)), np.tile(v0, (len(a), 1))
        total = np.zeros(len(a))
        for t in range(horizon):
            if t > 0:
                a = np.clip(kp * (goal - p) - kd * v, -1.0, 1.0)
            v = v + a
            p = p + v
            total += gamma**t * (np.exp(-np.linalg.norm(p - goal, axis=1) / 10.0) - 1.0)
        return total

    return _standardised("seeker", A, b, np.asarray(initial_action), returns,
                         "seeker with an obstacle between agent and goal: not aligned")

"""Reference controllers: the yardsticks every RL score in the course is read against.

Chapter 3 introduces them with the tasks; Chapter 8 draws them as reference lines and normalises
scores with them (0 = the zero action, 1 = the reference controller), as Atari results are
normalised to random and human play. Each controller acts in the tasks' normalised action space
[-1, 1]^m and, like every agent of the course, acts *through the same safeguard*: it is the
projection safeguard that keeps them safe, not the controllers themselves.

===========  ==================================================================================
task         reference controller
===========  ==================================================================================
pendulum     infinite-horizon LQR of the package's exact discretisation about the upright state,
             with the task's own cost weights: Q = diag(1, 0.1), R = 0.001 (reward
             −(θ² + 0.1 θ̇² + 0.001 u²), u in N m)
quadrotor    infinite-horizon LQR of the package's exact (ZOH) model about hover, Q = diag(1, 1, 1,
             1, 1, 0.1), R = I in newtons of thrust (the reward penalises ‖x − x_eq‖)
seeker       PD-to-goal: a = clip(0.5 (goal − p) − v, −1, 1) (:func:`greedy_goal_policy`); it
             ignores obstacles and relies on the safeguard to avoid them
===========  ==================================================================================

``zero`` is the zero *normalised* action: torque 0 for the pendulum, the middle of the thrust
box for the quadrotor (not exactly hover), no acceleration for the seeker.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.linalg

__all__ = ["CONTROLLERS", "Policy", "controller_policy", "lqr_gain", "zero_policy"]

#: A deterministic controller: observation -> normalised action in [-1, 1]^m.
Policy = Callable[[np.ndarray], np.ndarray]

#: The reference controller of each task, by name (what ``reference.json`` calls "controller").
CONTROLLERS: dict[str, str] = {"pendulum": "lqr", "quadrotor": "lqr", "seeker": "pd-to-goal"}


def lqr_gain(A: np.ndarray, B: np.ndarray, Q: np.ndarray, R: np.ndarray) -> np.ndarray:
    """The infinite-horizon discrete LQR gain K of x⁺ = A x + B u, cost Σ xᵀQx + uᵀRu (u = −K x).

    K = (R + BᵀPB)⁻¹ BᵀPA with P the stabilising solution of the discrete algebraic Riccati
    equation P = AᵀPA − AᵀPB (R + BᵀPB)⁻¹ BᵀPA + Q.

    :raises ValueError: shapes that do not fit, or no stabilising solution.
    """
    A, B, Q, R = (np.atleast_2d(np.asarray(m, dtype=float)) for m in (A, B, Q, R))
    n, m = B.shape
    if A.shape != (n, n) or Q.shape != (n, n) or R.shape != (m, m):
        raise ValueError(f"lqr_gain: shapes do not fit: A {A.shape}, B {B.shape}, Q {Q.shape}, "
                         f"R {R.shape}")
    try:
        P = scipy.linalg.solve_discrete_are(A, B, Q, R)
    except (np.linalg.LinAlgError, ValueError) as exc:
        raise ValueError(f"lqr_gain: no stabilising Riccati solution ({exc})") from exc
    return np.linalg.solve(R + B.T @ P @ B, B.T @ P @ A)


def zero_policy(action_dim: int) -> Policy:
    """The zero normalised action, whatever the observation."""
    zero = np.zeros(action_dim, dtype=np.float32)
    return lambda observation: zero.copy()


def _lqr_policy(A: np.ndarray, B: np.ndarray, Q: np.ndarray, R: np.ndarray, x_eq: np.ndarray,
                u_eq: np.ndarray, to_normalized: Callable[[np.ndarray], np.ndarray]) -> Policy:
    K = lqr_gain(A, B, Q, R)

    def policy(observation: np.ndarray) -> np.ndarray:
        u = u_eq - K @ (np.asarray(observation, dtype=float) - x_eq)
        return np.clip(to_normalized(u), -1.0, 1.0).astype(np.float32)

    return policy


def controller_policy(env: str) -> Policy:
    """The reference controller of ``env`` (``pendulum``, ``quadrotor`` or ``seeker``)."""
    if env == "pendulum":
        from tutorial_rl.envs.pendulum import ACTION_MAP, PARAMS
        from tutorial_rl.systems import pendulum_linear_model

        model = pendulum_linear_model(PARAMS)
        # the pendulum's observation is [θ (wrapped to (−π, π]), θ̇]: the linear model's state
        return _lqr_policy(model.A, model.B, np.diag([1.0, 0.1]), np.array([[1e-3]]),
                           model.x_eq, model.u_eq, ACTION_MAP.to_normalized)
    if env == "quadrotor":
        from tutorial_rl.envs.quadrotor import ACTION_MAP, MODEL

        return _lqr_policy(MODEL.A, MODEL.B, np.diag([1.0, 1.0, 1.0, 1.0, 1.0, 0.1]), np.eye(2),
                           MODEL.x_eq, MODEL.u_eq, ACTION_MAP.to_normalized)
    if env == "seeker":
        from tutorial_rl.envs.seeker import greedy_goal_policy

        return lambda observation: greedy_goal_policy(observation).astype(np.float32)
    raise ValueError(f"unknown env {env!r}; valid envs: {', '.join(CONTROLLERS)}")

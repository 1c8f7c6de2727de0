"""The SE-RL safeguard: project every action onto the current safe action set.

Chapter 3 (chapters/03_tasks.py) wraps the three tasks with :class:`ProjectionSafeguard` and shows
:func:`random_policy_safety` as a figure; the paper states the safeguard
Φ(x, ũ) = argmin_u ‖u − ũ‖² s.t. u ∈ U_s(x) and the penalty r − α‖ũ − Φ(x, ũ)‖² (paper
eq. (23)-(24)), chapter 3 the tasks. The projection itself is
:func:`tutorial_rl.projection.project_polytope`; this module only decides when to call it and
what to do when there is nothing to project onto.

An environment is safeguardable when its unwrapped env has ``safe_action_set() -> (A, b)`` (the
polytope {u : A u <= b} of safe actions in the current state, inside the action box) and,
optionally, ``fallback_action() -> u`` for states whose safe set is empty. Both are in the
coordinates of the environment's action space, i.e. what the agent sends to ``step``: for the
course environments that is the normalised box [-1, 1]^m (the pendulum and the quadrotor map it
to torques and thrusts internally, :mod:`tutorial_rl.envs.action_scaling`, and offer
``safe_action_set_physical()`` for plots). That map has one scale on every component, so the
projection in normalised coordinates selects the same applied action as the projection in physical
units would; only distances (and so the penalty) are measured in normalised units.
"""

from __future__ import annotations

import math
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from scipy.optimize import linprog

from tutorial_rl.projection import METHODS, InfeasibleSetError, project_polytope

__all__ = [
    "INTERVENTION_RTOL",
    "ProjectionSafeguard",
    "check_action",
    "least_violating_action",
    "random_policy_safety",
]

#: ``info["intervened"]`` is ‖u − ũ‖ > INTERVENTION_RTOL · (1 + ‖ũ‖∞): far above the projection's
#: own feasibility tolerance (~1e-9 relative), far below any change an agent could notice.
INTERVENTION_RTOL = 1e-8


def check_action(action: Any, space: spaces.Box) -> np.ndarray:
    """Validate an action for a ``Box`` space and return it as a new float64 array.

    Used by the environments' ``step`` and by :class:`ProjectionSafeguard`, so both reject bad
    input with the same message. Values outside the box are *not* clipped here.

    :raises ValueError: the action is not numeric, has the wrong shape, or holds NaN or inf.
    """
    try:
        array = np.array(action, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        message = f"action must be numeric with shape {space.shape}; got {action!r}"
        raise ValueError(message) from exc
    if array.shape != space.shape:
        raise ValueError(f"action must have shape {space.shape}; got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"action must be finite; got {array.tolist()} (NaN or inf)")
    return array


def least_violating_action(
    A: np.ndarray, b: np.ndarray, low: np.ndarray, high: np.ndarray
) -> np.ndarray:
    """The action in the box [low, high] that violates {u : A u <= b} the least.

    Solves the LP  min t  s.t.  (a_i u − b_i) / ‖a_i‖ <= t,  low <= u <= high  (HiGHS): the worst
    signed distance to a face is minimal. Used as the fallback where the safe set is empty; the LP
    is always feasible, so no solver can fail here.
    """
    A, b = np.asarray(A, dtype=float), np.asarray(b, dtype=float)
    m = A.shape[1]
    norms = np.linalg.norm(A, axis=1)
    keep = norms > 0  # a zero row is a constant (in)equality that no action changes
    A_ub = np.hstack([A[keep] / norms[keep, None], -np.ones((int(keep.sum()), 1))])
    cost = np.zeros(m + 1)
    cost[-1] = 1.0
    bounds = [(float(lo), float(hi)) for lo, hi in zip(low, high, strict=True)] + [(None, None)]
    res = linprog(cost, A_ub=A_ub, b_ub=b[keep] / norms[keep], bounds=bounds, method="highs")
    if res.status != 0:  # unbounded t cannot happen with a bounded box; keep a safe default
        return np.clip(np.zeros(m), low, high)
    return np.clip(res.x[:m], low, high)


class ProjectionSafeguard(gym.Wrapper[Any, np.ndarray, Any, np.ndarray]):
    """SE-RL safeguard: ``step(ũ)`` runs ``env.step(Φ(x, ũ))`` (Chapter 3).

    The action space stays the environment's, so any agent can use the wrapped env unchanged.
    Each step reads ``env.unwrapped.safe_action_set()`` for the current state and projects the
    agent's action ũ onto it with :func:`~tutorial_rl.projection.project_polytope`; an action that
    already satisfies every constraint is passed on as is (Φ(ũ) = ũ, no solver call: the common
    case, and the reason a safeguarded step costs little more than a plain one). Actions outside
    the action box need no clipping: the safe set lies inside the box, so the projection handles
    them. The step is computed in float64 and the float64 safe action goes to the environment, so
    no rounding to float32 can push it out of the safe set.

    All actions, the safe set and the fallback are in the coordinates of the action space (the
    normalised box [-1, 1]^m for the course environments; the environment maps the safe action to
    physical units itself and reports it as ``info["physical_action"]``). The reward is
    ``r − penalty · ‖ũ − u‖²`` (the SE-RL mitigation, paper eq. (23)-(24)), with the distance in
    those (normalised) units: for the pendulum 1 unit is 8 N m, for the quadrotor 0.88090 per
    rotor. ``info`` gains ``unsafe_action`` (ũ), ``safe_action`` (u), ``projection_distance``
    (‖ũ − u‖, normalised units), ``intervened``
    (``projection_distance > INTERVENTION_RTOL · (1 + ‖ũ‖∞)``) and ``safe_set_empty``. Where the
    safe set is empty (only outside the RCI set, or when the seeker can no longer stop) the
    environment's ``fallback_action()`` (also normalised) is applied instead (the seeker brakes;
    the pendulum and quadrotor take :func:`least_violating_action`), never a solver error.
    Like the environments it is numpy in, numpy out, and projects on the CPU whatever device an
    agent trains on (one small problem per step, which a GPU would only delay).

    :param env: an environment whose unwrapped env provides ``safe_action_set()``.
    :param penalty: α >= 0 of the reward penalty.
    :param method: projection method of ``project_polytope`` (``"exact"`` or ``"cvxpylayers"``).
    """

    def __init__(self, env: gym.Env, penalty: float = 0.0, method: str = "exact") -> None:
        super().__init__(env)
        if not isinstance(env.action_space, spaces.Box):
            raise ValueError(f"ProjectionSafeguard needs a Box action space: {env.action_space}")
        if not hasattr(env.unwrapped, "safe_action_set"):
            raise ValueError(f"{env.unwrapped} has no safe_action_set(); it cannot be safeguarded")
        if not (math.isfinite(penalty) and penalty >= 0):
            raise ValueError(f"penalty must be a finite number >= 0; got {penalty}")
        if method not in METHODS:
            raise ValueError(f"unknown projection method {method!r}; choose one of {METHODS}")
        self.penalty = float(penalty)
        self.method = method

    def safe_action(self, unsafe_action: Any,
                    safe_set: tuple[np.ndarray, np.ndarray] | None = None
                    ) -> tuple[np.ndarray, bool]:
        """Φ(x, ũ) for the current state, and whether the safe set was empty (fallback used).

        ``safe_set``: the current state's ``safe_action_set()`` when the caller has it already.
        """
        return self._project(check_action(unsafe_action, self.action_space), safe_set)

    def _project(self, u_tilde: np.ndarray,
                 safe_set: tuple[np.ndarray, np.ndarray] | None = None
                 ) -> tuple[np.ndarray, bool]:
        A, b = self.env.unwrapped.safe_action_set() if safe_set is None else safe_set
        if np.all(A @ u_tilde <= b):  # already safe: the closest safe point is ũ itself
            return u_tilde.copy(), False
        try:
            # no gradient is needed here, and inference mode skips autograd's bookkeeping
            with torch.inference_mode():
                u = project_polytope(
                    torch.from_numpy(u_tilde), torch.from_numpy(A), torch.from_numpy(b),
                    self.method,
                )
        except InfeasibleSetError:
            return self._fallback(A, b), True
        return u.cpu().numpy().astype(np.float64), False

    def _fallback(self, A: np.ndarray, b: np.ndarray) -> np.ndarray:
        # (A, b), the env's fallback and the action box are all in action-space coordinates
        fallback = getattr(self.env.unwrapped, "fallback_action", None)
        if fallback is not None:
            return np.asarray(fallback(), dtype=np.float64)
        box = self.action_space
        return least_violating_action(A, b, box.low.astype(float), box.high.astype(float))

    def step(self, action: Any, safe_set: tuple[np.ndarray, np.ndarray] | None = None
             ) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        """Project ``action`` onto the safe set, step the environment, penalise the change.

        ``safe_set``: the current state's ``safe_action_set()`` when the caller has computed it
        already (SP-RL's :class:`~tutorial_rl.agents.common.ModeEnv` does: one set per step).
        """
        u_tilde = check_action(action, self.action_space)
        u, empty = self._project(u_tilde, safe_set)
        obs, reward, terminated, truncated, info = self.env.step(u)
        distance2 = float(np.sum((u - u_tilde) ** 2))
        distance = math.sqrt(distance2)
        info = dict(info)
        info.update(
            unsafe_action=u_tilde,
            safe_action=u,
            projection_distance=distance,
            intervened=bool(distance > INTERVENTION_RTOL * (1 + np.abs(u_tilde).max())),
            safe_set_empty=empty,
        )
        return obs, float(reward) - self.penalty * distance2, terminated, truncated, info


def random_policy_safety(env_id: str, steps: int, seed: int, safeguard: bool) -> dict[str, Any]:
    """Count constraint violations of uniformly random actions, with or without the safeguard.

    The figure of Chapter 3 (chapters/03_tasks.py): ``steps`` environment steps with actions drawn
    uniformly from the action box (disturbances on), resetting after every episode end.

    :param env_id: a registered id, e.g. ``"tutorial_rl/Pendulum-v0"``.
    :param steps: number of environment steps.
    :param seed: seeds the first reset and the action sampler.
    :param safeguard: wrap the environment in :class:`ProjectionSafeguard`.
    :returns: ``env_id``, ``safeguard``, ``steps``, ``violations`` (steps with
        ``info["constraint_violation"]``), ``interventions`` (steps the safeguard changed the
        action; 0 without it), ``safe_set_empty`` (fallback steps), ``episodes`` (episodes begun),
        ``state_limit_violations`` (pendulum and quadrotor only: the subset of violations that
        left the state limits, not just the RCI set) and ``violation_rate`` (violations per step).
    """
    env: gym.Env = gym.make(env_id)
    if safeguard:
        env = ProjectionSafeguard(env)
    env.action_space.seed(seed)
    env.reset(seed=seed)
    counts = {"violations": 0, "interventions": 0, "safe_set_empty": 0, "episodes": 1}
    limit_violations: int | None = None  # only for environments that report state limits
    for t in range(steps):
        _, _, terminated, truncated, info = env.step(env.action_space.sample())
        counts["violations"] += bool(info["constraint_violation"])
        if "state_limit_violation" in info:
            limit_violations = (limit_violations or 0) + bool(info["state_limit_violation"])
        counts["interventions"] += bool(info.get("intervened", False))
        counts["safe_set_empty"] += bool(info.get("safe_set_empty", False))
        if (terminated or truncated) and t < steps - 1:
            env.reset()
            counts["episodes"] += 1
    env.close()
    result = {"env_id": env_id, "safeguard": safeguard, "steps": steps, **counts}
    if limit_violations is not None:
        result["state_limit_violations"] = limit_violations
    result["violation_rate"] = counts["violations"] / max(steps, 1)
    return result

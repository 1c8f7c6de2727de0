"""K copies of one course task stepped as one: a gymnasium ``VectorEnv`` (issue 11; Chapter 8).

A sweep trains the seeds of one configuration together (:mod:`tutorial_rl.experiments.grouped`).
Stepping K single environments costs K times the per-call overhead of numpy, which is most of an
environment step at these sizes. :class:`TaskVectorEnv` computes the dynamics, rewards,
terminations and safe action sets of all K states with one call of the task's own batched
functions (:func:`~tutorial_rl.envs.pendulum.pendulum_transition`,
:func:`~tutorial_rl.envs.quadrotor.quadrotor_transition`,
:func:`~tutorial_rl.envs.seeker.seeker_transition`,
:meth:`LinearSafeActionSet.halfspaces <tutorial_rl.sets.safe_actions.LinearSafeActionSet.
halfspaces>`, :func:`~tutorial_rl.envs.seeker.safe_action_sets`), the very functions a single
environment's ``step`` calls with K = 1. There is one definition of each task.

What stays per run: the random stream (run i keeps a single environment object, seeded like a
lone run, whose ``np_random`` draws its noise and its start states with the single environment's
own ``reset``), the episode clock (``max_episode_steps`` of the registration, as gymnasium's
``TimeLimit``) and the autoreset. The dynamics and rewards work row by row, so run i's
transitions and rewards equal, bit for bit, those of a single environment seeded the same way;
the RCI tasks' safe-set offsets are one blocked matrix product for the K states (the product
with the RCI set's ~13,000 facets is most of the quadrotor's step, and the blocked one is
several times cheaper per state than K vector-matrix products), which rounds differently, so
they agree to about 1e-15 (``tests/test_vector_env.py``).

Autoreset follows gymnasium's ``SAME_STEP`` mode: the step that ends run i's episode returns the
next episode's first observation, with the last one in ``info["final_obs"][i]`` (mask
``info["_final_obs"]``), which is what the course's training loops do by hand
(``obs = env.reset() if done else obs``).

Safe sets (``safe_sets=True``): :meth:`TaskVectorEnv.safe_action_sets` gives the current states'
sets ``(A [K, k, m], b [K, k], count [K])``, computed once per state: in the step that creates the
state, so SP-RL's U_s(x') is the next step's U_s(x). The seeker's sets have different row
counts; they are padded with rows 0 · a <= 1 that never bind (run i's own rows are
``A[i, :count[i]]``): one projection call on the padded sets of 28 runs cost 2.7 ms per step,
one call per distinct row count 10.4 ms (``benchmarks/grid_throughput.py``). The sets at the
final states of ended episodes are in ``info["final_safe_sets"]``.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from tutorial_rl.envs import ENV_IDS
from tutorial_rl.envs.pendulum import PARAMS as PENDULUM
from tutorial_rl.envs.pendulum import PendulumEnv, pendulum_transition
from tutorial_rl.envs.quadrotor import MODEL as QUADROTOR
from tutorial_rl.envs.quadrotor import QuadrotorEnv, quadrotor_transition
from tutorial_rl.envs.seeker import SeekerEnv, safe_action_sets, seeker_transition

__all__ = ["SafeSets", "TaskVectorEnv", "merge_safe_sets"]

#: (A [K, k, m], b [K, k], count [K]): K safe action sets {a : A a <= b}, padded to one k.
SafeSets = tuple[np.ndarray, np.ndarray, np.ndarray]


def merge_safe_sets(into: SafeSets, part: SafeSets, runs: np.ndarray) -> SafeSets:
    """``into`` with the sets of ``runs`` replaced by ``part`` (padding rows added as needed)."""
    A, b, count = into
    k = max(A.shape[1], part[0].shape[1])
    A, b = _pad(A, b, k)
    pA, pb = _pad(part[0], part[1], k)
    A, b, count = A.copy(), b.copy(), count.copy()
    A[runs], b[runs], count[runs] = pA, pb, part[2]
    return A, b, count


def _pad(A: np.ndarray, b: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    extra = k - A.shape[1]
    if extra == 0:
        return A, b
    K, _, m = A.shape
    return (np.concatenate([A, np.zeros((K, extra, m))], axis=1),
            np.concatenate([b, np.ones((K, extra))], axis=1))


class TaskVectorEnv(VectorEnv):
    """K copies of ``env_id`` (a course task) stepped together (module docstring).

    :param env_id: one of :data:`tutorial_rl.envs.ENV_IDS`.
    :param num_envs: K >= 1.
    :param termination_penalty: as for ``gymnasium.make(env_id, termination_penalty=...)``.
    :param safe_sets: compute every state's safe action set (for a safeguard or SP-RL).
    """

    metadata: dict[str, Any] = {"autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, env_id: str, num_envs: int, termination_penalty: float = 0.0,
                 safe_sets: bool = False) -> None:
        if env_id not in ENV_IDS:
            raise ValueError(f"unknown task {env_id!r}; valid: {', '.join(ENV_IDS)}")
        if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"num_envs must be an integer >= 1; got {num_envs!r}")
        self.envs = [gym.make(env_id, termination_penalty=termination_penalty).unwrapped
                     for _ in range(num_envs)]
        self.env_id, self.num_envs = env_id, num_envs
        self.termination_penalty = float(termination_penalty)
        self.max_episode_steps = ENV_IDS[env_id]
        first = self.envs[0]
        self.single_observation_space = first.observation_space
        self.single_action_space = first.action_space
        self.observation_space = batch_space(first.observation_space, num_envs)
        self.action_space = batch_space(first.action_space, num_envs)
        self.track_safe_sets = safe_sets
        self.elapsed = np.zeros(num_envs, dtype=np.int64)
        self._sets: SafeSets | None = None

    # ------------------------------------------------------------------ reset and step
    def reset(self, *, seed: int | list[int | None] | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset every run: ``seed`` an int (run i gets seed + i), one seed per run, or None."""
        if seed is None or isinstance(seed, int):
            seeds: list[int | None] = [None if seed is None else seed + i
                                       for i in range(self.num_envs)]
        else:
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(f"expected {self.num_envs} seeds, got {len(seeds)}")
        obs = np.stack([env.reset(seed=s)[0] for env, s in zip(self.envs, seeds, strict=True)])
        self.elapsed[:] = 0
        if self.track_safe_sets:
            self._sets = self._compute_sets(np.arange(self.num_envs))
        return obs, {}

    def step(self, actions: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step every run with its action (row i); autoreset the runs whose episode ended."""
        a = np.array(actions, dtype=np.float64)
        shape = (self.num_envs, *self.single_action_space.shape)
        if a.shape != shape:
            raise ValueError(f"actions must have shape {shape}; got {a.shape}")
        if not np.all(np.isfinite(a)):
            bad = np.flatnonzero(~np.isfinite(a).reshape(self.num_envs, -1).all(1)).tolist()
            raise ValueError(f"actions must be finite; the actions of runs {bad} are not")
        obs, reward, terminated, info = self._transition(a)
        self.elapsed += 1
        truncated = self.elapsed >= self.max_episode_steps
        info = {key: value for name, v in info.items()
                for key, value in ((name, v), (f"_{name}", np.ones(self.num_envs, bool)))}
        runs = np.arange(self.num_envs)
        if self.track_safe_sets:
            self._sets = self._compute_sets(runs)
        done = np.flatnonzero(terminated | truncated)
        if len(done):
            final = np.full(self.num_envs, None, dtype=object)
            for i in done:
                final[i] = obs[i].copy()
            info["final_obs"], info["_final_obs"] = final, terminated | truncated
            if self._sets is not None:
                info["final_safe_sets"] = self._sets
            for i in done:
                obs[i] = self.envs[i].reset()[0]
            self.elapsed[done] = 0
            if self._sets is not None:
                self._sets = merge_safe_sets(self._sets, self._compute_sets(done), done)
        return obs, reward, terminated, truncated, info

    def safe_action_sets(self) -> SafeSets:
        """The current states' safe sets (A [K, k, m], b [K, k], count [K]); see the module."""
        if self._sets is None:
            raise RuntimeError("construct with safe_sets=True and reset() first")
        return self._sets

    def fallback_action(self, run: int) -> np.ndarray:
        """Run ``run``'s fallback where its safe set is empty (the single environment's own)."""
        return self.envs[run].fallback_action()

    def close(self, **kwargs: Any) -> None:
        for env in self.envs:
            env.close()

    # ------------------------------------------------------------------ the tasks
    def _transition(self, a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                  dict[str, np.ndarray]]:
        envs, penalty = self.envs, self.termination_penalty
        if isinstance(envs[0], PendulumEnv):
            bound = PENDULUM.noise_bound  # each run's noise from its own stream, as alone
            noise = np.stack([e.np_random.uniform(-bound, bound, 2) for e in envs])
            out = pendulum_transition(np.stack([e.state for e in envs]), a, noise, penalty)
        elif isinstance(envs[0], QuadrotorEnv):
            box = QUADROTOR.disturbance_box
            w = np.stack([e.np_random.uniform(box.lower, box.upper) for e in envs])
            out = quadrotor_transition(np.stack([e.state for e in envs]), a, w, penalty)
        else:
            out = seeker_transition(*(np.stack([getattr(e, k) for e in envs]) for k in
                                      ("position", "velocity", "goal", "obstacles")), a, penalty)
            for env, p, v in zip(envs, out["position"], out["velocity"], strict=True):
                env.position, env.velocity = p, v
            obs = np.stack([e._observation() for e in envs])
            collision = out["collision_obstacle"] | out["collision_wall"]
            info = {"constraint_violation": collision, **{k: out[k] for k in (
                "collision_obstacle", "collision_wall", "goal_reached", "distance_to_goal")}}
            return obs, out["reward"], out["terminated"], info
        for env, x, u in zip(envs, out["state"], out["physical_action"], strict=True):
            env.state = x
            env.last_action = float(u[0]) if isinstance(env, PendulumEnv) else u
        info = {"physical_action": out["physical_action"],
                "constraint_violation": out["outside_rci"],
                "state_limit_violation": out["terminated"], "outside_rci": out["outside_rci"]}
        return out["obs"], out["reward"], out["terminated"], info

    def _compute_sets(self, runs: np.ndarray) -> SafeSets:
        """The safe sets of the current states of ``runs``, in one batched call."""
        envs = [self.envs[i] for i in runs]
        if isinstance(envs[0], SeekerEnv):
            return safe_action_sets(*(np.stack([getattr(e, k) for e in envs]) for k in
                                      ("position", "velocity", "obstacles")))
        first = envs[0]
        A, b = first.rci_safe_set().halfspaces(np.stack([e.state for e in envs]))
        A, b = first.action_map.halfspaces_to_normalized(A, b)
        return A, b, np.full(len(envs), A.shape[1])

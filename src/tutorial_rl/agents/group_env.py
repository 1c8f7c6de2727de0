"""The environment side of a mode for K runs at once: :class:`GroupModeEnv` (issue 11).

What :class:`~tutorial_rl.agents.common.ModeEnv` does for one run (Chapter 4, chapters/04_se_rl.py;
Chapter 5, chapters/05_sp_rl.py), for the K runs of a group stepping one
:class:`~tutorial_rl.envs.vector.TaskVectorEnv`:

- SE and SP: the safeguard Φ(x, ũ) of every run whose proposal leaves its safe set, in *one*
  projection call for the group (:func:`~tutorial_rl.projection.project_polytope` on the batch
  of those runs); runs whose set is empty get their environment's fallback action, as
  :class:`~tutorial_rl.safeguards.ProjectionSafeguard` gives them;
- SP-RL with tracked sets: U_s(x), U_s(x') and a point of U_s(x') per run, with the same rules
  as ``ModeEnv`` (redundant rows dropped once a run's rows vary by state), the points of U_s(x')
  projected in one call too.

The safeguard is part of the environment: like the numpy environments it runs on the CPU
whatever the agents' device (a few small projections per step, which a GPU would only delay);
the learners move what they store to their device themselves.

It returns one :class:`~tutorial_rl.agents.common.EnvStep` per run, computed with the very
expressions ``ProjectionSafeguard.step`` and ``ModeEnv.step`` use, so the agents cannot tell a
group from a single environment. Batched projections round like single ones up to the last bits
(``tests/test_grouped.py`` compares).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from tutorial_rl.agents.common import EnvStep, SafetyConfig
from tutorial_rl.agents.safe_layer import drop_redundant_rows_many, same_rows
from tutorial_rl.envs.vector import TaskVectorEnv
from tutorial_rl.projection import InfeasibleSetError, project_polytope
from tutorial_rl.safeguards import INTERVENTION_RTOL

__all__ = ["GroupModeEnv"]

SafeSet = tuple[np.ndarray, np.ndarray]


class GroupModeEnv:
    """:class:`~tutorial_rl.agents.common.ModeEnv` for the K runs of a vector environment.

    :param env: the K runs' task (its ``safe_sets`` switch is set here when a safeguard needs it).
    :param safety: mode, mitigation and projection, shared by the group; SE-RL's penalty goes
        into the reward as the safeguard's, with each run's α (``alphas``).
    :param track_safe_sets: read U_s(x) and U_s(x') for every run at every step (SP-RL updates).
    :param alphas: each run's α (runs of one group may differ in α); default ``safety``'s.
    """

    def __init__(self, env: TaskVectorEnv, safety: SafetyConfig,
                 track_safe_sets: bool = False, alphas: Sequence[float] | None = None) -> None:
        self.env, self.safety = env, safety
        self.safeguarded = safety.mode != "unsafe"
        K = self.num_envs = env.num_envs
        alphas = [safety.weight] * K if alphas is None else [float(a) for a in alphas]
        if len(alphas) != K:
            raise ValueError(f"{K} runs need {K} alphas; got {len(alphas)}")
        # SE-RL's reward penalty, per run: the safeguard's −α‖u − ũ‖² with the run's own α
        self.penalties = alphas if safety.mitigation == "penalty" else [0.0] * K
        self.track = track_safe_sets and self.safeguarded
        env.track_safe_sets = self.safeguarded
        m = int(np.prod(env.single_action_space.shape))
        self._no_constraint: SafeSet = (np.zeros((0, m)), np.zeros(0))
        self._safe_sets: list[SafeSet | None] = [None] * K
        self._rows: list[np.ndarray | None] = [None] * K
        self._rows_vary = [False] * K

    @property
    def safe_sets(self) -> list[SafeSet | None]:
        """Each run's U_s(x) of its current state when tracked, else ``None`` per run."""
        return list(self._safe_sets)

    def reset(self, seeds: list[int] | None = None) -> np.ndarray:
        """Reset every run (seeded on the first call of a group) and return x [K, ...]."""
        obs, _ = self.env.reset(seed=seeds)
        if self.track:
            sets = self.env.safe_action_sets()
            self._safe_sets = self._read(sets)
        return obs

    def _read(self, sets: tuple[np.ndarray, np.ndarray, np.ndarray],
              runs: np.ndarray | None = None) -> list[SafeSet]:
        """The U_s of ``runs`` (default all) from the batch ``sets``: ``ModeEnv._read_safe_set``'s
        rule per run (redundant rows dropped once a run's rows vary by state), the dropping done
        for all of them in one call (:func:`drop_redundant_rows_many`, the same rows)."""
        runs = np.arange(self.num_envs) if runs is None else runs
        A_all, b_all, count = sets
        out: list[SafeSet] = []
        for i in runs:
            A, b = A_all[i, :count[i]], b_all[i, :count[i]]
            out.append((A, b))
            if not self._rows_vary[i]:
                rows = self._rows[i]
                if rows is None:
                    self._rows[i] = np.array(A)
                elif not same_rows(rows, A):
                    self._rows_vary[i] = True
        where = np.flatnonzero([self._rows_vary[i] for i in runs])
        if len(where):
            at = runs[where]
            for w, dropped in zip(where, drop_redundant_rows_many(A_all[at], b_all[at],
                                                                  count[at]), strict=True):
                out[w] = dropped
        return out

    def _project(self, u_tilde: np.ndarray, A: np.ndarray, b: np.ndarray,
                 runs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Φ of the proposals ``u_tilde`` [B, m] of ``runs`` onto their sets, one call for all.

        Returns the safe actions and which sets were empty (their runs' fallback applied).
        """
        out, empty = u_tilde.copy(), np.zeros(len(runs), dtype=bool)
        bad = np.flatnonzero(~np.all((A @ u_tilde[..., None])[..., 0] <= b, axis=1))
        if len(bad) == 0:  # the common case: every proposal is already safe
            return out, empty
        self._project_into(out, empty, u_tilde, A, b, bad, runs)
        return out, empty

    def _project_into(self, out: np.ndarray, empty: np.ndarray, u_tilde: np.ndarray,
                      A: np.ndarray, b: np.ndarray, todo: np.ndarray, runs: np.ndarray) -> None:
        """Project rows ``todo`` in one call; empty sets get their run's fallback action."""
        shared = bool(np.all(A[todo] == A[todo[0]]))  # one set of rows: factored once
        try:
            with torch.inference_mode():  # no gradient here, as in the safeguard
                u = project_polytope(torch.from_numpy(u_tilde[todo]),
                                     torch.from_numpy(A[todo[0]] if shared else A[todo]),
                                     torch.from_numpy(b[todo]), self.safety.projection_method)
            out[todo] = u.cpu().numpy()
            return
        except InfeasibleSetError as err:
            if err.empty is None and len(todo) > 1:  # which ones is unknown: one at a time
                for j in todo:
                    self._project_into(out, empty, u_tilde, A, b, np.array([j]), runs)
                return
            flags = np.ones(len(todo), bool) if err.empty is None else err.empty.cpu().numpy()
        for j in todo[flags]:
            out[j], empty[j] = self.env.fallback_action(int(runs[j])), True
        if (~flags).any():
            self._project_into(out, empty, u_tilde, A, b, todo[~flags], runs)

    def step(self, unsafe_actions: np.ndarray) -> tuple[list[EnvStep], np.ndarray]:
        """Apply every run's ũ (projected in SE and SP); the K transitions and the next x.

        The next x is the next episode's first observation where an episode ended (the vector
        environment resets it); the ended episode's last one is in that run's ``EnvStep.obs``.
        """
        u_tilde = np.array(unsafe_actions, dtype=np.float64)
        K, runs = self.num_envs, np.arange(self.num_envs)
        empty = np.zeros(K, dtype=bool)
        u = u_tilde
        if self.safeguarded:
            A, b, _ = self.env.safe_action_sets()
            u, empty = self._project(u_tilde, A, b, runs)
        obs, reward, terminated, truncated, info = self.env.step(u)
        final = info.get("final_obs")
        steps = []
        for i in range(K):
            r = float(reward[i])
            if self.safeguarded:  # ProjectionSafeguard.step's and ModeEnv.step's expressions
                d2 = float(np.sum((u[i] - u_tilde[i]) ** 2))
                intervened = bool(math.sqrt(d2) > INTERVENTION_RTOL
                                  * (1 + np.abs(u_tilde[i]).max()))
                r = float(r - self.penalties[i] * d2)
                task_reward = r + self.penalties[i] * d2
            else:
                d2, intervened, task_reward = 0.0, False, r
            last = final[i] if final is not None and final[i] is not None else obs[i]
            steps.append(EnvStep(last, r, task_reward, bool(terminated[i]), bool(truncated[i]),
                                 u_tilde[i], u[i], d2, intervened,
                                 bool(info["constraint_violation"][i])))
        if self.track:
            self._track(steps, u, empty, info, terminated | truncated)
        return steps, obs

    def _track(self, steps: list[EnvStep], u: np.ndarray, empty: np.ndarray,
               info: dict, done: np.ndarray) -> None:
        """U_s(x), U_s(x') and a point of U_s(x') per run (``ModeEnv._next_safe_point``).

        One difference from ``ModeEnv``: where an episode has just ended *and* U_s(x') of its
        last state is empty, the fallback point comes from the next episode's first state (the
        vector environment has reset that run already). Under the safeguard U_s(x') is empty
        only outside the RCI set or where the seeker can no longer stop, which the tests never
        reach; TD3 uses that point only to bootstrap a time limit.
        """
        sets = info.get("final_safe_sets", self.env.safe_action_sets())
        need = []
        next_sets = self._read(sets)
        for i, step in enumerate(steps):
            # a set the safeguard found empty (fallback applied) constrains nothing in updates
            step.safe_set = self._no_constraint if empty[i] else self._safe_sets[i]
            A, b = next_sets[i]
            step.next_safe_set, step.next_safe_point = (A, b), u[i]
            if not np.all(A @ u[i] <= b):  # the applied action is usually still safe at x'
                need.append(i)
        if need:
            idx = np.array(need)
            points, was_empty = self._project(u[idx], sets[0][idx], sets[1][idx], idx)
            for j, i in enumerate(need):
                steps[i].next_safe_point = points[j]
                if was_empty[j]:
                    steps[i].next_safe_set = self._no_constraint
        for i, step in enumerate(steps):
            self._safe_sets[i] = step.next_safe_set
        ended = np.flatnonzero(done)
        if len(ended):  # the next episode's first set, as ModeEnv.reset reads it
            for i, first in zip(ended, self._read(self.env.safe_action_sets(), ended),
                                strict=True):
                self._safe_sets[i] = first

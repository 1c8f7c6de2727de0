"""Experience storage: TD3's replay buffer, A2C's rollout and generalised advantage estimation.

Chapter 4 (chapters/04_se_rl.py) and Chapter 5 (chapters/05_sp_rl.py). What a transition holds
depends on the mode:

- SE-RL and unsafe: (x, ũ, r, x', done): the critic learns Q(x, ũ) on the *unsafe* action.
- SP-RL: (x, u, r, x', done) with the *safe* action u = Φ(x, ũ), plus the halfspaces (A, b) of
  U_s(x) and (A', b') of U_s(x'), because the actor projects μθ(x) onto U_s(x) and TD3's target
  projects μθ'(x') onto U_s(x'). A known safe point of U_s(x') is stored too: it bounds how far
  any projection can move, which lets :mod:`tutorial_rl.agents.safe_layer` skip far-away rows.
- SP-RL with the penalty critic: also ũ and the penalty reward −α‖ũ − u‖² (paper eq. (29)).

Storage is preallocated numpy (a ring buffer, no Python objects per transition); a batch is drawn
with one index array and converted with ``torch.from_numpy``: no per-sample Python work.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from tutorial_rl.agents.safe_layer import same_rows

__all__ = ["Batch", "ReplayBuffer", "SafeSetStore", "compute_gae", "pad_safe_sets"]


def pad_safe_sets(sets: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Stack safe sets with different row counts k into A [N, k_max, m], b [N, k_max] (float64).

    Missing rows become 0 · u <= 1: satisfied by every action, never active, so the polytope and
    its projection are unchanged (the number of rows may vary per state, e.g. for the seeker).
    """
    k = max(len(b) for _, b in sets)
    m = sets[0][0].shape[1]
    A = np.zeros((len(sets), k, m))
    b = np.ones((len(sets), k))
    for i, (Ai, bi) in enumerate(sets):
        A[i, : len(bi)] = Ai
        b[i, : len(bi)] = bi
    return A, b


class _ArraysAsTensors:
    """Pickles its numpy arrays as torch tensors that share their memory.

    ``torch.save`` (the exact checkpoints of :mod:`tutorial_rl.experiments.checkpoint`) writes a
    tensor as a raw storage, straight from memory, but pickles an ndarray through several
    temporary copies of it held at once: measured on a 512 MB array, 3.2 GB of extra peak memory
    against none. A group of 28 seeker TD3 runs holds about 2 GB of replay buffers, so each of its
    checkpoints briefly took 7 GB more. Loading turns the tensors back into the same arrays (same
    bytes, dtypes and shapes); pickles written before this (plain arrays) load unchanged.
    """

    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        arrays = [k for k, v in state.items() if isinstance(v, np.ndarray)
                  and v.dtype.kind in "biuf" and v.flags.c_contiguous and v.flags.writeable]
        for key in arrays:  # host memory, as the buffer's storage itself (no copy on the CPU)
            state[key] = torch.from_numpy(state[key]).to("cpu")
        state["_as_tensors"] = arrays
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        state = dict(state)
        for key in state.pop("_as_tensors", ()):  # type: ignore[union-attr]
            state[key] = state[key].cpu().numpy()  # type: ignore[union-attr]
        self.__dict__.update(state)


class SafeSetStore(_ArraysAsTensors):
    """Halfspaces (A [k, m], b [k]) of one safe set per slot, padded to a common k that grows.

    The row count is not fixed per environment (the seeker drops rows that cannot bind), so the
    store starts with the first k it sees and re-allocates with more padding rows (0 · u <= 1)
    when a larger set arrives: rare, and it keeps every slot in one contiguous array. While every
    set has the same rows A (only b depends on the state, as for the pendulum and the quadrotor)
    :meth:`get` returns that one A [k, m]: the projection then factors it once for the batch.
    """

    def __init__(self, capacity: int, action_dim: int) -> None:
        self.capacity, self.m = capacity, action_dim
        self.A = np.zeros((capacity, 0, action_dim))
        self.b = np.ones((capacity, 0))
        self.shared: np.ndarray | None = None
        self._varying = False

    def put(self, i: int, A: np.ndarray, b: np.ndarray) -> None:
        """Store the set {u : A u <= b} in slot ``i``."""
        k = len(b)
        if k > self.A.shape[1]:
            extra = k - self.A.shape[1]
            self.A = np.concatenate([self.A, np.zeros((self.capacity, extra, self.m))], axis=1)
            self.b = np.concatenate([self.b, np.ones((self.capacity, extra))], axis=1)
        self.A[i, :k] = A
        self.A[i, k:] = 0.0
        self.b[i, :k] = b
        self.b[i, k:] = 1.0
        if not self._varying:
            if self.shared is None:
                self.shared = np.array(A, dtype=np.float64)
            elif not same_rows(self.shared, np.asarray(A, dtype=np.float64)):
                self.shared, self._varying = None, True

    def get(self, idx: np.ndarray, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
        """A [B, k, m] (or the shared [k, m]), b [B, k], float64 (the projection's precision),
        on ``device``."""
        if self.shared is not None and self.shared.shape[0] == self.b.shape[1]:
            A = self.shared
        else:
            A = self.A[idx]
        return torch.from_numpy(A).to(device), torch.from_numpy(self.b[idx]).to(device)


class Batch(NamedTuple):
    """A minibatch of transitions; the SP-RL fields are ``None`` in other modes."""

    obs: Tensor
    """x, [B, n]"""
    action: Tensor
    """the action the critic learns on: ũ (unsafe, SE-RL) or u = Φ(x, ũ) (SP-RL), [B, m]"""
    reward: Tensor
    """r, [B] (SE-RL: already penalised by the safeguard when the mitigation is a penalty)"""
    next_obs: Tensor
    """x', [B, n]"""
    done: Tensor
    """1.0 where x' is terminal (no bootstrap), 0.0 otherwise (also at time-limit ends), [B]"""
    unsafe_action: Tensor | None = None
    """ũ, [B, m] (SP-RL penalty critic)"""
    penalty: Tensor | None = None
    """−α‖ũ − Φ(x, ũ)‖², [B] (SP-RL penalty critic, paper eq. (29))"""
    A: Tensor | None = None
    """U_s(x) rows, [B, k, m] float64, or [k, m] when all states share them (SP-RL)"""
    b: Tensor | None = None
    """U_s(x) offsets, [B, k] float64 (SP-RL)"""
    next_A: Tensor | None = None
    """U_s(x') rows, [B, k', m] or [k', m] float64 (SP-RL)"""
    next_b: Tensor | None = None
    """U_s(x') offsets, [B, k'] float64 (SP-RL)"""
    next_safe_point: Tensor | None = None
    """a point of U_s(x'), [B, m] (SP-RL; the stored safe ``action`` is one of U_s(x))"""


class ReplayBuffer(_ArraysAsTensors):
    """Preallocated ring buffer of transitions (TD3; Chapters 4 and 5).

    :param capacity: number of transitions kept (the oldest is overwritten).
    :param obs_dim: n, the observation size.
    :param action_dim: m, the action size.
    :param rng: the generator that draws minibatch indices (seeded by the agent: determinism).
    :param safe_sets: store U_s(x), U_s(x') and a safe point of U_s(x') (SP-RL).
    :param unsafe: store ũ and the penalty as well (SP-RL penalty critic).
    :param device: where :meth:`sample` puts the minibatch. The storage itself stays in host
        memory (numpy, as in SB3): the environment produces numpy transitions, and moving one
        minibatch per update costs fewer transfers than moving every transition as it arrives.
    """

    def __init__(
        self,
        capacity: int,
        obs_dim: int,
        action_dim: int,
        rng: np.random.Generator,
        safe_sets: bool = False,
        unsafe: bool = False,
        device: torch.device | str = "cpu",
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1; got {capacity}")
        self.capacity, self.rng = capacity, rng
        self.device = torch.device(device)
        self.size, self.pos = 0, 0
        f32 = np.float32
        self.obs = np.zeros((capacity, obs_dim), f32)
        self.action = np.zeros((capacity, action_dim), f32)
        self.reward = np.zeros(capacity, f32)
        self.next_obs = np.zeros((capacity, obs_dim), f32)
        self.done = np.zeros(capacity, f32)
        self.unsafe = unsafe
        if unsafe:
            self.unsafe_action = np.zeros((capacity, action_dim), f32)
            self.penalty = np.zeros(capacity, f32)
        self.safe_sets = safe_sets
        if safe_sets:
            self.sets = SafeSetStore(capacity, action_dim)
            self.next_sets = SafeSetStore(capacity, action_dim)
            self.next_safe_point = np.zeros((capacity, action_dim), np.float64)

    def __len__(self) -> int:
        return self.size

    def add(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        reward: float,
        next_obs: np.ndarray,
        terminated: bool,
        *,
        unsafe_action: np.ndarray | None = None,
        penalty: float = 0.0,
        safe_set: tuple[np.ndarray, np.ndarray] | None = None,
        next_safe_set: tuple[np.ndarray, np.ndarray] | None = None,
        next_safe_point: np.ndarray | None = None,
    ) -> int:
        """Store one transition; returns its slot. SP-RL fields are required when enabled."""
        i = self.pos
        self.obs[i], self.action[i], self.reward[i] = obs, action, reward
        self.next_obs[i], self.done[i] = next_obs, float(terminated)
        if self.unsafe:
            self.unsafe_action[i], self.penalty[i] = unsafe_action, penalty
        if self.safe_sets:
            if safe_set is None or next_safe_set is None or next_safe_point is None:
                raise ValueError("this buffer stores safe sets: pass safe_set, next_safe_set "
                                 "and next_safe_point")
            self.sets.put(i, *safe_set)
            self.next_sets.put(i, *next_safe_set)
            self.next_safe_point[i] = next_safe_point
        self.pos = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)
        return i

    def sample(self, batch_size: int) -> Batch:
        """A uniformly drawn minibatch (with replacement, like SB3 and cleanrl), on the device."""
        idx = self.rng.integers(0, self.size, batch_size)
        device = self.device

        def t(array: np.ndarray) -> Tensor:
            return torch.from_numpy(array).to(device)  # on the CPU: the array itself, no copy

        extra: dict[str, Tensor] = {}
        if self.unsafe:
            extra.update(unsafe_action=t(self.unsafe_action[idx]), penalty=t(self.penalty[idx]))
        if self.safe_sets:
            A, b = self.sets.get(idx, device)
            next_A, next_b = self.next_sets.get(idx, device)
            extra.update(A=A, b=b, next_A=next_A, next_b=next_b,
                         next_safe_point=t(self.next_safe_point[idx]))
        return Batch(
            t(self.obs[idx]), t(self.action[idx]), t(self.reward[idx]), t(self.next_obs[idx]),
            t(self.done[idx]), **extra,
        )


def compute_gae(
    rewards: Tensor, values: Tensor, dones: Tensor, last_value: Tensor, gamma: float, lam: float
) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation (Schulman et al. 2015, their eq. 16) over one rollout.

    Â_t = Σ_l (γλ)^l δ_{t+l} with δ_t = r_t + γ V(x_{t+1}) − V(x_t) (their eq. 10),
    cut at episode ends.
    Chapter 4 and 5: it is computed from the *safe* transition in both SE-RL and SP-RL, which is
    why A2C's updates coincide in both (Lemma 1 of the paper, Chapter 5).

    :param rewards: r_t, [T] (time-limit ends already carry the bootstrap γ V(x_T), see A2C).
    :param values: V(x_t), [T].
    :param dones: 1.0 where the episode ended after step t, [T].
    :param last_value: V(x_T) of the state after the rollout, scalar tensor.
    :returns: (advantages Â_t, returns Â_t + V(x_t)), each [T].
    """
    T = rewards.shape[0]
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(last_value)
    for t in reversed(range(T)):
        next_value = last_value if t == T - 1 else values[t + 1]
        alive = 1.0 - dones[t]
        delta = rewards[t] + gamma * next_value * alive - values[t]
        running = delta + gamma * lam * alive * running
        advantages[t] = running
    return advantages, advantages + values

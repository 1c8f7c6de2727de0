"""K A2C runs of one configuration trained as one: :class:`GroupedA2C` (issue 11; Chapter 8).

The runs of a sweep that share task and variant differ only in their seeds and α. A2C spends most of
its time stepping the environment, so a group steps all K runs' environments at once
(:class:`~tutorial_rl.agents.group_env.GroupModeEnv` over a
:class:`~tutorial_rl.envs.vector.TaskVectorEnv`: one batched dynamics call, one batched
safe-set call and one projection call per step) and evaluates the networks of all K runs in one
call per layer, with ``torch.vmap`` over ``torch.func.functional_call`` of the template agent's own
methods (``actor``, ``critic``, :meth:`A2C.compute_loss <tutorial_rl.agents.a2c.A2C.compute_loss>`),
as :class:`~tutorial_rl.agents.grouped.GroupedTD3Update` does for TD3. There is no second copy of
A2C's maths: GAE is :func:`~tutorial_rl.agents.buffers.compute_gae` on [T, K] arrays (it is
elementwise over runs, so every run keeps its own episode-end masks), the rewards go through the
expressions of :meth:`A2C.collect_rollout <tutorial_rl.agents.a2c.A2C.collect_rollout>`.

Per run: α (the SE penalty and the penalty critic's reward r − α‖ũ − Φ(ũ)‖² with the run's float
α, as alone; the per-sample loss's α as a ``[K]`` tensor mapped by ``vmap``), its environment's
random stream and episodes, its torch generator (one standard normal
draw per step, as ``A2C.select_action`` draws), its rollouts, advantages, gradient-norm clipping
(the norm over *its* parameters) and Adam state (Adam is elementwise). SP-RL's per-sample loss
projects the K runs' means in one call (:func:`~tutorial_rl.agents.safe_layer.project_many`).
The projected-mean variant (``sp_log_likelihood="projected-mean"``) projects inside the
distribution and is not grouped (its runs train alone).

Batched kernels round differently from single ones, so a grouped run matches its lone twin to
about 1e-6, not bit for bit (``tests/test_grouped.py``). SE-RL and SP-RL groups run exactly the
same code and random draws, so Lemma 1 holds bit for bit within groups too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.distributions import Distribution

from tutorial_rl.agents.a2c import A2C, Rollout
from tutorial_rl.agents.buffers import compute_gae, pad_safe_sets
from tutorial_rl.agents.common import ConfigError, ProgressRecorder
from tutorial_rl.agents.group_env import GroupModeEnv
from tutorial_rl.agents.grouped import StackedNetworks, run_alphas
from tutorial_rl.agents.safe_layer import project_many

__all__ = ["GroupedA2C"]


class GroupedA2C:
    """K A2C agents (equal config, safety up to α, their own seeds) trained on one grouped env.

    :meth:`learn` is :meth:`A2C.learn <tutorial_rl.agents.a2c.A2C.learn>` for every run; the
    stacked parameters are copied back into the agents at the end (``model.pt``, evaluation).
    The object holds everything a group's future depends on, so a checkpoint pickles it whole.

    :param agents: K >= 1 fresh agents.
    :param env: the K runs' environments in the agents' mode (``track_safe_sets`` when the
        agents' :attr:`~tutorial_rl.agents.a2c.A2C.needs_safe_sets`).
    :param seeds: each run's seed for the first reset.
    """

    def __init__(self, agents: list[A2C], env: GroupModeEnv, seeds: list[int]) -> None:
        if not agents:
            raise ValueError("a group needs at least one agent")
        first = agents[0]
        self.alphas = run_alphas(agents)
        if first.projected_mean:
            raise ConfigError("A2C's projected-mean variant projects inside the policy; its "
                              "runs cannot be grouped (train them alone)")
        if env.num_envs != len(agents) or len(seeds) != len(agents):
            raise ValueError(f"{len(agents)} agents need as many environments and seeds")
        self.agents, self.env, self.seeds = agents, env, seeds
        self.config, self.safety = first.config, first.safety
        self.device = first.device  # run_alphas checked that the agents share it
        self.stacked = StackedNetworks(agents)
        self.params = list(self.stacked.params.values())
        self.optimizer = torch.optim.Adam(self.params, lr=self.config.learning_rate)
        self.actor = self.stacked.stacked_module("actor")  # acting: all runs in one call
        self.critic = self.stacked.stacked_module("critic")
        self.steps = 0
        self.obs: np.ndarray | None = None

    # ------------------------------------------------------------------ acting
    def _call(self, method: str, *args: Any) -> Any:
        # Normal's argument checks are data-dependent branches, which vmap cannot trace; the
        # values are the ones the lone agents check
        default = Distribution._validate_args
        Distribution.set_default_validate_args(False)
        try:
            return self.stacked.call(method, *args)
        finally:
            Distribution.set_default_validate_args(default)

    def _obs(self, obs: np.ndarray) -> Tensor:
        """The K observations [K, 1, n] on the device: one transfer for the group."""
        return torch.as_tensor(obs, dtype=torch.float32, device=self.device)[:, None]

    @torch.inference_mode()
    def _values(self, obs: np.ndarray) -> np.ndarray:
        return self.critic(self._obs(obs))[:, 0].cpu().numpy()

    @torch.inference_mode()
    def _sample(self, obs: np.ndarray) -> np.ndarray:
        """ũ_k ~ πθk(·|x_k) for every run: one draw from each run's own generator (Lemma 1)."""
        mean, std = self.actor(self._obs(obs))
        # on the CPU from each run's generator, moved to the device in one transfer
        eps = torch.stack([torch.randn(mean.shape[1:], generator=a.generator, device="cpu")
                           for a in self.agents]).to(self.device)
        return (mean + std * eps)[:, 0].cpu().numpy().astype(np.float64)

    # ------------------------------------------------------------------ rollout and update
    def collect_rollouts(self, n_steps: int, recorders: list[ProgressRecorder]) -> list[Rollout]:
        """:meth:`A2C.collect_rollout` for every run: ``n_steps`` grouped steps, then GAE."""
        c = self.config
        assert self.obs is not None
        obs = self.obs
        keys = ("obs", "act", "rew", "done", "val")
        data: dict[str, list[Any]] = {k: [] for k in keys}
        sets: list[list[Any]] = [[] for _ in self.agents]
        safe: list[np.ndarray] = []
        for _ in range(n_steps):
            values = self._values(obs)
            actions = self._sample(obs)
            steps, next_obs = self.env.step(actions)
            rewards = np.empty(len(steps))
            truncated = [k for k, s in enumerate(steps) if s.truncated and not s.terminated]
            final_values = self._values(np.stack([s.obs for s in steps])) if truncated else None
            for k, (step, recorder) in enumerate(zip(steps, recorders, strict=True)):
                agent = self.agents[k]
                recorder.record(step, agent.safety.weight)
                reward = step.reward
                if agent.penalty_critic_on_reward:  # A2C.collect_rollout's expression, its α
                    reward = reward - agent.safety.weight * step.distance_sq
                if final_values is not None and k in truncated:  # bootstrap a time limit
                    reward += c.gamma * float(final_values[k])
                rewards[k] = reward
                sets[k].append(step.safe_set)
            for key, item in zip(keys, (obs, actions, rewards, [float(s.terminated or s.truncated)
                                                              for s in steps], values),
                                 strict=True):
                data[key].append(item)
            safe.append(np.stack([s.safe_action for s in steps]))
            obs = next_obs
        self.obs = obs
        last_values = self._values(obs)

        def tensor(key: str) -> Tensor:  # [T, K, ...], one transfer per field for the group
            return torch.as_tensor(np.asarray(data[key]), dtype=torch.float32, device=self.device)

        advantage, returns = compute_gae(tensor("rew"), tensor("val"), tensor("done"),
                                         torch.as_tensor(last_values, device=self.device),
                                         c.gamma, c.gae_lambda)
        rollouts = []
        obs_t, act_t = tensor("obs"), tensor("act")
        needs_sets = self.agents[0].needs_safe_sets
        safe_t = torch.as_tensor(np.stack(safe), device=self.device) if needs_sets else None
        for k in range(len(self.agents)):
            rollout = Rollout(obs_t[:, k], act_t[:, k], advantage[:, k], returns[:, k])
            if safe_t is not None:  # [T, K, m] float64
                A, b = pad_safe_sets(sets[k])  # row counts differ by run: one pair per run
                rollout.A, rollout.b = torch.from_numpy(A).to(self.device), \
                    torch.from_numpy(b).to(self.device)
                rollout.safe_action = safe_t[:, k]
            rollouts.append(rollout)
        return rollouts

    def update(self, rollouts: list[Rollout]) -> None:
        """:meth:`A2C.update` for every run: one stacked gradient step, clipped per run."""
        fields = {name: torch.stack([getattr(r, name) for r in rollouts])
                  for name in ("obs", "unsafe_action", "advantage", "returns")}
        safe_mean = None
        if self.safety.mitigation == "per-sample-loss":  # Φ(x, μθ(x)) of all runs in one call
            mean, _ = self._call("actor", fields["obs"])
            parts = [(mean[k], r.A, r.b, r.safe_action) for k, r in enumerate(rollouts)]
            safe_mean = torch.stack(project_many(parts, self.safety.projection_method))
        loss = self._call("compute_loss", _RolloutFields(**fields), safe_mean, self.alphas).sum()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self._clip_grad_norm(self.config.max_grad_norm)
        self.optimizer.step()

    @torch.no_grad()
    def _clip_grad_norm(self, max_norm: float) -> None:
        """``nn.utils.clip_grad_norm_`` of each run over its own parameters."""
        grads = [p.grad for p in self.params if p.grad is not None]
        K = len(self.agents)
        norms = torch.stack([torch.linalg.vector_norm(g.reshape(K, -1), dim=1) for g in grads],
                            dim=1)
        total = torch.linalg.vector_norm(norms, dim=1)
        coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
        for g in grads:
            g.mul_(coef.view(K, *([1] * (g.dim() - 1))))

    # ------------------------------------------------------------------ training loop
    def learn(self, recorders: list[ProgressRecorder], total_steps: int,
              checkpoint: Callable[[int], None] | None = None) -> None:
        """Run every agent's A2C until ``total_steps`` environment steps, then write back."""
        if self.obs is None:  # a fresh group; a restored one continues from its observations
            self.obs = self.env.reset(self.seeds)
        while self.steps < total_steps:
            n = min(self.config.n_steps, total_steps - self.steps)
            self.update(self.collect_rollouts(n, recorders))
            self.steps += n
            if checkpoint is not None:
                checkpoint(self.steps)
        self.stacked.write_back()
        for k, agent in enumerate(self.agents):
            agent.steps, agent.obs = self.steps, self.obs[k]


class _RolloutFields(Rollout):
    """A :class:`Rollout` that vmap can take apart: a pytree of its tensor fields."""

    def __init__(self, obs: Tensor, unsafe_action: Tensor, advantage: Tensor,
                 returns: Tensor) -> None:
        super().__init__(obs, unsafe_action, advantage, returns)


def _flatten(r: _RolloutFields) -> tuple[list[Tensor], None]:
    return [r.obs, r.unsafe_action, r.advantage, r.returns], None


def _unflatten(values: list[Tensor], _: None) -> _RolloutFields:
    return _RolloutFields(*values)


torch.utils._pytree.register_pytree_node(_RolloutFields, _flatten, _unflatten)

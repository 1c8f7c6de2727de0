"""TD3 (Fujimoto et al. 2018), safeguarded in the environment (SE-RL) or in the policy (SP-RL).

Chapter 4 (chapters/04_se_rl.py) trains it in SE-RL, Chapter 5 (chapters/05_sp_rl.py) in SP-RL;
the chapters have the formulas. Pseudocode, step names as in this module:

    for t in 1..T:
        ũ = μθ(x) + ε  (uniform at random before ``learning_starts``)          select_action
        the environment receives u = Φ(x, ũ) (SE, SP) or ũ (unsafe)           ModeEnv.step
        store (x, a, r, x', d): a = ũ (SE, unsafe) or u (SP, + U_s(x), U_s(x'))  store
        sample a minibatch; ũ' = μθ'(x') + clipped noise                       target_actions
        SP only: project ũ' onto U_s(x') and μθ(x) onto U_s(x)                 safe_actions
        critic step on compute_loss_q (SP penalty critic: compute_loss_pen)    update
        every ``policy_delay`` steps: actor step on compute_loss_pi, Polyak-average the targets

- SE-RL: Q(x, ũ) learns on unsafe actions, ∇θJ = E[∇θμ ∇ũ Q(x, ũ)].
- SP-RL: Q(x, u) learns on safe actions; target actions Φ(x', μθ'(x') + ε') are projected onto
  U_s(x'); ∇θJ = E[∇θμ ∂Φ/∂ũ ∇u Q(x, u)|u=Φ(x, μθ(x))], through the projection's Jacobian.
- SP per-sample loss (paper eq. (27)): actor loss + α‖μθ(x) − Φ(x, μθ(x))‖².
- SP penalty critic (paper eq. (29)-(30)): twin critics Q_pen(x, ũ) learn
  E[Σ γ^t (−α‖ũ_t − Φ(ũ_t)‖²)] on unsafe actions with unsafe target actions; the actor
  maximises Q(x, Φ(μ)) + Q_pen(x, μ).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces
from torch import Tensor

from tutorial_rl.agents.buffers import Batch, ReplayBuffer
from tutorial_rl.agents.common import (
    ConfigError,
    Device,
    EnvStep,
    ModeEnv,
    ProgressRecorder,
    SafetyConfig,
    cpu_state_dict,
    resolve_device,
    seed_everything,
)
from tutorial_rl.agents.networks import ActionScale, DeterministicActor, TwinQ
from tutorial_rl.agents.safe_layer import per_sample_loss, project, project_many

__all__ = ["TD3", "TD3Config"]


@dataclass(frozen=True)
class TD3Config:
    """TD3 hyperparameters (defaults: Fujimoto et al. 2018 and SB3; per-task values live in
    :func:`tutorial_rl.experiments.training.env_defaults`)."""

    hidden_sizes: tuple[int, ...] = (128, 128)
    """hidden layer widths of actor and critics ([32, 32] for the pendulum, paper A.8)"""
    learning_rate: float = 1e-3
    """Adam step size of actor and critics"""
    buffer_size: int = 1_000_000
    """replay capacity (transitions); runs shorter than this keep every transition"""
    batch_size: int = 256
    """minibatch size of every gradient step"""
    learning_starts: int = 1_000
    """environment steps with uniformly random actions before the first update"""
    gamma: float = 0.99
    """discount factor γ"""
    tau: float = 0.005
    """Polyak factor of the target networks: θ' <- (1 − τ) θ' + τ θ"""
    policy_delay: int = 2
    """critic steps per actor step (and per target update)"""
    exploration_noise: float = 0.1
    """std of the Gaussian exploration noise, as a fraction of the action box's half-width"""
    target_policy_noise: float = 0.2
    """std of the target policy smoothing noise (fraction of the half-width)"""
    target_noise_clip: float = 0.5
    """the smoothing noise is clipped to ± this (fraction of the half-width)"""

    def __post_init__(self) -> None:
        positive = ("learning_rate", "buffer_size", "batch_size", "policy_delay")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ConfigError(f"TD3Config.{name} must be > 0; got {getattr(self, name)}")
        checks = {"learning_starts": self.learning_starts >= 0, "gamma": 0 <= self.gamma <= 1,
                  "tau": 0 < self.tau <= 1, "exploration_noise": self.exploration_noise >= 0,
                  "target_policy_noise": self.target_policy_noise >= 0,
                  "target_noise_clip": self.target_noise_clip >= 0,
                  "hidden_sizes": all(int(h) > 0 for h in self.hidden_sizes)}
        for name, ok in checks.items():
            if not ok:
                raise ConfigError(f"TD3Config.{name} is out of range: {getattr(self, name)}")


def _adam(params: Any, lr: float) -> torch.optim.Adam:
    # The fused CPU kernel updates all tensors in one call (~10 % of a small update step).
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError):  # builds without the fused kernel
        return torch.optim.Adam(params, lr=lr)


class TD3:
    """TD3 agent in one of the modes ``unsafe``, ``se``, ``sp`` (see the module docstring).

    :param observation_space: a flat ``Box``.
    :param action_space: a bounded ``Box``; actions are in its units.
    :param config: hyperparameters.
    :param safety: mode, mitigation, α and the projection method.
    :param seed: seeds the networks' initialisation, the noise and the minibatch draws.
    :param buffer_capacity: replay capacity; default ``config.buffer_size``.
    :param device: where the networks, their optimiser states and the minibatches live
        (``cpu``, ``cuda``, ``cuda:N``; :func:`~tutorial_rl.agents.common.resolve_device`). The
        networks are initialised on the CPU and then moved, the replay storage stays in host
        memory (numpy, as SB3's) and each minibatch is moved once; observations come from and
        actions go to the numpy environment through ``.cpu()``.
    """

    def __init__(
        self,
        observation_space: spaces.Box,
        action_space: spaces.Box,
        config: TD3Config,
        safety: SafetyConfig,
        seed: int = 0,
        buffer_capacity: int | None = None,
        device: Device = "cpu",
    ) -> None:
        self.config, self.safety = config, safety
        self.device = resolve_device(device, "device")
        self.rng, self.generator = seed_everything(seed)
        obs_dim = int(np.prod(observation_space.shape))
        self.low = action_space.low.astype(np.float64)
        self.high = action_space.high.astype(np.float64)
        self.scale = ActionScale(self.low, self.high)
        hidden = tuple(config.hidden_sizes)
        # initialised on the CPU in a fixed order (the same weights on every device), then moved;
        # the actor and critics share ``self.scale``, which moves with the first of them
        self.actor = DeterministicActor(obs_dim, self.scale, hidden).to(self.device)
        self.critic = TwinQ(obs_dim, self.scale, hidden).to(self.device)
        self.sp = safety.mode == "sp"
        self.penalty_critic = TwinQ(obs_dim, self.scale, hidden).to(self.device) \
            if safety.mitigation == "penalty-critic" else None
        self.actor_target = copy.deepcopy(self.actor)
        self.critic_target = copy.deepcopy(self.critic)
        self.penalty_critic_target = copy.deepcopy(self.penalty_critic)
        self.actor_optimizer = _adam(self.actor.parameters(), config.learning_rate)
        self.critic_optimizer = _adam(self.critic.parameters(), config.learning_rate)
        self.penalty_optimizer = None if self.penalty_critic is None else \
            _adam(self.penalty_critic.parameters(), config.learning_rate)
        pairs = [(self.actor, self.actor_target), (self.critic, self.critic_target)]
        if self.penalty_critic is not None:
            pairs.append((self.penalty_critic, self.penalty_critic_target))
        self._online = [p for net, _ in pairs for p in net.parameters()]
        self._target = [p for _, tgt in pairs for p in tgt.parameters()]
        for p in self._target:
            p.requires_grad_(False)
        self.buffer = ReplayBuffer(
            buffer_capacity or config.buffer_size, obs_dim, self.scale.center.numel(), self.rng,
            safe_sets=self.sp, unsafe=self.penalty_critic is not None, device=self.device)
        self.n_updates = 0
        self.steps = 0
        """environment steps taken by :meth:`learn`"""
        self.obs: np.ndarray | None = None
        """the observation the next step acts on (``None`` before the first reset)"""
        self._low_t, self._high_t = self.scale.center - self.scale.half_width, \
            self.scale.center + self.scale.half_width

    # ------------------------------------------------------------------ acting
    @torch.inference_mode()
    def select_action(self, obs: np.ndarray, explore: bool = False) -> np.ndarray:
        """The unsafe action ũ = μθ(x) (+ exploration noise, clipped to the box), float64.

        The safeguard (SE) or the policy's last layer Φ (SP) is applied by :class:`ModeEnv`: at
        acting time both are the same function, only the learning differs.
        """
        x = torch.as_tensor(obs, dtype=torch.float32, device=self.device)[None]
        action = self.actor(x)[0].cpu().numpy().astype(np.float64)
        return self.explore(action) if explore else action

    def explore(self, action: np.ndarray) -> np.ndarray:
        """μθ(x) + Gaussian exploration noise (the run's numpy generator), clipped to the box."""
        half = (self.high - self.low) / 2
        action = action + self.rng.normal(0.0, self.config.exploration_noise, action.shape) * half
        return np.clip(action, self.low, self.high)

    def store(self, obs: np.ndarray, step: EnvStep) -> None:
        """Add a transition with the action the critic learns on: ũ (unsafe, SE) or u (SP)."""
        action = step.safe_action if self.sp else step.unsafe_action
        penalty = -self.safety.weight * step.distance_sq  # paper eq. (29): Q_pen's reward
        self.buffer.add(obs, action, step.reward, step.obs, step.terminated,
                        unsafe_action=step.unsafe_action, penalty=penalty,
                        safe_set=step.safe_set, next_safe_set=step.next_safe_set,
                        next_safe_point=step.next_safe_point)

    # ------------------------------------------------------------------ losses
    @torch.no_grad()
    def target_actions(self, batch: Batch, noise: Tensor | None = None) -> Tensor:
        """Smoothed target actions ũ' = clip(μθ'(x') + clip(ε)) (unsafe; Φ comes in ``update``).

        ``noise``: the standard normal draws, when the caller has drawn them (a group of runs
        draws each run's from its own generator, :mod:`tutorial_rl.agents.grouped`).
        """
        c = self.config
        if noise is None:  # drawn on the CPU from the run's generator (the same on any device)
            noise = torch.randn(batch.next_obs.shape[0], self._low_t.numel(),
                                generator=self.generator, device="cpu").to(self.device)
        noise = (noise * c.target_policy_noise).clamp(-c.target_noise_clip, c.target_noise_clip)
        unsafe = self.actor_target(batch.next_obs) + noise * self.scale.half_width
        return unsafe.clamp(self._low_t, self._high_t)

    def safe_actions(self, batch: Batch, target_unsafe: Tensor,
                     mu: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """SP-RL's last layer Φ on the target actions (onto U_s(x')) and on μθ(x) (onto U_s(x)).

        The critic bootstraps on Φ(x', ũ') because it only ever learns on safe actions (§5.2 of
        the paper); the actor's Φ(x, μθ(x)) keeps μθ's graph, so its gradient passes through
        ∂Φ/∂ũ. Both go through one projection call (see ``project_many``); the stored safe action
        and ``next_safe_point`` are known points of the sets. Identity in unsafe and SE modes.
        """
        if not self.sp:
            return target_unsafe, mu
        assert batch.A is not None and batch.b is not None
        assert batch.next_A is not None and batch.next_b is not None
        parts = [(target_unsafe, batch.next_A, batch.next_b, batch.next_safe_point)]
        if mu is not None:
            parts.append((mu, batch.A, batch.b, batch.action.to(batch.A.dtype)))
        out = project_many(parts, self.safety.projection_method)
        return out[0], (out[1] if mu is not None else None)

    def compute_loss_q(self, batch: Batch, target_action: Tensor) -> Tensor:
        """Clipped double-Q loss: y = r + γ (1 − d) min_i Q_i'(x', ũ'), Σ_i E(Q_i(x, a) − y)²."""
        with torch.no_grad():
            q1_next, q2_next = self.critic_target(batch.next_obs, target_action)
            y = batch.reward + self.config.gamma * (1 - batch.done) * torch.min(q1_next, q2_next)
        q1, q2 = self.critic(batch.obs, batch.action)
        return F.mse_loss(q1, y) + F.mse_loss(q2, y)

    def compute_loss_pen(self, batch: Batch, target_unsafe: Tensor) -> Tensor:
        """Penalty critic loss (paper eq. (29)).

        Q_pen(x, ũ) regresses on −α‖ũ − Φ(ũ)‖² + γ Q_pen'(x', ũ').

        The target action ũ' is the unsafe one: Q_pen evaluates the unsafe policy.
        """
        assert self.penalty_critic is not None and self.penalty_critic_target is not None
        assert batch.unsafe_action is not None and batch.penalty is not None
        with torch.no_grad():
            p1, p2 = self.penalty_critic_target(batch.next_obs, target_unsafe)
            y = batch.penalty + self.config.gamma * (1 - batch.done) * torch.min(p1, p2)
        q1, q2 = self.penalty_critic(batch.obs, batch.unsafe_action)
        return F.mse_loss(q1, y) + F.mse_loss(q2, y)

    def compute_loss_pi(self, batch: Batch, mu: Tensor | None = None,
                        u: Tensor | None = None, alpha: float | Tensor | None = None) -> Tensor:
        """Actor loss −E[Q1(x, u)], u = Φ(x, μθ(x)) (+ the SP mitigation's term).

        SE-RL and unsafe: u = μθ(x). SP-RL: the gradient passes through ∂Φ/∂ũ (paper eq.
        (20)); the per-sample loss adds α‖μ − Φ(μ)‖² (paper eq. (27)), the penalty critic
        −Q_pen1(x, μθ(x)) (paper eq. (30)).
        ``mu`` and ``u`` are computed here unless ``update`` already has them; ``alpha`` is
        the config's α unless given (a group of runs with different α passes each run's).
        """
        if mu is None:
            mu = self.actor(batch.obs)
        if u is None and not self.sp:
            u = mu
        elif u is None:
            assert batch.A is not None and batch.b is not None
            u = project(mu, batch.A, batch.b, self.safety.projection_method,
                        batch.action.to(batch.A.dtype))
        loss = -self.critic.q1(batch.obs, u).mean()
        if self.safety.mitigation == "per-sample-loss":
            alpha = self.safety.weight if alpha is None else alpha
            loss = loss + per_sample_loss(alpha, mu, u)
        elif self.penalty_critic is not None:
            loss = loss - self.penalty_critic.q1(batch.obs, mu).mean()
        return loss

    # ------------------------------------------------------------------ update
    def update(self, batch: Batch, update_actor: bool) -> None:
        """One TD3 gradient step on a minibatch (no ``.item()`` outside SP-RL's projection, whose
        check for violated rows and row pruning read sizes and so wait on the device).

        μθ(x) is computed before the critic step: the critic step does not change θ, and SP-RL
        can then project it together with the target actions.
        """
        target_unsafe = self.target_actions(batch)
        mu = self.actor(batch.obs) if update_actor else None
        target_action, u = self.safe_actions(batch, target_unsafe, mu)
        loss_q = self.compute_loss_q(batch, target_action)
        self.critic_optimizer.zero_grad(set_to_none=True)
        loss_q.backward()
        self.critic_optimizer.step()
        if self.penalty_optimizer is not None:
            loss_pen = self.compute_loss_pen(batch, target_unsafe)
            self.penalty_optimizer.zero_grad(set_to_none=True)
            loss_pen.backward()
            self.penalty_optimizer.step()
        if update_actor:
            loss_pi = self.compute_loss_pi(batch, mu, u)  # Q1 after the critic step
            self.actor_optimizer.zero_grad(set_to_none=True)
            # gradients for the actor only: the critics are held fixed in this step
            loss_pi.backward(inputs=list(self.actor.parameters()))
            self.actor_optimizer.step()
            with torch.no_grad():  # Polyak averaging of all target networks at once
                torch._foreach_lerp_(self._target, self._online, self.config.tau)

    # ------------------------------------------------------------------ training loop
    def learn(self, env: ModeEnv, total_steps: int, recorder: ProgressRecorder,
              seed: int | None = None, checkpoint: Callable[[int], None] | None = None) -> None:
        """Run TD3 until ``total_steps`` environment steps (one gradient step per step).

        :param env: the task in this agent's mode (built with ``track_safe_sets`` for SP-RL).
        :param recorder: receives every step (episode statistics, progress bar).
        :param seed: seeds the first reset of the environment.
        :param checkpoint: called with the step count after every step; it may save the agent,
            ``env`` and ``recorder`` (:mod:`tutorial_rl.experiments.checkpoint`). The loop's state
            (``steps``, ``obs``) lives on the agent, so a restored agent continues where it was.
        """
        c = self.config
        if self.obs is None:  # a fresh run; a restored one continues from its observation
            self.obs = env.reset(seed=seed)
        while self.steps < total_steps:
            t, obs = self.steps, self.obs
            if t < c.learning_starts:  # warm-up: uniform actions fill the buffer
                unsafe_action = self.rng.uniform(self.low, self.high)
            else:
                unsafe_action = self.select_action(obs, explore=True)
            step = env.step(unsafe_action)
            recorder.record(step, self.safety.weight)
            self.store(obs, step)
            self.obs = env.reset() if step.terminated or step.truncated else step.obs
            if t >= c.learning_starts:
                self.n_updates += 1
                batch = self.buffer.sample(c.batch_size)
                self.update(batch, update_actor=self.n_updates % c.policy_delay == 0)
            self.steps += 1
            if checkpoint is not None:
                checkpoint(self.steps)

    # ------------------------------------------------------------------ persistence
    def networks(self) -> dict[str, torch.nn.Module]:
        """Every network by name (what ``model.pt`` holds)."""
        nets = {"actor": self.actor, "actor_target": self.actor_target, "critic": self.critic,
                "critic_target": self.critic_target}
        if self.penalty_critic is not None and self.penalty_critic_target is not None:
            nets.update(penalty_critic=self.penalty_critic,
                        penalty_critic_target=self.penalty_critic_target)
        return nets

    def state_dict(self) -> dict[str, Any]:
        """Parameters of every network (and the action scaling buffers), as CPU tensors: a
        ``model.pt`` loads on any device."""
        return cpu_state_dict(self.networks())

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output (copied onto this agent's device)."""
        for name, net in self.networks().items():
            net.load_state_dict(state[name])

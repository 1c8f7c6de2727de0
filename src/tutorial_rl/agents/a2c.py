"""A2C (Mnih et al. 2016) with GAE (Schulman et al. 2015), in SE-RL or SP-RL.

Chapter 4 (chapters/04_se_rl.py) and Chapter 5 (chapters/05_sp_rl.py). Pseudocode,
step names as in this module:

    repeat until T environment steps:
        for n_steps: ũ ~ πθ(·|x) = N(μθ(x), σ²); the environment receives Φ(x, ũ)   collect_rollout
        Â = GAE(r, V) on the safe transitions                                    compute_gae
        one gradient step on compute_loss_pi + c_v compute_loss_v                update

SP-RL with the unsafe sample's likelihood (Gros et al. 2020, Prop. 2; the default): the loss uses
log πθ(ũ|x) of the unsafe sample ũ with advantages from the safe transition, which is exactly what
SE-RL does, so with the same seed SE and SP produce bit-identical parameters (Lemma 1): one code
path, the same random numbers in the same order, and the same Φ at acting time.

Variants and mitigations:

- SP projected mean (paper A.5, Chen et al. 2021; ``sp_log_likelihood="projected-mean"``): sample
  ũ ~ N(Φ(x, μθ(x)), σ²), the environment receives Φ(x, ũ), the loss uses log N(ũ; Φ(x, μθ), σ²),
  whose gradient passes through ∂Φ/∂μ.
- SE penalty (paper eq. (26)): the safeguard's reward r − α‖ũ − Φ(ũ)‖².
- SP per-sample loss (paper eq. (28)): actor loss + α‖μθ(x) − Φ(x, μθ(x))‖² (on the mean).
- SP penalty critic (paper eqs. (29)-(31)): for A2C this *is* the SE penalty, and this module
  computes it as such. The paper (§7.2, §8.2.2) notes that the distinction vanishes for state-value
  critics: V does not depend on the action, so a critic V_pen(x) of the discounted penalties −α‖ũ −
  Φ(ũ)‖² added to the task critic V(x) is the state value of the penalised reward r − α‖ũ − Φ(ũ)‖²,
  and GAE is linear in (r, V). A2C therefore learns one value network on r − α‖ũ − Φ(ũ)‖², with the
  same loss and the same clipping as SE-RL with the reward penalty; with the same seed and α the
  two produce bit-identical parameters (Lemma 1 extended; tests/test_agents.py). (An earlier
  version of this course split V into two networks with separate losses; that is a different
  parameterisation, our own and not the paper's, and it is no longer offered.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor, nn
from torch.distributions import Normal

from tutorial_rl.agents.buffers import compute_gae, pad_safe_sets
from tutorial_rl.agents.common import (
    ConfigError,
    Device,
    ModeEnv,
    ProgressRecorder,
    SafetyConfig,
    cpu_state_dict,
    resolve_device,
    seed_everything,
)
from tutorial_rl.agents.networks import ActionScale, GaussianActor, ValueNetwork
from tutorial_rl.agents.safe_layer import per_sample_loss, project

__all__ = ["A2C", "A2CConfig", "Rollout"]


@dataclass(frozen=True)
class A2CConfig:
    """A2C hyperparameters (defaults after SB3's A2C; per-task values live in
    :func:`tutorial_rl.experiments.training.env_defaults`)."""

    hidden_sizes: tuple[int, ...] = (128, 128)
    """hidden layer widths of actor and critic ([32, 32] for the pendulum, paper A.8)"""
    learning_rate: float = 7e-4
    """Adam step size"""
    n_steps: int = 16
    """environment steps per rollout (one gradient step per rollout)"""
    gamma: float = 0.99
    """discount factor γ"""
    gae_lambda: float = 0.95
    """GAE's λ (1.0: Monte-Carlo advantages, 0.0: one-step TD)"""
    value_coef: float = 0.5
    """weight c_v of the value loss"""
    entropy_coef: float = 0.0
    """weight of the entropy bonus"""
    max_grad_norm: float = 0.5
    """gradient clipping (global norm over all parameters)"""
    log_std_init: float = -0.5
    """initial log σ in units of the action box's half-width"""
    normalize_advantage: bool = False
    """standardise Â within each rollout"""
    sp_log_likelihood: Literal["unsafe-sample", "projected-mean"] = "unsafe-sample"
    """SP-RL only: ``unsafe-sample`` (Gros et al. 2020, Prop. 2: log πθ(ũ|x), Lemma 1 holds) or
    ``projected-mean`` (paper A.5: sample around Φ(x, μθ(x)))"""

    def __post_init__(self) -> None:
        checks = {"learning_rate": self.learning_rate > 0, "n_steps": self.n_steps > 0,
                  "gamma": 0 <= self.gamma <= 1, "gae_lambda": 0 <= self.gae_lambda <= 1,
                  "value_coef": self.value_coef >= 0, "entropy_coef": self.entropy_coef >= 0,
                  "max_grad_norm": self.max_grad_norm > 0,
                  "hidden_sizes": all(int(h) > 0 for h in self.hidden_sizes)}
        for name, ok in checks.items():
            if not ok:
                raise ConfigError(f"A2CConfig.{name} is out of range: {getattr(self, name)}")
        if self.sp_log_likelihood not in ("unsafe-sample", "projected-mean"):
            raise ConfigError("A2CConfig.sp_log_likelihood must be 'unsafe-sample' or "
                              f"'projected-mean'; got {self.sp_log_likelihood!r}")


@dataclass
class Rollout:
    """One rollout of T steps (tensors [T, ...]); safe-set fields only when SP-RL needs them."""

    obs: Tensor
    unsafe_action: Tensor
    """ũ, the samples whose log-likelihood enters the loss"""
    advantage: Tensor
    """Â (of the penalised reward with the penalty critic)"""
    returns: Tensor
    """targets of V"""
    A: Tensor | None = None
    b: Tensor | None = None
    safe_action: Tensor | None = None
    """u = Φ(x, ũ): a point of U_s(x), the layer's answer where the stored set turns out empty"""


class A2C:
    """A2C agent in one of the modes ``unsafe``, ``se``, ``sp`` (see the module docstring).

    :param observation_space: a flat ``Box``.
    :param action_space: a bounded ``Box``; actions are in its units.
    :param config: hyperparameters.
    :param safety: mode, mitigation, α and the projection method.
    :param seed: seeds initialisation and sampling (one torch generator, used in a fixed order).
    :param device: where the networks, the optimiser state and the rollouts live (``cpu``,
        ``cuda``, ``cuda:N``); the networks are initialised on the CPU and then moved, the
        samples are drawn on the CPU (the run's generator) and moved, and the numpy environment
        gets its actions through ``.cpu()``.
    """

    def __init__(self, observation_space: spaces.Box, action_space: spaces.Box,
                 config: A2CConfig, safety: SafetyConfig, seed: int = 0,
                 device: Device = "cpu") -> None:
        if config.sp_log_likelihood == "projected-mean" and safety.mode != "sp":
            raise ConfigError("A2CConfig.sp_log_likelihood='projected-mean' projects the mean "
                              f"onto the safe set: it needs mode 'sp' (got {safety.mode!r})")
        self.config, self.safety = config, safety
        self.device = resolve_device(device, "device")
        self.rng, self.generator = seed_everything(seed)
        obs_dim = int(np.prod(observation_space.shape))
        self.scale = ActionScale(action_space.low, action_space.high)
        hidden = tuple(config.hidden_sizes)
        # initialised on the CPU (the same weights on every device), then moved
        self.actor = GaussianActor(obs_dim, self.scale, hidden, config.log_std_init).to(
            self.device)
        # with the penalty critic this one network is V + V_pen (module docstring): a second
        # network would draw its initial weights from the same generator and break Lemma 1
        self.critic = ValueNetwork(obs_dim, hidden).to(self.device)
        self.penalty_critic_on_reward = safety.mitigation == "penalty-critic"
        self.projected_mean = config.sp_log_likelihood == "projected-mean"
        self.needs_safe_sets = safety.mitigation == "per-sample-loss" or self.projected_mean
        self.params = [p for net in self.networks().values() for p in net.parameters()]
        self.optimizer = torch.optim.Adam(self.params, lr=config.learning_rate)
        self.steps = 0
        """environment steps taken by :meth:`learn`"""
        self.obs: np.ndarray | None = None
        """the observation the next step acts on (``None`` before the first reset)"""

    # ------------------------------------------------------------------ acting
    def distribution(self, obs: Tensor, A: Tensor | None = None, b: Tensor | None = None,
                     safe_point: Tensor | None = None) -> tuple[Normal, Tensor]:
        """(πθ(·|x), μθ(x)): N(μ, σ²), or N(Φ(x, μ), σ²) for the projected-mean variant."""
        mean, std = self.actor(obs)
        center = mean
        if self.projected_mean and A is not None and b is not None:
            # without a safe set (evaluation) the safeguard projects the mean action instead
            center = project(mean, A, b, self.safety.projection_method, safe_point)
        return Normal(center, std), mean

    @torch.inference_mode()
    def select_action(self, obs: np.ndarray, explore: bool = False,
                      safe_set: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """ũ ~ πθ(·|x) (``explore``) or the mean action, float64 (the action space's units).

        Exactly one standard normal draw per call when exploring, in every mode (Lemma 1).
        """
        x = torch.as_tensor(obs, dtype=torch.float32, device=self.device)[None]
        A = b = None
        if self.projected_mean and safe_set is not None:
            A, b = (torch.from_numpy(t)[None].to(self.device) for t in safe_set)
        dist, _ = self.distribution(x, A, b)
        if not explore:
            return dist.mean[0].cpu().numpy().astype(np.float64)
        # drawn on the CPU from the run's generator: the same numbers on every device
        eps = torch.randn(dist.mean.shape, generator=self.generator, device="cpu").to(self.device)
        return (dist.mean + dist.stddev * eps)[0].cpu().numpy().astype(np.float64)

    @torch.inference_mode()
    def _value(self, obs: np.ndarray) -> float:
        x = torch.as_tensor(obs, dtype=torch.float32, device=self.device)[None]
        return float(self.critic(x)[0])

    # ------------------------------------------------------------------ rollout
    def collect_rollout(self, env: ModeEnv, obs: np.ndarray, n_steps: int,
                        recorder: ProgressRecorder) -> tuple[Rollout, np.ndarray]:
        """Run the policy for ``n_steps`` steps and compute Â by GAE; returns the next x too."""
        c = self.config
        keys = ("obs", "act", "rew", "done", "val", "sets", "safe")
        data: dict[str, list[Any]] = {k: [] for k in keys}
        for _ in range(n_steps):
            value = self._value(obs)
            unsafe_action = self.select_action(obs, explore=True, safe_set=env.safe_set)
            step = env.step(unsafe_action)
            recorder.record(step, self.safety.weight)
            reward = step.reward
            if self.penalty_critic_on_reward:
                # r − α d², the very expression ProjectionSafeguard computes for SE-RL's penalty
                # (paper eqs. (23) and (29)), so SE penalty and SP penalty critic agree bit for bit
                reward = reward - self.safety.weight * step.distance_sq
            if step.truncated and not step.terminated:
                # a time limit is not a terminal state: bootstrap with V(x_T) (as SB3 does)
                reward += c.gamma * self._value(step.obs)
            for key, item in zip(keys, (obs, unsafe_action, reward,
                                        float(step.terminated or step.truncated), value,
                                        step.safe_set, step.safe_action),
                                 strict=True):
                data[key].append(item)
            obs = env.reset() if step.terminated or step.truncated else step.obs
        last_value = self._value(obs)

        def tensor(key: str) -> Tensor:  # one transfer per field and rollout
            return torch.as_tensor(np.asarray(data[key]), dtype=torch.float32, device=self.device)

        advantage, returns = compute_gae(tensor("rew"), tensor("val"), tensor("done"),
                                         torch.tensor(last_value, device=self.device), c.gamma,
                                         c.gae_lambda)
        rollout = Rollout(tensor("obs"), tensor("act"), advantage, returns)
        if self.needs_safe_sets:
            A, b = pad_safe_sets(data["sets"])
            rollout.A, rollout.b = torch.from_numpy(A).to(self.device), \
                torch.from_numpy(b).to(self.device)
            rollout.safe_action = torch.as_tensor(np.asarray(data["safe"]), device=self.device)
        return rollout, obs

    # ------------------------------------------------------------------ losses and update
    def compute_loss_pi(self, rollout: Rollout, safe_mean: Tensor | None = None,
                        alpha: float | Tensor | None = None) -> Tensor:
        """−E[log πθ(ũ|x) Â] (+ the per-sample loss on the mean, paper eq. (28)).

        ``safe_mean``: Φ(x, μθ(x)) if the caller has projected the means already (a group of
        runs projects all of theirs in one call, :mod:`tutorial_rl.agents.grouped_a2c`);
        ``alpha``: the config's α unless given (a group with different α passes each run's).
        """
        dist, mean = self.distribution(rollout.obs, rollout.A, rollout.b, rollout.safe_action)
        advantage = rollout.advantage
        if self.config.normalize_advantage and advantage.numel() > 1:
            advantage = (advantage - advantage.mean()) / (advantage.std() + 1e-8)
        log_prob = dist.log_prob(rollout.unsafe_action).sum(-1)
        loss = -(advantage * log_prob).mean()
        if self.config.entropy_coef:
            loss = loss - self.config.entropy_coef * dist.entropy().sum(-1).mean()
        if self.safety.mitigation == "per-sample-loss":
            if safe_mean is None:
                assert rollout.A is not None and rollout.b is not None
                safe_mean = project(mean, rollout.A, rollout.b, self.safety.projection_method,
                                    rollout.safe_action)
            alpha = self.safety.weight if alpha is None else alpha
            loss = loss + per_sample_loss(alpha, mean, safe_mean)
        return loss

    def compute_loss_v(self, rollout: Rollout) -> Tensor:
        """E(V(x) − R)² (R: returns of r − α d² with the penalty critic, V then being V + V_pen)."""
        return (self.critic(rollout.obs) - rollout.returns).square().mean()

    def compute_loss(self, rollout: Rollout, safe_mean: Tensor | None = None,
                     alpha: float | Tensor | None = None) -> Tensor:
        """L_pi + c_v L_V, the loss of one update."""
        return self.compute_loss_pi(rollout, safe_mean, alpha) + self.config.value_coef * \
            self.compute_loss_v(rollout)

    def update(self, rollout: Rollout) -> None:
        """One gradient step on L_pi + c_v L_V, clipped to ``max_grad_norm``."""
        loss = self.compute_loss(rollout)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.params, self.config.max_grad_norm)
        self.optimizer.step()

    # ------------------------------------------------------------------ training loop
    def learn(self, env: ModeEnv, total_steps: int, recorder: ProgressRecorder,
              seed: int | None = None, checkpoint: Callable[[int], None] | None = None) -> None:
        """Run A2C until ``total_steps`` environment steps (the last rollout may be shorter).

        :param env: the task in this agent's mode (``track_safe_sets`` when
            :attr:`needs_safe_sets`).
        :param checkpoint: called with the step count after every update (see
            :meth:`TD3.learn <tutorial_rl.agents.td3.TD3.learn>`).
        """
        if self.obs is None:  # a fresh run; a restored one continues from its observation
            self.obs = env.reset(seed=seed)
        while self.steps < total_steps:
            n = min(self.config.n_steps, total_steps - self.steps)
            rollout, self.obs = self.collect_rollout(env, self.obs, n, recorder)
            self.update(rollout)
            self.steps += n
            if checkpoint is not None:
                checkpoint(self.steps)

    # ------------------------------------------------------------------ persistence
    def networks(self) -> dict[str, nn.Module]:
        """Every network by name (what ``model.pt`` holds)."""
        return {"actor": self.actor, "critic": self.critic}

    def state_dict(self) -> dict[str, Any]:
        """Parameters of every network, as CPU tensors (a ``model.pt`` loads on any device)."""
        return cpu_state_dict(self.networks())

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output (copied onto this agent's device)."""
        for name, net in self.networks().items():
            net.load_state_dict(state[name])

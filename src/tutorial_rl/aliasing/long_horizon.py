"""Long-horizon penalties: what the penalty critic sees and the per-sample loss cannot (Chapter 7,
chapters/07_mitigations.py, "The penalty critic's long-term part"; paper eq. 27-31).

With exact critics the penalty critic of SP-RL is

    Q_pen(x, ũ) = −α d(x, ũ)² + γ E[V_pen(x') | x, Φ(x, ũ)],

and, because the next state depends on ũ only through Φ,

    ∇ũ Q_pen = −2α (ũ − Φ) + Jᵀ ∇u γ E[V_pen(x')].

The per-sample loss has the first term only. The second, the *long-term part*, is non-zero only
where today's action changes tomorrow's penalties. This module builds such a state and measures
both statements on fitted critics:

- :func:`approach_scenario`: the seeker moving at speed 3 towards a goal just in front of the
  right-hand wall. After the first (learned) action a fixed continuation controller takes over:
  a goal-seeking PD controller that brakes too late, behind the safeguard. The faster the first
  action sends the seeker on, the more the safeguard has to brake for the controller later, so
  the future penalties grow with today's acceleration while the task rewards it.
- :func:`run_long_horizon`: fits the critics by regression on uniformly drawn actions (as in the
  fixed-state experiment, :mod:`.experiment`) and ascends three objectives from the same initial
  action: SP-RL + per-sample loss, SP-RL + penalty critic and SE-RL + reward penalty.
- :func:`decomposition_check`: ∇Q_pen of the fitted penalty critic against
  −2α(ũ − Φ) + Jᵀ∇u γE[V_pen], the latter from a critic fitted on safe actions only.

Everything is deterministic given the seed; a run at the ``ci`` sizes takes a few seconds on one
core.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from tutorial_rl.agents.buffers import pad_safe_sets
from tutorial_rl.aliasing.critics import fit_critics, one_thread
from tutorial_rl.aliasing.experiment import ExperimentConfig, _ascend
from tutorial_rl.aliasing.scenarios import as_float64
from tutorial_rl.profile import by_profile
from tutorial_rl.projection import project_polytope, projection_jacobian

__all__ = ["LONG_HORIZON_LABELS", "LONG_HORIZON_SETTINGS", "ApproachScenario",
           "LongHorizonConfig", "LongHorizonResult", "Outcome", "approach_scenario",
           "decomposition_check", "run_long_horizon"]

LONG_HORIZON_SETTINGS = ("sp_per_sample", "sp_penalty_critic", "se_penalty")
LONG_HORIZON_LABELS = {"sp_per_sample": "SP-RL + per-sample loss",
                       "sp_penalty_critic": "SP-RL + penalty critic",
                       "se_penalty": "SE-RL + reward penalty"}


@dataclass(frozen=True)
class ApproachScenario:
    """A frozen seeker state whose first action decides the safeguard's later interventions.

    :param A, b: the first action's safe set {u : A u <= b} (normalised accelerations).
    :param rollout: applied first actions [N, 2] -> (discounted task return [N], discounted
        future squared distances Σ_{k>=1} γ^k ‖ũ_k − Φ(x_k, ũ_k)‖² [N], interventions [N]).
    """

    A: np.ndarray
    b: np.ndarray
    rollout: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]
    initial_action: np.ndarray
    gamma: float
    description: str

    def project(self, actions: np.ndarray | Tensor) -> Tensor:
        """Φ(ũ) onto the first action's safe set (float64 tensor)."""
        return project_polytope(as_float64(np.atleast_2d(np.asarray(actions))),
                                as_float64(self.A), as_float64(self.b))


def approach_scenario(position: tuple[float, float] = (2.0, 0.0),
                      velocity: tuple[float, float] = (3.0, 0.0),
                      goal: tuple[float, float] = (9.3, 0.0), kp: float = 0.3, kd: float = 0.5,
                      horizon: int = 20, gamma: float = 0.99,
                      initial_action: tuple[float, float] = (-0.4, 0.6)) -> ApproachScenario:
    """The seeker approaching the wall at x = 9.8 at speed 3, its goal 0.5 in front of it.

    The continuation a = clip(kp (goal − p) − kd v) is the seeker's greedy controller
    (:func:`tutorial_rl.envs.seeker.greedy_goal_policy`) with less damping (kp = 0.3, kd = 0.5
    instead of 0.5, 1): it starts braking too late, so the safeguard brakes for it, by more the
    faster it arrives. Every continuation step is projected onto that state's safe set
    (:func:`tutorial_rl.envs.seeker.safe_action_set`), exactly as the safeguard does; no obstacle
    is within reach, so the wall is the only constraint that binds. Rewards as in SeekerEnv,
    −1 + exp(−‖p⁺ − goal‖/10), without the stop at the goal, over ``horizon`` steps.
    """
    from tutorial_rl.envs.seeker import safe_action_set

    p0, v0, g = (np.asarray(t, dtype=float) for t in (position, velocity, goal))
    obstacles = np.zeros((0, 3))
    A, b = safe_action_set(p0, v0, obstacles)

    def rollout(u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        u = np.atleast_2d(np.asarray(u, dtype=float))
        v = v0 + u
        p = p0 + v
        task = np.exp(-np.linalg.norm(p - g, axis=1) / 10.0) - 1.0
        future, interventions = np.zeros(len(u)), np.zeros(len(u), dtype=int)
        for k in range(1, horizon):
            proposal = np.clip(kp * (g - p) - kd * v, -1.0, 1.0)
            A_k, b_k = pad_safe_sets([safe_action_set(p[i], v[i], obstacles)
                                      for i in range(len(u))])
            applied = project_polytope(torch.from_numpy(proposal), torch.from_numpy(A_k),
                                       torch.from_numpy(b_k)).numpy()
            d2 = np.square(applied - proposal).sum(1)
            future += gamma**k * d2
            interventions += d2 > 1e-10
            v = v + applied
            p = p + v
            task += gamma**k * (np.exp(-np.linalg.norm(p - g, axis=1) / 10.0) - 1.0)
        return task, future, interventions

    return ApproachScenario(A, b, rollout, np.asarray(initial_action, dtype=float), gamma,
                            f"seeker at p = {list(position)}, v = {list(velocity)}, goal "
                            f"{list(goal)} in front of the wall x = 9.8")


@dataclass(frozen=True)
class LongHorizonConfig:
    """Sizes and step sizes of the long-horizon experiment (values in the seeker's reward units).

    :param alpha: penalty weight α on every squared distance, today's and the future ones.
    :param policy_lr: step size of the ascent on ũ (2 α η < 1: the per-sample loss's pull to the
        set does not overshoot).
    """

    n_samples: int = field(default_factory=lambda: int(by_profile(ci=256, full=512)))
    """behaviour actions, uniform on [-sample_box, sample_box]²"""
    sample_box: float = 1.5
    """half-width of the behaviour box: wider than the action box, so that the proposals facing
    a vertex of the safe set (u2 > 1) are sampled too"""
    epochs: int = field(default_factory=lambda: int(by_profile(ci=500, full=1000)))
    hidden: tuple[int, ...] = (64, 64)
    critic_lr: float = 1e-2
    steps: int = 100
    policy_lr: float = 0.1
    alpha: float = 2.0
    seed: int = 0


@dataclass(frozen=True)
class Outcome:
    """Where one setting's ascent ended, judged by the true (rolled-out) values."""

    setting: str
    path: np.ndarray  # ũ_t, t = 0..steps
    applied: np.ndarray  # Φ(ũ_T)
    task: float  # discounted task return of Φ(ũ_T)
    future_penalty: float  # α Σ_{k>=1} γ^k d_k²
    interventions: int  # continuation steps the safeguard changed
    penalised: float  # task − α d(ũ_T)² − future_penalty: what SE-RL with the penalty maximises


@dataclass(frozen=True)
class LongHorizonResult:
    scenario: ApproachScenario
    config: LongHorizonConfig
    outcomes: dict[str, Outcome]
    critics: dict[str, nn.Module]  # "task" (on Φ), "future" (γE V_pen on Φ), "penalty", "se"
    fit_rmse: dict[str, float]
    grid: np.ndarray  # [G, G, 2] applied actions (projected grid) for the figure; G may be 0
    grid_task: np.ndarray  # [G, G]
    grid_future: np.ndarray  # [G, G], α-weighted


class _Standardised(nn.Module):
    """y = mean + std · net(u): critics are fitted on standardised targets (small rewards)."""

    def __init__(self, net: nn.Module, mean: float, std: float) -> None:
        super().__init__()
        self.net, self.mean, self.std = net, mean, std

    def forward(self, u: Tensor) -> Tensor:
        return self.mean + self.std * self.net(u)


def _fit(inputs: dict[str, Tensor], targets: dict[str, Tensor], config: LongHorizonConfig,
         ) -> tuple[dict[str, nn.Module], dict[str, float]]:
    names = list(targets)
    stats = {n: (targets[n].mean().item(), targets[n].std().item()) for n in names}
    fit_config = ExperimentConfig(n_samples=config.n_samples, epochs=config.epochs,
                                  hidden=config.hidden, critic_lr=config.critic_lr)
    nets, _ = fit_critics(torch.stack([inputs[n] for n in names]),
                          torch.stack([(targets[n] - stats[n][0]) / stats[n][1] for n in names]),
                          fit_config, [config.seed * 100 + 50 + i for i in range(len(names))])
    critics = {n: _Standardised(net, *stats[n]).requires_grad_(False)
               for n, net in zip(names, nets, strict=True)}
    with torch.no_grad():
        rmse = {n: (c(inputs[n]).squeeze(-1) - targets[n]).square().mean().sqrt().item()
                for n, c in critics.items()}
    return critics, rmse


def run_long_horizon(scenario: ApproachScenario | None = None,
                     config: LongHorizonConfig | None = None,
                     grid_size: int | None = None) -> LongHorizonResult:
    """Fit the critics on uniform actions and ascend the three objectives from one initial action.

    Critics (targets from the true rollouts, inputs as each method sees them): ``task`` on Φ(ũ)
    (SP-RL's critic), ``future`` on Φ(ũ) with target −α Σ_{k>=1} γ^k d_k² (γE[V_pen], used only
    by :func:`decomposition_check`), ``penalty`` on ũ with target −α d(ũ)² − α Σ γ^k d_k²
    (the penalty critic) and ``se`` on ũ with the penalised return (SE-RL's critic).
    """
    scenario = scenario or approach_scenario()
    config = config or LongHorizonConfig()
    if grid_size is None:  # odd, so that the row u2 = 0 is on the grid
        grid_size = int(by_profile(ci=17, full=25))
    alpha = config.alpha
    with one_thread():
        gen = torch.Generator().manual_seed(config.seed)
        u = config.sample_box * (2 * torch.rand(config.n_samples, 2, generator=gen,
                                                dtype=torch.float64) - 1)
        safe = scenario.project(u)
        task, future, _ = (as_float64(t) for t in scenario.rollout(safe.numpy()))
        now = alpha * (u - safe).square().sum(-1)
        inputs = {"task": safe, "future": safe, "penalty": u, "se": u}
        targets = {"task": task, "future": -alpha * future, "penalty": -now - alpha * future,
                   "se": task - now - alpha * future}
        critics, rmse = _fit(inputs, targets, config)
        A, b = as_float64(scenario.A), as_float64(scenario.b)

        def q(name: str, x: Tensor) -> Tensor:
            return critics[name](x).squeeze(-1)

        def objective(setting: str) -> Callable[[Tensor], Tensor]:
            def J(x: Tensor) -> Tensor:
                if setting == "se_penalty":
                    return q("se", x)
                phi = project_polytope(x, A, b)
                if setting == "sp_per_sample":
                    return q("task", phi) - alpha * (x - phi).square().sum(-1)
                return q("task", phi) + q("penalty", x)
            return J

        outcomes = {}
        for setting in LONG_HORIZON_SETTINGS:
            path, _ = _ascend(objective(setting), scenario.initial_action, config.steps,
                              config.policy_lr)
            applied = scenario.project(path[-1]).numpy()[0]
            t, f, n = scenario.rollout(applied[None])
            now_T = alpha * float(np.square(path[-1] - applied).sum())
            outcomes[setting] = Outcome(setting, path, applied, float(t[0]), alpha * float(f[0]),
                                        int(n[0]), float(t[0]) - now_T - alpha * float(f[0]))
        # the true values on the applied actions of a grid over the action box (figure only)
        g = np.linspace(-1, 1, grid_size)
        grid = scenario.project(np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)).numpy()
        grid_task, grid_future, _ = scenario.rollout(grid) if grid_size else (grid[:, 0],) * 3
    shape = (grid_size, grid_size)
    return LongHorizonResult(scenario, config, outcomes, critics, rmse,
                             grid.reshape(*shape, 2), grid_task.reshape(shape),
                             alpha * grid_future.reshape(shape))


def decomposition_check(result: LongHorizonResult, points: np.ndarray) -> dict[str, np.ndarray]:
    """Chapter 7's decomposition on the fitted critics at proposals ``points`` [N, 2].

    ``gradient``: ∇ũ Q_pen of the fitted penalty critic; ``immediate``: −2α(ũ − Φ(ũ));
    ``long_term``: gradient − immediate; ``predicted``: Jᵀ∇u of the critic fitted to
    γE[V_pen] on safe actions only; ``normal``: ‖(I − J) long_term‖, the part of the fitted long
    -term gradient outside range(J) (zero for exact critics); ``rank``: rank J.
    """
    A, b = as_float64(result.scenario.A), as_float64(result.scenario.b)
    alpha = result.config.alpha
    with one_thread():
        x = as_float64(points).requires_grad_(True)
        (gradient,) = torch.autograd.grad(result.critics["penalty"](x).sum(), x)
        x = x.detach()
        phi = project_polytope(x, A, b).requires_grad_(True)
        (grad_future,) = torch.autograd.grad(result.critics["future"](phi).sum(), phi)
        J = projection_jacobian(x, A, b)
    immediate = -2 * alpha * (x - phi.detach())
    long_term = gradient - immediate
    predicted = (J.mT @ grad_future[..., None]).squeeze(-1)
    eye = torch.eye(2, dtype=J.dtype)
    normal = ((eye - J) @ long_term[..., None]).squeeze(-1).norm(dim=-1)
    return {"gradient": gradient.numpy(), "immediate": immediate.numpy(),
            "long_term": long_term.numpy(), "predicted": predicted.numpy(),
            "normal": normal.numpy(),
            "rank": torch.linalg.matrix_rank(J, atol=1e-9, rtol=0.0).numpy()}

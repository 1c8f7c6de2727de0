"""The fixed-state action-aliasing experiment: settings, critics' targets, the policy's ascent
(Chapter 6, chapters/06_aliasing.py; Chapter 7, chapters/07_mitigations.py; DESIGN.md §3; paper
section 6.3 and appendix A.7).

One state is frozen, so a critic is a function of the 2-D action alone. A random behaviour policy
draws actions uniformly from the action box [-1, 1]²; every critic is an MLP fitted to the TRUE
value of its input by supervised regression. The deterministic policy is a free tensor ũ, moved by
50 plain gradient-ascent steps on the learned objective of each setting (DESIGN §3):

=====================  ==========================================  ===============================
setting                objective J(ũ) ascended                     critic(s) fitted on
=====================  ==========================================  ===============================
``none``               Q_raw(ũ)                                    ũ, target V(ũ) (applied raw)
``se``                 Q_SE(ũ)                                     ũ, target V(Φ(ũ))
``sp``                 Q_SP(Φ(ũ)), gradient Jᵀ∇Q_SP                Φ(ũ), target V(Φ(ũ))
``se_penalty``         Q_SE,α(ũ)                                   ũ, target V(Φ(ũ)) − α d(ũ)²
``sp_per_sample``      Q_SP(Φ(ũ)) − α d(ũ)²                        (Q_SP only)
``sp_penalty_critic``  Q_SP(Φ(ũ)) + Q_pen(ũ)                       ũ, target −α d(ũ)² (Q_pen)
=====================  ==========================================  ===============================

with d(ũ) = ‖ũ − Φ(ũ)‖ and Φ the exact projection :func:`tutorial_rl.projection.project_polytope`.

The true value V(u) of an applied first action u is a short deterministic rollout: the step
reward after u plus the discounted rewards of a fixed continuation policy (an LQR controller for
the quadrotor, an obstacle-blind PD controller towards the goal for the seeker), then affinely
standardised to zero mean and unit standard deviation over the action box, so that one step size
and one α serve both scenarios (a shift and a scale change no gradient direction). Only the first
action is safeguarded (or not) as the setting demands; the continuation is a value estimate, not
a policy being learned. Hence the penalty critic's target is the immediate penalty alone and, in
this experiment, Q_pen differs from the per-sample loss only by being a fitted, smooth function.

Scenarios: :mod:`.scenarios`; critic fitting: :mod:`.critics`; figures: :mod:`.plots`. Every
result is seeded and deterministic; sizes come from :func:`tutorial_rl.profile.by_profile`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from tutorial_rl.aliasing.critics import fit_critics, one_thread
from tutorial_rl.aliasing.scenarios import Scenario, as_float64, quadrotor_scenario, seeker_scenario
from tutorial_rl.profile import by_profile
from tutorial_rl.projection import project_polytope

__all__ = [
    "CRITICS", "NEEDS", "SETTINGS", "SETTING_LABELS", "AliasingResult", "ExperimentConfig",
    "Trajectory", "run_all", "run_experiment",
]

SETTINGS = ("none", "se", "sp", "se_penalty", "sp_per_sample", "sp_penalty_critic")
SETTING_LABELS = {
    "none": "no safeguard", "se": "SE-RL", "sp": "SP-RL", "se_penalty": "SE-RL + reward penalty",
    "sp_per_sample": "SP-RL + per-sample loss", "sp_penalty_critic": "SP-RL + penalty critic",
}
#: The fitted critics: on raw actions, SE (projected targets), SP (safe inputs), SE with the
#: reward penalty, and the penalty critic of SP-RL.
CRITICS = ("raw", "se", "sp", "se_penalty", "penalty")
#: The critics each setting needs.
NEEDS = {"none": ("raw",), "se": ("se",), "sp": ("sp",), "se_penalty": ("se_penalty",),
         "sp_per_sample": ("sp",), "sp_penalty_critic": ("sp", "penalty")}


@dataclass(frozen=True)
class ExperimentConfig:
    """Sizes and step sizes of the fixed-state experiment (sizes from :func:`by_profile`).

    :param n_samples: behaviour actions per critic fit. :param epochs: full-batch Adam steps.
    :param alpha: penalty weight α (value units per squared normalised action).
    :param policy_lr: step size of the 50 gradient-ascent steps on ũ.
    """

    n_samples: int = field(default_factory=lambda: int(by_profile(ci=1024, full=4096)))
    epochs: int = field(default_factory=lambda: int(by_profile(ci=1000, full=3000)))
    hidden: tuple[int, ...] = (64, 64)
    critic_lr: float = 1e-2
    steps: int = 50
    policy_lr: float = 0.05
    alpha: float = 2.0
    grid_size: int = field(default_factory=lambda: int(by_profile(ci=61, full=121)))
    seed: int = 0


@dataclass(frozen=True)
class Trajectory:
    """The policy action of one setting over the ascent: ũ_t and Φ(ũ_t), t = 0..steps."""

    setting: str
    unsafe: np.ndarray
    safe: np.ndarray
    gradient_norms: np.ndarray
    final_value: float  # true V of the action applied at the end (ũ for "none", else Φ(ũ))
    final_objective: float  # the learned objective J(ũ_T)

    @property
    def applied(self) -> np.ndarray:
        """The actions the system receives: ũ without a safeguard, Φ(ũ) otherwise."""
        return self.unsafe if self.setting == "none" else self.safe


@dataclass(frozen=True)
class AliasingResult:
    """Everything the figures need: surfaces on a grid [G, G] (rows u2, columns u1), runs."""

    scenario: Scenario
    config: ExperimentConfig
    u1: np.ndarray
    u2: np.ndarray
    true_unsafe: np.ndarray  # V(ũ)
    true_projected: np.ndarray  # V(Φ(ũ)): the function the SE critic must learn
    critic_surfaces: dict[str, np.ndarray]  # each critic on the grid as input (SP: extrapolated)
    objective_surfaces: dict[str, np.ndarray]  # J(ũ) of each setting
    trajectories: dict[str, Trajectory]
    critics: dict[str, nn.Module]
    fit_rmse: dict[str, float]
    best_action: np.ndarray  # argmax of V over the grid (may be unsafe)
    best_safe_action: np.ndarray  # argmax of V over the safe set (grid projected)
    best_safe_value: float



def _objective(setting: str, critics: dict[str, nn.Module], A: Tensor, b: Tensor,
               alpha: float) -> Callable[..., Tensor]:
    """The learned objective J(ũ) [N] of a setting (module docstring table; DESIGN §3).

    ``J(u, safe=None)``: pass Φ(u) as ``safe`` if it is known, to save a projection.
    """
    def q(name: str, u: Tensor) -> Tensor:
        return critics[name](u).squeeze(-1)

    def J(u: Tensor, safe: Tensor | None = None) -> Tensor:
        if setting in ("none", "se", "se_penalty"):
            return q({"none": "raw"}.get(setting, setting), u)
        safe = project_polytope(u, A, b) if safe is None else safe
        value = q("sp", safe)
        if setting == "sp_per_sample":
            value = value - alpha * (u - safe).square().sum(-1)
        elif setting == "sp_penalty_critic":
            value = value + q("penalty", u)
        return value

    return J


def _ascend(J: Callable[..., Tensor], u0: np.ndarray, steps: int,
            lr: float) -> tuple[np.ndarray, np.ndarray]:
    u = as_float64(u0)[None].clone()
    path, norms = [u[0].clone()], []
    for _ in range(steps):
        u.requires_grad_(True)
        (grad,) = torch.autograd.grad(J(u).sum(), u)
        u = (u + lr * grad).detach()
        path.append(u[0].clone())
        norms.append(grad.norm().item())
    return torch.stack(path).numpy(), np.asarray(norms)


def run_experiment(scenario: Scenario, config: ExperimentConfig | None = None,
                   settings: tuple[str, ...] = SETTINGS) -> AliasingResult:
    """Fit the critics and run the settings (default: all six) from the initial action.

    Chapter 6 (chapters/06_aliasing.py) and Chapter 7 (chapters/07_mitigations.py); the
    objectives are the gradient estimators of DESIGN.md §3 (see :func:`_objective`).

    Only the critics the chosen ``settings`` need are fitted (:data:`NEEDS`); the result's
    dictionaries hold just those.
    """
    config = config or ExperimentConfig()
    unknown = set(settings) - set(SETTINGS)
    if unknown:
        raise ValueError(f"unknown settings {sorted(unknown)}; valid: {SETTINGS}")
    with one_thread():
        return _run(scenario, config, settings)


def _run(scenario: Scenario, config: ExperimentConfig,
         settings: tuple[str, ...]) -> AliasingResult:
    A, b = as_float64(scenario.A), as_float64(scenario.b)
    gen = torch.Generator().manual_seed(config.seed)
    u = 2 * torch.rand(config.n_samples, 2, generator=gen, dtype=torch.float64) - 1
    safe = project_polytope(u, A, b)
    v_raw, v_safe = as_float64(scenario.value(u.numpy())), as_float64(scenario.value(safe.numpy()))
    penalty = config.alpha * (u - safe).square().sum(-1)
    data = {"raw": (u, v_raw), "se": (u, v_safe), "sp": (safe, v_safe),
            "se_penalty": (u, v_safe - penalty), "penalty": (u, -penalty)}
    needed = [n for n in CRITICS if any(n in NEEDS[s] for s in settings)]
    nets, errors = fit_critics(torch.stack([data[n][0] for n in needed]),
                               torch.stack([data[n][1] for n in needed]), config,
                               [config.seed * 100 + CRITICS.index(n) for n in needed])
    critics, rmse = dict(zip(needed, nets, strict=True)), dict(zip(needed, errors, strict=True))
    # surfaces on the grid
    u1 = np.linspace(*scenario.extent[:2], config.grid_size)
    u2 = np.linspace(*scenario.extent[2:], config.grid_size)
    grid = as_float64(np.stack(np.meshgrid(u1, u2), -1).reshape(-1, 2))
    grid_safe = project_polytope(grid, A, b)
    shape = (len(u2), len(u1))
    with torch.no_grad():
        critic_surfaces = {n: c(grid).squeeze(-1).numpy().reshape(shape)
                           for n, c in critics.items()}
        objectives = {s: _objective(s, critics, A, b, config.alpha) for s in settings}
        objective_surfaces = {s: J(grid, grid_safe).numpy().reshape(shape)
                              for s, J in objectives.items()}
    true_unsafe = scenario.value(grid.numpy()).reshape(shape)
    true_projected = scenario.value(grid_safe.numpy()).reshape(shape)
    trajectories = {}
    for s, J in objectives.items():
        path, norms = _ascend(J, scenario.initial_action, config.steps, config.policy_lr)
        proj = scenario.project(path)
        applied = path[-1] if s == "none" else proj[-1]
        with torch.no_grad():
            final_objective = J(as_float64(path[-1:]))[0].item()
        trajectories[s] = Trajectory(s, path, proj, norms, float(scenario.value(applied)[0]),
                                     final_objective)
    best = int(np.argmax(true_unsafe))
    best_safe = int(np.argmax(true_projected))
    return AliasingResult(
        scenario, config, u1, u2, true_unsafe, true_projected, critic_surfaces,
        objective_surfaces, trajectories, critics, rmse, grid.numpy()[best],
        grid_safe.numpy()[best_safe], float(true_projected.flat[best_safe]))


def run_all(config: ExperimentConfig | None = None) -> dict[str, AliasingResult]:
    """Both scenarios (quadrotor: aligned; seeker: not aligned), all six settings (ch. 6, 7)."""
    return {s.name: run_experiment(s, config) for s in (quadrotor_scenario(), seeker_scenario())}

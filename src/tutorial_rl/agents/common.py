"""What TD3 and A2C share: the safety configuration, the environment side of each mode, seeding
and progress recording.

Chapter 4 (chapters/04_se_rl.py) and Chapter 5 (chapters/05_sp_rl.py). The three modes differ in
*what the learner sees*, not in what the environment receives:

========  ==========================================  ========================================
mode      environment receives                        the learner stores / differentiates
========  ==========================================  ========================================
unsafe    ũ (no safeguard)                            ũ
se        Φ(x, ũ) (:class:`ProjectionSafeguard`)      ũ and the (penalised) reward
sp        Φ(x, ũ), the policy's last layer            u = Φ(x, ũ), U_s(x), U_s(x'); ∂Φ/∂ũ
========  ==========================================  ========================================

At acting time SE-RL and SP-RL apply the very same function Φ (the safeguard's), which is what makes
A2C's SE and SP updates bit-identical (Lemma 1); SP's differentiable Φ is used in the updates.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, get_args

import gymnasium as gym
import numpy as np
import torch

from tutorial_rl.agents.safe_layer import drop_redundant_rows, same_rows
from tutorial_rl.projection import METHODS
from tutorial_rl.safeguards import ProjectionSafeguard

__all__ = [
    "MITIGATIONS",
    "MODES",
    "PROGRESS_COLUMNS",
    "VALID_MITIGATIONS",
    "ConfigError",
    "Device",
    "EnvStep",
    "Mitigation",
    "Mode",
    "ModeEnv",
    "ProgressRecorder",
    "SafetyConfig",
    "cpu_state_dict",
    "resolve_device",
    "seed_everything",
]

Mode = Literal["unsafe", "se", "sp"]
Mitigation = Literal["none", "penalty", "per-sample-loss", "penalty-critic"]
MODES: tuple[str, ...] = get_args(Mode)
MITIGATIONS: tuple[str, ...] = get_args(Mitigation)
#: The valid (mode, mitigation) pairs: SE-RL penalises the reward (paper eq. (23)-(24)), SP-RL
#: adds a loss (paper eq. (27)-(28)) or a penalty critic (paper eq. (29)-(31)); the unsafe
#: baseline has nothing to mitigate.
VALID_MITIGATIONS: dict[str, tuple[str, ...]] = {
    "unsafe": ("none",),
    "se": ("none", "penalty"),
    "sp": ("none", "per-sample-loss", "penalty-critic"),
}


class ConfigError(ValueError):
    """An invalid configuration, raised before anything runs; the message is one line."""


def _valid_pairs() -> str:
    return "; ".join(f"{mode}: {', '.join(m)}" for mode, m in VALID_MITIGATIONS.items())


@dataclass(frozen=True)
class SafetyConfig:
    """Which safeguard integration and which action-aliasing mitigation.

    Validated on construction: an invalid combination raises :class:`ConfigError` naming the
    valid ones.
    """

    mode: Mode = "unsafe"
    """``unsafe`` (no safeguard), ``se`` (safe environment, Chapter 4) or ``sp`` (safe policy,
    Chapter 5)"""
    mitigation: Mitigation = "none"
    """``penalty`` (SE: reward r − α‖ũ − Φ(ũ)‖², paper eq. (23)-(24)), ``per-sample-loss`` (SP:
    actor loss + α‖μ − Φ(μ)‖², paper eq. (27)-(28)), ``penalty-critic`` (SP: Q_pen on ũ, paper
    eq. (29)-(31); for A2C exactly the SE penalty, see :mod:`tutorial_rl.agents.a2c`) or
    ``none``"""
    alpha: float | None = None
    """the weight α >= 0 of the mitigation; required with a mitigation, not allowed without"""
    projection_method: str = "exact"
    """projection backend: ``exact`` (fast) or ``cvxpylayers`` (the paper's: about 4x slower for
    one action, a few hundred times slower for a batch of 256; ``benchmarks/projection.py``)"""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"unknown mode {self.mode!r}; valid modes: {', '.join(MODES)}")
        if self.mitigation not in MITIGATIONS:
            raise ConfigError(f"unknown mitigation {self.mitigation!r}; valid mitigations: "
                              f"{', '.join(MITIGATIONS)}")
        if self.mitigation not in VALID_MITIGATIONS[self.mode]:
            raise ConfigError(f"mitigation {self.mitigation!r} is not valid in mode "
                              f"{self.mode!r}; valid combinations (mode: mitigations): "
                              f"{_valid_pairs()}")
        if self.mitigation == "none" and self.alpha is not None:
            raise ConfigError(f"alpha={self.alpha} was given but mitigation is 'none'; alpha "
                              f"weighs a mitigation (valid combinations: {_valid_pairs()})")
        if self.mitigation != "none":
            if self.alpha is None:
                raise ConfigError(f"mitigation {self.mitigation!r} needs alpha, its weight α >= 0")
            if not (isinstance(self.alpha, int | float) and math.isfinite(self.alpha)
                    and self.alpha >= 0):
                raise ConfigError(f"alpha must be a finite number >= 0; got {self.alpha!r}")
        if self.projection_method not in METHODS:
            raise ConfigError(f"unknown projection_method {self.projection_method!r}; valid: "
                              f"{', '.join(METHODS)}")

    @property
    def weight(self) -> float:
        """α as a float (0.0 without a mitigation)."""
        return float(self.alpha or 0.0)


#: What a ``device`` setting accepts: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a ``torch.device``.
Device = str | torch.device


def resolve_device(device: Device, flag: str = "--device") -> torch.device:
    """Validate a ``device`` setting (``cpu``, ``cuda`` or ``cuda:N``) and return it.

    Where the agents' tensors live (Chapter 8, "Running a sweep"): networks, optimiser states,
    minibatches, rollouts and the safe sets the updates project onto. The environments and the
    safeguard's projection at acting time stay on the CPU (numpy). ``cuda`` is supported by
    construction (every tensor is created on or moved to this device, every conversion to numpy
    goes through ``.cpu()``; ``tests/test_device.py`` checks both on a CPU); the course's results
    were computed on CPUs.

    :param flag: how the caller names the setting, for the error message.
    :raises ConfigError: another device type, a malformed index, or CUDA requested on a machine
        where ``torch.cuda.is_available()`` is False (or the index does not exist).
    """
    if isinstance(device, torch.device):
        resolved = device
    elif isinstance(device, str):
        try:
            resolved = torch.device(device)
        except RuntimeError:
            raise ConfigError(f"{flag} {device!r} is not a device; valid: cpu, cuda, cuda:N") \
                from None
    else:
        raise ConfigError(f"{flag} must be 'cpu', 'cuda' or 'cuda:N'; got {device!r}")
    if resolved.type == "cpu":
        return torch.device("cpu")  # 'cpu:0' and 'cpu' are the same device
    if resolved.type != "cuda":
        raise ConfigError(f"{flag} {str(resolved)!r} is not supported; valid: cpu, cuda, cuda:N")
    if not torch.cuda.is_available():
        raise ConfigError(f"{flag} {str(resolved)!r} was requested but CUDA is not available "
                          f"here (torch.cuda.is_available() is False; torch {torch.__version__}); "
                          f"use {flag} cpu")
    count = torch.cuda.device_count()
    if resolved.index is not None and resolved.index >= count:
        raise ConfigError(f"{flag} {str(resolved)!r}: this machine has {count} CUDA device(s) "
                          f"(cuda:0 to cuda:{count - 1})")
    return resolved


def cpu_state_dict(networks: dict[str, torch.nn.Module]) -> dict[str, Any]:
    """``{name: net.state_dict()}`` with every tensor on the CPU (what ``model.pt`` holds).

    A file written from a GPU then loads on a machine without one; on the CPU ``.cpu()`` returns
    the tensors themselves, so nothing changes there. Each state dict stays the ``OrderedDict``
    (with its version metadata) that ``load_state_dict`` expects.
    """
    out = {}
    for name, net in networks.items():
        state = net.state_dict()
        for key, value in state.items():
            state[key] = value.cpu()
        out[name] = state
    return out


def seed_everything(seed: int) -> tuple[np.random.Generator, torch.Generator]:
    """Seed network initialisation (torch's global generator) and return the agent's generators.

    The numpy generator draws exploration noise, warm-up actions and minibatch indices; the torch
    generator draws noise inside updates and A2C's samples. Two runs with one seed in one process
    therefore produce identical parameters. The torch generator is a CPU generator on every
    device: its draws are moved to the agent's device, so a run draws the same random numbers on
    a CPU and on a GPU (and networks are initialised on the CPU before they move), and results
    differ across devices only by the rounding of their kernels.
    """
    torch.manual_seed(seed)
    return np.random.default_rng(seed), torch.Generator().manual_seed(seed)


SafeSet = tuple[np.ndarray, np.ndarray]


@dataclass
class EnvStep:
    """One environment step as the agents see it (float64 actions in the action space's units)."""

    obs: np.ndarray
    """x' (the final observation at an episode end; the next reset is not done here)"""
    reward: float
    """the reward the agent learns from (SE penalty: already penalised, paper eq. (23))"""
    task_reward: float
    """the task's reward without any penalty: what progress.csv reports"""
    terminated: bool
    truncated: bool
    unsafe_action: np.ndarray
    """ũ, what the policy proposed"""
    safe_action: np.ndarray
    """u = Φ(x, ũ), what the environment received (ũ itself in unsafe mode)"""
    distance_sq: float
    """‖ũ − u‖²"""
    intervened: bool
    violation: bool
    safe_set: SafeSet | None = None
    """(A, b) of U_s(x) (SP-RL, when tracked; see ``ModeEnv._read_safe_set``); an empty set is
    stored as 'no constraint'"""
    next_safe_set: SafeSet | None = None
    """(A', b') of U_s(x')"""
    next_safe_point: np.ndarray | None = None
    """a point of U_s(x') (u when it is still safe there, else Φ(x', u))"""


class ModeEnv:
    """The environment side of a mode: the safeguard for SE and SP, the safe sets SP-RL learns on.

    :param env: the task (``gymnasium.make`` output).
    :param safety: mode and mitigation; SE-RL's penalty α goes into the safeguard's reward.
    :param track_safe_sets: read U_s(x) and U_s(x') at every step (SP-RL updates need them).
    """

    def __init__(self, env: gym.Env, safety: SafetyConfig, track_safe_sets: bool = False) -> None:
        self.safety = safety
        self.safeguard: ProjectionSafeguard | None = None
        if safety.mode == "unsafe":
            self.env: gym.Env = env
        else:
            penalty = safety.weight if safety.mitigation == "penalty" else 0.0
            self.safeguard = ProjectionSafeguard(env, penalty=penalty,
                                                 method=safety.projection_method)
            self.env = self.safeguard
        self.track = track_safe_sets and self.safeguard is not None
        self._safe_set: SafeSet | None = None
        self._raw_set: SafeSet | None = None  # the env's own (A, b) of U_s(x), for the safeguard
        self._rows: np.ndarray | None = None
        self._rows_vary = False
        m = int(np.prod(env.action_space.shape))
        self._no_constraint: SafeSet = (np.zeros((0, m)), np.zeros(0))

    @property
    def safe_set(self) -> SafeSet | None:
        """(A, b) of the current state's U_s(x) when tracked, else ``None``."""
        return self._safe_set

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Reset the task (seeded on the first call of a run) and return x."""
        obs, _ = self.env.reset(seed=seed)
        if self.track:
            self._safe_set = self._read_safe_set()
        return obs

    def _read_safe_set(self) -> SafeSet:
        """U_s(x) of the current state, without redundant rows once the rows vary by state.

        While the environment returns the same rows A in every state (pendulum, quadrotor: only
        b moves) they are kept as they are, so a minibatch shares one A that the projection
        factors once; when they vary (seeker), dropping redundant rows makes each set smaller.
        The environment's own (A, b) is kept for the safeguard's next step: each state's set is
        computed once (SP-RL needs U_s(x') now and projects onto it in the next step).
        """
        A, b = self._raw_set = self.env.unwrapped.safe_action_set()
        if not self._rows_vary:
            if self._rows is None:
                self._rows = np.array(A)
            elif not same_rows(self._rows, A):
                self._rows_vary = True
        return drop_redundant_rows(A, b) if self._rows_vary else (A, b)

    def _next_safe_point(self, u: np.ndarray) -> tuple[SafeSet, np.ndarray]:
        A, b = self._read_safe_set()
        if np.all(A @ u <= b):  # the action just applied is usually still safe at x'
            return (A, b), u
        assert self.safeguard is not None
        point, empty = self.safeguard.safe_action(u, self._raw_set)
        return (self._no_constraint if empty else (A, b)), point

    def step(self, unsafe_action: np.ndarray) -> EnvStep:
        """Apply ũ (projected by the safeguard in SE and SP) and describe the transition."""
        u_tilde = np.asarray(unsafe_action, dtype=np.float64)
        if self.track:  # U_s(x) is known: the safeguard does not compute it again
            obs, reward, terminated, truncated, info = self.safeguard.step(  # type: ignore[union-attr]
                u_tilde, safe_set=self._raw_set)
        else:
            obs, reward, terminated, truncated, info = self.env.step(u_tilde)
        reward = float(reward)
        if self.safeguard is None:
            u, d2, intervened = u_tilde, 0.0, False
            task_reward = reward
        else:
            u = info["safe_action"]
            d2 = float(np.sum((u - u_tilde) ** 2))  # the safeguard's own formula
            intervened = bool(info["intervened"])
            task_reward = reward + self.safeguard.penalty * d2
        step = EnvStep(obs, reward, task_reward, bool(terminated), bool(truncated), u_tilde, u,
                       d2, intervened, bool(info.get("constraint_violation", False)))
        if self.track:
            # a set the safeguard found empty (fallback applied) constrains nothing in updates
            step.safe_set = self._no_constraint if info["safe_set_empty"] else self._safe_set
            step.next_safe_set, step.next_safe_point = self._next_safe_point(u)
            self._safe_set = step.next_safe_set
        return step


#: Columns of ``progress.csv``, one row per episode.
PROGRESS_COLUMNS = ("step", "episode", "episode_return", "episode_length", "interventions",
                    "constraint_violations", "penalty", "complete", "wall_time")


class ProgressRecorder:
    """Per-episode statistics of a training run (the rows of ``progress.csv``).

    ``episode_return`` is the task's undiscounted return without penalties (what the paper
    reports), ``penalty`` the summed ‖ũ − u‖² weighted by α (0 without a mitigation). The last,
    unfinished episode of a run is kept with ``complete = 0``.

    :param total_steps: for the progress bar.
    :param progress_bar: draw a tqdm bar on stderr.
    :param desc: its label.
    :param callback: called as ``callback(steps)`` after every ``callback_every``-th step (the
        tuner evaluates the policy there and may stop the run by raising).
    :param callback_every: steps between callbacks (> 0 when ``callback`` is given).
    """

    def __init__(self, total_steps: int, progress_bar: bool = False, desc: str = "",
                 callback: Callable[[int], None] | None = None, callback_every: int = 0) -> None:
        if callback is not None and callback_every <= 0:
            raise ConfigError(f"callback_every must be > 0 with a callback; got {callback_every}")
        self._callback, self._callback_every = callback, callback_every
        self.rows: list[dict[str, Any]] = []
        self.steps = 0
        self._start = time.perf_counter()
        self._reset_episode()
        self._bar: Any = None
        if progress_bar:
            from tqdm import tqdm

            self._bar = tqdm(total=total_steps, desc=desc, unit="step", dynamic_ncols=True)

    def _reset_episode(self) -> None:
        self._return, self._length, self._interventions = 0.0, 0, 0
        self._violations, self._penalty = 0, 0.0

    def record(self, step: EnvStep, alpha: float = 0.0) -> None:
        """Account for one environment step (call once per step, in order)."""
        self.steps += 1
        self._return += step.task_reward
        self._length += 1
        self._interventions += step.intervened
        self._violations += step.violation
        self._penalty += alpha * step.distance_sq
        if self._bar is not None:
            self._bar.update(1)
        if step.terminated or step.truncated:
            self._close_episode(complete=True)
        if self._callback is not None and self.steps % self._callback_every == 0:
            self._callback(self.steps)

    def _close_episode(self, complete: bool) -> None:
        self.rows.append({
            "step": self.steps, "episode": len(self.rows), "episode_return": self._return,
            "episode_length": self._length, "interventions": self._interventions,
            "constraint_violations": self._violations, "penalty": self._penalty,
            "complete": int(complete), "wall_time": time.perf_counter() - self._start,
        })
        if self._bar is not None and complete:
            self._bar.set_postfix(episode_return=f"{self._return:.1f}", refresh=False)
        self._reset_episode()

    def finish(self) -> list[dict[str, Any]]:
        """Close the bar, keep an unfinished last episode, and return all rows."""
        if self._length:
            self._close_episode(complete=False)
        if self._bar is not None:
            self._bar.close()
        return self.rows

    _STATE = ("rows", "steps", "_return", "_length", "_interventions", "_violations", "_penalty")

    def state_dict(self) -> dict[str, Any]:
        """The rows, the running episode's sums and the elapsed time (for exact checkpoints)."""
        state = {name: copy.deepcopy(getattr(self, name)) for name in self._STATE}
        return {**state, "elapsed": time.perf_counter() - self._start}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict` output (``wall_time`` keeps counting from it)."""
        for name in self._STATE:
            setattr(self, name, copy.deepcopy(state[name]))
        self._start = time.perf_counter() - state["elapsed"]
        if self._bar is not None:
            self._bar.update(self.steps - self._bar.n)

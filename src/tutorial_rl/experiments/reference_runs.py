"""Evaluate the reference controllers behind the safeguard (``tutorial-rl reference``).

The zero action and each task's reference controller (:mod:`tutorial_rl.controllers`) act through
the same projection safeguard as the SE-RL agents, with the evaluation protocol of the ``paper``
profile: 10 episodes from the evaluation seed 1,000,000, the same start states every agent of the
grid meets. The result, ``results/reference/reference.json``, is what ``tutorial-rl report`` draws
as reference lines and normalises scores with (0 = zero action, 1 = reference controller)::

    {env: {"zero": {"mean": ..., "returns": [...]},
           "controller": {"name": "lqr", "mean": ..., "returns": [...]}}}
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from tutorial_rl.agents.common import ConfigError, ModeEnv, SafetyConfig
from tutorial_rl.controllers import CONTROLLERS, controller_policy, zero_policy
from tutorial_rl.experiments.training import ENVS, env_defaults, run_episodes
from tutorial_rl.provenance import invocations, provenance, write_json_atomic

__all__ = ["evaluate_references", "unsafe_noise_rollouts", "write_references"]


def evaluate_references(env: str, episodes: int = 10, seed: int = 1_000_000,
                        mode: str = "se") -> dict[str, Any]:
    """Returns of the zero action and the reference controller of ``env`` behind the safeguard.

    Each entry also counts interventions and constraint violations (the latter must be 0).

    :param mode: ``"se"`` (behind the projection safeguard: the grid's yardstick) or ``"unsafe"``
        (no safeguard, with the termination penalty: the yardstick of the tuning studies' scores).
    """
    if mode not in ("se", "unsafe"):
        raise ConfigError(f"mode must be 'se' or 'unsafe'; got {mode!r}")
    if env not in ENVS:
        raise ConfigError(f"unknown env {env!r}; valid envs: {', '.join(ENVS)}")
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes <= 0:
        raise ConfigError(f"episodes must be a positive integer; got {episodes!r}")
    penalty = env_defaults(env, "td3")["termination_penalty"]
    entry: dict[str, Any] = {}
    for name, label in (("zero", "zero"), ("controller", CONTROLLERS[env])):
        task = gym.make(ENVS[env], termination_penalty=penalty)
        shape = task.action_space.shape
        assert shape is not None
        act = zero_policy(int(shape[0])) if name == "zero" else controller_policy(env)
        result = run_episodes(ModeEnv(task, SafetyConfig(mode, "none")), act, episodes, seed)
        entry[name] = {"name": label, "mean": result["mean_return"], "returns": result["returns"],
                       "interventions": result["interventions"],
                       "constraint_violations": result["constraint_violations"]}
    return entry


def unsafe_noise_rollouts(env: str, noise_stds: Sequence[float] = (0.0, 0.2, 0.6),
                          episodes: int = 10, seed: int = 2_000_000,
                          noise_seed: int = 0) -> list[dict[str, Any]]:
    """What an untrained stochastic policy meets *without* a safeguard (appendix on tuning).

    Acts with zero-mean Gaussian actions, ``clip(σ ε, −1, 1)`` in normalised units (the action
    box's centre plus σ ε half-widths; σ = 0 is the zero action), in the unsafe task with the
    termination penalty the tuning studies train with, and reports per σ the mean return (penalty
    included) and the mean episode length. On a task whose zero action also leaves the state
    limits, a noisier policy ends *earlier* and so pays fewer per-step costs: the gradient of an
    on-policy learner then points toward crashing sooner.

    :param noise_stds: the σ values, each >= 0, in half-widths of the action box.
    :param seed: the first reset's seed (default: the tuning evaluation seed).
    :param noise_seed: seeds the action noise.
    """
    if env not in ENVS:
        raise ConfigError(f"unknown env {env!r}; valid envs: {', '.join(ENVS)}")
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes <= 0:
        raise ConfigError(f"episodes must be a positive integer; got {episodes!r}")
    if any(not np.isfinite(s) or s < 0 for s in noise_stds):
        raise ConfigError(f"noise_stds must be finite and >= 0; got {list(noise_stds)}")
    penalty = env_defaults(env, "td3")["termination_penalty"]
    rows = []
    for std in noise_stds:
        task = gym.make(ENVS[env], termination_penalty=penalty)
        space = task.action_space
        center, half = (space.high + space.low) / 2.0, (space.high - space.low) / 2.0
        rng = np.random.default_rng(noise_seed)

        def act(obs: np.ndarray, std: float = float(std), rng: np.random.Generator = rng,
                center: np.ndarray = center, half: np.ndarray = half) -> np.ndarray:
            noise = np.clip(std * rng.standard_normal(center.shape), -1.0, 1.0)
            return (center + half * noise).astype(np.float64)

        result = run_episodes(ModeEnv(task, SafetyConfig("unsafe", "none")), act, episodes, seed)
        rows.append({"noise_std": float(std), "mean_return": result["mean_return"],
                     "mean_length": float(np.mean(result["lengths"])),
                     "terminated": int(sum(n < task.spec.max_episode_steps
                                           for n in result["lengths"]))
                     if task.spec is not None and task.spec.max_episode_steps else 0})
    return rows


def write_references(out: str | Path, envs: Sequence[str], episodes: int = 10,
                     seed: int = 1_000_000, command: str = "") -> dict[str, Any]:
    """Evaluate ``envs`` and merge them into ``out/reference.json`` (other tasks are kept), with
    ``out/provenance.json`` recording this invocation and every earlier one."""
    out = Path(out)
    path = out / "reference.json"
    record = provenance(command or "tutorial-rl reference", 0.0, envs=list(envs),
                        episodes=episodes, seed=seed)
    start = time.perf_counter()
    existing: dict[str, Any] = {}
    if path.is_file():
        try:
            existing = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path} is not valid JSON ({exc}); move it away to rewrite it") \
                from exc
    for env in envs:
        existing[env] = {**evaluate_references(env, episodes, seed), "episodes": episodes,
                         "seed": seed}
    write_json_atomic(path, existing)
    earlier = invocations(out)
    write_json_atomic(out / "provenance.json",
                      {**record, "wall_time_s": round(time.perf_counter() - start, 2),
                       "previous_invocations": earlier})
    return existing

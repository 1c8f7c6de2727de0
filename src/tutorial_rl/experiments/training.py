"""One training run and its evaluation: what ``tutorial-rl train``/``evaluate`` and the sweep call.

Chapters 4-6 and the experiment runner use :func:`train` and :func:`evaluate`; the paper lists
the per-task hyperparameters gathered in :func:`env_defaults`. A run directory holds

``config.json``   the fully resolved configuration and the package version (written first);
``progress.csv``  one row per episode (:data:`~tutorial_rl.agents.common.PROGRESS_COLUMNS`);
``model.pt``      every network's parameters (CPU tensors, whatever the training device), written
                  *last*: its presence marks a finished run;
``evaluation.json`` written by :func:`evaluate`;
``checkpoint.pt`` while a run with checkpoints is unfinished (:mod:`.checkpoint`): rerunning the
                  same command continues it exactly; it is deleted when the run finishes.

Every file is written under a temporary name and renamed, so an interrupted run never leaves a
half-written file (only missing ones); :func:`is_complete` tells finished runs apart.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import tutorial_rl
import tutorial_rl.envs  # noqa: F401  (registers the environments)
from tutorial_rl.agents.a2c import A2C, A2CConfig
from tutorial_rl.agents.common import (
    PROGRESS_COLUMNS,
    ConfigError,
    Device,
    ModeEnv,
    ProgressRecorder,
    SafetyConfig,
    resolve_device,
)
from tutorial_rl.agents.td3 import TD3, TD3Config
from tutorial_rl.experiments.checkpoint import (
    CHECKPOINT_FILE,
    TARGET_SECONDS,
    Checkpoint,
    auto_checkpoint_every,
)
from tutorial_rl.profile import by_profile, current_profile

__all__ = ["ALGOS", "ENVS", "RESULT_FILES", "RunConfig", "RunResult", "env_defaults", "evaluate",
           "is_complete", "run_episodes", "train"]

#: Short task names of the CLI and their gymnasium ids.
ENVS: dict[str, str] = {"pendulum": "tutorial_rl/Pendulum-v0",
                        "quadrotor": "tutorial_rl/Quadrotor2D-v0",
                        "seeker": "tutorial_rl/Seeker-v0"}
ALGOS: tuple[str, ...] = ("td3", "a2c")
RESULT_FILES = ("config.json", "progress.csv", "model.pt", "evaluation.json")


def env_defaults(env: str, algo: str) -> dict[str, Any]:
    """Per-task defaults, the one place they live: ``steps``, ``termination_penalty``, ``agent``.

    Networks [32, 32] for the pendulum and [128, 128] for the 2-D tasks. Budgets: TD3 10k / 50k /
    100k steps (pendulum / quadrotor / seeker, the paper's code); A2C 50k / 250k / 150k, ours,
    read off the tuned unsafe A2C's learning curves (``tutorial-rl budget-curve``; the
    quadrotor's is provisional; tuning appendix). Under the ``ci`` profile budgets shrink
    to seconds. The termination penalty only matters without a safeguard (the safeguarded tasks
    never terminate early); it stops an unsafe agent from ending negative-reward episodes on
    purpose.
    """
    if env not in ENVS:
        raise ConfigError(f"unknown env {env!r}; valid envs: {', '.join(ENVS)}")
    if algo not in ALGOS:
        raise ConfigError(f"unknown algo {algo!r}; valid algos: {', '.join(ALGOS)}")
    hidden = (32, 32) if env == "pendulum" else (128, 128)
    if algo == "td3":
        full_steps = {"pendulum": 10_000, "quadrotor": 50_000, "seeker": 100_000}[env]
        agent: TD3Config | A2CConfig = TD3Config(
            hidden_sizes=hidden, learning_starts=int(by_profile(ci=200, full=1_000)))
    else:
        full_steps = {"pendulum": 50_000, "quadrotor": 250_000, "seeker": 150_000}[env]
        agent = A2CConfig(hidden_sizes=hidden)
    return {"steps": int(by_profile(ci=600, full=full_steps)),
            "termination_penalty": {"pendulum": 100.0, "quadrotor": 200.0, "seeker": 100.0}[env],
            "agent": agent}


@dataclass
class RunConfig:
    """Everything that defines a run; ``None`` fields take the task's :func:`env_defaults`."""

    env: str = "pendulum"
    """task: ``pendulum``, ``quadrotor`` or ``seeker``"""
    algo: str = "td3"
    """``td3`` or ``a2c``"""
    mode: str = "unsafe"
    """``unsafe``, ``se`` (Chapter 4) or ``sp`` (Chapter 5)"""
    mitigation: str = "none"
    """``none``, ``penalty`` (SE), ``per-sample-loss`` or ``penalty-critic`` (SP)"""
    alpha: float | None = None
    """the mitigation's weight α >= 0"""
    steps: int | None = None
    """environment steps"""
    seed: int = 0
    """seeds networks, noise, minibatches and the environment"""
    out: str | Path | None = None
    """run directory; ``None`` writes nothing"""
    overwrite: bool = False
    """allow a non-empty ``out`` (its result files are replaced)"""
    projection_method: str = "exact"
    """``exact`` or ``cvxpylayers`` (SE, SP)"""
    termination_penalty: float | None = None
    """penalty of an early termination (unsafe mode)"""
    agent: dict[str, Any] = field(default_factory=dict)
    """overrides of :class:`TD3Config` / :class:`A2CConfig` fields"""
    progress_bar: bool | None = None
    """tqdm bar; ``None``: only when stderr is a terminal"""
    num_threads: int | None = None
    """``torch.set_num_threads`` during the run (restored after); ``None`` leaves it"""
    device: Device = "cpu"
    """where the agent's tensors live: ``cpu``, ``cuda`` or ``cuda:N`` (``--device``). Networks,
    optimiser states, minibatches, rollouts and the updates' projections run there; the numpy
    environments and the safeguard stay on the CPU. Recorded in ``config.json``; not part of a
    sweep's run keys (an execution setting, like ``num_threads``). Exact checkpoints continue
    only on the device that wrote them (kernels round differently on other devices). CUDA was
    checked on one GPU (``results/cuda-check``); the tests run on the CPU"""
    checkpoint_every: int | None = None
    """environment steps between exact checkpoints (:mod:`.checkpoint`); 0: none; ``None``: about
    every 10 minutes of estimated work. Only with ``out`` or ``checkpoint``"""
    checkpoint: str | Path | None = None
    """the checkpoint file; default ``out/checkpoint.pt``. An unfinished run's checkpoint of the
    same configuration is continued from"""


@dataclass
class RunResult:
    """What :func:`train` returns."""

    config: dict[str, Any]
    """the resolved configuration (the content of ``config.json``)"""
    progress: list[dict[str, Any]]
    """the rows of ``progress.csv``"""
    agent: TD3 | A2C
    """the trained agent"""
    run_dir: Path | None
    """where the files are (``None`` if nothing was written)"""
    wall_time: float
    """seconds of training"""


def _resolve(config: RunConfig) -> tuple[SafetyConfig, TD3Config | A2CConfig, dict[str, Any]]:
    """Validate everything and fill in defaults; raises :class:`ConfigError`, runs nothing."""
    defaults = env_defaults(config.env, config.algo)
    safety = SafetyConfig(config.mode, config.mitigation, config.alpha,  # type: ignore[arg-type]
                          config.projection_method)
    steps = defaults["steps"] if config.steps is None else config.steps
    if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps <= 0:
        raise ConfigError(f"steps must be a positive integer; got {steps!r}")
    if isinstance(config.seed, bool) or not isinstance(config.seed, int | np.integer) \
            or config.seed < 0:
        raise ConfigError(f"seed must be an integer >= 0; got {config.seed!r}")
    base = defaults["agent"]
    names = {f.name for f in dataclasses.fields(base)}
    unknown = sorted(set(config.agent) - names)
    if unknown:
        raise ConfigError(f"unknown {type(base).__name__} field(s) {', '.join(unknown)}; valid: "
                          f"{', '.join(sorted(names))}")
    overrides = {k: tuple(v) if k == "hidden_sizes" else v for k, v in config.agent.items()}
    agent = dataclasses.replace(base, **overrides)
    if isinstance(agent, A2CConfig) and agent.sp_log_likelihood == "projected-mean" \
            and safety.mode != "sp":
        raise ConfigError("sp_log_likelihood='projected-mean' needs mode 'sp'")
    penalty = defaults["termination_penalty"] if config.termination_penalty is None \
        else float(config.termination_penalty)
    device = resolve_device(config.device, "--device")
    resolved = {
        "package": "tutorial_rl", "version": tutorial_rl.__version__,
        "torch_version": torch.__version__, "profile": current_profile(), "env": config.env,
        "env_id": ENVS[config.env],
        "algo": config.algo, "mode": safety.mode, "mitigation": safety.mitigation,
        "alpha": safety.alpha, "steps": int(steps), "seed": int(config.seed),
        "projection_method": safety.projection_method, "termination_penalty": penalty,
        "agent": dataclasses.asdict(agent), "device": str(device),
    }
    return safety, agent, resolved


#: What an interrupted run with checkpoints leaves in its folder: rerunning continues it.
_RESUMABLE = {"config.json", CHECKPOINT_FILE}


def _check_out_dir(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output path {out} exists and is not a directory")
    entries = {p.name for p in out.iterdir() if not p.name.startswith(".")} \
        if out.is_dir() else set()
    if entries and not entries <= _RESUMABLE and not overwrite:
        raise ConfigError(f"output directory {out} is not empty; pass --overwrite to replace "
                          f"its results")


def _atomic_write(path: Path, write: Callable[[Any], None], binary: bool = False) -> None:
    """Write through ``write(file)`` to a temporary name, then rename onto ``path`` (atomic)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb" if binary else "w", **({} if binary else {"newline": ""})) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    _atomic_write(path, lambda fh: fh.write(json.dumps(data, indent=2) + "\n"))


def _progress_csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=PROGRESS_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _make(resolved: dict[str, Any], safety: SafetyConfig, agent_config: TD3Config | A2CConfig,
          seed: int) -> tuple[ModeEnv, TD3 | A2C]:
    env = gym.make(resolved["env_id"], termination_penalty=resolved["termination_penalty"])
    assert isinstance(env.observation_space, gym.spaces.Box)
    assert isinstance(env.action_space, gym.spaces.Box)
    agent: TD3 | A2C
    device = resolved.get("device", "cpu")
    if isinstance(agent_config, TD3Config):
        agent = TD3(env.observation_space, env.action_space, agent_config, safety, seed,
                    buffer_capacity=min(agent_config.buffer_size, resolved["steps"]),
                    device=device)
        track = safety.mode == "sp"
    else:
        agent = A2C(env.observation_space, env.action_space, agent_config, safety, seed,
                    device=device)
        track = agent.needs_safe_sets
    return ModeEnv(env, safety, track_safe_sets=track), agent


def train(config: RunConfig, callback: Callable[[int, TD3 | A2C], None] | None = None,
          callback_every: int = 0) -> RunResult:
    """Train one agent; write ``config.json``, ``progress.csv``, ``model.pt`` if ``config.out``.

    :param callback: called as ``callback(steps, agent)`` every ``callback_every`` environment
        steps (``tutorial-rl tune`` evaluates the policy there and prunes by raising).
    :raises ConfigError: invalid configuration or output directory (before anything runs).
    """
    safety, agent_config, resolved = _resolve(config)
    run_dir = None if config.out is None else Path(config.out)
    checkpoint = _checkpoint(config, resolved, run_dir)
    if run_dir is not None:
        _check_out_dir(run_dir, config.overwrite)
        run_dir.mkdir(parents=True, exist_ok=True)
        for name in RESULT_FILES:  # stale results of an overwritten run must not survive
            (run_dir / name).unlink(missing_ok=True)
        _write_json(run_dir / "config.json", resolved)
    threads = torch.get_num_threads()
    if config.num_threads is not None:  # restored below: train() may run in a caller's process
        torch.set_num_threads(config.num_threads)
    try:
        env, agent = _make(resolved, safety, agent_config, resolved["seed"])
        bar = config.progress_bar if config.progress_bar is not None else _stderr_is_terminal()
        desc = f"{config.algo}-{safety.mode} {config.env} seed {resolved['seed']}"
        # the hook reads `agent` when called: a restored agent below is the one it sees
        hook = None if callback is None else (lambda steps: callback(steps, agent))
        recorder = ProgressRecorder(resolved["steps"], progress_bar=bar, desc=desc,
                                    callback=hook, callback_every=callback_every)
        restored = checkpoint.load() if checkpoint is not None else None
        earlier = 0.0  # seconds of training before the checkpoint
        if restored is not None:  # continue exactly where the checkpoint was written
            env.env.close()
            agent, env, recorder_state = restored
            recorder.load_state_dict(recorder_state)
            earlier = recorder_state["elapsed"]
        if checkpoint is not None:
            checkpoint.attach(agent, env, recorder)
        start = time.perf_counter()
        try:
            agent.learn(env, resolved["steps"], recorder, seed=resolved["seed"],
                        checkpoint=checkpoint)
        finally:
            rows = recorder.finish()
            env.env.close()
    finally:
        torch.set_num_threads(threads)
    wall_time = time.perf_counter() - start + earlier
    if run_dir is not None:
        text = _progress_csv(rows)
        _atomic_write(run_dir / "progress.csv", lambda fh: fh.write(text))
        state = agent.state_dict()
        _atomic_write(run_dir / "model.pt", lambda fh: torch.save(state, fh), binary=True)
    if checkpoint is not None:
        checkpoint.remove()  # after model.pt: a kill in between only repeats the last steps
    return RunResult(resolved, rows, agent, run_dir, wall_time)


def _checkpoint(config: RunConfig, resolved: dict[str, Any],
                run_dir: Path | None) -> Checkpoint | None:
    """The run's :class:`Checkpoint` (``None`` without a place to put it); ``--overwrite``
    discards an old one."""
    every = config.checkpoint_every
    if every is not None and (isinstance(every, bool) or not isinstance(every, int)
                              or every < 0):
        raise ConfigError(f"checkpoint_every must be an integer >= 0; got {every!r}")
    if config.checkpoint is not None:
        path = Path(config.checkpoint)
    elif run_dir is not None:
        path = run_dir / CHECKPOINT_FILE
    else:
        return None
    if every is None:
        from tutorial_rl.experiments.costs import estimate_ms_per_step

        every = auto_checkpoint_every(estimate_ms_per_step(
            resolved["algo"], resolved["env"], resolved["mode"], resolved["mitigation"]))
    # the device stays in the identity: a checkpoint continues bit for bit only where it was
    # written (another device rounds differently), so elsewhere the run starts afresh
    identity = {k: v for k, v in resolved.items() if k != "profile"}  # the runtime switch
    checkpoint = Checkpoint(path, every, identity,
                            lambda p, fn: _atomic_write(p, fn, binary=True),
                            max_seconds=TARGET_SECONDS if config.checkpoint_every is None else None)
    if config.overwrite:
        checkpoint.remove()
    return checkpoint


def _stderr_is_terminal() -> bool:
    import sys

    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def is_complete(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` holds a finished run (``model.pt`` is written last)."""
    run_dir = Path(run_dir)
    return all((run_dir / name).is_file() for name in ("config.json", "progress.csv", "model.pt"))


def load_agent(run_dir: str | Path, device: Device = "cpu") -> tuple[dict[str, Any], TD3 | A2C]:
    """The resolved configuration and the trained agent of a finished run, on ``device``.

    ``model.pt`` loads on any device, whichever one trained it (``map_location``).
    """
    run_dir = Path(run_dir)
    device = resolve_device(device, "device")
    if not run_dir.is_dir():
        raise ConfigError(f"run directory {run_dir} does not exist")
    for name in ("config.json", "model.pt"):
        if not (run_dir / name).is_file():
            raise ConfigError(f"{run_dir} has no {name}; is it a finished training run?")
    try:
        resolved = json.loads((run_dir / "config.json").read_text())
        safety = SafetyConfig(resolved["mode"], resolved["mitigation"], resolved["alpha"],
                              resolved["projection_method"])
        fields = dict(resolved["agent"])
        fields["hidden_sizes"] = tuple(fields["hidden_sizes"])
        config_cls = TD3Config if resolved["algo"] == "td3" else A2CConfig
        agent_config = config_cls(**fields)
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ConfigError(f"{run_dir / 'config.json'} is not a valid run configuration: {exc}") \
            from exc
    _, agent = _make({**resolved, "steps": 1, "device": str(device)}, safety, agent_config,
                     resolved["seed"])
    agent.load_state_dict(torch.load(run_dir / "model.pt", weights_only=True,
                                     map_location=device))
    return resolved, agent


def run_episodes(env: ModeEnv, act: Callable[[np.ndarray], np.ndarray], episodes: int,
                 seed: int) -> dict[str, Any]:
    """Run ``episodes`` episodes of the deterministic policy ``act`` in ``env`` and summarise them.

    The first reset is seeded with ``seed``; later resets continue its random stream, so every
    policy evaluated with the same seed meets the same start states (common random numbers).
    Returns are the task's, without penalties; ``env`` is closed at the end.
    """
    returns, lengths, interventions, violations = [], [], [], []
    obs = env.reset(seed=seed)
    for _ in range(episodes):
        total, n_steps, n_int, n_vio, done = 0.0, 0, 0, 0, False
        while not done:
            step = env.step(act(obs))
            total += step.task_reward
            n_steps += 1
            n_int += step.intervened
            n_vio += step.violation
            done = step.terminated or step.truncated
            obs = env.reset() if done else step.obs
        returns.append(total)
        lengths.append(n_steps)
        interventions.append(n_int)
        violations.append(n_vio)
    env.env.close()
    return {
        "episodes": episodes, "seed": seed, "returns": returns,
        "mean_return": float(np.mean(returns)), "std_return": float(np.std(returns)),
        "lengths": lengths, "interventions": int(sum(interventions)),
        "interventions_per_episode": interventions,
        "constraint_violations": int(sum(violations)),
        "constraint_violations_per_episode": violations,
    }


def evaluate(run_dir: str | Path, episodes: int = 10, seed: int = 0,
             write: bool = True) -> dict[str, Any]:
    """Run the deterministic policy of a finished run and summarise it.

    TD3 acts with μθ(x), A2C with its mean action, both through the mode's safeguard (SE, SP; none
    in unsafe mode). Returns are the task's, without penalties.

    :param run_dir: a directory written by :func:`train`.
    :param episodes: number of evaluation episodes (> 0).
    :param seed: seeds the first reset; later resets continue its random stream.
    :param write: write ``evaluation.json`` (atomically) into ``run_dir``.
    :returns: ``returns`` per episode, ``mean_return``, ``interventions`` and
        ``constraint_violations`` (totals and per episode), ``episodes``, ``seed``.
    :raises ConfigError: missing directory, config or model, or ``episodes <= 0``.
    """
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes <= 0:
        raise ConfigError(f"episodes must be a positive integer; got {episodes!r}")
    resolved, agent = load_agent(run_dir)
    env = ModeEnv(gym.make(resolved["env_id"],
                           termination_penalty=resolved["termination_penalty"]), agent.safety)
    result = {"run_dir": str(run_dir),
              **run_episodes(env, lambda obs: agent.select_action(obs, explore=False), episodes,
                             seed)}
    if write:
        _write_json(Path(run_dir) / "evaluation.json", result)
    return result

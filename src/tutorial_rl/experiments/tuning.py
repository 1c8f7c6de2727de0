"""Hyperparameter tuning of the unsafe baselines with Optuna (``tutorial-rl tune``, Chapter 8).

The paper tunes each algorithm on its *unsafe* baseline and then uses those hyperparameters for
every safeguarded variant (its Section 8); so do we. One study per algorithm × task, all six in one
SQLite file, ``results/tuning/studies.db``:

- **Sampler**: TPE (multivariate, with the constant liar so that parallel workers do not propose
  the same point). **Pruner**: the median rule: a trial stops when its evaluation return at an
  evaluation point is below the median of earlier trials' at the same point (after
  :data:`PRUNER_STARTUP_TRIALS` complete trials and the first :data:`PRUNER_WARMUP_EVALS`
  evaluations).
- **A trial** trains the unsafe baseline on each of :data:`TUNING_SEEDS` (never the grid's
  training seeds 0-6) for :data:`TUNING_STEPS` environment steps. During training it evaluates
  the deterministic policy :data:`EVALS_PER_SEED` times (:data:`INTERMEDIATE_EPISODES` episodes
  from :data:`TUNING_EVAL_SEED`, never the grid's evaluation seed) and reports each to the pruner,
  at step ``seed index × EVALS_PER_SEED + k``, so the pruner compares like with like. The trial's
  value is the mean over seeds of a final :data:`FINAL_EPISODES`-episode evaluation.
- **Budgets** (:data:`TUNING_STEPS`): the full budget for TD3 and A2C on the pendulum (10k and
  50k steps) and A2C on the seeker (150k), shortened budgets for the rest (TD3: 20k of 50k on the
  quadrotor, 30k of 100k on the seeker; A2C: 100k of 250k on the quadrotor), chosen so that ~30
  trials of each study, with pruning, fit in about six core-hours on a 2-core laptop (~1
  core-hour per study). A short budget risks favouring fast learners (larger learning rates):
  that bias is the price of tuning at all on a laptop, and the appendix on tuning states it.
- **Resuming and distributing**: rerunning the same command continues the study until it has
  ``--trials`` finished (complete or pruned) trials; trials of a killed process are detected by
  their missing heartbeat and retried once. Several processes, or several machines sharing one
  RDB URL (``--storage postgresql://...``), can work on one study at once (Optuna's own
  distributed mode).

The tuned values reach the ``paper`` profile through one committed file,
``src/tutorial_rl/data/tuned_hyperparameters.json``, written by ``tutorial-rl tune-export`` from
the database (:mod:`~tutorial_rl.experiments.tuned_values`; a test checks the two agree).
"""

from __future__ import annotations

import dataclasses
import fcntl
import math
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from tutorial_rl.agents.common import ConfigError, ModeEnv, SafetyConfig
from tutorial_rl.experiments.training import ALGOS, ENVS, RunConfig, run_episodes, train
from tutorial_rl.provenance import invocations, provenance, write_json_atomic

__all__ = ["DEFAULT_STORAGE", "SEARCH_SPACE", "TUNING_STEPS", "Param", "evaluate_unsafe",
           "make_study", "params_to_overrides", "pinned_overrides", "run_study", "study_name"]

#: Where the six studies live (relative to the repository root).
DEFAULT_STORAGE = "sqlite:///results/tuning/studies.db"

#: Training seeds of a trial: disjoint from the grid's seeds 0-6, so tuning never sees them.
TUNING_SEEDS: tuple[int, ...] = (100, 101)
#: First evaluation reset of tuning: disjoint from the grid's evaluation seed 1,000,000.
TUNING_EVAL_SEED = 2_000_000
EVALS_PER_SEED = 5
INTERMEDIATE_EPISODES = 5
FINAL_EPISODES = 10
PRUNER_STARTUP_TRIALS = 5
PRUNER_WARMUP_EVALS = 2

#: Environment steps per training seed of a trial, per ``"algo/env"`` (see the module docstring).
TUNING_STEPS: dict[str, int] = {
    "td3/pendulum": 10_000, "td3/quadrotor": 20_000, "td3/seeker": 30_000,
    "a2c/pendulum": 50_000, "a2c/quadrotor": 100_000, "a2c/seeker": 150_000,
}


@dataclass(frozen=True)
class Param:
    """One dimension of a search space: ``float`` (uniform), ``log`` (log-uniform) or ``choice``."""

    kind: str
    low: float = 0.0
    high: float = 0.0
    choices: tuple[Any, ...] = ()

    def describe(self) -> str:
        """A short human-readable range, e.g. ``log-uniform [1e-4, 3e-3]``."""
        if self.kind == "choice":
            return "one of " + ", ".join(str(c) for c in self.choices)
        return f"{'log-uniform' if self.kind == 'log' else 'uniform'} [{self.low:g}, {self.high:g}]"


#: The search space of each algorithm, in one place. ``width`` sets both hidden layers
#: (``hidden_sizes = (width, width)``); every other name is a field of TD3Config / A2CConfig.
#: Anything not listed keeps the default of :func:`~tutorial_rl.experiments.training.env_defaults`.
SEARCH_SPACE: dict[str, dict[str, Param]] = {
    "td3": {
        "learning_rate": Param("log", 1e-4, 3e-3),
        "width": Param("choice", choices=(32, 64, 128, 256)),
        "batch_size": Param("choice", choices=(64, 128, 256)),
        "tau": Param("log", 1e-3, 2e-2),
        "exploration_noise": Param("float", 0.05, 0.5),
        "target_policy_noise": Param("float", 0.05, 0.4),
    },
    "a2c": {
        "learning_rate": Param("log", 1e-4, 3e-3),
        "n_steps": Param("choice", choices=(5, 8, 16, 32, 64)),
        "gae_lambda": Param("float", 0.8, 1.0),
        "entropy_coef": Param("log", 1e-6, 1e-2),
        "value_coef": Param("float", 0.25, 1.0),
        "max_grad_norm": Param("log", 0.3, 5.0),
    },
}


def study_name(algo: str, env: str) -> str:
    """``td3-pendulum`` etc.: the study's name in the database."""
    _check(algo, env)
    return f"{algo}-{env}"


def _check(algo: str, env: str) -> None:
    if algo not in ALGOS:
        raise ConfigError(f"unknown algo {algo!r}; valid algos: {', '.join(ALGOS)}")
    if env not in ENVS:
        raise ConfigError(f"unknown env {env!r}; valid envs: {', '.join(ENVS)}")


def params_to_overrides(params: dict[str, Any]) -> dict[str, Any]:
    """A trial's parameters as TD3Config/A2CConfig overrides (``width`` -> ``hidden_sizes``)."""
    overrides = {k: v for k, v in params.items() if k != "width"}
    if "width" in params:
        overrides["hidden_sizes"] = [int(params["width"])] * 2
    return overrides


def _suggest(trial: Any, algo: str) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for name, p in SEARCH_SPACE[algo].items():
        if p.kind == "choice":
            params[name] = trial.suggest_categorical(name, list(p.choices))
        else:
            params[name] = trial.suggest_float(name, p.low, p.high, log=p.kind == "log")
    return params


def _storage(url: str) -> Any:
    import warnings

    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
        # several local workers share the file: wait for the lock instead of failing at once
        engine_kwargs: dict[str, Any] = {"connect_args": {"timeout": 120}}
    else:
        engine_kwargs = {}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # A worker that dies (SIGKILL, a session's end) stops beating; its trial is failed and
    # retried once with the same parameters by the next worker.
    with warnings.catch_warnings():  # heartbeats are marked experimental in Optuna 5
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=60,
                          grace_period=180,
                          heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(1))


def pinned_overrides(algo: str) -> dict[str, Any]:
    """What a trial pins besides the searched values: the ``paper`` profile's own overrides (TD3's
    1,000 warm-up steps), so that trials train exactly as the grid's runs will, whatever
    ``$TUTORIAL_RL_PROFILE`` says."""
    from tutorial_rl.experiments.config import PROFILES

    return dict(PROFILES["paper"].agent.get(algo, {}))


def _protocol(algo: str, env: str, steps: int, seeds: Sequence[int]) -> dict[str, Any]:
    """What defines a study's trials: a resumed study must be continued with the same protocol."""
    return {"algo": algo, "env": env, "mode": "unsafe", "pinned": pinned_overrides(algo),
            "steps_per_seed": int(steps),
            "seeds": [int(s) for s in seeds], "eval_seed": TUNING_EVAL_SEED,
            "evals_per_seed": EVALS_PER_SEED, "intermediate_episodes": INTERMEDIATE_EPISODES,
            "final_episodes": FINAL_EPISODES,
            "search_space": {k: p.describe() for k, p in SEARCH_SPACE[algo].items()}}


def make_study(algo: str, env: str, storage: str = DEFAULT_STORAGE,
               steps: int | None = None, seeds: Sequence[int] = TUNING_SEEDS,
               sampler_seed: int | None = None) -> Any:
    """Create or load the study ``algo-env``; its protocol is stored on it and checked on load.

    :raises ConfigError: the stored study was made with another protocol (budget, seeds, space).
    """
    import optuna

    _check(algo, env)
    steps = TUNING_STEPS[f"{algo}/{env}"] if steps is None else int(steps)
    if steps <= 0 or not seeds:
        raise ConfigError(f"tuning needs steps > 0 and at least one seed; got {steps}, {seeds}")
    study = optuna.create_study(
        study_name=study_name(algo, env), storage=_storage(storage), direction="maximize",
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=sampler_seed, multivariate=True,
                                           constant_liar=True,
                                           n_startup_trials=PRUNER_STARTUP_TRIALS + 3),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=PRUNER_STARTUP_TRIALS,
                                           n_warmup_steps=PRUNER_WARMUP_EVALS))
    protocol = _protocol(algo, env, steps, seeds)
    stored = study.user_attrs.get("protocol")
    if stored is None:
        study.set_user_attr("protocol", protocol)
    elif stored != protocol:
        changed = sorted(k for k in protocol if stored.get(k) != protocol[k])
        raise ConfigError(f"study {study.study_name!r} in {storage} was made with another "
                          f"protocol ({', '.join(changed)} differ); use another --storage or the "
                          f"same settings")
    return study


def _objective(algo: str, env: str, steps: int, seeds: Sequence[int]) -> Callable[[Any], float]:
    import optuna

    every = max(1, steps // EVALS_PER_SEED)

    def evaluate_policy(agent: Any, episodes: int) -> float:
        return evaluate_unsafe(env, agent, episodes)

    def objective(trial: Any) -> float:
        overrides = {**pinned_overrides(algo), **params_to_overrides(_suggest(trial, algo))}
        finals = []
        start = time.perf_counter()
        for index, seed in enumerate(seeds):
            def report(step: int, agent: Any, index: int = index, seed: int = seed) -> None:
                k = step // every - 1
                if k >= EVALS_PER_SEED:
                    return
                value = evaluate_policy(agent, INTERMEDIATE_EPISODES)
                trial.report(value, index * EVALS_PER_SEED + k)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"evaluation {k + 1} of seed {seed}: {value:.2f}")

            config = RunConfig(env=env, algo=algo, mode="unsafe", steps=steps, seed=int(seed),
                               agent=overrides, progress_bar=False, num_threads=1)
            result = train(config, callback=report, callback_every=every)
            score = evaluate_policy(result.agent, FINAL_EPISODES)
            if not math.isfinite(score):
                raise optuna.TrialPruned(f"seed {seed}: non-finite return {score}")
            finals.append(score)
            trial.set_user_attr(f"score_seed_{seed}", score)
        trial.set_user_attr("wall_time_s", round(time.perf_counter() - start, 1))
        return float(np.mean(finals))

    return objective


def evaluate_unsafe(env: str, agent: Any, episodes: int) -> float:
    """Mean return of ``agent``'s deterministic policy on the unsafe ``env`` over ``episodes``
    episodes from :data:`TUNING_EVAL_SEED` (with the termination penalty it trains with)."""
    eval_env = ModeEnv(gym.make(ENVS[env], termination_penalty=_termination_penalty(env)),
                       SafetyConfig("unsafe", "none"))
    result = run_episodes(eval_env, lambda obs: agent.select_action(obs, explore=False),
                          episodes, TUNING_EVAL_SEED)
    return float(result["mean_return"])


def _termination_penalty(env: str) -> float:
    from tutorial_rl.experiments.training import env_defaults

    return float(env_defaults(env, "td3")["termination_penalty"])


def _fail_stale(study: Any) -> None:
    """Fail (and queue one retry of) the trials whose worker stopped beating. Optuna does this
    only before it starts a trial, so a study that needs no more trials would keep them RUNNING."""
    import warnings

    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def _finished(study: Any) -> int:
    from optuna.trial import TrialState

    return sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)


def run_study(algo: str, env: str, trials: int, storage: str = DEFAULT_STORAGE,
              steps: int | None = None, seeds: Sequence[int] = TUNING_SEEDS,
              timeout: float | None = None, sampler_seed: int | None = None,
              provenance_dir: str | Path | None = None, command: str = "") -> dict[str, Any]:
    """Run (or resume) the study until it has ``trials`` finished trials, or ``timeout`` seconds.

    :param provenance_dir: where ``provenance.json`` records this invocation (every earlier one
        is kept); ``None``: the SQLite file's folder, nothing for other storages.
    :returns: a summary: finished trials before and after, best value and parameters.
    """
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    if isinstance(trials, bool) or not isinstance(trials, int) or trials <= 0:
        raise ConfigError(f"--trials must be a positive integer; got {trials!r}")
    study = make_study(algo, env, storage, steps, seeds, sampler_seed)
    protocol = study.user_attrs["protocol"]
    _fail_stale(study)  # a finished study's dead trials too: no RUNNING trial outlives its worker
    before = _finished(study)
    if provenance_dir is None and storage.startswith("sqlite:///"):
        provenance_dir = Path(storage.removeprefix("sqlite:///")).parent
    start = time.perf_counter()
    record = provenance(command or f"tutorial-rl tune --env {env} --algo {algo} --trials {trials}",
                        0.0, study=study.study_name, finished_trials_before=before,
                        invocation=uuid.uuid4().hex)
    if provenance_dir is not None and before < trials:  # an interrupted study still says who
        _record_invocation(Path(provenance_dir), {**record, "finished_trials_after": None})
    if before < trials:
        study.optimize(_objective(algo, env, protocol["steps_per_seed"], protocol["seeds"]),
                       n_trials=trials - before, timeout=timeout, gc_after_trial=True,
                       callbacks=[MaxTrialsCallback(trials, states=(TrialState.COMPLETE,
                                                                    TrialState.PRUNED))])
    wall = time.perf_counter() - start
    after = _finished(study)
    summary = {"study": study.study_name, "finished_before": before, "finished_after": after,
               "wall_time_s": round(wall, 1)}
    completed = [t for t in study.trials if t.state == TrialState.COMPLETE]
    if completed:
        summary.update(best_value=study.best_value, best_params=study.best_params)
    if provenance_dir is not None and before < trials:
        _record_invocation(Path(provenance_dir), {**record, "wall_time_s": round(wall, 2),
                                                  "finished_trials_after": after})
    return summary


def _record_invocation(folder: Path, record: dict[str, Any]) -> None:
    """Add or update (by its ``invocation`` id) one invocation's record in
    ``folder/provenance.json``, under a file lock: parallel workers share the file."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".provenance.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        records = [r for r in invocations(folder)
                   if r.get("invocation") is None or r.get("invocation") != record["invocation"]]
        write_json_atomic(folder / "provenance.json",
                          {**record, "previous_invocations": records})


def _fields_check() -> None:  # the search space names real config fields (import-time guard)
    from tutorial_rl.agents.a2c import A2CConfig
    from tutorial_rl.agents.td3 import TD3Config

    for algo, cls in (("td3", TD3Config), ("a2c", A2CConfig)):
        names = {f.name for f in dataclasses.fields(cls)} | {"width"}
        unknown = set(SEARCH_SPACE[algo]) - names
        assert not unknown, f"SEARCH_SPACE[{algo!r}] names unknown fields {unknown}"


_fields_check()

"""Experiment definitions as data: the grid of the paper's Section 8 and its named profiles.

Chapter 8 (chapters/08_experiments.py) runs these grids with ``tutorial-rl sweep``. A profile is a
frozen :class:`ExperimentProfile`; :meth:`ExperimentProfile.runs` expands it into one
:class:`RunSpec` per (algorithm, variant, α, task, training seed). Everything is validated when a
profile is built, so a typo in a profile name, a ``--set`` override or an ``--only`` filter is a
:class:`ProfileError` naming the valid choices *before* anything runs.

=========  =====================================================================================
profile    what it is for
=========  =====================================================================================
``ci``     seconds: TD3 on the pendulum, SE vanilla and SP penalty critic (α = 0.5), 2 seeds,
           400 steps, 2 evaluation episodes: 4 runs (tests and the book build)
``quick``  the whole grid (588 runs) on 0.8-20 % of the ``paper`` profile's budgets (TD3: 20 %
           pendulum, 2 % quadrotor, 1 % seeker; A2C: 12 %, 1.2 %, 0.8 %): an estimated 0.8 h on
           2 cores, 0.1 h on 16 (:func:`estimate_wall_time`); a smoke test of the pipeline, not
           a replication (the agents barely start learning)
``paper``  the paper's grid (588 runs) at full budgets: TD3 10k / 50k / 100k steps on pendulum /
           quadrotor / seeker, the budgets of the paper's public code; A2C 50k / 250k / 150k
           are ours, not the paper's, read off the tuned unsafe A2C's learning curves
           (the quadrotor's 250k provisional). An estimated 25.5 core-hours with the
           default groups of 28 (60.5 with every run alone): 12.8 h on 2 cores
=========  =====================================================================================

Run identity: a run's key, e.g. ``td3-se-penalty-a0.1-pendulum-s3``, is a pure function of what
defines it and is also its folder name, so a rerun finds the runs already done.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tutorial_rl.agents.common import VALID_MITIGATIONS, ConfigError
from tutorial_rl.experiments.training import ALGOS, ENVS, env_defaults
from tutorial_rl.experiments.tuned_values import load_tuned
from tutorial_rl.projection import METHODS

__all__ = ["DEFAULT_GROUP_SIZE", "FILTER_KEYS", "PAPER_VARIANTS", "PROFILES", "VARIANTS",
           "ExperimentProfile", "ProfileError", "RunSpec", "estimate_ms_per_step",
           "estimate_run_seconds", "estimate_wall_time", "get_profile", "group_identity",
           "parse_assignments", "run_key", "select_runs"]


class ProfileError(ConfigError):
    """A bad profile name, override or filter; one line naming the valid choices (exit code 2)."""


#: Variant name -> (mode, mitigation) of :class:`~tutorial_rl.agents.common.SafetyConfig`: the five
#: columns of the paper's result tables, plus the unsafe baseline (not in the paper's grids).
VARIANTS: dict[str, tuple[str, str]] = {
    "se-vanilla": ("se", "none"),
    "se-penalty": ("se", "penalty"),                # reward r − α‖ũ − Φ(ũ)‖² (paper eq. (23)-(24))
    "sp-vanilla": ("sp", "none"),
    "sp-per-sample-loss": ("sp", "per-sample-loss"),  # + α‖μ − Φ(μ)‖² (paper eq. (27)-(28))
    "sp-penalty-critic": ("sp", "penalty-critic"),  # Q_pen on ũ (paper eq. (29)-(31))
    "unsafe": ("unsafe", "none"),
}
PAPER_VARIANTS: tuple[str, ...] = tuple(v for v in VARIANTS if v != "unsafe")
#: Attributes ``--only KEY=VALUE`` can filter on.
FILTER_KEYS: tuple[str, ...] = ("env", "algo", "variant", "alpha", "seed", "key")


def _closest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _choice_error(what: str, value: Any, choices: Iterable[Any]) -> ProfileError:
    choices = [str(c) for c in choices]
    return ProfileError(f"unknown {what} {value!r}{_closest(str(value), choices)}; valid "
                        f"{what}s: {', '.join(choices)}")


def run_key(algo: str, variant: str, alpha: float | None, env: str, seed: int) -> str:
    """The stable identity (and folder name) of a run, e.g. ``td3-se-penalty-a0.1-pendulum-s3``.

    α is written with ``format(alpha, "g")`` (0.1, 0.5, 1, 2), so 1 and 1.0 give the same key.
    """
    alpha_part = "" if alpha is None else f"-a{format(float(alpha), 'g')}"
    return f"{algo}-{variant}{alpha_part}-{env}-s{seed}"


@dataclass(frozen=True)
class RunSpec:
    """One run of a sweep: everything :func:`~tutorial_rl.experiments.training.train` and
    :func:`~tutorial_rl.experiments.training.evaluate` need, plus its key."""

    key: str
    """stable identity and folder name (:func:`run_key`)"""
    env: str
    """task"""
    algo: str
    """``td3`` or ``a2c``"""
    variant: str
    """a name of :data:`VARIANTS`"""
    mode: str
    """``se``, ``sp`` or ``unsafe`` (from the variant)"""
    mitigation: str
    """``none``, ``penalty``, ``per-sample-loss`` or ``penalty-critic`` (from the variant)"""
    alpha: float | None
    """the mitigation's weight α (``None`` for vanilla variants)"""
    seed: int
    """training seed"""
    steps: int
    """environment steps of training"""
    eval_episodes: int
    """episodes of the deterministic policy after training"""
    eval_seed: int
    """seed of the first evaluation reset (the same for every run: common random numbers)"""
    projection_method: str
    """projection backend"""
    agent: dict[str, Any] = field(default_factory=dict)
    """overrides of the algorithm's TD3Config / A2CConfig fields"""
    fail: bool = False
    """raise on purpose instead of training (tests of the failure path)"""


# TD3: the budgets of the paper's code. A2C: ours (the paper states none), read off the tuned
# unsafe A2C's learning curves in results/budgets/ (tutorial-rl budget-curve; a test checks these
# against them). The quadrotor's curve shows no learning yet, so its 250k is provisional.
_PAPER_STEPS = {"td3/pendulum": 10_000, "td3/quadrotor": 50_000, "td3/seeker": 100_000,
                "a2c/pendulum": 50_000, "a2c/quadrotor": 250_000, "a2c/seeker": 150_000}


@dataclass(frozen=True)
class ExperimentProfile:
    """A named grid: tasks × algorithms × variants × α × training seeds, with budgets.

    The α grid (0.1, 0.5, 1, 2) is the per-sample-loss sweep of the paper's code; that code used
    0.1 for the SE-RL penalty, which is the grid's first value, and we give every mitigation the
    same four values so that variants are compared at equal weights. In this course α multiplies
    squared distances in the *normalised* action space [-1, 1]^m (Chapter 4), so ‖ũ − Φ(ũ)‖² is at
    most 4m and typically ≪ 1: α = 2 makes a clearly infeasible action cost as much as a few steps
    of task reward (pendulum: O(1) per step near the top; quadrotor, seeker: rewards in [−1, 0]),
    α = 0.1 barely changes the return. The paper reports the best α per variant; the report keeps
    all of them.
    """

    name: str
    """profile name (``ci``, ``quick``, ``paper``)"""
    envs: tuple[str, ...] = tuple(ENVS)
    """tasks"""
    algos: tuple[str, ...] = ALGOS
    """algorithms"""
    variants: tuple[str, ...] = PAPER_VARIANTS
    """safeguard variants (:data:`VARIANTS`)"""
    alphas: tuple[float, ...] = (0.1, 0.5, 1.0, 2.0)
    """α values of the mitigated variants (vanilla variants run once per seed)"""
    seeds: int = 7
    """training seeds 0 .. seeds−1 (the paper: 7)"""
    steps: dict[str, int] = field(default_factory=lambda: dict(_PAPER_STEPS))
    """training budget per ``"algo/env"`` in environment steps"""
    eval_episodes: int = 10
    """evaluation episodes per run (the paper: 10 seeds)"""
    eval_seed: int = 1_000_000
    """first evaluation reset's seed, far from the training seeds"""
    agent: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {"td3": {"learning_starts": 1_000}})
    """per-algorithm hyperparameter overrides, e.g. ``{"td3": {"batch_size": 64}}``; pinned here so
    that ``$TUTORIAL_RL_PROFILE`` cannot change a sweep"""
    tuned: dict[str, dict[str, Any]] = field(default_factory=dict)
    """per-``"algo/env"`` hyperparameters tuned on the unsafe baseline (``tutorial-rl tune``; the
    ``paper`` profile reads :data:`~tutorial_rl.experiments.tuned_values.TUNED_FILE`); ``agent``
    overrides win over them"""
    projection_method: str = "exact"
    """projection backend (the paper used cvxpylayers; ``exact`` is ~300x faster, chapter 1)"""
    inject_failure: tuple[str, ...] = ()
    """run keys that raise instead of training: tests the failure path of the runner"""

    def __post_init__(self) -> None:
        _validate(self)

    def runs(self) -> list[RunSpec]:
        """The grid, in a fixed order (task, algorithm, variant, α, seed)."""
        specs = []
        for env in self.envs:
            for algo in self.algos:
                for variant in self.variants:
                    mode, mitigation = VARIANTS[variant]
                    alphas: tuple[float | None, ...] = (None,) if mitigation == "none" \
                        else self.alphas
                    for alpha in alphas:
                        for seed in range(self.seeds):
                            key = run_key(algo, variant, alpha, env, seed)
                            specs.append(RunSpec(
                                key, env, algo, variant, mode, mitigation, alpha, seed,
                                self.steps[f"{algo}/{env}"], self.eval_episodes, self.eval_seed,
                                self.projection_method, self.agent_overrides(algo, env),
                                key in self.inject_failure))
        return specs

    def agent_overrides(self, algo: str, env: str) -> dict[str, Any]:
        """The hyperparameters a run of ``algo`` on ``env`` gets: tuned values, then ``agent``."""
        return {**self.tuned.get(f"{algo}/{env}", {}), **self.agent.get(algo, {})}

    def with_overrides(self, overrides: Mapping[str, Any]) -> ExperimentProfile:
        """A copy with ``overrides`` (``--set KEY=VALUE`` pairs) applied and validated.

        Keys are field names, or ``ALGO.FIELD`` for one hyperparameter of an algorithm
        (``td3.batch_size=64`` is ``agent={"td3": {"batch_size": 64}}``).
        """
        fields = [f.name for f in dataclasses.fields(self) if f.name != "name"]
        changes: dict[str, Any] = {}
        agent: dict[str, dict[str, Any]] = {}
        for key, value in overrides.items():
            algo, dot, name = key.partition(".")
            if dot and algo in ALGOS and name:
                agent.setdefault(algo, {})[name] = value
            elif key not in fields:
                raise _choice_error("setting", key, [*fields, *(f"{a}.FIELD" for a in ALGOS)])
            else:
                changes[key] = _coerce(self, key, value)
        if agent:
            changes["agent"] = _coerce(dataclasses.replace(self, **changes), "agent", agent)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (``sweep.json``)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


def _as_tuple(value: Any) -> tuple[Any, ...]:
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    if isinstance(value, list | tuple):
        return tuple(value)
    return (value,)


def _coerce(profile: ExperimentProfile, key: str, value: Any) -> Any:
    """Turn a parsed ``--set`` value into the field's type (validation happens in _validate)."""
    if key in ("envs", "algos", "variants", "inject_failure"):
        return tuple(str(v) for v in _as_tuple(value))
    if key == "alphas":
        try:
            return tuple(float(v) for v in _as_tuple(value))
        except (TypeError, ValueError):
            raise ProfileError(f"alphas must be numbers, e.g. alphas=[0.1,1]; got {value!r}") \
                from None
    if key == "steps":
        if isinstance(value, dict):  # {"td3/seeker": 1000}: merged into the profile's budgets
            return {**profile.steps, **value}
        return dict.fromkeys(profile.steps, value)  # one number: every task and algorithm
    if key == "agent":
        if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
            raise ProfileError('agent must map an algorithm to field overrides, e.g. '
                               f'agent={{"td3":{{"batch_size":64}}}}; got {value!r}')
        return {a: {**profile.agent.get(a, {}), **value.get(a, {})}
                for a in {*profile.agent, *value}}
    return value


def _positive_int(name: str, value: Any, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ProfileError(f"{name} must be an integer >= {minimum}; got {value!r}")


def _validate(p: ExperimentProfile) -> None:
    for what, values, choices in (("env", p.envs, ENVS), ("algo", p.algos, ALGOS),
                                  ("variant", p.variants, VARIANTS)):
        if not values:
            raise ProfileError(f"the profile needs at least one {what}; valid: "
                               f"{', '.join(choices)}")
        for value in values:
            if value not in choices:
                raise _choice_error(what, value, choices)
    for alpha in p.alphas:
        if not (math.isfinite(alpha) and alpha >= 0):
            raise ProfileError(f"alphas must be finite numbers >= 0; got {alpha!r}")
    if not p.alphas and any(VARIANTS[v][1] != "none" for v in p.variants):
        raise ProfileError("mitigated variants need at least one alpha")
    _positive_int("seeds", p.seeds)
    _positive_int("eval_episodes", p.eval_episodes)
    _positive_int("eval_seed", p.eval_seed, minimum=0)
    if p.projection_method not in METHODS:
        raise _choice_error("projection_method", p.projection_method, METHODS)
    cells = [f"{a}/{e}" for a in p.algos for e in p.envs]
    for cell, steps in p.steps.items():
        if cell not in _PAPER_STEPS:
            raise _choice_error("steps key", cell, _PAPER_STEPS)
        _positive_int(f"steps[{cell!r}]", steps)
    missing = [c for c in cells if c not in p.steps]
    if missing:
        raise ProfileError(f"no training budget for {', '.join(missing)}")
    for algo in p.agent:
        if algo not in ALGOS:
            raise _choice_error("agent algo", algo, ALGOS)
    for cell in p.tuned:
        if cell not in _PAPER_STEPS:
            raise _choice_error("tuned key", cell, _PAPER_STEPS)
    for algo in p.algos:
        for env in p.envs:  # the algorithm's own checks (TD3Config/A2CConfig.__post_init__)
            overrides = p.agent_overrides(algo, env)
            base = env_defaults(env, algo)["agent"]
            names = [f.name for f in dataclasses.fields(base)]
            for name in overrides:
                if name not in names:
                    raise _choice_error(f"{algo} agent field", name, names)
            values = {k: tuple(v) if k == "hidden_sizes" else v for k, v in overrides.items()}
            try:
                dataclasses.replace(base, **values)
            except (ConfigError, TypeError) as exc:
                raise ProfileError(f"agent[{algo!r}]: {exc}") from None
    for mode, mitigation in (VARIANTS[v] for v in p.variants):
        assert mitigation in VALID_MITIGATIONS[mode], (mode, mitigation)  # a bug in VARIANTS
    keys = {run.key for run in p.runs()}
    for key in p.inject_failure:
        if key not in keys:
            raise ProfileError(f"inject_failure: {key!r} is not a run of this grid"
                               f"{_closest(key, keys)}")


#: The named profiles (see the module docstring); :func:`get_profile` looks them up.
PROFILES: dict[str, ExperimentProfile] = {
    "ci": ExperimentProfile(
        name="ci", envs=("pendulum",), algos=("td3",), variants=("se-vanilla", "sp-penalty-critic"),
        alphas=(0.5,), seeds=2, steps={"td3/pendulum": 400}, eval_episodes=2,
        agent={"td3": {"learning_starts": 100, "batch_size": 32}}),
    # Budgets chosen with estimate_wall_time (below) so that the whole grid takes under an hour
    # on 2 cores: ~1,000 core-seconds per task × algorithm, ~10 s of training per run.
    "quick": ExperimentProfile(
        name="quick",
        steps={"td3/pendulum": 2_000, "td3/quadrotor": 1_000, "td3/seeker": 1_000,
               "a2c/pendulum": 6_000, "a2c/quadrotor": 3_000, "a2c/seeker": 4_000},
        agent={"td3": {"learning_starts": 250}}),
    # The paper's protocol: hyperparameters tuned on each unsafe baseline, used for every variant.
    "paper": ExperimentProfile(name="paper", tuned=load_tuned()),
}


def get_profile(name: str, overrides: Mapping[str, Any] | None = None) -> ExperimentProfile:
    """The profile ``name`` with ``overrides`` applied; :class:`ProfileError` on any typo."""
    if name not in PROFILES:
        raise _choice_error("profile", name, PROFILES)
    return PROFILES[name].with_overrides(overrides or {})


def parse_assignments(items: Iterable[str], what: str = "--set") -> list[tuple[str, Any]]:
    """Parse ``KEY=VALUE`` strings; VALUE is JSON when it parses (``1000``, ``[0.1,1]``,
    ``{"td3":{...}}``), else a bare string (``pendulum`` or ``pendulum,seeker``)."""
    pairs = []
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ProfileError(f"{what} expects KEY=VALUE; got {item!r}")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        pairs.append((key.strip(), value))
    return pairs


def select_runs(profile: ExperimentProfile, only: Iterable[str] = ()) -> list[RunSpec]:
    """The profile's runs matching every ``--only KEY=VALUE`` (values may be comma lists: OR
    within a key, AND across keys); ``alpha=none`` selects the vanilla variants."""
    runs = profile.runs()
    wanted: dict[str, set[str]] = {}
    for key, value in parse_assignments(only, "--only"):
        if key not in FILTER_KEYS:
            raise _choice_error("--only key", key, FILTER_KEYS)
        values = {str(v) for v in (value if isinstance(value, list) else _as_tuple(str(value)))}
        valid = {str(_attr(r, key)) for r in runs}
        for v in values:
            if _canonical(key, v) not in valid:
                raise _choice_error(f"{key} value", v, sorted(valid))
        wanted.setdefault(key, set()).update(_canonical(key, v) for v in values)
    return [r for r in runs if all(str(_attr(r, k)) in vs for k, vs in wanted.items())]


def _attr(run: RunSpec, key: str) -> Any:
    if key == "alpha":
        return "none" if run.alpha is None else format(run.alpha, "g")
    return getattr(run, key)


def _canonical(key: str, value: str) -> str:
    if key == "alpha" and value.lower() != "none":
        try:
            return format(float(value), "g")
        except ValueError:
            return value
    return value.lower() if key == "alpha" else value


# Measured on the 2-core development machine (torch 2.13 CPU, one thread, other jobs running, so
# these err on the slow side): ms per training step of 1,200-step TD3 runs (200 warm-up steps)
# and 3,000-step A2C runs, and seconds per 10-episode evaluation.
_MS_PER_STEP: dict[str, dict[str, float]] = {
    "td3/pendulum": {"se-vanilla": 3.4, "se-penalty": 3.4, "sp-vanilla": 4.6,
                     "sp-per-sample-loss": 5.2, "sp-penalty-critic": 5.4},
    "td3/quadrotor": {"se-vanilla": 5.8, "se-penalty": 6.2, "sp-vanilla": 9.6,
                      "sp-per-sample-loss": 9.1, "sp-penalty-critic": 10.6},
    "td3/seeker": {"se-vanilla": 5.0, "se-penalty": 4.6, "sp-vanilla": 9.5,
                   "sp-per-sample-loss": 8.0, "sp-penalty-critic": 10.4},
    "a2c/pendulum": {"se-vanilla": 1.1, "se-penalty": 1.2, "sp-vanilla": 1.1,
                     "sp-per-sample-loss": 1.7, "sp-penalty-critic": 1.3},
    "a2c/quadrotor": {"se-vanilla": 1.7, "se-penalty": 2.4, "sp-vanilla": 2.3,
                      "sp-per-sample-loss": 3.7, "sp-penalty-critic": 2.0},
    "a2c/seeker": {"se-vanilla": 1.5, "se-penalty": 1.4, "sp-vanilla": 1.5,
                   "sp-per-sample-loss": 2.7, "sp-penalty-critic": 1.3},
}
#: The sweep's default ``--group-size``: a group holds the runs of one configuration that differ
#: in seed and α (:func:`group_identity`), so 28 fills every mitigated configuration of the paper
#: grid (4 α × 7 seeds) and the vanilla ones form groups of 7; larger groups pay less per-call
#: overhead per run (``benchmarks/grid_throughput.py``, K = 1, 7, 28: the paper grid's estimate
#: is 28.8 core-hours with 28, 33.4 with 7, 77 alone). A group is one worker's job, so with many
#: workers smaller groups can finish sooner (paper grid on 16 cores: 5.5 h with 28, 2.2 h with 7);
#: 28 is the default because the course's reader has a laptop.
DEFAULT_GROUP_SIZE = 28
#: ms per run-step of runs trained in groups of K (the keys: the measured group sizes): the
#: table above scaled by the speed-ups ``benchmarks/grid_throughput.py --group-sizes ''
#: --run-sizes 1,7,28 --skip-cells`` measured side by side (alone, K = 7 and K = 28 back to back
#: per cell, 160 timed steps after 300) on the 2-core machine while a tuning job used both cores
#: (issue 11; its "table x the measured K ratios" output; K = 28 groups mix the four α, as the
#: sweep's do). Single measurements on a busy machine: a few cells are noise (td3/seeker
#: se-penalty 1.7x at K = 7 but 1.0x at K = 28; a2c/quadrotor se-vanilla 5.0x and 3.6x).
_MS_PER_STEP_GROUPED: dict[int, dict[str, dict[str, float]]] = {
    7: {
        "td3/pendulum": {"se-vanilla": 0.84, "se-penalty": 2.09, "sp-vanilla": 1.83,
                         "sp-per-sample-loss": 2.41, "sp-penalty-critic": 2.77},
        "td3/quadrotor": {"se-vanilla": 5.2, "se-penalty": 3.43, "sp-vanilla": 6.12,
                          "sp-per-sample-loss": 5.16, "sp-penalty-critic": 6.18},
        "td3/seeker": {"se-vanilla": 3.33, "se-penalty": 2.71, "sp-vanilla": 5.6,
                       "sp-per-sample-loss": 5.32, "sp-penalty-critic": 7.13},
        "a2c/pendulum": {"se-vanilla": 0.22, "se-penalty": 0.29, "sp-vanilla": 0.31,
                         "sp-per-sample-loss": 0.52, "sp-penalty-critic": 0.25},
        "a2c/quadrotor": {"se-vanilla": 0.34, "se-penalty": 1.06, "sp-vanilla": 0.59,
                          "sp-per-sample-loss": 0.83, "sp-penalty-critic": 0.27},
        "a2c/seeker": {"se-vanilla": 0.35, "se-penalty": 0.32, "sp-vanilla": 0.29,
                       "sp-per-sample-loss": 1.03, "sp-penalty-critic": 0.3},
    },
    28: {
        "td3/pendulum": {"se-vanilla": 0.55, "se-penalty": 1.14, "sp-vanilla": 0.97,
                         "sp-per-sample-loss": 0.61, "sp-penalty-critic": 0.92},
        "td3/quadrotor": {"se-vanilla": 3.08, "se-penalty": 3.55, "sp-vanilla": 4.64,
                          "sp-per-sample-loss": 4.13, "sp-penalty-critic": 5.06},
        "td3/seeker": {"se-vanilla": 3.0, "se-penalty": 4.82, "sp-vanilla": 4.38,
                       "sp-per-sample-loss": 4.48, "sp-penalty-critic": 7.03},
        "a2c/pendulum": {"se-vanilla": 0.07, "se-penalty": 0.11, "sp-vanilla": 0.08,
                         "sp-per-sample-loss": 0.1, "sp-penalty-critic": 0.08},
        "a2c/quadrotor": {"se-vanilla": 0.47, "se-penalty": 0.67, "sp-vanilla": 0.35,
                          "sp-per-sample-loss": 0.43, "sp-penalty-critic": 0.16},
        "a2c/seeker": {"se-vanilla": 0.18, "se-penalty": 0.18, "sp-vanilla": 0.15,
                       "sp-per-sample-loss": 0.71, "sp-penalty-critic": 0.17},
    },
}
_EVAL_S_PER_10_EPISODES = {"pendulum": 1.0, "quadrotor": 2.2, "seeker": 0.8}
_RUN_OVERHEAD_S = 0.3   # environment and safeguard set-up, writing files
_WORKER_START_S = 5.0   # importing torch and the package, once per worker process


def group_identity(spec: RunSpec) -> tuple[tuple[str, str], ...]:
    """What the runs of one group share: every field of ``spec`` except its key, seed and α.

    Seed and α are per-run quantities of the grouped code (``tutorial-rl sweep --group-size``,
    :func:`~tutorial_rl.experiments.runner.group_units`); everything else shapes the shared
    computation.
    """
    return tuple(sorted((k, repr(v)) for k, v in dataclasses.asdict(spec).items()
                        if k not in ("key", "seed", "alpha")))


def estimate_ms_per_step(algo: str, env: str, mode: str, mitigation: str,
                         group_size: int = 1) -> float:
    """Estimated single-core milliseconds per training step of one run (measured table).

    ``group_size``: the size of the run's group (1: alone); a group costs what the largest
    measured K not above its size costs, so groups between the measured sizes are estimated on
    the slow side.
    """
    measured = [k for k in _MS_PER_STEP_GROUPED if k <= group_size]
    table = _MS_PER_STEP_GROUPED[max(measured)] if measured else _MS_PER_STEP
    per_step = table[f"{algo}/{env}"]
    variant = next((v for v, pair in VARIANTS.items() if pair == (mode, mitigation)), "")
    return per_step.get(variant, per_step["se-vanilla"])  # unsafe: like SE without a set


def cost_table_mismatches(runs: Iterable[RunSpec]) -> dict[str, str]:
    """Cells whose runs use other network or minibatch sizes than the per-step cost tables.

    The tables were measured with :func:`~tutorial_rl.experiments.training.env_defaults`'
    networks and minibatches; a profile that overrides them (the ``paper`` profile's tuned TD3)
    costs more or less per step than :func:`estimate_run_seconds` says, by more than the
    tables' noise (a wider network multiplies the arithmetic of every update). Returns
    ``{"algo/env": "hidden [w, w], batch b (tables: ...)"}`` for each such cell.
    """
    from tutorial_rl.experiments.training import env_defaults

    found: dict[str, str] = {}
    for spec in runs:
        cell = f"{spec.algo}/{spec.env}"
        if cell in found:
            continue
        default = env_defaults(spec.env, spec.algo)["agent"]
        sizes = {}
        for name in ("hidden_sizes", "batch_size"):
            if name in spec.agent and hasattr(default, name):
                ours, theirs = spec.agent[name], getattr(default, name)
                if (list(ours) if name == "hidden_sizes" else ours) != \
                        (list(theirs) if name == "hidden_sizes" else theirs):
                    sizes[name] = (ours, theirs)
        if sizes:
            found[cell] = ", ".join(f"{'hidden' if f == 'hidden_sizes' else 'batch'} "
                                    f"{list(o) if f == 'hidden_sizes' else o} (tables: "
                                    f"{list(t) if f == 'hidden_sizes' else t})"
                                    for f, (o, t) in sizes.items())
    return found


def estimate_run_seconds(spec: RunSpec, group_size: int = 1) -> float:
    """Estimated single-core seconds of one run: steps × measured ms/step + evaluation.

    ``group_size``: the size of the group the run trains in (1: alone).
    """
    ms = estimate_ms_per_step(spec.algo, spec.env, spec.mode, spec.mitigation, group_size)
    evaluation = _EVAL_S_PER_10_EPISODES[spec.env] * spec.eval_episodes / 10
    return spec.steps * ms / 1000 + evaluation + _RUN_OVERHEAD_S


def estimate_wall_time(runs: ExperimentProfile | Iterable[RunSpec], cores: int,
                       group_size: int = DEFAULT_GROUP_SIZE) -> float:
    """Estimated wall seconds of a sweep on ``cores`` one-thread workers.

    How: the runs are split into the sweep's units of work
    (:func:`~tutorial_rl.experiments.runner.group_units`); each run costs
    :func:`estimate_run_seconds` at its unit's size (per-step costs measured on this project's
    2-core machine for every task × algorithm × variant, alone and in groups of 7 and 28,
    evaluation and set-up costs likewise); the units are scheduled longest first onto the
    least-loaded worker, as a pool of ``cores`` workers does, and every worker pays the import
    once. Faster or slower cores scale the result; the paper's cvxpylayers projection would make
    SP-RL runs many times slower.

    :param group_size: the sweep's ``--group-size`` (1: every run alone).
    """
    from tutorial_rl.experiments.runner import group_units  # the runner imports this module

    specs = runs.runs() if isinstance(runs, ExperimentProfile) else list(runs)
    costs = [sum(estimate_run_seconds(s, len(unit)) for s in unit)
             for unit in group_units(specs, group_size)]
    loads = [_WORKER_START_S] * max(1, int(cores))
    for cost in sorted(costs, reverse=True):
        loads[loads.index(min(loads))] += cost
    return max(loads)

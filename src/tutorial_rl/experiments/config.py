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
           2 cores, 0.1 h on 16 (:func:`~tutorial_rl.experiments.costs.estimate_wall_time`); a
           smoke test of the pipeline, not a replication (the agents barely start learning)
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
           "ExperimentProfile", "ProfileError", "RunSpec", "get_profile", "group_identity",
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
    """number of training seeds (the paper: 7)"""
    first_seed: int = 0
    """training seeds first_seed .. first_seed + seeds − 1 (a confirmation sweep, ``tutorial-rl
    sweep --confirm``, trains on fresh seeds after those its α were chosen on)"""
    chosen: dict[str, float] = field(default_factory=dict)
    """a confirmation sweep's choice (:mod:`~tutorial_rl.experiments.confirmation`): the one α to
    train per ``"algo/env/variant"`` of a mitigated variant, chosen on another sweep's seeds.
    When it is set, only the task × algorithm cells it names train (every variant of them); the
    others wait until their source cell has finished. Empty: every cell, every α."""
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
        cells = {key.rsplit("/", 1)[0] for key in self.chosen}
        for env in self.envs:
            for algo in self.algos:
                if self.chosen and f"{algo}/{env}" not in cells:
                    continue  # a confirmation sweep: this cell's α are not chosen yet
                for variant in self.variants:
                    mode, mitigation = VARIANTS[variant]
                    alphas: tuple[float | None, ...] = (None,) if mitigation == "none" \
                        else self.alphas_of(algo, env, variant)
                    for alpha in alphas:
                        for seed in range(self.first_seed, self.first_seed + self.seeds):
                            key = run_key(algo, variant, alpha, env, seed)
                            specs.append(RunSpec(
                                key, env, algo, variant, mode, mitigation, alpha, seed,
                                self.steps[f"{algo}/{env}"], self.eval_episodes, self.eval_seed,
                                self.projection_method, self.agent_overrides(algo, env),
                                key in self.inject_failure))
        return specs

    def alphas_of(self, algo: str, env: str, variant: str) -> tuple[float, ...]:
        """The α values a mitigated variant trains: its chosen one, else every α."""
        chosen = self.chosen.get(f"{algo}/{env}/{variant}")
        return self.alphas if chosen is None else (chosen,)

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

    @classmethod
    def from_dict(cls, settings: Mapping[str, Any]) -> ExperimentProfile:
        """The profile that :meth:`to_dict` wrote (``sweep.json``'s ``settings``); settings that
        older files lack take their defaults."""
        lists = ("envs", "algos", "variants", "alphas", "inject_failure")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(settings) - set(fields))
        missing = sorted(name for name, f in fields.items() if name not in settings
                         and f.default is dataclasses.MISSING
                         and f.default_factory is dataclasses.MISSING)
        if unknown or missing:
            raise ProfileError(
                "these settings do not describe a profile (sweep.json is written by "
                "'tutorial-rl sweep'): " + "; ".join(
                    part for part in (f"unknown {unknown}" if unknown else "",
                                      f"missing {missing}" if missing else "") if part))
        return cls(**{k: tuple(v) if k in lists else v for k, v in settings.items()})


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
    if key == "chosen":
        if not isinstance(value, dict):
            raise ProfileError('chosen must map "algo/env/variant" to an alpha, e.g. '
                               f'chosen={{"td3/pendulum/se-penalty":0.5}}; got {value!r}')
        try:
            return {str(k): float(v) for k, v in value.items()}
        except (TypeError, ValueError):
            raise ProfileError(f"chosen alphas must be numbers; got {value!r}") from None
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
    _positive_int("first_seed", p.first_seed, minimum=0)
    for key, alpha in p.chosen.items():
        algo, env, variant = (key.split("/") + ["", "", ""])[:3]
        if key.count("/") != 2 or algo not in ALGOS or env not in ENVS \
                or variant not in VARIANTS or VARIANTS[variant][1] == "none":
            raise ProfileError(f'chosen: {key!r} is no "algo/env/variant" of a mitigated '
                               f"variant (e.g. 'td3/pendulum/se-penalty')")
        if not (math.isfinite(alpha) and alpha >= 0):
            raise ProfileError(f"chosen[{key!r}] must be a finite number >= 0; got {alpha!r}")
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


#: The sweep's default ``--group-size``: a group holds the runs of one configuration that differ
#: in seed and α (:func:`group_identity`), so 28 fills every mitigated configuration of the paper
#: grid (4 α × 7 seeds) and the vanilla ones form groups of 7; larger groups pay less per-call
#: overhead per run (``benchmarks/grid_throughput.py``, K = 1, 7, 28: the paper grid's estimate
#: is 28.8 core-hours with 28, 33.4 with 7, 77 alone). A group is one worker's job, so with many
#: workers smaller groups can finish sooner (paper grid on 16 cores: 5.5 h with 28, 2.2 h with 7);
#: 28 is the default because the course's reader has a laptop.
DEFAULT_GROUP_SIZE = 28


def group_identity(spec: RunSpec) -> tuple[tuple[str, str], ...]:
    """What the runs of one group share: every field of ``spec`` except its key, seed and α.

    Seed and α are per-run quantities of the grouped code (``tutorial-rl sweep --group-size``,
    :func:`~tutorial_rl.experiments.runner.group_units`); everything else shapes the shared
    computation.
    """
    return tuple(sorted((k, repr(v)) for k, v in dataclasses.asdict(spec).items()
                        if k not in ("key", "seed", "alpha")))

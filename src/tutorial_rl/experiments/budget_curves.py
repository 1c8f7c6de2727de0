"""Learning curves of the tuned unsafe baselines, and the training budgets read off them.

The paper states TD3's budgets (its code: 10k / 50k / 100k steps) but not A2C's. Issue 12 asks
for A2C budgets chosen "where the tuned unsafe A2C's learning curve has flattened", shown, and
labelled as ours (appendix "Tuned baselines and reference controllers", section "Training
budgets"). This module produces that evidence:

- :func:`learning_curve` trains the unsafe baseline with the ``paper`` profile's hyperparameters
  (the tuned values) on the *tuning* seeds, and evaluates the deterministic policy every
  ``every`` steps on the *tuning* evaluation seed: like the tuning itself, it never touches the
  grid's training seeds 0-6 or its evaluation seed, so choosing a budget cannot bias the grid.
- :func:`choose_budget` reads a budget off the seed-averaged curve with a stated rule
  (:data:`PLATEAU_RULE`), or none where the curve shows no learning; :func:`rechoose` re-applies
  a revised rule to a stored curve and keeps what the old rule said.
- :func:`write_curve` stores curve, rule, choice and provenance in
  ``results/budgets/<algo>-<env>.json`` (``tutorial-rl budget-curve``).

The ``paper`` profile's A2C budgets are then written into
:data:`tutorial_rl.experiments.config._PAPER_STEPS` by hand, and a test checks that they equal
:func:`choose_budget` of the committed curves, and that each curve was trained with the
hyperparameters the profile uses now. A cell whose curve decides no budget keeps a provisional
one, and the tuning appendix says so.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tutorial_rl.agents.common import ConfigError
from tutorial_rl.experiments.training import ALGOS, ENVS, RunConfig, train
from tutorial_rl.provenance import invocations, provenance, write_json_atomic

__all__ = ["BUDGET_ROUNDING", "CURVE_EVALUATIONS", "CURVE_STEPS", "MIN_RISE_FRACTION",
           "PLATEAU_FRACTION", "PLATEAU_RULE", "PLATEAU_TOLERANCE", "choose_budget", "curve_path",
           "learning_curve", "load_curve", "rechoose", "write_curve"]

#: Default length of a curve per ``"algo/env"``: twice the tuning budget or more (pendulum 2×,
#: quadrotor 4×, seeker 3.3×), so that a plateau, if there is one, is seen for long enough to be
#: called one; two seeds of all three cost about 0.6 core-hours on a laptop.
CURVE_STEPS: dict[str, int] = {"a2c/pendulum": 100_000, "a2c/quadrotor": 400_000,
                               "a2c/seeker": 500_000}
#: Default number of evaluations along a curve.
CURVE_EVALUATIONS = 30
#: The last fraction of the evaluations that defines the plateau (its mean return).
PLATEAU_FRACTION = 0.25
#: How close to the plateau the curve must stay, as a fraction of its rise (plateau − first).
PLATEAU_TOLERANCE = 0.05
#: Budgets are rounded up to a multiple of this many steps.
BUDGET_ROUNDING = 25_000
#: A curve shows learning only if its plateau is above its first evaluation by at least this
#: fraction of the first evaluation's magnitude; otherwise it decides no budget.
MIN_RISE_FRACTION = 0.1
PLATEAU_RULE = (
    f"the plateau is the mean of the last {PLATEAU_FRACTION:.0%} of the seed-averaged evaluations;"
    f" a curve whose plateau is not above its first evaluation by {MIN_RISE_FRACTION:.0%} of that"
    f" evaluation's magnitude shows no learning and decides no budget; otherwise the budget is the"
    f" first evaluation step from which the seed-averaged curve (a running mean over 3"
    f" evaluations) stays above the plateau minus a band, rounded up to a multiple of"
    f" {BUDGET_ROUNDING:,} steps. The band is {PLATEAU_TOLERANCE:.0%} of the rise (plateau minus"
    f" first evaluation) or two standard errors of a 3-evaluation mean on the plateau, whichever"
    f" is larger")


def learning_curve(algo: str, env: str, steps: int, seeds: Sequence[int], every: int,
                   episodes: int = 10) -> dict[str, Any]:
    """Train the tuned unsafe ``algo`` on ``env`` for ``steps`` per seed; evaluate every ``every``.

    :returns: ``{"steps": [...], "returns": {seed: [...]}, "hyperparameters": {...}}``: the mean
        return of ``episodes`` deterministic episodes from the tuning evaluation seed at each
        evaluation step, per training seed.
    """
    from tutorial_rl.experiments.config import get_profile
    from tutorial_rl.experiments.tuning import evaluate_unsafe

    if algo not in ALGOS:
        raise ConfigError(f"unknown algo {algo!r}; valid algos: {', '.join(ALGOS)}")
    if env not in ENVS:
        raise ConfigError(f"unknown env {env!r}; valid envs: {', '.join(ENVS)}")
    for name, value in (("steps", steps), ("every", every), ("episodes", episodes)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(f"{name} must be a positive integer; got {value!r}")
    if every > steps:
        raise ConfigError(f"every ({every}) must not exceed steps ({steps})")
    if not seeds:
        raise ConfigError("seeds must name at least one training seed")
    overrides = get_profile("paper").agent_overrides(algo, env)
    points = list(range(every, steps + 1, every))
    returns: dict[str, list[float]] = {}
    for seed in seeds:
        values: list[float] = []

        def record(step: int, agent: Any, values: list[float] = values) -> None:
            if step % every == 0 and len(values) < len(points):
                values.append(evaluate_unsafe(env, agent, episodes))

        config = RunConfig(env=env, algo=algo, mode="unsafe", steps=steps, seed=int(seed),
                           agent=overrides, progress_bar=False, num_threads=1)
        train(config, callback=record, callback_every=every)
        if len(values) != len(points):
            raise RuntimeError(f"expected {len(points)} evaluations of seed {seed}, "
                               f"got {len(values)}")
        returns[str(seed)] = values
    return {"algo": algo, "env": env, "steps": points, "returns": returns,
            "episodes": episodes, "hyperparameters": overrides}


def choose_budget(steps: Sequence[int], returns: dict[str, Sequence[float]]) -> dict[str, Any]:
    """Apply :data:`PLATEAU_RULE` to a curve: the budget and the numbers behind it."""
    if not returns:
        raise ConfigError("a curve needs the returns of at least one seed")
    lengths = {len(v) for v in returns.values()}
    if lengths != {len(steps)} or len(steps) < 4:
        raise ConfigError(f"every seed needs one return per evaluation step (≥ 4 steps); got "
                          f"{len(steps)} steps and {sorted(lengths)} returns")
    mean = np.mean([np.asarray(v, dtype=float) for v in returns.values()], axis=0)
    if not np.all(np.isfinite(mean)):
        raise ConfigError("the curve has non-finite returns")
    smooth = np.convolve(np.pad(mean, (1, 1), mode="edge"), np.ones(3) / 3, mode="valid")
    tail = max(2, math.ceil(PLATEAU_FRACTION * len(mean)))
    plateau = float(mean[-tail:].mean())
    rise = plateau - float(mean[0])
    # evaluation noise: a band of 5 % of a small rise would be narrower than the noise of the
    # running mean itself (the seeker's curve), so the band is at least two of its standard errors
    noise = float(mean[-tail:].std(ddof=1)) / math.sqrt(3)
    band = max(PLATEAU_TOLERANCE * abs(rise), 2 * noise)
    threshold = plateau - band
    learned = rise >= MIN_RISE_FRACTION * abs(float(mean[0]))
    below = np.flatnonzero(smooth < threshold)
    first = 0 if below.size == 0 else int(below[-1]) + 1
    first = min(first, len(steps) - 1)
    reached = int(steps[first])
    budget = int(math.ceil(reached / BUDGET_ROUNDING) * BUDGET_ROUNDING) if learned else None
    return {"budget": budget, "learned": bool(learned), "reached_at": reached,
            "plateau": plateau, "first_evaluation": float(mean[0]), "band": band,
            "threshold": threshold, "mean_curve": mean.round(4).tolist(), "rule": PLATEAU_RULE,
            "flattened": bool(first < len(steps) - tail)}


def curve_path(algo: str, env: str, folder: str | Path = "results/budgets") -> Path:
    """Where :func:`write_curve` stores the curve of ``algo`` on ``env``."""
    return Path(folder) / f"{algo}-{env}.json"


def write_curve(algo: str, env: str, steps: int, seeds: Sequence[int], every: int,
                episodes: int = 10, folder: str | Path = "results/budgets",
                command: str = "") -> dict[str, Any]:
    """Compute a learning curve, choose its budget and write both with provenance."""
    start = time.perf_counter()
    curve = learning_curve(algo, env, steps, seeds, every, episodes)
    choice = choose_budget(curve["steps"], curve["returns"])
    path = curve_path(algo, env, folder)
    record = provenance(command or f"tutorial-rl budget-curve --algo {algo} --env {env}",
                        round(time.perf_counter() - start, 2), seeds=list(seeds))
    earlier = invocations(path.parent)
    data = {**curve, "choice": choice, "provenance": record}
    write_json_atomic(path, data)
    write_json_atomic(path.parent / "provenance.json",
                      {**record, "previous_invocations": earlier})
    return data


def load_curve(algo: str, env: str, folder: str | Path = "results/budgets") -> dict[str, Any]:
    """Read a curve written by :func:`write_curve`; a clear error where there is none."""
    import json

    path = curve_path(algo, env, folder)
    if not path.is_file():
        raise FileNotFoundError(f"no learning curve for {algo}/{env} at {path}; run "
                                f"`tutorial-rl budget-curve --algo {algo} --env {env}`")
    return json.loads(path.read_text())


def rechoose(algo: str, env: str, folder: str | Path = "results/budgets",
             command: str = "") -> dict[str, Any]:
    """Re-apply the current :data:`PLATEAU_RULE` to a stored curve (no training) and record it.

    The curve and its provenance are kept; the file gains ``rechosen``: when, by which command,
    and the choice it replaced, so a revised rule never hides what the old one said.
    """
    data = load_curve(algo, env, folder)
    choice = choose_budget(data["steps"], data["returns"])
    if choice != data["choice"]:
        record = provenance(command or f"tutorial-rl budget-curve --algo {algo} --env {env} "
                                       "--rechoose", 0.0)
        data.setdefault("rechosen", []).append({**record, "replaced_choice": data["choice"]})
        data["choice"] = choice
        write_json_atomic(curve_path(algo, env, folder), data)
    return data

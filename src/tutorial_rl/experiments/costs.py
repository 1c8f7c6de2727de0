"""What a sweep costs: per-step costs measured on this project's 2-core machine and the
estimates built on them (``tutorial-rl sweep --dry-run``, Chapter 8 "Running a sweep").

``benchmarks/grid_throughput.py`` measures the tables (alone, and in groups of K = 7 and 28);
:func:`estimate_wall_time` schedules a sweep's units of work onto cores with them, and
:func:`cost_table_mismatches` names the cells a profile runs with other networks or minibatches
than the tables were measured with (there the estimate is off by more than its noise).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Mapping
from pathlib import Path

from tutorial_rl.experiments.config import (
    DEFAULT_GROUP_SIZE,
    VARIANTS,
    ExperimentProfile,
    RunSpec,
)
from tutorial_rl.experiments.training import env_defaults

__all__ = ["cost_table_mismatches", "estimate_ms_per_step", "estimate_run_seconds",
           "estimate_wall_time", "measured_ms_per_step"]

#: What makes two runs cost the same per step: algorithm, task, variant and agent settings
#: (network and minibatch sizes above all), not the seed or α.
CostKey = tuple[str, str, str, str]

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


def _cost_key(spec: Mapping[str, object] | RunSpec) -> CostKey:
    get = spec.get if isinstance(spec, Mapping) else lambda name: getattr(spec, name)
    return (str(get("algo")), str(get("env")), str(get("variant")),
            json.dumps(get("agent"), sort_keys=True, default=str))


def measured_ms_per_step(sweep_folders: Iterable[str | Path]) -> dict[CostKey, float]:
    """What finished runs really cost: median training ms per step per configuration.

    Reads every ``runs/*/done.json`` of the given sweep folders (a folder without runs adds
    nothing) and takes, per algorithm, task, variant and agent settings (α and seed pooled),
    the median of training wall time over training steps (a grouped run's share of its
    group). These are the costs of the machine, budgets and group sizes that produced them,
    which the tables' short runs of the default networks can miss by a factor of two (the
    paper profile's tuned TD3 on the seeker: SE-RL with the reward penalty cost 1.5 times vanilla
    SE-RL per step, where the table says 0.9). The sweep schedules its longest units first with
    them where they exist: a resumed sweep uses its own finished runs, a confirmation sweep its
    grid's.
    """
    found: dict[CostKey, list[float]] = {}
    for folder in sweep_folders:
        for done in sorted(Path(folder).glob("runs/*/done.json")):
            try:
                record = json.loads(done.read_text())
                steps, seconds = record["training"]["steps"], record["training"]["wall_time_s"]
                key = _cost_key(record["spec"])
            except (OSError, ValueError, KeyError, TypeError):
                continue  # a run written by another version: the tables cover it
            if steps > 0 and seconds > 0:
                found.setdefault(key, []).append(1000.0 * seconds / steps)
    return {key: statistics.median(values) for key, values in found.items()}


def estimate_run_seconds(spec: RunSpec, group_size: int = 1,
                         measured: Mapping[CostKey, float] | None = None) -> float:
    """Estimated single-core seconds of one run: steps × ms/step + evaluation.

    ``group_size``: the size of the group the run trains in (1: alone). ``measured``: costs of
    finished runs (:func:`measured_ms_per_step`), used for the configurations they cover
    instead of the tables.
    """
    ms = (measured or {}).get(_cost_key(spec)) or estimate_ms_per_step(
        spec.algo, spec.env, spec.mode, spec.mitigation, group_size)
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

"""Figures of the tuning studies (the tuning appendix): optimisation history and importances.

Thin wrappers around Optuna's matplotlib visualisations that read the committed studies, silence
Optuna's "experimental" warnings (they would print into the book) and use the PED-ANOVA importance
evaluator, which needs no scikit-learn.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

from matplotlib.axes import Axes

from tutorial_rl.experiments.tuning import DEFAULT_STORAGE, _storage

__all__ = ["evaluation_values", "load_studies", "plot_budget_curve", "plot_history",
           "plot_importances", "trial_counts", "trial_hours"]


def load_studies(storage: str = DEFAULT_STORAGE) -> dict[str, Any]:
    """Every study in ``storage`` by name (``td3-pendulum`` ...), read-only use."""
    import optuna

    store = _storage(storage)
    return {s.study_name: optuna.load_study(study_name=s.study_name, storage=store)
            for s in sorted(optuna.get_all_study_summaries(store), key=lambda s: s.study_name)}


def trial_counts(study: Any) -> dict[str, int]:
    """Trials by state: ``complete``, ``pruned``, ``running``, ``failed``."""
    counts = {"complete": 0, "pruned": 0, "running": 0, "failed": 0}
    names = {"COMPLETE": "complete", "PRUNED": "pruned", "RUNNING": "running", "FAIL": "failed"}
    for trial in study.trials:
        name = names.get(trial.state.name)
        if name is not None:
            counts[name] += 1
    return counts


def trial_hours(study: Any) -> float:
    """Hours the study's complete and pruned trials ran (start to end, summed): each trial trains
    on one torch thread, so this is the study's cost in core-hours (a busy machine inflates it).
    Failed trials are left out: a killed worker's trial is failed when its heartbeat is found
    stale, possibly hours later, so its start-to-end time is not work done."""
    return sum((t.datetime_complete - t.datetime_start).total_seconds()
               for t in study.trials
               if t.state.name in ("COMPLETE", "PRUNED")
               and t.datetime_complete is not None and t.datetime_start is not None) / 3600


def evaluation_values(study: Any) -> list[float]:
    """Every intermediate evaluation return the complete and pruned trials reported to the
    pruner, in trial order (the appendix counts how many distinct values a study found)."""
    return [value for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")
            for value in t.intermediate_values.values()]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def plot_history(study: Any, ax: Axes | None = None) -> Axes:
    """Objective of every complete trial (dots), pruned trials' last report (crosses) and the best
    so far (line): what Optuna's optimisation-history plot shows, on a given Axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    pruned = [t for t in study.trials if t.state.name == "PRUNED" and t.intermediate_values]
    ax.scatter([t.number for t in complete], [t.value for t in complete], s=18,
               color="tab:blue", label="complete trial", zorder=3)
    if pruned:
        ax.scatter([t.number for t in pruned],
                   [t.intermediate_values[max(t.intermediate_values)] for t in pruned], s=18,
                   marker="x", color="tab:grey", label="pruned (last evaluation)")
    if complete:
        best, xs, ys = float("-inf"), [], []
        for t in sorted(complete, key=lambda t: t.number):
            best = max(best, t.value)
            xs.append(t.number)
            ys.append(best)
        ax.step(xs, ys, where="post", color="tab:red", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel("mean evaluation return")
    ax.set_title(f"{study.study_name}: optimisation history")
    ax.legend(fontsize=9, loc="lower right")
    return ax


def plot_importances(study: Any, ax: Axes | None = None) -> Axes:
    """Hyperparameter importances by Optuna's PED-ANOVA evaluator (which parameters separate the
    best trials from the rest), as horizontal bars."""
    import matplotlib.pyplot as plt
    from optuna.importance import PedAnovaImportanceEvaluator, get_param_importances

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    with _quiet():
        importances = get_param_importances(study, evaluator=PedAnovaImportanceEvaluator())
    names = list(importances)[::-1]  # most important on top
    ax.barh(names, [importances[n] for n in names], color="tab:blue")
    ax.set_xlabel("importance (PED-ANOVA)")
    ax.set_title(f"{study.study_name}: hyperparameter importances")
    return ax


def plot_budget_curve(curve: dict[str, Any], ax: Axes) -> None:
    """A learning curve of :mod:`~tutorial_rl.experiments.budget_curves`: each seed (thin), their
    mean (thick), the plateau band the rule asks for and the budget it reads off (dashed), or a
    note where the curve shows no learning."""
    import numpy as np

    steps = np.asarray(curve["steps"]) / 1000
    for seed, values in curve["returns"].items():
        ax.plot(steps, values, lw=0.8, alpha=0.6, label=f"seed {seed}")
    choice = curve["choice"]
    ax.plot(steps, choice["mean_curve"], lw=2.2, color="black", label="mean over seeds")
    ax.axhspan(choice["threshold"], choice["plateau"], color="tab:green", alpha=0.15,
               label="plateau band")
    if choice["budget"] is not None:
        ax.axvline(choice["budget"] / 1000, ls="--", color="tab:red",
                   label=f"budget {choice['budget'] // 1000}k")
    else:
        ax.text(0.5, 0.5, "no learning:\nno budget", transform=ax.transAxes, ha="center",
                color="tab:red")
    ax.set_xlabel("environment steps (thousands)")
    ax.set_ylabel("mean evaluation return")
    ax.set_title(f"{curve['algo'].upper()} on the {curve['env']} (unsafe, tuned)")
    ax.legend(fontsize=8, loc="lower right")

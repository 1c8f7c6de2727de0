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

__all__ = ["load_studies", "plot_history", "plot_importances", "trial_counts"]


def load_studies(storage: str = DEFAULT_STORAGE) -> dict[str, Any]:
    """Every study in ``storage`` by name (``td3-pendulum`` ...), read-only use."""
    import optuna

    store = _storage(storage)
    return {s.study_name: optuna.load_study(study_name=s.study_name, storage=store)
            for s in sorted(optuna.get_all_study_summaries(store), key=lambda s: s.study_name)}


def trial_counts(study: Any) -> dict[str, int]:
    """Trials by state: ``complete``, ``pruned``, ``running``, ``failed``."""
    counts = {"complete": 0, "pruned": 0, "running": 0, "failed": 0}
    for trial in study.trials:
        name = trial.state.name.lower()
        if name in counts:
            counts[name] += 1
    return counts


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

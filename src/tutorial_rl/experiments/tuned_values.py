"""The tuned hyperparameters: from the studies to one committed file to the ``paper`` profile.

``tutorial-rl tune-export`` (:func:`export_tuned`) writes each study's best complete trial to
``src/tutorial_rl/data/tuned_hyperparameters.json``; the ``paper`` profile reads it with
:func:`load_tuned`; :func:`hyperparameter_sources` says, for the tuning appendix, which values of a
run are tuned, pinned by the profile or the package's defaults. The studies themselves are
:mod:`~tutorial_rl.experiments.tuning`'s.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from tutorial_rl.agents.common import ConfigError
from tutorial_rl.provenance import write_json_atomic

__all__ = ["TUNED_FILE", "best_overrides", "export_tuned", "hyperparameter_sources",
           "load_tuned"]

#: The committed file the ``paper`` profile reads (derived from the studies by ``tune-export``).
TUNED_FILE = Path(__file__).resolve().parents[1] / "data" / "tuned_hyperparameters.json"


def best_overrides(study: Any) -> dict[str, Any]:
    """The best complete trial's parameters as agent overrides.

    :raises ConfigError: the study has no complete trial yet.
    """
    from optuna.trial import TrialState

    from tutorial_rl.experiments.tuning import params_to_overrides

    if not any(t.state == TrialState.COMPLETE for t in study.trials):
        raise ConfigError(f"study {study.study_name!r} has no complete trial yet")
    return params_to_overrides(study.best_params)


def export_tuned(storage: str | None = None, out: str | Path = TUNED_FILE) -> dict[str, Any]:
    """Write the best parameters of every study in ``storage`` to ``out`` (JSON) and return them.

    Studies without a complete trial are left out (their cells keep the defaults).

    :param storage: the studies' Optuna storage URL (default: ``results/tuning/studies.db``).
    """
    import optuna
    from optuna.trial import TrialState

    from tutorial_rl.experiments.tuning import DEFAULT_STORAGE, _storage

    storage = DEFAULT_STORAGE if storage is None else storage

    tuned: dict[str, Any] = {}
    for summary in sorted(optuna.get_all_study_summaries(_storage(storage)),
                          key=lambda s: s.study_name):
        study = optuna.load_study(study_name=summary.study_name, storage=_storage(storage))
        states = [t.state for t in study.trials]
        if TrialState.COMPLETE not in states:
            continue
        algo, env = summary.study_name.split("-", 1)
        tuned[f"{algo}/{env}"] = {
            "agent": best_overrides(study), "best_value": study.best_value,
            "best_trial": study.best_trial.number,
            "complete_trials": states.count(TrialState.COMPLETE),
            "pruned_trials": states.count(TrialState.PRUNED),
            "protocol": study.user_attrs.get("protocol", {}),
        }
    write_json_atomic(Path(out), {"source": storage, "studies": tuned})
    return tuned


def load_tuned(path: str | Path = TUNED_FILE) -> dict[str, dict[str, Any]]:
    """``{"algo/env": overrides}`` from the committed tuned file (empty if there is none)."""
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
        return {cell: dict(entry["agent"]) for cell, entry in data["studies"].items()}
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path} is not a tuned-hyperparameter file: {exc}") from exc




def hyperparameter_sources(profile: Any, algo: str, env: str) -> list[dict[str, Any]]:
    """Every hyperparameter a ``profile`` run of ``algo`` on ``env`` trains with, and where its
    value comes from: ``tuned`` (the study), ``profile`` (the profile's own override) or
    ``default`` (:func:`~tutorial_rl.experiments.training.env_defaults`)."""
    from tutorial_rl.experiments.training import env_defaults

    base = dataclasses.asdict(env_defaults(env, algo)["agent"])
    tuned = profile.tuned.get(f"{algo}/{env}", {})
    pinned = profile.agent.get(algo, {})
    rows = []
    for name, default in base.items():
        source, value = "default", default
        if name in tuned:
            source, value = "tuned", tuned[name]
        if name in pinned:
            source, value = "profile", pinned[name]
        if isinstance(value, list | tuple):
            value = list(value)
        rows.append({"hyperparameter": name, "value": value, "source": source})
    return rows

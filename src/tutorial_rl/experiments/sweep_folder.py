"""A sweep folder: what it holds, and whether a new invocation may resume it.

Chapter 8 (chapters/08_experiments.py), "Running a sweep". A sweep folder holds

``sweep.json``        profile, resolved settings, overrides and filters of the last invocation
``provenance.json``   taken when the sweep started; its wall time is filled in at the end;
                      earlier invocations on the folder are kept in ``previous_invocations``
``runs/<key>/``       one folder per run (:func:`~tutorial_rl.experiments.config.run_key`):
                      ``config.json``, ``progress.csv``, ``model.pt``, ``evaluation.json`` and
                      ``done.json`` (the completion marker) or ``failed.json`` (error, traceback)
``checkpoints/<key>.pt`` the exact checkpoint of an unfinished run (``--checkpoint-every``,
                      :mod:`~tutorial_rl.experiments.checkpoint`); deleted when the run finishes

A folder is resumed only by a sweep that trains the same runs (:func:`check_resumable`): the same
grid, budgets and hyperparameters, up to the settings that cannot change a finished run's result.
:mod:`~tutorial_rl.experiments.runner` runs the sweep itself.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from tutorial_rl.experiments.config import ExperimentProfile, ProfileError

__all__ = ["CHECKPOINTS_DIR", "DONE_FILE", "FAILED_FILE", "LATER_SETTINGS", "LOCK_FILE",
           "RUNS_DIR", "STOP_FILE", "SWEEP_FILE", "TMP_PREFIX", "Status", "cells_with_runs",
           "check_resumable", "checkpoint_path", "comparable_settings", "run_status",
           "sweep_lock"]

SWEEP_FILE = "sweep.json"
RUNS_DIR = "runs"
CHECKPOINTS_DIR = "checkpoints"
DONE_FILE = "done.json"
FAILED_FILE = "failed.json"
TMP_PREFIX = ".tmp-"
LOCK_FILE = ".lock"
#: In ``runs/``: its appearance asks every run of the sweep to save its checkpoint and stop
#: (the sweep's first SIGTERM or SIGHUP creates it; so may a user, ``touch OUT/runs/.stop``).
STOP_FILE = ".stop"
Status = Literal["done", "failed", "partial", "missing"]


def run_status(run_dir: str | Path) -> Status:
    """``done`` (done.json present), ``failed`` (failed.json), ``partial`` (anything else in the
    folder: an interrupted run) or ``missing``."""
    run_dir = Path(run_dir)
    if (run_dir / DONE_FILE).is_file():
        return "done"
    if (run_dir / FAILED_FILE).is_file():
        return "failed"
    return "partial" if run_dir.exists() else "missing"


def checkpoint_path(runs_dir: str | Path, key: str) -> Path:
    """Where a sweep keeps the checkpoint of run ``key`` (outside ``runs/``: a checkpoint is no
    result, and ``runs/<key>`` appears only when the run has finished or failed)."""
    return Path(runs_dir).parent / CHECKPOINTS_DIR / f"{key}.pt"


#: Settings added after sweeps were recorded, with the value older sweep.json files mean.
LATER_SETTINGS: dict[str, Any] = {"tuned": {}, "first_seed": 0, "chosen": {}}


def comparable_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The settings that decide whether two sweeps train the same runs (``sweep.json``'s
    ``settings``, completed with :data:`LATER_SETTINGS`)."""
    # inject_failure changes no successful run's result, so a resume may drop it
    return {k: v for k, v in {**LATER_SETTINGS, **settings}.items()
            if k not in ("name", "inject_failure")}


def check_resumable(out: Path, profile: ExperimentProfile) -> dict[str, Any] | None:
    """The previous sweep.json, if any; a different grid or budget in ``out`` is an error."""
    path = out / SWEEP_FILE
    if not path.is_file():
        if (out / RUNS_DIR).exists():
            raise ProfileError(f"{out} has runs but no {SWEEP_FILE}; choose another --out")
        return None
    previous = json.loads(path.read_text())
    if comparable_settings(previous["settings"]) != comparable_settings(profile.to_dict()):
        changed = sorted(k for k, v in comparable_settings(profile.to_dict()).items()
                         if comparable_settings(previous["settings"]).get(k) != v)
        old_chosen = comparable_settings(previous["settings"])["chosen"]
        if changed == ["chosen"] and all(profile.chosen.get(k) == v for k, v in old_chosen.items()):
            return previous  # a confirmation sweep takes in its grid's cells as they finish
        if changed == ["tuned"]:
            # new tuned values only matter to cells that have runs here: a cell nobody has
            # started takes them, one with runs would mix two sets of hyperparameters
            started = cells_with_runs(out, profile)
            old_tuned = previous["settings"].get("tuned", {})
            stale = sorted(cell for cell in started
                           if old_tuned.get(cell) != profile.tuned.get(cell))
            if not stale:
                return previous
            raise ProfileError(f"{out} holds runs trained with other tuned hyperparameters "
                               f"({', '.join(stale)}); use another --out for the new values, or "
                               f"move those runs away")
        raise ProfileError(f"{out} holds a sweep with other settings ({', '.join(changed)} "
                           f"differ); resume it with the same profile and --set, or use "
                           f"another --out")
    return previous


def cells_with_runs(out: Path, profile: ExperimentProfile) -> set[str]:
    """The ``"algo/env"`` cells with anything in ``out``: finished, failed, in progress or
    checkpointed runs. A folder entry that is no run of ``profile`` counts as every cell."""
    cell_of = {spec.key: f"{spec.algo}/{spec.env}" for spec in profile.runs()}
    names = []
    for folder in (out / RUNS_DIR, out / CHECKPOINTS_DIR):
        if folder.is_dir():
            names += [p.name for p in folder.iterdir()]
    cells = set()
    for name in names:
        key = name.removesuffix(".pt")
        if key.startswith(TMP_PREFIX):
            key = next((k for k in cell_of if key.startswith(f"{TMP_PREFIX}{k}-")), key)
        if key not in cell_of:
            return set(profile.tuned) | set(cell_of.values())
        cells.add(cell_of[key])
    return cells


@contextmanager
def sweep_lock(out: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``out`` while a sweep runs: a second sweep into the same folder
    would delete the first one's attempts. Released by the OS when the process dies."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; do not run two sweeps into one folder
        yield
        return
    with open(out / LOCK_FILE, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            raise ProfileError(f"another sweep (pid {fh.read().strip() or '?'}) is running in "
                               f"{out}; wait for it or stop it first") from None
        fh.truncate(0)
        fh.write(str(os.getpid()))
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)

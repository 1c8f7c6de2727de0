"""Confirmation sweeps: a finished grid's chosen configurations, retrained on fresh seeds.

Chapter 8 (chapters/08_experiments.py, "The four findings, one by one"). Findings 3 and 4 compare
variants at their best α. Choosing α and testing on the same seeds favours the variants with
more α to choose from (the winner's curse); choosing on seeds 0-2 and testing on 3-6 is valid but
leaves four seeds against four, where the smallest p a rank test can reach (1/70 one-sided) does
not survive a correction over six cells. The design with the most power keeps all seven seeds of
the grid for the choice and tests on seven fresh ones:

1. ``tutorial-rl sweep --profile paper --out results/paper`` (seeds 0-6, every α);
2. ``tutorial-rl sweep --profile paper --out results/paper-confirm --confirm results/paper``
   trains every safeguarded variant once more, mitigated ones only at the α with the highest IQM
   on seeds 0-6 (:func:`~tutorial_rl.experiments.selection.chosen_configs`, ties to the smallest
   α), on seeds 7-13 (:func:`confirmation_settings`);
3. ``tutorial-rl report results/paper --confirmation results/paper-confirm`` chooses on seeds
   0-6 and tests on seeds 7-13, seven against seven (smallest one-sided p 1/3432).

The choice uses only the finished grid, so it is fixed before any fresh seed is trained; the
confirmation sweep records it in its ``sweep.json`` (``chosen``, ``first_seed``), and a restart
recomputes the same values from the same grid.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

from tutorial_rl.experiments.config import VARIANTS, ExperimentProfile, ProfileError

__all__ = ["CONFIRMATION_SETTINGS", "Tested", "confirmation_settings", "load_confirmation",
           "with_confirmation"]

#: The settings a confirmation sweep sets itself; every other one must equal the source grid's
#: (the tasks and algorithms may be a subset of its).
CONFIRMATION_SETTINGS = ("first_seed", "chosen")
_FREE = (*CONFIRMATION_SETTINGS, "name", "inject_failure", "envs", "algos", "seeds")


def _source_settings(source: Path) -> dict[str, Any]:
    from tutorial_rl.experiments.sweep_folder import SWEEP_FILE

    path = source / SWEEP_FILE
    if not path.is_file():
        raise ProfileError(f"--confirm {source}: not a sweep folder (no {SWEEP_FILE})")
    return json.loads(path.read_text())["settings"]


def confirmation_settings(source: str | Path, profile: ExperimentProfile
                          ) -> dict[str, Any]:
    """``--set`` values that make ``profile`` the confirmation sweep of the sweep in ``source``:
    ``first_seed`` after the source's last seed and, per mitigated variant of every task ×
    algorithm cell of ``profile`` that ``source`` has finished, the α ``chosen`` on the source's
    seeds. Cells still running in ``source`` are left out (named on stderr): rerunning the same
    command once they have finished adds them to the confirmation sweep.

    :raises ProfileError: ``source`` is no sweep folder, was run with other settings (budgets,
        hyperparameters, variants, α grid, ...), lacks a task or algorithm of ``profile``, is
        itself a confirmation sweep, or has no finished cell of ``profile`` yet.
    """
    from tutorial_rl.experiments.selection import chosen_configs
    from tutorial_rl.experiments.stats import load_runs
    from tutorial_rl.experiments.sweep_folder import RUNS_DIR, comparable_settings, run_status

    source = Path(source)
    settings = comparable_settings(_source_settings(source))
    if settings["chosen"]:
        raise ProfileError(f"--confirm {source}: that sweep is itself a confirmation sweep; "
                           f"confirm the grid it was chosen from")
    absent = sorted({*profile.envs} - {*settings["envs"]}) + sorted(
        {*profile.algos} - {*settings["algos"]})
    if absent:
        raise ProfileError(f"--confirm {source}: the source grid has no {', '.join(absent)}")
    mine = comparable_settings(profile.to_dict())
    differ = sorted(k for k in mine if k not in _FREE and settings.get(k) != mine[k])
    if differ:
        raise ProfileError(f"--confirm {source}: the confirmation must train as the source grid "
                           f"did, but {', '.join(differ)} differ; use the source's profile and "
                           f"--set values")
    grid = _source_grid(profile, settings)
    unfinished = {f"{s.algo}/{s.env}" for s in grid.runs()
                  if run_status(source / RUNS_DIR / s.key) != "done"}
    if unfinished:
        print(f"tutorial-rl: --confirm {source}: {', '.join(sorted(unfinished))} not finished "
              f"there; confirming the other cells (rerun this command once they have finished)",
              file=sys.stderr)
    runs = load_runs(source)
    cell = runs["algo"] + "/" + runs["env"]
    runs = runs[runs["env"].isin(profile.envs) & runs["algo"].isin(profile.algos)
                & runs["variant"].isin(profile.variants) & ~cell.isin(unfinished)]
    chosen = {f"{row.algo}/{row.env}/{row.variant}": float(row.alpha)
              for row in chosen_configs(runs).itertuples()
              if VARIANTS[row.variant][1] != "none"}
    if not chosen:
        raise ProfileError(f"--confirm {source}: no finished cell with a mitigated variant to "
                           f"confirm")
    return {"first_seed": grid.first_seed + grid.seeds, "chosen": chosen}


def _source_grid(profile: ExperimentProfile, settings: dict[str, Any]) -> ExperimentProfile:
    """``profile`` restricted to its tasks and algorithms, with the source's seeds: the part of
    the source grid that the confirmation chooses from."""
    import dataclasses

    return dataclasses.replace(profile, seeds=int(settings["seeds"]),
                               first_seed=int(settings["first_seed"]), chosen={})


def load_confirmation(sweep_dir: str | Path, confirmation: str | Path
                      ) -> tuple[pd.DataFrame, dict[tuple[str, str], list[int]], list[str]]:
    """What a report of ``sweep_dir`` tests on from its confirmation sweep: the runs of the
    cells (task × algorithm) the confirmation has finished, the seeds each such cell's α was
    chosen on (those of ``sweep_dir``), as the per-cell ``selection`` of
    :func:`~tutorial_rl.experiments.findings.check_findings`, and its cells not finished yet
    (those keep the split design until they finish).

    :raises ProfileError: ``confirmation`` is no confirmation sweep, or not one of
        ``sweep_dir`` (its seeds overlap the grid's, or its settings differ).
    """
    from tutorial_rl.experiments.stats import load_runs
    from tutorial_rl.experiments.sweep_folder import RUNS_DIR, comparable_settings, run_status

    confirmation = Path(confirmation)
    grid, mine = (comparable_settings(_source_settings(Path(d))) for d in (sweep_dir, confirmation))
    if not mine["chosen"]:
        raise ProfileError(f"{confirmation} is no confirmation sweep (tutorial-rl sweep --confirm)")
    differ = sorted(k for k in mine if k not in _FREE and grid.get(k) != mine[k])
    chosen_on = list(range(grid["first_seed"], grid["first_seed"] + grid["seeds"]))
    if differ or mine["first_seed"] < chosen_on[-1] + 1:
        raise ProfileError(f"{confirmation} is no confirmation sweep of {sweep_dir} ("
                           + (f"{', '.join(differ)} differ" if differ else
                              f"its seeds start at {mine['first_seed']}, inside the grid's")
                           + ")")
    profile = ExperimentProfile.from_dict({**mine, "name": "confirmation"})
    cells: dict[tuple[str, str], bool] = {}
    for spec in profile.runs():
        done = run_status(confirmation / RUNS_DIR / spec.key) == "done"
        cells[(spec.env, spec.algo)] = cells.get((spec.env, spec.algo), True) and done
    finished = {cell for cell, done in cells.items() if done}
    runs = load_runs(confirmation)
    if not runs.empty:
        runs = runs[[(e, a) in finished for e, a in zip(runs["env"], runs["algo"], strict=True)]]
    started = sorted(f"{a}/{e}" for e, a in set(cells) - finished)
    return runs, {cell: chosen_on for cell in sorted(finished)}, started


class Tested(NamedTuple):
    """What the findings test on (:func:`with_confirmation`)."""

    runs: pd.DataFrame
    """the grid's runs, plus the confirmation's in the cells it has finished"""
    selection: dict[tuple[str, str], list[int]]
    """per finished confirmation cell, the seeds α is chosen on (other cells: the split)"""
    waiting: list[str]
    """confirmation cells not finished yet (``"algo/env"``)"""


def with_confirmation(sweep_dir: str | Path, runs: pd.DataFrame, references: Mapping | None,
                      confirmation: str | Path | None) -> Tested:
    """The runs and per-cell selection of the findings of ``sweep_dir`` (its ``runs`` table),
    with its confirmation sweep where there is one (None, or a folder without ``sweep.json``:
    the grid alone); confirmation cells count only where ``runs`` has the cell too. Used by
    ``tutorial-rl report --confirmation`` and chapter 8 alike."""
    from tutorial_rl.experiments.stats import add_normalised
    from tutorial_rl.experiments.sweep_folder import SWEEP_FILE

    if confirmation is None or not (Path(confirmation) / SWEEP_FILE).is_file():
        return Tested(runs, {}, [])
    fresh, finished, waiting = load_confirmation(sweep_dir, confirmation)
    present = set(zip(runs["env"], runs["algo"], strict=True))
    finished = {cell: seeds for cell, seeds in finished.items() if cell in present}
    fresh = fresh[[cell in finished for cell in zip(fresh["env"], fresh["algo"], strict=True)]]
    if fresh.empty:
        return Tested(runs, finished, waiting)
    if references is not None:
        fresh = add_normalised(fresh, references)
    return Tested(pd.concat([runs, fresh], ignore_index=True), finished, waiting)


def sweep_findings(sweep_dir: str | Path, runs: pd.DataFrame, references: Mapping | None,
                   confirmation: str | Path | None = None, seed: int = 0
                   ) -> tuple[Tested, pd.DataFrame]:
    """The paper's four findings on a sweep folder, as ``tutorial-rl report`` states them.

    The runs and selection of :func:`with_confirmation`, and each finding tested only where the
    runs of the sweep's grid (rebuilt from its ``sweep.json``) that it compares have finished
    (``check_findings(..., grid=...)``). Used by the report and chapters 8 and 9 alike.
    """
    from tutorial_rl.experiments.findings import check_findings, grid_table
    from tutorial_rl.experiments.sweep_folder import SWEEP_FILE

    tested = with_confirmation(sweep_dir, runs, references, confirmation)
    settings = json.loads((Path(sweep_dir) / SWEEP_FILE).read_text())["settings"]
    grid = grid_table(ExperimentProfile.from_dict(settings).runs())
    return tested, check_findings(tested.runs, references, seed=seed,
                                  selection=tested.selection, grid=grid)

"""Running a grid of experiments: ``tutorial-rl sweep`` (Chapter 8, chapters/08_experiments.py).

The sweep folder's layout and the rules for resuming it are in
:mod:`~tutorial_rl.experiments.sweep_folder`.

Resume protocol: a run is finished iff its folder holds ``done.json``, written *last* and
atomically (temporary name + rename), after training and evaluation. A rerun skips finished runs
and restarts every other one from its last checkpoint, or from scratch without one (its folder
is deleted first), so a half-written result is never read and never kept; a run continued from a
checkpoint ends with the same files as one that never stopped. A run that raises is recorded in
``failed.json`` and the sweep goes on; the summary and the exit code say how many failed.

Launchers (:mod:`~tutorial_rl.experiments.launchers`): ``local`` runs the runs in a joblib
(loky) process pool; ``submitit`` submits them through :class:`submitit.AutoExecutor`, which uses
SLURM where there is one and local processes elsewhere. Every worker uses one torch thread: small
networks run fastest on one, and ``jobs`` workers then share the cores without
oversubscription.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import shutil
import sys
import time
import traceback
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tutorial_rl.experiments.config import (
    ExperimentProfile,
    ProfileError,
    RunSpec,
    get_profile,
    group_identity,
    select_runs,
)
from tutorial_rl.experiments.costs import estimate_run_seconds, measured_ms_per_step
from tutorial_rl.experiments.launchers import (
    LAUNCHERS,
    SlurmOptions,
    launch_local,
    launch_submitit,
    progress_bar,
)
from tutorial_rl.experiments.sweep_folder import (
    CHECKPOINTS_DIR,
    DONE_FILE,
    FAILED_FILE,
    RUNS_DIR,
    STOP_FILE,
    SWEEP_FILE,
    TMP_PREFIX,
    check_resumable,
    checkpoint_path,
    run_status,
    sweep_lock,
)
from tutorial_rl.provenance import invocations, provenance, write_json_atomic, write_provenance

__all__ = ["CHECKPOINTS_DIR", "DONE_FILE", "FAILED_FILE", "LAUNCHERS", "RUNS_DIR", "SWEEP_FILE",
           "SlurmOptions", "SweepSummary", "checkpoint_path", "complete_run", "execute_run",
           "execute_runs", "execute_unit", "group_units", "record_failure", "run_status",
           "sweep"]


@dataclass(frozen=True)
class SweepSummary:
    """What a sweep did; ``exit_code`` is 0 iff every selected run is finished."""

    out: Path
    """the sweep folder"""
    selected: int
    """runs of the grid after ``--only``"""
    skipped: int
    """runs already finished before this invocation"""
    completed: int
    """runs finished by this invocation"""
    failed: tuple[str, ...]
    """keys of runs that are not finished (failed.json, or lost with their worker)"""
    wall_time_s: float
    """seconds of this invocation"""

    @property
    def exit_code(self) -> int:
        """0 when nothing failed, 1 otherwise."""
        return 1 if self.failed else 0

    def describe(self) -> str:
        """One line for the terminal."""
        failed = (f", {len(self.failed)} FAILED (see {self.out / RUNS_DIR}/<key>/failed.json; "
                  f"rerun to retry them)") if self.failed else ", 0 failed"
        return (f"sweep {self.out}: {self.selected} runs selected, {self.skipped} already done, "
                f"{self.completed} completed{failed}; {self.wall_time_s:.1f} s")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _run_config(spec: RunSpec, run_dir: Path, checkpoint_every: int | None = None,
                device: str = "cpu") -> Any:
    from tutorial_rl.experiments.training import RunConfig

    return RunConfig(env=spec.env, algo=spec.algo, mode=spec.mode, mitigation=spec.mitigation,
                     alpha=spec.alpha, steps=spec.steps, seed=spec.seed, out=run_dir,
                     projection_method=spec.projection_method, agent=dict(spec.agent),
                     progress_bar=False, num_threads=1, checkpoint_every=checkpoint_every,
                     checkpoint=checkpoint_path(run_dir.parent, spec.key), device=device)


def _finalize(tmp: Path, final: Path, done: bool) -> None:
    """Move a finished or failed attempt into place with one atomic rename.

    A finished run is never replaced (so never duplicated); a failed or partial folder gives way
    to a finished attempt. This also settles races with a worker orphaned by a killed sweep.
    """
    if final.exists():
        if not done or run_status(final) == "done":
            shutil.rmtree(tmp, ignore_errors=True)
            return
        shutil.rmtree(final)
    os.rename(tmp, final)


def execute_run(spec: RunSpec, runs_dir: str | Path,
                checkpoint_every: int | None = None, device: str = "cpu") -> dict[str, Any]:
    """Train and evaluate one run (the worker function of both launchers).

    The run is written into a private temporary folder ``runs/.tmp-<key>-<pid>-<id>`` and renamed
    to ``runs/<key>`` when it is finished (``done.json``, written last) or has failed
    (``failed.json``: error and traceback); an interrupted attempt leaves only a temporary folder,
    which the next sweep deletes, and its checkpoint (``checkpoint_every`` environment steps
    apart; ``None``: about every 10 minutes), from which the next sweep continues. ``device``:
    where the agent's tensors live (``--device``; not part of the run key). Never raises for a
    failing run.

    :returns: ``{"key", "status"}`` with ``status`` ``done``, ``failed`` or ``skipped``.
    """
    import torch

    from tutorial_rl.experiments.training import train

    final = Path(runs_dir) / spec.key
    if run_status(final) == "done":  # e.g. a requeued SLURM job: never redo a finished run
        return {"key": spec.key, "status": "skipped"}
    tmp = Path(runs_dir) / f"{TMP_PREFIX}{spec.key}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # restored below: execute_run also runs in the caller's process
    started, start = _now(), time.perf_counter()
    try:
        if spec.fail:
            raise RuntimeError(f"injected failure: {spec.key} is listed in inject_failure")
        result = train(_run_config(spec, tmp, checkpoint_every, device))
        return complete_run(spec, tmp, final, result, started, start)
    except Exception as exc:  # noqa: BLE001 -- recorded, and the sweep goes on
        return record_failure(spec, tmp, final, exc, started, start)
    finally:
        torch.set_num_threads(threads)


def complete_run(spec: RunSpec, tmp: Path, final: Path, result: Any, started: str,
                 start: float, group_size: int = 1) -> dict[str, Any]:
    """Evaluate a trained run in ``tmp``, write ``done.json`` last and move it to ``final``.

    ``wall_time_s`` is the run's own cost: for a run trained alone the time since ``start``; for
    a run of a group of ``group_size`` its share of the group's training (``result.wall_time``)
    plus its own evaluation, with the group's elapsed time as ``group_wall_time_s``.
    """
    from tutorial_rl.experiments.training import evaluate

    eval_start = time.perf_counter()
    evaluation = evaluate(tmp, episodes=spec.eval_episodes, seed=spec.eval_seed, write=False)
    write_json_atomic(tmp / "evaluation.json", {**evaluation, "run_dir": str(final)})
    rows = [r for r in result.progress if r["complete"]]
    record = {
        "key": spec.key, "status": "done", "spec": dataclasses.asdict(spec),
        "evaluation": {k: evaluation[k] for k in (
            "episodes", "seed", "returns", "mean_return", "std_return", "interventions",
            "interventions_per_episode", "constraint_violations")},
        "training": {
            "steps": result.config["steps"], "episodes": len(rows),
            "interventions": int(sum(r["interventions"] for r in result.progress)),
            "constraint_violations": int(sum(r["constraint_violations"]
                                             for r in result.progress)),
            "wall_time_s": result.wall_time},
        "evaluation_wall_time_s": time.perf_counter() - eval_start,
        "wall_time_s": time.perf_counter() - start,
        "started_utc": started, "finished_utc": _now(),
        "host": platform.node(), "pid": os.getpid(),
    }
    if group_size > 1:
        record["group_size"] = group_size
        record["group_wall_time_s"] = record["wall_time_s"]
        record["wall_time_s"] = result.wall_time + record["evaluation_wall_time_s"]
    write_json_atomic(tmp / DONE_FILE, record)  # last: marks the run finished
    _finalize(tmp, final, done=True)
    return {"key": spec.key, "status": "done"}


def record_failure(spec: RunSpec, tmp: Path, final: Path, exc: Exception, started: str,
                   start: float) -> dict[str, Any]:
    """Write ``failed.json`` (error, traceback) for a run that raised; call in ``except``."""
    error = f"{type(exc).__name__}: {exc}"
    if tmp.is_dir():  # else a newer sweep removed this attempt: it is no longer ours
        write_json_atomic(tmp / FAILED_FILE, {
            "key": spec.key, "status": "failed", "spec": dataclasses.asdict(spec),
            "error": error, "traceback": traceback.format_exc(),
            "wall_time_s": time.perf_counter() - start, "started_utc": started,
            "failed_utc": _now(), "host": platform.node(), "pid": os.getpid()})
        _finalize(tmp, final, done=False)
    # a failure is retried from scratch (it may have come from the checkpoint itself)
    checkpoint_path(final.parent, spec.key).unlink(missing_ok=True)
    return {"key": spec.key, "status": "failed", "error": error}


def execute_unit(specs: Sequence[RunSpec], runs_dir: str | Path,
                 checkpoint_every: int | None = None,
                 device: str = "cpu") -> list[dict[str, Any]]:
    """One run (:func:`execute_run`) or a group trained together
    (:func:`~tutorial_rl.experiments.grouped.execute_group`); one outcome per run.

    A stop asked for (:data:`STOP_FILE`, or SIGTERM/SIGHUP in this process: see
    :func:`~.checkpoint.stop_when_asked`) makes the unit save its checkpoint at its next step and
    return ``stopped`` for its runs, as does a unit that has not started yet."""
    from tutorial_rl.experiments.checkpoint import StopRequested, stop_requested, stop_when_asked

    stopped = [{"key": s.key, "status": "stopped"} for s in specs]
    with stop_when_asked(Path(runs_dir) / STOP_FILE):
        if stop_requested():
            return stopped
        try:
            if len(specs) == 1:
                return [execute_run(specs[0], runs_dir, checkpoint_every, device)]
            from tutorial_rl.experiments.grouped import execute_group

            return execute_group(list(specs), runs_dir, checkpoint_every, device)
        except StopRequested:
            return stopped


def execute_runs(units: Sequence[Sequence[RunSpec]], runs_dir: str | Path,
                 checkpoint_every: int | None = None,
                 device: str = "cpu") -> list[dict[str, Any]]:
    """:func:`execute_unit` for several units in turn (one submitit job of the local fallback)."""
    return [o for unit in units for o in execute_unit(unit, runs_dir, checkpoint_every, device)]


def group_units(specs: Sequence[RunSpec], group_size: int) -> list[list[RunSpec]]:
    """Split runs into units of work (``tutorial-rl sweep --group-size``), up to ``group_size``
    runs per unit.

    Runs that share task, algorithm, variant, budget and hyperparameters go together, whatever
    their seed and α: α is a per-run quantity of the grouped code (a ``[K]`` tensor in the
    losses, each run's own weight in the SE penalty and the penalty critic's reward), so the
    paper grid's 4 α × 7 seeds of a mitigated variant form one group of 28 and its vanilla
    variants (no α) groups of 7. Larger groups pay less per-call overhead per run
    (``benchmarks/grid_throughput.py``), which is why the default
    (:data:`~tutorial_rl.experiments.config.DEFAULT_GROUP_SIZE`) fills a whole configuration:
    fewest core-hours, best on a few cores; a unit is one worker's job, so with many workers
    smaller groups can finish sooner (``--dry-run`` estimates both).
    Runs marked to fail and A2C's projected-mean variant (which cannot be grouped) are alone.
    """
    units: list[list[RunSpec]] = []
    open_units: dict[tuple[Any, ...], list[RunSpec]] = {}
    for spec in specs:
        alone = spec.fail or spec.agent.get("sp_log_likelihood") == "projected-mean"
        if group_size <= 1 or alone:
            units.append([spec])
            continue
        identity = group_identity(spec)
        unit = open_units.get(identity)
        if unit is None or len(unit) >= group_size:
            unit = open_units[identity] = []
            units.append(unit)
        unit.append(spec)
    return units


def sweep(profile: str | ExperimentProfile, out: str | Path, *, jobs: int = 1,
          launcher: str = "local", overrides: Mapping[str, Any] | None = None,
          only: Iterable[str] = (), slurm: SlurmOptions | None = None,
          progress: bool | None = None, command: str | list[str] | None = None,
          checkpoint_every: int | None = None, group_size: int = 1,
          device: str = "cpu", cost_sources: Iterable[str | Path] = ()) -> SweepSummary:
    """Run every unfinished run of a profile's grid into ``out`` (resumable).

    :param profile: a profile name (:data:`~tutorial_rl.experiments.config.PROFILES`) or profile.
    :param out: the sweep folder (created).
    :param jobs: parallel workers (local) or array parallelism (SLURM).
    :param launcher: ``local`` (joblib/loky) or ``submitit``.
    :param overrides: ``--set`` settings, applied to a named profile and recorded in sweep.json.
    :param only: ``--only KEY=VALUE`` filters (:func:`~tutorial_rl.experiments.config.select_runs`).
    :param slurm: resources of the submitit launcher.
    :param progress: tqdm bar over runs; ``None``: only when stderr is a terminal.
    :param command: recorded in provenance.json (default: this process's command line).
    :param checkpoint_every: environment steps between a run's exact checkpoints (0: none;
        ``None``: about every 10 minutes of estimated work); a rerun continues from them.
    :param group_size: train up to this many runs that differ only in their seed in one
        process (:mod:`~tutorial_rl.experiments.grouped`; one checkpoint per group); 1: every
        run alone.
    :param device: where every run's agent tensors live (``cpu``, ``cuda``, ``cuda:N``): an
        execution setting like ``jobs``, recorded in sweep.json, provenance.json and each run's
        config.json but not in the run keys, so the same folder can be filled on either.
    :param cost_sources: other sweep folders whose finished runs say what a configuration costs
        (a confirmation sweep: its grid); with ``out``'s own finished runs they order the units,
        longest first (:func:`~tutorial_rl.experiments.costs.measured_ms_per_step`), where the
        tables would misjudge them.
    :raises ProfileError: bad profile, override, filter, jobs, launcher, device or ``out``,
        before any run starts.
    """
    start = time.perf_counter()
    overrides = dict(overrides or {})
    if isinstance(profile, str):
        profile = get_profile(profile, overrides)
    elif overrides:
        profile = profile.with_overrides(overrides)
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ProfileError(f"jobs must be an integer >= 1; got {jobs!r}")
    if checkpoint_every is not None and (isinstance(checkpoint_every, bool) or not isinstance(
            checkpoint_every, int) or checkpoint_every < 0):
        raise ProfileError(f"checkpoint_every must be an integer >= 0; got {checkpoint_every!r}")
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise ProfileError(f"group_size must be an integer >= 1; got {group_size!r}")
    if launcher not in LAUNCHERS:
        raise ProfileError(f"unknown launcher {launcher!r}; valid launchers: "
                           f"{', '.join(LAUNCHERS)}")
    from tutorial_rl.agents.common import ConfigError, resolve_device

    try:
        device = str(resolve_device(device, "--device"))
    except ConfigError as exc:
        raise ProfileError(str(exc)) from None
    only = list(only)
    specs = select_runs(profile, only)
    if not specs:
        raise ProfileError(f"--only {' '.join(only)} selects no run of profile {profile.name!r}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ProfileError(f"--out {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    with sweep_lock(out):
        check_resumable(out, profile)
        return _run_sweep(profile, specs, out, jobs, launcher, overrides, only, slurm, progress,
                          command, start, checkpoint_every, group_size, device,
                          [out, *cost_sources])


def _accelerator(device: str) -> dict[str, Any]:
    """The GPU's name and CUDA version for provenance.json (nothing for ``cpu``)."""
    if not device.startswith("cuda"):
        return {}
    import torch

    return {"gpu": torch.cuda.get_device_name(torch.device(device)),
            "cuda": torch.version.cuda}


def _run_sweep(profile: ExperimentProfile, specs: list[RunSpec], out: Path, jobs: int,
               launcher: str, overrides: dict[str, Any], only: list[str],
               slurm: SlurmOptions | None, progress: bool | None,
               command: str | list[str] | None, start: float,
               checkpoint_every: int | None = None, group_size: int = 1,
               device: str = "cpu", cost_sources: Sequence[Path | str] = ()) -> SweepSummary:
    """The body of :func:`sweep`, run under the folder's lock."""
    # "profile" names the sweep's experiment profile (ci/quick/paper); the process-wide
    # TUTORIAL_RL_PROFILE switch that shortens chapters is recorded as "runtime_profile".
    record = provenance(command if command is not None else ["tutorial-rl", *sys.argv[1:]], 0.0,
                        launcher=launcher, jobs=jobs, device=device, **_accelerator(device))
    record["runtime_profile"], record["profile"] = record["profile"], profile.name
    # a sweep resumed across sessions, or filled in slice by slice, keeps every invocation's record
    record["previous_invocations"] = invocations(out)
    write_provenance(out, record, 0.0)  # an interrupted sweep still says what produced it
    sweep_record = {"profile": profile.name, "overrides": overrides, "only": only,
                    "settings": profile.to_dict(), "selected": [s.key for s in specs],
                    "launcher": launcher, "jobs": jobs, "device": device,
                    "started_utc": record["date_utc"]}
    write_json_atomic(out / SWEEP_FILE, sweep_record)  # before runs/: see _check_resumable
    runs_dir = out / RUNS_DIR
    runs_dir.mkdir(parents=True, exist_ok=True)

    # Unfinished runs restart from scratch: attempts interrupted in their temporary folder and
    # recorded failures are deleted, so no partial result survives.
    for tmp in runs_dir.glob(f"{TMP_PREFIX}*"):
        shutil.rmtree(tmp, ignore_errors=True)
    for tmp in (out / CHECKPOINTS_DIR).glob(".*.tmp"):  # a checkpoint killed while written
        tmp.unlink(missing_ok=True)
    stop = runs_dir / STOP_FILE
    stop.unlink(missing_ok=True)  # the last sweep's stop is not this one's
    todo = [s for s in specs if run_status(runs_dir / s.key) != "done"]
    for spec in todo:
        if (runs_dir / spec.key).exists():
            shutil.rmtree(runs_dir / spec.key)
    measured = measured_ms_per_step(cost_sources)  # what finished runs really cost, where known
    todo.sort(key=lambda s: estimate_run_seconds(s, group_size, measured), reverse=True)
    units = group_units(todo, group_size)
    units.sort(key=lambda u: sum(estimate_run_seconds(s, len(u), measured) for s in u),
               reverse=True)  # longest first
    try:
        with progress_bar(len(todo), progress) as bar:
            if todo and launcher == "local":
                launch_local(units, runs_dir, jobs, bar, checkpoint_every, device)
            elif todo:
                launch_submitit(units, runs_dir, jobs, slurm or SlurmOptions(), bar,
                                 checkpoint_every, device)
        if stop.exists():  # SIGTERM/SIGHUP: every unit saved its checkpoint and returned
            stop.unlink(missing_ok=True)
            raise KeyboardInterrupt("stopped: the runs in progress saved their checkpoints; "
                                    "rerun the same command to continue")
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM/SIGHUP: say how long it ran, then stop
        write_provenance(out, {**record, "interrupted": True}, time.perf_counter() - start)
        raise

    status = {s.key: run_status(runs_dir / s.key) for s in todo}
    wall = time.perf_counter() - start
    summary = SweepSummary(out, len(specs), len(specs) - len(todo),
                           sum(v == "done" for v in status.values()),
                           tuple(k for k, v in status.items() if v != "done"), wall)
    write_json_atomic(out / SWEEP_FILE, {**sweep_record, "summary": {
        "selected": summary.selected, "skipped": summary.skipped,
        "completed": summary.completed, "failed": list(summary.failed),
        "wall_time_s": round(wall, 2), "finished_utc": _now()}})
    write_provenance(out, record, wall)
    return summary

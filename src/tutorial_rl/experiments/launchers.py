"""How a sweep's runs reach the cores (Chapter 8, chapters/08_experiments.py, "Running a sweep").

``local`` runs the sweep's units (single runs or groups, :func:`~.runner.group_units`) in a joblib
(loky) process pool of ``jobs`` workers; ``submitit`` submits them through
:class:`submitit.AutoExecutor`, which uses SLURM where there is one and local processes elsewhere.
Both call the runner's worker functions (:func:`~.runner.execute_unit`,
:func:`~.runner.execute_runs`), which write every result to disk, so a launcher only schedules and
reports progress.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tutorial_rl.experiments.config import RunSpec

__all__ = ["LAUNCHERS", "SlurmOptions", "launch_local", "launch_submitit", "progress_bar"]

LAUNCHERS: tuple[str, ...] = ("local", "submitit")


@dataclass(frozen=True)
class SlurmOptions:
    """Resources of the ``submitit`` launcher (the local fallback uses only ``cluster``)."""

    partition: str | None = None
    """SLURM partition (``None``: the cluster's default)"""
    time_min: int = 120
    """time limit of one job in minutes"""
    cpus_per_task: int = 1
    """CPUs per job (one run per job, one torch thread per run)"""
    cluster: str | None = None
    """submitit executor: ``None`` picks SLURM when available, else ``local``; ``debug`` runs
    in-process"""


def progress_bar(total: int, show: bool | None) -> Any:
    from tqdm import tqdm

    show = sys.stderr.isatty() if show is None else show
    return tqdm(total=total, unit="run", desc="sweep", disable=not show, dynamic_ncols=True)


def launch_local(units: list[list[RunSpec]], runs_dir: Path, jobs: int, bar: Any,
                  checkpoint_every: int | None, device: str = "cpu") -> None:
    from joblib import Parallel, delayed

    from tutorial_rl.experiments.runner import execute_unit

    # loky worker processes; n_jobs=1 runs in this process (no pool to start)
    parallel = Parallel(n_jobs=jobs, backend="loky", return_as="generator_unordered")
    with _workers_stop_with_the_sweep(runs_dir):
        try:
            for outcomes in parallel(delayed(execute_unit)(unit, str(runs_dir),
                                                           checkpoint_every, device)
                                     for unit in units):
                bar.update(sum(o["status"] != "stopped" for o in outcomes))
                for outcome in outcomes:
                    if outcome["status"] == "failed":
                        bar.write(f"run {outcome['key']} failed: {outcome['error']}")
        except Exception as exc:  # noqa: BLE001 -- e.g. a worker killed by the OS; rerun resumes
            print(f"tutorial-rl sweep: the worker pool stopped ({type(exc).__name__}: {exc}); "
                  f"unfinished runs are reported as failed", file=sys.stderr)


@contextmanager
def _workers_stop_with_the_sweep(runs_dir: Path) -> Iterator[None]:
    """The sweep's first SIGTERM or SIGHUP (``kill``, a closed terminal, the end of a session)
    asks every run to save its checkpoint and stop at its next step (the stop file of
    :func:`~tutorial_rl.experiments.checkpoint.stop_when_asked`, which each worker polls); the
    workers then return and the sweep ends, having lost no work. A second one interrupts at once
    (``KeyboardInterrupt``, on which joblib terminates its workers: without that, they would go
    on training as orphans, and a restarted sweep would train the same groups a second time).
    Only in the main thread, where Python can install handlers."""
    import signal
    import threading

    from tutorial_rl.experiments.sweep_folder import STOP_FILE

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stop_file = runs_dir / STOP_FILE

    def interrupt(signum: int, _frame: Any) -> None:
        if stop_file.exists():
            raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}, again")
        stop_file.touch()  # the workers poll it (no flag here: this process trains nothing)
        print(f"tutorial-rl sweep: {signal.Signals(signum).name}: every run saves its checkpoint "
              f"at its next step and stops (send it again to stop at once)", file=sys.stderr,
              flush=True)

    signals = [getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)]
    previous = {sig: signal.signal(sig, interrupt) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def launch_submitit(units: list[list[RunSpec]], runs_dir: Path, jobs: int,
                     slurm: SlurmOptions, bar: Any, checkpoint_every: int | None,
                     device: str = "cpu") -> None:
    import submitit

    from tutorial_rl.experiments.runner import execute_runs
    from tutorial_rl.experiments.sweep_folder import run_status

    executor = submitit.AutoExecutor(folder=runs_dir.parent / "submitit", cluster=slurm.cluster)
    executor.update_parameters(name="tutorial-rl-sweep", timeout_min=slurm.time_min,
                               cpus_per_task=slurm.cpus_per_task, slurm_partition=slurm.partition,
                               slurm_array_parallelism=jobs)
    specs = [spec for unit in units for spec in unit]
    if executor.cluster == "slurm":  # one array task per unit; SLURM limits the parallelism
        chunks = [[unit] for unit in units]
    else:  # the local executor starts every job at once: make exactly `jobs` of them
        chunks = [units[i::jobs] for i in range(min(jobs, len(units)))]
    submitted = executor.map_array(execute_runs, chunks, [str(runs_dir)] * len(chunks),
                                   [checkpoint_every] * len(chunks), [device] * len(chunks))
    pending = list(submitted)
    finished: set[str] = set()
    while pending:
        for job in [j for j in pending if j.done()]:
            pending.remove(job)
            try:
                job.result()
            except Exception as exc:  # noqa: BLE001 -- a job killed by SLURM (time limit, ...)
                bar.write(f"submitit job {job.job_id} ended abnormally: {exc}")
        # progress from the markers on disk: jobs hold several runs in the local fallback
        now_finished = {s.key for s in specs if run_status(runs_dir / s.key) in ("done", "failed")}
        bar.update(len(now_finished - finished))
        finished = now_finished
        if pending:
            time.sleep(0.5)

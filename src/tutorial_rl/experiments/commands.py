"""``tutorial-rl sweep`` and ``tutorial-rl report`` (Chapter 8, chapters/08_experiments.py).

::

    tutorial-rl sweep --profile quick --jobs 2 --out runs/quick
    tutorial-rl sweep --profile paper --jobs 64 --out runs/paper --launcher submitit \\
        --slurm-partition cpu --slurm-time 180 --only algo=td3
    tutorial-rl report runs/quick --out runs/quick/report

Each ``add_*_parser(subparsers)`` adds one subcommand to an argparse ``subparsers`` object and sets
``run`` to its handler, which returns the exit code: 0 success, 1 some runs failed, 2 bad input
(an unknown profile, setting, filter value or folder; one line on stderr, nothing run).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from tutorial_rl.agents.common import ConfigError, resolve_device
from tutorial_rl.experiments.config import (
    DEFAULT_GROUP_SIZE,
    FILTER_KEYS,
    PROFILES,
    ExperimentProfile,
    ProfileError,
    get_profile,
    parse_assignments,
    select_runs,
)
from tutorial_rl.experiments.costs import cost_table_mismatches, estimate_wall_time
from tutorial_rl.experiments.report import (  # re-exported: the report's old home
    OPTIONAL_TABLES,
    REPORT_TABLES,
    read_report,
    resolve_references,
    write_report,
)
from tutorial_rl.experiments.runner import LAUNCHERS, SlurmOptions, sweep
from tutorial_rl.experiments.sweep_folder import RUNS_DIR

__all__ = ["OPTIONAL_TABLES", "REPORT_TABLES", "add_report_parser", "add_sweep_parser",
           "read_report", "run_report", "run_sweep", "write_report"]


#: ``--device`` of ``train`` and ``sweep``.
DEVICE_HELP = ("where the agents' tensors live: cpu (default), cuda or cuda:N; networks, "
               "optimiser states, minibatches, rollouts and the updates' projections run there, "
               "the numpy environments and the safeguard stay on the CPU (CUDA: checked on "
               "one GPU, see results/cuda-check; the tests run on the CPU)")


def _error(message: str) -> int:
    print(f"tutorial-rl: error: {message}", file=sys.stderr)
    return 2


def add_sweep_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``sweep`` to ``subparsers`` (``parser.add_subparsers(...)``); returns its parser."""
    p = subparsers.add_parser(
        "sweep", help="run every missing run of an experiment grid (resumable)",
        description="Run every unfinished run of a profile's grid in parallel; rerunning the "
                    "same command resumes (finished runs are skipped, interrupted ones redone).")
    p.add_argument("--profile", required=True,
                   help=f"experiment profile: {', '.join(PROFILES)}")
    p.add_argument("--out", required=True, help="sweep folder (created; resumed if it exists)")
    p.add_argument("--jobs", type=int, default=1,
                   help="parallel runs, one core each (submitit on SLURM: array parallelism)")
    p.add_argument("--launcher", default="local", choices=list(LAUNCHERS),
                   help="local: joblib process pool; submitit: SLURM, or local processes "
                        "where there is no SLURM")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a profile setting, e.g. --set seeds=3 --set steps=1000 "
                        "--set alphas=[0.1,1]")
    p.add_argument("--only", action="append", default=[], metavar="KEY=VALUE",
                   help=f"run a slice of the grid; keys: {', '.join(FILTER_KEYS)} "
                        f"(e.g. --only env=pendulum --only variant=se-vanilla,sp-vanilla)")
    p.add_argument("--confirm", default=None, metavar="GRID",
                   help="a confirmation sweep of the finished sweep GRID: every variant again, "
                        "mitigated ones at the alpha chosen on GRID's seeds, on fresh seeds "
                        "(report GRID with --confirmation OUT to test on them)")
    p.add_argument("--dry-run", action="store_true",
                   help="list the runs still to do and the estimated wall time; run nothing")
    p.add_argument("--checkpoint-every", type=_steps_or_auto, default=None, metavar="N",
                   help="environment steps between a run's exact checkpoints; a rerun continues "
                        "from them (default auto: about every 10 minutes of work; 0: none)")
    p.add_argument("--group-size", type=int, default=DEFAULT_GROUP_SIZE, metavar="K",
                   help="train up to K runs that differ only in their seed and alpha in one "
                        "process: one vector environment, one projection call and one stacked "
                        f"update per step for all of them (default {DEFAULT_GROUP_SIZE}, the "
                        "paper grid's 4 alphas x 7 seeds of a configuration; 1: every run alone)")
    p.add_argument("--device", default="cpu", metavar="DEVICE", help=DEVICE_HELP)
    p.add_argument("--slurm-partition", default=None, help="SLURM partition (submitit)")
    p.add_argument("--slurm-time", type=int, default=120,
                   help="time limit of one SLURM job in minutes (default 120)")
    p.add_argument("--slurm-cpus", type=int, default=1, help="CPUs per SLURM job (default 1)")
    p.set_defaults(run=run_sweep)
    return p


def _steps_or_auto(text: str) -> int | None:
    """``--checkpoint-every``: a step count >= 0, or ``auto`` (``None``)."""
    if text == "auto":
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a step count or 'auto', got {text!r}") \
            from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _dry_run(profile: ExperimentProfile, out: Path, only: list[str], jobs: int,
             group_size: int = DEFAULT_GROUP_SIZE, device: str = "cpu") -> int:
    from tutorial_rl.experiments.sweep_folder import run_status

    specs = select_runs(profile, only)
    todo = [s for s in specs if run_status(out / RUNS_DIR / s.key) != "done"]
    for spec in todo:
        print(spec.key)
    hours = estimate_wall_time(todo, jobs, group_size) / 3600
    print(f"profile {profile.name}: {len(specs)} runs selected, {len(specs) - len(todo)} done, "
          f"{len(todo)} to run; estimated {hours:.2f} h on {jobs} core(s) with --group-size "
          f"{group_size} (measured per-step costs of a 2-core development machine)",
          file=sys.stderr)
    if device != "cpu":
        print(f"the estimate is for CPU cores; --device {device} has not been measured",
              file=sys.stderr)
    mismatches = cost_table_mismatches(todo)
    if mismatches:
        print("note: the per-step costs were measured with the default networks and minibatches;"
              " these cells use others, so their runs cost more (wider) or less than estimated: "
              + "; ".join(f"{cell}: {sizes}" for cell, sizes in mismatches.items()),
              file=sys.stderr)
    return 0


def _sweep_command(args: argparse.Namespace) -> list[str]:
    """The command line that reproduces ``args`` (for provenance.json; works in-process too)."""
    words = ["tutorial-rl", "sweep", "--profile", args.profile, "--out", str(args.out),
             "--jobs", str(args.jobs), "--launcher", args.launcher]
    if args.checkpoint_every is not None:
        words += ["--checkpoint-every", str(args.checkpoint_every)]
    if args.group_size != DEFAULT_GROUP_SIZE:
        words += ["--group-size", str(args.group_size)]
    if args.device != "cpu":
        words += ["--device", args.device]
    if args.confirm is not None:
        words += ["--confirm", str(args.confirm)]
    for flag, values in (("--set", args.overrides), ("--only", args.only)):
        for value in values:
            words += [flag, shlex.quote(value)]
    if args.launcher == "submitit":
        words += ["--slurm-time", str(args.slurm_time), "--slurm-cpus", str(args.slurm_cpus)]
        words += ["--slurm-partition", args.slurm_partition] if args.slurm_partition else []
    return words


def run_sweep(args: argparse.Namespace) -> int:
    """Handler of ``tutorial-rl sweep``: 0 all runs finished, 1 some failed, 2 bad input."""
    try:
        overrides = dict(parse_assignments(args.overrides, "--set"))
        profile = get_profile(args.profile, overrides)  # validates everything before any run
        if args.confirm is not None:
            from tutorial_rl.experiments.confirmation import (
                CONFIRMATION_SETTINGS,
                confirmation_settings,
            )

            clash = sorted(set(overrides) & set(CONFIRMATION_SETTINGS))
            if clash:
                raise ProfileError(f"--confirm sets {', '.join(clash)} itself; drop --set "
                                   f"{clash[0]}=...")
            overrides.update(confirmation_settings(args.confirm, profile))
            profile = get_profile(args.profile, overrides)
        if args.dry_run:
            if args.jobs < 1:
                raise ProfileError(f"jobs must be an integer >= 1; got {args.jobs}")
            try:
                device = str(resolve_device(args.device, "--device"))
            except ConfigError as exc:
                raise ProfileError(str(exc)) from None
            return _dry_run(profile, Path(args.out), list(args.only), args.jobs,
                            args.group_size, device)
        summary = sweep(profile, args.out, jobs=args.jobs, launcher=args.launcher,
                        overrides=overrides, only=args.only,
                        slurm=SlurmOptions(args.slurm_partition, args.slurm_time,
                                           args.slurm_cpus),
                        command=_sweep_command(args), checkpoint_every=args.checkpoint_every,
                        group_size=args.group_size, device=args.device,
                        cost_sources=[] if args.confirm is None else [args.confirm])
    except ProfileError as exc:
        return _error(str(exc))
    print(summary.describe())
    return summary.exit_code


def add_report_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``report`` to ``subparsers``; returns its parser."""
    p = subparsers.add_parser(
        "report", help="tables and figures of a sweep (IQM with CIs, curves, tests, costs)",
        description="Write CSV tables, PNG figures and report.md for a sweep folder.")
    p.add_argument("sweep_dir", help="a folder written by 'tutorial-rl sweep'")
    p.add_argument("--out", default=None, help="output folder (default: SWEEP_DIR/report)")
    p.add_argument("--reps", type=int, default=5_000,
                   help="bootstrap resamples of the confidence intervals (default 5000)")
    p.add_argument("--alphas", default="best", choices=["best", "all"],
                   help="significance tests on the best α per variant (the paper) or on all")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    p.add_argument("--confirmation", default=None, metavar="DIR",
                   help="a confirmation sweep of SWEEP_DIR (tutorial-rl sweep --confirm): the "
                        "findings then choose alpha on SWEEP_DIR's seeds and test on DIR's")
    p.add_argument("--references", default="auto", metavar="PATH",
                   help="reference scores (tutorial-rl reference) for reference lines and "
                        "normalised scores; default: SWEEP_DIR/../reference/reference.json "
                        "when it exists; 'none' for raw returns only")
    p.set_defaults(run=run_report)
    return p


def run_report(args: argparse.Namespace) -> int:
    """Handler of ``tutorial-rl report``: 0 written, 2 bad input (no sweep, no finished run)."""
    from tutorial_rl.experiments.references import ReferenceFileError

    references = None if args.references == "none" else args.references
    try:
        path = write_report(args.sweep_dir, args.out, reps=args.reps, alphas=args.alphas,
                            seed=args.seed, references=references,
                            confirmation=args.confirmation)
    except (ProfileError, ReferenceFileError, FileNotFoundError) as exc:
        return _error(str(exc))
    print(f"report of {args.sweep_dir} -> {path}")
    print(resolve_references(Path(args.sweep_dir), references)[1].replace("`", ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Standalone entry point (``python -m tutorial_rl.experiments.commands sweep ...``) until
    the subcommands are wired into ``tutorial-rl``."""
    parser = argparse.ArgumentParser(prog="tutorial-rl")
    sub = parser.add_subparsers(dest="command", required=True)
    add_sweep_parser(sub)
    add_report_parser(sub)
    args = parser.parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())

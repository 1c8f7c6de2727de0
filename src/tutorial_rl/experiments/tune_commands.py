"""``tutorial-rl tune``, ``tune-export`` and ``reference``: tuning the unsafe baselines and the
reference controllers every score is read against (Chapter 8)."""

from __future__ import annotations

import argparse
import json
import shlex
from typing import Any

from tutorial_rl.experiments.training import ALGOS, ENVS

__all__ = ["add_budget_curve_parser", "add_reference_parser", "add_tune_export_parser",
           "add_tune_parser"]


def _command(args: argparse.Namespace, names: tuple[str, ...]) -> str:
    """The command line that reproduces ``args`` (for provenance; works in-process too)."""
    words = ["tutorial-rl", args.command]
    for name in names:
        value = getattr(args, name)
        if value is not None:
            text = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
            words += [f"--{name.replace('_', '-')}", text]
    return shlex.join(words)


def _seeds(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") \
            from None
    if len(seeds) < 1 or any(s < 0 for s in seeds):
        raise argparse.ArgumentTypeError(f"expected seeds >= 0, got {text!r}")
    return seeds


def add_tune_parser(subparsers: Any) -> argparse.ArgumentParser:
    """``tutorial-rl tune --env E --algo A --trials N``."""
    from tutorial_rl.experiments.tuning import DEFAULT_STORAGE, TUNING_SEEDS

    p = subparsers.add_parser(
        "tune", help="tune the unsafe baseline's hyperparameters with Optuna (resumable)",
        description="Run or resume the Optuna study ALGO-ENV until it has --trials finished "
                    "trials. Several processes (or machines sharing --storage) may run the same "
                    "command at once.")
    p.add_argument("--env", required=True, choices=list(ENVS), help="task")
    p.add_argument("--algo", required=True, choices=list(ALGOS), help="algorithm")
    p.add_argument("--trials", required=True, type=int,
                   help="finished (complete or pruned) trials the study should reach")
    p.add_argument("--storage", default=DEFAULT_STORAGE,
                   help=f"Optuna storage URL (default {DEFAULT_STORAGE}); a shared RDB URL such "
                        "as postgresql://... distributes one study over machines")
    p.add_argument("--steps", type=int, default=None,
                   help="training steps per seed (default: the study's tuning budget)")
    p.add_argument("--seeds", type=_seeds, default=TUNING_SEEDS,
                   help="training seeds of every trial (default %(default)s)")
    p.add_argument("--timeout", type=float, default=None,
                   help="stop starting trials after this many seconds")
    p.add_argument("--sampler-seed", type=int, default=None, help="seed of the TPE sampler")
    p.set_defaults(run=_run_tune)
    return p


def _run_tune(args: argparse.Namespace) -> int:
    from tutorial_rl.experiments.tuning import run_study

    summary = run_study(args.algo, args.env, args.trials, args.storage, args.steps, args.seeds,
                        args.timeout, args.sampler_seed,
                        command=_command(args, ("env", "algo", "trials", "storage", "steps",
                                                "seeds", "timeout", "sampler_seed")))
    best = summary.get("best_value")
    print(f"study {summary['study']}: {summary['finished_before']} -> "
          f"{summary['finished_after']} finished trials in {summary['wall_time_s']:.0f} s; "
          + ("no complete trial yet" if best is None else
             f"best value {best:.2f} with {json.dumps(summary['best_params'])}"))
    return 0


def add_tune_export_parser(subparsers: Any) -> argparse.ArgumentParser:
    """``tutorial-rl tune-export``: the tuned file the ``paper`` profile reads."""
    from tutorial_rl.experiments.tuned_values import TUNED_FILE
    from tutorial_rl.experiments.tuning import DEFAULT_STORAGE

    p = subparsers.add_parser(
        "tune-export", help="write every study's best parameters to the file the paper profile "
                            "reads")
    p.add_argument("--storage", default=DEFAULT_STORAGE, help="Optuna storage URL")
    p.add_argument("--out", default=str(TUNED_FILE), help="JSON file (default: the package's)")
    p.set_defaults(run=_run_tune_export)
    return p


def _run_tune_export(args: argparse.Namespace) -> int:
    from tutorial_rl.experiments.tuned_values import export_tuned

    tuned = export_tuned(args.storage, args.out)
    for cell, entry in tuned.items():
        print(f"{cell}: best {entry['best_value']:.2f} (trial {entry['best_trial']}, "
              f"{entry['complete_trials']} complete, {entry['pruned_trials']} pruned) "
              f"{json.dumps(entry['agent'])}")
    print(f"wrote {len(tuned)} tuned cells -> {args.out}")
    return 0


def add_reference_parser(subparsers: Any) -> argparse.ArgumentParser:
    """``tutorial-rl reference --env E --episodes N --seed S``."""
    p = subparsers.add_parser(
        "reference", help="evaluate the zero action and the reference controller behind the "
                          "safeguard; write reference.json")
    p.add_argument("--env", default="all", choices=["all", *ENVS], help="task (default: all)")
    p.add_argument("--episodes", type=int, default=10, help="episodes (default 10)")
    p.add_argument("--seed", type=int, default=1_000_000,
                   help="first reset's seed (default 1000000: the paper profile's)")
    p.add_argument("--out", default="results/reference", help="folder of reference.json")
    p.set_defaults(run=_run_reference)
    return p


def _run_reference(args: argparse.Namespace) -> int:
    from tutorial_rl.experiments.reference_runs import write_references

    envs = list(ENVS) if args.env == "all" else [args.env]
    command = _command(args, ("env", "episodes", "seed", "out"))
    data = write_references(args.out, envs, args.episodes, args.seed, command=command)
    for env in envs:
        zero, ctrl = data[env]["zero"], data[env]["controller"]
        print(f"{env}: zero action {zero['mean']:.2f}, {ctrl['name']} {ctrl['mean']:.2f} "
              f"(constraint violations {zero['constraint_violations']}, "
              f"{ctrl['constraint_violations']})")
    print(f"-> {args.out}/reference.json")
    return 0


def add_budget_curve_parser(subparsers: Any) -> argparse.ArgumentParser:
    """``tutorial-rl budget-curve --algo A --env E [--steps N --every K --seeds S]``."""
    from tutorial_rl.experiments.budget_curves import CURVE_EVALUATIONS
    from tutorial_rl.experiments.tuning import TUNING_SEEDS

    p = subparsers.add_parser(
        "budget-curve", help="learning curve of the tuned unsafe baseline and the training "
                             "budget read off it; write results/budgets/ALGO-ENV.json",
        description="Train the unsafe baseline with the paper profile's (tuned) hyperparameters "
                    "on the tuning seeds, evaluate it along the way on the tuning evaluation "
                    "seed, and choose the budget where the curve has flattened.")
    p.add_argument("--algo", required=True, choices=list(ALGOS), help="algorithm")
    p.add_argument("--env", required=True, choices=list(ENVS), help="task")
    p.add_argument("--steps", type=int, default=None,
                   help="training steps per seed (default: CURVE_STEPS of the cell)")
    p.add_argument("--every", type=int, default=None,
                   help=f"steps between evaluations (default: steps / {CURVE_EVALUATIONS})")
    p.add_argument("--seeds", type=_seeds, default=TUNING_SEEDS,
                   help="comma-separated training seeds (default: the tuning seeds)")
    p.add_argument("--episodes", type=int, default=10, help="episodes per evaluation")
    p.add_argument("--out", default="results/budgets", help="folder of the curves")
    p.add_argument("--rechoose", action="store_true",
                   help="do not train: re-apply the current rule to the stored curve")
    p.set_defaults(run=_run_budget_curve)
    return p


def _run_budget_curve(args: argparse.Namespace) -> int:
    from tutorial_rl.agents.common import ConfigError
    from tutorial_rl.experiments.budget_curves import (
        CURVE_EVALUATIONS,
        CURVE_STEPS,
        rechoose,
        write_curve,
    )

    cell = f"{args.algo}/{args.env}"
    if args.rechoose:
        data = rechoose(args.algo, args.env, args.out,
                        command=_command(args, ("algo", "env", "out")) + " --rechoose")
        _print_choice(cell, data["choice"])
        return 0
    steps = args.steps if args.steps is not None else CURVE_STEPS.get(cell)
    if steps is None:
        raise ConfigError(f"no default curve length for {cell}; pass --steps "
                          f"(defaults exist for {', '.join(CURVE_STEPS)})")
    every = args.every if args.every is not None else max(1, steps // CURVE_EVALUATIONS)
    args.steps, args.every = steps, every
    command = _command(args, ("algo", "env", "steps", "every", "seeds", "episodes", "out"))
    data = write_curve(args.algo, args.env, steps, args.seeds, every, args.episodes, args.out,
                       command=command)
    _print_choice(cell, data["choice"])
    return 0


def _print_choice(cell: str, choice: dict[str, Any]) -> None:
    if choice["budget"] is None:
        print(f"{cell}: no learning (plateau {choice['plateau']:.2f}, first evaluation "
              f"{choice['first_evaluation']:.2f}): the curve decides no budget")
    else:
        print(f"{cell}: plateau {choice['plateau']:.2f} reached at {choice['reached_at']:,} "
              f"steps -> budget {choice['budget']:,} (flattened: {choice['flattened']})")

"""The ``tutorial-rl`` command line: ``train`` and ``evaluate`` (README, Chapters 4-6).

::

    tutorial-rl train --env pendulum --algo td3 --mode sp --mitigation penalty-critic \\
        --alpha 1 --steps 10000 --seed 0 --out runs/td3-sp-pc-0
    tutorial-rl evaluate runs/td3-sp-pc-0 --episodes 10 --seed 100

Bad input (an unknown choice, an invalid mode/mitigation pair, steps <= 0, a non-empty output
directory without ``--overwrite``, a run directory without ``model.pt``) prints one line on stderr
and returns exit code 2, never a traceback. Subcommands are entries of :data:`COMMANDS`: a new one
(e.g. a sweep) is one more :class:`Command` with its own ``add_arguments`` and ``run``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np

from tutorial_rl.agents.common import MITIGATIONS, MODES, ConfigError
from tutorial_rl.experiments.commands import DEVICE_HELP, add_report_parser, add_sweep_parser
from tutorial_rl.experiments.training import ALGOS, ENVS, RunConfig, evaluate, train
from tutorial_rl.experiments.tune_commands import (
    add_budget_curve_parser,
    add_reference_parser,
    add_tune_export_parser,
    add_tune_parser,
)
from tutorial_rl.projection import METHODS

__all__ = ["COMMANDS", "Command", "UsageError", "build_parser", "main"]


class UsageError(Exception):
    """A command-line error: argparse's message, as one line."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises instead of printing usage and exiting, so that ``main``
    returns 2 with a one-line message (and in-process callers get a return code)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: error: {message}")


@dataclass(frozen=True)
class Command:
    """A subcommand: its name, one-line help, argument definitions and implementation."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _parse_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value  # a bare string such as projected-mean


def _add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--env", required=True, choices=list(ENVS), help="task")
    p.add_argument("--algo", required=True, choices=list(ALGOS), help="algorithm")
    p.add_argument("--mode", default="unsafe", choices=list(MODES),
                   help="safeguard integration: none, in the environment (se), in the policy (sp)")
    p.add_argument("--mitigation", default="none", choices=list(MITIGATIONS),
                   help="action-aliasing mitigation (se: penalty; sp: per-sample-loss, "
                        "penalty-critic)")
    p.add_argument("--alpha", type=float, default=None, help="weight of the mitigation (>= 0)")
    p.add_argument("--steps", type=int, default=None,
                   help="environment steps (default: the task's, by $TUTORIAL_RL_PROFILE)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--out", required=True, help="run directory (created; must be empty)")
    p.add_argument("--overwrite", action="store_true", help="replace results in a non-empty --out")
    p.add_argument("--projection-method", default="exact", choices=list(METHODS),
                   help="projection backend (exact: fast; cvxpylayers: the paper's)")
    p.add_argument("--termination-penalty", type=float, default=None,
                   help="penalty of an early termination (matters in unsafe mode)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   type=_parse_override,
                   help="override an agent hyperparameter, e.g. --set hidden_sizes=[64,64]")
    p.add_argument("--checkpoint-every", type=int, default=None, metavar="N",
                   help="environment steps between exact checkpoints in OUT/checkpoint.pt; "
                        "rerunning the same command continues from it (default: about every 10 "
                        "minutes of work; 0: none)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: small networks run fastest on one)")
    p.add_argument("--device", default="cpu", metavar="DEVICE", help=DEVICE_HELP)


def _run_train(args: argparse.Namespace) -> int:
    config = RunConfig(
        env=args.env, algo=args.algo, mode=args.mode, mitigation=args.mitigation,
        alpha=args.alpha, steps=args.steps, seed=args.seed, out=args.out,
        overwrite=args.overwrite, projection_method=args.projection_method,
        termination_penalty=args.termination_penalty, agent=dict(args.overrides),
        num_threads=args.threads, checkpoint_every=args.checkpoint_every, device=args.device)
    result = train(config)
    complete = [r for r in result.progress if r["complete"]]
    last = complete[-10:]
    mean = float(np.mean([r["episode_return"] for r in last])) if last else float("nan")
    print(f"trained {args.algo} ({args.mode}, {args.mitigation}) on {args.env}: "
          f"{result.config['steps']} steps, {len(complete)} episodes, mean return of the last "
          f"{len(last)}: {mean:.2f}, interventions "
          f"{sum(r['interventions'] for r in result.progress)}, constraint violations "
          f"{sum(r['constraint_violations'] for r in result.progress)}, "
          f"{result.wall_time:.1f} s -> {result.run_dir}")
    return 0


def _add_evaluate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a directory written by 'tutorial-rl train'")
    p.add_argument("--episodes", type=int, default=10, help="evaluation episodes (default 10)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first reset (default 0)")


def _run_evaluate(args: argparse.Namespace) -> int:
    result = evaluate(args.run_dir, episodes=args.episodes, seed=args.seed)
    returns = ", ".join(f"{r:.2f}" for r in result["returns"])
    print(f"evaluated {args.run_dir}: mean return {result['mean_return']:.2f} "
          f"(± {result['std_return']:.2f}) over {result['episodes']} episodes [{returns}], "
          f"interventions {result['interventions']}, constraint violations "
          f"{result['constraint_violations']} -> {args.run_dir}/evaluation.json")
    return 0


#: The subcommands, in the order ``--help`` lists them.
COMMANDS: list[Command] = [
    Command("train", "train one agent and write config.json, progress.csv, model.pt",
            _add_train_arguments, _run_train),
    Command("evaluate", "run a trained agent's deterministic policy; write evaluation.json",
            _add_evaluate_arguments, _run_evaluate),
]


def build_parser() -> argparse.ArgumentParser:
    """The ``tutorial-rl`` parser with one subparser per entry of :data:`COMMANDS`."""
    parser = _Parser(prog="tutorial-rl",
                     description="Safe RL with action projection: train, evaluate, sweep, report.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=_Parser)
    for command in COMMANDS:
        p = sub.add_parser(command.name, help=command.help, description=command.help)
        command.add_arguments(p)
        p.set_defaults(run=command.run)
    # Sweeps and reports over a whole experiment grid (chapter 8).
    add_sweep_parser(sub)
    add_report_parser(sub)
    # Tuning the unsafe baselines and the reference controllers (chapter 8).
    add_tune_parser(sub)
    add_tune_export_parser(sub)
    add_reference_parser(sub)
    add_budget_curve_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``tutorial-rl``; returns the exit code (2 for any bad input)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return int(args.run(args))
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(f"tutorial-rl: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # an unwritable --out, a vanished run directory
        print(f"tutorial-rl: error: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help / --version exit through argparse with code 0
        return int(exc.code or 0)
    except KeyboardInterrupt as exc:  # Ctrl-C, or a sweep stopped by SIGTERM (says so)
        print(f"tutorial-rl: interrupted{f' ({exc})' if str(exc) else ''}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""The random-policy safety experiment of chapter 3 (chapters/03_tasks.py), as a command.

Uniformly random actions on every task, with and without the projection safeguard, counting
constraint violations and interventions (:func:`tutorial_rl.safeguards.random_policy_safety`).
The chapter shows the full result (10^5 steps per task and setting) from ``results/safety/``,
produced by::

    python -m tutorial_rl.safety_check --steps 100000 --out results/safety

and reruns a short version live under the ``ci`` profile.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from tutorial_rl.provenance import provenance, write_json_atomic, write_provenance
from tutorial_rl.safeguards import random_policy_safety

TASKS = ("tutorial_rl/Pendulum-v0", "tutorial_rl/Quadrotor2D-v0", "tutorial_rl/Seeker-v0")


def safety_table(steps: int, seed: int = 0, tasks: tuple[str, ...] = TASKS) -> list[dict[str, Any]]:
    """One row per (task, safeguard on/off): the counts of :func:`random_policy_safety`."""
    rows = []
    for env_id in tasks:
        for safeguard in (False, True):
            start = time.perf_counter()
            row = random_policy_safety(env_id, steps=steps, seed=seed, safeguard=safeguard)
            row["wall_time_s"] = round(time.perf_counter() - start, 2)
            rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tutorial_rl.safety_check",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100_000, help="steps per task and setting")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True, help="folder for safety.json")
    args = parser.parse_args(argv)
    if args.steps <= 0:
        parser.error(f"--steps must be positive, got {args.steps}")
    given = argv if argv is not None else sys.argv[1:]
    record = provenance(["python", "-m", "tutorial_rl.safety_check", *given], wall_time_s=0.0)
    start = time.perf_counter()
    rows = safety_table(args.steps, args.seed)
    write_json_atomic(args.out / "safety.json", rows)
    write_provenance(args.out, record, time.perf_counter() - start)
    for row in rows:
        print(f"{row['env_id']:>28} safeguard={row['safeguard']!s:5} "
              f"violations={row['violations']:>6} interventions={row['interventions']:>6}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

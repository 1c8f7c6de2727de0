"""The invariance check of chapter 2 (chapters/02_zonotopes.py) at its full size, as a command.

:func:`tutorial_rl.sets.verification.verify_invariance` on both stored RCI sets: for the
pendulum with the nonlinear simulator and every corner of its noise box as well. The chapter
reruns a small sample live (to draw it) and shows the promised full check, 10^5 states per
system, from ``results/invariance/``, produced by::

    python -m tutorial_rl.invariance_check --states 100000 --out results/invariance
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

from tutorial_rl.provenance import provenance, write_json_atomic, write_provenance
from tutorial_rl.sets import pendulum_safe_action_set, quadrotor_safe_action_set, verify_invariance
from tutorial_rl.sets.verification import VerificationReport
from tutorial_rl.sets.zonotope import Zonotope
from tutorial_rl.systems import pendulum_step

#: The pendulum simulator's noise box (chapter 3), applied at its corners in the nonlinear check.
PENDULUM_NOISE = ((-0.1, -0.1), (0.1, 0.1))


def report_row(report: VerificationReport, wall_time_s: float) -> dict[str, Any]:
    """The counts of a report as a JSON-ready row (without the sampled states)."""
    row = {f.name: getattr(report, f.name) for f in dataclasses.fields(report)
           if f.name not in ("states", "failed")}
    return {**row, "ok": report.ok, "wall_time_s": round(wall_time_s, 2)}


def invariance_table(n_states: int, seed: int = 0) -> list[dict[str, Any]]:
    """One row per system (pendulum, quadrotor) with the counts of :func:`verify_invariance`."""
    rows = []
    checks = (
        (pendulum_safe_action_set(), {"nonlinear_step": pendulum_step,
                                      "noise": Zonotope.from_box(*PENDULUM_NOISE)}),
        (quadrotor_safe_action_set(), {}),
    )
    for safe_set, extra in checks:
        start = time.perf_counter()
        report = verify_invariance(safe_set, n_states=n_states, seed=seed, **extra)
        rows.append(report_row(report, time.perf_counter() - start))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tutorial_rl.invariance_check",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--states", type=int, default=100_000, help="states per system")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True, help="folder for invariance.json")
    args = parser.parse_args(argv)
    if args.states <= 0:
        parser.error(f"--states must be positive, got {args.states}")
    given = argv if argv is not None else sys.argv[1:]
    record = provenance(["python", "-m", "tutorial_rl.invariance_check", *given], wall_time_s=0.0)
    start = time.perf_counter()
    rows = invariance_table(args.states, args.seed)
    write_json_atomic(args.out / "invariance.json", rows)
    write_provenance(args.out, record, time.perf_counter() - start)
    for row in rows:
        print(f"{row['system']:>9}: {row['n_states']:,} states, failures {row['n_failures']} + "
              f"{row['n_nonlinear_failures']}, empty {row['n_empty']}, ok {row['ok']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

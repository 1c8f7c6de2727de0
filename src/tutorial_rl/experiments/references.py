"""Reference scores and normalised scores (Chapter 8, chapters/08_experiments.py; issue 12).

A raw return says little by itself: −30 on the quadrotor is good or bad only next to what doing
nothing and what a competent controller achieve behind the same safeguard. ``tutorial-rl
reference`` evaluates two such references with the evaluation protocol of the sweeps and writes
``results/reference/reference.json``::

    {"pendulum": {"zero": {"mean": -14.1, "returns": [...]},
                  "controller": {"mean": -6.2, "returns": [...]}},
     "quadrotor": {...}, "seeker": {...}, "provenance": {...}}

Following rliable's convention (Atari scores normalised to random and human play), a score s on
a task is normalised as

    (s − zero) / (controller − zero),

so 0 is the zero action and 1 the reference controller (LQR on the balancing tasks, PD-to-goal on
the seeker); the normalisation is affine and increasing, so it changes no rank test.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["REFERENCE_FILE", "Reference", "ReferenceFileError", "default_reference_path",
           "load_references", "normalise"]

#: Where ``tutorial-rl reference`` writes the references, relative to the results folder.
REFERENCE_FILE = Path("reference") / "reference.json"

#: Labels of the two references in figures and tables.
ZERO_LABEL, CONTROLLER_LABEL = "zero action", "reference controller"


class ReferenceFileError(ValueError):
    """A reference file that cannot be used (malformed, or lacking a task)."""


@dataclass(frozen=True)
class Reference:
    """The two reference scores of one task: mean evaluation return of the zero action and of
    the reference controller, with the per-episode returns they average."""

    env: str
    zero: float
    controller: float
    zero_returns: tuple[float, ...] = ()
    controller_returns: tuple[float, ...] = ()

    def normalise(self, score: float | np.ndarray) -> float | np.ndarray:
        """(score − zero) / (controller − zero): 0 = zero action, 1 = reference controller."""
        return (score - self.zero) / (self.controller - self.zero)


def default_reference_path(sweep_dir: str | Path) -> Path:
    """The reference file next to a sweep folder: ``SWEEP_DIR/../reference/reference.json``
    (``results/reference/reference.json`` for ``results/quick``)."""
    sweep_dir = Path(sweep_dir)
    if sweep_dir.name in ("", ".", ".."):  # "." has no parent of its own
        sweep_dir = sweep_dir.resolve()
    return sweep_dir.parent / REFERENCE_FILE


def _number(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ReferenceFileError(f"{where} must be a finite number; got {value!r}")
    return float(value)


def _entry(env: str, name: str, value: object, path: Path) -> tuple[float, tuple[float, ...]]:
    where = f"{path}: {env}.{name}"
    if not isinstance(value, dict) or "mean" not in value:
        raise ReferenceFileError(f"{where} must be an object with a 'mean' (and 'returns'); "
                             f"got {value!r}")
    returns = value.get("returns", [])
    if not isinstance(returns, list):
        raise ReferenceFileError(f"{where}.returns must be a list of numbers; got {returns!r}")
    return (_number(value["mean"], f"{where}.mean"),
            tuple(_number(r, f"{where}.returns[{i}]") for i, r in enumerate(returns)))


def load_references(path: str | Path) -> dict[str, Reference]:
    """Read a reference file written by ``tutorial-rl reference``; one :class:`Reference` per
    task. Top-level keys whose value is not a reference entry (``provenance``) are skipped.

    :raises FileNotFoundError: no file at ``path`` (the message names the command that writes it).
    :raises ReferenceFileError: not JSON, not an object, an entry without ``zero``/``controller``
        means, a non-finite number, or a task whose two references coincide (no scale).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no reference file at {path}: write it with "
                                f"`tutorial-rl reference` or pass another --references")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ReferenceFileError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ReferenceFileError(f"{path} must hold an object {{env: {{zero, controller}}}}; "
                             f"got {type(data).__name__}")
    refs = {}
    for env, entry in data.items():
        if not (isinstance(entry, dict) and ({"zero", "controller"} & entry.keys())):
            continue  # provenance and other metadata
        missing = {"zero", "controller"} - entry.keys()
        if missing:
            raise ReferenceFileError(f"{path}: {env} lacks {', '.join(sorted(missing))}")
        zero, zero_returns = _entry(env, "zero", entry["zero"], path)
        controller, controller_returns = _entry(env, "controller", entry["controller"], path)
        if controller == zero:
            raise ReferenceFileError(f"{path}: {env} has the same zero-action and controller mean "
                                 f"({zero}); normalised scores would divide by zero")
        refs[env] = Reference(env, zero, controller, zero_returns, controller_returns)
    if not refs:
        raise ReferenceFileError(f"{path} holds no task with 'zero' and 'controller' references")
    return refs


def normalise(table: pd.DataFrame, references: dict[str, Reference],
              column: str = "score") -> pd.Series:
    """Normalised ``column`` of a table with an ``env`` column (e.g. :func:`~.stats.load_runs`).

    :raises ReferenceFileError: naming the tasks of ``table`` that have no reference.
    """
    missing = sorted(set(table["env"]) - references.keys())
    if missing:
        raise ReferenceFileError(f"no reference scores for {', '.join(missing)} "
                             f"(references cover {', '.join(sorted(references))})")
    zero = table["env"].map({e: r.zero for e, r in references.items()}).astype(float)
    controller = table["env"].map({e: r.controller for e, r in references.items()}).astype(float)
    return ((table[column].astype(float) - zero) / (controller - zero)).rename(f"{column}_norm")

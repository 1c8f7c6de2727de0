"""Loading committed results (``results/<name>/``) together with their provenance.

Chapters never retrain or rerun a long experiment in the book build: they load its output from
``results/`` and print where it came from (:mod:`tutorial_rl.provenance` wrote it). The folder is
found next to the package's source tree (an editable install, as ``make`` does), or where the
environment variable ``TUTORIAL_RL_RESULTS`` points.
"""

from __future__ import annotations

import json
import os
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULTS_ENV_VAR = "TUTORIAL_RL_RESULTS"


def results_dir() -> Path:
    """The ``results/`` folder: ``$TUTORIAL_RL_RESULTS`` or the repository's ``results/``."""
    if RESULTS_ENV_VAR in os.environ:
        return Path(os.environ[RESULTS_ENV_VAR])
    return Path(__file__).resolve().parents[2] / "results"


@dataclass(frozen=True)
class Result:
    """One committed result: its data files (parsed JSON) and its provenance record."""

    name: str
    data: Any
    provenance: dict[str, Any]

    def describe(self) -> str:
        """One paragraph for a chapter: what produced the result, where, when, how long."""
        p = self.provenance
        commit = (p.get("commit") or "unknown")[:10] + (" (uncommitted changes)" if p.get("dirty")
                                                       else "")
        machine = p.get("machine", {})
        return (f"Result '{self.name}': `{p.get('command')}` at commit {commit}, profile "
                f"{p.get('profile')}, on {machine.get('cpu_count')} CPU cores "
                f"({machine.get('platform')}), {p.get('date_utc')}, wall time "
                f"{p.get('wall_time_s')} s.")


def load_result(name: str, file: str | None = None) -> Result:
    """Load ``results/<name>/<file>`` (default: the one JSON file besides ``provenance.json``).

    :raises FileNotFoundError: naming the missing folder or file and the command that makes it.
    """
    folder = results_dir() / name
    provenance_path = folder / "provenance.json"
    if not provenance_path.exists():
        raise FileNotFoundError(
            f"no provenance.json in {folder}: results must be produced by their command "
            f"(see the chapter that uses '{name}') and committed with their provenance"
        )
    if file is None:
        candidates = sorted(p for p in folder.glob("*.json") if p.name != "provenance.json")
        if len(candidates) != 1:
            raise FileNotFoundError(
                f"{folder} holds {len(candidates)} data files besides provenance.json; "
                f"name one with file=..."
            )
        data_path = candidates[0]
    else:
        data_path = folder / file
    return Result(name, json.loads(data_path.read_text()), json.loads(provenance_path.read_text()))


def describe_invocations(folder: str | Path) -> str:
    """Every command that wrote into a results folder, oldest first, with its commit, dirty
    flag, profile, cores, date and wall time, then the folder's note if it has one (Chapter 8).

    :raises FileNotFoundError: the folder has no provenance.json.
    """
    from tutorial_rl.provenance import invocations

    records = invocations(folder)
    if not records:
        raise FileNotFoundError(f"no provenance.json in {folder}")
    lines = []
    for r in records:
        when = str(r.get("date_utc") or "?").replace("T", " ")[:16]  # minutes are enough here
        # at most ~100 characters a line, what a book page shows of a code output: the command
        # wrapped between its options, the details on a line of their own
        options = str(r.get("command")).replace(" --", "\0--").split("\0")
        wrapped = textwrap.wrap(" ".join(o.replace(" ", "\xa0") for o in options), 96,
                                subsequent_indent="      ", break_on_hyphens=False)
        lines += [line.replace("\xa0", " ") for line in wrapped]
        dirty = " (dirty)" if r.get("dirty") else ""
        lines.append(f"  commit {(r.get('commit') or 'unknown')[:10]}{dirty}, profile "
                     f"{r.get('profile')}, {r.get('machine', {}).get('cpu_count')} cores, "
                     f"{when} UTC, ran {r.get('wall_time_s', 0) / 60:.1f} min"
                     + (" (interrupted)" if r.get("interrupted") else ""))
    if "note" in records[-1]:
        lines += textwrap.wrap(f"note: {records[-1]['note']}", 96, subsequent_indent="  ")
    return "\n".join(lines)

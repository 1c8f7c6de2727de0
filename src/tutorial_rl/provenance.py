"""Provenance of committed results: which command, commit, profile and machine produced them.

Every folder under ``results/`` carries a ``provenance.json`` written by :func:`write_provenance`,
so a chapter that loads a result can say exactly where it came from (DEVELOPERS.md: "chapters show
full results from results/, which the experiment runner produced for real").
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tutorial_rl import __version__
from tutorial_rl.profile import current_profile


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def provenance(command: list[str] | str, wall_time_s: float, **extra: Any) -> dict[str, Any]:
    """The provenance record of a result: command, commit (and whether the tree was dirty),
    profile, package version, machine, Python and torch versions, date and wall time."""
    import torch  # only needed here; keep `import tutorial_rl.provenance` cheap

    # Results are outputs, not code: a sweep rewriting its own files must not mark itself dirty.
    status = _git("status", "--porcelain", "--untracked-files=no", "--", ":(top,exclude)results")
    return {
        "command": command if isinstance(command, str) else " ".join(command),
        "commit": _git("rev-parse", "HEAD"),
        "dirty": bool(status) if status is not None else None,
        "profile": current_profile(),
        "package_version": __version__,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
        },
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "wall_time_s": round(wall_time_s, 2),
        **extra,
    }


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to ``path`` through a temporary file and a rename, so it is never half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def write_provenance(folder: Path, record: dict[str, Any], wall_time_s: float) -> Path:
    """Write ``folder/provenance.json`` and return its path.

    :param record: from :func:`provenance`, taken when the run *started*, so that the commit and
        the dirty flag describe the code that ran even if the tree changes during a long run.
    :param wall_time_s: the run's wall time, filled in now.
    """
    path = Path(folder) / "provenance.json"
    write_json_atomic(path, {**record, "wall_time_s": round(wall_time_s, 2)})
    return path


def invocations(folder: str | Path) -> list[dict[str, Any]]:
    """Every provenance record of ``folder/provenance.json``, oldest first: the record itself
    and the ``previous_invocations`` it keeps (a sweep resumed or filled in slice by slice is
    written by several commands). Empty where there is no provenance file."""
    path = Path(folder) / "provenance.json"
    if not path.is_file():
        return []
    last = json.loads(path.read_text())
    earlier = last.pop("previous_invocations", [])
    return [*earlier, last]

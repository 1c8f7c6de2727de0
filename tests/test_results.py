"""Provenance records, atomic writes, the results loader and the safety-check command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tutorial_rl.provenance import invocations, provenance, write_json_atomic, write_provenance
from tutorial_rl.results import describe_invocations, load_result, results_dir
from tutorial_rl.safety_check import main as safety_main


def test_provenance_has_every_field_a_reader_needs() -> None:
    record = provenance(["tutorial-rl", "sweep"], wall_time_s=12.345, note="x")
    for key in ("command", "commit", "dirty", "profile", "machine", "wall_time_s", "date_utc",
                "python", "torch", "package_version"):
        assert key in record, key
    assert record["command"] == "tutorial-rl sweep"
    assert record["wall_time_s"] == 12.35
    assert record["note"] == "x"
    assert record["machine"]["cpu_count"] >= 1


def test_atomic_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "data.json"
    write_json_atomic(target, {"a": 1})
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in target.parent.iterdir()] == ["data.json"]


def test_load_result_roundtrip_and_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUTORIAL_RL_RESULTS", str(tmp_path))
    assert results_dir() == tmp_path
    with pytest.raises(FileNotFoundError, match="no provenance.json"):
        load_result("missing")
    write_json_atomic(tmp_path / "exp" / "rows.json", [1, 2])
    write_provenance(tmp_path / "exp", provenance("cmd --flag", 0.0), wall_time_s=1.0)
    result = load_result("exp")
    assert result.data == [1, 2]
    assert "`cmd --flag`" in result.describe()
    assert result.provenance["wall_time_s"] == 1.0
    write_json_atomic(tmp_path / "exp" / "other.json", {})
    with pytest.raises(FileNotFoundError, match="2 data files"):
        load_result("exp")
    assert load_result("exp", file="other.json").data == {}


def test_committed_results_all_carry_provenance() -> None:
    root = Path(__file__).resolve().parents[1] / "results"
    for folder in (p for p in root.iterdir() if p.is_dir()) if root.exists() else []:
        assert (folder / "provenance.json").exists(), f"{folder} has no provenance.json"


def test_safety_check_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert safety_main(["--steps", "50", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "safety.json").read_text())
    assert len(rows) == 6
    assert all(r["violations"] == 0 for r in rows if r["safeguard"])
    assert json.loads((tmp_path / "provenance.json").read_text())["command"].endswith(
        f"--steps 50 --out {tmp_path}")
    assert "Seeker-v0" in capsys.readouterr().out


def test_safety_check_rejects_non_positive_steps(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as excinfo:
        safety_main(["--steps", "0", "--out", str(tmp_path)])
    assert excinfo.value.code == 2


def test_describe_invocations_lists_every_command_oldest_first(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no provenance.json"):
        describe_invocations(tmp_path)
    first = provenance(["tutorial-rl", "sweep", "--only", "env=pendulum"], 0.0)
    write_provenance(tmp_path, first, 60.0)
    second = provenance(["tutorial-rl", "sweep"], 0.0)
    second["previous_invocations"] = invocations(tmp_path)
    second["note"] = "resumed"
    write_provenance(tmp_path, second, 120.0)
    assert [r["command"] for r in invocations(tmp_path)] == [
        "tutorial-rl sweep --only env=pendulum", "tutorial-rl sweep"]
    text = describe_invocations(tmp_path)
    assert text.index("--only env=pendulum") < text.index("ran 2.0 min")
    assert "ran 1.0 min" in text and text.endswith("note: resumed")
    long = provenance(["tutorial-rl", "sweep", "--profile", "paper", "--out", "results/paper",
                       "--jobs", "2", "--only", "env=quadrotor", "--only", "algo=td3"], 0.0)
    write_provenance(tmp_path, {**long, "interrupted": True}, 30.0)
    lines = describe_invocations(tmp_path).splitlines()
    assert max(map(len, lines)) <= 100  # fits a book page's code output
    assert "--only algo=td3" in "\n".join(lines) and "ran 0.5 min (interrupted)" in lines[-1]
    write_provenance(tmp_path, {**long, "note": "a long note, " * 30}, 30.0)
    lines = describe_invocations(tmp_path).splitlines()
    assert max(map(len, lines)) <= 100 and lines[-5].startswith("note: a long note")

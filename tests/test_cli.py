"""Tests of the ``tutorial-rl`` command line, run in-process through ``main([...])``.

README (quick start) and Chapters 4-6 run it; :mod:`tutorial_rl.experiments.training` does the
work. Bad input must give exit code 2 and one clear line on stderr, never a traceback.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

import tutorial_rl
from tutorial_rl.agents.common import PROGRESS_COLUMNS
from tutorial_rl.experiments import training
from tutorial_rl.experiments.cli import main
from tutorial_rl.experiments.training import is_complete

TINY = ["--set", "learning_starts=50", "--set", "batch_size=16"]


def train_args(out: Path, *extra: str, mode: str = "sp", steps: int = 120) -> list[str]:
    return ["train", "--env", "pendulum", "--algo", "td3", "--mode", mode, "--steps", str(steps),
            "--seed", "1", "--out", str(out), *TINY, *extra]


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_train_writes_config_progress_and_model(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main(train_args(out)) == 0
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.pt", "progress.csv"]
    config = json.loads((out / "config.json").read_text())
    assert config["version"] == tutorial_rl.__version__
    assert (config["env"], config["algo"], config["mode"], config["steps"]) == \
        ("pendulum", "td3", "sp", 120)
    assert config["agent"]["learning_starts"] == 50 and config["agent"]["hidden_sizes"] == [32, 32]
    rows = read_csv(out / "progress.csv")
    assert tuple(rows[0]) == PROGRESS_COLUMNS
    assert sum(int(r["episode_length"]) for r in rows) == 120
    assert all(int(r["constraint_violations"]) == 0 for r in rows)
    state = torch.load(out / "model.pt", weights_only=True)
    assert {"actor", "critic", "actor_target", "critic_target"} <= set(state)
    assert is_complete(out)
    assert "trained td3 (sp, none) on pendulum" in capsys.readouterr().out


def test_evaluate_writes_evaluation_json(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main(train_args(out, "--mitigation", "penalty", "--alpha", "0.5", mode="se")) == 0
    assert main(["evaluate", str(out), "--episodes", "2", "--seed", "3"]) == 0
    result = json.loads((out / "evaluation.json").read_text())
    assert len(result["returns"]) == 2 and result["episodes"] == 2 and result["seed"] == 3
    assert result["mean_return"] == pytest.approx(sum(result["returns"]) / 2)
    assert result["constraint_violations"] == 0
    assert {"interventions", "interventions_per_episode"} <= set(result)
    assert "mean return" in capsys.readouterr().out
    # deterministic policy, seeded resets: the same numbers again
    assert main(["evaluate", str(out), "--episodes", "2", "--seed", "3"]) == 0
    assert json.loads((out / "evaluation.json").read_text())["returns"] == result["returns"]


def test_a2c_train_and_evaluate(tmp_path: Path) -> None:
    out = tmp_path / "a2c"
    args = ["train", "--env", "seeker", "--algo", "a2c", "--mode", "sp", "--mitigation",
            "penalty-critic", "--alpha", "1", "--steps", "64", "--out", str(out)]
    assert main(args) == 0
    assert main(["evaluate", str(out), "--episodes", "1"]) == 0
    # A2C's penalty critic is the SE penalty on one value network (agents/a2c.py)
    assert set(torch.load(out / "model.pt", weights_only=True)) == {"actor", "critic"}


def test_same_seed_gives_the_same_progress(tmp_path: Path) -> None:
    for name in ("a", "b"):
        assert main(train_args(tmp_path / name)) == 0
    a, b = (read_csv(tmp_path / name / "progress.csv") for name in ("a", "b"))
    drop = [{k: v for k, v in row.items() if k != "wall_time"} for row in a]
    assert drop == [{k: v for k, v in row.items() if k != "wall_time"} for row in b]
    ma, mb = (torch.load(tmp_path / n / "model.pt", weights_only=True) for n in ("a", "b"))
    assert all(torch.equal(ma["actor"][k], mb["actor"][k]) for k in ma["actor"])


@pytest.mark.parametrize(("args", "message"), [
    (["train", "--env", "cartpole", "--algo", "td3", "--out", "X"], "invalid choice: 'cartpole'"),
    (["train", "--env", "pendulum", "--algo", "td3", "--mode", "se", "--mitigation",
      "per-sample-loss", "--alpha", "1", "--out", "X"], "valid combinations"),
    (["train", "--env", "pendulum", "--algo", "td3", "--mode", "sp", "--mitigation",
      "penalty", "--alpha", "1", "--out", "X"], "valid combinations"),
    (["train", "--env", "pendulum", "--algo", "td3", "--mitigation", "penalty", "--alpha", "1",
      "--out", "X"], "valid combinations"),
    (["train", "--env", "pendulum", "--algo", "td3", "--alpha", "1", "--out", "X"],
     "mitigation is 'none'"),
    (["train", "--env", "pendulum", "--algo", "td3", "--mode", "se", "--mitigation", "penalty",
      "--alpha", "-1", "--out", "X"], ">= 0"),
    (["train", "--env", "pendulum", "--algo", "td3", "--steps", "0", "--out", "X"],
     "steps must be a positive integer"),
    (["train", "--env", "pendulum", "--algo", "td3", "--steps", "-5", "--out", "X"],
     "steps must be a positive integer"),
    (["train", "--env", "pendulum", "--algo", "td3", "--steps", "ten", "--out", "X"],
     "invalid int value"),
    (["train", "--env", "pendulum", "--algo", "td3", "--set", "nope=1", "--out", "X"],
     "unknown TD3Config field"),
    (["train", "--env", "pendulum", "--algo", "ppo", "--out", "X"], "invalid choice: 'ppo'"),
    (["train", "--env", "pendulum", "--algo", "td3"], "--out"),
    (["fly"], "invalid choice: 'fly'"),
    ([], "required"),
])
def test_bad_input_gives_exit_code_2_and_one_line(tmp_path: Path, capsys, args: list[str],
                                                  message: str) -> None:
    args = [str(tmp_path / "out") if a == "X" else a for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # nothing ran


def test_non_empty_out_needs_overwrite(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(train_args(out)) == 2
    assert "not empty; pass --overwrite" in capsys.readouterr().err
    assert main(train_args(out, "--overwrite")) == 0
    assert (out / "notes.txt").read_text() == "mine"  # only result files are replaced
    assert is_complete(out)


def test_evaluate_bad_input(tmp_path: Path, capsys) -> None:
    assert main(["evaluate", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    assert main(["evaluate", str(tmp_path / "half")]) == 2
    err = capsys.readouterr().err
    assert "has no model.pt" in err and err.count("\n") == 1
    out = tmp_path / "run"
    assert main(train_args(out)) == 0
    assert main(["evaluate", str(out), "--episodes", "0"]) == 2
    assert "episodes must be a positive integer" in capsys.readouterr().err


def test_an_interrupted_run_leaves_no_result_files(tmp_path: Path, monkeypatch) -> None:
    def crash(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(training.TD3, "learn", crash)
    out = tmp_path / "run"
    assert main(train_args(out)) == 130
    assert sorted(p.name for p in out.iterdir()) == ["config.json"]  # no partial files
    assert not is_complete(out)


def test_help_exits_zero(capsys) -> None:
    assert main(["--help"]) == 0
    assert "train" in capsys.readouterr().out
    assert main(["train", "--help"]) == 0
    assert "--mitigation" in capsys.readouterr().out


def test_every_documented_python_m_command_has_an_entry_point() -> None:
    """Each ``python -m tutorial_rl....`` the README or a chapter shows runs something: the
    module exists and has a ``__main__`` block (a module without one exits silently, as
    ``tutorial_rl.sets.rci`` once did)."""
    import importlib.util
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    texts = [root / "README.md", *sorted((root / "chapters").glob("*.py")),
             *sorted((root / "chapters").glob("*.md"))]
    modules = {m for path in texts
               for m in re.findall(r"python -m (tutorial_rl(?:\.\w+)+)", path.read_text())}
    assert "tutorial_rl.sets.rci_systems" in modules
    for name in sorted(modules):
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin is not None, f"{name} does not exist"
        origin = Path(spec.origin)
        if origin.name == "__init__.py":
            origin = origin.with_name("__main__.py")
        assert origin.is_file() and 'if __name__ == "__main__":' in origin.read_text(), \
            f"python -m {name} runs nothing: no __main__ block"

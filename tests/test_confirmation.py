"""Confirmation sweeps (Chapter 8; :mod:`tutorial_rl.experiments.confirmation`): a finished
grid's chosen α retrained on fresh seeds, and the findings tested on them.

Runs use the ``ci`` profile with two α (seconds per run), through the same handlers as
``tutorial-rl``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from tutorial_rl.experiments import runner, sweep_folder
from tutorial_rl.experiments.commands import main
from tutorial_rl.experiments.config import ProfileError, get_profile
from tutorial_rl.experiments.confirmation import with_confirmation
from tutorial_rl.experiments.selection import chosen_configs
from tutorial_rl.experiments.stats import load_runs

TWO_ALPHAS = ["--set", "alphas=[0.1,0.5]"]


def sweep_args(out: Path, *extra: str) -> list[str]:
    return ["sweep", "--profile", "ci", "--out", str(out), *TWO_ALPHAS, *extra]


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished ci grid: se-vanilla and the penalty critic at α 0.1 and 0.5, seeds 0-1."""
    out = tmp_path_factory.mktemp("grid") / "sweep"
    assert main(sweep_args(out, "--jobs", "2")) == 0
    return out


@pytest.fixture(scope="module")
def confirmed(grid: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("confirm") / "sweep"
    assert main(sweep_args(out, "--jobs", "2", "--confirm", str(grid))) == 0
    return out


# --- the profile's fields -------------------------------------------------------------------

def test_first_seed_shifts_the_training_seeds() -> None:
    keys = [r.key for r in get_profile("ci", {"first_seed": 5}).runs()]
    assert keys == [k.replace("-s0", "-s5").replace("-s1", "-s6")
                    for k in (r.key for r in get_profile("ci").runs())]
    assert {r.seed for r in get_profile("ci", {"first_seed": 5}).runs()} == {5, 6}


def test_chosen_alphas_restrict_their_variants_and_cells() -> None:
    profile = get_profile("quick", {"chosen": {"td3/pendulum/se-penalty": 0.5}})
    runs = profile.runs()
    assert {(r.algo, r.env) for r in runs} == {("td3", "pendulum")}  # only the chosen cell
    penalty = {r.alpha for r in runs if r.variant == "se-penalty"}
    assert penalty == {0.5}
    # variants without a choice keep every α; vanilla ones run once per seed
    assert {r.alpha for r in runs if r.variant == "sp-per-sample-loss"} == {0.1, 0.5, 1.0, 2.0}
    assert len([r for r in runs if r.variant == "se-vanilla"]) == 7


@pytest.mark.parametrize(("setting", "match"), [
    ({"chosen": {"td3/pendulum/se-vanilla": 0.5}}, "no \"algo/env/variant\" of a mitigated"),
    ({"chosen": {"td3/moon/se-penalty": 0.5}}, "no \"algo/env/variant\""),
    ({"chosen": {"td3/pendulum": 0.5}}, "no \"algo/env/variant\""),
    ({"chosen": {"td3/pendulum/se-penalty": -1}}, "must be a finite number >= 0"),
    ({"chosen": {"td3/pendulum/se-penalty": "big"}}, "chosen alphas must be numbers"),
    ({"chosen": [0.5]}, "chosen must map"),
    ({"first_seed": -1}, "first_seed must be an integer >= 0"),
])
def test_bad_confirmation_settings_are_named(setting: dict, match: str) -> None:
    with pytest.raises(ProfileError, match=match):
        get_profile("quick", setting)


def test_sweeps_recorded_before_these_settings_still_resume(tmp_path: Path) -> None:
    """A sweep.json written before ``tuned``, ``first_seed`` and ``chosen`` existed means none,
    0 and none (``results/quick`` is such a sweep, and chapter 8's exercise confirms it)."""
    out = tmp_path / "old"
    out.mkdir()
    settings = get_profile("ci").to_dict()
    del settings["tuned"], settings["first_seed"], settings["chosen"]
    (out / runner.SWEEP_FILE).write_text(json.dumps({"settings": settings}))
    assert sweep_folder.check_resumable(out, get_profile("ci")) is not None
    with pytest.raises(ProfileError, match="first_seed differ"):
        sweep_folder.check_resumable(out, get_profile("ci", {"first_seed": 2}))


# --- tutorial-rl sweep --confirm ------------------------------------------------------------

def test_a_confirmation_trains_the_chosen_alpha_on_fresh_seeds(grid: Path,
                                                                confirmed: Path) -> None:
    expected = chosen_configs(load_runs(grid))
    alpha = float(expected.loc[expected["variant"] == "sp-penalty-critic", "alpha"].iloc[0])
    runs = load_runs(confirmed)
    assert set(runs["seed"]) == {2, 3}
    assert set(runs["variant"]) == {"se-vanilla", "sp-penalty-critic"}
    assert set(runs.loc[runs["variant"] == "sp-penalty-critic", "alpha"]) == {alpha}
    assert len(runs) == 4
    record = json.loads((confirmed / runner.SWEEP_FILE).read_text())
    assert record["settings"]["first_seed"] == 2
    assert record["settings"]["chosen"] == {"td3/pendulum/sp-penalty-critic": alpha}
    # the same command again: the same choice, nothing left to run
    before = {p: p.stat().st_mtime_ns for p in (confirmed / "runs").glob("*/done.json")}
    assert main(sweep_args(confirmed, "--confirm", str(grid))) == 0
    assert before == {p: p.stat().st_mtime_ns for p in (confirmed / "runs").glob("*/done.json")}


def test_a_confirmation_of_an_unfinished_grid_waits_for_its_cells(grid: Path, tmp_path: Path,
                                                                   capsys) -> None:
    partial = tmp_path / "partial"
    shutil.copytree(grid, partial)
    key = next(p for p in (partial / "runs").iterdir() if "penalty-critic" in p.name)
    (key / runner.DONE_FILE).unlink()
    assert main(sweep_args(tmp_path / "c", "--confirm", str(partial), "--dry-run")) == 2
    err = capsys.readouterr().err
    assert "td3/pendulum not finished there" in err and "no finished cell" in err


def test_a_confirmation_may_take_in_cells_as_they_finish(tmp_path: Path) -> None:
    """A confirmation sweep's choice grows with its grid's finished cells; a changed choice of a
    cell it has started is refused."""
    out = tmp_path / "c"
    base = {"alphas": [0.1, 0.5], "first_seed": 2}
    one = get_profile("quick", {**base, "chosen": {"td3/pendulum/se-penalty": 0.5}})
    out.mkdir()
    (out / runner.SWEEP_FILE).write_text(json.dumps({"settings": one.to_dict()}))
    more = get_profile("quick", {**base, "chosen": {"td3/pendulum/se-penalty": 0.5,
                                                      "a2c/seeker/se-penalty": 0.1}})
    assert sweep_folder.check_resumable(out, more) is not None
    other = get_profile("quick", {**base, "chosen": {"td3/pendulum/se-penalty": 0.1}})
    with pytest.raises(ProfileError, match="chosen differ"):
        sweep_folder.check_resumable(out, other)


@pytest.mark.parametrize(("extra", "match"), [
    (["--set", "steps=500"], "must train as the source grid did, but steps differ"),
    (["--set", "first_seed=4"], "--confirm sets first_seed itself"),
    (["--set", "envs=seeker", "--set", 'steps={"td3/seeker":400}'],
     "the source grid has no seeker"),
])
def test_a_confirmation_must_match_its_grid(grid: Path, tmp_path: Path, capsys,
                                           extra: list[str], match: str) -> None:
    assert main(sweep_args(tmp_path / "c", "--confirm", str(grid), *extra)) == 2
    assert match in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_confirming_a_confirmation_or_no_sweep_is_refused(confirmed: Path, tmp_path: Path,
                                                          capsys) -> None:
    assert main(sweep_args(tmp_path / "c", "--confirm", str(confirmed))) == 2
    assert "itself a confirmation sweep" in capsys.readouterr().err
    assert main(sweep_args(tmp_path / "c", "--confirm", str(tmp_path))) == 2
    assert "not a sweep folder" in capsys.readouterr().err


# --- tutorial-rl report --confirmation ------------------------------------------------------

def test_the_report_tests_on_the_fresh_seeds(grid: Path, confirmed: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    assert main(["report", str(grid), "--out", str(out), "--references", "none", "--reps", "50",
                 "--confirmation", str(confirmed)]) == 0
    findings = pd.read_csv(out / "findings.csv")
    row = findings[findings["finding"] == 4].iloc[0]  # the penalty critic against se-vanilla
    assert row["seeds"] == "test 2,3, chosen on 0,1" and row["n"] == "2 vs 2"
    assert f"confirmation sweep `{confirmed}`" in (out / "report.md").read_text()
    # the other tables stay the grid's
    assert set(pd.read_csv(out / "runs.csv")["seed"]) == {0, 1}
    plain = tmp_path / "plain"
    assert main(["report", str(grid), "--out", str(plain), "--references", "none",
                 "--reps", "50"]) == 0
    assert pd.read_csv(plain / "findings.csv").iloc[0]["seeds"] == "test 1, chosen on 0"


def test_a_report_refuses_a_confirmation_of_another_grid(grid: Path, tmp_path: Path,
                                                         capsys) -> None:
    assert main(["report", str(grid), "--out", str(tmp_path / "r"), "--references", "none",
                 "--confirmation", str(grid)]) == 2
    assert "is no confirmation sweep" in capsys.readouterr().err


def test_an_unfinished_confirmation_cell_keeps_the_split_design(grid: Path, confirmed: Path,
                                                                tmp_path: Path) -> None:
    """Findings use a confirmation cell only once all its runs are done (a half-trained cell
    would test on whichever seeds happened to finish); until then the cell keeps the split."""
    partial = tmp_path / "partial"
    shutil.copytree(confirmed, partial)
    next((partial / "runs").iterdir()).joinpath(runner.DONE_FILE).unlink()
    out = tmp_path / "report"
    assert main(["report", str(grid), "--out", str(out), "--references", "none", "--reps", "50",
                 "--confirmation", str(partial)]) == 0
    row = pd.read_csv(out / "findings.csv").iloc[0]
    assert row["seeds"] == "test 1, chosen on 0"
    text = (out / "report.md").read_text()
    assert "has finished (none yet)" in text and "not finished yet: td3/pendulum" in text


def test_without_a_confirmation_folder_the_grid_is_tested_alone(grid: Path,
                                                                tmp_path: Path) -> None:
    runs = load_runs(grid)
    tested = with_confirmation(grid, runs, None, tmp_path / "not-run-yet")
    assert tested.runs is runs and tested.selection == {} and tested.waiting == []

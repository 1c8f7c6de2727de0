"""Reference scores (tutorial_rl.experiments.references): reading reference.json and normalising
scores so that 0 is the zero action and 1 the reference controller."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tutorial_rl.experiments.references import (
    Reference,
    ReferenceFileError,
    default_reference_path,
    load_references,
    normalise,
)

#: The format `tutorial-rl reference` writes (issue 12), with made-up numbers.
FIXTURE = {
    "pendulum": {"zero": {"mean": -14.0, "returns": [-13.0, -15.0]},
                 "controller": {"mean": -6.0, "returns": [-5.5, -6.5]}},
    "seeker": {"zero": {"mean": -68.0, "returns": [-68.0]},
               "controller": {"mean": -13.0, "returns": [-13.0]}},
    "provenance": {"command": "tutorial-rl reference --env pendulum", "commit": "abc"},
}


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "reference.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_load_references_reads_every_task_and_skips_provenance(tmp_path: Path) -> None:
    refs = load_references(write(tmp_path, FIXTURE))
    assert set(refs) == {"pendulum", "seeker"}
    assert refs["pendulum"] == Reference("pendulum", -14.0, -6.0, (-13.0, -15.0), (-5.5, -6.5))


def test_normalised_scores_of_a_known_table(tmp_path: Path) -> None:
    refs = load_references(write(tmp_path, FIXTURE))
    table = pd.DataFrame({"env": ["pendulum"] * 4 + ["seeker"] * 3,
                          "score": [-14.0, -6.0, -10.0, -22.0, -68.0, -13.0, 42.0]})
    expected = [0.0, 1.0, 0.5, -1.0, 0.0, 1.0, 2.0]
    assert np.allclose(normalise(table, refs), expected)
    assert normalise(table, refs).name == "score_norm"
    assert refs["seeker"].normalise(-40.5) == pytest.approx(0.5)
    with pytest.raises(ReferenceFileError, match="no reference scores for quadrotor"):
        normalise(pd.DataFrame({"env": ["quadrotor"], "score": [1.0]}), refs)


def test_missing_file_names_the_command_that_writes_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="tutorial-rl reference"):
        load_references(tmp_path / "nowhere.json")


@pytest.mark.parametrize(("data", "match"), [
    ("{not json", "not valid JSON"),
    ([1, 2], "must hold an object"),
    ({"pendulum": {"zero": {"mean": -14.0}}}, "pendulum lacks controller"),
    ({"pendulum": {"zero": {"mean": "low"}, "controller": {"mean": 1.0}}},
     "pendulum.zero.mean must be a finite number"),
    ({"pendulum": {"zero": {"mean": 1.0, "returns": "x"}, "controller": {"mean": 2.0}}},
     "returns must be a list"),
    ({"pendulum": {"zero": {"mean": 3.0}, "controller": {"mean": 3.0}}}, "divide by zero"),
    ({"pendulum": {"zero": 3.0, "controller": {"mean": 4.0}}}, "must be an object"),
    ({"provenance": {}}, "holds no task"),
])
def test_malformed_files_are_named(tmp_path: Path, data: object, match: str) -> None:
    with pytest.raises(ReferenceFileError, match=match):
        load_references(write(tmp_path, data))


def test_default_path_is_next_to_the_sweep_folder() -> None:
    assert default_reference_path("results/quick") == Path("results/reference/reference.json")
    assert default_reference_path("results/quick/") == Path("results/reference/reference.json")

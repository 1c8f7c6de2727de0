"""Tuning the unsafe baselines (``tutorial-rl tune``) and the tuned values of the paper profile.

A tiny study must run, prune and resume from its SQLite file; the paper profile must carry
exactly the studies' best parameters (through the committed tuned file).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tutorial_rl.agents.common import ConfigError
from tutorial_rl.experiments import tuned_values, tuning
from tutorial_rl.experiments.cli import main
from tutorial_rl.experiments.config import get_profile

REPO = Path(__file__).resolve().parents[1]
STUDIES_DB = REPO / "results" / "tuning" / "studies.db"


@pytest.fixture
def fast_protocol(monkeypatch: pytest.MonkeyPatch) -> None:
    """One-episode evaluations and an eager pruner: a study of a few seconds that prunes."""
    monkeypatch.setattr(tuning, "EVALS_PER_SEED", 3)
    monkeypatch.setattr(tuning, "INTERMEDIATE_EPISODES", 1)
    monkeypatch.setattr(tuning, "FINAL_EPISODES", 1)
    monkeypatch.setattr(tuning, "PRUNER_STARTUP_TRIALS", 1)
    monkeypatch.setattr(tuning, "PRUNER_WARMUP_EVALS", 0)


def _states(storage: str, name: str) -> list[str]:
    import optuna

    study = optuna.load_study(study_name=name, storage=storage)
    return [t.state.name for t in study.trials]


def test_tiny_study_runs_prunes_and_resumes(tmp_path: Path, fast_protocol: None) -> None:
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    kwargs = dict(storage=storage, steps=300, seeds=(100, 101), sampler_seed=0)
    first = tuning.run_study("td3", "pendulum", 4, **kwargs)
    assert (first["finished_before"], first["finished_after"]) == (0, 4)
    import optuna

    study = optuna.load_study(study_name="td3-pendulum", storage=storage)
    params_before = [t.params for t in study.trials]
    # trials train as the paper grid's runs will (TD3's warm-up pinned), whatever the profile
    assert study.user_attrs["protocol"]["pinned"] == get_profile("paper").agent["td3"]
    # every trial reported its evaluations at the pruner's common steps (seed index × evals + k)
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert complete and all(sorted(t.intermediate_values) == list(range(6)) for t in complete)
    for t in complete:
        seeds = [t.user_attrs[f"score_seed_{s}"] for s in (100, 101)]
        assert t.value == pytest.approx(sum(seeds) / 2)
    resumed = tuning.run_study("td3", "pendulum", 8, **kwargs)
    assert (resumed["finished_before"], resumed["finished_after"]) == (4, 8)
    states = _states(storage, "td3-pendulum")
    assert len(states) == 8 and "PRUNED" in states, states
    study = optuna.load_study(study_name="td3-pendulum", storage=storage)
    assert [t.params for t in study.trials[:4]] == params_before  # the old trials are kept
    # a pruned trial stopped early: fewer evaluations than a complete one
    pruned = [t for t in study.trials if t.state.name == "PRUNED"]
    assert all(len(t.intermediate_values) < 6 for t in pruned)
    # each invocation is in the provenance, the latest with the trial counts
    prov = json.loads((tmp_path / "provenance.json").read_text())
    assert prov["finished_trials_after"] == 8 and len(prov["previous_invocations"]) == 1
    assert prov["finished_trials_before"] == 4 and prov["wall_time_s"] > 0
    # a rerun that asks for no more trials does nothing
    assert tuning.run_study("td3", "pendulum", 8, **kwargs)["finished_after"] == 8
    # the appendix's summary: counts by state and the trials' summed duration (core-hours)
    from tutorial_rl.experiments.tuning_plots import trial_counts, trial_hours

    counts = trial_counts(study)
    assert counts["complete"] + counts["pruned"] == 8 and counts["running"] == 0
    durations = [(t.datetime_complete - t.datetime_start).total_seconds() for t in study.trials
                 if t.state.name in ("COMPLETE", "PRUNED")]
    assert trial_hours(study) == pytest.approx(sum(durations) / 3600) and trial_hours(study) > 0
    # every reported evaluation of the finished trials, in trial order
    from tutorial_rl.experiments.tuning_plots import evaluation_values

    values = evaluation_values(study)
    assert len(values) == sum(len(t.intermediate_values) for t in study.trials)
    first = list(study.trials[0].intermediate_values.values())
    assert first and values[:len(first)] == first


def test_study_refuses_another_protocol(tmp_path: Path, fast_protocol: None) -> None:
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    tuning.run_study("a2c", "pendulum", 1, storage=storage, steps=200, seeds=(100,))
    with pytest.raises(ConfigError, match="steps_per_seed"):
        tuning.run_study("a2c", "pendulum", 2, storage=storage, steps=400, seeds=(100,))


def test_export_and_profile_use_the_best_trial(tmp_path: Path, fast_protocol: None) -> None:
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    tuning.run_study("td3", "pendulum", 2, storage=storage, steps=250, seeds=(100,),
                     sampler_seed=1)
    out = tmp_path / "tuned.json"
    tuned = tuned_values.export_tuned(storage, out)
    import optuna

    study = optuna.load_study(study_name="td3-pendulum", storage=storage)
    assert tuned["td3/pendulum"]["agent"] == tuning.params_to_overrides(study.best_params)
    assert tuned_values.load_tuned(out) == {"td3/pendulum": tuned["td3/pendulum"]["agent"]}
    width = study.best_params["width"]
    assert tuned["td3/pendulum"]["agent"]["hidden_sizes"] == [width, width]


def test_search_space_names_config_fields_and_bad_input() -> None:
    assert set(tuning.SEARCH_SPACE) == {"td3", "a2c"}
    assert {"learning_rate", "batch_size", "tau", "width"} <= set(tuning.SEARCH_SPACE["td3"])
    assert {"n_steps", "gae_lambda", "entropy_coef", "value_coef", "max_grad_norm"} \
        <= set(tuning.SEARCH_SPACE["a2c"])
    with pytest.raises(ConfigError, match="unknown env"):
        tuning.study_name("td3", "cartpole")
    with pytest.raises(ConfigError, match="--trials"):
        tuning.run_study("td3", "pendulum", 0, storage="sqlite:///unused.db")


def test_tune_command_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tune", "--env", "pendulum", "--algo", "td3", "--trials", "2",
                 "--seeds", "a,b"]) == 2
    assert "comma-separated integers" in capsys.readouterr().err


def test_bad_tuned_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "tuned.json"
    bad.write_text('{"studies": {"td3/pendulum": {}}}')
    with pytest.raises(ConfigError, match="not a tuned-hyperparameter file"):
        tuned_values.load_tuned(bad)
    assert tuned_values.load_tuned(tmp_path / "missing.json") == {}


def test_paper_profile_carries_the_committed_tuned_values() -> None:
    tuned = tuned_values.load_tuned()
    profile = get_profile("paper")
    for run in profile.runs():
        expected = {**tuned.get(f"{run.algo}/{run.env}", {}), **profile.agent.get(run.algo, {})}
        assert run.agent == expected


@pytest.mark.skipif(not STUDIES_DB.is_file(), reason="no committed studies database")
def test_committed_tuned_file_matches_the_studies_database() -> None:
    """The paper profile's values equal the studies' best parameters."""
    import optuna

    storage = f"sqlite:///{STUDIES_DB}"
    committed = json.loads(tuned_values.TUNED_FILE.read_text())["studies"] \
        if tuned_values.TUNED_FILE.is_file() else {}
    for summary in optuna.get_all_study_summaries(storage):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        if not any(t.state.name == "COMPLETE" for t in study.trials):
            continue
        algo, env = summary.study_name.split("-", 1)
        assert f"{algo}/{env}" in committed, f"{summary.study_name}: run 'tutorial-rl tune-export'"
        assert committed[f"{algo}/{env}"]["agent"] == tuned_values.best_overrides(study), \
            f"{summary.study_name}: rerun 'tutorial-rl tune-export'"
        assert committed[f"{algo}/{env}"]["best_value"] == pytest.approx(study.best_value)

"""The experiment runner (Chapter 8): profiles, ``tutorial-rl sweep`` and ``report`` end to end,
resuming after a kill, failing runs, the submitit path and bad input.

Runs use the ``ci`` profile (seconds per run); the subcommands are called through
:func:`tutorial_rl.experiments.commands.main`, the same handlers ``tutorial-rl`` dispatches to.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tutorial_rl.agents.common import VALID_MITIGATIONS
from tutorial_rl.experiments import launchers, runner, sweep_folder
from tutorial_rl.experiments.commands import main
from tutorial_rl.experiments.config import (
    PROFILES,
    VARIANTS,
    ProfileError,
    get_profile,
    run_key,
    select_runs,
)
from tutorial_rl.experiments.costs import estimate_wall_time
from tutorial_rl.experiments.runner import run_status, sweep
from tutorial_rl.experiments.training import env_defaults

SE_ONLY = ["--only", "variant=se-vanilla"]  # the two cheapest runs of the ci profile


def sweep_args(out: Path, *extra: str) -> list[str]:
    return ["sweep", "--profile", "ci", "--out", str(out), *extra]


def done_records(out: Path) -> dict[str, tuple[int, str]]:
    """key -> (mtime_ns, content) of every done.json."""
    return {p.parent.name: (p.stat().st_mtime_ns, p.read_text())
            for p in (out / "runs").glob("*/done.json")}


@pytest.fixture(scope="module")
def ci_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ci") / "sweep"
    assert main(sweep_args(out, "--jobs", "2")) == 0
    return out


# --- profiles -------------------------------------------------------------------------------

def test_run_keys_are_stable_folder_names() -> None:
    assert run_key("td3", "se-penalty", 0.1, "pendulum", 3) == "td3-se-penalty-a0.1-pendulum-s3"
    assert run_key("a2c", "sp-vanilla", None, "seeker", 0) == "a2c-sp-vanilla-seeker-s0"
    assert run_key("td3", "se-penalty", 1, "pendulum", 0) == \
        run_key("td3", "se-penalty", 1.0, "pendulum", 0)


def test_quick_and_paper_cover_the_whole_grid() -> None:
    paper, quick = PROFILES["paper"], PROFILES["quick"]
    # 3 tasks × 2 algorithms × (2 vanilla + 3 mitigations × 4 α) × 7 seeds
    assert len(paper.runs()) == len(quick.runs()) == 3 * 2 * (2 + 3 * 4) * 7
    assert [r.key for r in paper.runs()] == [r.key for r in quick.runs()]
    assert len({r.key for r in paper.runs()}) == 588
    assert paper.seeds == 7 and paper.eval_episodes == 10 and paper.alphas == (0.1, 0.5, 1, 2)
    for mode, mitigation in VARIANTS.values():
        assert mitigation in VALID_MITIGATIONS[mode]


def test_paper_budgets_are_the_task_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUTORIAL_RL_PROFILE", "full")
    for cell, steps in PROFILES["paper"].steps.items():
        algo, env = cell.split("/")
        assert env_defaults(env, algo)["steps"] == steps, cell


def test_quick_fits_an_hour_on_two_cores() -> None:
    assert estimate_wall_time(PROFILES["quick"], cores=2) <= 3600
    assert estimate_wall_time(PROFILES["paper"], cores=16) > 3600  # not a smoke test
    assert estimate_wall_time(PROFILES["ci"], cores=2) < 60


def test_profiles_are_frozen_and_overrides_make_copies() -> None:
    ci = PROFILES["ci"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        ci.seeds = 3  # type: ignore[misc]
    changed = get_profile("ci", {"seeds": 3, "steps": 50, "td3.batch_size": 16})
    assert (changed.seeds, changed.steps, changed.agent["td3"]["batch_size"]) == \
        (3, {"td3/pendulum": 50}, 16)
    assert changed.agent["td3"]["learning_starts"] == ci.agent["td3"]["learning_starts"]
    assert ci.seeds == 2


def test_only_filters() -> None:
    ci = PROFILES["ci"]
    assert [r.key for r in select_runs(ci, ["alpha=none", "seed=1"])] == \
        ["td3-se-vanilla-pendulum-s1"]
    assert len(select_runs(ci, ["variant=se-vanilla,sp-penalty-critic", "alpha=0.50"])) == 2
    with pytest.raises(ProfileError, match="did you mean 'pendulum'"):
        select_runs(ci, ["env=pendulm"])


# --- the ci profile end to end ----------------------------------------------------------------

def test_ci_sweep_and_report(ci_sweep: Path, tmp_path: Path) -> None:
    keys = {r.key for r in PROFILES["ci"].runs()}
    assert set(done_records(ci_sweep)) == keys
    assert {p.name for p in (ci_sweep / "runs").iterdir()} == keys  # no temporary folders left
    for key in keys:
        assert {"config.json", "progress.csv", "model.pt", "evaluation.json", "done.json"} <= \
            {p.name for p in (ci_sweep / "runs" / key).iterdir()}
    meta = json.loads((ci_sweep / "sweep.json").read_text())
    assert meta["profile"] == "ci" and meta["summary"]["completed"] == 4
    prov = json.loads((ci_sweep / "provenance.json").read_text())
    assert prov["wall_time_s"] > 0 and prov["command"].startswith("tutorial-rl sweep")

    out = tmp_path / "report"
    assert main(["report", str(ci_sweep), "--out", str(out), "--reps", "200"]) == 0
    for name in ("report.md", "final_performance.png", "training_curves.png",
                 "interventions.png"):
        assert (out / name).is_file(), name
    final = pd.read_csv(out / "final_performance.csv")
    assert sorted(final["config"]) == ["se-vanilla", "sp-penalty-critic α=0.5"]
    assert (final["n"] == 2).all() and (final["ci_low"] <= final["iqm"]).all()
    assert len(pd.read_csv(out / "runs.csv")) == 4
    assert len(pd.read_csv(out / "interventions.csv")) == 2
    assert len(pd.read_csv(out / "kruskal.csv")) == 1 and len(pd.read_csv(out / "dunn.csv")) == 1
    assert len(pd.read_csv(out / "compute_cost.csv")) == 2
    assert not pd.read_csv(out / "curves.csv").empty
    assert "## Final performance" in (out / "report.md").read_text()


def test_a_profile_round_trips_through_sweep_json_settings() -> None:
    """``from_dict(to_dict())`` rebuilds the same grid (the report rebuilds a sweep's grid from
    its ``sweep.json``); settings that do not describe a profile are refused by name."""
    from tutorial_rl.experiments.config import ExperimentProfile

    for name in ("ci", "quick", "paper"):
        profile = get_profile(name)
        rebuilt = ExperimentProfile.from_dict(json.loads(json.dumps(profile.to_dict())))
        assert rebuilt == profile
        assert [s.key for s in rebuilt.runs()] == [s.key for s in profile.runs()]
    older = {k: v for k, v in get_profile("paper").to_dict().items()
             if k not in ("first_seed", "chosen")}  # files written before these settings
    assert ExperimentProfile.from_dict(older) == get_profile("paper")
    with pytest.raises(ProfileError, match=r"missing \['name'\]"):
        ExperimentProfile.from_dict({"eval_episodes": 3})
    with pytest.raises(ProfileError, match=r"unknown \['budget'\]"):
        ExperimentProfile.from_dict({**get_profile("ci").to_dict(), "budget": 1})


def test_rerun_skips_finished_runs(ci_sweep: Path, capsys: pytest.CaptureFixture) -> None:
    before = done_records(ci_sweep)
    first = json.loads((ci_sweep / "provenance.json").read_text())
    assert main(sweep_args(ci_sweep, "--jobs", "2")) == 0
    assert "4 already done, 0 completed" in capsys.readouterr().out
    assert done_records(ci_sweep) == before
    # the resumed invocation's provenance keeps the first one's record
    prov = json.loads((ci_sweep / "provenance.json").read_text())
    earlier = first.pop("previous_invocations")
    assert prov["previous_invocations"] == [*earlier, first]
    assert "jobs" in prov and prov["jobs"] == 2


def test_dry_run_lists_what_is_left(ci_sweep: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(sweep_args(ci_sweep, "--dry-run")) == 0
    assert "4 done, 0 to run" in capsys.readouterr().err


def test_resuming_with_other_settings_is_refused(ci_sweep: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    assert main(sweep_args(ci_sweep, "--set", "seeds=3")) == 2
    assert "seeds differ" in capsys.readouterr().err


def test_new_tuned_values_reach_only_cells_without_runs(ci_sweep: Path) -> None:
    """A folder's runs keep the hyperparameters they were trained with: new tuned values for a
    cell with no runs there are taken up on resume; for a cell with runs the resume is refused,
    naming the cell."""
    from tutorial_rl.experiments.sweep_folder import check_resumable

    ci = PROFILES["ci"]
    elsewhere = dataclasses.replace(ci, tuned={**ci.tuned, "a2c/seeker": {"n_steps": 8}})
    assert check_resumable(ci_sweep, elsewhere) is not None
    here = dataclasses.replace(ci, tuned={**ci.tuned, "td3/pendulum": {"tau": 0.01}})
    with pytest.raises(ProfileError, match=r"other tuned hyperparameters \(td3/pendulum\)"):
        check_resumable(ci_sweep, here)


# --- interruption, failures, launchers ------------------------------------------------------

def test_a_killed_sweep_resumes_without_losing_or_redoing_finished_runs(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    args = sweep_args(out, "--jobs", "1", *SE_ONLY, "--set", "steps=1000")
    proc = subprocess.Popen([sys.executable, "-m", "tutorial_rl.experiments.commands", *args],
                            start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:  # wait until the first run is finished and the second one is training
        while not (done_records(out) and any((out / "runs").glob(".tmp-*/config.json"))):
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "the sweep never reached its second run"
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # our own child's process group
        proc.wait()
    finished = done_records(out)
    assert len(finished) == 1
    partial = [p.name for p in (out / "runs").glob(".tmp-*")]
    assert len(partial) == 1  # the interrupted run never reached runs/<key>

    assert main(args) == 0
    after = done_records(out)
    keys = {run_key("td3", "se-vanilla", None, "pendulum", s) for s in (0, 1)}
    assert set(after) == keys and {p.name for p in (out / "runs").iterdir()} == keys
    (key, record), = finished.items()
    assert after[key] == record  # the finished run was neither lost nor redone
    redone = json.loads(after[(keys - {key}).pop()][1])
    assert redone["pid"] == os.getpid()  # redone by this process, not the killed one


def test_a_crashing_run_is_recorded_and_the_sweep_goes_on(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "sweep"
    bad = run_key("td3", "se-vanilla", None, "pendulum", 0)
    assert main(sweep_args(out, *SE_ONLY, "--set", f'inject_failure=["{bad}"]')) == 1
    assert "2 runs selected, 0 already done, 1 completed, 1 FAILED" in capsys.readouterr().out
    failed = json.loads((out / "runs" / bad / "failed.json").read_text())
    assert failed["error"].startswith("RuntimeError: injected failure")
    assert "Traceback" in failed["traceback"] and failed["spec"]["key"] == bad
    assert run_status(out / "runs" / bad) == "failed"
    assert run_status(out / "runs" / run_key("td3", "se-vanilla", None, "pendulum", 1)) == "done"
    assert json.loads((out / "sweep.json").read_text())["summary"]["failed"] == [bad]

    report = tmp_path / "report"
    assert main(["report", str(out), "--out", str(report), "--reps", "100"]) == 0
    assert list(pd.read_csv(report / "failures.csv")["key"]) == [bad]
    assert "## Failed runs" in (report / "report.md").read_text()

    assert main(sweep_args(out, *SE_ONLY)) == 0  # a rerun retries the failed run
    assert run_status(out / "runs" / bad) == "done"


def test_submitit_launcher_runs_locally_without_slurm(tmp_path: Path) -> None:
    summary = sweep("ci", tmp_path / "sweep", jobs=2, launcher="submitit",
                    only=["variant=se-vanilla"])
    assert summary.exit_code == 0 and summary.completed == 2
    assert len(done_records(tmp_path / "sweep")) == 2
    assert any((tmp_path / "sweep" / "submitit").glob("*_log.out"))  # submitit's own logs


def test_finalize_never_replaces_a_finished_run(tmp_path: Path) -> None:
    def attempt(name: str, marker: str) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        (folder / marker).write_text(name)
        return folder

    final = tmp_path / "run"
    runner._finalize(attempt("a", runner.FAILED_FILE), final, done=False)
    assert run_status(final) == "failed"
    runner._finalize(attempt("b", runner.DONE_FILE), final, done=True)  # done beats failed
    assert (final / runner.DONE_FILE).read_text() == "b"
    runner._finalize(attempt("c", runner.DONE_FILE), final, done=True)  # first done wins
    assert (final / runner.DONE_FILE).read_text() == "b"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_a_second_sweep_into_the_same_folder_is_refused(tmp_path: Path) -> None:
    tmp_path.mkdir(exist_ok=True)
    with sweep_folder.sweep_lock(tmp_path), pytest.raises(ProfileError, match="another sweep"):
        sweep("ci", tmp_path, only=["variant=se-vanilla"])


def test_progress_bar_only_on_a_terminal() -> None:
    with launchers.progress_bar(3, None) as bar:  # pytest captures stderr: not a terminal
        assert bar.disable


# --- bad input --------------------------------------------------------------------------------

@pytest.mark.parametrize(("extra", "message"), [
    (["--profile", "quik"], "unknown profile 'quik' (did you mean 'quick'?); valid profiles: "
                            "ci, quick, paper"),
    (["--set", "step=1000"], "unknown setting 'step' (did you mean 'steps'?)"),
    (["--set", "steps=0"], "must be an integer >= 1"),
    (["--set", "seeds=two"], "seeds must be an integer >= 1; got 'two'"),
    (["--set", "variants=se-vanila"], "did you mean 'se-vanilla'?"),
    (["--set", "td3.batch_sise=8"], "valid td3 agent fields: hidden_sizes"),
    (["--set", "steps"], "--set expects KEY=VALUE"),
    (["--only", "env=pendulm"], "unknown env value 'pendulm' (did you mean 'pendulum'?)"),
    (["--only", "colour=red"], "valid --only keys: env, algo, variant, alpha, seed, key"),
    (["--only", "env=seeker"], "valid env values: pendulum"),
    (["--jobs", "0"], "jobs must be an integer >= 1"),
])
def test_bad_sweep_input_exits_2_before_running(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                extra: list[str], message: str) -> None:
    out = tmp_path / "sweep"
    args = ["sweep", "--out", str(out), *extra]
    if "--profile" not in extra:
        args += ["--profile", "ci"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()  # nothing ran, nothing was written


def test_bad_launcher_is_an_argparse_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(sweep_args(tmp_path, "--launcher", "slurm"))
    assert exc.value.code == 2


def test_report_of_a_folder_that_is_no_sweep(tmp_path: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    assert main(["report", str(tmp_path)]) == 2
    assert "is not a sweep folder" in capsys.readouterr().err


def test_tutorial_rl_command_line_when_wired() -> None:
    from tutorial_rl.experiments import cli

    if "sweep" not in cli.build_parser().format_help():
        pytest.skip("sweep/report are not wired into tutorial-rl yet")
    assert cli.main(["sweep", "--profile", "quik", "--out", "unused"]) == 2


def test_the_estimate_names_cells_whose_networks_differ_from_the_cost_tables() -> None:
    """The per-step cost tables were measured with the default networks: a cell that overrides
    them is named, with its sizes and the tables', and a default cell is not."""
    from tutorial_rl.experiments.config import RunSpec
    from tutorial_rl.experiments.costs import cost_table_mismatches

    base = dict(env="seeker", algo="td3", variant="se-vanilla", mode="se", mitigation="none",
                alpha=None, seed=0, steps=10, eval_episodes=1, eval_seed=0,
                projection_method="exact")
    wide = RunSpec(key="a", agent={"hidden_sizes": [256, 256], "batch_size": 256}, **base)
    same = RunSpec(key="b", agent={"hidden_sizes": [128, 128]}, **{**base, "env": "quadrotor"})
    found = cost_table_mismatches([wide, same])
    assert found == {"td3/seeker": "hidden [256, 256] (tables: [128, 128])"}
    assert cost_table_mismatches(get_profile("quick").runs()) == {}


def test_finished_runs_say_what_a_configuration_costs(ci_sweep: Path, tmp_path: Path) -> None:
    """measured_ms_per_step: the median training ms per step of a configuration's finished runs,
    keyed by algorithm, task, variant and agent settings; unreadable records are skipped."""
    import shutil
    import statistics

    from tutorial_rl.experiments.config import RunSpec
    from tutorial_rl.experiments.costs import estimate_run_seconds, measured_ms_per_step

    measured = measured_ms_per_step([ci_sweep, tmp_path / "no-such-sweep"])
    records = [json.loads(p.read_text()) for p in (ci_sweep / "runs").glob("*/done.json")]
    assert len(measured) == len({(r["spec"]["algo"], r["spec"]["env"], r["spec"]["variant"])
                                 for r in records})  # the ci profile: one agent setting per cell
    for (algo, env, variant, agent), ms in measured.items():
        mine = [1000 * r["training"]["wall_time_s"] / r["training"]["steps"] for r in records
                if (r["spec"]["algo"], r["spec"]["env"], r["spec"]["variant"]) ==
                (algo, env, variant)]
        assert ms == pytest.approx(statistics.median(mine))
        assert json.loads(agent) == next(r["spec"]["agent"] for r in records
                                         if r["spec"]["variant"] == variant
                                         and r["spec"]["env"] == env)
    spec_record = records[0]["spec"]
    spec = RunSpec(**spec_record)
    key = next(k for k in measured if k[:3] == (spec.algo, spec.env, spec.variant))
    assert estimate_run_seconds(spec, 1, {key: 1000.0}) == pytest.approx(
        estimate_run_seconds(spec, 1, {key: 1.0}) + spec.steps * 999.0 / 1000)
    wider = dataclasses.replace(spec, agent={**spec.agent, "hidden_sizes": [512, 512]})
    assert estimate_run_seconds(wider, 1, {key: 1000.0}) == estimate_run_seconds(wider)

    broken = tmp_path / "broken"
    shutil.copytree(ci_sweep / "runs", broken / "runs")
    for done in list((broken / "runs").glob("*/done.json"))[:2]:
        done.write_text("{not json")
    assert 0 < len(measured_ms_per_step([broken])) <= len(measured)


def test_a_sweep_orders_its_units_by_what_finished_runs_cost(
        ci_sweep: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With --confirm's grid as a cost source, a configuration its runs show to be the slowest
    is started first, whatever the tables say (here SE-RL vanilla, the tables' cheapest)."""
    import shutil

    started: list[list[str]] = []
    monkeypatch.setattr(runner, "launch_local", lambda units, *args: started.extend(
        [s.variant for s in unit] for unit in units))
    slow = tmp_path / "grid"
    shutil.copytree(ci_sweep / "runs", slow / "runs")
    for done in (slow / "runs").glob("td3-se-vanilla-*/done.json"):
        record = json.loads(done.read_text())
        record["training"]["wall_time_s"] *= 1000.0  # as if SE-RL vanilla had crawled
        done.write_text(json.dumps(record))

    sweep("ci", tmp_path / "by-tables", progress=False)
    assert started[0][0] != "se-vanilla"
    started.clear()
    sweep("ci", tmp_path / "by-runs", progress=False, cost_sources=[slow])
    assert started[0][0] == "se-vanilla"

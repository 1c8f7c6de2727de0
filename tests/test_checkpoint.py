"""Exact checkpoints (:mod:`tutorial_rl.experiments.checkpoint`): a run stopped at a checkpoint,
or killed with SIGKILL at any moment, and run again ends with the same ``progress.csv`` (wall time
aside) and the same ``model.pt``, bit for bit, as a run that never stopped; sweeps too."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tutorial_rl.experiments import checkpoint as checkpoint_module
from tutorial_rl.experiments.checkpoint import CHECKPOINT_FILE, auto_checkpoint_every
from tutorial_rl.experiments.cli import main as cli_main
from tutorial_rl.experiments.commands import main as sweep_main
from tutorial_rl.experiments.config import run_key
from tutorial_rl.experiments.training import RunConfig, is_complete, train

TD3_TINY = {"learning_starts": 50, "batch_size": 16}


def progress(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return [{k: v for k, v in row.items() if k != "wall_time"} for row in csv.DictReader(fh)]


def assert_same_run(a: Path, b: Path) -> None:
    """Same progress.csv (wall time aside) and the same model.pt, tensor by tensor."""
    assert progress(a / "progress.csv") == progress(b / "progress.csv")
    ma, mb = (torch.load(d / "model.pt", weights_only=True) for d in (a, b))
    assert ma.keys() == mb.keys()
    for net in ma:
        assert ma[net].keys() == mb[net].keys()
        for name in ma[net]:
            assert torch.equal(ma[net][name], mb[net][name]), (net, name)


class Stop(Exception):
    """Raised right after a checkpoint is written: the run stops there."""


@pytest.mark.parametrize(("env", "algo", "mode", "mitigation", "alpha"), [
    ("pendulum", "td3", "sp", "penalty-critic", 0.5),
    ("seeker", "td3", "sp", "per-sample-loss", 1.0),
    ("quadrotor", "td3", "se", "penalty", 0.5),
    ("pendulum", "a2c", "sp", "per-sample-loss", 1.0),
    ("seeker", "a2c", "se", "none", None),
])
def test_a_run_continued_from_a_checkpoint_equals_an_uninterrupted_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: str, algo: str, mode: str,
        mitigation: str, alpha: float | None) -> None:
    config = dict(env=env, algo=algo, mode=mode, mitigation=mitigation, alpha=alpha, steps=300,
                  seed=3, agent=TD3_TINY if algo == "td3" else {}, progress_bar=False,
                  num_threads=1)
    train(RunConfig(**config, out=tmp_path / "whole", checkpoint_every=0))
    assert not (tmp_path / "whole" / CHECKPOINT_FILE).exists()

    save = checkpoint_module.Checkpoint.save

    def save_then_stop(self: checkpoint_module.Checkpoint) -> None:
        save(self)
        if self._objects[0].steps >= 150:  # in the middle of an episode
            raise Stop

    monkeypatch.setattr(checkpoint_module.Checkpoint, "save", save_then_stop)
    with pytest.raises(Stop):
        train(RunConfig(**config, out=tmp_path / "cut", checkpoint_every=70))
    assert (tmp_path / "cut" / CHECKPOINT_FILE).is_file() and not is_complete(tmp_path / "cut")
    monkeypatch.setattr(checkpoint_module.Checkpoint, "save", save)
    result = train(RunConfig(**config, out=tmp_path / "cut", checkpoint_every=70))
    assert result.agent.steps == 300
    assert not (tmp_path / "cut" / CHECKPOINT_FILE).exists()  # removed once finished
    assert_same_run(tmp_path / "whole", tmp_path / "cut")


def _kill_when(proc: subprocess.Popen, ready: callable, what: str, delay: float) -> None:
    """SIGKILL ``proc``'s process group ``delay`` seconds after ``ready()`` first holds."""
    deadline = time.monotonic() + 120
    try:
        while not ready():
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, f"never reached: {what}"
            time.sleep(0.01)
        time.sleep(delay)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # our own child's process group
        proc.wait()


@pytest.mark.parametrize("delay", [0.05])
def test_train_killed_with_sigkill_resumes_bit_for_bit(tmp_path: Path, delay: float) -> None:
    args = ["train", "--env", "pendulum", "--algo", "td3", "--mode", "sp", "--steps", "600",
            "--seed", "2", "--set", "learning_starts=50", "--set", "batch_size=16",
            "--checkpoint-every", "150"]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert cli_main([*args, "--out", str(whole)]) == 0
    proc = subprocess.Popen([sys.executable, "-m", "tutorial_rl.experiments.cli", *args,
                             "--out", str(cut)], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _kill_when(proc, (cut / CHECKPOINT_FILE).is_file, "a checkpoint", delay)
    if is_complete(cut):  # a slow machine reached the end: nothing to resume
        pytest.skip("the run finished before it was killed")
    assert cli_main([*args, "--out", str(cut)]) == 0  # the same command continues it
    assert sorted(p.name for p in cut.iterdir()) == ["config.json", "model.pt", "progress.csv"]
    assert_same_run(whole, cut)


@pytest.mark.parametrize("group_size", ["1", "2"])
def test_a_sweep_killed_with_sigkill_resumes_bit_for_bit(tmp_path: Path, group_size: str) -> None:
    args = ["--only", "variant=se-vanilla", "--set", "steps=600", "--checkpoint-every", "100",
            "--group-size", group_size]  # 2: both seeds train as one group, one checkpoint
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert sweep_main(["sweep", "--profile", "ci", "--out", str(whole), *args]) == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "tutorial_rl.experiments.commands", "sweep", "--profile", "ci",
         "--out", str(cut), *args], start_new_session=True, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE)
    _kill_when(proc, lambda: any((cut / "checkpoints").glob("*.pt")), "a checkpoint", 0.05)
    assert list((cut / "checkpoints").glob("*.pt")), "the kill came after every checkpoint"
    assert sweep_main(["sweep", "--profile", "ci", "--out", str(cut), *args]) == 0
    assert not list((cut / "checkpoints").iterdir())
    for seed in (0, 1):
        key = run_key("td3", "se-vanilla", None, "pendulum", seed)
        assert_same_run(whole / "runs" / key, cut / "runs" / key)


def test_checkpoint_every_is_validated_and_auto_targets_ten_minutes(tmp_path: Path,
                                                                     capsys) -> None:
    assert auto_checkpoint_every(6.0) == 100_000  # 600 s at 6 ms per step
    assert auto_checkpoint_every(1e3) == 1_000  # never more often than every 1,000 steps
    assert cli_main(["train", "--env", "pendulum", "--algo", "td3", "--steps", "10",
                     "--checkpoint-every", "-1", "--out", str(tmp_path / "x")]) == 2
    assert "checkpoint_every must be an integer >= 0" in capsys.readouterr().err
    assert cli_main(["sweep", "--profile", "ci", "--out", str(tmp_path / "s"),
                       "--checkpoint-every", "soon"]) == 2


class _Steps:
    """What a :class:`Checkpoint` reads from its agent (``steps``) and recorder."""

    steps = 0

    def state_dict(self) -> dict:
        return {}


def test_auto_checkpoints_also_fall_due_on_wall_time(tmp_path: Path, monkeypatch, capsys) -> None:
    """Auto mode's step count comes from cost estimates a busy machine can exceed several times
    over, so it also saves once ``TARGET_SECONDS`` have passed; a step count alone never does."""
    clock = [100.0]
    monkeypatch.setattr(checkpoint_module.time, "monotonic", lambda: clock[0])
    saved: list[Path] = []

    def write(path: Path, fn) -> None:
        saved.append(path)

    agent = _Steps()
    timed = checkpoint_module.Checkpoint(tmp_path / "t.pt", 10**9, {}, write,
                                         max_seconds=checkpoint_module.TARGET_SECONDS)
    by_steps = checkpoint_module.Checkpoint(tmp_path / "s.pt", 10**9, {}, write)
    for saver in (timed, by_steps):
        saver.attach(agent, None, _Steps())
    agent.steps = 5
    clock[0] += checkpoint_module.TARGET_SECONDS - 1
    timed(agent.steps), by_steps(agent.steps)
    assert saved == []  # not yet
    clock[0] += 2
    timed(agent.steps), by_steps(agent.steps)
    assert saved == [tmp_path / "t.pt"]
    assert "t.pt: step 5" in capsys.readouterr().err  # a long sweep reports its progress
    timed(agent.steps)  # no new step since the save: nothing to add
    clock[0] += 10 * checkpoint_module.TARGET_SECONDS
    timed(agent.steps)
    assert saved == [tmp_path / "t.pt"]
    with pytest.raises(ValueError, match="max_seconds must be > 0"):
        checkpoint_module.Checkpoint(tmp_path / "x.pt", 1, {}, write, max_seconds=0)


def _loky_workers_of(pid: int) -> list[int]:
    """The loky worker processes among the descendants of process ``pid``."""
    table = subprocess.run(["ps", "-ww", "-eo", "pid=,ppid=,args="], capture_output=True,
                           text=True, check=True).stdout
    rows = [line.split(None, 2) for line in table.splitlines() if line.strip()]
    parent = {int(r[0]): int(r[1]) for r in rows}

    def descends(p: int) -> bool:
        while p > 1:
            p = parent.get(p, 0)
            if p == pid:
                return True
        return False

    return [int(r[0]) for r in rows if len(r) == 3 and "popen_loky_posix" in r[2]
            and descends(int(r[0]))]


@pytest.mark.skipif(sys.platform != "linux", reason="reads the process table with ps")
def test_a_terminated_sweep_takes_its_workers_with_it(tmp_path: Path) -> None:
    """SIGTERM (``kill``, the end of a session) stops the sweep *and* its worker processes;
    orphaned workers would go on training groups that the restarted sweep trains again. The
    provenance records how long the interrupted invocation ran."""
    env = {**os.environ, "TUTORIAL_RL_PROFILE": "full"}
    sweep = subprocess.Popen([sys.executable, "-m", "tutorial_rl.experiments.cli", "sweep",
                              "--profile", "quick", "--only", "env=seeker", "--only", "algo=td3",
                              "--jobs", "2", "--out", str(tmp_path / "s")],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 120
        while len(workers := _loky_workers_of(sweep.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        if len(workers) < 2:
            sweep.kill()
            pytest.fail(f"the sweep never started its two workers: {sweep.communicate()[1]!r}")
        sweep.send_signal(signal.SIGTERM)
        assert sweep.wait(timeout=60) != 0
        deadline = time.monotonic() + 30
        while any(Path(f"/proc/{w}").exists() for w in workers) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not [w for w in workers if Path(f"/proc/{w}").exists()], "orphaned workers"
        record = json.loads((tmp_path / "s" / "provenance.json").read_text())
        assert record["interrupted"] is True and record["wall_time_s"] > 0  # how long it ran
    finally:
        for pid in [sweep.pid, *_loky_workers_of(sweep.pid)]:  # never leave them behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_a_group_continued_from_a_checkpoint_counts_its_earlier_training_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run's wall time covers all of its training, not only the part after the last restart
    (the paper grid's groups are continued over several sessions)."""
    from tutorial_rl.experiments.grouped import train_group

    configs = [RunConfig(env="pendulum", algo="td3", mode="se", mitigation="none", steps=300,
                         seed=s, agent=TD3_TINY, progress_bar=False, num_threads=1,
                         out=tmp_path / f"r{s}") for s in (0, 1)]
    path = tmp_path / "group.pt"
    save = checkpoint_module.Checkpoint.save

    def save_then_stop(self: checkpoint_module.Checkpoint) -> None:
        save(self)
        raise Stop

    monkeypatch.setattr(checkpoint_module.Checkpoint, "save", save_then_stop)
    with pytest.raises(Stop):
        train_group(configs, checkpoint=path, checkpoint_every=100)
    monkeypatch.setattr(checkpoint_module.Checkpoint, "save", save)
    state = torch.load(path, weights_only=False)
    for recorder in state["recorder"]["recorders"]:  # as if it had trained for an hour
        recorder["elapsed"] += 3600.0
    torch.save(state, path)
    results = train_group(configs, checkpoint=path, checkpoint_every=100)
    assert all(r.wall_time >= 3600.0 / 2 for r in results)  # each run's share of the group


def test_a_sweep_stopped_with_sigterm_saves_and_continues_bit_for_bit(tmp_path: Path) -> None:
    """The first SIGTERM asks every worker to save its group's checkpoint at its next step and
    stop (no work lost, whatever the time since the last periodic save); the rerun continues
    from those checkpoints and ends as a sweep that never stopped."""
    args = ["sweep", "--profile", "ci", "--jobs", "2", "--set", "steps=3000",
            "--checkpoint-every", "1000000"]  # no periodic save: only the stop can write one
    stopped, reference = tmp_path / "stopped", tmp_path / "reference"
    sweep = subprocess.Popen([sys.executable, "-m", "tutorial_rl.experiments.cli", *args,
                              "--out", str(stopped)],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not any((stopped / "runs").glob(".tmp-*/config.json")):
            assert sweep.poll() is None and time.monotonic() < deadline, sweep.stderr.read()
            time.sleep(0.05)
        time.sleep(2.0)  # well into training
        sweep.send_signal(signal.SIGTERM)
        err = sweep.communicate(timeout=120)[1]
    finally:
        if sweep.poll() is None:
            sweep.kill()
    assert sweep.returncode == 130 and "saved their checkpoints" in err, err
    saved = {p.name: torch.load(p, weights_only=False)["steps"]
             for p in (stopped / "checkpoints").glob("*.pt")}
    assert saved and all(0 < steps < 3000 for steps in saved.values()), saved
    assert not (stopped / "runs" / ".stop").exists()
    assert json.loads((stopped / "provenance.json").read_text())["interrupted"] is True

    assert cli_main([*args, "--out", str(stopped)]) == 0  # continues from the checkpoints
    assert cli_main([*args, "--out", str(reference)]) == 0  # never stopped
    keys = sorted(p.name for p in (reference / "runs").iterdir() if not p.name.startswith("."))
    assert keys == sorted(p.name for p in (stopped / "runs").iterdir()
                          if not p.name.startswith("."))
    assert len(keys) == 4
    for key in keys:
        assert_same_run(stopped / "runs" / key, reference / "runs" / key)

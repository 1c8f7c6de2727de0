"""Training a group of runs in one process: :func:`train_group` (issue 11; Chapter 8).

The runs of a group share task, algorithm and variant and differ only in their seeds and α. Each run
keeps what :func:`~tutorial_rl.experiments.training.train` gives it: its own environment random
stream (seeded reset, ``np_random``), replay buffer, numpy and torch generators, episode
boundaries, progress rows and output files. The group steps the K environments as one
(:class:`~tutorial_rl.agents.group_env.GroupModeEnv` over a
:class:`~tutorial_rl.envs.vector.TaskVectorEnv`: one batched dynamics, safe-set and projection
call per step) and updates the K agents as one:

- TD3: each run acts with its own actor and ``TD3.explore`` (the single run's code and random
  draws; the K observations go to the device and the K actions come back in one transfer each);
  :class:`~tutorial_rl.agents.grouped.GroupedTD3Update` evaluates TD3's own losses for all runs
  with stacked parameters, one kernel call per layer and one projection call per update;
- A2C: :class:`~tutorial_rl.agents.grouped_a2c.GroupedA2C` samples, computes GAE and updates
  all runs with A2C's own functions.

A run trained in a group draws the same random numbers in the same order as alone; its
parameters differ from the lone run's only by the rounding of batched kernels
(``tests/test_grouped.py`` measures it). A group of one is :func:`train` itself.
:func:`execute_group` is the sweep's worker for a group (``tutorial-rl sweep --group-size K``).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from tutorial_rl.agents.common import ConfigError, ProgressRecorder, SafetyConfig
from tutorial_rl.agents.group_env import GroupModeEnv
from tutorial_rl.agents.grouped import GroupedTD3Update
from tutorial_rl.agents.grouped_a2c import GroupedA2C
from tutorial_rl.agents.td3 import TD3, TD3Config
from tutorial_rl.envs.vector import TaskVectorEnv
from tutorial_rl.experiments.checkpoint import TARGET_SECONDS, Checkpoint, auto_checkpoint_every
from tutorial_rl.experiments.costs import estimate_ms_per_step
from tutorial_rl.experiments.training import (
    RESULT_FILES,
    RunConfig,
    RunResult,
    _atomic_write,
    _check_out_dir,
    _make,
    _progress_csv,
    _resolve,
    _write_json,
    train,
)

if TYPE_CHECKING:
    from tutorial_rl.experiments.config import RunSpec

__all__ = ["execute_group", "train_group"]

#: What may differ between the runs of a group (everything else shapes the shared computation).
_PER_RUN = ("seed", "alpha")


def train_group(configs: list[RunConfig], checkpoint: str | Path | None = None,
                checkpoint_every: int | None = None) -> list[RunResult]:
    """Train runs that differ only in their seed and α together; one result per run, in order.

    Writes each run's ``config.json``, ``progress.csv`` and ``model.pt`` into its ``out`` as
    :func:`train` does. ``wall_time`` of each result is the group's training time divided by
    the group size (its share of the core).

    :param checkpoint: the group's checkpoint file (:mod:`.checkpoint`: every agent, environment,
        the stacked parameters and optimiser states, the progress rows); a checkpoint of the same
        group is continued from, and deleted when the group has finished.
    :param checkpoint_every: environment steps between checkpoints (0: none; ``None``: about
        every 10 minutes of estimated work for the whole group).
    :raises ConfigError: runs that differ in more than their seed and α, or A2C's projected-mean
        variant (which projects inside its policy and trains alone).
    """
    if not configs:
        raise ConfigError("a group needs at least one run")
    if len(configs) == 1:
        single = dataclasses.replace(configs[0], checkpoint=checkpoint,
                                     checkpoint_every=checkpoint_every)
        return [train(single)]
    resolved = [_resolve(c) for c in configs]
    first = {k: v for k, v in resolved[0][2].items() if k not in _PER_RUN}
    for _, _, r in resolved[1:]:
        if {k: v for k, v in r.items() if k not in _PER_RUN} != first:
            raise ConfigError("the runs of a group must differ only in their seed and alpha")
    if first["agent"].get("sp_log_likelihood") == "projected-mean":
        raise ConfigError("A2C's projected-mean variant cannot be trained as a group")
    saver = None
    if checkpoint is not None:
        every = checkpoint_every
        if every is None:
            every = auto_checkpoint_every(len(configs) * estimate_ms_per_step(
                first["algo"], first["env"], first["mode"], first["mitigation"], len(configs)))
        identity = {"group": [{k: v for k, v in r.items() if k != "profile"}
                              for _, _, r in resolved]}
        saver = Checkpoint(checkpoint, every, identity,
                           lambda p, fn: _atomic_write(p, fn, binary=True),
                           max_seconds=TARGET_SECONDS if checkpoint_every is None else None)
    run_dirs = [None if c.out is None else Path(c.out) for c in configs]
    for config, run_dir, (_, _, r) in zip(configs, run_dirs, resolved, strict=True):
        if run_dir is not None:
            _check_out_dir(run_dir, config.overwrite)
            run_dir.mkdir(parents=True, exist_ok=True)
            for name in RESULT_FILES:
                (run_dir / name).unlink(missing_ok=True)
            _write_json(run_dir / "config.json", r)
    threads = torch.get_num_threads()
    limits = None
    if configs[0].num_threads is not None:
        torch.set_num_threads(configs[0].num_threads)
        # numpy's BLAS too: the group's batched safe-set products would start threads that
        # compete with the other workers (several times slower on a busy machine)
        limits = threadpool_limits(configs[0].num_threads)
    try:
        steps = resolved[0][2]["steps"]
        recorders = _Recorders([ProgressRecorder(steps) for _ in configs])
        restored = saver.load() if saver is not None else None
        earlier = 0.0  # seconds the group trained before its checkpoint (as train() counts them)
        if restored is not None:  # continue exactly where the checkpoint was written
            run, _, recorder_state = restored
            recorders.load_state_dict(recorder_state)
            earlier = recorder_state["recorders"][0]["elapsed"]
        else:
            run = _make_group(resolved)
        if saver is not None:
            saver.attach(run, None, recorders)
        start = time.perf_counter()
        try:
            run.learn(recorders.recorders, steps, saver)
        finally:
            rows = [rec.finish() for rec in recorders.recorders]
            run.env.env.close()
    finally:
        torch.set_num_threads(threads)
        if limits is not None:
            limits.restore_original_limits()
    share = (time.perf_counter() - start + earlier) / len(configs)
    results = []
    for run_dir, agent, run_rows, (_, _, r) in zip(run_dirs, run.agents, rows, resolved,
                                                    strict=True):
        if run_dir is not None:
            text = _progress_csv(run_rows)
            _atomic_write(run_dir / "progress.csv", lambda fh, text=text: fh.write(text))
            state = agent.state_dict()
            _atomic_write(run_dir / "model.pt", lambda fh, state=state: torch.save(state, fh),
                          binary=True)
        results.append(RunResult(r, run_rows, agent, run_dir, share))
    if saver is not None:
        saver.remove()
    return results


class _Recorders:
    """The group's progress recorders, saved and restored together (for :class:`Checkpoint`)."""

    def __init__(self, recorders: list[ProgressRecorder]) -> None:
        self.recorders = recorders

    def state_dict(self) -> dict[str, Any]:
        return {"recorders": [r.state_dict() for r in self.recorders]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for recorder, part in zip(self.recorders, state["recorders"], strict=True):
            recorder.load_state_dict(part)


def _make_group(resolved: list[tuple[SafetyConfig, Any, dict[str, Any]]]
                ) -> _GroupRun | GroupedA2C:
    """The group's agents (as :func:`train` makes them, each with its seed) and its vector env."""
    safety, agent_config, first = resolved[0]
    seeds = [r["seed"] for _, _, r in resolved]
    made = [_make(r, s, c, r["seed"]) for s, c, r in resolved]
    for env, _ in made:  # only their agents are needed: the group steps one vector env
        env.env.close()
    agents = [agent for _, agent in made]
    vector = TaskVectorEnv(first["env_id"], len(resolved), first["termination_penalty"])
    alphas = [s.weight for s, _, _ in resolved]  # each run's α: the SE penalty in its reward
    if isinstance(agent_config, TD3Config):
        env = GroupModeEnv(vector, safety, track_safe_sets=safety.mode == "sp", alphas=alphas)
        return _GroupRun(agents, env, seeds)  # type: ignore[arg-type]
    track = agents[0].needs_safe_sets  # type: ignore[union-attr]
    return GroupedA2C(agents,  # type: ignore[arg-type]
                      GroupModeEnv(vector, safety, track_safe_sets=track, alphas=alphas), seeds)


class _GroupRun:
    """A TD3 group's agents, environments, stacked update and loop state (a checkpoint's)."""

    def __init__(self, agents: list[TD3], env: GroupModeEnv, seeds: list[int]) -> None:
        self.agents, self.env, self.seeds = agents, env, seeds
        self.group = GroupedTD3Update(agents)
        self.steps = 0
        self.obs: Any = None

    @torch.inference_mode()
    def _act(self, obs: np.ndarray) -> list[np.ndarray]:
        """Each run's ``TD3.select_action(obs[k], explore=True)``, with one transfer of the K
        observations to the device and one of the K actions back (each run's own actor, so
        the same numbers as alone)."""
        x = torch.as_tensor(obs, dtype=torch.float32, device=self.agents[0].device)
        mu = torch.stack([agent.actor(x[k:k + 1])[0] for k, agent in enumerate(self.agents)])
        mu_np = mu.cpu().numpy().astype(np.float64)
        return [agent.explore(mu_np[k]) for k, agent in enumerate(self.agents)]

    def learn(self, recorders: list[ProgressRecorder], total_steps: int,
              checkpoint: Checkpoint | None = None) -> None:
        """:meth:`TD3.learn` for every run, with one grouped update per environment step."""
        agents, env, group = self.agents, self.env, self.group
        c: TD3Config = agents[0].config
        if self.obs is None:
            self.obs = env.reset(self.seeds)
        while self.steps < total_steps:
            t, obs = self.steps, self.obs
            if t < c.learning_starts:  # warm-up: uniform actions fill the buffer
                actions = [agent.rng.uniform(agent.low, agent.high) for agent in agents]
            else:  # each run's own policy and exploration noise, as alone
                actions = self._act(obs)
            steps, self.obs = env.step(np.stack(actions))
            for k, (agent, step, recorder) in enumerate(zip(agents, steps, recorders,
                                                            strict=True)):
                recorder.record(step, agent.safety.weight)
                agent.store(obs[k], step)
            if t >= c.learning_starts:
                update_actor = (t - c.learning_starts + 1) % c.policy_delay == 0
                group.update([a.buffer.sample(c.batch_size) for a in agents], update_actor)
                if update_actor:  # the next step acts with the updated policy
                    group.write_back(("actor",))
            self.steps += 1
            if checkpoint is not None:
                checkpoint(self.steps)
        group.write_back()
        for k, agent in enumerate(agents):
            agent.steps, agent.obs = self.steps, self.obs[k]
            agent.n_updates = max(0, self.steps - c.learning_starts)


def execute_group(specs: list[RunSpec], runs_dir: str | Path,
                  checkpoint_every: int | None = None,
                  device: str = "cpu") -> list[dict[str, Any]]:
    """Train a group of sweep runs together, then evaluate and finish each one on its own.

    The worker of ``tutorial-rl sweep --group-size K`` (:mod:`~tutorial_rl.experiments.runner`):
    each run gets its temporary folder, ``done.json`` and final folder exactly as
    :func:`~tutorial_rl.experiments.runner.execute_run` gives it. Runs marked to fail, and a
    group of one, go through ``execute_run``. The group writes one checkpoint,
    ``checkpoints/group-<first key>-k<K>.pt``, from which a rerun of the same group continues.
    If the group's training raises, its runs are rerun one by one with ``execute_run``: a
    failing run is then recorded with its own traceback, and the others finish. ``device``:
    where the agents' tensors live (``tutorial-rl sweep --device``).

    :returns: one ``{"key", "status"}`` per run, as ``execute_run`` returns.
    """
    from tutorial_rl.experiments.runner import (
        _now,
        _run_config,
        complete_run,
        execute_run,
        record_failure,
    )
    from tutorial_rl.experiments.sweep_folder import TMP_PREFIX, checkpoint_path, run_status

    runs_dir = Path(runs_dir)
    todo = [s for s in specs if run_status(runs_dir / s.key) != "done"]
    outcomes = [{"key": s.key, "status": "skipped"} for s in specs if s not in todo]
    alone = [s for s in todo if s.fail]
    together = [s for s in todo if not s.fail]
    if len(together) <= 1:
        return outcomes + [execute_run(s, runs_dir, checkpoint_every, device)
                           for s in alone + together]
    outcomes += [execute_run(s, runs_dir, checkpoint_every, device) for s in alone]
    tmps = [runs_dir / f"{TMP_PREFIX}{s.key}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            for s in together]
    for tmp in tmps:
        tmp.mkdir(parents=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    started, start = _now(), time.perf_counter()
    saved = checkpoint_path(runs_dir, f"group-{together[0].key}-k{len(together)}")
    try:
        results = train_group([_run_config(s, tmp, 0, device)
                               for s, tmp in zip(together, tmps, strict=True)],
                              checkpoint=saved, checkpoint_every=checkpoint_every)
    except Exception:  # noqa: BLE001 -- rerun run by run: each failure gets its own record
        saved.unlink(missing_ok=True)
        for tmp in tmps:
            shutil.rmtree(tmp, ignore_errors=True)
        torch.set_num_threads(threads)
        return outcomes + [execute_run(s, runs_dir, checkpoint_every, device) for s in together]
    try:
        for spec, tmp, result in zip(together, tmps, results, strict=True):
            final = runs_dir / spec.key
            try:
                outcomes.append(complete_run(spec, tmp, final, result, started, start,
                                             group_size=len(together)))
            except Exception as exc:  # noqa: BLE001 -- e.g. its evaluation failed
                outcomes.append(record_failure(spec, tmp, final, exc, started, start))
    finally:
        torch.set_num_threads(threads)
    return outcomes

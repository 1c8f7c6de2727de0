"""Grouped TD3: one update for K runs (:mod:`tutorial_rl.agents.grouped`) equals K separate
``TD3.update`` calls, and a run trained in a group (:func:`~tutorial_rl.experiments.grouped.
train_group`) matches the same run trained alone.

Every run keeps its own minibatches, noise, environment, episodes and α; the group evaluates the
agents' own losses with stacked parameters. Batched kernels round differently (one update already
differs by an ulp), so whole runs are compared by :func:`relative_drift` (below 1e-4, where a
wrong α measures 0.01-0.8), weight by weight to 1e-5 on the pendulum, and returns to a relative
1e-5; episode structure, interventions and constraint violations must be equal. Every group
below mixes α (run k gets ``ALPHAS[k % 4]``), as the sweep's groups do.
"""

from __future__ import annotations

import copy
import dataclasses

import gymnasium as gym
import pytest
import torch

from tutorial_rl.agents import A2C, TD3, VALID_MITIGATIONS, ModeEnv, ProgressRecorder, SafetyConfig
from tutorial_rl.agents.common import ConfigError
from tutorial_rl.agents.grouped import GroupedTD3Update
from tutorial_rl.experiments.grouped import train_group
from tutorial_rl.experiments.training import ENVS, RunConfig, RunResult, env_defaults, train

#: The paper grid's α values; seed k trains with ``ALPHAS[k % 4]`` (mixed-α groups).
ALPHAS = (0.1, 0.5, 1.0, 2.0)


def alpha_of(mitigation: str, seed: int) -> float | None:
    return None if mitigation == "none" else ALPHAS[seed % len(ALPHAS)]


def filled_agents(env: str, mode: str, mitigation: str, k: int, steps: int = 300) -> list[TD3]:
    """K agents (seeds 0..K-1, mixed α) whose buffers hold ``steps`` random-action transitions."""
    config = dataclasses.replace(env_defaults(env, "td3")["agent"], learning_starts=10 * steps,
                                 batch_size=64)
    agents = []
    for seed in range(k):
        safety = SafetyConfig(mode, mitigation, alpha_of(mitigation, seed))  # type: ignore[arg-type]
        task = gym.make(ENVS[env])
        agent = TD3(task.observation_space, task.action_space, config, safety, seed=seed,
                    buffer_capacity=steps)
        agent.learn(ModeEnv(task, safety, track_safe_sets=mode == "sp"), steps,
                    ProgressRecorder(steps), seed=seed)  # warm-up only: fills the buffer
        agents.append(agent)
    return agents


def max_difference(a: TD3, b: TD3) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    return max(float((sa[n][key] - sb[n][key]).abs().max()) for n in sa for key in sa[n])


def parameters(agent: TD3 | A2C) -> torch.Tensor:
    """Every network parameter of ``agent`` (targets included) as one flat vector."""
    state = agent.state_dict()
    return torch.cat([value.flatten() for name in state for value in state[name].values()
                      if value.is_floating_point()])


def trained_alone(config: RunConfig) -> tuple[RunResult, torch.Tensor]:
    """Train ``config`` alone; return the result and the parameters it started from."""
    start: list[torch.Tensor] = []
    result = train(config, callback=lambda _, agent: start or start.append(parameters(agent)),
                   callback_every=1)  # step 1 comes before the first update
    return result, start[0]


def relative_drift(alone: TD3 | A2C, grouped: TD3 | A2C, start: torch.Tensor) -> float:
    """‖θ_alone − θ_grouped‖ / ‖θ_alone − θ_start‖: how far the grouped run is from the lone
    run, as a fraction of how far training moved the lone run.

    Why not the largest single difference: Adam moves a weight whose gradient is within
    rounding of zero by up to its learning rate (its step is lr·g/(|g| + ε) with ε = 1e-8), so
    one weight of tens of thousands can differ by 1e-5 after a few hundred steps while the rest
    agree to 1e-8, and where that happens depends on the host's kernels. Over the whole vector
    the rounding measured 1e-7 to 7e-6 (TD3 and A2C, seeker and quadrotor, 120-300 steps); one
    run trained with 1.5 times its α instead, a real bug, measured 0.01 (A2C, 120 steps) to 0.8
    (TD3, 300 steps).
    """
    a, g = parameters(alone), parameters(grouped)
    return float((a - g).norm() / (a - start).norm())


@pytest.mark.parametrize(("env", "mode", "mitigation"), [
    ("pendulum", "se", "penalty"),
    ("pendulum", "sp", "penalty-critic"),
    ("quadrotor", "sp", "none"),
    ("seeker", "sp", "per-sample-loss"),
])
def test_grouped_update_equals_separate_updates(env: str, mode: str, mitigation: str) -> None:
    torch.set_num_threads(1)
    alone = filled_agents(env, mode, mitigation, k=3)
    grouped = copy.deepcopy(alone)
    group = GroupedTD3Update(grouped)
    for i in range(12):
        actor = i % 2 == 1
        for agent in alone:
            agent.update(agent.buffer.sample(64), update_actor=actor)
        group.update([agent.buffer.sample(64) for agent in grouped], update_actor=actor)
    group.write_back()
    for a, b in zip(alone, grouped, strict=True):
        assert torch.equal(a.generator.get_state(), b.generator.get_state())  # same draws
        assert max_difference(a, b) < 1e-5
    # the runs stay distinct (different seeds), and training moved them
    assert max_difference(grouped[0], grouped[1]) > 1e-3


def test_a_group_needs_one_configuration() -> None:
    se = filled_agents("pendulum", "se", "penalty", k=1, steps=20)
    other = filled_agents("pendulum", "se", "none", k=1, steps=20)
    with pytest.raises(ValueError, match="share config and safety"):
        GroupedTD3Update(se + other)
    mixed = filled_agents("pendulum", "se", "penalty", k=2, steps=20)  # α 0.1 and 0.5: fine
    assert GroupedTD3Update(mixed).alphas.tolist() == pytest.approx([0.1, 0.5])
    with pytest.raises(ValueError, match="at least one agent"):
        GroupedTD3Update([])


def test_the_paper_grid_groups_seeds_and_alphas_of_a_configuration() -> None:
    from tutorial_rl.experiments.config import DEFAULT_GROUP_SIZE, PROFILES
    from tutorial_rl.experiments.runner import group_units

    runs = PROFILES["paper"].runs()
    units = group_units(runs, DEFAULT_GROUP_SIZE)
    assert sum(map(len, units)) == len(runs) == 588
    for unit in units:
        assert len({(s.env, s.algo, s.variant) for s in unit}) == 1
        mitigated = unit[0].alpha is not None
        assert len(unit) == (28 if mitigated else 7)  # 4 α × 7 seeds, or 7 seeds
        assert len({s.alpha for s in unit}) == (4 if mitigated else 1)


@pytest.mark.parametrize("algo", ["td3", "a2c"])
def test_each_run_of_a_group_trains_with_its_own_alpha(algo: str) -> None:
    """Two runs with one seed and α = 0.1 and 2: identical but for α, so they must differ."""
    make = run_config if algo == "td3" else a2c_config
    base = make("sp", "per-sample-loss", 0, 300, "seeker")
    low, high = (dataclasses.replace(base, alpha=a) for a in (0.1, 2.0))
    a, b = train_group([low, high])
    assert torch.equal(a.agent.generator.get_state(), b.agent.generator.get_state())
    assert max_difference(a.agent, b.agent) > 1e-4
    twin = train_group([high, low])  # the run's result does not depend on its place in the group
    assert max_difference(twin[0].agent, b.agent) == 0.0


# ------------------------------------------------------------------ whole runs in a group
TINY = {"learning_starts": 100, "batch_size": 32}


def run_config(mode: str, mitigation: str, seed: int, steps: int, env: str = "pendulum",
               out=None) -> RunConfig:  # type: ignore[no-untyped-def]
    return RunConfig(env=env, algo="td3", mode=mode, mitigation=mitigation,
                     alpha=alpha_of(mitigation, seed), steps=steps, seed=seed,
                     agent=TINY, num_threads=1, progress_bar=False, out=out)


@pytest.mark.parametrize(("env", "mode", "mitigation"), [
    ("pendulum", "se", "penalty"), ("pendulum", "sp", "penalty-critic"),
    ("seeker", "sp", "none"),
])
def test_a_run_in_a_group_matches_the_run_alone(tmp_path, env: str, mode: str,
                                                mitigation: str) -> None:
    steps = 300
    alone, starts = zip(*(trained_alone(run_config(mode, mitigation, s, steps, env))
                          for s in range(3)), strict=True)
    outs = [tmp_path / f"s{s}" for s in range(3)]
    grouped = train_group([run_config(mode, mitigation, s, steps, env, out)
                           for s, out in zip(range(3), outs, strict=True)])
    # the measure can fail: another run of the group (another seed and α) is far from run 0
    assert relative_drift(alone[0].agent, grouped[1].agent, starts[0]) > 1e-2
    for a, g, start, out in zip(alone, grouped, starts, outs, strict=True):
        assert relative_drift(a.agent, g.agent, start) < 1e-4  # batched kernels' rounding only
        if env == "pendulum":  # no near-zero gradients there: every weight agrees to 1e-5
            assert max_difference(a.agent, g.agent) < 1e-5
        structure = [(r["step"], r["episode_length"], r["interventions"],
                      r["constraint_violations"], r["complete"]) for r in a.progress]
        assert structure == [(r["step"], r["episode_length"], r["interventions"],
                              r["constraint_violations"], r["complete"]) for r in g.progress]
        for ra, rg in zip(a.progress, g.progress, strict=True):
            assert rg["episode_return"] == pytest.approx(ra["episode_return"], rel=1e-5)
        assert sum(r["constraint_violations"] for r in g.progress) == 0
        assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.pt",
                                                         "progress.csv"]


@pytest.mark.parametrize(("mode", "mitigation"),
                         [(m, x) for m, xs in VALID_MITIGATIONS.items() for x in xs])
def test_every_td3_variant_trains_grouped_deterministically(mode: str, mitigation: str) -> None:
    first, again = (train_group([run_config(mode, mitigation, s, 150) for s in (0, 1)])
                    for _ in range(2))
    for a, b in zip(first, again, strict=True):
        assert max_difference(a.agent, b.agent) == 0.0  # same group, same bits
        assert [r["episode_return"] for r in a.progress] == \
            [r["episode_return"] for r in b.progress]
    assert max_difference(first[0].agent, first[1].agent) > 1e-3  # seeds differ
    if mode != "unsafe":
        assert all(r["constraint_violations"] == 0 for res in first for r in res.progress)


def test_a_group_differs_only_in_seeds_and_alpha() -> None:
    with pytest.raises(ConfigError, match="differ only in their seed and alpha"):
        train_group([run_config("se", "none", 0, 50), run_config("sp", "none", 1, 50)])
    a2c = RunConfig(env="pendulum", algo="a2c", mode="sp", steps=50, seed=0,
                    agent={"sp_log_likelihood": "projected-mean"})
    with pytest.raises(ConfigError, match="projected-mean"):
        train_group([a2c, dataclasses.replace(a2c, seed=1)])


# ------------------------------------------------------------------ sweeps with --group-size
def test_a_grouped_sweep_writes_the_same_runs(tmp_path) -> None:
    import json

    from tutorial_rl.experiments.cli import main
    from tutorial_rl.experiments.config import get_profile, run_key
    from tutorial_rl.experiments.runner import group_units, run_status, sweep

    profile = get_profile("ci", {"steps": 300, "alphas": [0.5, 1.0]})
    units = group_units(profile.runs(), 4)
    # SE vanilla seeds 0-1; SP penalty critic seeds 0-1 at α = 0.5 and 1 in one group
    assert sorted(len(u) for u in units) == [2, 4]
    assert all(len({s.variant for s in u}) == 1 for u in units)
    assert sorted(len({s.alpha for s in u}) for u in units) == [1, 2]
    assert [len(u) for u in group_units(profile.runs(), 1)] == [1] * 6

    alone = sweep(profile, tmp_path / "alone", progress=False)
    bad = run_key("td3", "sp-penalty-critic", 0.5, "pendulum", 1)
    assert main(["sweep", "--profile", "ci", "--set", "steps=300", "--set", "alphas=[0.5,1]",
                 "--out", str(tmp_path / "grouped"), "--group-size", "4", "--set",
                 f'inject_failure=["{bad}"]']) == 1  # one run fails on purpose
    assert alone.exit_code == 0
    for spec in profile.runs():
        a, g = tmp_path / "alone" / "runs" / spec.key, tmp_path / "grouped" / "runs" / spec.key
        if spec.key == bad:
            assert run_status(g) == "failed"
            assert "injected failure" in json.loads((g / "failed.json").read_text())["error"]
            continue
        assert run_status(g) == "done"
        assert sorted(p.name for p in g.iterdir()) == sorted(p.name for p in a.iterdir())
        ma, mg = (torch.load(d / "model.pt", weights_only=True) for d in (a, g))
        assert max(float((ma[n][k] - mg[n][k]).abs().max()) for n in ma for k in ma[n]) < 1e-5
        done = json.loads((g / "done.json").read_text())
        if "group_size" in done:  # a run's cost is its share of the group's, not the group's
            assert done["wall_time_s"] == pytest.approx(
                done["training"]["wall_time_s"] + done["evaluation_wall_time_s"])
            assert done["group_wall_time_s"] >= done["wall_time_s"]
    assert sum("group_size" in json.loads((tmp_path / "grouped" / "runs" / s.key / "done.json")
                                          .read_text())
               for s in profile.runs() if s.key != bad) >= 3  # the group of 4 less its failure
    assert main(["sweep", "--profile", "ci", "--out", str(tmp_path / "x"),
                 "--group-size", "0"]) == 2


def test_a_group_continued_from_its_checkpoint_equals_an_uninterrupted_one(
        tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tutorial_rl.experiments import checkpoint as checkpoint_module

    def configs(name: str) -> list[RunConfig]:
        return [run_config("sp", "penalty-critic", s, 260, out=tmp_path / name / f"s{s}")
                for s in range(3)]

    whole = train_group(configs("whole"), checkpoint=tmp_path / "whole.pt", checkpoint_every=0)
    save = checkpoint_module.Checkpoint.save

    class Stop(Exception):
        pass

    def save_then_stop(self: checkpoint_module.Checkpoint) -> None:
        save(self)
        if self._objects[0].steps >= 140:
            raise Stop

    monkeypatch.setattr(checkpoint_module.Checkpoint, "save", save_then_stop)
    with pytest.raises(Stop):
        train_group(configs("cut"), checkpoint=tmp_path / "cut.pt", checkpoint_every=70)
    assert (tmp_path / "cut.pt").is_file()
    monkeypatch.setattr(checkpoint_module.Checkpoint, "save", save)
    cut = train_group(configs("cut"), checkpoint=tmp_path / "cut.pt", checkpoint_every=70)
    assert not (tmp_path / "cut.pt").exists()
    for a, b in zip(whole, cut, strict=True):
        assert max_difference(a.agent, b.agent) == 0.0  # bit for bit
        assert [{k: v for k, v in r.items() if k != "wall_time"} for r in a.progress] == \
            [{k: v for k, v in r.items() if k != "wall_time"} for r in b.progress]


# ------------------------------------------------------------------ grouped A2C
def a2c_config(mode: str, mitigation: str, seed: int, steps: int, env: str = "pendulum",
               out=None) -> RunConfig:  # type: ignore[no-untyped-def]
    return RunConfig(env=env, algo="a2c", mode=mode, mitigation=mitigation,
                     alpha=alpha_of(mitigation, seed), steps=steps, seed=seed,
                     num_threads=1, progress_bar=False, out=out)


def same_rows(a: list[dict], b: list[dict]) -> bool:
    return [{k: v for k, v in r.items() if k != "wall_time"} for r in a] == \
        [{k: v for k, v in r.items() if k != "wall_time"} for r in b]


@pytest.mark.parametrize(("env", "mode", "mitigation", "steps"), [
    ("pendulum", "se", "penalty", 2000),
    ("pendulum", "sp", "per-sample-loss", 500),
    # the seeker's and the quadrotor's safeguarded trajectories amplify rounding (projections
    # onto vertices of nearly parallel rows move by 100x the change of a state), so after a
    # few hundred steps a lone and a grouped run differ by more than rounding; the check
    # there is over the first 120-300 steps.
    ("seeker", "sp", "per-sample-loss", 120),
    ("quadrotor", "se", "none", 300),
])
def test_an_a2c_run_in_a_group_matches_the_run_alone(tmp_path, env: str, mode: str,
                                                    mitigation: str, steps: int) -> None:
    alone, starts = zip(*(trained_alone(a2c_config(mode, mitigation, s, steps, env))
                          for s in range(3)), strict=True)
    outs = [tmp_path / f"s{s}" for s in range(3)]
    grouped = train_group([a2c_config(mode, mitigation, s, steps, env, out)
                           for s, out in zip(range(3), outs, strict=True)])
    assert relative_drift(alone[0].agent, grouped[1].agent, starts[0]) > 1e-2  # it can fail
    for a, g, start, out in zip(alone, grouped, starts, outs, strict=True):
        assert relative_drift(a.agent, g.agent, start) < 1e-4  # batched kernels' rounding only
        if env == "pendulum":  # within 1e-5 after 2,000 steps, weight by weight
            assert max_difference(a.agent, g.agent) < 1e-5
        assert [(r["step"], r["episode_length"], r["constraint_violations"], r["complete"])
                for r in a.progress] == \
            [(r["step"], r["episode_length"], r["constraint_violations"], r["complete"])
             for r in g.progress]
        for ra, rg in zip(a.progress, g.progress, strict=True):
            assert rg["episode_return"] == pytest.approx(ra["episode_return"], rel=1e-5)
        assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.pt",
                                                         "progress.csv"]
        assert torch.equal(a.agent.generator.get_state(), g.agent.generator.get_state())


@pytest.mark.parametrize(("se", "sp"), [(("se", "none"), ("sp", "none")),
                                        (("se", "penalty"), ("sp", "penalty-critic"))])
def test_lemma_1_holds_bit_for_bit_in_a_group(se: tuple[str, str], sp: tuple[str, str]) -> None:
    """A2C SE-RL and SP-RL (unsafe-sample likelihood) groups give identical runs (Lemma 1)."""
    runs = [train_group([a2c_config(*pair, s, 400, "quadrotor") for s in (0, 1, 2)])
            for pair in (se, sp)]
    for a, b in zip(*runs, strict=True):
        assert max_difference(a.agent, b.agent) == 0.0
        assert same_rows(a.progress, b.progress)
    assert max_difference(runs[0][0].agent, runs[0][1].agent) > 1e-3  # seeds differ


@pytest.mark.parametrize(("mode", "mitigation"),
                         [(m, x) for m, xs in VALID_MITIGATIONS.items() for x in xs])
def test_every_a2c_variant_trains_grouped_deterministically(mode: str, mitigation: str) -> None:
    first, again = (train_group([a2c_config(mode, mitigation, s, 96, "seeker") for s in (0, 1)])
                    for _ in range(2))
    for a, b in zip(first, again, strict=True):
        assert max_difference(a.agent, b.agent) == 0.0  # same group, same bits
        assert same_rows(a.progress, b.progress)
    assert max_difference(first[0].agent, first[1].agent) > 1e-3  # seeds differ
    if mode != "unsafe":
        assert all(r["constraint_violations"] == 0 for res in first for r in res.progress)


def test_an_a2c_group_continued_from_its_checkpoint_equals_an_uninterrupted_one(
        tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tutorial_rl.experiments import checkpoint as checkpoint_module

    def configs(name: str) -> list[RunConfig]:
        return [a2c_config("sp", "per-sample-loss", s, 320, "seeker",
                           out=tmp_path / name / f"s{s}") for s in range(3)]

    whole = train_group(configs("whole"), checkpoint=tmp_path / "whole.pt", checkpoint_every=0)
    save = checkpoint_module.Checkpoint.save

    class Stop(Exception):
        pass

    def save_then_stop(self: checkpoint_module.Checkpoint) -> None:
        save(self)
        if self._objects[0].steps >= 160:
            raise Stop

    monkeypatch.setattr(checkpoint_module.Checkpoint, "save", save_then_stop)
    with pytest.raises(Stop):
        train_group(configs("cut"), checkpoint=tmp_path / "cut.pt", checkpoint_every=48)
    monkeypatch.setattr(checkpoint_module.Checkpoint, "save", save)
    cut = train_group(configs("cut"), checkpoint=tmp_path / "cut.pt", checkpoint_every=48)
    assert not (tmp_path / "cut.pt").exists()
    for a, b in zip(whole, cut, strict=True):
        assert max_difference(a.agent, b.agent) == 0.0  # bit for bit
        assert same_rows(a.progress, b.progress)

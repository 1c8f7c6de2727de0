"""A grouped TD3 update (:mod:`tutorial_rl.agents.grouped`) equals K separate ``TD3.update`` calls.

Every run keeps its own minibatches and noise; the group evaluates the agents' own losses with
stacked parameters. Batched kernels round differently, so the comparison allows 1e-5.
"""

from __future__ import annotations

import copy
import dataclasses

import gymnasium as gym
import pytest
import torch

from tutorial_rl.agents import TD3, ModeEnv, ProgressRecorder, SafetyConfig
from tutorial_rl.agents.grouped import GroupedTD3Update
from tutorial_rl.experiments.training import ENVS, env_defaults


def filled_agents(env: str, mode: str, mitigation: str, k: int, steps: int = 300) -> list[TD3]:
    """K agents (seeds 0..K-1) whose buffers hold ``steps`` random-action transitions."""
    safety = SafetyConfig(mode, mitigation, None if mitigation == "none" else 0.5)  # type: ignore[arg-type]
    config = dataclasses.replace(env_defaults(env, "td3")["agent"], learning_starts=10 * steps,
                                 batch_size=64)
    agents = []
    for seed in range(k):
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
    with pytest.raises(ValueError, match="at least one agent"):
        GroupedTD3Update([])

"""The vector environment (:mod:`tutorial_rl.envs.vector`) conforms to gymnasium's vector API and
gives every run exactly the transitions of a single environment seeded the same way.

K single environments (``gymnasium.make``, with their ``TimeLimit``) and one ``TaskVectorEnv``
of K runs get the same seeds and the same actions; every observation, reward, termination,
truncation and violation flag must be equal bit for bit, including across the autoresets (random
actions end pendulum and seeker episodes early, the time limit the others). The safe sets have
the same rows; the RCI tasks' offsets come from one blocked matrix product for the K states,
which rounds differently from K single ones, so they agree to 1e-12.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, VectorEnv

from tutorial_rl.envs import ENV_IDS
from tutorial_rl.envs.seeker import PAD_OFFSET
from tutorial_rl.envs.vector import TaskVectorEnv

SEEDS = [3, 5, 11]


@pytest.mark.parametrize(("env_id", "steps"), [("tutorial_rl/Pendulum-v0", 260),
                                                ("tutorial_rl/Quadrotor2D-v0", 230),
                                                ("tutorial_rl/Seeker-v0", 160)])
def test_vector_env_equals_single_envs(env_id: str, steps: int) -> None:
    K = len(SEEDS)
    singles = [gym.make(env_id, termination_penalty=2.0) for _ in SEEDS]
    vec = TaskVectorEnv(env_id, K, termination_penalty=2.0, safe_sets=True)
    assert isinstance(vec, VectorEnv)
    assert vec.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    assert vec.action_space.shape == (K, *singles[0].action_space.shape)
    obs, _ = vec.reset(seed=SEEDS)
    single_obs = [env.reset(seed=s)[0] for env, s in zip(singles, SEEDS, strict=True)]
    np.testing.assert_array_equal(obs, np.stack(single_obs))
    assert obs in vec.observation_space
    rng = np.random.default_rng(0)
    ends = 0
    for _ in range(steps):
        A, b, count = vec.safe_action_sets()
        for i, env in enumerate(singles):
            A1, b1 = env.unwrapped.safe_action_set()
            np.testing.assert_array_equal(A[i, :count[i]], A1)
            np.testing.assert_allclose(b[i, :count[i]], b1, rtol=1e-12, atol=1e-12)
            assert np.all(A[i, count[i]:] == 0) and np.all(b[i, count[i]:] == PAD_OFFSET)
        actions = rng.uniform(-1.2, 1.2, vec.action_space.shape)
        obs, reward, terminated, truncated, info = vec.step(actions)
        for i, env in enumerate(singles):
            o, r, term, trunc, inf = env.step(actions[i])
            assert (r, term, trunc) == (reward[i], terminated[i], truncated[i])
            assert inf["constraint_violation"] == info["constraint_violation"][i]
            if term or trunc:
                ends += 1
                np.testing.assert_array_equal(info["final_obs"][i], o)
                assert info["_final_obs"][i]
                fA, fb, fcount = info["final_safe_sets"]
                np.testing.assert_allclose(fb[i, :fcount[i]], env.unwrapped.safe_action_set()[1],
                                           rtol=1e-12, atol=1e-12)
                o, _ = env.reset()
            else:
                assert "final_obs" not in info or info["final_obs"][i] is None
            np.testing.assert_array_equal(obs[i], o)
    assert ends >= 2  # the autoreset was exercised
    vec.close()


def test_vector_env_seeding_and_bad_input() -> None:
    vec = TaskVectorEnv("tutorial_rl/Pendulum-v0", 2)
    obs, _ = vec.reset(seed=7)  # an int seeds run i with 7 + i, as gymnasium's vector envs do
    single = gym.make("tutorial_rl/Pendulum-v0")
    np.testing.assert_array_equal(obs[1], single.reset(seed=8)[0])
    with pytest.raises(ValueError, match="shape"):
        vec.step(np.zeros((3, 1)))
    with pytest.raises(ValueError, match="finite"):
        vec.step(np.array([[0.0], [np.nan]]))
    with pytest.raises(ValueError, match="unknown task"):
        TaskVectorEnv("Pendulum-v1", 2)
    with pytest.raises(ValueError, match="num_envs"):
        TaskVectorEnv("tutorial_rl/Pendulum-v0", 0)
    with pytest.raises(RuntimeError, match="safe_sets=True"):
        vec.safe_action_sets()
    assert set(ENV_IDS) == {"tutorial_rl/Pendulum-v0", "tutorial_rl/Quadrotor2D-v0",
                            "tutorial_rl/Seeker-v0"}


@pytest.mark.parametrize(("env_id", "mode", "mitigation"), [
    ("tutorial_rl/Pendulum-v0", "se", "penalty"),
    ("tutorial_rl/Quadrotor2D-v0", "sp", "none"),
    ("tutorial_rl/Seeker-v0", "sp", "per-sample-loss"),
])
def test_group_mode_env_equals_mode_envs(env_id: str, mode: str, mitigation: str) -> None:
    """GroupModeEnv gives each run the EnvStep (safeguard, penalty, tracked sets) of a ModeEnv."""
    from tutorial_rl.agents import ModeEnv, SafetyConfig
    from tutorial_rl.agents.group_env import GroupModeEnv

    safety = SafetyConfig(mode, mitigation, None if mitigation == "none" else 0.3)  # type: ignore[arg-type]
    track = mode == "sp"
    singles = [ModeEnv(gym.make(env_id), safety, track_safe_sets=track) for _ in SEEDS]
    group = GroupModeEnv(TaskVectorEnv(env_id, len(SEEDS)), safety, track_safe_sets=track)
    obs = group.reset(SEEDS)
    single_obs = [env.reset(seed=s) for env, s in zip(singles, SEEDS, strict=True)]
    np.testing.assert_array_equal(obs, np.stack(single_obs))
    rng = np.random.default_rng(1)
    interventions = 0
    for _ in range(60):
        actions = rng.uniform(-1.5, 1.5, (len(SEEDS), *singles[0].env.action_space.shape))
        for i, s in enumerate(group.safe_sets if track else []):
            np.testing.assert_allclose(s[1], singles[i].safe_set[1], rtol=1e-12, atol=1e-12)
        steps, obs = group.step(actions)
        for i, env in enumerate(singles):
            one = env.step(actions[i])
            got = steps[i]
            np.testing.assert_allclose(got.safe_action, one.safe_action, rtol=0, atol=1e-12)
            np.testing.assert_allclose(got.obs, one.obs, rtol=0, atol=1e-6)
            assert got.reward == pytest.approx(one.reward, abs=1e-10)
            assert got.task_reward == pytest.approx(one.task_reward, abs=1e-10)
            assert (got.terminated, got.truncated, got.intervened, got.violation) == \
                (one.terminated, one.truncated, one.intervened, one.violation)
            interventions += one.intervened
            if track:
                for name in ("safe_set", "next_safe_set"):
                    np.testing.assert_allclose(getattr(got, name)[1], getattr(one, name)[1],
                                               atol=1e-12)
                np.testing.assert_allclose(got.next_safe_point, one.next_safe_point, atol=1e-12)
            if one.terminated or one.truncated:
                np.testing.assert_array_equal(obs[i], env.reset())
    assert interventions > 10

"""Training throughput of the course's TD3: SP-RL vs SE-RL update cost, and ours vs SB3's TD3.

Chapter 5 (chapters/05_sp_rl.py) quotes these numbers; DESIGN.md §6 explains why the projection's
speed decides whether SP-RL experiments are affordable. Two measurements, each side by side in one
process, interleaved (the order alternates per repeat), reported as the median over repeats:

1. the cost of one TD3 update step (minibatch draw + critic, actor, target updates) in SP-RL
   (projection layer Φ, ``projection_method="exact"``) relative to SE-RL, per task, after the same
   warm-up; target: <= 1.3x. The same ratio for ``projection_method="cvxpylayers"`` (the paper's
   setup) on a few steps.
2. environment steps per second of a whole training run (unsafe mode, the plain task) of our TD3
   and of ``stable_baselines3.TD3`` with the same hyperparameters: networks, batch size 256,
   learning starts, train_freq 1, gradient_steps 1, policy delay 2, noise; target: ours >= SB3.

Both libraries run with ``torch.set_num_threads(1)`` (small networks run fastest on one thread, and
it is what the sweep uses). Stable-Baselines3 is a benchmark-only dependency (``pip install
-e '.[bench]'``), never imported by the package::

    python benchmarks/training.py [--envs pendulum,quadrotor,seeker] [--repeats 5] [--skip-sb3]
        [--out results/update-cost]

With ``--out`` the update-cost table is also written to ``OUT/update_cost.json`` with its
provenance: the one measurement chapters 5 and 8 quote (``load_result("update-cost")``).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from tutorial_rl.agents import TD3, ModeEnv, ProgressRecorder, SafetyConfig, TD3Config
from tutorial_rl.agents.safe_layer import violates
from tutorial_rl.experiments.training import ENVS, env_defaults
from tutorial_rl.provenance import provenance, write_json_atomic, write_provenance

TARGET_SP_RATIO = 1.3


def make_env(env: str) -> gym.Env:
    return gym.make(ENVS[env], termination_penalty=env_defaults(env, "td3")["termination_penalty"])


def td3_config(env: str, learning_starts: int) -> TD3Config:
    config = env_defaults(env, "td3")["agent"]
    assert isinstance(config, TD3Config)
    return dataclasses.replace(config, learning_starts=learning_starts)


def warm_agent(env: str, mode: str, steps: int, seed: int) -> TD3:
    """A TD3 agent after ``steps`` training steps (updates from half of them on)."""
    task = make_env(env)
    safety = SafetyConfig(mode)  # type: ignore[arg-type]
    agent = TD3(task.observation_space, task.action_space, td3_config(env, steps // 2), safety,
                seed=seed, buffer_capacity=steps)
    agent.learn(ModeEnv(task, safety, track_safe_sets=mode == "sp"), steps, ProgressRecorder(steps),
                seed=seed)
    return agent


def time_updates(agent: TD3, n: int) -> float:
    """Seconds per update step (minibatch draw included), over ``n`` steps."""
    batch_size = agent.config.batch_size
    start = time.perf_counter()
    for i in range(n):
        agent.update(agent.buffer.sample(batch_size), update_actor=i % 2 == 0)
    return (time.perf_counter() - start) / n


def projected_share(agent: TD3) -> tuple[float, float]:
    """Share of a minibatch whose target action / policy action Φ has to move (SP agent)."""
    batch = agent.buffer.sample(agent.config.batch_size)
    with torch.no_grad():
        target = agent.target_actions(batch)
        mu = agent.actor(batch.obs)
    assert batch.A is not None and batch.b is not None and batch.next_A is not None
    assert batch.next_b is not None
    return (float(violates(target, batch.next_A, batch.next_b).float().mean()),
            float(violates(mu, batch.A, batch.b).float().mean()))


def update_cost(env: str, args: argparse.Namespace) -> dict[str, float]:
    agents = {mode: warm_agent(env, mode, args.warmup, args.seed) for mode in ("se", "sp")}
    times: dict[str, list[float]] = {"se": [], "sp": []}
    for repeat in range(args.repeats):
        for mode in (("se", "sp") if repeat % 2 == 0 else ("sp", "se")):
            times[mode].append(time_updates(agents[mode], args.updates))
    se, sp = statistics.median(times["se"]), statistics.median(times["sp"])
    target_share, actor_share = projected_share(agents["sp"])
    result = {"se_ms": se * 1e3, "sp_ms": sp * 1e3, "ratio": sp / se,
              "target_share": target_share, "actor_share": actor_share}
    if not args.skip_cvxpylayers:
        slow = agents["sp"]
        slow.safety = dataclasses.replace(slow.safety, projection_method="cvxpylayers")
        cvx, base = [], []
        for _ in range(2):
            base.append(time_updates(agents["se"], args.updates))
            cvx.append(time_updates(slow, args.cvxpylayers_updates))
        result["cvx_ms"] = statistics.median(cvx) * 1e3
        result["cvx_ratio"] = statistics.median(cvx) / statistics.median(base)
    return result


def ours_steps_per_second(env: str, steps: int, learning_starts: int, seed: int) -> float:
    task = make_env(env)
    safety = SafetyConfig("unsafe")
    agent = TD3(task.observation_space, task.action_space, td3_config(env, learning_starts),
                safety, seed=seed, buffer_capacity=steps)
    start = time.perf_counter()
    agent.learn(ModeEnv(task, safety), steps, ProgressRecorder(steps), seed=seed)
    return steps / (time.perf_counter() - start)


def sb3_steps_per_second(env: str, steps: int, learning_starts: int, seed: int) -> float:
    from stable_baselines3 import TD3 as SB3TD3
    from stable_baselines3.common.noise import NormalActionNoise

    task = make_env(env)
    config = td3_config(env, learning_starts)
    m = int(np.prod(task.action_space.shape))
    # SB3 adds the noise to the action scaled to [-1, 1]: σ = 0.1 there is our 0.1 half-widths
    model = SB3TD3(
        "MlpPolicy", task, learning_rate=config.learning_rate, buffer_size=steps,
        learning_starts=learning_starts, batch_size=config.batch_size, tau=config.tau,
        gamma=config.gamma, train_freq=1, gradient_steps=1, policy_delay=config.policy_delay,
        target_policy_noise=config.target_policy_noise, target_noise_clip=config.target_noise_clip,
        action_noise=NormalActionNoise(np.zeros(m), config.exploration_noise * np.ones(m)),
        policy_kwargs={"net_arch": list(config.hidden_sizes)}, seed=seed, device="cpu",
        verbose=0)
    start = time.perf_counter()
    model.learn(total_timesteps=steps)
    return steps / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", default=",".join(ENVS), help="comma-separated task names")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repeats (median)")
    parser.add_argument("--updates", type=int, default=100, help="update steps per repeat")
    parser.add_argument("--warmup", type=int, default=1500,
                        help="training steps before the update timing (updates from half on)")
    parser.add_argument("--cvxpylayers-updates", type=int, default=3,
                        help="update steps per repeat with cvxpylayers (slow)")
    parser.add_argument("--skip-cvxpylayers", action="store_true")
    parser.add_argument("--sb3-steps", type=int, default=3000,
                        help="environment steps per run in the SB3 comparison")
    parser.add_argument("--sb3-repeats", type=int, default=3)
    parser.add_argument("--skip-sb3", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for update_cost.json and provenance.json")
    args = parser.parse_args(argv)
    start, record = time.perf_counter(), provenance(sys.argv, 0.0)
    envs = args.envs.split(",")
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, torch.set_num_threads(1) for every measurement; "
          f"medians over interleaved repeats")

    print(f"\n1. TD3 update step (batch 256), SP-RL vs SE-RL, after {args.warmup} warm-up steps; "
          f"target SP/SE <= {TARGET_SP_RATIO}")
    print(f"{'task':<11}{'SE ms':>8}{'SP ms':>8}{'SP/SE':>7}{'ok':>5}{'projected':>17}"
          f"{'cvxpylayers ms':>16}{'cvx/SE':>8}")
    costs = {}
    for env in envs:
        r = costs[env] = update_cost(env, args)
        ok = "yes" if r["ratio"] <= TARGET_SP_RATIO else "NO"
        share = f"{r['target_share']:.0%} / {r['actor_share']:.0%}"
        cvx = f"{r['cvx_ms']:>16.1f}{r['cvx_ratio']:>7.1f}x" if "cvx_ms" in r else ""
        print(f"{env:<11}{r['se_ms']:>8.2f}{r['sp_ms']:>8.2f}{r['ratio']:>6.2f}x{ok:>5}"
              f"{share:>17}{cvx}", flush=True)
    print("(projected: share of a minibatch's target / policy actions outside their safe set)")
    if args.out is not None:
        write_json_atomic(args.out / "update_cost.json", costs)
        write_provenance(args.out, record, time.perf_counter() - start)

    if args.skip_sb3:
        return
    learning_starts = args.sb3_steps // 3
    print(f"\n2. Environment steps per second, whole training run of {args.sb3_steps} steps "
          f"(updates from step {learning_starts} on), unsafe mode; target ours >= SB3")
    print(f"{'task':<11}{'ours':>9}{'SB3':>9}{'ours/SB3':>10}{'ok':>5}")
    for env in envs:
        ours: list[float] = []
        sb3: list[float] = []
        for repeat in range(args.sb3_repeats):
            runs = [(ours, ours_steps_per_second), (sb3, sb3_steps_per_second)]
            for store, run in (runs if repeat % 2 == 0 else runs[::-1]):
                store.append(run(env, args.sb3_steps, learning_starts, args.seed))
        o, s = statistics.median(ours), statistics.median(sb3)
        print(f"{env:<11}{o:>9.0f}{s:>9.0f}{o / s:>9.2f}x{'yes' if o >= s else 'NO':>5}",
              flush=True)


if __name__ == "__main__":
    main()

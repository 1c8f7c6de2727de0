"""Per-step cost of ``env.step`` alone vs. the safeguarded step, for each course environment.

Chapter 3 (chapters/03_tasks.py) quotes these numbers; DESIGN.md §5 lists the tasks. Both columns
use the same pre-drawn uniformly random actions, so the safeguard intervenes about as often as it
would early in training (the expensive case: every intervention is a projection). The last two
columns split the safeguard's own cost: building the safe set (every step) and one call of
``project_polytope`` (only on steps whose action is unsafe)::

    python benchmarks/safeguard_step.py [--steps 2000] [--seed 0]
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np
import torch

import tutorial_rl  # noqa: F401  (registers the environments)
from tutorial_rl.envs import ENV_IDS
from tutorial_rl.projection import project_polytope
from tutorial_rl.safeguards import ProjectionSafeguard


def time_steps(env: gym.Env, actions: np.ndarray, seed: int) -> tuple[float, float]:
    """Mean seconds per ``step`` (resets excluded) and the fraction of steps that intervened."""
    env.reset(seed=seed)
    elapsed, interventions = 0.0, 0
    for action in actions:
        start = time.perf_counter()
        _, _, terminated, truncated, info = env.step(action)
        elapsed += time.perf_counter() - start
        interventions += bool(info.get("intervened", False))
        if terminated or truncated:
            env.reset()
    return elapsed / len(actions), interventions / len(actions)


def time_parts(env: gym.Env, actions: np.ndarray, seed: int) -> tuple[float, float]:
    """Mean seconds of ``safe_action_set()`` and of one projection of an unsafe action."""
    inner = env.unwrapped
    inner.reset(seed=seed)
    start = time.perf_counter()
    for _ in actions:
        A, b = inner.safe_action_set()
    t_set = (time.perf_counter() - start) / len(actions)
    # twice the upper bound of the (normalised) action box: outside the box, so never safe
    outside = torch.from_numpy(2 * env.action_space.high.astype(np.float64))
    A_t, b_t = torch.from_numpy(A), torch.from_numpy(b)
    with torch.inference_mode():
        start = time.perf_counter()
        for _ in actions:
            project_polytope(outside, A_t, b_t)
    return t_set, (time.perf_counter() - start) / len(actions)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000, help="timed steps per environment")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # one small projection per step: threads only add overhead
    print(f"{'environment':<28}{'env.step':>10}{'safeguarded':>13}{'ratio':>7}{'intervened':>12}"
          f"{'safe set':>10}{'projection':>12}")
    for env_id in ENV_IDS:
        rng = np.random.default_rng(args.seed)
        plain = gym.make(env_id)
        actions = rng.uniform(plain.action_space.low, plain.action_space.high,
                              (args.steps, *plain.action_space.shape))
        time_steps(plain, actions[:50], args.seed)  # warm-up: caches, lazy imports, safe sets
        t_plain, _ = time_steps(plain, actions, args.seed)
        safe = ProjectionSafeguard(gym.make(env_id))
        time_steps(safe, actions[:50], args.seed)
        t_safe, share = time_steps(safe, actions, args.seed)
        t_set, t_proj = time_parts(safe, actions[:500], args.seed)
        print(f"{env_id:<28}{t_plain * 1e6:>8.1f}us{t_safe * 1e6:>11.1f}us{t_safe / t_plain:>7.1f}"
              f"{share:>12.0%}{t_set * 1e6:>8.1f}us{t_proj * 1e6:>10.1f}us")


if __name__ == "__main__":
    main()

"""The three course environments, registered with gymnasium on ``import tutorial_rl``.

Chapter 3 (chapters/03_tasks.py) presents them; DESIGN.md §5 lists their parameters::

    import gymnasium as gym
    import tutorial_rl  # registers the ids below

    env = gym.make("tutorial_rl/Pendulum-v0")       # PendulumEnv, 200 steps
    env = gym.make("tutorial_rl/Quadrotor2D-v0")    # QuadrotorEnv, 200 steps
    env = gym.make("tutorial_rl/Seeker-v0")         # SeekerEnv, 100 steps

The episode lengths are the ``max_episode_steps`` of the registrations (gymnasium's ``TimeLimit``).
Every action space is ``Box(-1, 1, (m,), float32)`` (gymnasium's ``check_env`` passes without
warnings); the pendulum and the quadrotor map it to torques and thrusts with an
:class:`~tutorial_rl.envs.action_scaling.AffineActionMap` (their ``ACTION_MAP``) and report the
applied physical action as ``info["physical_action"]``. Every environment exposes
``safe_action_set() -> (A, b)`` for its current state in those normalised coordinates, the input
of :class:`tutorial_rl.safeguards.ProjectionSafeguard`; the pendulum and the quadrotor also give
``safe_action_set_physical()`` in physical units.
"""

from __future__ import annotations

import gymnasium as gym

from tutorial_rl.envs.pendulum import PendulumEnv
from tutorial_rl.envs.quadrotor import QuadrotorEnv
from tutorial_rl.envs.seeker import SeekerEnv

__all__ = ["ENV_IDS", "PendulumEnv", "QuadrotorEnv", "SeekerEnv"]

#: Registered ids and their episode lengths (steps).
ENV_IDS: dict[str, int] = {
    "tutorial_rl/Pendulum-v0": 200,
    "tutorial_rl/Quadrotor2D-v0": 200,
    "tutorial_rl/Seeker-v0": 100,
}
_ENTRY_POINTS = {
    "tutorial_rl/Pendulum-v0": "tutorial_rl.envs.pendulum:PendulumEnv",
    "tutorial_rl/Quadrotor2D-v0": "tutorial_rl.envs.quadrotor:QuadrotorEnv",
    "tutorial_rl/Seeker-v0": "tutorial_rl.envs.seeker:SeekerEnv",
}

for _env_id, _steps in ENV_IDS.items():
    if _env_id not in gym.registry:  # re-importing (e.g. importlib.reload) must not warn
        gym.register(id=_env_id, entry_point=_ENTRY_POINTS[_env_id], max_episode_steps=_steps)

"""RL agents of the course: TD3 and A2C, each in the modes unsafe, SE-RL and SP-RL.

Chapter 4 (chapters/04_se_rl.py) and Chapter 5 (chapters/05_sp_rl.py).

- :mod:`~tutorial_rl.agents.td3`         TD3 (deterministic policy, twin critics)
- :mod:`~tutorial_rl.agents.a2c`         A2C with GAE (Gaussian policy, state-value critic)
- :mod:`~tutorial_rl.agents.safe_layer`  SP-RL's differentiable projection layer and penalty terms
- :mod:`~tutorial_rl.agents.common`      modes, mitigations and their validation; the environment
  side of each mode; seeding; progress recording
- :mod:`~tutorial_rl.agents.networks`    the torch networks
- :mod:`~tutorial_rl.agents.buffers`     replay buffer, rollout GAE
"""

from tutorial_rl.agents.a2c import A2C, A2CConfig
from tutorial_rl.agents.common import (
    MITIGATIONS,
    MODES,
    VALID_MITIGATIONS,
    ConfigError,
    ModeEnv,
    ProgressRecorder,
    SafetyConfig,
)
from tutorial_rl.agents.td3 import TD3, TD3Config

__all__ = [
    "A2C",
    "MITIGATIONS",
    "MODES",
    "TD3",
    "VALID_MITIGATIONS",
    "A2CConfig",
    "ConfigError",
    "ModeEnv",
    "ProgressRecorder",
    "SafetyConfig",
    "TD3Config",
]

"""tutorial_rl: the package behind the course "Safe RL with action projection".

Modules, one concept each (the chapter that teaches each one is named in its docstring):

- :mod:`tutorial_rl.projection`  closest-point projection onto polytopes (chapter 1)
- :mod:`tutorial_rl.profile`     the one switch for short runs under test (``TUTORIAL_RL_PROFILE``)
"""

import tutorial_rl.envs  # noqa: F401  (registers the gymnasium environments, Chapter 3)

__version__ = "0.1.0"

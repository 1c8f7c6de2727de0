"""Running experiments: one training run (:mod:`~tutorial_rl.experiments.training`) and the
``tutorial-rl`` command line (:mod:`~tutorial_rl.experiments.cli`).

Chapters 4-6 call :func:`~tutorial_rl.experiments.training.train` and
:func:`~tutorial_rl.experiments.training.evaluate`; the sweep runner calls them too.
"""

from tutorial_rl.experiments.training import (
    RunConfig,
    RunResult,
    env_defaults,
    evaluate,
    is_complete,
    train,
)

__all__ = ["RunConfig", "RunResult", "env_defaults", "evaluate", "is_complete", "train"]

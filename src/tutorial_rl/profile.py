"""The one switch that decides how long anything slow runs.

Training runs, sweeps and large verification loops in the chapters and tests read the
profile from here, and nowhere else. The environment variable ``TUTORIAL_RL_PROFILE``
selects it:

``ci``
    seconds per chapter: what ``make test`` and ``make book`` use (the Makefile sets it).
``full``
    the budgets a reader wants when running a chapter by hand (the default).

Chapters never shrink budgets by editing text: they ask :func:`current_profile` and pick
the numbers of that profile. Full experiment results are not recomputed in the book; they
are loaded from ``results/``.
"""

from __future__ import annotations

import os
from typing import Literal

Profile = Literal["ci", "full"]

PROFILE_ENV_VAR = "TUTORIAL_RL_PROFILE"
PROFILES: tuple[Profile, ...] = ("ci", "full")


def current_profile() -> Profile:
    """Return the active profile, read from ``$TUTORIAL_RL_PROFILE`` (default ``"full"``).

    :raises ValueError: if the variable holds anything other than a known profile name.
    """
    value = os.environ.get(PROFILE_ENV_VAR, "full").strip().lower()
    if value not in PROFILES:
        raise ValueError(
            f"{PROFILE_ENV_VAR}={value!r} is not a known profile; use one of {', '.join(PROFILES)}"
        )
    return value  # type: ignore[return-value]


def by_profile(*, ci: int | float, full: int | float) -> int | float:
    """Pick a budget (steps, samples, seconds) for the active profile.

    >>> by_profile(ci=1_000, full=100_000)  # doctest: +SKIP
    """
    return ci if current_profile() == "ci" else full

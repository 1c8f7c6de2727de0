"""The TUTORIAL_RL_PROFILE switch: one place, validated."""

from __future__ import annotations

import pytest

from tutorial_rl.profile import by_profile, current_profile


def test_default_profile_is_full(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TUTORIAL_RL_PROFILE", raising=False)
    assert current_profile() == "full"
    assert by_profile(ci=1, full=100) == 100


def test_ci_profile_picks_short_budgets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUTORIAL_RL_PROFILE", " CI ")
    assert current_profile() == "ci"
    assert by_profile(ci=1, full=100) == 1


def test_unknown_profile_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUTORIAL_RL_PROFILE", "quik")
    with pytest.raises(ValueError, match="'quik' is not a known profile; use one of ci, full"):
        current_profile()

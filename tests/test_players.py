"""The precomputed players that stand in for the widgets on the static book pages."""

from __future__ import annotations

import re

import matplotlib.pyplot as plt
import numpy as np
import pytest

from tutorial_rl.players import (
    BUTTON_SYMBOLS,
    frames_player,
    pendulum_torque_player,
    player_html,
    projection_player,
    self_contained,
)

A = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0], [1.0, 1.0]])
B = np.array([1.5, 1.2, 1.5, 1.5, 2.0])


def _frame_count(html: str) -> int:
    return len(re.findall(r"frames\[\d+\] = ", html))


def _assert_offline(html: str) -> None:
    assert "font-awesome" not in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    assert 'class="fa ' not in html


def test_player_embeds_every_frame_and_nothing_remote() -> None:
    html = player_html(lambda fig, i: fig.add_subplot().plot([0, i]), 4, alt="a growing line")
    assert _frame_count(html) == 4
    assert 'alt="a growing line"' in html
    _assert_offline(html)
    for symbol in ("▶", "❚❚", "⇤", "⇥"):
        assert symbol in html
    assert not plt.get_fignums()  # the player's figure is closed, nothing leaks into the page


def test_projection_player_one_frame_per_proposal() -> None:
    angles = np.linspace(0, 2 * np.pi, 5, endpoint=False)
    path = 2.3 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    html = projection_player(A, B, path)
    assert _frame_count(html) == 5
    _assert_offline(html)


def test_pendulum_player_sweeps_states_times_torques() -> None:
    from tutorial_rl.sets import pendulum_safe_action_set

    states, torques = [[0.0, 1.0], [0.3, -1.0]], [-8.0, 0.0, 8.0]
    html = pendulum_torque_player(pendulum_safe_action_set(), states, torques)
    assert _frame_count(html) == 6
    _assert_offline(html)


def test_frames_player_and_bad_input() -> None:
    frames = [np.full((8, 8, 3), k * 20, dtype=np.uint8) for k in range(6)]
    assert _frame_count(frames_player(frames, alt="grey squares", every=2)) == 3
    with pytest.raises(ValueError, match="alt text"):
        self_contained("<div></div>", alt=" ")
    with pytest.raises(ValueError, match="another site"):
        self_contained('<script src="https://cdn.example/x.js"></script>', alt="x")
    with pytest.raises(ValueError, match="at least one frame"):
        player_html(lambda fig, i: None, 0, alt="nothing")
    assert set(BUTTON_SYMBOLS) >= {"fa-play", "fa-pause"}

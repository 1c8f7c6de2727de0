"""Precomputed, self-contained animation players for the static book.

The chapters' ipywidgets need a running kernel, so on a built (static) page they would be dead
sliders. Each widget therefore has a player here that precomputes what the widget would show
along a path of its inputs and embeds the frames in one piece of HTML (matplotlib's
``to_jshtml``, frames as inline PNG). :func:`self_contained` removes the only outside
reference matplotlib's template makes (a Font Awesome stylesheet from a CDN, used for the
button icons) and puts plain Unicode symbols on the buttons instead, so a player works offline.

Chapter 1 (:func:`projection_player`), chapter 2 (:func:`pendulum_torque_player`), chapter 3
(rollout animations, :func:`frames_player`) and chapter 6 (:func:`aliasing_player`).
"""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import animation
from matplotlib.figure import Figure

from tutorial_rl.style import TITLE_SIZE

if TYPE_CHECKING:  # pragma: no cover - for type checkers only
    from tutorial_rl.aliasing import AliasingResult
    from tutorial_rl.sets.safe_actions import LinearSafeActionSet

# matplotlib's button icons (Font Awesome class names) and the symbols that replace them: all in
# the fonts a browser always has (DejaVu, Liberation), unlike the media-control block U+23E9-23FA.
BUTTON_SYMBOLS: dict[str, str] = {
    "fa-minus": "−", "fa-fast-backward": "⇤", "fa-step-backward": "❙◀",
    "fa-play fa-flip-horizontal": "◀", "fa-pause": "❚❚", "fa-play": "▶",
    "fa-step-forward": "▶❙", "fa-fast-forward": "⇥", "fa-plus": "+",
}
_REMOTE = re.compile(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", re.I)


def self_contained(player: str, alt: str) -> str:
    """``player`` (HTML from ``to_jshtml``) without any outside reference, its image described.

    :param alt: the alt text of the animation's image (what it shows, for screen readers).
    :raises ValueError: if ``alt`` is empty, or the HTML still refers to another site.
    """
    if not alt.strip():
        raise ValueError("a player needs an alt text that says what it shows")
    out = re.sub(r"<link[^>]*font-awesome[^>]*>", "", player)

    def symbol(match: re.Match[str]) -> str:
        name = match.group(1).strip()
        if name not in BUTTON_SYMBOLS:
            raise ValueError(f"unknown player button icon {name!r}")
        return BUTTON_SYMBOLS[name]

    out = re.sub(r'<i class="fa ([^"]+)"></i>', symbol, out)
    out = out.replace('<img id="_anim_img', f'<img alt="{html_lib.escape(alt)}" id="_anim_img', 1)
    if _REMOTE.search(out):
        raise ValueError("the player still loads something from another site")
    return out


def player_html(draw: Callable[[Figure, int], None], n_frames: int, *, alt: str,
                figsize: tuple[float, float] = (6.0, 4.5), fps: float = 3.0, dpi: int = 80,
                loop: bool = False) -> str:
    """A self-contained HTML player of ``n_frames`` frames, frame ``i`` drawn by ``draw(fig, i)``.

    The figure is cleared before every frame, so ``draw`` builds the whole picture each time.
    """
    if n_frames < 1:
        raise ValueError(f"a player needs at least one frame, got n_frames={n_frames}")
    fig = plt.figure(figsize=figsize, dpi=dpi)

    def update(i: int) -> list:
        fig.clear()
        draw(fig, i)
        return []

    anim = animation.FuncAnimation(fig, update, frames=n_frames, init_func=lambda: [],
                                   interval=1000 / fps, blit=False)
    player = anim.to_jshtml(fps=fps, embed_frames=True, default_mode="loop" if loop else "once")
    plt.close(fig)
    return self_contained(player, alt)


def frames_player(frames: Sequence[np.ndarray], *, alt: str, fps: float = 10.0,
                  every: int = 1, size: float = 3.2) -> str:
    """A player of rendered RGB frames (e.g. an environment's ``render()`` along a rollout)."""
    shown = list(frames[::every])

    def draw(fig: Figure, i: int) -> None:
        ax = fig.add_axes((0, 0, 1, 1))
        ax.imshow(shown[i])
        ax.axis("off")

    return player_html(draw, len(shown), alt=alt, figsize=(size, size), fps=fps, loop=True)


def projection_player(A: np.ndarray, b: np.ndarray, path: np.ndarray, *,
                      extent: Sequence[float] = (-2.6, 2.6, -2.6, 2.6)) -> str:
    """The projection widget of chapter 1 along a path of proposals ``path`` [F, 2].

    Each frame draws the proposal, its projection, the normal cone there and the rank of the
    Jacobian (what the widget's two sliders show for one position).
    """
    from tutorial_rl.plotting import plot_projection
    from tutorial_rl.widgets import describe_projection

    path = np.asarray(path, dtype=float)

    def draw(fig: Figure, i: int) -> None:
        ax = fig.add_subplot()
        plot_projection(A, b, path[i:i + 1], ax=ax, extent=extent)
        ax.plot(*path.T, ":", color="0.6", linewidth=1, zorder=0)
        rank = describe_projection(A, b, path[i]).split(";")[1].strip()
        rank = rank.replace("dPhi/du", "∂Φ/∂ũ")
        ax.set_title(f"ũ = ({path[i, 0]:.2f}, {path[i, 1]:.2f}): {rank}")

    return player_html(draw, len(path), figsize=(5.2, 5.0), alt=(
        "A proposed action circling the safe set, with its projection and the rank of the "
        "projection's Jacobian at each position"))


def pendulum_torque_player(safe_set: LinearSafeActionSet, states: Sequence[Sequence[float]],
                           torques: Sequence[float]) -> str:
    """The pendulum widget of chapter 2: at each state, the torque sweeps through ``torques``.

    Each frame draws the RCI set and the next-state set ``A x + B u ⊕ W`` of one torque, green
    inside the set (``u`` is safe) and red when it leaves it.
    """
    from tutorial_rl.sets.safe_action_plots import plot_next_state_sets

    frames = [(np.asarray(x, dtype=float), float(u)) for x in states for u in torques]

    def draw(fig: Figure, i: int) -> None:
        x, u = frames[i]
        lower, upper = (float(v[0]) for v in safe_set.safe_interval(x))
        ax = fig.add_subplot()
        plot_next_state_sets(safe_set, x, [u], ax=ax)
        ax.set_xlim(x[0] - 0.7, x[0] + 0.8)
        ax.set_ylim(x[1] - 2.6, x[1] + 2.2)
        verdict = "safe" if lower - 1e-9 <= u <= upper + 1e-9 else "unsafe"
        ax.set_title(f"x = ({x[0]:.1f}, {x[1]:.1f}), u = {u:+.1f} N m: {verdict}\n"
                     f"safe torques [{lower:.2f}, {upper:.2f}] N m", fontsize=TITLE_SIZE)

    return player_html(draw, len(frames), figsize=(5.6, 4.6), alt=(
        "The pendulum's RCI set with the next-state set of a torque that sweeps from one limit "
        "to the other, green while safe and red when it leaves the set"))


def aliasing_player(results: dict[str, AliasingResult]) -> str:
    """The aliasing widget of chapter 6: one frame per scenario and setting."""
    from tutorial_rl.aliasing import SETTING_LABELS
    from tutorial_rl.aliasing.plots import plot_setting

    frames = [(name, key) for name, result in results.items()
              for key in SETTING_LABELS if key in result.trajectories]

    def draw(fig: Figure, i: int) -> None:
        name, key = frames[i]
        ax = fig.add_subplot()
        plot_setting(results[name], key, ax=ax, title=f"{name}: {SETTING_LABELS[key]}")

    return player_html(draw, len(frames), figsize=(5.2, 5.2), fps=1.0, alt=(
        "The fixed-state experiment, one frame per scenario and setting: the objective, the safe "
        "set, and the paths of the proposal and the applied action"))

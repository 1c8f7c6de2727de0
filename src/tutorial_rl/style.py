"""The book's figure style in one place: colours, font sizes and the legend helper.

Every plotting module of the package (:mod:`tutorial_rl.plotting`, :mod:`tutorial_rl.task_plots`,
:mod:`tutorial_rl.sets.plotting`, :mod:`tutorial_rl.sets.safe_action_plots`,
:mod:`tutorial_rl.agents.plots`, :mod:`tutorial_rl.aliasing.plots`, :mod:`tutorial_rl.players`)
takes its colours and sizes from here, so one change restyles every figure of the book. The
meaning of the colours is the same in every chapter: green the safe set, red a proposed (possibly
unsafe) action ũ, teal the safe action u = Φ(ũ), amber the normal cones. Nothing here changes
matplotlib's global settings.
"""

from __future__ import annotations

from typing import Any

#: The safe action set (and "safe" outcomes).
SAFE_COLOR = "#4c9f70"
#: Proposed actions ũ (and "unsafe" outcomes).
UNSAFE_COLOR = "#d1495b"
#: Normal cones (where action aliasing happens).
CONE_COLOR = "#edae49"
#: Safe, applied actions u = Φ(ũ).
PROJECTION_COLOR = "#00798c"
#: RCI sets and generic zonotopes.
SET_COLOR = "tab:blue"
#: State and action boxes.
BOX_COLOR = "0.35"
#: Colours for several items of one kind (trajectories, systems).
CYCLE = ("#00798c", "#d1495b", "#edae49", "#66a182", "#2e4057", "#8d96a3")
#: One colour per mode: the unsafe baseline grey, SE-RL blue, SP-RL orange.
MODE_COLORS: dict[str, str] = {"unsafe": "#7f7f7f", "se": "#1f4e79", "sp": "#c55a11"}

#: Font sizes (points). Legends and annotations stay readable at the book's figure widths.
TITLE_SIZE = 11
LEGEND_SIZE = 9
ANNOTATION_SIZE = 9
SMALL_SIZE = 8


def legend(ax: Any, **kwargs: Any) -> Any:
    """A legend with one entry per label (repeated labels drawn once), in the book's size.

    Keyword arguments go to ``ax.legend`` and override the defaults (``fontsize``,
    ``framealpha``); returns the legend, or None if nothing on ``ax`` has a label.
    """
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    if not unique:
        return None
    return ax.legend(list(unique.values()), list(unique.keys()),
                     **{"fontsize": LEGEND_SIZE, "framealpha": 0.9, **kwargs})

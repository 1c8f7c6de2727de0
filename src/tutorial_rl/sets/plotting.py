"""Drawing helpers for zonotopes and action polygons (Chapters 2-4 figures)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tutorial_rl.sets.polygon import ordered_vertices
from tutorial_rl.sets.zonotope import Zonotope

__all__ = ["plot_polygon", "plot_zonotope"]


def _axes(ax: Any) -> Any:
    if ax is None:
        import matplotlib.pyplot as plt

        ax = plt.gca()
    return ax


def plot_zonotope(Z: Zonotope, ax: Any = None, dims: Sequence[int] = (0, 1),
                  **style: Any) -> Any:
    """Fill the 2-D projection of ``Z`` onto ``dims`` (exact polygon); returns the axes.

    ``style`` goes to :class:`matplotlib.patches.Polygon` (defaults: translucent blue face,
    solid edge). Axis limits are updated to include the set.
    """
    from matplotlib.patches import Polygon

    ax = _axes(ax)
    V = Z.project(dims).vertices_2d()
    kw = {"facecolor": "tab:blue", "edgecolor": "tab:blue", "alpha": 0.3, "linewidth": 1.5}
    kw.update(style)
    ax.add_patch(Polygon(V, closed=True, **kw))
    ax.update_datalim(V)
    ax.autoscale_view()
    return ax


def plot_polygon(A: np.ndarray, b: np.ndarray, ax: Any = None, **style: Any) -> Any:
    """Fill the 2-D polygon ``{v : A v <= b}`` (e.g. a safe action set); returns the axes."""
    from matplotlib.patches import Polygon

    ax = _axes(ax)
    P = ordered_vertices(A, b)
    if len(P) == 0:
        return ax  # empty set: nothing to draw
    kw = {"facecolor": "tab:green", "edgecolor": "tab:green", "alpha": 0.3, "linewidth": 1.5}
    kw.update(style)
    ax.add_patch(Polygon(P, closed=True, **kw))
    ax.update_datalim(P)
    ax.autoscale_view()
    return ax

"""Drawing helpers for zonotopes, containment and RCI sets (Chapter 2 figures).

Chapter 2 (``chapters/02_zonotopes.py``) draws every figure with a function from this module, so
the chapter only calls them and ``tests/test_sets_plotting.py`` checks what they compute. All
functions draw on a given matplotlib ``Axes`` (or the current one, or a new figure) and return
it; none calls ``plt.show``. States and actions are in physical units, as in
:mod:`tutorial_rl.sets`. Figures of safe action sets and of the invariance verification are in
:mod:`tutorial_rl.sets.safe_action_plots`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from tutorial_rl.sets.polygon import ordered_vertices
from tutorial_rl.sets.zonotope import Zonotope
from tutorial_rl.style import (
    ANNOTATION_SIZE,
    BOX_COLOR,
    CONE_COLOR,
    CYCLE,
    PROJECTION_COLOR,
    SAFE_COLOR,
    SET_COLOR,
    UNSAFE_COLOR,
    legend,
)

if TYPE_CHECKING:  # pragma: no cover - for type checkers only
    from tutorial_rl.sets.rci import RCISet
    from tutorial_rl.systems import Box

__all__ = [
    "plot_containment",
    "plot_containment_scan",
    "plot_linear_map",
    "plot_minkowski_sum",
    "plot_polygon",
    "plot_rci_projections",
    "plot_state_box",
    "plot_support_function",
    "plot_trajectories",
    "plot_zonotope",
    "plot_zonotope_anatomy",
]

#: Style of state and input boxes.
BOX_STYLE = {"fill": False, "linestyle": "--", "edgecolor": BOX_COLOR, "linewidth": 1.2}
#: Pendulum phase-plane axis labels.
PHASE_LABELS = (r"$\theta$ (rad)", r"$\dot\theta$ (rad/s)")
_CYCLE = list(CYCLE)


def _axes(ax: Any) -> Any:
    if ax is None:
        import matplotlib.pyplot as plt

        ax = plt.gca()
    return ax


def _contained(Z: Zonotope, X: Zonotope, tol: float = 1e-9) -> bool:
    """Exact ``Z ⊆ X``: the support function of ``Z`` on every facet ``H_i z <= h_i`` of ``X``."""
    H, h = X.halfspaces()
    return bool(np.all(Z.support(H) <= h + tol))


def _legend(ax: Any, **kw: Any) -> None:
    legend(ax, **kw)


def _arrow(ax: Any, start: np.ndarray, end: np.ndarray, color: str) -> None:
    ax.annotate("", xy=end, xytext=start,
                arrowprops={"arrowstyle": "-|>", "color": color, "linewidth": 1.6})


# ------------------------------------------------------------------------------ zonotopes
def plot_zonotope(Z: Zonotope, ax: Any = None, dims: Sequence[int] = (0, 1),
                  **style: Any) -> Any:
    """Fill the 2-D projection of ``Z`` onto ``dims`` (exact polygon); returns the axes.

    ``style`` goes to :class:`matplotlib.patches.Polygon` (defaults: translucent blue face,
    solid edge). Axis limits are updated to include the set.
    """
    from matplotlib.patches import Polygon

    ax = _axes(ax)
    V = Z.project(dims).vertices_2d()
    kw = {"facecolor": SET_COLOR, "edgecolor": SET_COLOR, "alpha": 0.3, "linewidth": 1.5}
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


def plot_zonotope_anatomy(Z: Zonotope, ax: Any = None, n_samples: int = 300,
                          rng: np.random.Generator | None = None) -> Any:
    """A 2-D zonotope with its centre, generators (arrows), vertices and sampled points.

    The samples are ``c + G β`` with ``β`` uniform in the unit box (:meth:`Zonotope.sample`):
    they fill the set but are not uniform in it (they crowd towards the centre).
    """
    ax = plot_zonotope(Z, ax=ax, alpha=0.15)
    c = Z.center
    if n_samples:
        pts = Z.sample(n_samples, np.random.default_rng(0) if rng is None else rng)
        ax.scatter(*pts.T, s=3, color="0.45", alpha=0.6, label=r"samples $c + G\beta$")
    for g in Z.generators.T:
        _arrow(ax, c, c + g, UNSAFE_COLOR)
    ax.plot([], [], color=UNSAFE_COLOR, label="generators")
    ax.scatter(*Z.vertices_2d().T, s=18, color=SET_COLOR, zorder=3, label="vertices")
    ax.scatter(*c, s=30, color="k", marker="x", zorder=3, label="centre $c$")
    ax.set_aspect("equal")
    return ax


def plot_support_function(Z: Zonotope, directions: np.ndarray, ax: Any = None) -> Any:
    """``Z`` with, per direction ``d``, the supporting line ``dᵀz = h_Z(d)`` and its maximiser.

    Directions are normalised to unit length, so ``h_Z(d)`` is the signed distance of the
    supporting line from the origin.
    """
    ax = plot_zonotope(Z, ax=ax, alpha=0.2)
    lo, hi = Z.interval_hull()
    span = float(np.linalg.norm(hi - lo))
    for d in np.atleast_2d(np.asarray(directions, dtype=float)):
        d = d / np.linalg.norm(d)
        p = Z.extreme_point(d)
        tangent = np.array([-d[1], d[0]])
        line = p + np.outer([-0.4 * span, 0.4 * span], tangent)
        ax.plot(*line.T, "--", color=PROJECTION_COLOR, linewidth=1)
        _arrow(ax, p, p + 0.2 * span * d, PROJECTION_COLOR)
        ax.scatter(*p, color=PROJECTION_COLOR, zorder=3, s=25)
        ax.annotate(rf"$h_Z(d)={Z.support(d):.2f}$", p + 0.3 * span * d, fontsize=ANNOTATION_SIZE,
                    ha="center", va="center")
        ax.update_datalim(np.vstack([line, p + 0.38 * span * d]))
    ax.autoscale_view()
    ax.set_aspect("equal")
    return ax


def plot_minkowski_sum(Z1: Zonotope, Z2: Zonotope, ax: Any = None) -> Any:
    """``Z1 ⊕ Z2`` as the union of copies of ``Z2`` moved over ``Z1`` (drawn at its vertices)."""
    ax = plot_zonotope(Z1 + Z2, ax=ax, facecolor="none", edgecolor="k", alpha=1.0,
                       label=r"$Z_1 \oplus Z_2$")
    for v in Z1.vertices_2d():
        plot_zonotope(Zonotope(v + Z2.center, Z2.generators), ax=ax, facecolor=CONE_COLOR,
                      edgecolor=CONE_COLOR, alpha=0.25, label=r"$v + Z_2$ ($v$: vertex of $Z_1$)")
    plot_zonotope(Z1, ax=ax, label=r"$Z_1$")
    plot_zonotope(Z2, ax=ax, facecolor=UNSAFE_COLOR, edgecolor=UNSAFE_COLOR, label=r"$Z_2$")
    ax.set_aspect("equal")
    _legend(ax, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return ax


def plot_linear_map(Z: Zonotope, M: np.ndarray, ax: Any = None) -> Any:
    """``Z`` and its image ``M Z = ⟨Mc, MG⟩``, with the generators ``g_j`` and ``M g_j``."""
    MZ = Z.linear_map(M)
    ax = plot_zonotope(Z, ax=ax, label=r"$Z$")
    plot_zonotope(MZ, ax=ax, facecolor=SAFE_COLOR, edgecolor=SAFE_COLOR, label=r"$MZ$")
    for S, color in ((Z, SET_COLOR), (MZ, SAFE_COLOR)):
        for g in S.generators.T:
            _arrow(ax, S.center, S.center + g, color)
    ax.set_aspect("equal")
    _legend(ax, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return ax


def plot_containment(inner: Zonotope, outer: Zonotope, ax: Any = None) -> Any:
    """2-D ``inner`` and ``outer``; the vertices of ``inner`` marked inside/outside ``outer``.

    In 2-D this is the exact test: a convex polygon lies in a convex set iff its vertices do.
    """
    ax = plot_zonotope(outer, ax=ax, facecolor="none", edgecolor="k", alpha=1.0,
                       label="outer")
    plot_zonotope(inner, ax=ax, label="inner")
    V = inner.vertices_2d()
    inside = np.asarray(outer.contains_point(V), dtype=bool)
    if inside.any():
        ax.scatter(*V[inside].T, color=SAFE_COLOR, zorder=3, s=25, label="vertex inside")
    if (~inside).any():
        ax.scatter(*V[~inside].T, color=UNSAFE_COLOR, zorder=3, s=25, label="vertex outside")
    ax.set_aspect("equal")
    _legend(ax, loc="upper left")
    return ax


def plot_containment_scan(scales: np.ndarray, sufficient: np.ndarray, exact: np.ndarray,
                          ax: Any = None) -> Any:
    """Answers of the sufficient (Ghasemi) and the exact test for scaled copies of a set.

    :param scales: the scale factors tried.
    :param sufficient: the LP's answers (boolean, like ``scales``).
    :param exact: the exact answers (boolean, like ``scales``).
    """
    ax = _axes(ax)
    scales = np.asarray(scales, dtype=float)
    rows = (("Ghasemi LP\n(sufficient)", sufficient), ("facets\n(exact)", exact))
    for row, (_, answers) in enumerate(rows):
        yes = np.asarray(answers, dtype=bool)
        ax.scatter(scales[yes], np.full(yes.sum(), row), color=SAFE_COLOR, s=40,
                   label="yes: contained")
        ax.scatter(scales[~yes], np.full((~yes).sum(), row), facecolor="none",
                   edgecolor=UNSAFE_COLOR, s=40, label="no")
    gap = np.asarray(exact, bool) & ~np.asarray(sufficient, bool)
    if gap.any():
        step = np.diff(scales).min() / 2 if len(scales) > 1 else 0.05
        ax.axvspan(scales[gap].min() - step, scales[gap].max() + step, color=CONE_COLOR,
                   alpha=0.3, label="contained, but the LP cannot prove it")
    ax.set_yticks([0, 1], [name for name, _ in rows])
    ax.set_ylim(-0.8, 2.0)
    ax.set_xlabel("scale $s$ of the inner set")
    _legend(ax, loc="upper right", ncols=3)
    return ax


# ------------------------------------------------------------------------------ RCI sets
def plot_state_box(box: Box, ax: Any = None, dims: Sequence[int] = (0, 1),
                   label: str | None = "state box", **style: Any) -> Any:
    """The rectangle of ``box`` in the coordinates ``dims`` (dashed outline by default)."""
    from matplotlib.patches import Rectangle

    ax = _axes(ax)
    idx = list(dims)
    lo, hi = box.lower[idx], box.upper[idx]
    ax.add_patch(Rectangle(tuple(lo), *(hi - lo), label=label, **{**BOX_STYLE, **style}))
    pad = 0.05 * (hi - lo)
    ax.update_datalim(np.array([lo - pad, hi + pad]))
    ax.autoscale_view()
    return ax


def plot_trajectories(rci: RCISet, trajectories: Sequence[np.ndarray], ax: Any = None,
                      dims: Sequence[int] = (0, 1),
                      labels: Sequence[str] = PHASE_LABELS) -> Any:
    """The state box, the RCI set and state trajectories of shape ``(T, n)`` (dot: start)."""
    ax = plot_state_box(rci.state_box, ax=ax, dims=dims)
    plot_zonotope(rci.set, ax=ax, dims=dims, alpha=0.2, label="RCI set")
    for k, traj in enumerate(trajectories):
        xy = np.asarray(traj)[:, list(dims)]
        color = _CYCLE[k % len(_CYCLE)]
        ax.plot(*xy.T, "-", color=color, linewidth=0.8, alpha=0.9)
        ax.scatter(*xy[0], color=color, s=25, zorder=3)
    ax.plot([], [], "-o", color="0.3", markersize=4, label="trajectories (dot: start)")
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    _legend(ax, loc="upper right")
    return ax


def plot_rci_projections(rci: RCISet, pairs: Sequence[Sequence[int]],
                         labels: Sequence[str], axes: Sequence[Any] | None = None,
                         slice_resolution: int = 120) -> Sequence[Any]:
    """2-D views of an ``n``-D RCI set: projections (filled) and slices (outlined).

    For each coordinate pair: the state box, the projection of the set onto the pair (exact,
    a zonotope: the shadow of the set) and, if ``slice_resolution > 0``, the slice through the
    equilibrium (the other coordinates fixed at ``x_eq``; found by exact point membership on a
    grid, so its outline is accurate to a grid cell). The slice lies inside the projection.

    :param labels: one axis label per state coordinate.
    """
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, len(pairs), figsize=(4.2 * len(pairs), 3.8))
    X = rci.set
    for ax, pair in zip(axes, pairs, strict=True):
        i, j = pair
        plot_state_box(rci.state_box, ax=ax, dims=pair)
        plot_zonotope(X, ax=ax, dims=pair, alpha=0.25, label="projection")
        if slice_resolution:
            lo, hi = rci.state_box.lower, rci.state_box.upper
            gi = np.linspace(lo[i], hi[i], slice_resolution)
            gj = np.linspace(lo[j], hi[j], slice_resolution)
            Gi, Gj = np.meshgrid(gi, gj)
            pts = np.tile(rci.x_eq, (Gi.size, 1))
            pts[:, i], pts[:, j] = Gi.ravel(), Gj.ravel()
            inside = np.asarray(X.contains_point(pts), dtype=float).reshape(Gi.shape)
            ax.contour(gi, gj, inside, levels=[0.5], colors="k", linewidths=1.2)
            ax.plot([], [], "k-", label="slice through $x_{eq}$")
        ax.scatter(rci.x_eq[i], rci.x_eq[j], marker="x", color="k", s=25)
        ax.set_xlabel(labels[i])
        ax.set_ylabel(labels[j])
    _legend(axes[0], loc="lower left")
    return axes

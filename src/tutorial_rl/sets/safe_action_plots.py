"""Figures of safe action sets and of the invariance verification (Chapter 2 figures).

Companion of :mod:`tutorial_rl.sets.plotting` (zonotopes, containment, RCI sets), whose colours
and axis helpers it shares. ``tests/test_sets_plotting.py`` checks what these functions compute.
States and actions are in physical units.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from tutorial_rl.sets.plotting import (
    _CYCLE,
    PHASE_LABELS,
    _axes,
    _contained,
    _legend,
    plot_polygon,
    plot_state_box,
    plot_zonotope,
)
from tutorial_rl.sets.zonotope import Zonotope
from tutorial_rl.style import LEGEND_SIZE, SAFE_COLOR, SMALL_SIZE, TITLE_SIZE, UNSAFE_COLOR

if TYPE_CHECKING:  # pragma: no cover - for type checkers only
    from tutorial_rl.sets.safe_actions import LinearSafeActionSet
    from tutorial_rl.sets.verification import VerificationReport

__all__ = [
    "next_state_set",
    "plot_next_state_sets",
    "plot_safe_interval_map",
    "plot_safe_polygons",
    "plot_verification",
    "plot_verification_counts",
    "safe_interval_grid",
]


def safe_interval_grid(safe_set: LinearSafeActionSet, first: np.ndarray, second: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
    """The safe interval ``[lower, upper]`` of a 1-input, 2-state safe set on a grid.

    :param first: values of the first state coordinate (columns of the result).
    :param second: values of the second state coordinate (rows of the result).
    :returns: ``lower`` and ``upper``, each of shape ``(len(second), len(first))``, ``nan``
        where ``U_s(x)`` is empty (outside the RCI set); elsewhere exactly
        :meth:`~tutorial_rl.sets.safe_actions.LinearSafeActionSet.safe_interval`.
    """
    if safe_set.n_states != 2 or safe_set.n_inputs != 1:
        raise ValueError("safe_interval_grid needs 2 states and 1 input")
    T, V = np.meshgrid(np.asarray(first, float), np.asarray(second, float))
    states = np.stack([T.ravel(), V.ravel()], axis=1)
    lower, upper = (np.array(a, dtype=float) for a in safe_set.safe_interval(states))
    empty = np.asarray(safe_set.is_empty(states), dtype=bool)
    lower[empty] = upper[empty] = np.nan
    return lower.reshape(T.shape), upper.reshape(T.shape)


def plot_safe_interval_map(safe_set: LinearSafeActionSet, axes: Sequence[Any] | None = None,
                           resolution: int = 151, unit: str = "N m",
                           labels: Sequence[str] = PHASE_LABELS) -> Sequence[Any]:
    """Two heat maps over the state plane: the lower and the upper end of ``U_s(x)``.

    Blank outside the RCI set (no safe action there); the set's outline is drawn.
    """
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    lo, hi = safe_set.X.interval_hull()
    pad = 0.08 * (hi - lo)
    first = np.linspace(lo[0] - pad[0], hi[0] + pad[0], resolution)
    second = np.linspace(lo[1] - pad[1], hi[1] + pad[1], resolution)
    lower, upper = safe_interval_grid(safe_set, first, second)
    u_max = float(np.abs(np.concatenate([safe_set.input_box.lower,
                                         safe_set.input_box.upper])).max())
    for ax, values, name in zip(axes, (lower, upper), ("lower", "upper"), strict=True):
        mesh = ax.pcolormesh(first, second, values, cmap="RdBu_r", vmin=-u_max, vmax=u_max,
                             shading="auto")
        plot_zonotope(safe_set.X, ax=ax, facecolor="none", edgecolor="k", alpha=1.0,
                      linewidth=1.0)
        ax.set_title(f"{name} end of the safe interval ({unit})", fontsize=TITLE_SIZE)
        ax.set_xlabel(labels[0])
        ax.figure.colorbar(mesh, ax=ax, shrink=0.9)
    axes[0].set_ylabel(labels[1])
    return axes


def plot_safe_polygons(safe_set: LinearSafeActionSet, states: np.ndarray,
                       axes: Sequence[Any] | None = None, titles: Sequence[str] | None = None,
                       labels: Sequence[str] = ("$u_1$ (N)", "$u_2$ (N)")) -> Sequence[Any]:
    """The safe action polygon ``U_s(x)`` of a 2-input system at several states.

    Each panel shows the input box (dashed), the exact safe polygon and the equilibrium input.
    """
    import matplotlib.pyplot as plt

    states = np.atleast_2d(states)
    if axes is None:
        _, axes = plt.subplots(1, len(states), figsize=(3.4 * len(states), 3.4))
    box = safe_set.input_box
    for k, (ax, x) in enumerate(zip(axes, states, strict=True)):
        A, b = safe_set.halfspaces(x)
        plot_state_box(box, ax=ax, label="input box")
        if safe_set.is_empty(x):
            ax.text(*box.center, "empty", ha="center", color=UNSAFE_COLOR)
        else:
            plot_polygon(A, b, ax=ax, facecolor=SAFE_COLOR, edgecolor=SAFE_COLOR,
                         label=r"$\mathcal{U}_s(x)$")
        ax.scatter(*safe_set.rci.u_eq, marker="x", color="k", s=25, zorder=3, label="hover")
        ax.set_aspect("equal")
        ax.set_xlabel(labels[0])
        ax.set_ylabel(labels[1])
        if titles is not None:
            ax.set_title(titles[k], fontsize=TITLE_SIZE)
    _legend(axes[0], loc="lower left")
    return axes


def next_state_set(safe_set: LinearSafeActionSet, state: np.ndarray,
                   action: np.ndarray) -> Zonotope:
    """The model's next-state set ``A x + B u + c ⊕ W`` for one state and one action.

    For the pendulum, ``W`` contains the bound on simulator − model, so the nonlinear
    simulator's next state lies in this set for every noise value (for ``x`` in ``X_rci``).
    """
    x = np.asarray(state, dtype=float).reshape(safe_set.n_states)
    u = np.asarray(action, dtype=float).reshape(safe_set.n_inputs)
    return safe_set.W + (safe_set.A @ x + safe_set.B @ u + safe_set.c)


def plot_next_state_sets(safe_set: LinearSafeActionSet, state: np.ndarray,
                         actions: Sequence[float] | np.ndarray, ax: Any = None,
                         dims: Sequence[int] = (0, 1), labels: Sequence[str] = PHASE_LABELS,
                         unit: str = "N m") -> Any:
    """The RCI set, a state ``x`` and the next-state sets ``A x + B u ⊕ W`` of some actions.

    A next-state set is green if it lies in the RCI set (exact test: ``u ∈ U_s(x)``), red if
    not. Only for 1-input systems (``actions`` is a list of scalars).
    """
    ax = plot_state_box(safe_set.rci.state_box, ax=ax, dims=dims)
    plot_zonotope(safe_set.X, ax=ax, dims=dims, alpha=0.12, label="RCI set")
    x = np.asarray(state, dtype=float)
    for u in np.atleast_1d(np.asarray(actions, dtype=float)):
        Z = next_state_set(safe_set, x, np.array([u]))
        ok = _contained(Z, safe_set.X)
        color = SAFE_COLOR if ok else UNSAFE_COLOR
        plot_zonotope(Z, ax=ax, dims=dims, facecolor=color, edgecolor=color, alpha=0.35)
        right = Z.project(dims).vertices_2d()[:, 0].max()
        ax.annotate(f"u = {u:.2f}", (right, Z.center[dims[1]]), xytext=(3, 0),
                    textcoords="offset points", fontsize=SMALL_SIZE, va="center", color=color)
    ax.scatter(*x[list(dims)], color="k", s=25, zorder=4, label="state $x$")
    ax.fill([], [], color=SAFE_COLOR, alpha=0.35, label=r"$Ax+Bu\oplus W \subseteq X$")
    ax.fill([], [], color=UNSAFE_COLOR, alpha=0.35, label=r"$Ax+Bu\oplus W \not\subseteq X$")
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    _legend(ax, loc="upper right")
    return ax


# ------------------------------------------------------------------------------ verification
def plot_verification(report: VerificationReport, X: Zonotope, ax: Any = None,
                      dims: Sequence[int] = (0, 1), labels: Sequence[str] = PHASE_LABELS,
                      max_points: int = 6000) -> Any:
    """The states checked by ``verify_invariance``, coloured by outcome, in a 2-D view of X."""
    ax = plot_zonotope(X, ax=ax, dims=dims, alpha=0.1, label="RCI set (projection)")
    idx = np.random.default_rng(0).permutation(len(report.states))[:max_points]
    pts, failed = report.states[idx][:, list(dims)], report.failed[idx]
    ax.scatter(*pts[~failed].T, s=2, color=SAFE_COLOR, alpha=0.5,
               label=f"passed ({int((~report.failed).sum()):,})")
    ax.scatter(*pts[failed].T, s=6, color=UNSAFE_COLOR,
               label=f"failed ({int(report.failed.sum()):,})")
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    _legend(ax, loc="upper right", markerscale=2)
    return ax


def plot_verification_counts(reports: Sequence[VerificationReport], ax: Any = None) -> Any:
    """Grouped bars (log scale): what ``verify_invariance`` checked, and how much failed.

    Zero counts have no bar on a log scale; they are written at the bottom instead ("n/a"
    for nonlinear next states of a system checked without a nonlinear simulator).
    """
    ax = _axes(ax)
    names = ["states", "state-action\npairs", "next states\n(linear model)",
             "next states\n(nonlinear sim.)", "failures"]
    width = 0.8 / max(len(reports), 1)
    top = 1.0
    for k, r in enumerate(reports):
        values = np.array([r.n_states, r.n_actions, r.n_transitions, r.n_nonlinear_transitions,
                           r.n_empty + r.n_failures + r.n_nonlinear_failures])
        pos = np.arange(len(names)) + (k - (len(reports) - 1) / 2) * width
        color = _CYCLE[k % len(_CYCLE)]
        bars = ax.bar(pos[values > 0], values[values > 0], width, color=color, label=r.system)
        ax.bar_label(bars, labels=[f"{v:,}" for v in values[values > 0]], fontsize=SMALL_SIZE,
                     rotation=90, padding=2)
        for x, (i, v) in zip(pos, enumerate(values), strict=True):
            if v == 0:
                text = "n/a" if i == 3 else "0"
                ax.text(x, 1.2, text, ha="center", va="bottom", fontsize=SMALL_SIZE, color=color,
                        fontweight="bold")
        top = max(top, float(values.max()))
    ax.set_yscale("log")
    ax.set_ylim(1.0, top * 60)
    ax.set_xticks(np.arange(len(names)), names, fontsize=SMALL_SIZE)
    ax.set_ylabel("count (log scale)")
    ax.legend(fontsize=LEGEND_SIZE, loc="upper right")
    return ax

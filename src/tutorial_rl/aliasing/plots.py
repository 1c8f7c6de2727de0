"""Figures of the fixed-state aliasing experiments (Chapter 6, chapters/06_aliasing.py; Chapter 7,
chapters/07_mitigations.py).

The experiment itself is :mod:`tutorial_rl.aliasing.experiment`; these functions only draw its
results. The safe set, normal cones and Jacobian-rank maps come from :mod:`tutorial_rl.plotting`
(chapter 1), so every chapter draws them the same way. Each function draws on given ``Axes`` (or
makes them) and returns them; none calls ``plt.show``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from tutorial_rl.aliasing.critics import one_thread
from tutorial_rl.aliasing.experiment import SETTING_LABELS, SETTINGS, AliasingResult
from tutorial_rl.aliasing.flat_lining import NormalDerivatives, values_along_ray
from tutorial_rl.aliasing.long_horizon import LONG_HORIZON_LABELS, LongHorizonResult
from tutorial_rl.plotting import (
    active_constraint_count,
    plot_jacobian_rank,
    plot_normal_cone,
    plot_safe_set,
    polygon_vertices,
)
from tutorial_rl.style import (
    BOX_COLOR,
    CONE_COLOR,
    LEGEND_SIZE,
    PROJECTION_COLOR,
    SAFE_COLOR,
    SMALL_SIZE,
    TITLE_SIZE,
    UNSAFE_COLOR,
)

__all__ = [
    "plot_critic_surfaces",
    "plot_epoch_sweep",
    "plot_long_horizon",
    "plot_normal_derivatives",
    "plot_rank",
    "plot_setting",
    "plot_settings",
]


def _box(ax: Axes) -> None:
    ax.plot([-1, 1, 1, -1, -1], [-1, -1, 1, 1, -1], color=BOX_COLOR, linewidth=0.8,
            linestyle=":")


def _cones(ax: Axes, result: AliasingResult) -> None:
    A, b = result.scenario.A, result.scenario.b
    length = result.scenario.extent[1] - result.scenario.extent[0]
    for vertex in polygon_vertices(A, b):
        plot_normal_cone(ax, A, b, vertex, length=length)


def _contours(ax: Axes, result: AliasingResult, surface: np.ndarray, levels: int = 18) -> Any:
    lo, hi = np.percentile(surface, [1, 100])
    return ax.contour(result.u1, result.u2, surface, levels=np.linspace(lo, hi, levels),
                      cmap="viridis", linewidths=0.9)


def plot_setting(result: AliasingResult, setting: str, ax: Axes | None = None,
                 title: str | None = None) -> Axes:
    """Learned objective J(ũ) of one setting (contours) with the safe set, the vertices' normal
    cones, the action box (dotted), the best safe action (black cross) and the trajectory of the
    policy action ũ (red) and of its projection Φ(ũ) (blue, not drawn without a safeguard);
    circles mark the start, squares the end."""
    s = result.scenario
    ax = plot_safe_set(s.A, s.b, ax=ax, extent=s.extent)
    _cones(ax, result)
    _box(ax)
    _contours(ax, result, result.objective_surfaces[setting])
    tr = result.trajectories[setting]
    # the applied action is drawn wide and underneath, so a proposal that is already safe (and
    # coincides with its projection) stays visible on top of it
    if setting != "none":  # without a safeguard nothing is projected
        ax.plot(*tr.safe.T, color=PROJECTION_COLOR, linewidth=3.5, alpha=0.6, zorder=3)
        ax.plot(*tr.safe[-1], "s", color=PROJECTION_COLOR, markersize=9, alpha=0.8, zorder=3)
    ax.plot(*tr.unsafe.T, color=UNSAFE_COLOR, marker=".", markersize=3, linewidth=1.2, zorder=4)
    ax.plot(*tr.unsafe[0], "o", color=UNSAFE_COLOR, markersize=6, zorder=4)
    ax.plot(*tr.unsafe[-1], "s", color=UNSAFE_COLOR, markersize=5, zorder=4)
    ax.plot(*result.best_safe_action, "x", color="black", markersize=9, markeredgewidth=2)
    ax.set_title(title or SETTING_LABELS[setting], fontsize=TITLE_SIZE)
    return ax


def _legend_handles() -> list:
    return [
        Patch(facecolor=SAFE_COLOR, alpha=0.35, label=r"safe set $\mathcal{U}_s(x)$"),
        Patch(facecolor=CONE_COLOR, alpha=0.35, label="normal cones of the vertices"),
        Line2D([], [], color=UNSAFE_COLOR, marker=".", label=r"policy action $\tilde u_t$"),
        Line2D([], [], color=PROJECTION_COLOR, marker=".", label=r"applied $\Phi(\tilde u_t)$"),
        Line2D([], [], color="black", marker="x", linestyle="", label="best safe action"),
        Line2D([], [], color="0.3", marker="o", linestyle="", label="start of the ascent"),
        Line2D([], [], color="0.3", marker="s", linestyle="", label="end of the ascent"),
        Line2D([], [], color=BOX_COLOR, linestyle=":", label="action box"),
    ]


def plot_settings(result: AliasingResult, settings: Sequence[str] = SETTINGS,
                  axes: Sequence[Axes] | None = None, ncols: int = 3) -> Sequence[Axes]:
    """One :func:`plot_setting` panel per setting, with one shared legend below."""
    if axes is None:
        nrows = -(-len(settings) // ncols)
        fig, grid = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 4.1 * nrows + 0.6),
                                 squeeze=False)
        axes = list(grid.flat)
        for ax in axes[len(settings):]:
            ax.set_visible(False)
        fig.legend(handles=_legend_handles(), loc="lower center", ncol=3, fontsize=LEGEND_SIZE,
                   frameon=False)
        fig.subplots_adjust(bottom=0.1 + 0.1 / nrows, wspace=0.3, hspace=0.3)
    for ax, setting in zip(axes, settings, strict=False):
        plot_setting(result, setting, ax=ax)
    return axes


def plot_critic_surfaces(result: AliasingResult, axes: Sequence[Axes] | None = None
                         ) -> Sequence[Axes]:
    """Four panels: the true V(ũ), the SE target V(Φ(ũ)) (flat along the normal cones, Lemma 2),
    the fitted SE critic Q_SE(ũ), and the SP critic Q_SP evaluated off the safe set, where it
    was never trained (shaded)."""
    if axes is None:
        _, axes = plt.subplots(1, 4, figsize=(19, 4.4))
    s = result.scenario
    panels = [
        (result.true_unsafe, r"true $V(\tilde u)$ (no safeguard)"),
        (result.true_projected, r"SE target $V(\Phi(\tilde u))$"),
        (result.critic_surfaces["se"], r"fitted SE critic $Q_{SE}(\tilde u)$"),
        (result.critic_surfaces["sp"], r"SP critic $Q_{SP}(u)$ (shaded: never trained)"),
    ]
    for ax, (surface, title) in zip(axes, panels, strict=True):
        plot_safe_set(s.A, s.b, ax=ax, extent=s.extent)
        _cones(ax, result)
        _box(ax)
        contours = _contours(ax, result, surface)
        colorbar = ax.figure.colorbar(contours, ax=ax, fraction=0.046, pad=0.03)
        colorbar.ax.tick_params(labelsize=SMALL_SIZE)
        colorbar.set_label("value", fontsize=SMALL_SIZE)
        ax.set_title(title, fontsize=TITLE_SIZE)
    grid = np.stack(np.meshgrid(result.u1, result.u2), -1)
    outside = (grid @ s.A.T > s.b + 1e-9).any(-1)
    axes[3].contourf(result.u1, result.u2, outside.astype(float), levels=[0.5, 1.5],
                     colors="white", alpha=0.6)
    return axes


def plot_rank(result: AliasingResult, ax: Axes | None = None,
              extent: Sequence[float] | None = None, resolution: int = 240) -> Axes:
    """Rank of dΦ/dũ over the action plane (chapter 1's :func:`plot_jacobian_rank`), with every
    vertex of the safe set marked and labelled by the number of constraints active there."""
    s = result.scenario
    extent = tuple(extent or (-2.0, 2.0, -2.0, 2.0))
    if ax is None:
        _, ax = plt.subplots(figsize=(5.8, 4.8))
    with one_thread():  # tens of thousands of tiny projections
        plot_jacobian_rank(s.A, s.b, ax=ax, extent=extent, resolution=resolution)
    _box(ax)
    vertices = polygon_vertices(s.A, s.b)
    # the count at a proposal deep in each vertex cone = rows active at that vertex
    probes = []
    for v in vertices:
        active = np.abs(s.A @ v - s.b) <= 1e-7 * (1 + np.abs(s.b))
        normals = s.A[active] / np.linalg.norm(s.A[active], axis=1, keepdims=True)
        probes.append(v + 0.05 * normals.sum(0) / np.linalg.norm(normals.sum(0)))
    counts = active_constraint_count(np.array(probes), s.A, s.b)
    ax.scatter(*vertices.T, color="white", edgecolor="black", zorder=4, s=25)
    centre = vertices.mean(0)
    # a compact number per vertex (labels like "2 active" overlapped at close vertices), and one
    # note that says what the numbers are
    for v, c in zip(vertices, counts, strict=True):
        if extent[0] < v[0] < extent[1] and extent[2] < v[1] < extent[3]:
            away = (v - centre) / np.linalg.norm(v - centre)
            ax.annotate(f"{c}", v, textcoords="offset points", xytext=tuple(11 * away),
                        fontsize=SMALL_SIZE, ha="center", va="center", color="black",
                        bbox={"boxstyle": "circle,pad=0.2", "fc": "white", "alpha": 0.85})
    ax.text(0.02, 0.02, "numbers: constraints active at each vertex", transform=ax.transAxes,
            fontsize=SMALL_SIZE, color="black",
            bbox={"boxstyle": "round,pad=0.2", "fc": "white", "alpha": 0.85})
    return ax


def plot_normal_derivatives(result: AliasingResult, nd: NormalDerivatives, face: int = 0,
                            axes: Sequence[Axes] | None = None) -> Sequence[Axes]:
    """Lemma 2 measured. Left: values along the ray ũ = u + t n out of face ``face``'s midpoint.
    Right: |∂_n Q| against t for the fitted SE critic, the unsafe-action critic and the exact SE
    target (zero, drawn at the bottom of the log axis), every measured face."""
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(11, 4))
    t = np.linspace(0.0, nd.distances.max(), 60)
    for (label, values), style in zip(
            values_along_ray(result, nd.points[face], nd.normals[face], t).items(),
            ["-", "--", "-.", ":"], strict=True):
        axes[0].plot(t, values, style, linewidth=2, label=label)
    axes[0].set_xlabel(r"distance $t$ along the normal, $\tilde u = u + t\,n$")
    axes[0].set_ylabel("value (standardised)")
    axes[0].set_title(f"{result.scenario.name}: values along a normal ray", fontsize=TITLE_SIZE)
    axes[0].legend(fontsize=LEGEND_SIZE)
    floor = 1e-4
    for i in range(len(nd.points)):
        lab = i == 0
        axes[1].plot(nd.distances, np.abs(nd.se[i]), "o-", color=PROJECTION_COLOR,
                     label=r"fitted SE critic $|\partial_n Q_{SE}|$" if lab else None)
        axes[1].plot(nd.distances, np.abs(nd.raw[i]), "s--", color=UNSAFE_COLOR,
                     label=r"unsafe-action critic $|\partial_n Q_{raw}|$" if lab else None)
        axes[1].plot(nd.distances, np.maximum(np.abs(nd.exact[i]), floor), "k:",
                     label=r"exact SE target (0; drawn at $10^{-4}$)" if lab else None)
    axes[1].set_yscale("log")
    axes[1].set_xlabel(r"distance $t$ into the normal cone")
    axes[1].set_ylabel("normal derivative (abs.)")
    axes[1].set_title("normal derivatives at every measured face", fontsize=TITLE_SIZE)
    axes[1].legend(fontsize=LEGEND_SIZE)
    return axes


_LONG_HORIZON_COLORS = {"sp_per_sample": "#c55a11", "sp_penalty_critic": "#548235",
                        "se_penalty": "#2f5597"}


def plot_long_horizon(result: LongHorizonResult, axes: Sequence[Axes] | None = None
                      ) -> Sequence[Axes]:
    """Chapter 7's long-horizon experiment (:mod:`tutorial_rl.aliasing.long_horizon`), two panels.

    Left: the first action's safe set, the true penalised value task − α·(future penalties) of
    the applied action Φ(ũ) (contours over ũ in the action box), and each setting's path ũ_t
    (circle: start, square: end). Right: along u2 = 0, the task value, −α·(future penalties) and
    their sum against the applied u1, with a vertical line where each setting's Φ(ũ_T) ended.
    """
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(11.5, 4.4), gridspec_kw={"width_ratios": [1, 1.3]})
    sc, grid = result.scenario, result.grid
    if grid.size == 0:
        raise ValueError("plot_long_horizon needs the grid: run_long_horizon(grid_size > 0)")
    ax = plot_safe_set(sc.A, sc.b, ax=axes[0], extent=(-1.5, 1.5, -1.5, 1.5),
                       label=r"safe set $\mathcal{U}_s(x)$")
    _box(ax)
    g = np.linspace(-1, 1, grid.shape[0])
    penalised = result.grid_task - result.grid_future
    ax.contour(g, g, penalised, levels=14, colors="0.55", linewidths=0.7)
    for setting, out in result.outcomes.items():
        color = _LONG_HORIZON_COLORS[setting]
        ax.plot(*out.path.T, color=color, marker=".", markersize=2.5, linewidth=1.1,
                label=LONG_HORIZON_LABELS[setting])
        ax.plot(*out.path[0], "o", color=color, markersize=6)
        ax.plot(*out.path[-1], "s", color=color, markersize=5)
    ax.set_xlabel(r"$\tilde u_1$ (acceleration towards the wall)")
    ax.set_ylabel(r"$\tilde u_2$")
    ax.set_title("paths of $\\tilde u$ over the true penalised value", fontsize=10)
    ax.legend(fontsize=8, loc="lower left")
    # the row u2 = 0, up to the face of the safe set (the projected grid repeats the face value)
    row = int(np.argmin(np.abs(g)))
    u1 = grid[row, :, 0]
    keep = np.concatenate([[True], np.diff(u1) > 1e-9])
    ax = axes[1]
    ax.plot(u1[keep], result.grid_task[row, keep], color="0.2", label="task value")
    ax.plot(u1[keep], -result.grid_future[row, keep], color="#7030a0",
            label=r"$-\alpha\,\sum_{k\geq 1}\gamma^k d_k^2$ (future penalties)")
    ax.plot(u1[keep], penalised[row, keep], color="black", linestyle="--",
            label="task value + future penalties")
    for setting, out in result.outcomes.items():
        ax.axvline(out.applied[0], color=_LONG_HORIZON_COLORS[setting], linewidth=1.5,
                   alpha=0.8, label=f"{LONG_HORIZON_LABELS[setting]} ends")
    ax.set_xlabel(r"applied $u_1 = \Phi(\tilde u)_1$ (at $u_2 = 0$)")
    ax.set_ylabel("discounted value (seeker reward units)")
    ax.set_title("what today's acceleration costs later", fontsize=10)
    low = min(penalised[row, keep].min(), -result.grid_future[row, keep].max())
    ax.set_ylim(low - 0.55, None)  # room for the legend below the curves
    ax.legend(fontsize=7.5, loc="lower left", ncol=2)
    return axes


def plot_epoch_sweep(frame: pd.DataFrame, best_safe_value: float | None = None,
                     axes: Sequence[Axes] | None = None) -> Sequence[Axes]:
    """Chapter 6's SE-critic epoch sweep (:mod:`tutorial_rl.aliasing.epoch_sweep`), two panels.

    Left: the share of seeds whose SE-RL policy escaped into the safe set, and the median fit
    RMSE of the SE critic (right axis), against the training epochs. Right: the true value of the
    final applied action Φ(ũ_T) of every seed (dots; filled: escaped) with the per-epochs mean.
    """
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(11.5, 3.8))
    g = frame.groupby("epochs")
    epochs = np.asarray(sorted(frame["epochs"].unique()))
    ax = axes[0]
    ax.plot(epochs, g["escaped"].mean().to_numpy(), "o-", color=SAFE_COLOR,
            label="share of seeds that escaped")
    ax.set_xscale("log")
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel("training epochs of the SE critic")
    ax.set_ylabel("share of seeds whose ũ_T is safe")
    twin = ax.twinx()
    twin.plot(epochs, g["rmse"].median().to_numpy(), "s--", color="0.4",
              label="median fit RMSE (right axis)")
    twin.set_ylabel("fit RMSE")
    handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    ax.legend(handles=handles, fontsize=8, loc="center right")
    ax = axes[1]
    offsets = np.linspace(-0.08, 0.08, frame["seed"].nunique())
    seed_index = {s: i for i, s in enumerate(sorted(frame["seed"].unique()))}
    x = frame["epochs"].to_numpy() * np.exp(offsets[frame["seed"].map(seed_index).to_numpy()])
    escaped = frame["escaped"].to_numpy(dtype=bool)
    ax.scatter(x[escaped], frame["value"][escaped], color=SAFE_COLOR, s=22, label="escaped")
    ax.scatter(x[~escaped], frame["value"][~escaped], facecolor="none", edgecolor=UNSAFE_COLOR,
               s=22, label="trapped outside")
    ax.plot(epochs, g["value"].mean().to_numpy(), color="0.2", linewidth=1, label="mean")
    if best_safe_value is not None:
        ax.axhline(best_safe_value, color="black", linestyle=":", linewidth=1,
                   label="best safe value")
    ax.set_xscale("log")
    ax.set_xlabel("training epochs of the SE critic")
    ax.set_ylabel(r"true value of $\Phi(\tilde u_T)$")
    ax.legend(fontsize=8)
    return axes

"""Figures of the experiments (Chapter 8, chapters/08_experiments.py): final performance with
confidence intervals, training curves with bands, interventions.

Each ``plot_*`` function draws one task × algorithm on a given matplotlib ``Axes`` from a table of
:mod:`tutorial_rl.experiments.stats` and returns the axes; ``figure_*`` functions lay those out as
a grid (rows: tasks, columns: algorithms) and return the ``Figure``. Nothing calls ``plt.show``.
Colours: one per variant, SE-RL in blues, SP-RL in oranges/greens, so a variant looks the same in
every figure of the chapter. Given reference scores (:mod:`~tutorial_rl.experiments.references`),
the performance figures draw the zero action and the reference controller as lines across the
return axis, and the final-performance panels get a second axis in normalised units.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Literal

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from tutorial_rl.experiments.config import VARIANTS
from tutorial_rl.experiments.references import CONTROLLER_LABEL, ZERO_LABEL, Reference
from tutorial_rl.experiments.stats import CONFIG
from tutorial_rl.experiments.training import ALGOS, ENVS

__all__ = ["VARIANT_COLORS", "best_configs", "draw_references", "figure_grid",
           "plot_final_performance", "plot_interventions", "plot_training_curves"]

VARIANT_COLORS: dict[str, str] = {
    "se-vanilla": "#1f4e79", "se-penalty": "#5b9bd5",
    "sp-vanilla": "#c55a11", "sp-per-sample-loss": "#f4b183", "sp-penalty-critic": "#548235",
    "unsafe": "#7f7f7f",
}


def _cell(table: pd.DataFrame, env: str, algo: str) -> pd.DataFrame:
    return table[(table["env"] == env) & (table["algo"] == algo)]


def _ordered(cell: pd.DataFrame) -> pd.DataFrame:
    """Rows in the paper's column order (SE vanilla, SE penalty, SP vanilla, SP per-sample loss,
    SP penalty critic), then by α."""
    rank = cell["variant"].map({v: i for i, v in enumerate(VARIANTS)}).fillna(len(VARIANTS))
    return cell.assign(_rank=rank).sort_values(["_rank", "alpha"], na_position="first") \
        .drop(columns="_rank")


def _in_order(values: pd.Series, order: Sequence[str]) -> list[str]:
    present = list(dict.fromkeys(values))
    return sorted(present, key=lambda v: order.index(v) if v in order else len(order))


def _steps_label(x: float, _pos: int) -> str:
    """Tick labels 0, 500, 5k, 20k: full step counts overlap on a narrow panel."""
    return f"{x / 1000:g}k" if abs(x) >= 1000 else f"{x:g}"


def _color(variant: str) -> str:
    return VARIANT_COLORS.get(variant, "#000000")


def draw_references(ax: Axes, references: Mapping[str, Reference] | None, env: str,
                    axis: Literal["x", "y"] = "y") -> list:
    """Lines at the zero action's and the reference controller's score of ``env`` across the
    return axis (``axis``: the one that carries returns), labelled "zero action" and "reference
    controller"; nothing where ``references`` has no entry for ``env``. Returns the lines."""
    ref = (references or {}).get(env)
    if ref is None:
        return []
    line = ax.axvline if axis == "x" else ax.axhline
    return [line(ref.zero, color="0.45", ls=":", lw=1.3, label=ZERO_LABEL, zorder=1),
            line(ref.controller, color="0.15", ls="--", lw=1.3, label=CONTROLLER_LABEL,
                 zorder=1)]


def best_configs(final: pd.DataFrame, env: str, algo: str) -> list[str]:
    """Config labels of one task × algorithm: every vanilla variant and the best α (highest IQM)
    of each mitigated one -- what the paper's figure 4 shows."""
    cell = _cell(final, env, algo)
    if cell.empty:
        return []
    best = cell.loc[cell.groupby("variant")["iqm"].idxmax()]
    return sorted(best[CONFIG])


def plot_final_performance(final: pd.DataFrame, env: str, algo: str, ax: Axes | None = None,
                           references: Mapping[str, Reference] | None = None) -> Axes:
    """IQM of the evaluation return per configuration (dot) with its 95 % bootstrap CI (bar);
    with ``references``, their lines and a top axis of normalised score (0 = zero action,
    1 = reference controller). The lines carry labels but no legend here, which would hide
    rows; :func:`figure_grid` adds one for the figure."""
    ax = ax or plt.gca()
    lines = draw_references(ax, references, env, axis="x")
    if lines:
        ref = references[env]  # type: ignore[index]
        top = ax.secondary_xaxis("top", functions=(
            ref.normalise, lambda u: ref.zero + u * (ref.controller - ref.zero)))
        top.set_xlabel("normalised", fontsize="small")
    cell = _ordered(_cell(final, env, algo))
    y = np.arange(len(cell))[::-1]
    for yi, row in zip(y, cell.itertuples(index=False), strict=True):
        ax.plot([row.ci_low, row.ci_high], [yi, yi], color=_color(row.variant), lw=4,
                alpha=0.45, solid_capstyle="butt")
        ax.plot(row.iqm, yi, "o", color=_color(row.variant))
    ax.set_yticks(y, list(cell[CONFIG]))
    ax.set_xlabel("IQM evaluation return (95 % CI)")
    ax.set_title(f"{algo.upper()} · {env}")
    ax.grid(axis="x", alpha=0.3)
    return ax


def plot_training_curves(bands: pd.DataFrame, env: str, algo: str, ax: Axes | None = None,
                         configs: Sequence[str] | None = None,
                         final: pd.DataFrame | None = None,
                         references: Mapping[str, Reference] | None = None) -> Axes:
    """Center (IQM or mean over seeds) of the smoothed training return against environment
    steps, with its bootstrap band (:func:`~tutorial_rl.experiments.stats.curve_bands`).

    :param configs: config labels to draw (default: all, or :func:`best_configs` of ``final``).
    :param final: a :func:`~tutorial_rl.experiments.stats.final_performance` table.
    :param references: reference scores, drawn as horizontal lines (:func:`draw_references`).
    """
    ax = ax or plt.gca()
    lines = draw_references(ax, references, env, axis="y")
    cell = _cell(bands, env, algo)
    if configs is None and final is not None:
        configs = best_configs(final, env, algo)
    if configs is not None:
        cell = cell[cell[CONFIG].isin(configs)]
    for label in _ordered(cell.drop_duplicates(CONFIG))[CONFIG]:
        group = cell[cell[CONFIG] == label].sort_values("step")
        color = _color(group["variant"].iloc[0])
        ax.plot(group["step"], group["center"], color=color, label=label)
        ax.fill_between(group["step"], group["low"], group["high"], color=color, alpha=0.2,
                        lw=0)
    ax.set_xlabel("environment steps")
    ax.xaxis.set_major_formatter(FuncFormatter(_steps_label))
    ax.set_ylabel("training return")
    ax.set_title(f"{algo.upper()} · {env}")
    if len(cell) or lines:
        ax.legend(fontsize="small")
    return ax


def plot_interventions(table: pd.DataFrame, env: str, algo: str, ax: Axes | None = None,
                       column: str = "eval_per_episode") -> Axes:
    """Bars of an :func:`~tutorial_rl.experiments.stats.interventions` column per configuration
    (default: interventions per evaluation episode, the mean over seeds), with its 95 % bootstrap
    interval where the table has one (``*_low``/``*_high``: never below zero), otherwise none."""
    ax = ax or plt.gca()
    cell = _ordered(_cell(table, env, algo))
    x = np.arange(len(cell))
    err = None
    if f"{column}_low" in cell and f"{column}_high" in cell:
        err = np.vstack([(cell[column] - cell[f"{column}_low"]).clip(lower=0).fillna(0.0),
                         (cell[f"{column}_high"] - cell[column]).clip(lower=0).fillna(0.0)])
    ax.bar(x, cell[column], color=[_color(v) for v in cell["variant"]], yerr=err, capsize=2)
    ax.set_xticks(x, list(cell[CONFIG]), rotation=60, ha="right", fontsize="small")
    ax.set_ylabel(column.replace("_", " "))
    ax.set_title(f"{algo.upper()} · {env}")
    return ax


def figure_grid(table: pd.DataFrame, draw: Callable[..., Axes], title: str,
                cell_size: tuple[float, float] = (5.0, 3.2), **kwargs: object) -> Figure:
    """One panel per task (rows) × algorithm (columns) present in ``table``, each drawn by
    ``draw(table, env, algo, ax=ax, **kwargs)``."""
    envs = _in_order(table["env"], list(ENVS))
    algos = _in_order(table["algo"], list(ALGOS))
    fig, axes = plt.subplots(max(1, len(envs)), max(1, len(algos)), squeeze=False,
                             figsize=(cell_size[0] * max(1, len(algos)),
                                      cell_size[1] * max(1, len(envs))))
    for i, env in enumerate(envs):
        for j, algo in enumerate(algos):
            draw(table, env, algo, ax=axes[i, j], **kwargs)
    fig.suptitle(title)
    # reference lines of panels without a legend of their own: one legend for the figure
    refs = {line.get_label(): line for ax in axes.flat if ax.get_legend() is None
            for line in ax.get_lines() if line.get_label() in (ZERO_LABEL, CONTROLLER_LABEL)}
    if refs:
        fig.legend(list(refs.values()), list(refs), loc="lower center", ncol=len(refs),
                   frameon=False, fontsize="small")
    fig.tight_layout(rect=(0, 0.04 if refs else 0, 1, 1))
    return fig

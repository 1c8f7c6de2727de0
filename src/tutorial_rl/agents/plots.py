"""Figures and tables of single training runs: Chapter 4 (chapters/04_se_rl.py) and Chapter 5
(chapters/05_sp_rl.py).

- :func:`read_progress` reads a run's ``progress.csv`` (the rows :func:`~tutorial_rl.experiments.
  training.train` also returns as ``RunResult.progress``);
- :func:`plot_progress` draws one run's training curve, interventions and constraint violations
  per episode side by side; :func:`plot_mode_comparison` overlays several runs (one per mode);
- :func:`plot_critic_slice` draws a TD3 critic Q(x, ·) over a 1-D action at one state, with the
  safe interval U_s(x) shaded: what the critic has learned on safe and unsafe actions;
- :func:`parameter_table` compares two agents tensor by tensor (Lemma 1 in Chapter 5).

Every ``plot_*`` function draws on given axes (or new ones) and returns them; nothing calls
``plt.show``. The experiments' figures (many seeds, confidence bands) are in
:mod:`tutorial_rl.experiments.plots`; the mode colours here match its variant colours.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import nn

from tutorial_rl.style import LEGEND_SIZE, MODE_COLORS, TITLE_SIZE

__all__ = [
    "METRICS",
    "MODE_COLORS",
    "parameter_table",
    "plot_critic_slice",
    "plot_mode_comparison",
    "plot_progress",
    "read_progress",
    "safe_interval",
]


#: The per-episode columns of ``progress.csv`` drawn by :func:`plot_progress`, with axis labels.
METRICS: tuple[tuple[str, str], ...] = (
    ("episode_return", "episode return"),
    ("interventions", "interventions per episode"),
    ("constraint_violations", "constraint violations per episode"),
)

Row = Mapping[str, Any]


def _number(text: str) -> int | float:
    value = float(text)
    return int(value) if value.is_integer() and "." not in text and "e" not in text else value


def read_progress(path: str | Path) -> list[dict[str, int | float]]:
    """The rows of a run's ``progress.csv`` with numbers parsed (ints stay ints).

    :param path: the csv file, or the run directory that holds it.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "progress.csv"
    with open(path, newline="") as fh:
        return [{key: _number(value) for key, value in row.items()} for row in csv.DictReader(fh)]


def _complete(rows: Sequence[Row]) -> list[Row]:
    """Finished episodes only: a run's last row may be a partial episode (``complete = 0``)."""
    return [row for row in rows if int(row.get("complete", 1))]


def _rolling_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean over the last ``window`` values (fewer at the start)."""
    sums = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    start = np.maximum(idx - window, 0)
    return (sums[idx] - sums[start]) / (idx - start)


def plot_progress(rows: Sequence[Row], axes: Sequence[Axes] | None = None,
                  label: str | None = None, color: str | None = None,
                  window: int = 1) -> Sequence[Axes]:
    """Episode return, interventions and constraint violations against the environment step.

    Each point is one finished episode, placed at the step where it ended.

    :param rows: ``RunResult.progress`` or :func:`read_progress` output.
    :param axes: three axes (one per entry of :data:`METRICS`); new ones if ``None``.
    :param label: legend label of this run.
    :param color: line colour.
    :param window: also draw the return's moving average over this many episodes (if > 1).
    :returns: the three axes.
    """
    if axes is None:
        _, new_axes = plt.subplots(1, len(METRICS), figsize=(13, 3.6))
        axes = list(new_axes)
    if len(axes) != len(METRICS):
        raise ValueError(f"plot_progress needs {len(METRICS)} axes, got {len(axes)}")
    episodes = _complete(rows)
    steps = np.array([row["step"] for row in episodes], dtype=float)
    for ax, (key, title) in zip(axes, METRICS, strict=True):
        values = np.array([row[key] for row in episodes], dtype=float)
        faint = key == "episode_return" and window > 1
        line, = ax.plot(steps, values, ".-", color=color, markersize=4, linewidth=1,
                        alpha=0.35 if faint else 0.9, label=None if faint else label)
        if faint and len(values):
            ax.plot(steps, _rolling_mean(values, window), color=line.get_color(), linewidth=2,
                    label=label)
        ax.set_title(title, fontsize=TITLE_SIZE)
        ax.set_xlabel("environment step")
        ax.grid(alpha=0.3)
    return axes


def plot_mode_comparison(runs: Mapping[str, Sequence[Row]], axes: Sequence[Axes] | None = None,
                         colors: Mapping[str, str] | None = None, window: int = 1) -> Figure:
    """Several runs (e.g. one per mode) in the three panels of :func:`plot_progress`.

    :param runs: label -> progress rows; labels that are modes get :data:`MODE_COLORS`.
    :param colors: colours by label (overrides :data:`MODE_COLORS`).
    :returns: the figure.
    """
    if axes is None:
        _, new_axes = plt.subplots(1, len(METRICS), figsize=(13, 3.6))
        axes = list(new_axes)
    palette = {**MODE_COLORS, **(colors or {})}
    for label, rows in runs.items():
        plot_progress(rows, axes, label=label, color=palette.get(label), window=window)
    axes[0].legend(fontsize=LEGEND_SIZE)
    figure = axes[0].figure
    assert isinstance(figure, Figure)
    return figure


def safe_interval(A: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """The interval {a : A a <= b} of a 1-D action as (low, high); ``low > high`` if empty.

    Rows with a zero coefficient are ignored (they hold for every action or for none).
    """
    a, b = np.asarray(A, dtype=float).reshape(-1), np.asarray(b, dtype=float).reshape(-1)
    if len(a) != len(b):
        raise ValueError(f"A must be [k, 1] with b [k]; got {np.shape(A)} and {np.shape(b)}")
    upper = b[a > 0] / a[a > 0]
    lower = b[a < 0] / a[a < 0]
    return (float(lower.max()) if len(lower) else -np.inf,
            float(upper.min()) if len(upper) else np.inf)


class _TD3Like(Protocol):
    low: np.ndarray
    high: np.ndarray
    critic: Any

    def select_action(self, obs: np.ndarray, explore: bool = False) -> np.ndarray: ...


def plot_critic_slice(agent: _TD3Like, obs: np.ndarray,
                      safe_set: tuple[np.ndarray, np.ndarray] | None = None,
                      ax: Axes | None = None, n: int = 201, color: str | None = None,
                      label: str | None = None) -> Axes:
    """Q1(x, a) of a TD3 agent over its whole 1-D action box at the state ``x = obs``.

    With ``safe_set`` = (A, b) of U_s(x), the safe interval is shaded and the policy's action
    μθ(x) and its projection Φ(x, μθ(x)) are marked: what an SE-RL critic has learned on unsafe
    actions (Chapter 4), or where an SP-RL critic was never trained (Chapter 5).

    :param agent: a :class:`~tutorial_rl.agents.td3.TD3` agent with a 1-D action.
    :param obs: the observation x.
    :param n: grid points over the action box.
    """
    if np.size(agent.low) != 1:
        raise ValueError(f"plot_critic_slice needs a 1-D action; got {np.size(agent.low)}-D")
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.6))
    actions = np.linspace(float(agent.low[0]), float(agent.high[0]), n)
    device = agent.device
    x = torch.as_tensor(np.asarray(obs, dtype=np.float32), device=device).expand(n, -1)
    with torch.no_grad():
        u = torch.as_tensor(actions, dtype=torch.float32, device=device)[:, None]
        q = agent.critic.q1(x, u).cpu().numpy()
    line, = ax.plot(actions, q, color=color, linewidth=2, label=label or r"$Q_1(x, a)$")
    mu = float(agent.select_action(np.asarray(obs), explore=False)[0])
    if safe_set is not None:
        low, high = safe_interval(*safe_set)
        low, high = max(low, actions[0]), min(high, actions[-1])
        if low <= high:
            ax.axvspan(low, high, color="#8fd19e", alpha=0.35, label=r"$\mathcal{U}_s(x)$")
            projected = float(np.clip(mu, low, high))
            ax.axvline(projected, color="#2a7d3c", linestyle="--", linewidth=1,
                       label=r"$\Phi(x, \mu_\theta(x))$")
    ax.axvline(mu, color=line.get_color(), linestyle=":", linewidth=1.5,
               label=r"$\mu_\theta(x)$")
    ax.set_xlabel("action $a$ (normalised)")
    ax.set_ylabel(r"$Q_1(x, a)$")
    ax.grid(alpha=0.3)
    return ax


class _HasNetworks(Protocol):
    def networks(self) -> Mapping[str, nn.Module]: ...


def parameter_table(first: _HasNetworks, second: _HasNetworks) -> list[dict[str, Any]]:
    """Compare two agents' trainable parameters tensor by tensor (``torch.equal``).

    :param first: an agent (TD3 or A2C: anything with ``networks()``).
    :param second: an agent with the same networks.
    :returns: one row per parameter tensor: ``parameter`` (network.name), ``shape``,
        ``identical`` (bit for bit) and ``max_abs_difference``.
    :raises ValueError: the agents do not have the same parameter names and shapes.
    """
    a = {f"{net}.{name}": p for net, module in first.networks().items()
         for name, p in module.named_parameters()}
    b = {f"{net}.{name}": p for net, module in second.networks().items()
         for name, p in module.named_parameters()}
    if a.keys() != b.keys() or any(a[k].shape != b[k].shape for k in a):
        raise ValueError("the two agents have different networks; compare like with like")
    return [{"parameter": k, "shape": tuple(a[k].shape),
             "identical": bool(torch.equal(a[k], b[k])),
             "max_abs_difference": float((a[k].detach() - b[k].detach()).abs().max())}
            for k in a]

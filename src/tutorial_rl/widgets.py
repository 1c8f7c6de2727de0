"""Interactive widgets for the chapters (they need a running Jupyter kernel).

Each widget has a static counterpart in :mod:`tutorial_rl.plotting` (or
:mod:`tutorial_rl.sets.plotting`), which the chapters draw
beside it so the built (static) HTML book still shows the idea. ``ipywidgets`` is part of the
``book`` extra, so it is imported only when a widget is built.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
import torch

from tutorial_rl.plotting import plot_projection
from tutorial_rl.projection import active_set, projection_jacobian

if TYPE_CHECKING:  # pragma: no cover - for type checkers only
    import ipywidgets

    from tutorial_rl.sets.safe_actions import LinearSafeActionSet


def describe_projection(A: np.ndarray, b: np.ndarray, unsafe_action: Sequence[float]) -> str:
    """One line of text: the active constraints at the projection and the Jacobian's rank."""
    u = torch.as_tensor(np.atleast_2d(unsafe_action), dtype=torch.float64)
    A_t = torch.as_tensor(A, dtype=torch.float64)
    b_t = torch.as_tensor(b, dtype=torch.float64)
    active = torch.nonzero(active_set(u, A_t, b_t)[0]).flatten().tolist()
    jac = projection_jacobian(u, A_t, b_t)[0]
    rank = int(torch.linalg.matrix_rank(jac, atol=1e-9, rtol=0.0))  # absolute: J is a projector
    jac_text = np.array2string(jac.numpy(), precision=2, suppress_small=True).replace("\n", "")
    return f"active constraints: {active or 'none'}; rank of dPhi/du: {rank}; dPhi/du = {jac_text}"


def projection_widget(
    A: np.ndarray,
    b: np.ndarray,
    extent: Sequence[float] = (-2.5, 2.5, -2.5, 2.5),
    start: Sequence[float] = (2.0, 1.5),
):
    """Two sliders move a proposed action; the figure shows its projection and normal cone.

    Chapter 1 (chapters/01_projection.py), section "Try it". Returns an ``ipywidgets.VBox``.
    """
    import ipywidgets as widgets  # the book extra; only needed when a widget is shown
    from IPython.display import display

    u1 = widgets.FloatSlider(value=start[0], min=extent[0], max=extent[1], step=0.05,
                             description="ũ₁", continuous_update=False)
    u2 = widgets.FloatSlider(value=start[1], min=extent[2], max=extent[3], step=0.05,
                             description="ũ₂", continuous_update=False)
    output = widgets.Output()

    def redraw(_change: object = None) -> None:
        with output:
            output.clear_output(wait=True)
            fig, ax = plt.subplots(figsize=(4.5, 4.5))
            plot_projection(A, b, np.array([[u1.value, u2.value]]), ax=ax, extent=extent)
            ax.set_title(describe_projection(A, b, (u1.value, u2.value)).split(";")[1].strip(),
                         fontsize=9)
            display(fig)
            plt.close(fig)
            print(describe_projection(A, b, (u1.value, u2.value)))

    u1.observe(redraw, names="value")
    u2.observe(redraw, names="value")
    redraw()
    return widgets.VBox([widgets.HBox([u1, u2]), output])


def describe_safe_torque(
    safe_set: LinearSafeActionSet, state: Sequence[float], torque: float
) -> str:
    """One line of text: the safe torque interval at ``state`` and whether ``torque`` is in it.

    ``safe_set`` is a 1-input :class:`~tutorial_rl.sets.safe_actions.LinearSafeActionSet`
    (the pendulum's, in N m). "Safe" means ``A x + B u ⊕ W`` lies in the RCI set (exact test).
    """
    from tutorial_rl.sets.safe_action_plots import next_state_set

    x = np.asarray(state, dtype=np.float64)
    if safe_set.is_empty(x):
        return f"x = {np.round(x, 2).tolist()} is outside the RCI set: no torque is safe"
    lower, upper = (float(v[0]) for v in safe_set.safe_interval(x))
    H, h = safe_set.X.halfspaces()
    margin = float(np.max(next_state_set(safe_set, x, [torque]).support(H) - h))
    verdict = ("safe: the next-state set stays in the RCI set" if margin <= 1e-9 else
               f"unsafe: the next-state set leaves the RCI set by {margin:.3f}")
    return f"safe torques [{lower:.2f}, {upper:.2f}] N m; u = {torque:.2f} N m is {verdict}"


def pendulum_safe_set_widget(
    safe_set: LinearSafeActionSet | None = None, start: Sequence[float] = (0.5, 1.0, 0.0)
) -> ipywidgets.VBox:
    """Sliders for the pendulum state (θ, θ̇) and a torque u; the figure shows the RCI set and
    the next-state set ``A x + B u ⊕ W`` (green inside, red leaving it).

    Chapter 2 (chapters/02_zonotopes.py), section "Try it". ``safe_set`` defaults to
    :func:`tutorial_rl.sets.pendulum_safe_action_set`. Returns an ``ipywidgets.VBox``.
    """
    import ipywidgets as widgets  # the book extra; only needed when a widget is shown
    from IPython.display import display

    from tutorial_rl.sets import pendulum_safe_action_set
    from tutorial_rl.sets.safe_action_plots import plot_next_state_sets

    safe_set = pendulum_safe_action_set() if safe_set is None else safe_set
    lo, hi = safe_set.X.interval_hull()
    u_lo, u_hi = float(safe_set.input_box.lower[0]), float(safe_set.input_box.upper[0])
    theta = widgets.FloatSlider(value=start[0], min=round(lo[0], 2), max=round(hi[0], 2),
                                step=0.01, description="θ (rad)", continuous_update=False)
    theta_dot = widgets.FloatSlider(value=start[1], min=round(lo[1], 1), max=round(hi[1], 1),
                                    step=0.05, description="θ̇ (rad/s)", continuous_update=False)
    torque = widgets.FloatSlider(value=start[2], min=u_lo, max=u_hi, step=0.1,
                                 description="u (N m)", continuous_update=False)
    output = widgets.Output()

    def redraw(_change: object = None) -> None:
        x = np.array([theta.value, theta_dot.value])
        with output:
            output.clear_output(wait=True)
            fig, ax = plt.subplots(figsize=(5.5, 4.5))
            plot_next_state_sets(safe_set, x, [torque.value], ax=ax)
            display(fig)
            plt.close(fig)
            print(describe_safe_torque(safe_set, x, torque.value))

    for slider in (theta, theta_dot, torque):
        slider.observe(redraw, names="value")
    redraw()
    return widgets.VBox([widgets.HBox([theta, theta_dot, torque]), output])


if TYPE_CHECKING:  # pragma: no cover - for type checkers only
    from tutorial_rl.aliasing import AliasingResult


def aliasing_widget(results: dict[str, AliasingResult]) -> ipywidgets.VBox:
    """Choose a scenario and a setting; the figure shows the learned objective, the safe set,
    the normal cones and the policy's trajectory (ũ and Φ(ũ)) of the fixed-state experiment.

    Chapter 6 (chapters/06_aliasing.py), section "Try it"; its static counterpart is
    :func:`tutorial_rl.aliasing.plots.plot_settings`. ``results`` maps scenario names to
    :class:`tutorial_rl.aliasing.AliasingResult` (e.g. :func:`tutorial_rl.aliasing.run_all`).
    Returns an ``ipywidgets.VBox``.
    """
    import ipywidgets as widgets  # the book extra; only needed when a widget is shown
    from IPython.display import display

    from tutorial_rl.aliasing import SETTING_LABELS
    from tutorial_rl.aliasing.plots import plot_setting

    scenario = widgets.Dropdown(options=list(results), description="scenario")
    setting = widgets.Dropdown(
        options=[(label, key) for key, label in SETTING_LABELS.items()
                 if key in results[scenario.value].trajectories],
        description="setting")
    output = widgets.Output()

    def redraw(_change: object = None) -> None:
        result = results[scenario.value]
        with output:
            output.clear_output(wait=True)
            fig, ax = plt.subplots(figsize=(5, 5))
            plot_setting(result, setting.value, ax=ax)
            display(fig)
            plt.close(fig)
            tr = result.trajectories[setting.value]
            print(f"final policy action {np.round(tr.unsafe[-1], 3)}, applied "
                  f"{np.round(tr.applied[-1], 3)}, true value {tr.final_value:.3f} "
                  f"(best safe {result.best_safe_value:.3f})")

    scenario.observe(redraw, names="value")
    setting.observe(redraw, names="value")
    redraw()
    return widgets.VBox([widgets.HBox([scenario, setting]), output])

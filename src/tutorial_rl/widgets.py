"""Interactive widgets for the chapters (they need a running Jupyter kernel).

Each widget has a static counterpart in :mod:`tutorial_rl.plotting`, which the chapters draw
beside it so the built (static) HTML book still shows the idea. ``ipywidgets`` is part of the
``book`` extra, so it is imported only when a widget is built.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from tutorial_rl.plotting import plot_projection
from tutorial_rl.projection import active_set, projection_jacobian


def describe_projection(A: np.ndarray, b: np.ndarray, unsafe_action: Sequence[float]) -> str:
    """One line of text: the active constraints at the projection and the Jacobian's rank."""
    u = torch.as_tensor(np.atleast_2d(unsafe_action), dtype=torch.float64)
    A_t = torch.as_tensor(A, dtype=torch.float64)
    b_t = torch.as_tensor(b, dtype=torch.float64)
    active = torch.nonzero(active_set(u, A_t, b_t)[0]).flatten().tolist()
    jac = projection_jacobian(u, A_t, b_t)[0]
    rank = int(torch.linalg.matrix_rank(jac))
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

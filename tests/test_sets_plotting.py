"""Chapter-2 figure and widget helpers (tutorial_rl.sets.plotting, tutorial_rl.widgets).

Behaviour, not pixels: the numbers the helpers compute agree with the safe-set objects they
draw, and every figure function runs on the Agg backend and draws what it says.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest

from tutorial_rl.sets import (
    Zonotope,
    is_contained,
    load_rci,
    pendulum_safe_action_set,
    quadrotor_safe_action_set,
    verify_invariance,
)
from tutorial_rl.sets.plotting import (
    plot_containment,
    plot_containment_scan,
    plot_linear_map,
    plot_minkowski_sum,
    plot_rci_projections,
    plot_state_box,
    plot_support_function,
    plot_trajectories,
    plot_zonotope_anatomy,
)
from tutorial_rl.sets.polygon import ordered_vertices
from tutorial_rl.sets.safe_action_plots import (
    next_state_set,
    plot_next_state_sets,
    plot_safe_interval_map,
    plot_safe_polygons,
    plot_verification,
    plot_verification_counts,
    safe_interval_grid,
)
from tutorial_rl.widgets import describe_safe_torque


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# ---------------------------------------------------------------------- numbers behind figures
def test_safe_interval_grid_matches_halfspaces() -> None:
    S = pendulum_safe_action_set()
    first, second = np.linspace(-1.2, 1.2, 25), np.linspace(-4.5, 4.5, 31)
    lower, upper = safe_interval_grid(S, first, second)
    assert lower.shape == upper.shape == (31, 25)
    T, V = np.meshgrid(first, second)
    states = np.stack([T.ravel(), V.ravel()], axis=1)
    A, b = S.halfspaces(states)
    up = A[0, :, 0] > 0
    hs_upper = (b[:, up] / A[0, up, 0]).min(axis=1)
    hs_lower = (b[:, ~up] / A[0, ~up, 0]).max(axis=1)
    empty = S.is_empty(states)
    assert 0 < empty.sum() < len(states)  # the grid reaches outside the set
    assert np.array_equal(np.isnan(lower.ravel()), empty)
    assert np.array_equal(np.isnan(upper.ravel()), empty)
    assert np.allclose(lower.ravel()[~empty], hs_lower[~empty], rtol=0, atol=1e-12)
    assert np.allclose(upper.ravel()[~empty], hs_upper[~empty], rtol=0, atol=1e-12)
    assert np.all(lower.ravel()[~empty] <= upper.ravel()[~empty])


def test_safe_interval_grid_rejects_other_systems() -> None:
    with pytest.raises(ValueError, match="2 states and 1 input"):
        safe_interval_grid(quadrotor_safe_action_set(), np.zeros(2), np.zeros(2))


def test_next_state_set_is_inside_exactly_for_safe_torques() -> None:
    S = pendulum_safe_action_set()
    x = np.array([0.3, -1.0])
    Z = next_state_set(S, x, [1.5])
    assert np.allclose(Z.center, S.A @ x + S.B[:, 0] * 1.5 + S.c + S.W.center)
    assert np.array_equal(Z.generators, S.W.generators)
    lower, upper = (float(v[0]) for v in S.safe_interval(x))
    for u in (lower, (lower + upper) / 2, upper):
        assert is_contained(next_state_set(S, x, [u]), S.X, method="halfspaces", tol=1e-9)
    for u in (lower - 0.05, upper + 0.05):
        assert not is_contained(next_state_set(S, x, [u]), S.X, method="halfspaces")


def test_describe_safe_torque() -> None:
    S = pendulum_safe_action_set()
    x = np.array([0.3, -1.0])
    lower, upper = (float(v[0]) for v in S.safe_interval(x))
    text = describe_safe_torque(S, x, (lower + upper) / 2)
    assert f"[{lower:.2f}, {upper:.2f}]" in text and "is safe" in text
    assert "is unsafe" in describe_safe_torque(S, x, upper + 0.5)
    assert "outside the RCI set" in describe_safe_torque(S, np.array([0.5, 2.0]), 0.0)


def test_pendulum_widget_builds() -> None:
    widgets = pytest.importorskip("ipywidgets")
    from tutorial_rl.widgets import pendulum_safe_set_widget

    box = pendulum_safe_set_widget(pendulum_safe_action_set(), start=(0.0, 0.0, 1.0))
    assert isinstance(box, widgets.VBox)
    sliders = box.children[0].children
    assert [s.value for s in sliders] == [0.0, 0.0, 1.0]
    sliders[2].value = -2.0  # redraws without error


# ---------------------------------------------------------------------- zonotope figures
def test_zonotope_figures_draw_their_sets() -> None:
    Z1 = Zonotope([0.0, 0.0], [[1.0, 0.4], [0.0, 0.8]])
    Z2 = Zonotope([0.0, 0.0], [[0.3, -0.2, 0.0], [0.1, 0.2, 0.3]])
    ax = plot_zonotope_anatomy(Z1 + Z2, n_samples=50)
    assert len(ax.patches) == 1 and len(ax.texts) == 5  # the set and one arrow per generator
    ax = plot_minkowski_sum(Z1, Z2, ax=plt.figure().gca())
    assert len(ax.patches) == 1 + 4 + 2  # sum, one copy per vertex of Z1, Z1, Z2
    summed = ax.patches[0].get_xy()[:-1]
    assert np.allclose(np.sort(summed, axis=0), np.sort((Z1 + Z2).vertices_2d(), axis=0))
    ax = plot_linear_map(Z1, np.array([[0.0, -1.0], [1.0, 0.0]]), ax=plt.figure().gca())
    assert np.allclose(ax.patches[1].get_xy()[:-1].min(axis=0), (Z1.linear_map(
        np.array([[0.0, -1.0], [1.0, 0.0]]))).vertices_2d().min(axis=0))


def test_support_function_figure_touches_the_set() -> None:
    Z = Zonotope([0.5, -0.2], [[1.0, 0.3, -0.4], [0.2, 0.8, 0.6]])
    d = np.array([1.0, 0.5])
    ax = plot_support_function(Z, d[None])
    line = ax.lines[0].get_xydata()
    unit = d / np.linalg.norm(d)
    assert np.allclose(line @ unit, Z.support(unit))  # the dashed line is dᵀz = h_Z(d)


def test_containment_figures() -> None:
    outer = Zonotope([0.0, 0.0], [[1.0, 0.5, -0.5], [0.0, 0.8, 0.8]])
    ax = plot_containment(Zonotope([1.2, 0.3], [[0.5, 0.2], [0.1, 0.35]]), outer)
    labels = ax.get_legend_handles_labels()[1]
    assert "vertex outside" in labels and "vertex inside" in labels
    scales = np.array([1.0, 1.5, 2.0, 2.5])
    ax = plot_containment_scan(scales, np.array([1, 0, 0, 0], bool), np.array([1, 1, 1, 0], bool),
                               ax=plt.figure().gca())
    assert "contained, but the LP cannot prove it" in ax.get_legend_handles_labels()[1]


# ---------------------------------------------------------------------- RCI and safe-set figures
def test_state_box_rectangle() -> None:
    rci = load_rci("quadrotor")
    ax = plot_state_box(rci.state_box, dims=(1, 3))
    rect = ax.patches[0]
    assert rect.get_x() == pytest.approx(rci.state_box.lower[1])
    assert rect.get_width() == pytest.approx(rci.state_box.upper[1] - rci.state_box.lower[1])
    assert rect.get_height() == pytest.approx(2.0)


def test_pendulum_figures() -> None:
    rci = load_rci("pendulum")
    S = pendulum_safe_action_set()
    traj = S.X.sample(20, np.random.default_rng(0))
    ax = plot_trajectories(rci, [traj, traj[::-1]])
    assert len(ax.lines) >= 2
    axes = plot_safe_interval_map(S, resolution=21)
    assert len(axes) == 2 and all(ax.collections for ax in axes)
    x = np.array([0.3, -1.0])
    ax = plot_next_state_sets(S, x, [-8.0, 0.0, 8.0], ax=plt.figure().gca())
    colors = [p.get_facecolor()[:3] for p in ax.patches[2:]]  # after the box and the RCI set
    lower, upper = S.safe_interval(x)
    safe = [lower[0] <= u <= upper[0] for u in (-8.0, 0.0, 8.0)]
    assert safe == [False, True, False]
    assert colors[0] == colors[2] != colors[1]


def test_quadrotor_figures() -> None:
    rci = load_rci("quadrotor")
    S = quadrotor_safe_action_set()
    labels = ["x", "z", "vx", "vz", "th", "thd"]
    axes = plot_rci_projections(rci, [(0, 2), (1, 3)], labels, slice_resolution=15)
    assert len(axes) == 2 and axes[0].get_xlabel() == "x"
    offsets = np.array([[0, 0, 0, 0, 0, 0], [0, -0.45, 0, -0.4, 0, 0], [0, 0, 0, 0, 1, 0]])
    states = rci.x_eq + offsets
    axes = plot_safe_polygons(S, states)
    A, b = S.halfspaces(states[0])
    drawn = axes[0].patches[1].get_xy()[:-1]
    assert np.allclose(np.sort(drawn, axis=0), np.sort(ordered_vertices(A, b), axis=0))
    assert any(t.get_text() == "empty" for t in axes[2].texts)  # third state is outside


def test_verification_figures() -> None:
    S = pendulum_safe_action_set()
    report = verify_invariance(S, n_states=300, seed=1)
    ax = plot_verification(report, S.X)
    assert "passed (300)" in ax.get_legend_handles_labels()[1]
    ax = plot_verification_counts([report], ax=plt.figure().gca())
    assert "n/a" in [t.get_text() for t in ax.texts]  # no nonlinear simulator in this run
    assert "0" in [t.get_text() for t in ax.texts]  # no failures

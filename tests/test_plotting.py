"""Tests of the chapter-1 figure helpers: their geometry must be right, not only their pixels."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest

from tutorial_rl.plotting import (
    active_constraint_count,
    jacobian_rank_grid,
    normal_cone_rays,
    plot_jacobian_rank,
    plot_projection,
    plot_safeguard_placement,
    polygon_vertices,
)

BOX_A = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
BOX_B = np.ones(4)
PENTAGON_A = np.vstack([BOX_A, [1.0, 1.0]])
PENTAGON_B = np.array([1.0, 1.0, 1.0, 1.0, 1.5])


def shoelace_area(vertices: np.ndarray) -> float:
    x, y = vertices.T
    return 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def test_polygon_vertices_of_box_are_its_corners_counter_clockwise() -> None:
    vertices = polygon_vertices(BOX_A, BOX_B)
    assert vertices.shape == (4, 2)
    assert {tuple(v) for v in vertices} == {(1, 1), (-1, 1), (-1, -1), (1, -1)}
    x, y = vertices.T
    signed_area = 0.5 * (np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
    assert signed_area > 0  # counter-clockwise


def test_polygon_vertices_pentagon_area() -> None:
    vertices = polygon_vertices(PENTAGON_A, PENTAGON_B)
    assert len(vertices) == 5
    assert shoelace_area(vertices) == pytest.approx(4 - 0.5 * 0.5 * 0.5)


def test_polygon_vertices_of_empty_polygon_is_empty() -> None:
    A = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    b = np.array([-1.0, -1.0, 1.0, 1.0])  # u1 <= -1 and u1 >= 1
    assert polygon_vertices(A, b).shape == (0, 2)


def test_polygon_vertices_rejects_non_2d_input() -> None:
    with pytest.raises(ValueError, match=r"A \[k, 2\]"):
        polygon_vertices(np.ones((3, 3)), np.ones(3))


def test_normal_cone_rays_interior_face_vertex() -> None:
    assert normal_cone_rays(BOX_A, BOX_B, np.array([0.0, 0.0])).shape == (0, 2)
    face = normal_cone_rays(BOX_A, BOX_B, np.array([1.0, 0.2]))
    np.testing.assert_allclose(face, [[1.0, 0.0]])
    vertex = normal_cone_rays(PENTAGON_A, PENTAGON_B, np.array([1.0, 0.5]))
    np.testing.assert_allclose(vertex, [[1.0, 0.0], [2**-0.5, 2**-0.5]])


def test_rank_grid_matches_the_geometry_of_the_box() -> None:
    """Rank 2 exactly on the box, rank 0 exactly in the four corner quadrants, 1 elsewhere."""
    u1, u2, rank = jacobian_rank_grid(BOX_A, BOX_B, extent=(-2, 2, -2, 2), resolution=41)
    U1, U2 = np.meshgrid(u1, u2)
    inside = (np.abs(U1) <= 1) & (np.abs(U2) <= 1)
    corners = (np.abs(U1) > 1) & (np.abs(U2) > 1)
    assert np.all(rank[inside] == 2)
    assert np.all(rank[corners] == 0)
    assert np.all(rank[~inside & ~corners] == 1)


def test_active_constraint_count() -> None:
    counts = active_constraint_count(np.array([[0.0, 0.0], [3.0, 0.0], [3.0, 3.0]]), BOX_A, BOX_B)
    assert counts.tolist() == [0, 1, 2]


def test_figures_draw_without_error() -> None:
    ax = plot_projection(PENTAGON_A, PENTAGON_B, np.array([[2.0, 2.0], [0.0, -3.0], [0.1, 0.1]]))
    assert len(ax.collections) >= 2
    ax = plot_jacobian_rank(PENTAGON_A, PENTAGON_B, resolution=30)
    assert ax.get_xlabel() == "$u_1$"
    axes = plot_safeguard_placement()
    assert [a.get_title() for a in axes][0].startswith("SE-RL")
    plt.close("all")


def test_story_figure_has_three_panels_and_a_rank_colourbar() -> None:
    from tutorial_rl.plotting import plot_story

    axes = plot_story()
    fig = axes[0].figure
    assert len(axes) == 3
    assert len(fig.axes) == 4  # three panels and the rank colourbar
    assert fig.axes[3].get_ylabel().startswith("rank of")
    plt.close(fig)

"""Zonotope operations and containment (Chapter 2; tutorial_rl.sets.zonotope/containment)."""

from __future__ import annotations

import os

import cvxpy as cp
import numpy as np
import pytest
import scipy.optimize
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from tutorial_rl.sets import Zonotope
from tutorial_rl.sets.containment import containment_constraints, is_contained

os.environ.setdefault("MPLBACKEND", "Agg")

finite = st.floats(-3.0, 3.0, allow_nan=False, width=64)
SETTINGS = settings(max_examples=40, deadline=None)


@st.composite
def zonotopes(draw: st.DrawFn, dim: int = 2, min_gens: int = 1, max_gens: int = 6,
              full: bool = True) -> Zonotope:
    p = draw(st.integers(min_gens, max_gens))
    c = draw(arrays(np.float64, dim, elements=finite))
    G = draw(arrays(np.float64, (dim, p), elements=finite))
    if full:
        assume(np.linalg.matrix_rank(G, tol=1e-3) == dim)
    return Zonotope(c, G)


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


directions = arrays(np.float64, 2, elements=finite).filter(lambda d: np.linalg.norm(d) > 1e-2)


# ---------------------------------------------------------------------- closed-form operations
@SETTINGS
@given(zonotopes(), directions)
def test_support_equals_max_over_vertices_2d(Z: Zonotope, d: np.ndarray) -> None:
    V = Z.vertices_2d()
    assert Z.support(d) == pytest.approx((V @ d).max(), rel=1e-9, abs=1e-9)


@SETTINGS
@given(st.integers(1, 4).flatmap(lambda n: st.tuples(
    zonotopes(n, full=False), zonotopes(n, full=False),
    arrays(np.float64, n, elements=finite))))
def test_minkowski_sum_support_is_additive(args: tuple[Zonotope, Zonotope, np.ndarray]) -> None:
    Z1, Z2, d = args
    S = Z1 + Z2
    assert S.n_generators == Z1.n_generators + Z2.n_generators
    assert S.support(d) == pytest.approx(Z1.support(d) + Z2.support(d), rel=1e-9, abs=1e-9)


@SETTINGS
@given(zonotopes(3, 3, 5), arrays(np.float64, (2, 3), elements=finite),
       arrays(np.float64, 5, elements=st.floats(-1, 1)))
def test_linear_map_maps_points_into_the_image(Z: Zonotope, M: np.ndarray,
                                               beta: np.ndarray) -> None:
    assume(np.linalg.matrix_rank(M @ Z.generators, tol=1e-3) == 2)
    x = Z.center + Z.generators @ beta[: Z.n_generators]
    image = M @ Z
    assert isinstance(image, Zonotope)
    assert image.contains_point(M @ x, tol=1e-7)
    assert np.allclose(Z.linear_map(M).generators, image.generators)


def test_translation_and_operators() -> None:
    Z = Zonotope.from_box([-1, -2], [1, 2])
    assert np.allclose((Z + np.array([1.0, 1.0])).center, [1, 1])
    assert np.allclose((np.array([1.0, 1.0]) + Z).center, [1, 1])
    assert np.allclose((Z - [1.0, 0.0]).center, [-1, 0])
    assert np.allclose((2.0 * Z).generators, 2 * Z.generators)
    with pytest.raises(TypeError):
        _ = Z - Z


@SETTINGS
@given(zonotopes(), st.integers(0, 2**31 - 1))
def test_interval_hull_is_tight_and_encloses(Z: Zonotope, seed: int) -> None:
    lo, hi = Z.interval_hull()
    pts = Z.sample(200, np.random.default_rng(seed))
    assert np.all(pts >= lo - 1e-12) and np.all(pts <= hi + 1e-12)
    for k in range(2):
        e = np.eye(2)[k]
        assert Z.extreme_point(e)[k] == pytest.approx(hi[k])
        assert Z.extreme_point(-e)[k] == pytest.approx(lo[k])


@SETTINGS
@given(zonotopes(3, 3, 8), arrays(np.float64, 3, elements=finite))
def test_projection_support_matches_embedded_direction(Z: Zonotope, d: np.ndarray) -> None:
    P = Z.project([0, 2])
    d2 = d[[0, 2]]
    full = np.zeros(3)
    full[[0, 2]] = d2
    assert P.support(d2) == pytest.approx(Z.support(full), abs=1e-9)


@SETTINGS
@given(zonotopes(3, 1, 12, full=False), arrays(np.float64, 3, elements=finite))
def test_girard_reduction_is_an_outer_approximation(Z: Zonotope, d: np.ndarray) -> None:
    R = Z.reduce_order(2)
    assert R.n_generators <= 6
    assert R.support(d) >= Z.support(d) - 1e-9


# ---------------------------------------------------------------------- facets, vertices, volume
@SETTINGS
@given(zonotopes())
def test_vertices_are_ccw_convex_and_match_halfspaces(Z: Zonotope) -> None:
    # Generator directions (mod π) well separated or equal: no sliver facets of width 1e-12.
    ang = np.sort(np.mod(np.arctan2(Z.generators[1], Z.generators[0]), np.pi))
    gaps = np.diff(np.append(ang, ang[0] + np.pi))
    assume(np.all((gaps > 1e-6) | (gaps == 0)))
    V = Z.vertices_2d()
    E = np.roll(V, -1, axis=0) - V
    cross = E[:, 0] * np.roll(E[:, 1], -1) - E[:, 1] * np.roll(E[:, 0], -1)
    assert np.all(cross >= -1e-9)  # left turns only: convex and counter-clockwise
    H, h = Z.halfspaces_2d()
    assert np.all(V @ H.T <= h + 1e-9)
    H2, h2 = Z.halfspaces()
    assert np.all(V @ H2.T <= h2 + 1e-9)
    # Each vertex is tight on two of the general facets.
    assert np.all(np.sum(np.isclose(V @ H2.T, h2, atol=1e-7), axis=1) >= 2)


@SETTINGS
@given(zonotopes())
def test_area_equals_shoelace_of_vertices(Z: Zonotope) -> None:
    V = Z.vertices_2d()
    shoelace = 0.5 * abs(np.dot(V[:, 0], np.roll(V[:, 1], -1))
                         - np.dot(V[:, 1], np.roll(V[:, 0], -1)))
    assert Z.volume_2d() == pytest.approx(shoelace, rel=1e-9)


@pytest.mark.parametrize("dim", [3, 4])
def test_nd_halfspaces_describe_the_zonotope_exactly(dim: int) -> None:
    """max dᵀx over {H x <= h} (an LP) equals the support function: no facet is missing."""
    rng = np.random.default_rng(dim)
    Z = Zonotope(rng.normal(size=dim), rng.normal(size=(dim, dim + 4)))
    H, h = Z.halfspaces()
    for d in rng.normal(size=(30, dim)):
        res = scipy.optimize.linprog(-d, A_ub=H, b_ub=h, bounds=[(None, None)] * dim)
        assert -res.fun == pytest.approx(Z.support(d), rel=1e-7, abs=1e-7)


def test_product_structure_facets_and_volume() -> None:
    rng = np.random.default_rng(0)
    G = np.zeros((5, 9))
    G[:3, :5] = rng.normal(size=(3, 5))
    G[3:, 5:] = rng.normal(size=(2, 4))
    Z = Zonotope(rng.normal(size=5), G)
    H, h = Z.halfspaces()
    # 3-D block: 2·C(5, 2) facets; 2-D block: 2·4.
    assert len(h) == 2 * 10 + 2 * 4
    assert Z.volume() == pytest.approx(Z.project([0, 1, 2]).volume() * Z.project([3, 4]).volume())
    box = Zonotope.from_box([0, 0, 0], [1, 2, 3])
    assert box.volume() == pytest.approx(6.0)


@SETTINGS
@given(zonotopes(3, 3, 5), st.integers(0, 2**31 - 1))
def test_lp_membership_agrees_with_facets(Z: Zonotope, seed: int) -> None:
    rng = np.random.default_rng(seed)
    lo, hi = Z.interval_hull()
    pts = rng.uniform(lo, hi, size=(20, 3))
    H, h = Z.halfspaces()
    slack = (pts @ H.T - h).max(axis=1)
    clear = np.abs(slack) > 1e-6  # skip points on the boundary
    lp = np.array([Z._contains_lp(p, 1e-9) for p in pts])
    assert np.array_equal(lp[clear], (slack <= 0)[clear])


def test_sampling_stays_inside() -> None:
    Z = Zonotope([1.0, -1.0], [[1.0, 0.5, 0.2], [0.0, 1.0, -0.4]])
    rng = np.random.default_rng(0)
    assert np.all(Z.contains_point(Z.sample(500, rng)))
    U = Z.sample_uniform(500, rng)
    assert U.shape == (500, 2) and np.all(Z.contains_point(U))


# ---------------------------------------------------------------------- containment
@SETTINGS
@given(zonotopes(max_gens=4), zonotopes(max_gens=4), st.integers(0, 2**31 - 1))
def test_ghasemi_containment_is_sound(Z1: Zonotope, Z2: Zonotope, seed: int) -> None:
    # Make containment likely half of the time: shrink Z1 and move it to Z2's centre.
    if seed % 2:
        Z1 = Zonotope(Z2.center + 0.05 * (Z1.center - Z2.center), 0.2 * Z1.generators)
    if is_contained(Z1, Z2):
        assert is_contained(Z1, Z2, method="halfspaces", tol=1e-6)
        assert is_contained(Z1, Z2, method="vertices", tol=1e-6)
        pts = Z1.sample(300, np.random.default_rng(seed))
        assert np.all(Z2.contains_point(pts, tol=1e-6))
    # The exact checks agree with each other.
    assert is_contained(Z1, Z2, "halfspaces") == is_contained(Z1, Z2, "vertices")


def test_containment_examples() -> None:
    big = Zonotope.from_box([-2, -2], [2, 2])
    small = Zonotope([0.5, 0.0], [[1.0, 0.5], [0.0, 1.0]])
    assert is_contained(small, big)
    assert not is_contained(big, small)
    assert not is_contained(big, small, method="halfspaces")
    # A rotated square inside a box: contained, and the LP condition proves it too.
    diamond = Zonotope([0, 0], [[1.0, 1.0], [1.0, -1.0]])
    assert is_contained(diamond, big, method="halfspaces")
    assert is_contained(diamond, big)


def test_containment_constraints_accept_expressions() -> None:
    """Largest shift t along e1 keeping ⟨t e1, G1⟩ inside a box: t = 2 − 0.5 = 1.5."""
    outer = Zonotope.from_box([-2, -2], [2, 2])
    G1 = np.diag([0.5, 0.5])
    t = cp.Variable()
    cons, aux = containment_constraints(cp.hstack([t, 0.0]), G1, outer)
    prob = cp.Problem(cp.Maximize(t), cons)
    prob.solve(solver=cp.CLARABEL)
    assert t.value == pytest.approx(1.5, abs=1e-6)
    assert aux.Gamma.shape == (2, 2) and aux.beta.shape == (2,)


# ---------------------------------------------------------------------- bad input, plotting
def test_bad_input_is_reported() -> None:
    with pytest.raises(ValueError, match="NaN"):
        Zonotope([np.nan, 0.0], np.eye(2))
    with pytest.raises(ValueError, match="generators must have shape"):
        Zonotope([0.0, 0.0], np.eye(3))
    Z = Zonotope.from_box([-1, -1], [1, 1])
    with pytest.raises(ValueError, match="shape"):
        Z.contains_point(np.zeros(3))
    with pytest.raises(ValueError, match="NaN"):
        Z.contains_point(np.array([np.nan, 0.0]))
    with pytest.raises(ValueError, match="2-D"):
        Zonotope.from_box([0, 0, 0], [1, 1, 1]).vertices_2d()
    with pytest.raises(ValueError, match="full-dimensional"):
        Zonotope([0, 0], [[1.0], [1.0]]).halfspaces()
    with pytest.raises(ValueError, match="dimension mismatch"):
        is_contained(Z, Zonotope.from_box([0, 0, 0], [1, 1, 1]))
    # A degenerate zonotope still answers membership (LP path).
    seg = Zonotope([0, 0], [[1.0], [1.0]])
    assert seg.contains_point(np.array([0.5, 0.5]))
    assert not seg.contains_point(np.array([0.5, -0.5]))


def test_plot_zonotope_draws_the_polygon() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tutorial_rl.sets.plotting import plot_polygon, plot_zonotope

    fig, ax = plt.subplots()
    Z = Zonotope(np.zeros(3), np.eye(3))
    plot_zonotope(Z, ax=ax, dims=(0, 2), facecolor="red")
    plot_polygon(np.vstack([np.eye(2), -np.eye(2)]), np.ones(4), ax=ax)
    assert len(ax.patches) == 2
    assert np.allclose(ax.patches[0].get_xy()[:-1].min(axis=0), [-1, -1])
    plt.close(fig)

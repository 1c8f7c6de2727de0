"""Tests of the normalised-action map (Chapter 3, chapters/03_tasks.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from tutorial_rl.envs import pendulum, quadrotor
from tutorial_rl.envs.action_scaling import AffineActionMap
from tutorial_rl.projection import project_polytope
from tutorial_rl.systems import PendulumParameters, QuadrotorParameters

SETTINGS = settings(max_examples=60, deadline=None)
finite = st.floats(-10.0, 10.0, allow_nan=False, width=64)


@st.composite
def maps(draw: st.DrawFn, m: int | None = None, uniform: bool = False) -> AffineActionMap:
    """A map with m components, low in [-10, 10] and widths in [0.1, 5]."""
    m = draw(st.integers(1, 4)) if m is None else m
    low = draw(arrays(np.float64, m, elements=finite))
    widths = st.floats(0.1, 5.0, allow_nan=False, width=64)
    if uniform:
        width = np.full(m, draw(widths))
    else:
        width = draw(arrays(np.float64, m, elements=widths))
    return AffineActionMap(low, low + width)


@st.composite
def map_and_polytope(
    draw: st.DrawFn, uniform: bool = False
) -> tuple[AffineActionMap, np.ndarray, np.ndarray, np.ndarray]:
    """A map, a polytope {u : A u <= b} (k rows, m columns) and physical test points [n, m]."""
    action_map = draw(maps(uniform=uniform))
    m = action_map.low.shape[0]
    k = draw(st.integers(1, 6))
    A = draw(arrays(np.float64, (k, m), elements=st.floats(-3, 3, width=64)))
    b = draw(arrays(np.float64, k, elements=finite))
    points = draw(arrays(np.float64, (8, m), elements=finite))
    return action_map, A, b, points


@SETTINGS
@given(maps(), st.data())
def test_round_trip_and_box_corners(action_map: AffineActionMap, data: st.DataObject) -> None:
    m = action_map.low.shape[0]
    a = data.draw(arrays(np.float64, (5, m), elements=st.floats(-2, 2, width=64)))
    np.testing.assert_allclose(action_map.to_normalized(action_map.to_physical(a)), a,
                               rtol=0, atol=1e-12)
    u = action_map.to_physical(a)
    np.testing.assert_allclose(action_map.to_physical(action_map.to_normalized(u)), u,
                               rtol=0, atol=1e-12)
    np.testing.assert_allclose(action_map.to_physical(-np.ones(m)), action_map.low, atol=1e-12)
    np.testing.assert_allclose(action_map.to_physical(np.ones(m)), action_map.high, atol=1e-12)
    np.testing.assert_allclose(action_map.to_physical(np.zeros(m)), action_map.center)
    assert np.all(action_map.scale > 0)


@SETTINGS
@given(map_and_polytope())
def test_halfspaces_to_normalized_keeps_membership(
    case: tuple[AffineActionMap, np.ndarray, np.ndarray, np.ndarray],
) -> None:
    """a ∈ {a : A' a <= b'} ⇔ to_physical(a) ∈ {u : A u <= b}: the slacks agree row by row."""
    action_map, A, b, points = case
    A_n, b_n = action_map.halfspaces_to_normalized(A, b)
    a = action_map.to_normalized(points)
    slack_phys = b - points @ A.T
    slack_norm = b_n - a @ A_n.T
    tol = 1e-9 * (1 + np.abs(b)[None, :] + np.abs(points @ A.T) + np.abs(A @ action_map.center))
    np.testing.assert_array_less(np.abs(slack_norm - slack_phys), tol)
    clear = np.all(np.abs(slack_phys) > tol, axis=1)  # membership decided beyond rounding
    inside_phys = np.all(slack_phys >= 0, axis=1)
    inside_norm = np.all(slack_norm >= 0, axis=1)
    np.testing.assert_array_equal(inside_norm[clear], inside_phys[clear])


@SETTINGS
@given(map_and_polytope())
def test_halfspaces_to_physical_inverts_halfspaces_to_normalized(
    case: tuple[AffineActionMap, np.ndarray, np.ndarray, np.ndarray],
) -> None:
    action_map, A, b, _ = case
    A_back, b_back = action_map.halfspaces_to_physical(*action_map.halfspaces_to_normalized(A, b))
    np.testing.assert_allclose(A_back, A, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(b_back, b, rtol=1e-12, atol=1e-9 * (1 + np.abs(A).sum()))


@SETTINGS
@given(map_and_polytope(uniform=True))
def test_uniform_scale_commutes_with_the_euclidean_projection(
    case: tuple[AffineActionMap, np.ndarray, np.ndarray, np.ndarray],
) -> None:
    """One scale on every component: projecting in either coordinates gives the same action."""
    action_map, A, _, points = case
    assert action_map.is_uniform
    b = A @ points[0] + 0.5  # a non-empty polytope: it contains points[0]
    A_n, b_n = action_map.halfspaces_to_normalized(A, b)
    for u in points[1:3]:
        phys = project_polytope(*(torch.from_numpy(x) for x in (u, A, b))).numpy()
        a = action_map.to_normalized(u)
        norm = project_polytope(*(torch.from_numpy(x) for x in (a, A_n, b_n))).numpy()
        np.testing.assert_allclose(action_map.to_physical(norm), phys, atol=1e-7)


def test_course_maps_are_uniform_and_match_the_physical_bounds() -> None:
    p, q = PendulumParameters(), QuadrotorParameters()
    np.testing.assert_array_equal(pendulum.ACTION_MAP.to_physical([1.0]), [p.max_torque])
    np.testing.assert_array_equal(pendulum.ACTION_MAP.scale, [8.0])
    np.testing.assert_array_equal(pendulum.ACTION_MAP.center, [0.0])
    np.testing.assert_allclose(quadrotor.ACTION_MAP.to_physical([-1.0, 1.0]),
                               [q.thrust_min, q.thrust_max], rtol=1e-15)
    np.testing.assert_allclose(quadrotor.ACTION_MAP.center, 7.71573, rtol=1e-15)
    np.testing.assert_allclose(quadrotor.ACTION_MAP.scale, 0.88090, rtol=1e-14)
    assert pendulum.ACTION_MAP.is_uniform and quadrotor.ACTION_MAP.is_uniform
    assert not AffineActionMap(np.zeros(2), np.array([1.0, 2.0])).is_uniform


def test_map_is_frozen_and_validates_its_bounds() -> None:
    action_map = AffineActionMap(np.array([0.0, -1.0]), np.array([2.0, 3.0]))
    with pytest.raises(AttributeError):
        action_map.low = np.zeros(2)  # type: ignore[misc]
    with pytest.raises(ValueError, match="read-only"):
        action_map.center[0] = 5.0
    assert AffineActionMap(-8.0, 8.0).low.shape == (1,)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="shape"):
        AffineActionMap(np.zeros(2), np.ones(3))
    with pytest.raises(ValueError, match="finite"):
        AffineActionMap(np.array([-np.inf]), np.array([1.0]))
    with pytest.raises(ValueError, match="exceed"):
        AffineActionMap(np.array([1.0]), np.array([1.0]))

"""Safe action sets, invariance checks, polygon helpers (Chapter 4; sets/safe_actions.py)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from tutorial_rl import systems
from tutorial_rl.projection import project_polytope
from tutorial_rl.sets import Zonotope
from tutorial_rl.sets.polygon import ordered_vertices, polygon_area, polygon_vertices
from tutorial_rl.sets.safe_actions import (
    EmptySafeActionSetError,
    LinearSafeActionSet,
    containment_coverage,
    pendulum_safe_action_set,
    quadrotor_safe_action_set,
)
from tutorial_rl.sets.verification import verify_invariance, zonotope_corners

SETS = {"pendulum": pendulum_safe_action_set, "quadrotor": quadrotor_safe_action_set}


@pytest.fixture(params=sorted(SETS))
def safe_set(request: pytest.FixtureRequest) -> LinearSafeActionSet:
    return SETS[request.param]()


# ---------------------------------------------------------------------- the 10^5-state checks
def test_pendulum_invariance_linear_and_nonlinear() -> None:
    p = systems.PendulumParameters()
    report = verify_invariance(
        pendulum_safe_action_set(), n_states=100_000, seed=0,
        nonlinear_step=lambda x, u: systems.pendulum_step(x, u, p),
        noise=Zonotope.from_box([-p.noise_bound] * 2, [p.noise_bound] * 2))
    assert report.ok, report
    assert report.n_states == 100_000 and report.n_vertex_states > 100
    assert report.n_empty == report.n_failures == report.n_nonlinear_failures == 0
    assert report.n_actions == 5 * 100_000
    assert report.n_nonlinear_transitions == 4 * report.n_actions
    assert report.max_violation <= 1e-9
    assert not report.failed.any()


def test_quadrotor_invariance() -> None:
    report = verify_invariance(quadrotor_safe_action_set(), n_states=100_000, seed=0)
    assert report.ok, report
    assert report.n_states == 100_000 and report.n_vertex_states > 1000
    assert report.n_actions == 4 * 100_000 and report.n_transitions == 4 * report.n_actions
    assert report.max_violation <= 1e-9


# ---------------------------------------------------------------------- fast path (b)
def test_halfspace_shapes_and_input_box(safe_set: LinearSafeActionSet) -> None:
    m = safe_set.n_inputs
    x = safe_set.X.sample(7, np.random.default_rng(0))
    A, b = safe_set.halfspaces(x[0])
    assert A.shape == (safe_set.n_rows, m) and b.shape == (safe_set.n_rows,)
    AN, bN = safe_set.halfspaces(x)
    assert AN.shape == (7, safe_set.n_rows, m) and bN.shape == (7, safe_set.n_rows)
    assert np.allclose(bN[0], b) and np.allclose(AN[3], A)
    # The rows always include the input box: ±e_i with offsets no looser than the bounds.
    for i in range(m):
        e = np.eye(m)[i]
        up = np.flatnonzero(np.all(np.isclose(A, e), axis=1))
        lo = np.flatnonzero(np.all(np.isclose(A, -e), axis=1))
        assert len(up) == 1 and len(lo) == 1
        assert np.all(bN[:, up[0]] <= safe_set.input_box.upper[i] + 1e-12)
        assert np.all(bN[:, lo[0]] <= -safe_set.input_box.lower[i] + 1e-12)
    expected_rows = {1: 2, 2: 8}[m]  # pendulum: an interval; quadrotor: an octagon
    assert safe_set.n_rows == expected_rows


def test_fast_path_is_exact(safe_set: LinearSafeActionSet) -> None:
    """Inside U_s(x) every disturbance vertex stays in X; just outside, one leaves X."""
    rng = np.random.default_rng(1)
    S = safe_set
    x = S.X.sample(300, rng)
    A, b = S.halfspaces(x)
    H, h = S.X.halfspaces()
    corners = zonotope_corners(S.W) if S.W.dim > 2 else S.W.vertices_2d()
    pts, valid = polygon_vertices(A[0], b) if S.n_inputs == 2 else (None, None)
    tested = 0
    for i in range(len(x)):
        if S.n_inputs == 1:
            lo, hi = -b[i, 1], b[i, 0]
            inside, outside = np.array([[lo], [hi]]), np.array([[hi + 1e-4]])
            if hi + 1e-4 > S.input_box.upper[0]:
                outside = np.array([[lo - 1e-4]])
                if lo - 1e-4 < S.input_box.lower[0]:
                    continue  # the whole input box is safe here
        else:
            inside = pts[i, valid[i]]
            mid = inside.mean(axis=0)
            slack = b[i, 4:] - A[0, 4:] @ mid  # model rows (the first 4 are the input box)
            j = 4 + int(np.argmin(slack))  # push across the nearest model row
            outside = (mid + (slack[j - 4] + 1e-4) * A[0, j])[None]
            if not S.input_box.contains(outside[0]):
                continue
        nxt_in = x[i] @ S.A.T + S.c + inside @ S.B.T
        assert np.all((nxt_in[:, None, :] + corners[None]) @ H.T <= h + 1e-9)
        nxt_out = x[i] @ S.A.T + S.c + outside @ S.B.T
        assert np.any((nxt_out[:, None, :] + corners[None]) @ H.T > h)
        tested += 1
    assert tested >= 50


def test_outside_states_get_a_detectable_empty_set(safe_set: LinearSafeActionSet) -> None:
    S = safe_set
    inside = S.X.center
    lo, hi = S.X.interval_hull()
    outside = hi + 0.1 * (hi - lo)
    assert S.contains_state(inside) and not S.is_empty(inside)
    assert not S.contains_state(outside) and S.is_empty(outside)
    A, b = S.halfspaces(outside)
    assert np.all(b == -1.0)
    # Batched: a mix is flagged row by row.
    flags = S.is_empty(np.vstack([inside, outside, inside]))
    assert flags.tolist() == [False, True, False]
    # Just outside a facet (by far more than the tolerance): empty as well.
    H, h = S.X.halfspaces()
    nudge = S.X.extreme_point(H[0]) + 1e-3 * H[0]
    assert not S.contains_state(nudge) and S.is_empty(nudge)


def test_bad_states_are_rejected(safe_set: LinearSafeActionSet) -> None:
    n = safe_set.n_states
    with pytest.raises(ValueError, match=rf"shape \({n},\)"):
        safe_set.halfspaces(np.zeros(n + 1))
    with pytest.raises(ValueError, match="NaN"):
        safe_set.halfspaces(np.full(n, np.nan))
    with pytest.raises(ValueError, match="NaN"):
        safe_set.contains_state(np.array([np.inf] * n))
    with pytest.raises(ValueError, match="u_tilde"):
        safe_set.project_containment(safe_set.X.center, np.zeros(safe_set.n_inputs + 1))


def test_pendulum_safe_interval() -> None:
    S = pendulum_safe_action_set()
    lo, hi = S.safe_interval(S.X.sample(100, np.random.default_rng(2)))
    assert np.all(lo <= hi) and np.all(lo >= -8) and np.all(hi <= 8)
    lo_c, hi_c = S.safe_interval(S.X.center)
    assert lo_c[0] < -4 and hi_c[0] > 4  # plenty of freedom at the upright equilibrium


# ---------------------------------------------------------------------- containment form (a)
def test_containment_projection_matches_the_exact_projection(
        safe_set: LinearSafeActionSet) -> None:
    S, rng = safe_set, np.random.default_rng(3)
    x = S.X.sample(6, rng)
    u_tilde = rng.uniform(S.input_box.lower - 1, S.input_box.upper + 1, size=(6, S.n_inputs))
    u_a = S.project_containment(x, u_tilde)
    A, b = S.halfspaces(x)
    if S.n_inputs == 1:
        u_b = np.clip(u_tilde, -b[:, 1:2], b[:, 0:1])
    else:
        u_b = project_polytope(torch.as_tensor(u_tilde), torch.as_tensor(A[0]),
                               torch.as_tensor(b)).numpy()
    # The containment form is exact here (X = X' ⊕ W by construction), up to solver tolerance.
    assert np.allclose(u_a, u_b, atol=1e-4)
    problem, params = S.containment_problem()
    assert problem.is_dpp() and [p.name() for p in params] == ["x", "u_tilde"]


def test_containment_projection_raises_outside() -> None:
    S = pendulum_safe_action_set()
    lo, hi = S.X.interval_hull()
    with pytest.raises(EmptySafeActionSetError, match="infeasible"):
        S.project_containment(hi * 1.5, np.zeros(1))


def test_containment_coverage(safe_set: LinearSafeActionSet) -> None:
    report = containment_coverage(safe_set, safe_set.X.sample(8, np.random.default_rng(4)),
                                  n_directions=16)
    assert report.ratios.shape == (8,)
    assert 0.98 <= report.minimum and report.mean <= 1.0 + 1e-6


def test_cvxpylayer_wraps_the_containment_problem() -> None:
    torch = pytest.importorskip("torch")
    cvxpylayers_torch = pytest.importorskip("cvxpylayers.torch")
    S = pendulum_safe_action_set()
    qp = S.containment_problem()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        layer = cvxpylayers_torch.CvxpyLayer(qp.problem, parameters=qp.parameters,
                                             variables=qp.variables)
        x = torch.tensor(S.X.sample(2, np.random.default_rng(5)))
        u_tilde = torch.full((2, 1), 8.0, dtype=torch.float64, requires_grad=True)
        (u,) = layer(x, u_tilde, solver_args={"eps": 1e-9, "max_iters": 100000})
        u.sum().backward()
    expected = S.project_containment(x.numpy(), u_tilde.detach().numpy())
    assert np.allclose(u.detach().numpy(), expected, atol=1e-4)
    assert u_tilde.grad is not None


# ---------------------------------------------------------------------- polygon helpers
def test_polygon_helpers_on_a_square() -> None:
    A = np.vstack([np.eye(2), -np.eye(2)])
    b = np.array([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, -2.0, 1.0]])  # unit square; an empty one
    pts, valid = polygon_vertices(A, b)
    assert valid[0].sum() == 4 and not valid[1].any()
    assert np.allclose(polygon_area(A, b), [4.0, 0.0])
    square = ordered_vertices(A, b[0])
    assert square.shape == (4, 2)
    assert ordered_vertices(A, b[1]).shape == (0, 2)

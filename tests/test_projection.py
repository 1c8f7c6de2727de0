"""Tests for tutorial_rl.projection: the maths of the projection, its Jacobian, and its errors."""

from __future__ import annotations

import importlib.util
import itertools
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tutorial_rl import projection as P
from tutorial_rl.projection import (
    InfeasibleSetError,
    active_set,
    core,
    enumeration,
    is_feasible,
    project_polytope,
    projection_jacobian,
    reference,
)
from tutorial_rl.projection.dual import take

F64 = torch.float64
ROOT = Path(__file__).resolve().parents[1]
PROPERTY = settings(max_examples=50, deadline=None)


# ----------------------------------------------------------------------------- problem makers


def polygon(phase: float, jitter, center, margins) -> tuple[torch.Tensor, torch.Tensor]:
    """Bounded polygon: normals at phase + 2π(i + jitter_i)/n with jitter < 0.5, so consecutive
    normals are less than π apart; every face keeps ``center`` at distance margins_i >= 0.1."""
    n = len(jitter)
    th = torch.tensor([phase + 2 * math.pi * (i + j) / n for i, j in enumerate(jitter)], dtype=F64)
    A = torch.stack([th.cos(), th.sin()], -1)
    b = A @ torch.tensor(center, dtype=F64) + torch.tensor(margins, dtype=F64)
    return A, b


def random_polygons(batch: int, faces: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = np.random.default_rng(seed)
    polys = [
        polygon(
            g.uniform(0, 2 * math.pi),
            g.uniform(0, 0.45, faces),
            g.uniform(-1, 1, 2),
            g.uniform(0.2, 1.5, faces),
        )
        for _ in range(batch)
    ]
    return torch.stack([a for a, _ in polys]), torch.stack([b for _, b in polys])


def vertices(A: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Feasible pairwise intersections of the lines of a 2-D polygon (its vertices)."""
    pts = []
    for i, j in itertools.combinations(range(len(A)), 2):
        M = A[[i, j]]
        if abs(torch.linalg.det(M)) > 1e-9:
            v = torch.linalg.solve(M, b[[i, j]])
            if bool((A @ v <= b + 1e-9).all()):
                pts.append(v)
    return torch.stack(pts)


def batch_jacobian(f, u: torch.Tensor) -> torch.Tensor:
    """[B, m, m] Jacobian of a batch-wise independent map by m backward passes."""
    u = u.detach().clone().requires_grad_(True)
    out = f(u)
    rows = [
        torch.autograd.grad(out[:, j].sum(), u, retain_graph=True)[0] for j in range(out.shape[1])
    ]
    return torch.stack(rows, 1)


def stable(u: torch.Tensor, A: torch.Tensor, b: torch.Tensor, h: float = 1e-3) -> torch.Tensor:
    """Elements whose active set does not change under ±h moves of u (away from kinks)."""
    act = active_set(u, A, b)
    keep = torch.ones(len(u), dtype=torch.bool)
    for j, sign in itertools.product(range(u.shape[1]), (-1, 1)):
        du = torch.zeros_like(u)
        du[:, j] = sign * h
        keep &= (active_set(u + du, A, b) == act).all(1)
    return keep


def central_differences(u: torch.Tensor, A: torch.Tensor, b: torch.Tensor,
                        h: float = 1e-6) -> torch.Tensor:
    """[B, m, m] central finite differences of Φ at u."""
    cols = [
        (project_polytope(u + h * e, A, b) - project_polytope(u - h * e, A, b)) / (2 * h)
        for e in torch.eye(u.shape[1], dtype=F64)
    ]
    return torch.stack(cols, -1)


def clarabel(u: torch.Tensor, A: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The projection by cvxpy + Clarabel at tight tolerances (the independent reference)."""
    import cvxpy as cp

    v = cp.Variable(len(u))
    problem = cp.Problem(cp.Minimize(cp.sum_squares(v - u.numpy())), [A.numpy() @ v <= b.numpy()])
    for tol in (1e-12, 1e-10, 1e-9):  # Clarabel can stall at the tightest tolerance
        try:
            problem.solve(solver=cp.CLARABEL, tol_gap_abs=tol, tol_gap_rel=tol, tol_feas=tol)
            return torch.as_tensor(v.value, dtype=F64)
        except cp.error.SolverError:
            continue
    raise AssertionError("Clarabel failed on the reference problem")


floats = st.floats  # short alias for the strategies below


@st.composite
def problems(draw, max_batch: int = 4):
    """A batch of random bounded nonempty polygons (same face count) and random actions."""
    n = draw(st.integers(3, 8))
    B = draw(st.integers(1, max_batch))
    coords = st.lists(floats(-6, 6), min_size=2, max_size=2)
    centres = draw(
        st.lists(st.lists(floats(-2, 2), min_size=2, max_size=2), min_size=B, max_size=B)
    )
    polys = [
        polygon(
            draw(floats(0, 2 * math.pi)),
            draw(st.lists(floats(0, 0.45), min_size=n, max_size=n)),
            c,
            draw(st.lists(floats(0.1, 2), min_size=n, max_size=n)),
        )
        for c in centres
    ]
    u = torch.tensor(draw(st.lists(coords, min_size=B, max_size=B)), dtype=F64)
    v = torch.tensor(draw(st.lists(coords, min_size=B, max_size=B)), dtype=F64)
    A, b = torch.stack([a for a, _ in polys]), torch.stack([c for _, c in polys])
    return u, v, A, b, torch.tensor(centres, dtype=F64)


# ----------------------------------------------------------------------------- properties


@PROPERTY
@given(problems())
def test_output_is_feasible_and_idempotent(prob):
    u, _, A, b, _ = prob
    p = project_polytope(u, A, b)
    assert is_feasible(p, A, b, atol=1e-9).all()
    torch.testing.assert_close(project_polytope(p, A, b), p, rtol=0, atol=1e-12)


@PROPERTY
@given(problems(), st.lists(floats(-1, 1), min_size=2, max_size=2))
def test_feasible_points_are_unchanged(prob, offset):
    _, _, A, b, centre = prob
    # Interior: the 0.1-ball around the centre (every face keeps a margin >= 0.1).
    inside = centre + 0.09 * torch.tensor(offset, dtype=F64) / math.sqrt(2)
    assert (project_polytope(inside, A, b) == inside).all()
    assert (projection_jacobian(inside, A, b) == torch.eye(2, dtype=F64)).all()
    # Boundary: a projection is feasible; it stays put and keeps Jacobian I (smallest set).
    edge = project_polytope(inside + 10 * torch.tensor(offset, dtype=F64), A, b)
    torch.testing.assert_close(project_polytope(edge, A, b), edge, rtol=0, atol=1e-12)
    assert (projection_jacobian(edge, A, b) == torch.eye(2, dtype=F64)).all()


@PROPERTY
@given(problems())
def test_non_expansive(prob):
    u, v, A, b, _ = prob
    dp = (project_polytope(u, A, b) - project_polytope(v, A, b)).norm(dim=-1)
    assert (dp <= (u - v).norm(dim=-1) + 1e-10).all()


@PROPERTY
@given(problems())
def test_residual_lies_in_the_normal_cone(prob):
    u, _, A, b, _ = prob
    p = project_polytope(u, A, b)
    for i in range(len(u)):
        V = vertices(A[i], b[i])  # every feasible point is a convex combination of these
        inner = (V - p[i]) @ (u[i] - p[i])
        assert (inner <= 1e-9 * (1 + u[i].norm() ** 2)).all()


def test_interval_m1_is_clamp():
    u = torch.linspace(-3, 3, 61, dtype=F64)[:, None]
    A, b = torch.tensor([[1.0], [-1.0]], dtype=F64), torch.tensor([0.5, 1.0], dtype=F64)
    torch.testing.assert_close(project_polytope(u, A, b), u.clamp(-1.0, 0.5))
    J = projection_jacobian(u, A, b)[:, 0, 0]
    inside = (u[:, 0] >= -1) & (u[:, 0] <= 0.5)  # boundary points are feasible: slope 1
    torch.testing.assert_close(J, inside.to(F64))


@pytest.mark.parametrize("m", [3, 4])
def test_box_is_clamp(m):
    u = 3 * torch.randn(64, m, dtype=F64, generator=torch.Generator().manual_seed(m))
    A = torch.cat([torch.eye(m, dtype=F64), -torch.eye(m, dtype=F64)])
    b = torch.cat([torch.full((m,), 1.0), torch.full((m,), 2.0)]).to(F64)
    torch.testing.assert_close(project_polytope(u, A, b), u.clamp(-2.0, 1.0))
    J = projection_jacobian(u, A, b)
    torch.testing.assert_close(J, torch.diag_embed(((u > -2) & (u < 1)).to(F64)))


def test_random_3d_polytopes_match_cvxpylayers():
    # a box cut by 4 random planes that keep the origin inside, one polytope per element
    g = torch.Generator().manual_seed(3)
    box = torch.cat([torch.eye(3, dtype=F64), -torch.eye(3, dtype=F64)]).expand(8, 6, 3)
    A = torch.cat([box, torch.randn(8, 4, 3, dtype=F64, generator=g)], 1)
    b = torch.cat([torch.ones(8, 6, dtype=F64), 0.3 + torch.rand(8, 4, dtype=F64, generator=g)], 1)
    u = 2 * torch.randn(8, 3, dtype=F64, generator=g)
    exact = project_polytope(u, A, b)
    assert is_feasible(exact, A, b).all()
    ref = project_polytope(u, A, b, method="cvxpylayers")
    torch.testing.assert_close(exact, ref, rtol=0, atol=1e-6)
    assert set(active_set(u, A, b).sum(1).tolist()) >= {1, 2, 3}  # faces, edges and vertices
    keep = stable(u, A, b)
    J = batch_jacobian(lambda x: project_polytope(x, A[keep], b[keep]), u[keep])
    torch.testing.assert_close(projection_jacobian(u[keep], A[keep], b[keep]), J)


# ----------------------------------------------------------------------------- Jacobians


def test_exact_matches_cvxpylayers_values_and_jacobians():
    A, b = random_polygons(12, 6, seed=1)
    u = 2.5 * torch.randn(12, 2, dtype=F64, generator=torch.Generator().manual_seed(1))
    keep = stable(u, A, b)
    u, A, b = u[keep], A[keep], b[keep]
    assert len(u) >= 8
    exact = project_polytope(u, A, b)
    ref = project_polytope(u, A, b, method="cvxpylayers")
    assert ref.dtype == F64
    torch.testing.assert_close(exact, ref, rtol=0, atol=1e-6)
    J_exact = batch_jacobian(lambda x: project_polytope(x, A, b), u)
    J_ref = batch_jacobian(lambda x: project_polytope(x, A, b, method="cvxpylayers"), u)
    torch.testing.assert_close(J_exact, J_ref, rtol=0, atol=1e-4)


def test_jacobian_matches_finite_differences_and_closed_form():
    A, b = random_polygons(32, 6, seed=2)
    u = 2.5 * torch.randn(32, 2, dtype=F64, generator=torch.Generator().manual_seed(2))
    keep = stable(u, A, b)
    u, A, b = u[keep], A[keep], b[keep]
    J = batch_jacobian(lambda x: project_polytope(x, A, b), u)
    h = 1e-6
    fd = torch.stack(
        [
            (project_polytope(u + h * e, A, b) - project_polytope(u - h * e, A, b)) / (2 * h)
            for e in torch.eye(2, dtype=F64)
        ],
        -1,
    )
    torch.testing.assert_close(J, fd, rtol=0, atol=1e-6)
    torch.testing.assert_close(projection_jacobian(u, A, b), J, rtol=0, atol=1e-12)
    # all three regimes occur in this sample
    assert set(torch.linalg.matrix_rank(J).tolist()) == {0, 1, 2}


def test_rank_interior_face_vertex():
    A, b = polygon(0.0, [0.0] * 6, [0.0, 0.0], [1.0] * 6)  # regular hexagon, inradius 1
    u = torch.tensor([[0.2, 0.1], [2.0, 0.0], [2.0, 2.0 * math.tan(math.pi / 6)]], dtype=F64)
    J = projection_jacobian(u, A, b)
    assert torch.linalg.matrix_rank(J).tolist() == [2, 1, 0]
    torch.testing.assert_close(J[1], torch.tensor([[0.0, 0.0], [0.0, 1.0]], dtype=F64))
    torch.testing.assert_close(batch_jacobian(lambda x: project_polytope(x, A, b), u), J)


def test_gradient_wrt_b_and_A_matches_finite_differences():
    A, b = random_polygons(16, 5, seed=4)
    u = 2.5 * torch.randn(16, 2, dtype=F64, generator=torch.Generator().manual_seed(4))
    keep = stable(u, A, b)
    u, A, b = u[keep], A[keep], b[keep]
    w = torch.randn_like(u)

    def loss(A_, b_):
        return (project_polytope(u, A_, b_) * w).sum()

    A_ = A.clone().requires_grad_(True)
    b_ = b.clone().requires_grad_(True)
    gA, gb = torch.autograd.grad(loss(A_, b_), (A_, b_))
    h = 1e-6
    fd_b = torch.zeros_like(b)
    for i, j in itertools.product(range(len(b)), range(b.shape[1])):
        e = torch.zeros_like(b)
        e[i, j] = h
        fd_b[i, j] = (loss(A, b + e) - loss(A, b - e)) / (2 * h)
    torch.testing.assert_close(gb, fd_b, rtol=0, atol=1e-6)
    e = torch.zeros_like(A)
    e[:, 1, 0] = h  # one entry per element at once: elements are independent
    fd_A = (loss(A + e, b) - loss(A - e, b)) / (2 * h)
    torch.testing.assert_close(gA[:, 1, 0].sum(), fd_A, rtol=0, atol=1e-6)


# ----------------------------------------------------------------------------- boundary conventions


SQUARE = (
    torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]], dtype=F64),
    torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=F64),
)


def test_boundary_points_get_the_locally_active_face():
    A, b = SQUARE
    u = torch.tensor(
        [
            [1.0, 0.5],  # feasible, on a face: no active set, Jacobian I
            [1.0, 1.0],  # feasible vertex: still I (no row carries a multiplier)
            [1.0, 3.0],  # onto the vertex (1, 1) along e2: x <= 1 is active with multiplier 0
            [3.0, 2.0],  # inside the vertex's normal cone: vertex Jacobian 0
        ],
        dtype=F64,
    )
    act = active_set(u, A, b)
    assert act.tolist() == [
        [False] * 4,
        [False] * 4,
        [False, True, False, False],
        [True, True, False, False],
    ]
    J = projection_jacobian(u, A, b)
    expected = torch.tensor(
        [[[1, 0], [0, 1]], [[1, 0], [0, 1]], [[1, 0], [0, 0]], [[0, 0], [0, 0]]], dtype=F64
    )
    torch.testing.assert_close(J, expected)
    torch.testing.assert_close(batch_jacobian(lambda x: project_polytope(x, A, b), u), expected)


def test_degenerate_vertex_three_constraints():
    """Issue 13's counterexample: x <= 1, y <= 1 and x + y <= 2 all pass through (1, 1)."""
    A, b = SQUARE
    A = torch.cat([A, torch.tensor([[1.0, 1.0]], dtype=F64)])  # x + y <= 2 also passes (1, 1)
    b = torch.cat([b, torch.tensor([2.0], dtype=F64)])
    u = torch.tensor([[2.0, 3.0], [3.0, 3.0], [1.5, 0.5], [2.0, 1.5], [1.0, 3.0]], dtype=F64)
    p = project_polytope(u, A, b)
    torch.testing.assert_close(
        p, torch.tensor([[1.0, 1.0], [1.0, 1.0], [1.0, 0.5], [1.0, 1.0], [1.0, 1.0]], dtype=F64)
    )
    J = batch_jacobian(lambda x: project_polytope(x, A, b), u)
    assert torch.isfinite(J).all()
    # (3, 3) − (1, 1) lies inside the vertex's normal cone: Φ is locally constant, J = 0 (the
    # smallest-set rule returned I − nnᵀ of x + y <= 2 here). Every other point likewise.
    torch.testing.assert_close(J[[0, 1, 3]], torch.zeros(3, 2, 2, dtype=F64), rtol=0, atol=1e-12)
    torch.testing.assert_close(J[2], torch.tensor([[0.0, 0.0], [0.0, 1.0]], dtype=F64))
    # (1, 3): the correction is along e2 alone, so the face y <= 1 (a kink: a limiting Jacobian)
    torch.testing.assert_close(J[4], torch.tensor([[1.0, 0.0], [0.0, 0.0]], dtype=F64))
    torch.testing.assert_close(J[:4], central_differences(u[:4], A, b), rtol=0, atol=1e-7)
    torch.testing.assert_close(projection_jacobian(u, A, b), J, rtol=0, atol=1e-12)
    assert active_set(u, A, b)[1].tolist() == [True, True, False, False, True]
    assert active_set(u, A, b)[4].tolist() == [False, True, False, False, False]


def test_redundant_constraints():
    A, b = SQUARE
    extra_A = torch.tensor([[1.0, 0.0], [2.0, 0.0], [1.0, 1.0], [0.0, 0.0]], dtype=F64)
    extra_b = torch.tensor([1.0, 2.0, 5.0, 0.5], dtype=F64)  # duplicate, scaled, implied, 0<=.5
    A2, b2 = torch.cat([A, extra_A]), torch.cat([b, extra_b])
    u = 3 * torch.randn(64, 2, dtype=F64, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(project_polytope(u, A2, b2), u.clamp(0.0, 1.0))
    J = batch_jacobian(lambda x: project_polytope(x, A2, b2), u)
    assert torch.isfinite(J).all()
    torch.testing.assert_close(J, projection_jacobian(u, A, b))
    torch.testing.assert_close(projection_jacobian(u, A2, b2), J)


# ----------------------------------------------------------------------------- API details


def test_shapes_dtypes_and_broadcasting():
    A, b = SQUARE
    u1 = torch.tensor([2.0, 0.5])
    out = project_polytope(u1, A.float(), b.float())
    assert out.shape == (2,) and out.dtype == torch.float32
    torch.testing.assert_close(out, torch.tensor([1.0, 0.5]))
    assert projection_jacobian(u1, A, b).shape == (2, 2)
    assert active_set(u1, A, b).shape == (4,) and bool(is_feasible(out, A, b)) is True
    u = torch.randn(5, 2, dtype=torch.float32) * 3
    for method in P.METHODS:
        p = project_polytope(u, A.float(), b.float(), method=method)
        assert p.dtype == torch.float32 and p.shape == (5, 2)
        torch.testing.assert_close(p, u.clamp(0, 1), rtol=0, atol=1e-6)
    # one polytope per element, or a batched A with a shared b
    Ab = A.expand(5, 4, 2)
    torch.testing.assert_close(project_polytope(u.double(), Ab, b), u.double().clamp(0, 1))
    assert project_polytope(torch.zeros(0, 2), A, b).shape == (0, 2)
    torch.testing.assert_close(project_polytope(u, torch.zeros(0, 2), torch.zeros(0)), u)


def test_float32_gradients_flow():
    A, b = (t.float() for t in SQUARE)
    u = torch.tensor([[2.0, 0.5]], requires_grad=True)
    project_polytope(u, A, b).sum().backward()
    assert u.grad.dtype == torch.float32
    torch.testing.assert_close(u.grad, torch.tensor([[0.0, 1.0]]))


def test_is_feasible_tolerances():
    A, b = SQUARE
    u = torch.tensor([[1.0 + 1e-12, 0.5], [1.0 + 1e-6, 0.5], [0.5, 0.5]], dtype=F64)
    assert is_feasible(u, A, b).tolist() == [True, False, True]
    assert is_feasible(u, A, b, atol=1e-5).tolist() == [True, True, True]
    assert is_feasible(u.float(), A.float(), b.float()).tolist() == [True, True, True]


def test_cvxpylayers_warning_stays_local():
    A, b = SQUARE
    before = list(warnings.filters)
    u = torch.tensor([[2.0, 2.0]], dtype=F64, requires_grad=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        project_polytope(u, A, b, method="cvxpylayers").sum().backward()
        project_polytope(u.detach(), A, b, method="cvxpylayers")
    assert not [w for w in caught if "__array__" in str(w.message)]
    assert warnings.filters == before


# ----------------------------------------------------------------------------- errors


def _square_batch(B: int = 6):
    A, b = SQUARE
    return torch.zeros(B, 2, dtype=F64), A.expand(B, 4, 2).clone(), b.expand(B, 4).clone()


def _bad_cases():
    u, A, b = _square_batch()
    nan_u = u.clone()
    nan_u[2, 1] = math.nan
    inf_A = A.clone()
    inf_A[1, 0, 0] = math.inf
    zero_row = A.clone()
    zero_row[1, 2] = 0.0
    neg_b = b.clone()
    neg_b[1, 2] = -1.0
    return [
        (
            (u[None], A, b),
            ValueError,
            r"u must have shape \[B, m\] or \[m\].*got shape \(1, 6, 2\)",
        ),
        (
            (u, A[..., :1], b),
            ValueError,
            r"A must have shape \[k, m\] or \[B, k, m\] with m = 2.*"
            r"got shape \(6, 4, 1\)",
        ),
        ((u, A, b[:, :3]), ValueError, r"b must have shape \[k\] or \[B, k\] with k = 4.*\(6, 3\)"),
        ((u[:4], A[:5], b), ValueError, r"batch sizes differ: u has B=4, A has B=5, b has B=6"),
        ((u[0], A, b), ValueError, r"u has shape \[m\].*pass u with shape \[B, m\]"),
        ((u.long(), A, b), ValueError, r"u must have a floating dtype.*torch.int64"),
        ((u, A.int(), b), ValueError, r"A must have a floating dtype.*torch.int32"),
        ((nan_u, A, b), ValueError, r"u contains NaN or inf \(first at batch index 2\)"),
        ((u, inf_A, b), ValueError, r"A contains NaN or inf \(first at batch index 1\)"),
        (
            (u, A[0], torch.tensor([1, math.nan, 0, 0], dtype=F64)),
            ValueError,
            r"b contains NaN or inf \(shared by every batch element\)",
        ),
        (
            (u, zero_row, neg_b),
            InfeasibleSetError,
            r"zero row with negative b \(row 2, batch "
            r"index 1\)",
        ),
        (([0.0, 0.0], A[0], b[0]), TypeError, r"u must be a torch.Tensor"),
    ]


@pytest.mark.parametrize("method", P.METHODS)
@pytest.mark.parametrize("case", range(len(_bad_cases())))
def test_bad_inputs_raise_before_any_solver(case, method, monkeypatch):
    args, error, match = _bad_cases()[case]
    monkeypatch.setattr(reference, "_layer", lambda *a: pytest.fail("the solver was reached"))
    with pytest.raises(error, match=match):
        project_polytope(*args, method=method)


@pytest.mark.parametrize("method", P.METHODS)
def test_empty_polytope_names_its_batch_index(method, monkeypatch):
    u, A, b = _square_batch()
    b[3, 0] = -1.0  # x <= -1 and x >= 0
    monkeypatch.setattr(reference, "_layer", lambda *a: pytest.fail("the solver was reached"))
    with pytest.raises(InfeasibleSetError, match=r"empty for 1 of 6 .*indices \[3\]"):
        project_polytope(u, A, b, method=method)
    for fn in (active_set, projection_jacobian):
        with pytest.raises(InfeasibleSetError, match=r"\[3\]"):
            fn(u, A, b)


def test_cvxpylayers_solver_error_beyond_the_enumeration_limit():
    # k = 240 faces is too many for the exact enumeration, so the solver's failure is translated.
    A, b = random_polygons(3, 240, seed=6)
    b[1, :] = b[1, :] - 10.0  # every face moved 10 past the centre: empty
    with pytest.raises(InfeasibleSetError, match=r"indices \[1\]"):
        project_polytope(torch.zeros(3, 2, dtype=F64), A, b, method="cvxpylayers")


def test_unknown_method_and_large_problems():
    A, b = SQUARE
    u = torch.zeros(1, 2, dtype=F64)
    with pytest.raises(ValueError, match=r"unknown method 'qp'; valid methods: 'exact', 'cvxpy"):
        project_polytope(u, A, b, method="qp")
    # 300 faces: beyond the enumeration's table (which says so), fine for the exact method
    A, b = random_polygons(2, 300)
    u = 3 * torch.randn(2, 2, dtype=F64, generator=torch.Generator().manual_seed(3))
    with pytest.raises(ValueError, match=r"45151 for k=300 .* m=2: k<=199"):
        enumeration.select(u, A, b)
    out = project_polytope(u, A, b)
    for i in range(2):
        ref = clarabel(u[i], A[i], b[i])
        torch.testing.assert_close(out[i], ref, rtol=0, atol=1e-7)


# ----------------------------------------------------------------------------- benchmark


def test_benchmark_script_runs_quick(capsys):
    spec = importlib.util.spec_from_file_location(
        "bench_projection", ROOT / "benchmarks" / "projection.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    threads = torch.get_num_threads()
    try:
        rows = module.main(["--quick"])
    finally:
        torch.set_num_threads(threads)
    assert rows and rows[0]["diff"] <= 1e-6 and rows[0]["exact_ms"] > 0
    out = capsys.readouterr().out
    assert "cvxpylayers" in out and "exact" in out


def test_interval_fast_path_matches_the_enumeration() -> None:
    """m = 1 takes a clamp path; it must agree with the general active-set rule everywhere,
    including the tie-breaking at boundary points (feasible point on the boundary: slope 1)."""
    gen = torch.Generator().manual_seed(11)
    A = torch.tensor([[2.0], [-1.0], [0.5], [-4.0]], dtype=torch.float64)
    b = torch.rand(64, 4, generator=gen, dtype=torch.float64) + 0.5
    hi = (b[:, [0, 2]] / A[[0, 2], 0]).amin(1)
    u = torch.cat([5 * (torch.rand(61, 1, generator=gen, dtype=torch.float64) - 0.5),
                   hi[61:64, None]], 0)  # the last three sit exactly on the upper end
    u.requires_grad_(True)
    out = project_polytope(u, A, b)
    (grad,) = torch.autograd.grad(out.sum(), u)
    jac = projection_jacobian(u.detach(), A, b)[:, 0, 0]
    torch.testing.assert_close(grad[:, 0], jac)
    assert torch.all(grad[61:] == 1.0)
    lo = (b[:, [1, 3]] / A[[1, 3], 0]).amax(1)
    torch.testing.assert_close(out[:, 0], u.detach()[:, 0].clamp(lo, hi))
    # gradient with respect to b: the active end moves the projection one for one (scaled by 1/a)
    b_var = b.clone().requires_grad_(True)
    (gb,) = torch.autograd.grad(project_polytope(torch.full((64, 1), 9.0, dtype=torch.float64),
                                                 A, b_var).sum(), b_var)
    assert torch.all((gb[:, 0] == 0.5) | (gb[:, 2] == 2.0))


def test_interval_fast_path_names_the_empty_batch_element() -> None:
    A = torch.tensor([[1.0], [-1.0]], dtype=torch.float64)
    # the third interval asks for u <= -1 and u >= 1
    b = torch.tensor([[1.0, 1.0], [1.0, 1.0], [-1.0, -1.0]], dtype=torch.float64)
    with pytest.raises(InfeasibleSetError, match=r"batch index/indices \[2\]"):
        project_polytope(torch.zeros(3, 1, dtype=torch.float64), A, b)


# ----------------------------------------------------------------------------- any dimension


@st.composite
def polytopes(draw):
    """One polytope {A v <= b} in m = 1..12 with its defects, and proposals [B, m].

    Random unit normals (not necessarily surrounding the origin: unbounded polyhedra occur) at
    0.1-2 from a centre, plus what the draw adds: a duplicate row, a scaled copy, a row that is
    the sum of two others (dependent), a redundant row far out, a redundant row through a vertex
    region, a thin wedge (a copy rotated by 1e-4 rad); proposals far out, near, and inside.
    """
    m = draw(st.integers(1, 12))
    k = draw(st.integers(1, 3 * m + 4))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(k, m, dtype=F64, generator=g)
    A = A / A.norm(dim=1, keepdim=True)
    centre = torch.randn(m, dtype=F64, generator=g)
    b = A @ centre + 0.1 + 1.9 * torch.rand(k, dtype=F64, generator=g)
    extra_A, extra_b = [], []
    if draw(st.booleans()):  # duplicate and scaled rows
        extra_A += [A[0], 3 * A[0]]
        extra_b += [b[0], 3 * b[0]]
    if k >= 2 and draw(st.booleans()):  # dependent: the sum of two rows (implied, touching)
        extra_A.append(A[0] + A[1])
        extra_b.append(b[0] + b[1])
    if draw(st.booleans()):  # redundant, far out
        extra_A.append(A[-1])
        extra_b.append(b[-1] + 5.0)
    if m >= 2 and draw(st.booleans()):  # a thin wedge: a_0 rotated by 1e-4 rad, same point
        t = torch.randn(m, dtype=F64, generator=g)
        t = t - (t @ A[0]) * A[0]
        a = math.cos(1e-4) * A[0] + math.sin(1e-4) * t / t.norm()
        extra_A.append(a)
        extra_b.append(a @ (centre + (b[0] - A[0] @ centre) * A[0]))  # through a point of row 0
    if extra_A:
        A = torch.cat([A, torch.stack(extra_A)])
        b = torch.cat([b, torch.stack(extra_b)])
    B = draw(st.integers(1, 3))
    scale = torch.tensor([4.0, 1.0, 0.05], dtype=F64)[:B, None]
    u = centre + scale * torch.randn(B, m, dtype=F64, generator=g)
    return u, A, b


@settings(max_examples=60, deadline=None)
@given(polytopes())
def test_matches_clarabel_in_any_dimension(prob):
    u, A, b = prob
    out = project_polytope(u, A, b)
    for i in range(len(u)):
        torch.testing.assert_close(out[i], clarabel(u[i], A, b), rtol=0, atol=1e-7)
    assert is_feasible(out, A, b).all()
    # the Jacobian is a symmetric idempotent (an orthogonal projector), and a limit of true ones
    J = projection_jacobian(u, A, b)
    torch.testing.assert_close(J, J.mT, rtol=0, atol=1e-12)
    torch.testing.assert_close(J @ J, J, rtol=0, atol=1e-9)


@pytest.mark.parametrize("m", [3, 6, 9])
def test_dual_method_agrees_with_the_enumeration(m, monkeypatch):
    k = {3: 9, 6: 10, 9: 11}[m]
    g = torch.Generator().manual_seed(m)
    A = torch.randn(16, k, m, dtype=F64, generator=g)
    b = 0.2 + torch.rand(16, k, dtype=F64, generator=g)
    u = 2 * torch.randn(16, m, dtype=F64, generator=g)
    if not enumeration.fits(k, m):
        pytest.skip("enumeration table too large")
    monkeypatch.setattr(core, "FORCE", "dual")
    dual_out, dual_J = project_polytope(u, A, b), projection_jacobian(u, A, b)
    monkeypatch.setattr(core, "FORCE", "enumeration")
    torch.testing.assert_close(project_polytope(u, A, b), dual_out, rtol=0, atol=1e-10)
    torch.testing.assert_close(projection_jacobian(u, A, b), dual_J, rtol=0, atol=1e-9)


@pytest.mark.parametrize("m", [4, 6])
def test_high_dimensional_jacobians_match_finite_differences_and_cvxpylayers(m):
    g = torch.Generator().manual_seed(10 + m)
    k = 3 * m
    A = torch.randn(6, k, m, dtype=F64, generator=g)
    A = A / A.norm(dim=-1, keepdim=True)
    b = 0.3 + torch.rand(6, k, dtype=F64, generator=g)
    u = 2 * torch.randn(6, m, dtype=F64, generator=g)
    keep = stable(u, A, b, h=1e-4)
    u, A, b = u[keep], A[keep], b[keep]
    assert len(u) >= 3
    J = batch_jacobian(lambda x: project_polytope(x, A, b), u)
    torch.testing.assert_close(J, central_differences(u, A, b), rtol=0, atol=1e-6)
    J_ref = batch_jacobian(lambda x: project_polytope(x, A, b, method="cvxpylayers"), u)
    torch.testing.assert_close(J, J_ref, rtol=0, atol=1e-4)
    ranks = torch.linalg.matrix_rank(J, atol=1e-9, rtol=0.0)
    assert (ranks == m - active_set(u, A, b).sum(1)).all()


def test_high_dimensional_gradients_wrt_A_and_b_match_finite_differences():
    g = torch.Generator().manual_seed(5)
    m, k = 5, 10
    A = torch.randn(4, k, m, dtype=F64, generator=g)
    b = 0.3 + torch.rand(4, k, dtype=F64, generator=g)
    u = 2 * torch.randn(4, m, dtype=F64, generator=g)
    keep = stable(u, A, b, h=1e-4)
    u, A, b = u[keep], A[keep], b[keep]
    w = torch.randn_like(u)

    def loss(A_, b_):
        return (project_polytope(u, A_, b_) * w).sum()

    A_ = A.clone().requires_grad_(True)
    b_ = b.clone().requires_grad_(True)
    gA, gb = torch.autograd.grad(loss(A_, b_), (A_, b_))
    h = 1e-6
    for j in range(k):  # one row per step, all elements at once (they are independent)
        e = torch.zeros_like(b)
        e[:, j] = h
        fd = (loss(A, b + e) - loss(A, b - e)) / (2 * h)
        torch.testing.assert_close(gb[:, j].sum(), fd, rtol=0, atol=1e-6)
        E = torch.zeros_like(A)
        E[:, j, j % m] = h
        fd = (loss(A + E, b) - loss(A - E, b)) / (2 * h)
        torch.testing.assert_close(gA[:, j, j % m].sum(), fd, rtol=0, atol=1e-6)
    # a shared A (one polytope for the batch) accumulates the batch's gradients
    A1 = A[0].clone().requires_grad_(True)
    (gA1,) = torch.autograd.grad((project_polytope(u, A1, b) * w).sum(), A1)
    A2 = A[0].expand(len(u), k, m).clone().requires_grad_(True)
    (gA2,) = torch.autograd.grad((project_polytope(u, A2, b) * w).sum(), A2)
    torch.testing.assert_close(gA1, gA2.sum(0))


def _wedge(theta: float, m: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two rows theta rad apart through the vertex v, closed by a box; and their bisector."""
    g = torch.Generator().manual_seed(m)
    a1 = torch.randn(m, dtype=F64, generator=g)
    a1 = a1 / a1.norm()
    t = torch.randn(m, dtype=F64, generator=g)
    t = (t - (t @ a1) * a1) / (t - (t @ a1) * a1).norm()
    a2 = math.cos(theta) * a1 + math.sin(theta) * t
    v = 0.3 * torch.randn(m, dtype=F64, generator=g)
    A = torch.cat([torch.stack([a1, a2]), -torch.eye(m, dtype=F64)])
    b = torch.cat([torch.stack([a1 @ v, a2 @ v]), torch.full((m,), 3.0, dtype=F64)])
    return A, b, v, (a1 + a2) / (a1 + a2).norm()


@pytest.mark.parametrize("m", [2, 3, 6])
def test_thin_wedges_are_exact(m):
    """Two rows 1e-4 rad apart: inside their normal cone Φ is the vertex's face, exactly."""
    A, b, v, bisector = _wedge(1e-4, m)
    u = v + torch.tensor([0.01, 0.1, 1.0, 10.0], dtype=F64)[:, None] * bisector
    p = project_polytope(u, A, b)
    # the face {a1ᵀx = b1, a2ᵀx = b2} through v: in 2-D the vertex itself
    torch.testing.assert_close(A[:2] @ p.T, b[:2, None].expand(2, 4), rtol=0, atol=1e-12)
    assert (active_set(u, A, b)[:, :2]).all()
    J = projection_jacobian(u, A, b)
    ranks = torch.linalg.matrix_rank(J, atol=1e-9, rtol=0.0)
    assert ranks.tolist() == [m - 2] * 4
    if m == 2:  # to float64's conditioning: eps / 1e-4 rad times the distance 10
        torch.testing.assert_close(p, v.expand(4, 2), rtol=0, atol=1e-10)
    # finite differences need steps inside the cone (R θ / 2 wide) yet far above the point's
    # rounding (about eps / θ): at R = 1 and 10, steps of 1e-5
    fd = central_differences(u[2:], A, b, h=1e-5)
    torch.testing.assert_close(J[2:], fd, rtol=0, atol=1e-5)


def test_degenerate_points_in_three_dimensions_match_finite_differences():
    """A pyramid apex (four planes through a point) and an edge with a redundant third plane."""
    apex = torch.tensor([[1.0, 0.0, 1.0], [-1.0, 0.0, 1.0], [0.0, 1.0, 1.0], [0.0, -1.0, 1.0],
                         [0.0, 0.0, -1.0]], dtype=F64)
    b_apex = torch.tensor([0.0, 0.0, 0.0, 0.0, 2.0], dtype=F64)  # apex at the origin
    u = torch.tensor([[0.1, 0.2, 3.0], [0.0, 0.0, 1.0]], dtype=F64)  # inside the apex's cone
    torch.testing.assert_close(project_polytope(u, apex, b_apex), torch.zeros(2, 3, dtype=F64))
    J = projection_jacobian(u, apex, b_apex)
    torch.testing.assert_close(J, torch.zeros(2, 3, 3, dtype=F64), rtol=0, atol=1e-12)
    torch.testing.assert_close(J, central_differences(u, apex, b_apex), rtol=0, atol=1e-7)
    # x <= 0, y <= 0 meet in the z axis; x + y <= 0 contains it (redundant there)
    A = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0]], dtype=F64)
    b = torch.zeros(3, dtype=F64)
    u = torch.tensor([[2.0, 2.0, 0.5], [1.0, 3.0, -1.0], [0.0, 3.0, 0.0]], dtype=F64)
    J = projection_jacobian(u, A, b)
    edge = torch.diag(torch.tensor([0.0, 0.0, 1.0], dtype=F64))
    torch.testing.assert_close(J[:2], edge.expand(2, 3, 3), rtol=0, atol=1e-12)
    torch.testing.assert_close(J[:2], central_differences(u[:2], A, b), rtol=0, atol=1e-7)
    assert active_set(u, A, b)[:2].all()
    # on the face y <= 0 alone (the edge of the wedge): its face Jacobian, a limiting one
    torch.testing.assert_close(J[2], torch.diag(torch.tensor([1.0, 0.0, 1.0], dtype=F64)))


@pytest.mark.parametrize("m", [3, 6])
def test_empty_polytopes_name_their_batch_indices_in_any_dimension(m):
    g = torch.Generator().manual_seed(m)
    A = torch.randn(5, 2 * m, m, dtype=F64, generator=g)
    b = 0.5 + torch.rand(5, 2 * m, dtype=F64, generator=g)
    A[[1, 4], 0], A[[1, 4], 1] = A[[1, 4], 0], -A[[1, 4], 0]  # a x <= b0 and -a x <= b1 ...
    b[[1, 4], 0], b[[1, 4], 1] = -1.0, -1.0  # ... with b0 + b1 < 0: empty
    with pytest.raises(InfeasibleSetError, match=r"empty for 2 of 5 .*indices \[1, 4\]") as err:
        project_polytope(torch.zeros(5, m, dtype=F64), A, b)
    assert err.value.empty.tolist() == [False, True, False, False, True]


def test_unverified_elements_go_to_the_fallbacks(monkeypatch):
    """An iteration cap of one step leaves elements unfinished: the fallbacks must solve them."""
    g = torch.Generator().manual_seed(7)
    A = torch.randn(8, 12, 4, dtype=F64, generator=g)
    b = 0.3 + torch.rand(8, 12, dtype=F64, generator=g)
    u = 3 * torch.randn(8, 4, dtype=F64, generator=g)
    monkeypatch.setattr(core, "FORCE", "dual")  # the dual method for every size
    expected = project_polytope(u, A, b)
    original = core.dual_active_set
    calls = []

    def capped(*args, **kwargs):
        calls.append(kwargs.get("max_iter"))
        if len(calls) == 1:
            kwargs["max_iter"] = 1
        return original(*args, **kwargs)

    monkeypatch.setattr(core, "dual_active_set", capped)
    torch.testing.assert_close(project_polytope(u, A, b), expected, rtol=0, atol=1e-12)
    assert len(calls) == 2  # the first run, then the fallback with more iterations


def test_float32_and_shared_b_in_higher_dimensions():
    g = torch.Generator().manual_seed(2)
    A = torch.randn(6, 15, 5, generator=g)
    b = 0.5 + torch.rand(15, generator=g)  # one b for the batch, one A per element
    u = (3 * torch.randn(6, 5, generator=g)).requires_grad_(True)
    out = project_polytope(u, A, b)
    assert out.dtype == torch.float32 and out.shape == (6, 5)
    out.sum().backward()
    assert u.grad.dtype == torch.float32 and torch.isfinite(u.grad).all()
    ref = project_polytope(u.detach().double(), A.double(), b.double())
    torch.testing.assert_close(out.double(), ref, rtol=0, atol=1e-6)


# ----------------------------------------------------------------------------- the tasks' sets


def _task_sets(env_id: str, states: int = 24) -> tuple[torch.Tensor, torch.Tensor]:
    """Safe action sets met along a random safe rollout, padded to one row count (0 v <= 1)."""
    import gymnasium as gym

    import tutorial_rl  # noqa: F401  (registers the environments)

    env = gym.make(env_id).unwrapped
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    sets = []
    for _ in range(states):
        A, b = env.safe_action_set()
        sets.append((A, b))
        a = rng.uniform(-1, 1, env.action_space.shape)
        if len(b) and not np.all(A @ a <= b):
            a = project_polytope(torch.as_tensor(a), torch.as_tensor(A), torch.as_tensor(b))
            a = a.numpy()
        _, _, terminated, truncated, _ = env.step(a)
        if terminated or truncated:
            env.reset(seed=int(rng.integers(1000)))
    k = max(len(b) for _, b in sets)
    A = torch.zeros(len(sets), k, sets[0][0].shape[1], dtype=F64)
    b = torch.ones(len(sets), k, dtype=F64)
    for i, (Ai, bi) in enumerate(sets):
        A[i, : len(bi)], b[i, : len(bi)] = torch.as_tensor(Ai), torch.as_tensor(bi)
    return A, b


@pytest.mark.parametrize("env_index", [0, 1, 2])
def test_identical_to_the_enumeration_on_the_tasks_sets(env_index, monkeypatch):
    """The course's three tasks: the same projections and Jacobians as the old default (the
    enumeration alone, smallest-set rule), with the new rule and the dual method."""
    from tutorial_rl.envs import ENV_IDS

    A, b = _task_sets(list(ENV_IDS)[env_index])
    g = torch.Generator().manual_seed(env_index)
    u = 1.5 * torch.randn(len(A), 8, A.shape[-1], dtype=F64, generator=g)
    u, A, b = u.reshape(-1, A.shape[-1]), A.repeat_interleave(8, 0), b.repeat_interleave(8, 0)
    old = enumeration.select(u, A, b).rows  # the old default: the smallest-set rule
    mask = old < A.shape[1]
    rows = old.clamp_max(A.shape[1] - 1)
    As, bs = take(A, rows) * mask[..., None], take(b, rows) * mask
    G = As @ As.mT + torch.diag_embed((~mask).to(F64))
    lam = torch.linalg.solve(G, (As @ u[..., None]).squeeze(-1) - bs)
    old_x = u - (As.mT @ lam[..., None]).squeeze(-1)
    old_J = torch.eye(A.shape[-1], dtype=F64) - As.mT @ torch.linalg.solve(G, As)
    # the planar edge search (m = 2), the dual method and the enumeration path
    for route in core.ROUTES:
        monkeypatch.setattr(core, "FORCE", route)
        torch.testing.assert_close(project_polytope(u, A, b), old_x, rtol=0, atol=1e-10)
        torch.testing.assert_close(projection_jacobian(u, A, b), old_J, rtol=0, atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10**6), st.integers(1, 12), st.sampled_from(["plain", "duplicate", "parallel",
                                                                   "zero", "wedge", "empty"]))
def test_planar_search_agrees_with_the_dual_method(seed, k, kind):
    """m = 2: the edge search and the general method give the same points, Jacobians and
    gradients for u, A and b (for A and b not at duplicate rows, where the row that carries the
    gradient is a choice, nor in the wedge, where ∂/∂A = −w xᵀ with ‖w‖ ~ 1e4 magnifies the
    general method's apex error), including parallel (redundant) and zero rows, 1e-4 rad wedges and
    empty polygons."""
    g = torch.Generator().manual_seed(seed)
    B = 16
    A = torch.randn(B, k, 2, dtype=F64, generator=g)
    b = 0.2 + torch.rand(B, k, dtype=F64, generator=g)
    if kind == "duplicate" and k > 1:
        A[:, -1], b[:, -1] = 3 * A[:, 0], 3 * b[:, 0]
    elif kind == "parallel" and k > 1:
        A[:, -1], b[:, -1] = 2 * A[:, 0], 2 * b[:, 0] + 0.5  # a redundant parallel row
    elif kind == "zero":
        A[:, -1], b[:, -1] = 0.0, 1.0
    elif kind == "wedge" and k > 1:
        A[:, 0] = torch.tensor([-1e-4, 1.0], dtype=F64)  # 0 <= |y| <= 1e-4 x: 1e-4 rad wide
        A[:, 1], b[:, :2] = torch.tensor([-1e-4, -1.0], dtype=F64), 0.0
    elif kind == "empty" and k > 1:
        A[3:5, 0], b[3:5, 0] = -A[3:5, -1], -b[3:5, -1] - 0.1  # two opposite rows 0.1 apart
    u = 2 * torch.randn(B, 2, dtype=F64, generator=g)
    results = []
    for planar in (True, False):
        saved, core.FORCE = core.FORCE, "planar" if planar else "dual"
        try:
            if kind == "empty" and k > 1:
                with pytest.raises(InfeasibleSetError) as err:
                    project_polytope(u, A, b)
                results.append((err.value.empty,))
                continue
            uu, AA, bb = (t.clone().requires_grad_(True) for t in (u, A, b))
            out = project_polytope(uu, AA, bb)
            (out * torch.arange(1.0, 3.0, dtype=F64)).sum().backward()
            results.append((out.detach(), projection_jacobian(u, A, b), uu.grad)
                           + ((AA.grad, bb.grad) if kind not in ("duplicate", "wedge") else ()))
        finally:
            core.FORCE = saved
    # in a 1e-4 rad wedge the general method's Gram polish places the apex up to 1e-8 off along
    # the wedge (its residuals are exact to 1e-12); the edge search intersects the two lines
    atol = 1e-7 if kind == "wedge" else 1e-8
    for new, old in zip(*results, strict=True):
        torch.testing.assert_close(new, old, rtol=0, atol=atol)
    if kind == "empty" and k > 1:
        assert results[0][0].nonzero().flatten().tolist() == [3, 4]


@pytest.mark.parametrize("planar", [True, False])
def test_two_dimensional_face_rule_shortcut_matches_the_full_rule(planar, monkeypatch):
    """m = 2 at vertices where three rows meet (and on the edges of their normal cones): the
    Jacobian of the closed-form rule used for gradients equals the one of the full rule (the
    projector onto the null space of the rows active_set reports) and autograd's."""
    monkeypatch.setattr(core, "FORCE", "planar" if planar else "dual")
    g = torch.Generator().manual_seed(3)
    n = 64
    angles = torch.sort(torch.rand(n, 3, generator=g, dtype=F64) * 2.4 - 1.2, 1).values
    A = torch.stack([torch.cos(angles), torch.sin(angles)], -1)  # three rows through the origin
    A = torch.cat([A, -A[:, :1]], 1)  # and a row parallel to the first (a flat set where tight)
    b = torch.cat([torch.zeros(n, 3, dtype=F64), torch.full((n, 1), 0.5, dtype=F64)], 1)
    pick = torch.randint(0, 3, (n,), generator=g)
    w = torch.rand(n, 1, generator=g, dtype=F64)
    on_edge = A[torch.arange(n), pick] * (1 + 2 * w)  # on a ray of the normal cone
    inside = A[:, :3].sum(1) * (1 + w)  # inside the cone of the three normals
    u = torch.where((torch.arange(n) % 2 == 0)[:, None], on_edge, inside)
    J = projection_jacobian(u, A, b)
    face = active_set(u, A, b)
    for i in range(n):
        rows = A[i][face[i]]
        P = rows.T @ torch.linalg.pinv(rows.T) if len(rows) else torch.zeros(2, 2, dtype=F64)
        torch.testing.assert_close(J[i], torch.eye(2, dtype=F64) - P, rtol=0, atol=1e-9)
    uu = u.clone().requires_grad_(True)
    out = project_polytope(uu, A, b)
    rows = [torch.autograd.grad(out[:, c].sum(), uu, retain_graph=True)[0] for c in range(2)]
    torch.testing.assert_close(torch.stack(rows, 1), J, rtol=0, atol=1e-9)


def test_route_rule_and_forcing(monkeypatch):
    """core.route: the documented crossovers (benchmarks/projection.py --routes measures them),
    and FORCE applies only where the forced route can run."""
    assert core.route(2, 4, 256) == "planar"  # the seeker's sets at its minibatch size
    assert core.route(2, 15, 4096) == "dual"  # O(k²) per element loses at large k and B
    assert core.route(2, 2, 4096) == "planar" and core.route(2, 15, 16) == "planar"
    assert core.route(2, 6, 256) == "dual"
    assert core.route(4, 5, 16) == "dual"  # the compiled dual method beats even 31 candidates
    assert core.route(3, 4, 1) == "dual"
    assert core.route(6, 18, 256) == "dual"
    monkeypatch.setattr(core, "FORCE", "planar")
    assert core.route(2, 15, 4096) == "planar" and core.route(4, 5, 256) == "dual"
    monkeypatch.setattr(core, "FORCE", "enumeration")
    assert core.route(4, 5, 256) == "enumeration" and core.route(6, 18, 256) == "dual"


def test_dual_method_refresh_gives_the_same_sets():
    """The fallback's refresh (H and N recomputed from the active set every step) finds the same
    verified sets as the rank-one updates."""
    from tutorial_rl.projection import dual

    g = torch.Generator().manual_seed(5)
    A = torch.randn(64, 20, 6, dtype=F64, generator=g)
    b = 0.3 + torch.rand(64, 20, dtype=F64, generator=g)
    u = 3 * torch.randn(64, 6, dtype=F64, generator=g)
    An, bn, scale = core.normalise(u, A, b)
    fast = dual.dual_active_set(u, An, bn, dual.ADD_RTOL * scale)
    slow = dual.dual_active_set(u, An, bn, dual.ADD_RTOL * scale, refresh=1)
    assert (fast.status == dual.SOLVED).all() and (slow.status == dual.SOLVED).all()
    assert torch.equal(fast.slots.sort(1).values, slow.slots.sort(1).values)
    torch.testing.assert_close(fast.lam.sort(1).values, slow.lam.sort(1).values, rtol=0,
                               atol=1e-9)


@pytest.mark.parametrize("m", [2, 6])
def test_dual_method_with_shared_rows_and_per_element_offsets(m: int) -> None:
    """One matrix A for the batch with an offset b per element (a safe action set whose rows are
    fixed and whose offsets depend on the state, as the quadrotor's): every element's set found
    by the dual method itself verifies, with no fallback. (It used to take element 0's b for
    the whole batch, and the fallback quietly repaired up to 77 % of a quadrotor update.)"""
    from tutorial_rl.projection import dual

    g = torch.Generator().manual_seed(11)
    A = torch.randn(1, 4 * m, m, dtype=F64, generator=g)
    b = 0.2 + 2 * torch.rand(300, 4 * m, dtype=F64, generator=g)
    u = 3 * torch.randn(300, m, dtype=F64, generator=g)
    An, bn, scale = core.normalise(u, A, b)
    assert An.shape[0] == 1 and bn.shape[0] == 300
    found = dual.dual_active_set(u, An, bn, dual.ADD_RTOL * scale)
    assert (found.status == dual.SOLVED).all()
    x, lam = core.polish(u, An, bn, found.slots)
    ok, _ = core._verify(u, x, An, bn, found.slots, lam, core.VERIFY_RTOL * scale)
    assert ok.all(), f"{int((~ok).sum())} of 300 elements unverified"
    expected = project_polytope(u, A.expand(300, -1, -1), b)
    torch.testing.assert_close(x, expected, rtol=0, atol=1e-9)


def test_dual_kernel_compiles_without_a_cache_folder() -> None:
    """Where numba finds no writable folder for its cache it refuses ``cache=True`` when the
    function is defined (here: source without a file); ``dual._compile`` then compiles without a
    cache instead of making the package fail at import."""
    import numba

    from tutorial_rl.projection import dual

    namespace: dict = {}
    exec("def plus_one(x):\n    return x + 1\n", namespace)  # no source file: no cache locator
    with pytest.raises(RuntimeError, match="no locator available"):
        numba.njit(cache=True)(namespace["plus_one"])
    assert dual._compile(namespace["plus_one"])(41) == 42


@pytest.mark.parametrize("shared", ["rows", "offsets", "both"])
def test_dual_method_shared_layouts_find_the_same_sets(shared: str) -> None:
    """One matrix A or one offset b for the whole batch (read in place by the compiled loop) finds
    the same sets and multipliers as the same problems given one polytope per element."""
    from tutorial_rl.projection import dual

    g = torch.Generator().manual_seed(3)
    n, k, m = 200, 30, 8
    A = torch.randn(1 if shared in ("rows", "both") else n, k, m, dtype=F64, generator=g)
    b = 0.2 + torch.rand(1 if shared in ("offsets", "both") else n, k, dtype=F64, generator=g)
    u = 3 * torch.randn(n, m, dtype=F64, generator=g)
    An, bn, scale = core.normalise(u, A, b)
    given = dual.dual_active_set(u, An, bn, dual.ADD_RTOL * scale)
    apart = dual.dual_active_set(u, An.expand(n, -1, -1), bn.expand(n, -1),
                                 dual.ADD_RTOL * scale)
    assert (given.status == dual.SOLVED).all()
    assert torch.equal(given.slots, apart.slots) and torch.equal(given.status, apart.status)
    assert torch.equal(given.lam, apart.lam)
    x, lam = core.polish(u, An, bn, given.slots)
    assert core._verify(u, x, An, bn, given.slots, lam, core.VERIFY_RTOL * scale)[0].all()


def test_dual_method_statuses() -> None:
    """The three outcomes of the loop: SOLVED (nothing violated, empty set of rows), EMPTY (a
    certificate: a_p in the span of S with no multiplier that can fall, here v <= 0 and -v <= -1)
    and UNFINISHED (the step cap reached: here three rows to add, one step allowed)."""
    from tutorial_rl.projection import dual

    u = torch.tensor([[0.0, 0.0, 0.0], [5.0, 5.0, 5.0], [2.0, 0.0, 0.0]], dtype=F64)
    A = torch.cat([torch.eye(3, dtype=F64), -torch.eye(3, dtype=F64)[:1]])[None].expand(3, -1, -1)
    b = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0], [0.0, 1.0, 1.0, -1.0]],
                     dtype=F64)
    An, bn, scale = core.normalise(u, A, b)
    tol = dual.ADD_RTOL * scale
    found = dual.dual_active_set(u, An, bn, tol)
    assert found.status.tolist() == [dual.SOLVED, dual.SOLVED, dual.EMPTY]
    assert found.slots[0].tolist() == [4, 4, 4]  # inside: no row, every slot empty (k = 4)
    assert sorted(found.slots[1].tolist()) == [0, 1, 2]
    torch.testing.assert_close(found.lam[1], torch.full((3,), 4.0, dtype=F64))
    capped = dual.dual_active_set(u[1:2], An[1:2], bn[1:2], tol[1:2], max_iter=1)
    assert capped.status.tolist() == [dual.UNFINISHED]


# ----------------------------------------------------------------------------- far and extreme rows


def _random_problem(m: int, k: int, B: int, seed: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(k, m, dtype=F64, generator=g)
    A = A / A.norm(dim=1, keepdim=True)
    centre = torch.randn(m, dtype=F64, generator=g)
    b = A @ centre + 0.1 + 1.9 * torch.rand(k, dtype=F64, generator=g)
    u = centre + 3 * torch.randn(B, m, dtype=F64, generator=g)
    return u, A, b


@pytest.mark.parametrize(("m", "route"), [
    (m, route) for m in (1, 2, 3, 6) for route in (None, "planar", "enumeration", "dual")
    if route != "planar" or m == 2  # the edge search is for m = 2
])
def test_a_far_row_does_not_loosen_the_projection(m: int, route: str | None, monkeypatch) -> None:
    """A redundant row far away (a bound of 1e6 ... 1e300, as one might write for "no bound")
    changes neither the projection nor its Jacobian. The tolerances used to scale with the
    largest offset of any row, so a row at 1e12 left points violated by 0.1 unprojected."""
    u, A, b = _random_problem(m, m + 3, 64, seed=m)
    if route == "enumeration" and not enumeration.fits(A.shape[0] + 1, m):
        pytest.skip("enumeration table too large")
    monkeypatch.setattr(core, "FORCE", route)
    near = project_polytope(u, A, b)
    J_near = projection_jacobian(u, A, b)
    assert not torch.equal(near, u)  # most proposals are projected
    for far in (1e6, 1e12, 1e15, 1e300):
        for sign in (1.0, -1.0):
            row = torch.zeros(1, m, dtype=F64)
            row[0, 0] = sign
            A_far, b_far = torch.cat([A, row]), torch.cat([b, torch.tensor([far], dtype=F64)])
            x = project_polytope(u, A_far, b_far)
            size = 1 + u.abs().amax(1, keepdim=True) + near.norm(dim=1, keepdim=True)
            assert ((x - near).abs() <= 1e-9 * size).all(), (far, sign)
            torch.testing.assert_close(projection_jacobian(u, A_far, b_far), J_near, rtol=0,
                                       atol=1e-9)


@pytest.mark.parametrize("m", [1, 2, 3, 6, 12])
def test_rows_of_extreme_magnitude_describe_the_same_polytope(m: int) -> None:
    """Scaling a row and its offset by any positive factor leaves the polytope unchanged, even
    where its norm would underflow (1e-170, a subnormal 5e-324 scale) or overflow (1e300)."""
    u, A, b = _random_problem(m, m + 3, 32, seed=10 + m)
    expected = project_polytope(u, A, b)
    J = projection_jacobian(u, A, b)
    for factor in (2.0**-600, 1e-170, 2.0**600, 1e300):
        A2, b2 = A.clone(), b.clone()
        A2[0], b2[0] = A[0] * factor, b[0] * factor
        x = u.clone().requires_grad_(True)
        out = project_polytope(x, A2, b2)
        torch.testing.assert_close(out.detach(), expected, rtol=0, atol=1e-9)
        torch.testing.assert_close(projection_jacobian(u, A2, b2), J, rtol=0, atol=1e-9)
        if m > 1:  # the gradient of the whole projection (m = 1: a clamp, checked elsewhere)
            grad, = torch.autograd.grad(out.sum(), x)
            torch.testing.assert_close(grad, J.sum(1), rtol=0, atol=1e-9)
    # a subnormal row: 5e-324 · v_1 <= b is v_1 <= b / 5e-324, beyond every float for |b| >= 1
    tiny = torch.zeros(1, m, dtype=F64)
    tiny[0, 0] = 5e-324
    A3 = torch.cat([A, tiny])
    out = project_polytope(u, A3, torch.cat([b, torch.tensor([0.5], dtype=F64)]))
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-9)  # no bound at all
    with pytest.raises(InfeasibleSetError):  # no float satisfies it
        project_polytope(u, A3, torch.cat([b, torch.tensor([-0.5], dtype=F64)]))


@pytest.mark.parametrize("m", [1, 2, 3, 4, 6, 12])
def test_the_extreme_row_test_matches_its_definition(m: int) -> None:
    """scaling._has_extreme_rows (a fast screen, by squared norms from m = 4 on) says exactly
    whether some nonzero row's largest |a_ij| lies outside [2^-E, 2^E], at and around the
    thresholds, for zero rows, and for rows mixing tiny and ordinary entries."""
    from tutorial_rl.projection import scaling

    E = scaling.RESCALE_EXP
    g = torch.Generator().manual_seed(m)
    scales = [0.0, 2.0**-E, 2.0**-E * (1 - 2**-52), 2.0**-E * 2, 2.0**-E / 2, 2.0**E,
              2.0**E * (1 + 2**-52), 2.0**E / 2, 5e-324, 1e-170, 1e300, 1.0, 1e-100, 1e100]
    for trial in range(60):
        A = torch.randn(3, 5, m, dtype=F64, generator=g)
        A = A / A.abs().amax(-1, keepdim=True)  # every row's largest |a_ij| is 1
        row = int(torch.randint(5, (1,), generator=g))
        scale = scales[trial % len(scales)]
        A[1, row] *= scale
        if trial % 3 == 1 and m > 1:  # an ordinary row with one tiny entry: not extreme
            A[2, row, 0] = 1e-300
        amax = A.abs().amax(-1)
        expected = bool(((amax > 0) & ((amax < 2.0**-E) | (amax > 2.0**E))).any())
        assert scaling._has_extreme_rows(A) == expected, (scale, trial)


def test_an_overflowing_offset_names_the_empty_batch_element() -> None:
    A = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[1e-320, 0.0], [0.0, 1.0]]], dtype=F64)
    b = torch.tensor([[1.0, 1.0], [-1.0, 1.0]], dtype=F64)
    u = torch.zeros(2, 2, dtype=F64)
    with pytest.raises(InfeasibleSetError, match=r"batch index/indices \[1\]") as err:
        project_polytope(u, A, b)
    assert err.value.empty.tolist() == [False, True]


def test_the_interval_ignores_bounds_beyond_every_float() -> None:
    """m = 1: b / a overflows for a subnormal a (the counterexample hypothesis found: the whole
    line came back as +inf), and a far bound must not loosen the near one."""
    u = torch.tensor([[0.0], [1.0], [-3.0], [500.0]], dtype=F64)
    out = project_polytope(u, torch.tensor([[5e-324]], dtype=F64), torch.tensor([0.5], dtype=F64))
    assert torch.equal(out, u)
    for far in (1e3, 1e12, 1e15, 1e300):
        out = project_polytope(u, torch.tensor([[1.0], [-1.0]], dtype=F64),
                               torch.tensor([1.0, far], dtype=F64))
        assert out[:, 0].tolist() == [0.0, 1.0, -3.0, 1.0]

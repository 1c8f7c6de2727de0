"""Batched closest-point projection of actions onto polytopes {v : A v <= b}, and its Jacobian.

The safeguard of the course is Φ(ũ) = argmin_v ‖v − ũ‖² subject to A v <= b (Chapter 1,
chapters/01_projection.py, eq. (1)-(3)). Two methods share one API:

``method="exact"`` (default): any action dimension m and any number of rows k, polynomial time.
    Batched, no Python loop over the batch (:mod:`~tutorial_rl.projection.core`): the dual
    active-set method (Goldfarb-Idnani, :mod:`~tutorial_rl.projection.dual`, a loop per element
    compiled with numba) identifies the active set, about |S*| + a few steps of rank-one updates
    per element; 2-D actions with few rows or small batches take the nearest point of each edge
    of the polygon instead, O(k²) per element and no iteration, in NumPy array operations
    (:mod:`~tutorial_rl.projection.planar`); :func:`~tutorial_rl.projection.core.route` picks
    the faster by a measured crossover. Enumerating every candidate set
    (:mod:`~tutorial_rl.projection.enumeration`) is the teaching version of chapter 1 and a
    fallback. Both searches run on the CPU; everything after them is torch on the inputs'
    device. The KKT
    system on the set is then solved in float64 and VERIFIED per element (feasibility,
    multiplier signs and complementarity to the tolerance below; stationarity holds by
    construction); failures go to fallbacks (more iterations, the enumeration, Clarabel), and an
    unverified point is never returned: the output is that verified point. Gradients with respect
    to u, A and b are the exact KKT sensitivity on the rows of the face rule below
    (:mod:`~tutorial_rl.projection.sensitivity`: a Cholesky factor of their Gram matrix, a QR
    factorisation where they are nearly dependent; m = 2 in closed form):
    dΦ/dũ = I − A₊ᵀ(A₊A₊ᵀ)⁻¹A₊. m = 1 is a clamp onto an interval. Where no gradient is wanted
    (no input requires one, or autograd is off) only the verified point is computed.
``method="cvxpylayers"``: the same problem in a ``cvxpylayers`` layer (diffcp + SCS, eps 1e-9),
    one conic solve per element: the paper's setup, kept as the reference.

Cost of the exact method: O(B · s · (|S| m + k m)) for s ≈ |S*| + a few steps (at most m rows
are active at once; a pass over all k rows only when a row is added) plus one m × m
factorisation per element for the polish and one for the gradient, memory O(B (k + m) m); for
m = 2 with few rows, O(B k²) in a fixed number of operations.
benchmarks/projection.py measures m = 1..12, k up to 4m + 6 and B up to 4096. Unbounded
polyhedra are fine; empty ones raise ``InfeasibleSetError`` naming the batch indices.

The Jacobian at degenerate points (one rule, :mod:`~tutorial_rl.projection.face`). Let x = Φ(ũ).
The rows used are I₊, those that carry a positive multiplier in SOME KKT multiplier vector
(g = ũ − x = A_Iᵀλ, λ >= 0 on the active rows I), and

    J = I − P, P = the orthogonal projector onto span{a_i : i ∈ I₊}.

This is the Jacobian of the locally active face: Φ is piecewise affine and equals x + Π_C(h) near
ũ (C the critical cone), and J is the Jacobian of Φ on an open set of points arbitrarily close to
ũ, hence a limiting Jacobian, J ∈ ∂_BΦ(ũ) ⊆ ∂_CΦ(ũ) (Clarke's generalised Jacobian); it is the
unique one of largest rank, and equals ∇Φ wherever Φ is differentiable. Consequences: a feasible
ũ, even on the boundary, gets J = I (g = 0: no row needs a multiplier, unless the polytope is flat
there); ũ on the edge of a vertex cone, ũ = x + t a_i, gets the face Jacobian I − â_i â_iᵀ; at
rows x <= 1, y <= 1, x + y <= 2 and ũ = (3, 3) all three rows carry multipliers and J = 0, the
true derivative (Φ is locally constant there). Gradients for A and b use a basis of A_{I₊}.

Tolerances: float64 whatever the input dtype, rows scaled to unit norm; tol = 1e-9 · (1 + ‖ũ‖∞ +
max_i |b_i|/‖a_i‖) (a distance) for verification, activity ("active" = within tol of equality) and
positive multipliers (λ_i > tol); the dual method adds rows violated by more than 1e-12 · the same
scale; a normal within ~1e-7 rad of the span of the active normals counts as dependent. Thin
wedges (rows 1e-4 rad apart) are resolved exactly.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tutorial_rl._validation import InfeasibleSetError, check_inputs
from tutorial_rl.projection.core import identify
from tutorial_rl.projection.dual import take
from tutorial_rl.projection.enumeration import MAX_CANDIDATES, project_interval
from tutorial_rl.projection.reference import project_cvxpylayers
from tutorial_rl.projection.scaling import rescale_rows
from tutorial_rl.projection.sensitivity import face_factor, project_on_face

__all__ = [
    "MAX_CANDIDATES",
    "METHODS",
    "InfeasibleSetError",
    "active_set",
    "is_feasible",
    "project_polytope",
    "projection_jacobian",
]

METHODS = ("exact", "cvxpylayers")


def _project_exact(u: Tensor, A: Tensor, b: Tensor) -> Tensor:
    k = A.shape[-2]
    if u.shape[1] == 1 and k > 0:
        return project_interval(u, A, b)
    if k == 0 or u.shape[0] == 0:  # nothing to project onto
        return u
    # rows of extreme magnitude rescaled by powers of two, differentiably: the gradients for A
    # and b follow through the factors
    A, b = rescale_rows(A, b, u.shape[0])
    grad = torch.is_grad_enabled() and (u.requires_grad or A.requires_grad or b.requires_grad)
    found = identify(u.detach(), A.detach(), b.detach(), need_face=False, need_basis=grad,
                     rescaled=True)
    if not grad:  # the verified point is all that is wanted: no face rule
        return found.x
    # The verified value, with the exact KKT sensitivity (eq. (3)) for u, b and A on the face.
    return project_on_face(u, A, b, found.rows, found.x)


def project_polytope(u: Tensor, A: Tensor, b: Tensor, method: str = "exact") -> Tensor:
    """Closest point Φ(u) = argmin_v ‖v − u‖² s.t. A v <= b, batched and differentiable.

    See Chapter 1 (chapters/01_projection.py), eq. (1)-(3).

    :param u: actions, shape [B, m] (or [m], then the result is [m]); any m >= 1.
    :param A: constraint matrix, [k, m] (one polytope for the whole batch) or [B, k, m]; any k.
    :param b: right-hand sides, [k] or [B, k].
    :param method: ``"exact"`` (batched dual active-set method with a verified KKT polish) or
        ``"cvxpylayers"`` (the slow reference). See the module docstring for tolerances.
    :returns: Φ(u) with u's shape, dtype and device. Differentiable with respect to u, A and b;
        dΦ/du = I − A₊ᵀ(A₊A₊ᵀ)⁻¹A₊ on a basis of the rows with a positive multiplier (the
        locally active face; the module docstring states the rule at degenerate points).
    :raises ValueError: bad shapes, batch sizes, dtypes, NaN/inf, or an unknown method.
    :raises InfeasibleSetError: an empty polytope (its batch indices are named).
    """
    if method not in METHODS:
        valid = ", ".join(map(repr, METHODS))
        raise ValueError(f"unknown method {method!r}; valid methods: {valid}")
    u2, A3, b2, squeeze = check_inputs(u, A, b)
    if method == "exact":
        out = _project_exact(u2, A3, b2)
    else:
        out = project_cvxpylayers(u2, A3, b2)
    out = out.to(u.dtype)
    return out[0] if squeeze else out


def active_set(u: Tensor, A: Tensor, b: Tensor) -> Tensor:
    """The rows of the locally active face [B, k] (bool): those with a positive KKT multiplier.

    Chapter 1 (chapters/01_projection.py), eq. (1)-(3). A row that is active but
    cannot carry a positive multiplier (a feasible point on the boundary, a redundant row through
    a vertex whose normal cone the proposal is not in) is not reported; duplicate and dependent
    rows that can, are. The Jacobian is the projector onto the null space of these rows.
    """
    u2, A3, b2, squeeze = check_inputs(u, A, b)
    face = identify(u2, *rescale_rows(A3, b2, u2.shape[0]), rescaled=True).face
    assert face is not None  # need_face=True
    return face[0] if squeeze else face


def projection_jacobian(u: Tensor, A: Tensor, b: Tensor) -> Tensor:
    """Exact Jacobian dΦ/du = I − A₊ᵀ(A₊A₊ᵀ)⁻¹A₊, shape [B, m, m] (or [m, m]).

    Chapter 1 (chapters/01_projection.py), eq. (3). A₊ is
    a basis of the rows with a positive multiplier (the module docstring states the rule and why
    it is an element of Clarke's generalised Jacobian). Its rank is m − rank A₊: m inside the set,
    m − 1 facing a face, 0 facing a vertex (action aliasing). Agrees with autograd through
    :func:`project_polytope`.
    """
    u2, A3, b2, squeeze = check_inputs(u, A, b)
    A3, b2 = rescale_rows(A3, b2, u2.shape[0])  # the Jacobian depends on the rows' directions only
    B, m = u2.shape
    eye = torch.eye(m, dtype=u2.dtype, device=u2.device).expand(B, m, m)
    k = A3.shape[-2]
    if k > 0 and B > 0:
        rows = identify(u2, A3, b2, need_face=False, rescaled=True).rows
        used = rows < k
        As = take(A3, rows.clamp_max(k - 1)) * used[..., None]
        pad = torch.diag_embed((~used).to(As.dtype))
        eye = eye - As.mT @ torch.linalg.solve(As @ As.mT + pad, As)
        # The Gram formula is exact on well-conditioned rows (nice numbers stay nice); where the
        # rows are nearly dependent (unit-row Gram determinant, a product of squared sines, below
        # 1e-6) its error grows as 1/det, and the QR form is used instead.
        unit = As / As.norm(dim=-1, keepdim=True).clamp_min(1e-300)
        ill = torch.linalg.det(unit @ unit.mT + pad) < 1e-6
        if bool(ill.any()):
            _, Q, _, _ = face_factor(A3 if A3.shape[0] == 1 else A3[ill], rows[ill])
            eye = eye.clone()
            eye[ill] = torch.eye(m, dtype=u2.dtype, device=u2.device) - Q @ Q.mT
    out = eye.to(u.dtype)
    return out[0] if squeeze else out


def is_feasible(u: Tensor, A: Tensor, b: Tensor, atol: float | None = None) -> Tensor:
    """Whether A u <= b + atol holds row-wise, per batch element: BoolTensor [B] (or scalar).

    Chapter 1 (chapters/01_projection.py), eq. (1). With ``atol=None`` the tolerance
    of row i is rtol · (1 + ‖a_i‖ ‖u‖∞ + |b_i|), rtol = max(1e-9, 100 · eps) of the inputs' dtype
    (1.2e-5 for float32), so outputs of :func:`project_polytope` pass in their own dtype.
    """
    u2, A3, b2, squeeze = check_inputs(u, A, b, check_empty_rows=False)
    dtype = torch.promote_types(torch.promote_types(u.dtype, A.dtype), b.dtype)
    res = (A3 @ u2[..., None]).squeeze(-1) - b2
    if atol is None:
        rtol = max(1e-9, 100 * torch.finfo(dtype).eps)
        scale = A3.norm(dim=-1) * u2.abs().amax(-1, keepdim=True) + b2.abs()
        out = (res <= rtol * (1 + scale)).all(-1)
    else:
        out = (res <= atol).all(-1)
    return out[0] if squeeze else out

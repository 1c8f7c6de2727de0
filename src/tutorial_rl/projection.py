"""Batched closest-point projection of actions onto polytopes {v : A v <= b}.

The safeguard of the course is Φ(ũ) = argmin_v ‖v − ũ‖² subject to A v <= b (Chapter 1,
chapters/01_projection.py, "The projection is a quadratic program"). Two implementations share
one API:

``method="exact"`` (default)
    Plain batched torch, no solver and no Python loop over the batch. The projection has an active
    set S of at most m linearly independent rows (Carathéodory), and Φ(u) is then the projection of
    u onto the affine set {A_S v = b_S}: u − A_Sᵀ(A_S A_Sᵀ)⁻¹(A_S u − b_S). Every candidate set
    of size 0..min(k, m) is evaluated at once; sets with a (near-)singular Gram matrix (duplicate or
    dependent rows, zero rows) and candidates that are infeasible are discarded, and the feasible
    candidate closest to u is the projection. The chosen candidate is recomputed with
    autograd-tracked ops, so gradients with respect to u, A and b are the exact ones of the KKT
    sensitivity: dΦ/du = I − A_Sᵀ(A_S A_Sᵀ)⁻¹A_S.
``method="cvxpylayers"``
    The same problem as a cvxpy ``Problem`` in a ``cvxpylayers.torch.CvxpyLayer`` (diffcp + SCS,
    eps 1e-9), solved in float64. Slow (one conic solve per batch element); it is the reference.

Supported sizes (exact method): any action dimension m >= 1 and any number k >= 0 of constraints
as long as the number of candidate active sets, sum over s <= min(k, m) of C(k, s), is at most
``MAX_CANDIDATES`` (20 000) and that number times k + 1 at most 2**22 (memory): m = 1 with
k <= 2047, m = 2 with k <= 199, m = 3 with k <= 49, m = 4 with k <= 26, m = 5 with k <= 19.
Larger problems raise a ``ValueError`` that says so. Unbounded polyhedra are fine; empty ones
raise ``InfeasibleSetError``. Work and memory grow as B x candidates x k.

Tie-breaking (how the Jacobian at boundary points is defined): when several candidate active sets
give the same point (within tolerance), the SMALLEST set wins, then one whose multipliers are all
non-negative, then the first in lexicographic order. So a feasible u, even on the boundary, gets
the empty active set and Jacobian I; a point whose projection is a vertex gets the face Jacobian
I − n nᵀ only if the vertex multiplier of the other constraint is zero (u − Φ(u) parallel to n).

Tolerances: the exact method computes in float64 whatever the input dtype, with rows scaled to unit
norm; a candidate is feasible if every constraint is violated by at most 1e-9 · (1 + ‖u‖∞ +
max_i |b_i| / ‖a_i‖) (a distance); rows whose normals are within ~1e-6 rad of each other count as
linearly dependent.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
import warnings
from collections.abc import Iterator
from typing import NamedTuple

import torch
from torch import Tensor

from tutorial_rl._validation import InfeasibleSetError, check_inputs, empty_polytope_message

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
MAX_CANDIDATES = 20_000
_MAX_ELEMS = 1 << 22  # candidates × (k + 1): the residual tensor of one batch element
_FEAS_RTOL = 1e-9  # relative feasibility/tie tolerance, in distance units (rows are unit norm)
_DET_TOL = 1e-12  # det of the unit-diagonal Gram = product of squared sines; ~1e-6 rad angles
_SOLVER_ARGS = {"eps": 1e-9, "max_iters": 100_000}


class _Table(NamedTuple):
    rows: Tensor  # [C, smax] candidate sets by size, then lexicographic; padded slots hold k
    key: Tensor  # [C] 2 · size: the tie-break order (the +1 marks negative multipliers)


def _count(k: int, m: int) -> int:
    return sum(math.comb(k, s) for s in range(min(k, m) + 1))


def _fits(k: int, m: int) -> bool:
    n = _count(k, m)
    return n <= MAX_CANDIDATES and n * (k + 1) <= _MAX_ELEMS


def _check_size(k: int, m: int) -> None:
    if not _fits(k, m):
        limits = []
        for mm in range(1, 6):
            kk = mm
            while _fits(kk + 1, mm):
                kk += 1
            limits.append(f"m={mm}: k<={kk}")
        raise ValueError(
            f"method='exact' enumerates all sum_(s<=min(k,m)) C(k, s) candidate active sets: "
            f"{_count(k, m)} for k={k} constraints and m={m} action dimensions, above the limit "
            f"of {MAX_CANDIDATES} sets (and {_MAX_ELEMS} sets x (k+1)). Supported: "
            f"{', '.join(limits)}. Use method='cvxpylayers' for larger problems."
        )


@functools.lru_cache(maxsize=64)
def _table(k: int, m: int, device: torch.device) -> _Table:
    # Built once per (k, m): the same shapes are projected onto at every training step.
    smax = min(k, m)
    sets = [c for s in range(smax + 1) for c in itertools.combinations(range(k), s)]
    rows = torch.tensor([c + (k,) * (smax - len(c)) for c in sets], dtype=torch.long)
    key = torch.tensor([2 * len(c) for c in sets], dtype=torch.long)
    return _Table(rows.reshape(len(sets), smax).to(device), key.to(device))


@torch.no_grad()
def _select(u: Tensor, A: Tensor, b: Tensor) -> Tensor:
    """Active set of the projection as row indices [B, min(k, m)]; k marks an unused slot."""
    B, m = u.shape
    k = A.shape[-2]
    _check_size(k, m)
    if k == 0:  # no constraints: every u is its own projection
        return torch.zeros(B, 0, dtype=torch.long, device=u.device)
    tab = _table(k, m, u.device)
    per = max(1, _MAX_ELEMS // (len(tab.rows) * (k + 1)))
    # Pieces of the batch bound the memory only; typical sizes run in one piece.
    parts = [
        _select_part(
            u[i : i + per],
            A[i : i + per] if len(A) > 1 else A,
            b[i : i + per] if len(b) > 1 else b,
            tab,
        )
        for i in range(0, max(B, 1), per)  # B = 0 still runs once, on empty tensors
    ]
    empty = torch.cat([e for _, e in parts])
    if bool(empty.any()):
        raise InfeasibleSetError(empty_polytope_message(empty), empty)
    return torch.cat([r for r, _ in parts])


def _select_part(u: Tensor, A: Tensor, b: Tensor, tab: _Table) -> tuple[Tensor, Tensor]:
    B, m = u.shape
    Ba, k = A.shape[:2]
    rows = tab.rows
    C, smax = rows.shape
    flat = rows.flatten()
    # Batch-last layout: reductions over the small set, constraint and action axes then run
    # along contiguous batch vectors, several times faster on CPU than over a short last axis.
    At, ut = A.permute(1, 2, 0).contiguous(), u.T.contiguous()  # [k, m, Ba], [m, B]
    norms = At.square().sum(1).sqrt()
    ok = norms > 0
    inv = norms.reciprocal().nan_to_num(posinf=0.0)
    # Unit rows: scaling changes neither Φ nor its active set, and makes residuals distances.
    # Row k is a zero "padding" constraint, so unused slots of small sets need no masking.
    Ah = torch.cat([At * inv[:, None], At.new_zeros(1, m, Ba)])  # [k+1, m, Ba]
    bh = b.T * inv
    bh = torch.cat([bh, bh.new_zeros(1, bh.shape[-1])])  # [k+1, Bb]
    ok = torch.cat([ok, ok.new_ones(1, Ba)])
    r = (Ah * ut).sum(1) - bh  # [k+1, B] signed distances to the hyperplanes
    G = (Ah[:, None] * Ah).sum(2)  # [k+1, k+1, Ba] Gram matrix
    tol = _FEAS_RTOL * (1 + ut.abs().amax(0) + bh.abs().amax(0))  # [B]
    nonsingular = ok.index_select(0, flat).view(C, smax, Ba).all(1)  # [C, Ba]
    rs = r.index_select(0, flat).view(C, smax, B)
    G_rows = G.index_select(0, flat).view(C, smax, k + 1, Ba)
    if smax <= 1:  # unit rows: the Gram matrix is 1 (0 for padding, where rs = 0)
        lam = rs
    elif smax == 2:  # a closed form is much faster than a batched LU at these sizes
        g = G.view(-1, Ba).index_select(0, rows[:, 0] * (k + 1) + rows[:, 1])
        det = 1 - g * g
        nonsingular = nonsingular & (det > _DET_TOL)
        lam = torch.stack([rs[:, 0] - g * rs[:, 1], rs[:, 1] - g * rs[:, 0]], 1)
        lam = lam / det.clamp_min(_DET_TOL)[:, None]
    else:
        pairs = (rows[:, :, None] * (k + 1) + rows[:, None, :]).flatten()
        Gs = G.view(-1, Ba).index_select(0, pairs).view(C, smax, smax, Ba)
        Gs = Gs.permute(3, 0, 1, 2) + torch.diag_embed((rows == k).to(G.dtype))  # [Ba, C, s, s]
        lu, piv, _ = torch.linalg.lu_factor_ex(Gs)
        det = lu.diagonal(dim1=-2, dim2=-1).prod(-1).abs().T
        nonsingular = nonsingular & (det > _DET_TOL)
        rhs = rs.permute(2, 0, 1)[..., None]
        lam = torch.linalg.lu_solve(lu.expand(B, C, smax, smax), piv.expand(B, C, smax), rhs)
        lam = lam.squeeze(-1).permute(1, 2, 0)  # [C, s, B]
    # Residuals of every constraint at every candidate v = u − Σ λ_j a_j, through the Gram rows.
    res = r.expand(C, k + 1, B)
    for j in range(smax):
        res = torch.addcmul(res, lam[:, j, None, :], G_rows[:, j], value=-1)  # [C, k+1, B]
    valid = nonsingular & (res.amax(1) <= tol)
    dist = (lam * rs).sum(1)  # ‖u − v‖² = λᵀ G_S λ = λᵀ r_S
    best = torch.where(valid, dist, math.inf).min(0).indices
    res_best = res.gather(0, best[None, None, :].expand(1, k + 1, B))
    # Two candidates are the same point iff their residuals agree (v − v' lies in the row space).
    tie = valid & ((res - res_best).abs().amax(1) <= tol)
    key = torch.where(tie, tab.key[:, None] + (lam.amin(1) < -tol), 2 * smax + 2)
    return rows[key.min(0).indices], ~valid.any(0)  # argmin: the first minimum, lexicographic


def _take(X: Tensor, rows: Tensor) -> Tensor:
    """Rows ``rows`` [B, s] of X [Bx, k, ...] per batch element (Bx = 1 broadcasts)."""
    if X.shape[0] == 1:
        return X[0][rows]
    return X[torch.arange(rows.shape[0], device=rows.device)[:, None], rows]


def _active_rows(A: Tensor, b: Tensor, rows: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """A_S [B, s, m], b_S [B, s] and the Gram matrix of the chosen sets (tracked by autograd)."""
    mask = rows < A.shape[-2]
    rows = rows.clamp_max(A.shape[-2] - 1)
    As = _take(A, rows) * mask[..., None]
    eye_pad = torch.diag_embed((~mask).to(A.dtype))  # unused slots solve 1 · λ = 0
    return As, _take(b, rows) * mask, As @ As.mT + eye_pad


def _project_interval(u: Tensor, A: Tensor, b: Tensor) -> Tensor:
    """m = 1: the polytope is an interval [lo, hi] and Φ is a clamp onto it.

    Same result, tolerance and tie-breaking as the enumeration (a point within the tolerance of
    the interval is feasible and kept, with derivative 1), at a fraction of its fixed cost: the
    pendulum's SP-RL update projects a whole batch at every step.
    """
    a, inf = A[..., 0], torch.tensor(math.inf, dtype=u.dtype, device=u.device)
    ratio = b / torch.where(a == 0, torch.ones_like(a), a)  # zero rows were validated already
    hi = torch.where(a > 0, ratio, inf).amin(-1)
    lo = torch.where(a < 0, ratio, -inf).amax(-1)
    x = u[:, 0]
    scale = torch.where(a == 0, torch.zeros_like(ratio), ratio.abs()).amax(-1)
    tol = _FEAS_RTOL * (1 + x.detach().abs() + scale.detach())
    empty = (lo > hi + tol).expand(x.shape[0])
    if bool(empty.any()):
        raise InfeasibleSetError(empty_polytope_message(empty), empty)
    return torch.where(x > hi + tol, hi, torch.where(x < lo - tol, lo, x))[:, None]


def _project_exact(u: Tensor, A: Tensor, b: Tensor) -> Tensor:
    if u.shape[1] == 1 and A.shape[-2] > 0:
        return _project_interval(u, A, b)
    rows = _select(u.detach(), A.detach(), b.detach())
    if rows.shape[1] == 0:  # k = 0: nothing to project onto
        return u
    # Recompute only the chosen candidate with tracked ops: autograd then yields the exact KKT
    # sensitivity (eq. (3)) for u, b and A at the cost of one small solve.
    As, bs, G = _active_rows(A, b, rows)
    lam = torch.linalg.solve(G, (As @ u[..., None]).squeeze(-1) - bs)
    return u - (As.mT @ lam[..., None]).squeeze(-1)


@functools.lru_cache(maxsize=16)
def _layer(k: int, m: int):
    import cvxpy as cp
    from cvxpylayers.torch import CvxpyLayer

    v, A = cp.Variable(m), cp.Parameter((k, m))
    b, u = cp.Parameter(k), cp.Parameter(m)
    problem = cp.Problem(cp.Minimize(cp.sum_squares(v - u)), [A @ v <= b])
    return CvxpyLayer(problem, parameters=[A, b, u], variables=[v])


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence diffcp's numpy-2 ``__array__`` DeprecationWarning here only (it fires every call)."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"__array__ implementation", category=DeprecationWarning
        )
        yield


class _QuietLayer(torch.autograd.Function):
    """The layer on a private graph, so that its backward pass also runs inside ``_quiet()``."""

    @staticmethod
    def forward(ctx, layer, *params: Tensor) -> Tensor:  # type: ignore[override]
        with torch.enable_grad(), _quiet():
            inputs = [p.detach().requires_grad_(True) for p in params]
            (v,) = layer(*inputs, solver_args=dict(_SOLVER_ARGS))
        ctx.graph = (v, inputs)
        return v.detach()

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        v, inputs = ctx.graph
        with _quiet():
            grads = torch.autograd.grad(v, inputs, grad, allow_unused=True)
        return (None, *grads)


def _empty_by_lp(A: Tensor, b: Tensor, B: int) -> Tensor:
    """Which polytopes are empty, by one LP each (only used when the solver failed)."""
    from scipy.optimize import linprog

    An, bn = A.detach().cpu().numpy(), b.detach().cpu().numpy()
    empty = torch.zeros(B, dtype=torch.bool)
    for i in range(B):
        Ai, bi = An[i % An.shape[0]], bn[i % bn.shape[0]]
        res = linprog(0 * Ai[0], A_ub=Ai, b_ub=bi, bounds=[(None, None)] * Ai.shape[1])
        empty[i] = res.status == 2
    return empty


def _project_cvxpylayers(u: Tensor, A: Tensor, b: Tensor) -> Tensor:
    import cvxpy as cp
    from diffcp import SolverError

    B, m = u.shape
    k = A.shape[-2]
    if k == 0 or B == 0:  # nothing to solve (and cvxpy rejects empty parameters)
        return u
    if _fits(k, m):
        _select(u.detach(), A.detach(), b.detach())  # names empty polytopes before solving
    # Unbatched parameters are broadcast by the layer; batched ones keep their batch axis.
    params = [x[0] if x.shape[0] == 1 and B > 1 else x for x in (A, b)] + [u]
    layer = _layer(k, m)
    try:
        if torch.is_grad_enabled() and any(x.requires_grad for x in params):
            v = _QuietLayer.apply(layer, *params)
        else:
            with _quiet():
                (v,) = layer(*params, solver_args=dict(_SOLVER_ARGS))
    except (SolverError, cp.error.SolverError) as exc:
        empty = _empty_by_lp(A, b, B)
        if bool(empty.any()):
            raise InfeasibleSetError(empty_polytope_message(empty), empty) from exc
        raise
    return v


def project_polytope(u: Tensor, A: Tensor, b: Tensor, method: str = "exact") -> Tensor:
    """Closest point Φ(u) = argmin_v ‖v − u‖² s.t. A v <= b, batched and differentiable.

    See Chapter 1 (chapters/01_projection.py): the projection as a quadratic program, its
    KKT conditions and Jacobian, and the fast exact method checked against the reference.

    :param u: actions, shape [B, m] (or [m], then the result is [m]).
    :param A: constraint matrix, [k, m] (one polytope for the whole batch) or [B, k, m].
    :param b: right-hand sides, [k] or [B, k].
    :param method: ``"exact"`` (batched active-set enumeration in torch) or ``"cvxpylayers"``
        (the slow reference). See the module docstring for supported sizes and tolerances.
    :returns: Φ(u) with u's shape, dtype and device. Differentiable with respect to u, A and b;
        dΦ/du = I − A_Sᵀ(A_S A_Sᵀ)⁻¹A_S on the chosen active set S. At boundary points S is the
        smallest active set that reproduces Φ(u) (see the module docstring).
    :raises ValueError: bad shapes, batch sizes, dtypes, NaN/inf, unknown method, or a problem too
        large for the exact enumeration.
    :raises InfeasibleSetError: an empty polytope (its batch indices are named).
    """
    if method not in METHODS:
        valid = ", ".join(map(repr, METHODS))
        raise ValueError(f"unknown method {method!r}; valid methods: {valid}")
    u2, A3, b2, squeeze = check_inputs(u, A, b)
    if method == "exact":
        out = _project_exact(u2, A3, b2)
    else:
        out = _project_cvxpylayers(u2, A3, b2)
    out = out.to(u.dtype)
    return out[0] if squeeze else out


def active_set(u: Tensor, A: Tensor, b: Tensor) -> Tensor:
    """Active constraints [B, k] (bool) chosen by the exact method, with its tie-breaking.

    Chapter 1 (chapters/01_projection.py), KKT conditions and normal cone. Rows of a degenerate
    vertex that are not needed (e.g. a third line through a 2-D vertex) are not reported as
    active.
    """
    u2, A3, b2, squeeze = check_inputs(u, A, b)
    rows = _select(u2, A3, b2)
    k = A3.shape[-2]
    out = torch.zeros(u2.shape[0], k + 1, dtype=torch.bool, device=u.device)
    out.scatter_(1, rows, True)  # unused slots hold k: a spare column
    return out[0, :k] if squeeze else out[:, :k]


def projection_jacobian(u: Tensor, A: Tensor, b: Tensor) -> Tensor:
    """Exact Jacobian dΦ/du = I − A_Sᵀ(A_S A_Sᵀ)⁻¹A_S, shape [B, m, m] (or [m, m]).

    Chapter 1 (chapters/01_projection.py), "The Jacobian of the projection" (the paper's A.2). Its
    rank is m − |S|: m inside the set, m − 1 on a face, 0 at a vertex (action aliasing). Agrees with
    autograd through :func:`project_polytope` (same active set and tie-breaking).
    """
    u2, A3, b2, squeeze = check_inputs(u, A, b)
    B, m = u2.shape
    eye = torch.eye(m, dtype=u2.dtype, device=u2.device).expand(B, m, m)
    rows = _select(u2, A3, b2)
    if rows.shape[1] > 0:
        As, _, G = _active_rows(A3, b2, rows)
        eye = eye - As.mT @ torch.linalg.solve(G, As)
    out = eye.to(u.dtype)
    return out[0] if squeeze else out


def is_feasible(u: Tensor, A: Tensor, b: Tensor, atol: float | None = None) -> Tensor:
    """Whether A u <= b + atol holds row-wise, per batch element: BoolTensor [B] (or scalar).

    Chapter 1 (chapters/01_projection.py), the safe set {v : A v <= b}. With ``atol=None`` the
    tolerance of row i is rtol · (1 + ‖a_i‖ ‖u‖∞ + |b_i|), rtol = max(1e-9, 100 · eps) of the
    inputs' dtype (1.2e-5 for float32), so outputs of :func:`project_polytope` pass in their own
    dtype.
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

"""The teaching version of the exact projection: enumerate every candidate active set.

Chapter 1 (chapters/01_projection.py), "A fast exact projection". The projection has
an active set S of at most m linearly independent rows (Carathéodory), and Φ(u) is the projection
of u onto the affine set {A_S v = b_S}: u − A_Sᵀ(A_S A_Sᵀ)⁻¹(A_S u − b_S). Every candidate set of
size 0..min(k, m) is evaluated at once; sets with a (near-)singular Gram matrix (duplicate or
dependent rows, zero rows) and infeasible candidates are discarded, and the feasible candidate
closest to u is the projection. Exact, batched, no Python loop over the batch, but its work grows
as B × Σ_{s<=m} C(k, s) × k: it is fastest for tiny problems (m >= 3 and a handful of rows),
where :mod:`tutorial_rl.projection` uses it; larger ones go to the dual active-set method
(:mod:`tutorial_rl.projection.dual`), and m = 2 to the edge search
(:mod:`tutorial_rl.projection.planar`). The candidate it returns is only a basis of the optimum: the
package's rule for degenerate points (:mod:`tutorial_rl.projection.face`) is applied afterwards.

Tie-breaking among candidates that give the same point (within tolerance): the SMALLEST set, then
one whose multipliers are all non-negative, then the first in lexicographic order.

Tolerances: float64, rows scaled to unit norm; a candidate is feasible if every constraint is
violated by at most 1e-12 · s, s = 1 + ‖u‖∞ + max_i |b_i| / ‖a_i‖ (a distance; the dual method's
threshold, tight enough to resolve thin wedges), two feasible candidates are the same point if
their residuals agree to 1e-9 · s; rows whose normals are within ~1e-6 rad of each other count as
linearly dependent.
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import NamedTuple

import torch
from torch import Tensor

from tutorial_rl._validation import InfeasibleSetError, empty_polytope_message
from tutorial_rl.projection.dual import ADD_RTOL

__all__ = ["MAX_CANDIDATES", "Selected", "candidate_count", "fits", "project_interval", "select"]

MAX_CANDIDATES = 20_000
_MAX_ELEMS = 1 << 22  # candidates × (k + 1): the residual tensor of one batch element
_FEAS_RTOL = 1e-9  # relative feasibility/tie tolerance, in distance units (rows are unit norm)
_DET_TOL = 1e-12  # det of the unit-diagonal Gram = product of squared sines; ~1e-6 rad angles


class _Table(NamedTuple):
    rows: Tensor  # [C, smax] candidate sets by size, then lexicographic; padded slots hold k
    key: Tensor  # [C] 2 · size: the tie-break order (the +1 marks negative multipliers)


@functools.lru_cache(maxsize=256)
def candidate_count(k: int, m: int) -> int:
    return sum(math.comb(k, s) for s in range(min(k, m) + 1))


@functools.lru_cache(maxsize=256)
def fits(k: int, m: int) -> bool:
    n = candidate_count(k, m)
    return n <= MAX_CANDIDATES and n * (k + 1) <= _MAX_ELEMS


def _check_size(k: int, m: int) -> None:
    if not fits(k, m):
        limits = []
        for mm in range(1, 6):
            kk = mm
            while fits(kk + 1, mm):
                kk += 1
            limits.append(f"m={mm}: k<={kk}")
        raise ValueError(
            f"method='exact' enumerates all sum_(s<=min(k,m)) C(k, s) candidate active sets: "
            f"{candidate_count(k, m)} for k={k} constraints and m={m} action dimensions, above "
            f"the limit of {MAX_CANDIDATES} sets (and {_MAX_ELEMS} sets x (k+1)). Supported: "
            f"{', '.join(limits)}. project_polytope(method='exact') uses the dual active-set "
            f"method for larger problems."
        )


@functools.lru_cache(maxsize=64)
def _table(k: int, m: int, device: torch.device) -> _Table:
    # Built once per (k, m): the same shapes are projected onto at every training step.
    smax = min(k, m)
    sets = [c for s in range(smax + 1) for c in itertools.combinations(range(k), s)]
    rows = torch.tensor([c + (k,) * (smax - len(c)) for c in sets], dtype=torch.long)
    key = torch.tensor([2 * len(c) for c in sets], dtype=torch.long)
    return _Table(rows.reshape(len(sets), smax).to(device), key.to(device))


class Selected(NamedTuple):
    """The chosen candidate per element: its rows, multipliers, all residuals and the tolerance."""

    rows: Tensor  # [B, min(k, m)] row indices; k marks an unused slot
    lam: Tensor  # [B, min(k, m)] multipliers of the unit-normalised rows
    res: Tensor  # [B, k] a_iᵀv − b_i of the unit rows at the chosen point (distances)
    tol: Tensor  # [B] the feasibility / tie tolerance
    x: Tensor  # [B, m] the chosen point


@torch.no_grad()
def select(u: Tensor, A: Tensor, b: Tensor, scale: Tensor | None = None) -> Selected:
    """The candidate active set of the projection and its KKT data (see :class:`Selected`).

    ``scale`` [B]: the tolerances' scale s, if the caller knows a better one than
    1 + ‖u‖∞ + max_i |b_i|/‖a_i‖ (:func:`~tutorial_rl.projection.core.identify`).
    """
    B, m = u.shape
    k = A.shape[-2]
    _check_size(k, m)
    if k == 0:  # no constraints: every u is its own projection
        z = u.new_zeros(B, 0)
        return Selected(torch.zeros(B, 0, dtype=torch.long, device=u.device), z, z,
                        u.new_ones(B), u.clone())
    tab = _table(k, m, u.device)
    per = max(1, _MAX_ELEMS // (len(tab.rows) * (k + 1)))
    # Pieces of the batch bound the memory only; typical sizes run in one piece.
    parts = [
        _select_part(
            u[i : i + per],
            A[i : i + per] if len(A) > 1 else A,
            b[i : i + per] if len(b) > 1 else b,
            tab,
            None if scale is None else scale[i : i + per],
        )
        for i in range(0, max(B, 1), per)  # B = 0 still runs once, on empty tensors
    ]
    empty = torch.cat([e for _, e in parts])
    if bool(empty.any()):
        raise InfeasibleSetError(empty_polytope_message(empty), empty)
    return Selected(*(torch.cat([p[i] for p, _ in parts]) for i in range(5)))


def _select_part(u: Tensor, A: Tensor, b: Tensor, tab: _Table, scale: Tensor | None
                 ) -> tuple[Selected, Tensor]:
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
    tol = _FEAS_RTOL * (1 + ut.abs().amax(0) + bh.abs().amax(0) if scale is None else scale)
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
    valid = nonsingular & (res.amax(1) <= tol * (ADD_RTOL / _FEAS_RTOL))  # as the dual method
    dist = (lam * rs).sum(1)  # ‖u − v‖² = λᵀ G_S λ = λᵀ r_S
    best = torch.where(valid, dist, math.inf).min(0).indices
    res_best = res.gather(0, best[None, None, :].expand(1, k + 1, B))
    # Two candidates are the same point iff their residuals agree (v − v' lies in the row space).
    tie = valid & ((res - res_best).abs().amax(1) <= tol)
    key = torch.where(tie, tab.key[:, None] + (lam.amin(1) < -tol), 2 * smax + 2)
    choice = key.min(0).indices  # argmin: the first minimum, lexicographic
    at = torch.arange(B, device=u.device)
    rows_best, lam_best = rows[choice], lam[choice, :, at]
    normals = Ah[rows_best, :, at[:, None] if Ba > 1 else 0]  # [B, s, m]
    x = u - (lam_best[..., None] * normals).sum(1)
    # zero rows (0 <= b_i, e.g. padding) can never bind: not "active" at any point
    res_best = torch.where(ok[:k].T, res[choice, :k, at], -math.inf)
    return Selected(rows_best, lam_best, res_best, tol, x), ~valid.any(0)


def project_interval(u: Tensor, A: Tensor, b: Tensor) -> Tensor:
    """m = 1: the polytope is an interval [lo, hi] and Φ is a clamp onto it (autograd-tracked).

    The package's rule (:mod:`tutorial_rl.projection.face`) in one dimension: a point within the
    tolerance of the interval is feasible and kept, with derivative 1; outside it the nearest end
    is returned, with derivative 0; a point interval (hi − lo within the tolerance) is returned as
    its point with derivative 0 (the rows x <= hi and −x <= −lo both carry a positive multiplier
    there: Φ is constant). Same tolerances as the dual method; the pendulum's SP-RL update projects
    a whole batch at every step, so this path has no fixed cost beyond a few element-wise ops.
    """
    a, inf = A[..., 0], torch.tensor(math.inf, dtype=u.dtype, device=u.device)
    # b / a overflows to ±inf for a tiny a: +inf is no bound at all, -inf one no float can meet
    ratio = b / torch.where(a == 0, torch.ones_like(a), a)  # zero rows were validated already
    hi = torch.where(a > 0, ratio, inf).amin(-1)
    lo = torch.where(a < 0, ratio, -inf).amax(-1)
    x = u[:, 0]
    # Tolerances scale with the numbers that meet in each test: x and the bound it is compared
    # with (a far bound elsewhere, 1e12 say, must not loosen the test against the near one).
    size = x.detach().abs()
    hi_size = torch.where(torch.isfinite(hi), hi.abs(), 0.0).detach()
    lo_size = torch.where(torch.isfinite(lo), lo.abs(), 0.0).detach()
    tol_hi = ADD_RTOL * (1 + size + hi_size)  # as the dual method: move a point violated by more
    tol_lo = ADD_RTOL * (1 + size + lo_size)
    scale = 1 + size + torch.maximum(hi_size, lo_size)
    empty = ((lo > hi + ADD_RTOL * scale) | torch.isneginf(hi) | torch.isposinf(lo)).expand(
        x.shape[0])
    if bool(empty.any()):
        raise InfeasibleSetError(empty_polytope_message(empty), empty)
    point = (hi - lo <= _FEAS_RTOL * scale).expand(x.shape[0])
    inner = torch.where(point, hi.expand(x.shape[0]), x)
    return torch.where(x > hi + tol_hi, hi, torch.where(x < lo - tol_lo, lo, inner))[:, None]

"""The rule for degenerate points: the Jacobian of the locally active face.

Chapter 1 (chapters/01_projection.py), "Which Jacobian at the boundary?"; Chapter 6, "Which
Jacobian at a boundary point?" (a question reviewers of the paper asked).

Let x = Φ(ũ), g = ũ − x, I the rows active at x and Λ = {λ >= 0 : A_Iᵀλ = g} the KKT multipliers
(a polytope, a single point only when the active rows are independent and strictly complementary).
The rule: I₊ = the rows that carry a positive multiplier in SOME λ ∈ Λ (the support of the
relative interior of Λ), and

    J = I − A₊ᵀ(A₊A₊ᵀ)⁺A₊,   the orthogonal projector onto N(A_{I₊}) = {d : a_iᵀd = 0, i ∈ I₊}.

Why this one. Φ is piecewise affine, so near ũ it is exactly Φ(ũ + h) = x + Π_C(h) with the
critical cone C = {d : a_iᵀd <= 0 (i ∈ I), gᵀd = 0} = {d : a_iᵀd = 0 (i ∈ I₊), a_jᵀd <= 0
(j ∈ I \\ I₊)}. By LP duality every j ∈ I \\ I₊ has a d ∈ C with a_jᵀd < 0, so C has interior
relative to N(A_{I₊}); on the open set of h with Π_C(h) in that relative interior, Φ is affine with
Jacobian J. Hence J is a limit of true Jacobians, J ∈ ∂_BΦ(ũ) ⊆ ∂_CΦ(ũ) = conv ∂_BΦ(ũ) (Clarke's
generalised Jacobian), and it is the unique element of largest rank (every other limiting Jacobian
projects onto the span of a proper face of C). Where Φ is differentiable it is ∇Φ. In words:
rows that are active but cannot carry a positive multiplier (a feasible ũ on the boundary, a
redundant row through a vertex whose cone ũ is not in) do not reduce the rank, and rows that can
(e.g. x <= 1, y <= 1 and x + y <= 2 at ũ = (3, 3)) all do: there Φ is locally constant and J = 0.

How. The active-set method returns a basis S with multipliers λ_S >= 0; T = {i ∈ S : λ_i > tol}
is in I₊, and so is every active row in span(A_T) (a face of a cone is its intersection with its
span). An active row j outside span(A_T) is in I₊ exactly when −a_j ∈ cone(a_i (i ∈ I), −g), i.e.
when the projection of −a_j onto the polar cone of that, which is C, is zero: one more small
projection per such row, solved by the same batched dual active-set method. These rows only
exist at degenerate points, so this costs nothing elsewhere. Gradients with respect to A and b use
a basis of A_{I₊} (T first, then the other rows of I₊ in index order).
"""

from __future__ import annotations

import torch
from torch import Tensor

from tutorial_rl.projection.dual import DEPENDENT_TOL, SOLVED, dual_active_set, take

__all__ = ["IN_FACE_TOL", "degenerate", "face_basis", "outside_span", "polish", "strong_rows"]

IN_FACE_TOL = 1e-8  # ‖Π_C(−a_j)‖ (a_j unit) at most this: row j carries a positive multiplier


def polish(u: Tensor, An: Tensor, bn: Tensor, slots: Tensor) -> tuple[Tensor, Tensor]:
    """Projection onto {A_S v = b_S} for the basis in ``slots`` [B, m]: (x [B, m], λ_S [B, m]).

    The KKT system of the identified active set, solved in float64 (a fresh solve, not the
    iterates of the active-set method).
    """
    k = An.shape[-2] - 1
    As = take(An, slots)
    bs = torch.where(slots == k, 0.0, take(bn, slots))
    G = As @ As.mT + torch.diag_embed((slots == k).to(u.dtype))
    lam = torch.linalg.solve(G, (As @ u[..., None]).squeeze(-1) - bs)
    return u - (lam[..., None] * As).sum(1), lam


def _off_span(An: Tensor, slots: Tensor) -> Tensor:
    """[B, K, m] each row of An minus its orthogonal projection onto span(A_slots)."""
    k = An.shape[-2] - 1
    As = take(An, slots)  # [B, m, m]
    G = As @ As.mT + torch.diag_embed((slots == k).to(As.dtype))
    rows = An.expand(slots.shape[0], -1, -1)  # [B, K, m]
    coef = torch.linalg.solve(G, As @ rows.mT)  # [B, m, K]
    return rows - coef.mT @ As


def outside_span(An: Tensor, slots: Tensor) -> Tensor:
    """[B, K] whether each row of An lies outside span(A_slots) (sine of its angle > tolerance)."""
    return _off_span(An, slots).square().sum(-1) > DEPENDENT_TOL**2


def strong_rows(slots: Tensor, lam: Tensor, res: Tensor, tol: Tensor) -> tuple[Tensor, Tensor,
                                                                                Tensor]:
    """T (the basis rows with λ > tol, as slots), its mask [B, k], and the other active rows."""
    k = res.shape[1]
    T = torch.where((lam > tol[:, None]) & (slots < k), slots, k)
    face = torch.zeros(T.shape[0], k + 1, dtype=torch.bool, device=T.device)
    face.scatter_(1, T, True)
    face = face[:, :k]
    return T, face, (res >= -tol[:, None]) & ~face  # extra active rows: only at degeneracies


def degenerate(T: Tensor, face: Tensor, extra: Tensor, need_face: bool) -> tuple[Tensor, Tensor]:
    """The face mask completed where it is free, and the elements that need the full test.

    With m rows in T every active row is in their span (and in I₊). A single extra active row
    outside span(A_T) never carries a multiplier (d = −(its part orthogonal to A_T) certifies it,
    see :func:`_positive_rows`), and inside the span it changes nothing: either way the basis is
    T, so only the reported mask needs the span test (``need_face``).
    """
    k = face.shape[1]
    full_rank = (T < k).all(1)
    face = face | (extra & full_rank[:, None])
    count = extra.sum(1)
    flagged = (count > 0) & ~full_rank & (need_face | (count > 1))
    return face, flagged


def face_basis(
    u: Tensor, x: Tensor, An: Tensor, slots: Tensor, lam: Tensor, res: Tensor, tol: Tensor,
    need_face: bool = True,
) -> tuple[Tensor, Tensor]:
    """The rows I₊ that carry a positive multiplier [B, k] and a basis of them (slots [B, m]).

    :param x: the verified projection [B, m]; ``slots``: its KKT basis [B, m] with multipliers
        ``lam`` >= −tol (unit rows).
    :param res: [B, k] residuals a_iᵀx − b_i of the unit rows at the projection x.
    :param need_face: whether the returned mask must be exact (else only the basis is).
    """
    B, m = u.shape
    k = An.shape[-2] - 1
    T, face, extra = strong_rows(slots, lam, res, tol)
    face, flagged = degenerate(T, face, extra, need_face)
    if not bool(flagged.any()):
        return T, face
    fi = flagged.nonzero(as_tuple=True)[0]
    Af = An if An.shape[0] == 1 else An[fi]
    Tf, active = T[fi], extra[fi] | face[fi]
    Z = _off_span(Af, Tf)[:, :k]  # each row's part orthogonal to span(A_T)
    outside = Z.square().sum(-1) > DEPENDENT_TOL**2
    face_f = active & ~outside  # T and every active row in its span
    cand = active & outside
    Rf = Tf
    if bool(cand.any()):
        found = _positive_rows(u[fi], x[fi], Af, Z, active, cand, tol[fi])
        face_f |= found
        # A basis of A_{I₊}: T, then the rows found outside its span, in index order.
        Rf = Tf.clone()
        pos = torch.arange(m, device=u.device)
        for row in found.any(0).nonzero().flatten().tolist():
            want = found[:, row] & (Rf == k).any(1)
            if not bool(want.any()):
                continue
            want &= _row_outside(Af, Rf, row, k)
            first = (Rf == k).to(torch.int8).argmax(1)
            Rf = torch.where(want[:, None] & (pos == first[:, None]), row, Rf)
    R = T.clone()
    R[fi] = Rf
    face[fi] = face_f
    return R, face


def _positive_rows(u: Tensor, x: Tensor, An: Tensor, Z: Tensor, active: Tensor, cand: Tensor,
                   tol: Tensor) -> Tensor:
    """Which candidate rows (active, outside span A_T) carry a positive multiplier: [n, k]."""
    n, m = u.shape
    k = An.shape[-2] - 1
    found = torch.zeros_like(cand)
    # Quick certificate that no candidate does: d = the part of −Σ_cand a_j orthogonal to A_T
    # lies in C (g ∈ span A_T) if every candidate has a_jᵀd < 0. It settles the common cases
    # (a feasible point on the boundary, ũ on the edge of a vertex cone).
    Ac = An[:, :k].expand(n, -1, -1)
    d = -(cand.to(u.dtype)[..., None] * Z).sum(1)  # = −Σ_cand a_j minus its part in span(A_T)
    slope = (Ac * d[:, None, :]).sum(-1)
    settled = torch.where(cand, slope, -torch.inf).amax(1) < -IN_FACE_TOL * d.norm(dim=1)
    cand = cand & ~settled[:, None]
    if not bool(cand.any()):
        return found
    # The exact test: j ∈ I₊ iff the projection of −a_j onto C is 0, one small projection each.
    e, j = cand.nonzero(as_tuple=True)
    ne = e.numel()
    g = u[e] - x[e]
    gnorm = g.norm(dim=1, keepdim=True)
    live = gnorm[:, 0] > tol[e]
    gn = torch.where(live[:, None], g / gnorm.clamp_min(1e-300), 0.0)
    Ae = An[0].expand(ne, -1, -1) if An.shape[0] == 1 else An[e]
    inf = torch.tensor(torch.inf, dtype=u.dtype, device=u.device)
    # C = {d : a_iᵀd <= 0 (i active), −gᵀd <= 0}; inactive rows and a zero g are switched off
    A_sub = torch.cat([Ae[:, :k], -gn[:, None], Ae[:, k:]], 1)  # padding row stays last
    zero = torch.zeros(ne, 1, dtype=u.dtype, device=u.device)
    b_sub = torch.cat([torch.where(active[e], 0.0, inf), torch.where(live, 0.0, inf)[:, None],
                       zero], 1)
    w = -Ae[torch.arange(ne, device=u.device), j]
    sub = dual_active_set(w, A_sub, b_sub, torch.full((ne,), 1e-13, dtype=u.dtype), refresh=1)
    y, _ = polish(w, A_sub, torch.where(torch.isinf(b_sub), 0.0, b_sub), sub.slots)
    in_face = (sub.status == SOLVED) & (y.abs().amax(1) <= IN_FACE_TOL)
    found[e[in_face], j[in_face]] = True
    return found


def _row_outside(An: Tensor, slots: Tensor, row: int, k: int) -> Tensor:
    """Whether row ``row`` of An lies outside span(A_slots), per element [n]."""
    As = take(An, slots)
    G = As @ As.mT + torch.diag_embed((slots == k).to(As.dtype))
    a = An[:, row].expand(slots.shape[0], -1)
    z = a - (torch.linalg.solve(G, As @ a[..., None]).squeeze(-1)[..., None] * As).sum(1)
    return z.square().sum(-1) > DEPENDENT_TOL**2

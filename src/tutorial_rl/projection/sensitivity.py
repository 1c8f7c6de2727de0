"""The projection onto the identified face and its exact KKT sensitivity, as an autograd Function.

Chapter 1 (chapters/01_projection.py), eq. (3) (the Jacobian) and the paper's appendix A.2.
With the rows R of the locally active face (a basis, :mod:`.face`), Φ(u) is the
projection onto the affine set {A_R v = b_R}:

    x = u − A_Rᵀλ,  λ = (A_R A_Rᵀ)⁻¹(A_R u − b_R),  dx/du = J = I − QQᵀ,

with Q an orthonormal basis of the rows' span. Backward, for an output gradient ḡ and
w = (A_R A_Rᵀ)⁻¹A_R ḡ (implicit differentiation of the KKT system, as in OptNet):

    ∂/∂u = J ḡ,   ∂/∂b_R = w,   ∂/∂A_R = −(w xᵀ + λ (J ḡ)ᵀ),

and zero for the rows outside R. The solves use the Cholesky factor of the Gram matrix of the
unit rows where it is well conditioned (its determinant, a product of squared sines, at least
ILL_DET), and the QR factorisation A_Rᵀ = Q R elsewhere: the Gram matrix squares the rows'
condition number, which in a wedge 1e-4 rad thin would leave errors of 1e-8 in J.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tutorial_rl.projection.dual import take

__all__ = ["face_factor", "project_on_face"]


def face_factor(A: Tensor, rows: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """QR of A_Rᵀ with the used slots first: (order [B, m], Q [B, m, m] with unused columns zeroed,
    R [B, m, m] with 1 on the diagonal of unused slots, used mask [B, m])."""
    k = A.shape[-2]
    order = torch.sort((rows >= k).to(torch.int8), dim=1, stable=True).indices
    rows = rows.gather(1, order)
    used = rows < k
    As = take(A, rows.clamp_max(max(k - 1, 0))) * used[..., None]  # [B, m, m]
    Q, R = torch.linalg.qr(As.mT)
    Q = Q * used[:, None, :]
    R = R * (used[:, :, None] & used[:, None, :]) + torch.diag_embed((~used).to(R.dtype))
    return rows, Q, R, used


class _OnFace(torch.autograd.Function):
    """Forward: the verified projection x (computed by :func:`~.core.identify`). Backward: the
    KKT sensitivity on the face basis (:func:`_face_solve`; m = 2 in closed form)."""

    @staticmethod
    def forward(ctx, u: Tensor, A: Tensor, b: Tensor, rows: Tensor, x: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(u, A, b, rows, x)
        return x.clone()

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        u, A, b, rows, x = ctx.saved_tensors
        needs = ctx.needs_input_grad
        if u.shape[1] == 2:
            return (*_planar_backward(u, A, b, rows, x, grad, needs), None, None)
        k = A.shape[-2]
        used = rows < k
        idx = rows.clamp_max(max(k - 1, 0))
        want_A, want_b = needs[1], needs[2]
        Jg, w, lam = _face_solve(u, A, b, idx, used, grad, want_A)
        gA = gb = None
        if want_A:
            gAs = -(w[..., None] * x[:, None, :] + lam[..., None] * Jg[:, None, :])
            gA = _scatter_rows(gAs * used[..., None], idx, A.shape[0], k)
        if want_b:
            gb = _scatter_rows(w[..., None], idx, b.shape[0], k)[..., 0]
        return Jg, gA, gb, None, None


ILL_DET = 1e-6  # det of the unit-row Gram matrix (a product of squared sines) below this: QR


def _face_solve(u: Tensor, A: Tensor, b: Tensor, idx: Tensor, used: Tensor, grad: Tensor,
                want_lam: bool) -> tuple[Tensor, Tensor, Tensor | None]:
    """J ḡ, w = (A_R A_Rᵀ)⁻¹A_R ḡ and (if wanted) λ = (A_R A_Rᵀ)⁻¹(A_R u − b_R) on the face.

    Through the Cholesky factor of the unit-row Gram matrix, one batched factorisation and one
    two-column solve (a QR per element costs five times more at m = 12); where the rows are
    nearly dependent (Gram determinant below ILL_DET, e.g. a thin wedge) its rounding grows as
    1/det, and those elements use the QR form instead (:func:`face_factor`), as
    :func:`~tutorial_rl.projection.projection_jacobian` does.
    """
    As = take(A, idx) * used[..., None]  # [B, m, m], unused slots zero
    inv = torch.where(used, As.norm(dim=-1).reciprocal(), 0.0)  # face rows are never zero
    U = As * inv[..., None]
    G = torch.baddbmm(torch.diag_embed((~used).to(U.dtype)), U, U.mT)
    L, info = torch.linalg.cholesky_ex(G)
    rhs = (U @ grad[..., None])
    if want_lam:
        bs = take(b, idx) * inv
        rhs = torch.cat([rhs, U @ u[..., None] - bs[..., None]], -1)
    sol = torch.cholesky_solve(rhs, L)  # [B, m, 1 or 2]
    Jg = grad - (U.mT @ sol[..., :1]).squeeze(-1)
    w = sol[..., 0] * inv
    lam = sol[..., 1] * inv if want_lam else None
    ill = (info != 0) | (L.diagonal(dim1=-2, dim2=-1).prod(-1).square() < ILL_DET)
    if bool(ill.any()):
        i = ill.nonzero(as_tuple=True)[0]
        Ai, bi = (A if A.shape[0] == 1 else A[i]), (b if b.shape[0] == 1 else b[i])
        Jg, w = Jg.clone(), w.clone()
        Jg[i], w[i], lam_i = _face_qr(u[i], Ai, bi, idx[i], used[i], grad[i], want_lam)
        if lam is not None:
            lam = lam.clone()
            lam[i] = lam_i
    return Jg, w, lam


def _face_qr(u: Tensor, A: Tensor, b: Tensor, idx: Tensor, used: Tensor, grad: Tensor,
             want_lam: bool) -> tuple[Tensor, Tensor, Tensor | None]:
    """:func:`_face_solve` from the QR factorisation A_Rᵀ = QR (in the slots' own order)."""
    k = A.shape[-2]
    sorted_rows, Q, R, used_s = face_factor(A, torch.where(used, idx, k))
    # face_factor's order (used slots first, stable), inverted to return values per slot
    back = torch.sort((~used).to(torch.int8), dim=1, stable=True).indices.argsort(1)
    qg = Q.mT @ grad[..., None]
    Jg = grad - (Q @ qg).squeeze(-1)
    w_s = torch.linalg.solve_triangular(R, qg, upper=True).squeeze(-1) * used_s
    w = w_s.gather(1, back)
    if not want_lam:
        return Jg, w, None
    bs = take(b, sorted_rows.clamp_max(k - 1)) * used_s
    y = torch.linalg.solve_triangular(R.mT, bs[..., None], upper=False)  # R⁻ᵀ b_R
    lam_s = torch.linalg.solve_triangular(R, Q.mT @ u[..., None] - y, upper=True).squeeze(-1)
    return Jg, w, (lam_s * used_s).gather(1, back)


def _planar_backward(u: Tensor, A: Tensor, b: Tensor, rows: Tensor, x: Tensor, grad: Tensor,
                     needs: tuple[bool, ...]) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """m = 2 in closed form: no face (J = I), one row a (J = I − aaᵀ/‖a‖², w = aᵀḡ/‖a‖²,
    λ = (aᵀu − b)/‖a‖²) or a vertex (J = 0, w = A_R⁻ᵀḡ, λ = A_R⁻ᵀ(u − x) by Cramer's rule)."""
    k = A.shape[-2]
    used = rows < k
    idx = rows.clamp_max(max(k - 1, 0))
    As = take(A, idx) * used[..., None]  # [B, 2, 2], unused slots zero
    two = used.all(1)
    one = used.any(1) & ~two
    a = As.sum(1)  # the used row where there is one
    aa = torch.where(one, (a * a).sum(1), 1.0)
    w1 = torch.where(one, (a * grad).sum(1) / aa, 0.0)
    Jg = torch.where(two[:, None], 0.0, grad - w1[:, None] * a)
    if not (needs[1] or needs[2]):
        return Jg, None, None
    a1, a2 = As[:, 0], As[:, 1]
    det = torch.where(two, a1[:, 0] * a2[:, 1] - a1[:, 1] * a2[:, 0], 1.0)

    def inv_t(v: Tensor) -> Tensor:  # A_R⁻ᵀ v for the vertices
        return torch.stack([v[:, 0] * a2[:, 1] - v[:, 1] * a2[:, 0],
                            a1[:, 0] * v[:, 1] - a1[:, 1] * v[:, 0]], 1) / det[:, None]

    bs = take(b, idx) * used
    lam1 = torch.where(one, ((a * u).sum(1) - bs.sum(1)) / aa, 0.0)
    w = torch.where(two[:, None], inv_t(grad), w1[:, None] * used)
    lam = torch.where(two[:, None], inv_t(u - x), lam1[:, None] * used)
    gA = gb = None
    if needs[1]:
        gAs = -(w[..., None] * x[:, None, :] + lam[..., None] * Jg[:, None, :])
        gA = _scatter_rows(gAs * used[..., None], idx, A.shape[0], k)
    if needs[2]:
        gb = _scatter_rows(w[..., None], idx, b.shape[0], k)[..., 0]
    return Jg, gA, gb


def _scatter_rows(vals: Tensor, idx: Tensor, batch: int, k: int) -> Tensor:
    """Sum per-slot values [B, m, d] into rows [batch, k, d] (batch 1: shared by all elements)."""
    B, m, d = vals.shape
    if batch == 1:
        out = vals.new_zeros(k, d)
        return out.index_add_(0, idx.flatten(), vals.reshape(B * m, d))[None]
    out = vals.new_zeros(B * k, d)
    flat = (idx + k * torch.arange(B, device=idx.device)[:, None]).flatten()
    return out.index_add_(0, flat, vals.reshape(B * m, d)).view(B, k, d)


def project_on_face(u: Tensor, A: Tensor, b: Tensor, rows: Tensor, x: Tensor) -> Tensor:
    """Φ(u) = x, the verified projection onto {A_R v = b_R}, differentiable in u, A and b.

    :param rows: [B, m] the face basis (slots; k marks an unused slot); ``x`` [B, m] (float64).
    """
    return _OnFace.apply(u, A, b, rows, x)

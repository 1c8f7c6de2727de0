"""Batched dual active-set method (Goldfarb & Idnani, 1983) for Φ(u) = argmin ‖v − u‖², A v <= b.

Chapter 1 (chapters/01_projection.py), "A fast exact projection for any action dimension".
This finds the ACTIVE SET only; :mod:`tutorial_rl.projection.core` polishes and
verifies it, and :mod:`tutorial_rl.projection.face` applies the rule for degenerate points.

The method starts at the unconstrained minimiser v = u (multipliers λ = 0, dual feasible) and
adds violated rows one at a time, keeping the KKT conditions of the rows added so far:

1. pick the most violated row p (rows are unit norm, so violations are distances); none left
   above the tolerance: v is the projection;
2. move along z = (I − A_Sᵀ(A_S A_Sᵀ)⁻¹A_S) a_p, the part of a_p outside the span of the active
   normals, while the multiplier of p grows by t and those of S change by −t r,
   r = (A_S A_Sᵀ)⁻¹A_S a_p;
3. the full step t2 = (a_pᵀv − b_p)/‖z‖² makes p active (add it to S); if a multiplier of S hits
   zero first (t1 = min λ_j / r_j over r_j > 0), drop that row and go back to 2 with the same p;
   if a_p lies in the span of S (z = 0) and no multiplier can fall (no r_j > 0), no point satisfies
   both S and p: the polytope is empty.

The dual objective rises at every full step, so no active set repeats and the method ends after
finitely many steps; in practice after about |S*| additions and a few drops, each costing one
m × m solve per batch element. All elements step in lockstep as batched tensor operations, and
finished ones leave the working batch, so a long tail of hard elements costs little.

Active sets are stored as m SLOTS per element (row index k marks an empty slot and points at a
zero padding row), so every solve is m × m whatever k is.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["ADD_RTOL", "DEPENDENT_TOL", "DualResult", "dual_active_set", "residuals", "take"]

ADD_RTOL = 1e-12  # rows are added while violated by more than this × scale (a distance)
DEPENDENT_TOL = 1e-7  # ‖z‖ (the sine of a_p's angle to span A_S) below this: a_p is dependent

INVERSE_FROM_M = 8
SOLVED, EMPTY, UNFINISHED = 0, 1, 2


class DualResult(NamedTuple):
    """The basis found per batch element (slots [B, m], k = empty), its multipliers and status."""

    slots: Tensor  # [B, m] long
    lam: Tensor  # [B, m] multipliers of the unit-normalised rows (0 in empty slots)
    status: Tensor  # [B] long: SOLVED, EMPTY (certificate found) or UNFINISHED (iteration cap)


def take(X: Tensor, rows: Tensor) -> Tensor:
    """Rows ``rows`` [n, s] of X [1 or n, K, ...] per element: [n, s, ...]."""
    if X.shape[0] == 1:
        return X[0][rows]
    n, K = X.shape[:2]
    flat = (rows + K * torch.arange(n, device=rows.device)[:, None]).flatten()
    return X.reshape(n * K, *X.shape[2:]).index_select(0, flat).view(*rows.shape, *X.shape[2:])


def residuals(A: Tensor, b: Tensor, x: Tensor) -> Tensor:
    """a_iᵀx − b_i [n, K] for A [1 or n, K, m], b [1 or n, K], x [n, m]."""
    if A.shape[0] == 1:  # one polytope for the batch: a single matrix product
        return x @ A[0].T - b
    if A.shape[-1] <= 8:  # batched products win for small m, a broadcast sum for larger ones
        return (A @ x[:, :, None]).squeeze(-1) - b
    return (A * x[:, None, :]).sum(-1) - b


@torch.no_grad()
def dual_active_set(
    u: Tensor, An: Tensor, bn: Tensor, tol: Tensor, max_iter: int | None = None,
    refresh: int = 0,
) -> DualResult:
    """Run the batched dual active-set method.

    The dual direction solves (A_S A_Sᵀ) r = A_S a_p; for m > 8 the inverse M = (A_S A_Sᵀ)⁻¹ is
    kept up to date by rank-one updates instead (a Schur complement when a row enters, its inverse
    when one leaves), so an iteration costs a few batched m × m products and no factorisation.

    :param u: [B, m] points to project (float64).
    :param An: [1 or B, k + 1, m] unit rows; row k is the zero padding row.
    :param bn: [1 or B, k + 1] right-hand sides of the unit rows (row k: 0; +inf disables a row).
    :param tol: [B] add-tolerance (a distance): rows violated by less are taken as satisfied.
    :param max_iter: iteration cap (default 4 (k + m) + 20); elements still running are UNFINISHED.
    :param refresh: if > 0, recompute M and the iterate from scratch every ``refresh`` iterations
        (slower; the fallback for elements whose updated inverse lost accuracy).
    """
    B, m = u.shape
    k = An.shape[-2] - 1
    dev, dt = u.device, u.dtype
    max_iter = 4 * (k + m) + 20 if max_iter is None else max_iter
    out_slots = torch.full((B, m), k, dtype=torch.long, device=dev)
    out_lam = torch.zeros(B, m, dtype=dt, device=dev)
    status = torch.full((B,), UNFINISHED, dtype=torch.long, device=dev)
    if k == 0 or B == 0:
        status.fill_(SOLVED)
        return DualResult(out_slots, out_lam, status)
    idx = torch.arange(B, device=dev)
    u_w, Aw, bw, tw = u, An, bn, tol
    # The first step in closed form: from v = u (S empty) the most violated row p enters with
    # the full step t = its violation (a_p is a unit row, z = a_p).
    viol, p0 = residuals(Aw, bw, u)[:, :k].max(1)
    go = viol > tw
    slots = out_slots.clone()
    slots[:, 0] = torch.where(go, p0, k)
    lam = out_lam.clone()
    lam[:, 0] = torch.where(go, viol, 0.0)
    ap0 = _rows(Aw, slots[:, 0], idx)
    x = u - lam[:, :1] * ap0
    As = torch.zeros(B, m, m, dtype=dt, device=dev)  # the rows of the slots (zero if free)
    As[:, 0] = ap0
    pos = torch.arange(m, device=dev)
    inverse = m > INVERSE_FROM_M
    # (A_S A_Sᵀ)⁻¹ with identity on free slots: after the first step, the identity itself
    M = torch.eye(m, dtype=dt, device=dev).expand(B, m, m).clone() if inverse else None
    p = torch.full((B,), k, dtype=torch.long, device=dev)  # the row being added; k: none
    lp = torch.zeros(B, dtype=dt, device=dev)  # its multiplier so far
    fin = torch.zeros(B, dtype=torch.bool, device=dev)
    empty = fin
    ar = idx

    def flush(rows: Tensor) -> None:
        out_slots[idx[rows]] = slots[rows]
        out_lam[idx[rows]] = lam[rows]
        status[idx[rows]] = torch.where(empty[rows], EMPTY, SOLVED)

    for it in range(max_iter):
        if inverse and refresh and it % refresh == 0 and it:
            free = slots == k
            M = torch.linalg.inv(torch.baddbmm(torch.diag_embed(free.to(dt)), As, As.mT))
            x = u_w - (lam[..., None] * As).sum(1) - lp[:, None] * _rows(Aw, p, ar)
        res = residuals(Aw, bw, x)  # [n, k + 1]; the padding row k has residual 0
        # rows of S hold with equality; rounding must not make them candidates again
        viol, q = res.scatter(1, slots, -torch.inf)[:, :k].max(1)
        fresh = p == k
        done = fresh & (viol <= tw)  # finished elements stay done: their state no longer changes
        p = torch.where(fresh & ~done, q, p)
        ap = _rows(Aw, p, ar)  # [n, m]; zero for done elements
        viol_p = res.gather(1, p[:, None]).squeeze(1)
        free = slots == k
        c = torch.bmm(As, ap[:, :, None])  # [n, m, 1]: A_S a_p (0 in free slots)
        if inverse:  # dual direction r = M c (M is symmetric), 0 in free slots
            assert M is not None
            r = torch.bmm(M, c).masked_fill_(free[..., None], 0.0)
        else:  # identity on free slots, where c is 0: r is 0 there
            r = torch.linalg.solve(torch.baddbmm(torch.diag_embed(free.to(dt)), As, As.mT), c)
        z = torch.baddbmm(ap[:, :, None], As.mT, r, alpha=-1).squeeze(-1)  # a_p outside span
        r = r.squeeze(-1)
        zz = z.square().sum(1)
        n_free = free.any(1)
        t2 = torch.where((zz <= DEPENDENT_TOL**2) | ~n_free, torch.inf, viol_p / zz)
        t1, j = torch.where(r > 0, lam / r, torch.inf).min(1)
        t = torch.minimum(t1, t2)
        step = torch.isfinite(t)
        empty = ~(done | step)
        full = step & (t2 <= t1)
        tt = t.nan_to_num(posinf=0.0)
        x = torch.addcmul(x, tt[:, None], z, value=-1)
        lam = torch.addcmul(lam, tt[:, None], r, value=-1).clamp_min_(0)
        lp = lp + tt
        # one slot changes per stepping element: a full step fills the first free slot with p,
        # a partial one empties slot j
        first_free = free.to(torch.int8).argmax(1)
        hit = (pos == torch.where(full, first_free, j)[:, None]) & step[:, None]
        if inverse:
            # Both inverse updates as one rank-4 product (each element gets at most one):
            # drop j: M − m_j m_jᵀ/M_jj + e_j e_jᵀ;  add p in free slot f: M − e_f e_fᵀ + w wᵀ/‖z‖²,
            # w = r − e_f (the Schur complement of the new row).
            ef = (hit & full[:, None]).to(dt)
            ej = hit.to(dt) - ef  # zero where the element has no such update
            onehot_j = (pos == j[:, None]).to(dt)
            mj = torch.bmm(M, onehot_j[:, :, None]).squeeze(-1)  # column j of M
            pd = ej.sum(1, keepdim=True)  # 1 where j is dropped
            w = r - ef
            left = torch.stack([-pd * mj / (mj * onehot_j).sum(1, keepdim=True), ej, -ef,
                                w * (full.to(dt) / torch.where(full, zz, 1.0))[:, None]], -1)
            M = torch.baddbmm(M, left, torch.stack([mj, ej, ef, w], -2))
        slots = torch.where(hit, p.masked_fill(~full, k)[:, None], slots)
        lam = torch.where(hit, lp.masked_fill(~full, 0.0)[:, None], lam)
        As = torch.where(hit[..., None], (ap * full[:, None])[:, None, :], As)
        p = p.masked_fill(full, k)
        lp = lp.masked_fill(full, 0.0)
        fin = done | empty
        n_fin = int(fin.sum())
        if n_fin == len(fin):
            break
        if 2 * n_fin >= len(fin) and len(fin) > 8:  # shrink the working batch
            flush(fin)
            keep = ~fin
            idx, u_w, tw, x = idx[keep], u_w[keep], tw[keep], x[keep]
            Aw = Aw if Aw.shape[0] == 1 else Aw[keep]
            bw = bw if bw.shape[0] == 1 else bw[keep]
            slots, lam, p, lp, As = slots[keep], lam[keep], p[keep], lp[keep], As[keep]
            M = M[keep] if M is not None else None
            fin, empty = fin[keep], empty[keep]
            ar = torch.arange(len(idx), device=dev)
    flush(fin)  # the rest stays UNFINISHED
    return DualResult(out_slots, out_lam, status)


def _rows(X: Tensor, rows: Tensor, ar: Tensor) -> Tensor:
    """Row ``rows[i]`` of X [1 or n, K, m] for each element i: [n, m]."""
    return X[0][rows] if X.shape[0] == 1 else X[ar, rows]


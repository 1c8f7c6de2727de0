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
finitely many steps; in practice after about |S*| additions and a few drops, each costing
O(m² + k m) per batch element (rank-one updates of the dual basis, no factorisation). All
elements step in lockstep as batched array operations (NumPy, batch-last: see
:func:`dual_active_set` for why), and finished ones leave the working batch, so a long tail of
hard elements costs little arithmetic; its cost is the fixed overhead per operation.

Active sets are stored as m SLOTS per element (row index k marks an empty slot and points at a
zero padding row), so every matrix is m × m whatever k is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

__all__ = ["ADD_RTOL", "DEPENDENT_TOL", "DualResult", "dual_active_set", "residuals", "take"]

ADD_RTOL = 1e-12  # rows are added while violated by more than this × scale (a distance)
DEPENDENT_TOL = 1e-7  # ‖z‖ (the sine of a_p's angle to span A_S) below this: a_p is dependent
# From this many rows (k + 1, the padding row included) the loop keeps its residuals batch-first:
# the argmax over rows along contiguous memory then saves more than the batch-first product costs
# (measured side by side at B = 256: m = 12, k = 54, 1.2x faster loop; m = 2, k = 15 and
# m = 4, k = 12, batch-last 1.1-1.3x faster).
ROWS_FIRST_K = 24
# From this action dimension on the loop keeps the active rows instead of the projector
# (_SpanBasis: half the arithmetic; below, _ProjectorBasis: fewer array operations). Side by side
# at B = 256, span form against projector form: m = 12, k = 13-54, 1.10-1.26x faster loop;
# m = 6, 0.97-1.02x; m = 2 and 4, 0.87-0.97x.
SPAN_FORM_M = 8

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
    if A.device.type == "cpu":  # NumPy's stacked matrix-vector product: 3-4x torch's bmm here
        At, xt = A.detach().cpu().numpy(), x.detach().cpu().numpy()  # .cpu(): a no-op here
        return torch.from_numpy(np.matmul(At, xt[:, :, None])[..., 0]) - b
    return (A @ x[:, :, None]).squeeze(-1) - b


@torch.no_grad()
def dual_active_set(
    u: Tensor, An: Tensor, bn: Tensor, tol: Tensor, max_iter: int | None = None,
    refresh: int = 0,
) -> DualResult:
    """Run the batched dual active-set method.

    The loop keeps, per element, the dual basis N = (A_S A_Sᵀ)⁻¹A_S (row i: the vector with
    n_i · a_l = δ_il on S; zero in free slots), so r = N a_p is a product, and each add or drop
    is one rank-one update (add p: n_i − r_i z/‖z‖², n_p = z/‖z‖²; drop j: n_i − (n_i ·
    n_j/‖n_j‖²) n_j): no factorisation in the loop. For z it keeps, by action dimension
    (:data:`SPAN_FORM_M`), either the projector H = I − A_Sᵀ(A_S A_Sᵀ)⁻¹A_S onto the complement
    of the active normals, z = H a_p, updated alike (add: H − z zᵀ/‖z‖²; drop: H + n_j
    n_jᵀ/‖n_j‖²), or the active rows A_S themselves, z = a_p − A_Sᵀ r, where only the slots in
    use are touched. Rounding in the updates is harmless: the caller polishes the set found
    afresh in float64 and verifies it (``refresh`` is the fallback's remedy).

    Why NumPy, batch-last. At the course's sizes (m <= 12, B <= 4096) a step is a few thousand
    flops per element; much of its cost is the fixed overhead of some 60 array operations, about
    1 µs each in NumPy and 3-5 µs in torch (side by side with the same loop in torch: 2.1-2.9x
    faster at B = 256, m = 4 to 12, the same sets found).
    Arrays are batch-last ([..., n]) so reductions over the short slot and action axes run along
    contiguous batch vectors. Inputs on another device are copied to the CPU for the loop; the
    polish, verification and gradients stay in torch on the inputs' device.

    :param u: [B, m] points to project (float64).
    :param An: [1 or B, k + 1, m] unit rows; row k is the zero padding row.
    :param bn: [1 or B, k + 1] right-hand sides of the unit rows (row k: 0; +inf disables a row).
    :param tol: [B] add-tolerance (a distance): rows violated by less are taken as satisfied.
    :param max_iter: iteration cap (default 4 (k + m) + 20); elements still running are UNFINISHED.
    :param refresh: if > 0, recompute H, N and the iterate from the active set every ``refresh``
        iterations (the fallback for elements whose updated matrices lost accuracy).
    """
    B, m = u.shape
    k = An.shape[-2] - 1
    dev = u.device
    max_iter = 4 * (k + m) + 20 if max_iter is None else max_iter
    out_slots = np.full((B, m), k, dtype=np.int64)
    out_lam = np.zeros((B, m))
    status = np.full(B, UNFINISHED, dtype=np.int64)
    if k == 0 or B == 0:
        status[:] = SOLVED
        return _result(out_slots, out_lam, status, dev)
    with np.errstate(divide="ignore", invalid="ignore"):  # inf and nan are masked where they arise
        _loop(u.detach().cpu().numpy(), An.detach().cpu().numpy(), bn.detach().cpu().numpy(),
              tol.detach().cpu().numpy(), max_iter, refresh, out_slots, out_lam, status)
    return _result(out_slots, out_lam, status, dev)


def _result(slots: np.ndarray, lam: np.ndarray, status: np.ndarray,
            dev: torch.device) -> DualResult:
    return DualResult(torch.from_numpy(slots).to(dev), torch.from_numpy(lam).to(dev),
                      torch.from_numpy(status).to(dev))


def _loop(u: np.ndarray, An: np.ndarray, bn: np.ndarray, tol: np.ndarray, max_iter: int,
          refresh: int, out_slots: np.ndarray, out_lam: np.ndarray, status: np.ndarray) -> None:
    """The iteration of :func:`dual_active_set`, writing into ``out_*`` (NumPy, batch-last;
    the residuals batch-first for many rows)."""
    B, m = u.shape
    k = An.shape[-2] - 1
    # one matrix of rows for the batch (b may still differ per element, as in a safe action set
    # whose offsets depend on the state): residuals by a matrix product
    shared = An.shape[0] == 1
    shared_b = bn.shape[0] == 1
    # Residuals [k + 1, n] batch-last, or [n, k + 1] batch-FIRST from ROWS_FIRST_K rows on,
    # where the argmax over many rows wins more from running along contiguous memory than the
    # batch-first product costs (see ROWS_FIRST_K). Both are addressed by flat indices.
    first = k + 1 >= ROWS_FIRST_K
    A0 = An[0]
    if first:
        Ar, br = An, bn  # [1 or n, k + 1, m], [1 or n, k + 1], as given
    else:
        Ar = np.ascontiguousarray(An.transpose(1, 2, 0))  # [k + 1, m, 1 or n]
        br = np.ascontiguousarray(bn.T)  # [k + 1, 1 or n]
    idx = np.arange(B)
    ar = idx
    x, tw = np.ascontiguousarray(u.T), tol
    pos = np.arange(m)[:, None]

    def rows_of(p: np.ndarray) -> np.ndarray:  # a_p [m, n] (zero for p = k)
        if shared:
            return A0[p].T
        return Ar[ar, p].T if first else Ar[p, :, ar].T

    def residual(x: np.ndarray) -> np.ndarray:  # the padding row k has residual 0
        if first:
            return (x.T @ A0.T if shared else np.matmul(Ar, x.T[:, :, None])[..., 0]) - br
        return (A0 @ x if shared else np.einsum("kmn,mn->kn", Ar, x)) - br

    def offsets(n: int) -> tuple[np.ndarray, int]:  # flat index of (row 0, element), row stride
        return ((k + 1) * np.arange(n), 1) if first else (np.arange(n), n)

    # The first step in closed form: from v = u (S empty) the most violated row p enters with
    # the full step t = its violation (a_p is a unit row, z = a_p, n_p = a_p).
    at, rs = offsets(B)
    res = residual(x)
    p0 = (res[:, :k] if first else res[:k]).argmax(1 if first else 0)
    viol = res.reshape(-1)[at + rs * p0]
    go = viol > tw
    p0 = np.where(go, p0, k)
    slots = np.full((m, B), k, dtype=np.int64)
    slots[0] = p0
    lam = np.zeros((m, B))
    lam[0] = np.where(go, viol, 0.0)
    a0 = rows_of(p0)
    x = x - lam[:1] * a0
    basis = (_SpanBasis if m >= SPAN_FORM_M else _ProjectorBasis)(a0)
    p = np.full(B, k, dtype=np.int64)  # the row being added; k: none
    lp = np.zeros(B)  # its multiplier so far
    fin = np.zeros(B, dtype=bool)
    tiny = DEPENDENT_TOL**2

    def flush(done: np.ndarray) -> None:
        at = idx[done]
        out_slots[at] = slots[:, done].T
        out_lam[at] = lam[:, done].T
        # an element that cannot step with a row p to add has an emptiness certificate
        status[at] = np.where(p[done] != k, EMPTY, SOLVED)

    for it in range(max_iter):
        if refresh and it % refresh == 0 and it:
            x = basis.rebuild(u[idx].T, slots, lam, p, lp, rows_of, k)
        res = residual(x)
        flat = res.reshape(-1)
        # rows of S hold with equality; rounding must not make them candidates again
        # (the padding row k, residual 0, can win only where no row is violated: p stays k)
        masked = res.copy()
        masked.reshape(-1)[at + rs * slots] = -np.inf
        q = masked.argmax(1 if first else 0)
        # an element without a row to add takes its most violated one, if above the tolerance
        p = np.where(p == k, np.where(masked.reshape(-1)[at + rs * q] > tw, q, k), p)
        ap = rows_of(p)  # [m, n]; zero where p = k (finished)
        viol_p = flat[at + rs * p]
        free = slots == k
        # a_p outside span A_S, and (A_S A_Sᵀ)⁻¹A_S a_p
        z, r = basis.directions(ap, free)
        zz = (z * z).sum(0)
        t2 = np.where(zz > tiny, viol_p / zz, np.inf)  # the full step (a_p outside the span)
        ratio = np.where(r > 0, lam / r, np.inf)
        j = ratio.argmin(0)
        t1 = ratio[j, ar]  # the partial step: slot j's multiplier reaches zero
        drop = t1 < t2
        t = np.minimum(t1, t2)
        step = t < np.inf  # no step with p: finished (p = k) or an emptiness certificate
        full = step & ~drop
        tt = np.where(step, t, 0.0)
        x = x - tt * z
        lam = np.maximum(lam - tt * r, 0.0)
        lp = lp + tt
        # one slot changes per stepping element: a full step fills the first free slot with p,
        # a partial one empties slot j
        seen = np.logical_or.accumulate(free, 0)  # a free slot at or above each slot
        lead = seen.copy()  # the first free slot
        lead[1:] &= ~seen[:-1]
        hit_add = lead & full
        hit = hit_add | ((pos == j) & drop)
        basis.update(j, z, zz, r, ap, full, step, hit_add, hit)
        slots = np.where(hit, np.where(full, p, k), slots)
        lam = np.where(hit, lp * full, lam)
        p = np.where(full, k, p)
        lp = np.where(full, 0.0, lp)
        fin = ~step
        n_fin = int(fin.sum())
        if n_fin == len(fin):
            break
        if 2 * n_fin >= len(fin) and len(fin) > 8:  # shrink the working batch
            flush(fin)
            keep = ~fin
            idx, tw, x = idx[keep], tw[keep], x[:, keep]
            if not shared:
                Ar = Ar[keep] if first else Ar[..., keep]
            if not shared_b:
                br = br[keep] if first else br[:, keep]
            slots, lam, p, lp = slots[:, keep], lam[:, keep], p[keep], lp[keep]
            basis.keep(keep)
            fin = fin[keep]
            ar = np.arange(len(idx))
            at, rs = offsets(len(idx))
    flush(fin)  # the rest stays UNFINISHED


def _inverse_basis(ut: np.ndarray, slots: np.ndarray, lam: np.ndarray, p: np.ndarray,
                   lp: np.ndarray, rows_of: Callable[[np.ndarray], np.ndarray], k: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The active rows A_S [slot, coordinate, n], the dual basis N [n, slot, coordinate] and the
    iterate recomputed from the active set (batch-last), by one inverse (the refresh)."""
    m = slots.shape[0]
    As = np.stack([rows_of(slots[i]) for i in range(m)], 0)  # [slot, coordinate, n]
    Ab = As.transpose(2, 0, 1)  # [n, slot, coordinate]; free slots are zero rows
    G = Ab @ Ab.transpose(0, 2, 1) + np.eye(m) * (slots.T == k)[:, :, None]
    N = np.linalg.inv(G) @ Ab  # zero rows in free slots (the inverse is the identity there)
    x = ut - (lam[:, None] * As).sum(0) - lp * rows_of(p)
    return np.ascontiguousarray(As), N, x


class _ProjectorBasis:
    """The projector H = I − A_Sᵀ(A_S A_Sᵀ)⁻¹A_S over the dual basis N (rows m..2m−1), [2m, m, n]:
    z = H a_p and r = N a_p in one product, one rank-one update of both per step. Fewest array
    operations: the form for small m (below :data:`SPAN_FORM_M`)."""

    def __init__(self, a0: np.ndarray) -> None:
        m, n = a0.shape
        self.m = m
        self.HN = np.zeros((2 * m, m, n))
        self.HN[:m] = np.eye(m)[..., None] - a0[:, None] * a0[None]
        self.HN[m] = a0
        self.work = np.empty_like(self.HN)  # the update's product (no allocation per step)

    def directions(self, ap: np.ndarray, free: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        zr = np.einsum("imn,mn->in", self.HN, ap)
        return zr[:self.m], np.where(free, 0.0, zr[self.m:])  # emptied slots keep residue

    def update(self, j: np.ndarray, z: np.ndarray, zz: np.ndarray, r: np.ndarray,
               ap: np.ndarray, full: np.ndarray, step: np.ndarray, hit_add: np.ndarray,
               hit: np.ndarray) -> None:
        """HN −= [v; y] vᵀ / σ: add p (v = z, σ = ‖z‖²) or drop slot j (v = n_j, σ = −‖n_j‖²);
        σ = inf where no step."""
        m = self.m
        nj = self.HN[m + j, :, np.arange(len(j))].T  # row j of N
        v = np.where(full, z, nj)
        sigma = np.where(full, zz, np.where(step, -(nj * nj).sum(0), np.inf))
        y = (r - hit_add) * full - np.einsum("imn,mn->in", self.HN[m:], v)
        np.multiply((np.concatenate([v, y]) / sigma)[:, None], v[None], out=self.work)
        self.HN -= self.work

    def keep(self, keep: np.ndarray) -> None:
        self.HN = self.HN[..., keep]
        self.work = np.empty_like(self.HN)

    def rebuild(self, ut: np.ndarray, slots: np.ndarray, lam: np.ndarray, p: np.ndarray,
                lp: np.ndarray, rows_of: Callable[[np.ndarray], np.ndarray], k: int
                ) -> np.ndarray:
        As, N, x = _inverse_basis(ut, slots, lam, p, lp, rows_of, k)
        H = np.eye(self.m) - As.transpose(2, 1, 0) @ N  # [n, m, m]
        self.HN = np.ascontiguousarray(np.concatenate([H, N], 1).transpose(1, 2, 0))
        return x


class _SpanBasis:
    """The dual basis N [m, m, n] and the active rows A_S [m, m, n]: r = N a_p and
    z = a_p − A_Sᵀ r, one rank-one update of N per step and one row of A_S written. Half the
    arithmetic of :class:`_ProjectorBasis` (no m × m projector, and only the slots in use), at
    a few more array operations: the form from :data:`SPAN_FORM_M` on."""

    def __init__(self, a0: np.ndarray) -> None:
        m, n = a0.shape
        self.m, self.s = m, min(m, 2)  # slots that can be in use at the next step
        self.N = np.zeros((m, m, n))
        self.N[0] = a0
        self.AS = np.zeros((m, m, n))
        self.AS[0] = a0
        self.r = np.zeros((m, n))  # r, zero in the slots not yet in use
        self.work = np.empty_like(self.N)

    def directions(self, ap: np.ndarray, free: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = self.s
        self.r[:s] = np.where(free[:s], 0.0, np.einsum("imn,mn->in", self.N[:s], ap))
        return ap - np.einsum("imn,in->mn", self.AS[:s], self.r[:s]), self.r

    def update(self, j: np.ndarray, z: np.ndarray, zz: np.ndarray, r: np.ndarray,
               ap: np.ndarray, full: np.ndarray, step: np.ndarray, hit_add: np.ndarray,
               hit: np.ndarray) -> None:
        """N −= y vᵀ / σ as in :class:`_ProjectorBasis`; A_S: p's row into its slot, or slot
        j's row out. Slots fill from the first free one, one per step, so only the first s
        can be in use: the products skip the others."""
        s = self.s
        # an add needs no product: N z = 0 (z is orthogonal to the active rows, N's rows lie in
        # their span), so y = r − e_slot; a drop needs N n_j, computed for the dropping elements
        y = (r[:s] - hit_add[:s]) * full
        sigma = np.where(full, zz, np.inf)
        v = z
        d = np.flatnonzero(step & ~full)
        if d.size:
            nj = self.N[j[d], :, d].T  # [m, dropping elements]
            v = z.copy()
            v[:, d] = nj
            sigma[d] = -(nj * nj).sum(0)
            y[:, d] = -np.einsum("imn,mn->in", self.N[:s, :, d], nj)
        np.multiply((y / sigma)[:, None], v[None], out=self.work[:s])
        self.N[:s] -= self.work[:s]
        slot, el = np.nonzero(hit)
        self.AS[slot, :, el] = np.where(full[el, None], ap[:, el].T, 0.0)
        self.s = min(self.m, s + 1)

    def keep(self, keep: np.ndarray) -> None:
        self.N, self.AS, self.r = self.N[..., keep], self.AS[..., keep], self.r[:, keep]
        self.work = np.empty_like(self.N)

    def rebuild(self, ut: np.ndarray, slots: np.ndarray, lam: np.ndarray, p: np.ndarray,
                lp: np.ndarray, rows_of: Callable[[np.ndarray], np.ndarray], k: int
                ) -> np.ndarray:
        self.AS, N, x = _inverse_basis(ut, slots, lam, p, lp, rows_of, k)
        self.N = np.ascontiguousarray(N.transpose(1, 2, 0))
        return x

"""The exact projection for 2-D actions: the nearest point of the polygon's edges, O(k²) each.

Chapter 1 (chapters/01_projection.py), "A fast exact projection for any action dimension"; the
course's 2-D task (the seeker) projects here at every SP-RL update (for k > 2 and k B above
:data:`~tutorial_rl.projection.core.PLANAR_WORK` the compiled dual method is faster and is used
instead).

For u outside P = {v : A v <= b} ⊂ R², Φ(u) lies on the boundary of P, the union of its edges
E_i = P ∩ {a_iᵀv = b_i}. With unit rows, r_i = a_iᵀu − b_i, x_i = u − r_i a_i (the foot of u on
line i) and t_i = (−a_i2, a_i1) the line's direction, the edge is the interval

    E_i = {x_i + s t_i : s_lo <= s <= s_hi},   row l:  s (a_lᵀt_i) <= −(r_l − r_i a_lᵀa_i),

(a segment, ray, line or point; empty where a row parallel to i excludes the whole line or the
bounds cross). Its point nearest to u is at s* = clamp(0, s_lo, s_hi), at squared distance
r_i² + s*², and Φ(u) is the nearest of these over i. Its active set is row i alone where s* = 0
(u faces the edge), else row i and the row l that set the bound (a vertex). Every row of every
element at once: arrays [k, k, B] and no iteration, instead of the enumeration's O(k³)
candidate residuals.

The point found is then polished in float64 on its active set (a 2 × 2 solve of the two lines,
from the rows themselves rather than their Gram matrix, so a thin wedge loses only one factor of
its condition number) and verified like every other path of the package (feasibility, multiplier
signs, complementarity; :mod:`~tutorial_rl.projection.core`). Elements that fail, or whose
edges all came out empty (an empty polygon, or a sliver below the tolerance), go to the package's
fallbacks, which confirm an empty polygon by an LP before raising ``InfeasibleSetError``.

Tolerances as the enumeration's (:mod:`~tutorial_rl.projection.enumeration`): u is moved if a row
is violated by more than 1e-12 · s (s = 1 + ‖u‖∞ + max_i |b_i| / ‖a_i‖), rows within ~1e-6 rad
of parallel bound no edge point (the verification catches what that misses).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from tutorial_rl.projection.dual import ADD_RTOL
from tutorial_rl.projection.enumeration import Selected

__all__ = ["select"]

_FEAS_RTOL = 1e-9  # verification tolerance, in distance units (as the enumeration's)
_PARALLEL = 1e-6  # |sin| of the angle between two unit rows below which they are parallel


def select(u: Tensor, A: Tensor, b: Tensor, scale: Tensor | None = None) -> Selected:
    """The active set of the projection of u [B, 2] onto {A v <= b} and its KKT data (inputs
    without autograd: :func:`~tutorial_rl.projection.core.identify` runs it under no_grad).

    Computed in NumPy, batch-last ([k, k, B]): some 50 small array operations whose fixed cost,
    not their arithmetic, is the price at the course's sizes (about 1 µs each, 3-5 µs in torch);
    inputs on another device are copied to the CPU and the results back.

    :param A: [1 or B, k, 2] (k >= 1), ``b`` [1 or B, k], float64, zero rows allowed (0 <= b).
    :returns: rows [B, 2] (k marks an empty slot), multipliers of the unit rows, residuals of the
        unit rows at x [B, k] (−inf for zero rows), the tolerance 1e-9 · s [B] and x [B, 2],
        verified to that tolerance; NaN multipliers where verification failed (or no edge was
        found: an empty polygon), for the caller's fallbacks.
    :param scale: [B] the tolerances' scale s, if the caller knows a better one than
        1 + ‖u‖∞ + max_i |b_i|/‖a_i‖ (:func:`~tutorial_rl.projection.core.identify`).
    """
    # inf and nan are masked where they arise (overflow: far rows, whose tolerances identify redoes)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        out = _select(*(t.detach().cpu().numpy() for t in (u, A, b)),
                      None if scale is None else scale.detach().cpu().numpy())
    return Selected(*(torch.from_numpy(a).to(u.device) for a in out))


def _select(u: np.ndarray, A: np.ndarray, b: np.ndarray, given: np.ndarray | None = None
            ) -> tuple[np.ndarray, ...]:
    B = u.shape[0]
    Ba, k = A.shape[:2]
    # Batch-last and C-contiguous: NumPy's outputs follow its inputs' memory order, and the
    # reductions over the middle axis of [k, k, B] below are fast only along contiguous B.
    Ax, Ay = np.ascontiguousarray(A[..., 0].T), np.ascontiguousarray(A[..., 1].T)  # [k, Ba]
    norm = np.sqrt(Ax * Ax + Ay * Ay)
    inv = np.where(norm > 0, 1 / norm, 0.0)  # a zero row: 0 · v <= 0
    a1, a2 = Ax * inv, Ay * inv  # unit rows
    bn = np.ascontiguousarray(b.T) * inv  # [k, 1 or B]
    u1, u2 = np.ascontiguousarray(u[:, 0]), np.ascontiguousarray(u[:, 1])
    r = a1 * u1 + a2 * u2 - bn  # [k, B] signed distances to the lines
    scale = 1 + np.maximum(np.abs(u1), np.abs(u2)) + np.abs(bn).max(0) if given is None else given
    tol = _FEAS_RTOL * scale
    tadd = ADD_RTOL * scale
    inside = r.max(0) <= tadd  # u is its own projection (ADD_RTOL as the other methods)
    G = a1[:, None] * a1[None] + a2[:, None] * a2[None]  # [k, k, Ba] cosines G[i, l]
    c = a1[:, None] * a2[None] - a2[:, None] * a1[None]  # c[i, l] = a_lᵀt_i, the sines
    res1 = r[None] - r[:, None] * G  # row l at x_i (zero row: 0), [k, k, B]
    q = res1 / -c  # the bound on s from row l (±inf, nan where parallel: masked next)
    hi, lo = c > _PARALLEL, c < -_PARALLEL
    q_hi, q_lo = np.where(hi, q, np.inf), np.where(lo, q, -np.inf)
    l_hi, l_lo = q_hi.argmin(1), q_lo.argmax(1)  # [k, B]
    s_hi, s_lo = q_hi.min(1), q_lo.max(1)
    # a parallel row that cuts the whole line off; a zero row i is cut off by any violated row
    blocked = ((res1 > tadd) & ~(hi | lo)).any(1) | (s_lo > s_hi)
    s = np.minimum(np.maximum(s_lo, 0.0), s_hi)  # the nearest point of the edge: clamp(0, lo, hi)
    # the second row of a vertex: the one whose bound moved s* off 0 (k: none)
    other = np.where(s_hi < 0, l_hi, np.where(s_lo > 0, l_lo, k))
    # the multipliers of each candidate: at a vertex u − x = λ_i a_i + λ_l a_l, dotted with t_i
    # −s* = λ_l c_il, dotted with a_i r_i = λ_i + λ_l a_iᵀa_l; a single row: λ_i = r_i
    at = np.minimum(other, k - 1)
    col = np.arange(B) if Ba > 1 else 0
    a1l, a2l = a1[at, col], a2[at, col]
    c_il = a1 * a2l - a2 * a1l
    g_il = a1 * a1l + a2 * a2l
    lam_l = np.where(other < k, -s / c_il, 0.0)
    lam_i = r - lam_l * g_il
    # Ties (a flat polygon: two opposite rows through the same edge, or three rows through a
    # vertex) give one point from several candidates: take one whose multipliers are >= 0.
    wrong = np.minimum(lam_i, lam_l) < -tol
    dist = np.where(blocked | wrong, np.inf, r * r + s * s)
    i = dist.argmin(0)
    ar = np.arange(B)
    best, r_i, s_i = dist[i, ar], r[i, ar], s[i, ar]
    lam = np.stack([lam_i[i, ar], lam_l[i, ar]], 1)
    lam[inside] = 0.0
    ai1, ai2 = a1[i, col], a2[i, col]
    # x = x_i + s* t_i, t_i = (−a_i2, a_i1)
    x = np.stack([u1 - r_i * ai1 - s_i * ai2, u2 - r_i * ai2 + s_i * ai1], 1)
    x[inside] = u[inside]
    rows = np.stack([i, other[i, ar]], 1)
    rows[inside] = k
    # Verify: feasibility and complementarity (the rows of the set on their lines) of x itself;
    # the multiplier signs were required of every candidate above. No candidate (best = inf):
    # an empty polygon, or one for the fallbacks to judge.
    res = a1 * x[:, 0] + a2 * x[:, 1] - bn  # [k, B]
    res = np.where(inv == 0, -np.inf, res)  # a zero row is never active
    on = np.abs(np.concatenate([res, np.zeros((1, B))])[rows.T, ar]).max(0)  # slot k: 0
    ok = ((np.maximum(res.max(0), on) <= tol) & np.isfinite(best)) | inside
    # NaN multipliers mark the rest for the caller's fallbacks (the dual method with more
    # iterations, the enumeration, Clarabel; emptiness confirmed by an LP before it is raised)
    lam[~ok] = np.nan
    return rows, lam, np.ascontiguousarray(res.T), tol, x

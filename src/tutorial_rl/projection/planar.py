"""The exact projection for 2-D actions: the nearest point of the polygon's edges, O(k²) each.

Chapter 1 (chapters/01_projection.py), "A fast exact projection for any action dimension"; the
course's 2-D task (the seeker) projects here at every SP-RL update.

For u outside P = {v : A v <= b} ⊂ R², Φ(u) lies on the boundary of P, the union of its edges
E_i = P ∩ {a_iᵀv = b_i}. With unit rows, r_i = a_iᵀu − b_i, x_i = u − r_i a_i (the foot of u on
line i) and t_i = (−a_i2, a_i1) the line's direction, the edge is the interval

    E_i = {x_i + s t_i : s_lo <= s <= s_hi},   row l:  s (a_lᵀt_i) <= −(r_l − r_i a_lᵀa_i),

(a segment, ray, line or point; empty where a row parallel to i excludes the whole line or the
bounds cross). Its point nearest to u is at s* = clamp(0, s_lo, s_hi), at squared distance
r_i² + s*², and Φ(u) is the nearest of these over i. Its active set is row i alone where s* = 0
(u faces the edge), else row i and the row l that set the bound (a vertex). Every row of every
element at once: tensors [B, k, k] and no iteration, instead of the enumeration's O(k³)
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

import torch
from torch import Tensor

from tutorial_rl.projection.dual import ADD_RTOL
from tutorial_rl.projection.enumeration import Selected

__all__ = ["select"]

_FEAS_RTOL = 1e-9  # verification tolerance, in distance units (as the enumeration's)
_PARALLEL = 1e-6  # |sin| of the angle between two unit rows below which they are parallel
_TURN = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=torch.float64)  # a @ _TURN = (a2, −a1)


def select(u: Tensor, A: Tensor, b: Tensor) -> Selected:
    """The active set of the projection of u [B, 2] onto {A v <= b} and its KKT data (inputs
    without autograd: :func:`~tutorial_rl.projection.core.identify` runs it under no_grad).

    :param A: [1 or B, k, 2] (k >= 1), ``b`` [1 or B, k], float64, zero rows allowed (0 <= b).
    :returns: rows [B, 2] (k marks an empty slot), multipliers of the unit rows, residuals of the
        unit rows at x [B, k] (−inf for zero rows), the tolerance 1e-9 · s [B] and x [B, 2],
        verified to that tolerance; NaN multipliers where verification failed (or no edge was
        found: an empty polygon), for the caller's fallbacks.
    """
    B = u.shape[0]
    Ba, k = A.shape[:2]
    inv = A.norm(dim=-1).reciprocal_().nan_to_num_(posinf=0.0)  # a zero row: 0 · v <= 0
    An = A * inv[..., None]
    bn = b * inv
    r = (An @ u[:, :, None]).squeeze(-1) - bn if Ba > 1 else u @ An[0].T - bn  # [B, k]
    scale = (u.abs().amax(1) + bn.abs().amax(1)).add_(1)
    tol = _FEAS_RTOL * scale
    tadd = ADD_RTOL * scale
    inside = r.amax(1) <= tadd  # u is its own projection (ADD_RTOL as the other methods)
    turn = _TURN.to(An)
    G = An @ An.mT  # [Ba, k, k] cosines
    c = An @ (An @ turn).mT  # c[i, l] = a_iᵀ(a_l2, −a_l1) = a_lᵀt_i, the sines
    res1 = torch.addcmul(r[:, None, :], r[:, :, None], G, value=-1)  # row l at x_i (zero row: 0)
    q = res1 / c.neg()  # the bound on s from row l (±inf, nan where parallel: masked next)
    hi, lo = c > _PARALLEL, c < -_PARALLEL
    s_hi, l_hi = torch.where(hi, q, torch.inf).min(-1)  # [B, k]
    s_lo, l_lo = torch.where(lo, q, -torch.inf).max(-1)
    # a parallel row that cuts the whole line off; a zero row i is cut off by any violated row
    blocked = (res1 > tadd[:, None, None]).logical_and_(~(hi | lo)).any(-1).logical_or_(s_lo > s_hi)
    s = s_lo.clamp_min(0).minimum(s_hi)  # the nearest point of the edge: s* = clamp(0, lo, hi)
    # the second row of a vertex: the one whose bound moved s* off 0 (k: none)
    other = torch.where(s_hi < 0, l_hi, torch.where(s_lo > 0, l_lo, k))
    # the multipliers of each candidate: at a vertex u − x = λ_i a_i + λ_l a_l, dotted with t_i
    # −s* = λ_l c_il, dotted with a_i r_i = λ_i + λ_l a_iᵀa_l; a single row: λ_i = r_i
    at = other.clamp_max(k - 1)[..., None]
    c_il = c.expand(B, k, k).gather(2, at).squeeze(-1)
    g_il = G.expand(B, k, k).gather(2, at).squeeze(-1)
    lam_l = torch.where(other < k, -s / c_il, 0.0)
    lam_i = torch.addcmul(r, lam_l, g_il, value=-1)
    # Ties (a flat polygon: two opposite rows through the same edge, or three rows through a
    # vertex) give one point from several candidates: take one whose multipliers are >= 0.
    wrong = torch.minimum(lam_i, lam_l) < -tol[:, None]
    best, i = torch.addcmul(r.square(), s, s).masked_fill_(blocked | wrong, torch.inf).min(1)
    # the chosen candidate's data, in one gather
    pick = i[:, None, None].expand(B, 1, 4)
    r_i, s_i, l_i, l_l = torch.stack([r, s, lam_i, lam_l], -1).gather(1, pick)[:, 0].unbind(1)
    other = other.gather(1, i[:, None])[:, 0]
    lam = torch.stack([l_i, l_l], 1).masked_fill_(inside[:, None], 0.0)
    a_i = An[0, i] if Ba == 1 else An[torch.arange(B, device=u.device), i]
    # x = x_i + s* t_i
    x = torch.where(inside[:, None], u, u - r_i[:, None] * a_i - s_i[:, None] * (a_i @ turn))
    rows = torch.stack([i, other], 1).masked_fill_(inside[:, None], k)
    # Verify: feasibility and complementarity (the rows of the set on their lines) of x itself;
    # the multiplier signs were required of every candidate above. No candidate (best = inf):
    # an empty polygon, or one for the fallbacks to judge.
    res = (An @ x[:, :, None]).squeeze(-1) - bn if Ba > 1 else x @ An[0].T - bn
    res = res.masked_fill_(inv == 0, -torch.inf)  # a zero row is never active
    on = torch.nn.functional.pad(res, (0, 1)).gather(1, rows).abs().amax(1)  # slot k: 0
    ok = ((res.amax(1).maximum(on) <= tol) & torch.isfinite(best)) | inside
    # NaN multipliers mark the rest for the caller's fallbacks (the dual method with more
    # iterations, the enumeration, Clarabel; emptiness confirmed by an LP before it is raised)
    return Selected(rows, lam.masked_fill_(~ok[:, None], torch.nan), res, tol, x)

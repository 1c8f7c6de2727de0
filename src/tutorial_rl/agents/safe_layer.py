"""The SP-RL projection layer Φ(x, ũ) and the penalty terms of the mitigations.

Chapter 5 (chapters/05_sp_rl.py) adds Φ as the policy's last layer:

    u = Φ(x, ũ) = argmin_v ‖v − ũ‖²  s.t.  A(x) v <= b(x),      ∂Φ/∂ũ = I − A_Sᵀ(A_S A_Sᵀ)⁻¹A_S,

so the deterministic policy gradient ∇θμ ∂Φ/∂ũ ∇u Q(x, u) carries the projection's Jacobian: the
identity inside U_s(x), I − nnᵀ on a face and 0 at a vertex of a 2-D set (action aliasing, the
"zero-gradient problem"). The projection itself is :func:`tutorial_rl.projection.project_polytope`
(exact Jacobian); this module only decides *what* it must see, which changes nothing in the
result or its Jacobian but much in the cost (the solver's work grows with the batch and the row
count, and each call has a fixed cost of ~0.5 ms):

1. :func:`drop_redundant_rows` (once per environment step, numpy) keeps only the rows that touch
   the set: for the seeker 3-8 edges out of 4-25 rows;
2. rows of a batch whose action already satisfies A u <= b are returned unchanged (Φ(u) = u,
   Jacobian I, exactly what ``project_polytope`` returns for them; the common case, and free);
3. :func:`project_many`: several batches (TD3's target actions and μθ(x)) share one call.

Dropping the rows that cannot be active at Φ(u) (a ball test around u, from a known safe point)
was tried and removed: the projection's cost grows so slowly in the row count that the test cost
more than it saved everywhere measured (m = 2, k = 8-32, and m = 4-12, k = 12-54, B = 512 and
4096: 1.06-1.5x slower with it; the seeker's grouped batches 1.1x).

The penalty helpers implement α‖ũ − Φ(x, ũ)‖² of paper eq. (24) (SE-RL reward penalty, Chapter 4),
paper eq. (27)-(28) (SP-RL per-sample loss) and paper eq. (29) (SP-RL penalty critic reward).
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import Tensor

from tutorial_rl.projection import InfeasibleSetError, project_polytope

__all__ = [
    "drop_redundant_rows",
    "drop_redundant_rows_many",
    "penalty_reward",
    "per_sample_loss",
    "project",
    "project_many",
    "same_rows",
    "squared_distance",
    "violates",
]


def same_rows(rows: np.ndarray, A: np.ndarray) -> bool:
    """Whether A holds the same rows as ``rows`` (``np.array_equal`` with equal shapes).

    Asked for every run at every step (do a task's rows vary with the state?); comparing the raw
    bytes first answers the common case, an unchanged matrix, in a twentieth of the time.
    """
    return rows.shape == A.shape and (rows.tobytes() == A.tobytes()
                                      or bool(np.array_equal(rows, A)))


def drop_redundant_rows(A: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same polytope {u : A u <= b} with fewer rows: an exact simplification (numpy).

    The projection's work grows with the cube of the row count, and safe sets often carry rows
    that never touch the set (the seeker's braking rows: 4-20 rows, of which 3-8 are edges).
    m = 1: the tightest lower and upper bound. m = 2: from the polygon's vertices (pairwise
    intersections of the boundary lines that satisfy every row), the rows through two vertices
    (the edges), or through one vertex for a segment or a point. Sets that are empty, unbounded
    or of dimension m > 2 are returned unchanged (correct, just not smaller).
    """
    k, m = A.shape
    if k <= m + 1:
        return A, b
    # a distance-like tolerance per row (rows may be scaled arbitrarily)
    scale = 1e-9 * (1 + np.abs(b) + np.abs(A).sum(1) * (1 + np.abs(b).max()))
    if m == 1:
        a = A[:, 0]
        upper, lower = np.flatnonzero(a > 0), np.flatnonzero(a < 0)
        if len(upper) == 0 or len(lower) == 0 or np.any((a == 0) & (b < 0)):
            return A, b
        keep = [upper[np.argmin(b[upper] / a[upper])], lower[np.argmax(b[lower] / a[lower])]]
        return A[keep], b[keep]
    if m != 2:
        return A, b
    normals = A[np.abs(A).sum(1) > 0]
    angles = np.sort(np.arctan2(normals[:, 1], normals[:, 0]))
    gaps = np.diff(np.concatenate([angles, angles[:1] + 2 * np.pi]))
    if gaps.max() >= np.pi - 1e-9:  # the normals do not surround the origin: unbounded
        return A, b
    i, j = _pairs(k)
    M = np.stack([A[i], A[j]], 1)
    det = M[:, 0, 0] * M[:, 1, 1] - M[:, 0, 1] * M[:, 1, 0]
    regular = np.abs(det) > 1e-12 * (np.abs(M).sum((1, 2)) ** 2)
    if not regular.any():
        return A, b
    rhs = np.stack([b[i], b[j]], 1)[regular]
    vertices = np.linalg.solve(M[regular], rhs[..., None])[..., 0]
    residual = vertices @ A.T - b
    feasible = np.all(residual <= scale, axis=1)
    vertices, residual = vertices[feasible], residual[feasible]
    if len(vertices) == 0:  # empty
        return A, b
    vertices = vertices[_first_occurrences(np.round(vertices, 7))]  # distinct, unrounded
    touches = (np.abs(vertices @ A.T - b) <= 100 * scale).sum(0)  # distinct vertices on a row
    # A bounded polytope is the intersection of its vertex cones, so rows through no vertex are
    # redundant; a full-dimensional polygon needs only its edges (rows through two vertices).
    # Whether it is full-dimensional matters only if some row touches exactly one vertex.
    if not np.any(touches == 1):
        keep = touches >= 1
    else:
        spread = np.linalg.svd(vertices - vertices[0], compute_uv=False) if len(vertices) > 2 \
            else []
        full = len(spread) == 2 and spread[1] > 1e-9 * (1 + np.abs(vertices).max())
        keep = touches >= (2 if full else 1)
    return A[keep], b[keep]


def drop_redundant_rows_many(A: np.ndarray, b: np.ndarray, count: np.ndarray
                             ) -> list[tuple[np.ndarray, np.ndarray]]:
    """:func:`drop_redundant_rows` of K sets at once: set i is ``A[i, :count[i]]``,
    ``b[i, :count[i]]`` (rows beyond ``count[i]`` are padding and ignored).

    Returns, per set, the rows :func:`drop_redundant_rows` keeps, in the same order (its
    vertices, tolerances, tests and solves element by element, in one array operation for all K
    sets instead of some 40 per set: a grouped SP-RL run reads every run's set at every step).
    Sets it cannot decide in batch (action dimension other than 2, or a row through exactly one
    vertex, where the test for a full-dimensional polygon decides) go through
    :func:`drop_redundant_rows` itself. ``tests/test_agents.py`` checks the two agree exactly.
    """
    K, r, m = A.shape
    count = np.asarray(count)
    out: list[tuple[np.ndarray, np.ndarray] | None] = [None] * K

    def alone(i: int) -> tuple[np.ndarray, np.ndarray]:
        return drop_redundant_rows(A[i, :count[i]], b[i, :count[i]])

    if m != 2 or K == 0:
        return [alone(i) for i in range(K)]
    real = np.arange(r) < count[:, None]  # [K, r]
    todo = count > m + 1  # smaller sets are returned as they are
    absb = np.abs(b)
    bmax = np.where(real, absb, -np.inf).max(1)
    scale = 1e-9 * (1 + absb + np.abs(A).sum(2) * (1 + bmax[:, None]))
    # unbounded (the nonzero normals leave a gap of pi or more): returned as they are
    normal = real & (np.abs(A).sum(2) > 0)
    angles = np.sort(np.where(normal, np.arctan2(A[..., 1], A[..., 0]), np.inf), axis=1)
    n_normals = normal.sum(1)
    last = np.take_along_axis(angles, np.maximum(n_normals - 1, 0)[:, None], 1)[:, 0]
    with np.errstate(invalid="ignore"):  # inf - inf beyond each set's normals, masked here
        inner = np.where(np.arange(r - 1) < (n_normals - 1)[:, None], np.diff(angles, axis=1),
                         -np.inf)
    gap = np.maximum(inner.max(1, initial=-np.inf), (angles[:, 0] + 2 * np.pi) - last)
    todo &= (n_normals > 0) & ~(gap >= np.pi - 1e-9)
    # candidate vertices: every pair of real rows i < j with a regular 2 x 2 system
    i, j = _pairs(r)
    M = np.stack([A[:, i], A[:, j]], 2)  # [K, P, 2, 2]
    det = M[..., 0, 0] * M[..., 1, 1] - M[..., 0, 1] * M[..., 1, 0]
    regular = (np.abs(det) > 1e-12 * (np.abs(M).sum((2, 3)) ** 2)) & (j < count[:, None])
    regular &= todo[:, None]
    todo &= regular.any(1)
    regular &= todo[:, None]
    owner, pair = np.nonzero(regular)  # in each set's own pair order
    rhs = np.stack([b[owner, i[pair]], b[owner, j[pair]]], 1)
    vertices = np.linalg.solve(M[owner, pair], rhs[..., None])[..., 0]
    residual = np.einsum("vkm,vm->vk", A[owner], vertices) - b[owner]
    feasible = np.all(residual <= scale[owner], axis=1)
    owner, vertices, residual = owner[feasible], vertices[feasible], residual[feasible]
    todo &= np.bincount(owner, minlength=K) > 0  # no vertex: empty, returned as it is
    # distinct vertices (rounded to 7 decimals) per set, each at its first occurrence
    rounded = np.round(vertices, 7)
    order = np.lexsort((rounded[:, 1], rounded[:, 0], owner))
    ranked = np.column_stack([owner[order], rounded[order]])
    first = np.ones(len(order), dtype=bool)
    first[1:] = np.any(ranked[1:] != ranked[:-1], axis=1)
    distinct = np.sort(order[first])
    on_row = np.abs(residual[distinct]) <= 100 * scale[owner[distinct]]
    touches = np.zeros((K, r), dtype=np.int64)
    np.add.at(touches, owner[distinct], on_row.astype(np.int64))
    one = (touches == 1).any(1)  # the full-dimensionality test decides: one set at a time
    keep = touches >= 1  # padding rows touch nothing
    for s in range(K):
        c = count[s]
        if not todo[s]:
            out[s] = (A[s, :c], b[s, :c])
        elif one[s]:
            out[s] = alone(s)
        else:
            out[s] = (A[s, :c][keep[s, :c]], b[s, :c][keep[s, :c]])
    return out  # type: ignore[return-value]


@functools.cache
def _pairs(k: int) -> tuple[np.ndarray, np.ndarray]:
    """The index pairs i < j of k rows (``np.triu_indices(k, 1)``), computed once per k."""
    return np.triu_indices(k, 1)


def _first_occurrences(points: np.ndarray) -> np.ndarray:
    """Indices, ascending, of the first occurrence of each distinct row of ``points`` [n, 2].

    What ``np.sort(np.unique(points, axis=0, return_index=True)[1])`` returns (rows compared
    as numbers, so -0.0 equals 0.0), at a tenth of its cost: a stable sort keeps equal rows in
    their original order, so each run of equal rows starts at its first occurrence.
    """
    order = np.lexsort((points[:, 1], points[:, 0]))
    ranked = points[order]
    starts = np.ones(len(order), dtype=bool)
    starts[1:] = np.any(ranked[1:] != ranked[:-1], axis=1)
    return np.sort(order[starts])


def violates(u: Tensor, A: Tensor, b: Tensor) -> Tensor:
    """Which actions leave their safe set: BoolTensor [B] for u [B, m], A [B, k, m] or [k, m]
    (shared by the batch) and b [B, k]."""
    return ((A @ u.detach().to(A.dtype)[..., None]).squeeze(-1) > b).any(-1)


def project(
    u: Tensor, A: Tensor, b: Tensor, method: str = "exact", safe_point: Tensor | None = None
) -> Tensor:
    """Φ(x, u) for a batch, differentiable with respect to u (Chapter 5).

    :param u: actions [B, m] (the safe set's units), typically μθ(x) with autograd attached.
    :param A: safe-set rows [B, k, m], or [k, m] shared by the batch (float64; padding rows
        0 · v <= 1 allowed).
    :param b: safe-set offsets [B, k].
    :param method: ``"exact"`` (fast, default) or ``"cvxpylayers"`` (the paper's setup), passed to
        :func:`~tutorial_rl.projection.project_polytope`.
    :param safe_point: a point of each safe set [B, m], if known: the answer where the set
        turns out empty (see below).
    :returns: Φ(x, u) [B, m] in u's dtype; rows already safe are u itself (Jacobian I).
    :raises InfeasibleSetError: a set is empty and no ``safe_point`` was given.

    A stored set can be empty to the projection although the environment's safeguard found a
    safe action in it: a sliver whose width is below the feasibility tolerance, which scales with
    the proposal and the rows. The environment applied ``safe_point`` there (its projection, or
    its fallback), so the layer returns that point, as a constant (zero Jacobian), for exactly
    those elements.
    """
    bad = violates(u, A, b).nonzero().squeeze(-1)
    if bad.numel() == 0:
        return u
    u_bad, b_bad = u[bad], b[bad]
    A_bad = A if A.dim() == 2 else A[bad]  # shared rows stay shared: factored once
    try:
        projected = project_polytope(u_bad, A_bad, b_bad, method=method)
    except InfeasibleSetError as err:
        if safe_point is None or err.empty is None:
            raise
        projected = _project_where_feasible(u_bad, A_bad, b_bad, method, err.empty,
                                            safe_point[bad])
    # out-of-place: autograd sees identity for the safe rows and ∂Φ/∂ũ for the projected ones
    return u.index_put((bad,), projected)


def _project_where_feasible(u: Tensor, A: Tensor, b: Tensor, method: str, empty: Tensor,
                            safe_point: Tensor) -> Tensor:
    """Φ(u) where the set is non-empty, ``safe_point`` (a constant) where it is empty."""
    out = safe_point.to(u.dtype).detach().clone()
    keep = (~empty).nonzero().squeeze(-1)
    if keep.numel():
        A_keep = A if A.dim() == 2 else A[keep]
        out = out.index_put((keep,), project_polytope(u[keep], A_keep, b[keep], method=method))
    return out


def _pad_rows(A: Tensor, b: Tensor, k: int) -> tuple[Tensor, Tensor]:
    extra = k - A.shape[-2]
    if extra == 0:
        return A, b
    return (torch.cat([A, A.new_zeros(*A.shape[:-2], extra, A.shape[-1])], -2),
            torch.cat([b, b.new_ones(b.shape[0], extra)], 1))


def project_many(
    parts: list[tuple[Tensor, Tensor, Tensor, Tensor | None]], method: str = "exact"
) -> list[Tensor]:
    """:func:`project` of several batches ``(u, A, b, safe_point)`` in one call.

    TD3 in SP-RL projects target actions onto U_s(x') and μθ(x) onto U_s(x) in the same update;
    one call of the projection costs about as much as two at these sizes (its fixed cost per call
    dominates), so they are concatenated (row counts padded with 0 · v <= 1) and split again.
    Gradients flow to every ``u`` that has them.
    """
    if len(parts) == 1:
        u, A, b, point = parts[0]
        return [project(u, A, b, method, point)]
    k = max(A.shape[-2] for _, A, _, _ in parts)
    padded = [_pad_rows(A, b, k) for _, A, b, _ in parts]
    first = padded[0][0]
    if all(A.dim() == 2 and torch.equal(A, first) for A, _ in padded):
        A = first  # every part shares the same rows
    else:
        A = torch.cat([a.expand(len(c), *a.shape[-2:]) for a, c in padded])
    u = torch.cat([p[0] for p in parts])
    b = torch.cat([c for _, c in padded])
    points = [p for *_, p in parts]
    point = None if any(p is None for p in points) else torch.cat(points)  # type: ignore[misc]
    out = project(u, A, b, method, point)
    return list(out.split([p[0].shape[0] for p in parts]))


def squared_distance(unsafe: Tensor, safe: Tensor) -> Tensor:
    """‖ũ − Φ(x, ũ)‖² per row, [B]: how far the safeguard moved the action."""
    return (unsafe - safe).square().sum(-1)


def per_sample_loss(alpha: float | Tensor, mean: Tensor, projected_mean: Tensor) -> Tensor:
    """SP-RL per-sample loss α · E‖μθ(x) − Φ(x, μθ(x))‖² (paper eq. (27)-(28); Chapter 5).

    Added to the actor loss (on the mean for A2C). Its gradient 2α(μ − Φ(μ)) points from the safe
    set to μ whatever Φ's Jacobian is, so it pulls μ back even from a vertex cone, where the
    Q-term's gradient vanishes.
    """
    return alpha * squared_distance(mean, projected_mean).mean()


def penalty_reward(alpha: float, unsafe: Tensor, safe: Tensor) -> Tensor:
    """The penalty −α‖ũ − Φ(x, ũ)‖² (paper eqs. (24), (29)): SE-RL reward, SP-RL Q_pen reward."""
    return -alpha * squared_distance(unsafe, safe)

"""Zonotopes in generator representation (Chapter 2, ``chapters/02_zonotopes.py``).

A zonotope is ``Z = ⟨c, G⟩ = {c + G β : ‖β‖∞ <= 1}`` with centre ``c ∈ Rⁿ`` and generator matrix
``G ∈ R^{n×p}``. The operations the course needs are closed-form on ``(c, G)``:

* linear map ``M Z = ⟨M c, M G⟩``;
* Minkowski sum ``Z1 ⊕ Z2 = ⟨c1 + c2, [G1 G2]⟩``;
* support function ``h_Z(d) = max_{z∈Z} dᵀz = dᵀc + ‖Gᵀd‖₁``.

Halfspace (facet) representations, exact point membership and volumes are combinatorial in
``(n, p)`` but cheap for the sizes of this course; they exploit a *product structure* when the
generators split the coordinates into independent blocks (the quadrotor's RCI set is the
product of a lateral 4-D and a vertical 2-D zonotope, which keeps its facet count small).
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.optimize

__all__ = ["Zonotope", "coordinate_blocks"]

#: Above this many (n−1)-subsets per block, facet enumeration is refused (use the LP path).
MAX_FACET_SUBSETS = 2_000_000


def _as_vector(x: np.ndarray | Sequence[float], name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 0:
        a = a.reshape(1)
    if a.ndim != 1:
        raise ValueError(f"{name} must be a vector, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or inf")
    return a


def coordinate_blocks(generators: np.ndarray, tol: float = 0.0) -> list[np.ndarray]:
    """Partition the coordinates into blocks that no generator couples.

    Two coordinates are in the same block when some generator is non-zero (``|g| > tol``) in
    both. A zonotope whose generators each live in one block is the Cartesian product of its
    block projections, so facets, volumes and vertices can be computed per block.
    """
    n = generators.shape[0]
    support = np.abs(generators) > tol
    label = np.arange(n)

    def find(i: int) -> int:
        while label[i] != i:
            label[i] = label[label[i]]
            i = int(label[i])
        return i

    for col in support.T:
        rows = np.flatnonzero(col)
        for r in rows[1:]:
            a, b = find(int(rows[0])), find(int(r))
            if a != b:
                label[max(a, b)] = min(a, b)
    roots = np.array([find(i) for i in range(n)])
    return [np.flatnonzero(roots == r) for r in np.unique(roots)]


def _facets_full(G: np.ndarray) -> np.ndarray:
    """Unit facet normals (one per ± pair) of the full-dimensional zonotope ``⟨0, G⟩``.

    For ``n >= 2`` each facet is parallel to ``n − 1`` linearly independent generators; its
    normal is their generalized cross product, whose ``k``-th entry is the signed minor
    ``(−1)^k det(G_S without row k)``.
    """
    n, p = G.shape
    if n == 1:
        return np.ones((1, 1))
    if p < n or np.linalg.matrix_rank(G) < n:
        raise ValueError(
            f"zonotope is not full-dimensional (rank {np.linalg.matrix_rank(G)} < {n}); "
            "it has no facet representation with inequalities only"
        )
    n_subsets = math.comb(p, n - 1)
    if n_subsets > MAX_FACET_SUBSETS:
        raise ValueError(
            f"{n_subsets} generator subsets: too many to enumerate facets; reduce the order first"
        )
    normals = []
    combos = np.array(list(itertools.combinations(range(p), n - 1)), dtype=np.intp)
    for chunk in np.array_split(combos, max(1, len(combos) // 50_000)):
        sub = G[:, chunk].transpose(1, 0, 2)  # (k, n, n−1)
        cols = []
        for k in range(n):
            minor = np.delete(sub, k, axis=1)
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                cols.append((-1) ** k * np.linalg.det(minor))  # singular minors give 0
        normals.append(np.stack(cols, axis=1))
    N = np.nan_to_num(np.concatenate(normals, axis=0), nan=0.0)
    norms = np.linalg.norm(N, axis=1)
    scale = np.prod(np.sort(np.linalg.norm(G, axis=0))[-(n - 1):])
    # Only (numerically) exactly degenerate subsets are dropped: an imprecise normal still gives
    # a valid supporting halfspace (its offset is the support function), a dropped facet would
    # not, so erring on the side of keeping rows is safe.
    N = N[norms > 1e-13 * max(scale, 1e-300)]
    N = N / np.linalg.norm(N, axis=1, keepdims=True)
    # Canonical sign (first clearly non-zero entry positive), then drop duplicates.
    first = np.argmax(np.abs(N) > 1e-9, axis=1)
    N = N * np.sign(N[np.arange(len(N)), first])[:, None]
    _, idx = np.unique(np.round(N, 10), axis=0, return_index=True)
    return N[np.sort(idx)]


@dataclass(frozen=True, eq=False)
class Zonotope:
    """The zonotope ``⟨c, G⟩ = {c + G β : ‖β‖∞ <= 1}`` (float64, read-only arrays).

    :param center: centre ``c``, shape ``(n,)``.
    :param generators: generator matrix ``G``, shape ``(n, p)`` (``p = 0`` gives a point).
    """

    center: np.ndarray
    generators: np.ndarray

    # Let ``M @ Z`` and ``v + Z`` reach __rmatmul__/__radd__ instead of numpy broadcasting.
    __array_ufunc__ = None

    def __post_init__(self) -> None:
        c = _as_vector(self.center, "center")
        G = np.asarray(self.generators, dtype=np.float64)
        if G.ndim == 1 and c.shape[0] == 1:
            G = G.reshape(1, -1)
        if G.ndim != 2 or G.shape[0] != c.shape[0]:
            raise ValueError(
                f"generators must have shape (n, p) with n = {c.shape[0]}, got {G.shape}"
            )
        if not np.all(np.isfinite(G)):
            raise ValueError("generators contain NaN or inf")
        c, G = c.copy(), G.copy()
        c.setflags(write=False)
        G.setflags(write=False)
        object.__setattr__(self, "center", c)
        object.__setattr__(self, "generators", G)

    # ---------------------------------------------------------------- construction & shape
    @classmethod
    def from_box(cls, lower: Sequence[float] | np.ndarray,
                 upper: Sequence[float] | np.ndarray) -> Zonotope:
        """The axis-aligned box ``[lower, upper]`` as ``⟨(l+u)/2, diag((u−l)/2)⟩``."""
        lo, hi = _as_vector(lower, "lower"), _as_vector(upper, "upper")
        if lo.shape != hi.shape or np.any(hi < lo):
            raise ValueError("from_box needs lower <= upper of equal shape")
        half = (hi - lo) / 2.0
        keep = half > 0
        return cls((lo + hi) / 2.0, np.diag(half)[:, keep])

    @property
    def dim(self) -> int:
        """State dimension ``n``."""
        return int(self.center.shape[0])

    @property
    def n_generators(self) -> int:
        """Number of generators ``p``."""
        return int(self.generators.shape[1])

    @property
    def order(self) -> float:
        """Zonotope order ``p / n``."""
        return self.n_generators / self.dim

    def __repr__(self) -> str:
        return f"Zonotope(dim={self.dim}, n_generators={self.n_generators})"

    # ---------------------------------------------------------------- closed-form operations
    def linear_map(self, M: np.ndarray) -> Zonotope:
        """``M Z = ⟨M c, M G⟩`` for ``M`` of shape ``(k, n)``."""
        M = np.asarray(M, dtype=np.float64)
        if M.ndim != 2 or M.shape[1] != self.dim:
            raise ValueError(f"linear_map needs a (k, {self.dim}) matrix, got {M.shape}")
        return Zonotope(M @ self.center, M @ self.generators)

    def __rmatmul__(self, M: np.ndarray) -> Zonotope:
        return self.linear_map(M)

    def __add__(self, other: Zonotope | np.ndarray | Sequence[float]) -> Zonotope:
        """Minkowski sum with a zonotope, or translation by a vector."""
        if isinstance(other, Zonotope):
            if other.dim != self.dim:
                raise ValueError(f"dimension mismatch: {self.dim} vs {other.dim}")
            return Zonotope(self.center + other.center,
                            np.hstack([self.generators, other.generators]))
        v = _as_vector(other, "translation")
        if v.shape != (self.dim,):
            raise ValueError(f"translation must have shape ({self.dim},), got {v.shape}")
        return Zonotope(self.center + v, self.generators)

    __radd__ = __add__

    def __sub__(self, v: np.ndarray | Sequence[float]) -> Zonotope:
        """Translation by ``−v`` (Minkowski *difference* is not closed for zonotopes)."""
        if isinstance(v, Zonotope):
            raise TypeError("Z1 - Z2 is ambiguous; use Z1 + (-1.0) * Z2 for the sum with −Z2")
        return self + (-_as_vector(v, "translation"))

    def __mul__(self, scalar: float) -> Zonotope:
        """Scaling about the origin, ``a Z = ⟨a c, a G⟩``."""
        a = float(scalar)
        return Zonotope(a * self.center, a * self.generators)

    __rmul__ = __mul__

    def support(self, d: np.ndarray) -> np.ndarray | float:
        """Support function ``h_Z(d) = dᵀc + ‖Gᵀd‖₁`` for ``d`` of shape ``(n,)`` or ``(k, n)``."""
        d = np.asarray(d, dtype=np.float64)
        if d.shape[-1] != self.dim:
            raise ValueError(f"direction must end in dimension {self.dim}, got {d.shape}")
        h = d @ self.center + np.abs(d @ self.generators).sum(axis=-1)
        return float(h) if d.ndim == 1 else h

    def extreme_point(self, d: np.ndarray) -> np.ndarray:
        """A maximiser ``c + G sign(Gᵀd)`` of ``dᵀz`` (a vertex for generic ``d``); batched."""
        d = np.asarray(d, dtype=np.float64)
        return self.center + np.sign(d @ self.generators) @ self.generators.T

    def interval_hull(self) -> tuple[np.ndarray, np.ndarray]:
        """Tightest enclosing box ``(lower, upper)``: ``c ∓ Σ_j |G_{·j}|``."""
        r = np.abs(self.generators).sum(axis=1)
        return self.center - r, self.center + r

    def project(self, dims: Sequence[int]) -> Zonotope:
        """Projection onto the coordinates ``dims`` (e.g. a 2-D view of a 6-D set)."""
        idx = np.asarray(dims, dtype=np.intp)
        if idx.ndim != 1 or np.any(idx < 0) or np.any(idx >= self.dim):
            raise ValueError(f"dims must index coordinates 0..{self.dim - 1}, got {dims}")
        return Zonotope(self.center[idx], self.generators[idx])

    def compact(self, tol: float = 1e-12) -> Zonotope:
        """The same set without generators of 1-norm at most ``tol`` (dropping zeros is exact)."""
        G = self.generators[:, np.abs(self.generators).sum(axis=0) > tol]
        return Zonotope(self.center, G)

    def reduce_order(self, order: float) -> Zonotope:
        """Girard's box method: an outer approximation with at most ``order·n`` generators.

        Keeps the ``order·n − n`` generators with the largest ``‖g‖₁ − ‖g‖∞`` and replaces the
        rest by their interval hull (``n`` axis-aligned generators).
        """
        n = self.dim
        target = int(math.floor(order * n))
        if target < n:
            raise ValueError(f"order must be >= 1, got {order}")
        if self.n_generators <= target:
            return self
        G = self.generators
        score = np.abs(G).sum(axis=0) - np.abs(G).max(axis=0)
        keep = np.argsort(-score, kind="stable")[: target - n]
        rest = np.setdiff1d(np.arange(self.n_generators), keep)
        box = np.diag(np.abs(G[:, rest]).sum(axis=1))
        return Zonotope(self.center, np.hstack([G[:, keep], box]))

    order_reduction = reduce_order  # the name used in the literature (Girard 2005)

    # ---------------------------------------------------------------- sampling
    def sample(self, n: int, rng: np.random.Generator | None = None) -> np.ndarray:
        """``n`` points ``c + G β`` with ``β`` uniform in the unit box (not uniform in ``Z``)."""
        rng = np.random.default_rng() if rng is None else rng
        beta = rng.uniform(-1.0, 1.0, size=(n, self.n_generators))
        return self.center + beta @ self.generators.T

    def sample_uniform(self, n: int, rng: np.random.Generator | None = None,
                       max_batches: int = 1000) -> np.ndarray:
        """``n`` points uniform in ``Z`` by rejection from the interval hull.

        Needs a halfspace representation (:meth:`halfspaces`); efficient when the volume ratio
        to the interval hull is not tiny.
        """
        rng = np.random.default_rng() if rng is None else rng
        lo, hi = self.interval_hull()
        out: list[np.ndarray] = []
        count = 0
        for _ in range(max_batches):
            pts = rng.uniform(lo, hi, size=(max(2 * n, 1024), self.dim))
            pts = pts[self.contains_point(pts)]
            out.append(pts)
            count += len(pts)
            if count >= n:
                return np.concatenate(out)[:n]
        raise RuntimeError("rejection sampling accepted too few points (set too thin?)")

    # ---------------------------------------------------------------- combinatorial views
    @functools.cached_property
    def _halfspaces(self) -> tuple[np.ndarray, np.ndarray]:
        Z = self.compact()
        G, c, n = Z.generators, Z.center, Z.dim
        normals = []
        for block in coordinate_blocks(G):
            cols = np.flatnonzero(np.abs(G[block]).sum(axis=0) > 0)
            Nb = _facets_full(G[np.ix_(block, cols)])
            N = np.zeros((len(Nb), n))
            N[:, block] = Nb
            normals.append(N)
        N = np.concatenate(normals, axis=0)
        H = np.concatenate([N, -N], axis=0)
        h = H @ c + np.abs(H @ G).sum(axis=1)
        H.setflags(write=False)
        h.setflags(write=False)
        return H, h

    def halfspaces(self) -> tuple[np.ndarray, np.ndarray]:
        """Exact facet representation ``Z = {x : H x <= h}`` with unit-norm rows (cached).

        Facet normals are generalized cross products of ``n − 1`` generators of each coordinate
        block (so a product of blocks costs the sum, not the product, of their facet counts).
        Raises ``ValueError`` if ``Z`` is not full-dimensional or has too many generators.
        """
        return self._halfspaces

    def halfspaces_2d(self) -> tuple[np.ndarray, np.ndarray]:
        """Facets of a 2-D zonotope, in counter-clockwise order of the outward normals."""
        self._require_2d()
        V = self.vertices_2d()
        if len(V) < 3:
            raise ValueError("zonotope is not full-dimensional (a point or a segment)")
        E = np.roll(V, -1, axis=0) - V
        H = np.stack([E[:, 1], -E[:, 0]], axis=1)
        H = H / np.linalg.norm(H, axis=1, keepdims=True)
        return H, np.einsum("ij,ij->i", H, V)

    def vertices_2d(self) -> np.ndarray:
        """Vertices of a 2-D zonotope, counter-clockwise, starting at the lowest one.

        Generators are turned to point into the upper half-plane, sorted by angle and merged
        when parallel; walking ``+2g`` in angular order from ``c − Σ g`` traces the lower chain,
        walking ``−2g`` in the same order traces the upper chain.
        """
        self._require_2d()
        G = self.compact().generators
        if G.shape[1] == 0:
            return self.center[None, :].copy()
        raw = np.arctan2(G[1], G[0])
        # Direction angles mod π in [0, π); within 1e-12 of π counts as 0, so that
        # (numerically) antiparallel generators merge below. Flip generators pointing the
        # other way.
        ang = np.mod(raw, np.pi)
        ang = np.where((ang > np.pi - 1e-12) | (ang < 1e-12), 0.0, ang)
        flip = np.cos(raw - ang) < 0
        G = np.where(flip, -G, G)
        order = np.argsort(ang, kind="stable")
        G, ang = G[:, order], ang[order]
        merged = [G[:, 0]]
        for j in range(1, G.shape[1]):
            if abs(ang[j] - ang[j - 1]) < 1e-12:
                merged[-1] = merged[-1] + G[:, j]
            else:
                merged.append(G[:, j])
        Gm = np.stack(merged, axis=1)
        start = self.center - Gm.sum(axis=1)
        steps = np.concatenate([2 * Gm.T, -2 * Gm.T], axis=0)
        V = start + np.concatenate([np.zeros((1, 2)), np.cumsum(steps, axis=0)[:-1]], axis=0)
        return V

    def volume(self) -> float:
        """Exact volume ``2ⁿ Σ_{|S|=n} |det G_S|`` (per coordinate block, multiplied)."""
        Z = self.compact()
        vol = 1.0
        for block in coordinate_blocks(Z.generators):
            G = Z.generators[block]
            G = G[:, np.abs(G).sum(axis=0) > 0]
            nb, p = G.shape
            if p < nb:
                return 0.0
            if math.comb(p, nb) > MAX_FACET_SUBSETS:
                raise ValueError(f"{math.comb(p, nb)} subsets: too many for an exact volume")
            combos = np.array(list(itertools.combinations(range(p), nb)), dtype=np.intp)
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                dets = np.abs(np.linalg.det(G[:, combos].transpose(1, 0, 2)))
            dets = np.nan_to_num(dets, nan=0.0)
            vol *= (2.0**nb) * float(dets.sum())
        return vol

    def volume_2d(self) -> float:
        """Area of a 2-D zonotope (same as :meth:`volume`)."""
        self._require_2d()
        return self.volume()

    # ---------------------------------------------------------------- membership
    def contains_point(self, x: np.ndarray, tol: float = 1e-9) -> np.ndarray | bool:
        """Exact membership of ``x`` (``(n,)`` or ``(N, n)``), up to ``tol``.

        Uses the cached halfspace representation when it exists (vectorized; the fast path in
        2-D and for product-structured sets), otherwise one LP per point:
        ``min t s.t. G β = x − c, −t <= β <= t``, and ``x ∈ Z ⇔ t* <= 1``.
        """
        x = np.asarray(x, dtype=np.float64)
        if x.shape[-1] != self.dim or x.ndim not in (1, 2):
            raise ValueError(f"points must have shape ({self.dim},) or (N, {self.dim}), "
                             f"got {x.shape}")
        if not np.all(np.isfinite(x)):
            raise ValueError("points contain NaN or inf")
        try:
            H, h = self.halfspaces()
        except ValueError:
            res = np.array([self._contains_lp(p, tol) for p in np.atleast_2d(x)])
        else:
            res = np.all(np.atleast_2d(x) @ H.T <= h + tol, axis=1)
        return bool(res[0]) if x.ndim == 1 else res

    def _contains_lp(self, x: np.ndarray, tol: float) -> bool:
        G, p = self.generators, self.n_generators
        if p == 0:
            return bool(np.all(np.abs(x - self.center) <= tol))
        cost = np.zeros(p + 1)
        cost[-1] = 1.0
        eye = np.eye(p)
        A_ub = np.block([[eye, -np.ones((p, 1))], [-eye, -np.ones((p, 1))]])
        res = scipy.optimize.linprog(
            cost, A_ub=A_ub, b_ub=np.zeros(2 * p),
            A_eq=np.hstack([G, np.zeros((self.dim, 1))]), b_eq=x - self.center,
            bounds=[(None, None)] * p + [(0, None)], method="highs",
        )
        return bool(res.status == 0 and res.x[-1] <= 1.0 + tol)

    def _require_2d(self) -> None:
        if self.dim != 2:
            raise ValueError(f"this operation needs a 2-D zonotope, got dimension {self.dim}")

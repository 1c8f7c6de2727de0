"""Batched operations on small polygons ``{v ∈ R² : A v <= b}`` (Chapter 4 figures, tests).

The safe action sets of the 2-D quadrotor share their edge directions ``A`` (``k`` rows) across
states; only the offsets ``b`` change. These helpers work on a batch ``b`` of shape ``(N, k)``
by brute force over the ``k(k−1)/2`` row pairs, which is exact and fast for ``k`` around 10.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["ordered_vertices", "polygon_area", "polygon_faces", "polygon_vertices"]


def polygon_vertices(A: np.ndarray, b: np.ndarray, tol: float = 1e-9
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Candidate vertices of ``{v : A v <= b}`` for a batch of offsets.

    :param A: ``(k, 2)`` rows (shared).
    :param b: ``(N, k)`` offsets.
    :returns: ``points (N, P, 2)`` (intersections of row pairs) and ``valid (N, P)`` marking
        those that satisfy all rows up to ``tol``; the valid points are exactly the polygon's
        vertices (with repeats where more than two rows meet). A non-empty bounded polygon has
        at least one valid point, so ``~valid.any(1)`` detects emptiness.
    """
    A = np.asarray(A, dtype=np.float64)
    b = np.atleast_2d(np.asarray(b, dtype=np.float64))
    I, J, Minv = _row_pairs(A.tobytes(), A.shape)
    rhs = np.stack([b[:, I], b[:, J]], axis=-1)  # (N, P, 2)
    pts = np.einsum("pij,npj->npi", Minv, rhs)
    scale = 1.0 + np.abs(b).max(axis=1)[:, None, None]
    valid = np.all(pts @ A.T <= b[:, None, :] + tol * scale, axis=-1)
    return pts, valid


@functools.lru_cache(maxsize=64)
def _row_pairs(rows: bytes, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices (I, J) of the non-parallel row pairs and the inverses of their 2x2 systems.

    They depend on A only, which the quadrotor's sets share across states: cached, so a safe
    set's emptiness check (one per environment step) no longer inverts them every time.
    """
    A = np.frombuffer(rows, dtype=np.float64).reshape(shape)
    I, J = np.triu_indices(A.shape[0], 1)
    M = np.stack([A[I], A[J]], axis=1)  # (P, 2, 2): all row pairs
    keep = np.abs(np.linalg.det(M)) > 1e-12  # parallel pairs do not meet
    if not keep.any():
        raise ValueError("need at least two non-parallel rows")
    I, J, M = I[keep], J[keep], M[keep]
    return I, J, np.linalg.inv(M)


def ordered_vertices(A: np.ndarray, b: np.ndarray, tol: float = 1e-9) -> np.ndarray:
    """Vertices of ONE bounded polygon ``{v : A v <= b}`` (``b`` of shape ``(k,)``), without
    repeats and counter-clockwise: the form drawing and area computations need.

    :returns: ``(n, 2)``; ``(0, 2)`` where the polygon is empty.
    """
    A = np.asarray(A, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if A.ndim != 2 or A.shape[1] != 2 or b.shape != (A.shape[0],):
        raise ValueError(f"expected A [k, 2] and b [k], got A {A.shape} and b {b.shape}")
    pts, valid = polygon_vertices(A, b[None, :], tol)
    P = pts[0, valid[0]]
    if len(P) == 0:
        return np.zeros((0, 2))
    P = np.unique(np.round(P, 12), axis=0)  # a vertex where several rows meet appears repeatedly
    c = P.mean(axis=0)
    return P[np.argsort(np.arctan2(P[:, 1] - c[1], P[:, 0] - c[0]))]


def polygon_area(A: np.ndarray, b: np.ndarray, tol: float = 1e-9) -> np.ndarray:
    """Areas of ``{v : A v <= b}`` for offsets ``b (N, k)`` (0 where empty)."""
    b = np.atleast_2d(np.asarray(b, dtype=np.float64))
    out = np.zeros(b.shape[0])
    for i in range(b.shape[0]):
        P = ordered_vertices(A, b[i], tol)
        if len(P) < 3:
            continue
        x, y = P[:, 0], P[:, 1]
        out[i] = 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
    return out


def polygon_faces(A: np.ndarray, b: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(vertex, next vertex, unit outward normal)`` for each edge of one polygon
    ``{v : A v <= b}`` (``b`` of shape ``(k,)``), counter-clockwise as :func:`ordered_vertices`.

    Used by chapter 6 to walk the normal cones of a safe action set.
    """
    A, b = np.asarray(A, dtype=np.float64), np.asarray(b, dtype=np.float64)
    V = ordered_vertices(A, b)
    faces = []
    for v, w in zip(V, np.roll(V, -1, axis=0), strict=True):
        mid = (v + w) / 2
        rows = np.abs(A @ mid - b) <= 1e-9 * (1 + np.abs(b))
        n = A[rows][0] / np.linalg.norm(A[rows][0])
        faces.append((v, w, n))
    return faces

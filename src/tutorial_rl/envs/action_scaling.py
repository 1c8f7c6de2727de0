"""Normalised actions: the affine map between the agent's box [-1, 1]^m and physical units.

Chapter 3 (chapters/03_tasks.py) presents the tasks with the action spaces an RL library expects,
``Box(-1, 1, (m,), float32)`` (gymnasium's ``check_env`` warns about any other box), while the
dynamics, the rewards and the RCI safe sets are written in physical units (torques, thrusts; see
:mod:`tutorial_rl.systems`). :class:`AffineActionMap` converts between the two, component-wise::

    u = center + scale ⊙ a,    a = (u − center) ⊘ scale,
    center = (low + high) / 2, scale = (high − low) / 2,

so a ∈ [-1, 1]^m ⇔ u ∈ [low, high]. Polytopes map along: {u : A u <= b} in physical units is
{a : (A diag(scale)) a <= b − A center} in normalised units (and back), so a safe action set can be
handed to the safeguard in the coordinates the agent acts in.

Where every component has the same scale (:attr:`AffineActionMap.is_uniform`, true for the
pendulum and the quadrotor) the map is a translation plus one scalar dilation, so Euclidean
distances only change by that factor and Euclidean projections commute with it:
``Φ_norm(a) = to_normalized(Φ_phys(to_physical(a)))``. The projection safeguard therefore picks
the same applied action whichever coordinates it works in.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

__all__ = ["AffineActionMap"]


def _read_only(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class AffineActionMap:
    """The map u = center + scale ⊙ a from normalised actions a ∈ [-1, 1]^m to [low, high].

    Chapter 3 (chapters/03_tasks.py); the environments ``tutorial_rl/Pendulum-v0`` and
    ``tutorial_rl/Quadrotor2D-v0`` act through one of these. ``low`` and ``high`` are stored as
    read-only float64 vectors of equal shape ``(m,)``. All methods accept batches (actions on
    the last axis) and return new float64 arrays; none of them clips.

    :param low: physical lower bounds, finite, shape ``(m,)`` (a scalar counts as ``(1,)``).
    :param high: physical upper bounds, finite, ``high > low`` component-wise.
    :raises ValueError: bad shapes, non-finite bounds or ``high <= low``.
    """

    low: np.ndarray
    high: np.ndarray

    def __post_init__(self) -> None:
        low = np.atleast_1d(np.array(self.low, dtype=np.float64))
        high = np.atleast_1d(np.array(self.high, dtype=np.float64))
        if low.ndim != 1 or low.shape != high.shape:
            raise ValueError(f"low and high must be vectors of one shape; got {low.shape}, "
                             f"{high.shape}")
        if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
            raise ValueError("low and high must be finite")
        if not np.all(high > low):
            raise ValueError(f"high must exceed low component-wise; got {low} and {high}")
        object.__setattr__(self, "low", _read_only(low))
        object.__setattr__(self, "high", _read_only(high))

    @cached_property
    def center(self) -> np.ndarray:
        """(low + high) / 2: the physical action of a = 0 (read-only)."""
        return _read_only((self.low + self.high) / 2)

    @cached_property
    def scale(self) -> np.ndarray:
        """(high − low) / 2: physical units per normalised unit, per component (> 0, read-only)."""
        return _read_only((self.high - self.low) / 2)

    @property
    def is_uniform(self) -> bool:
        """Whether all components share one scale, so Euclidean projections commute with the map.

        With ``scale = s·1`` the map is u = center + s a, hence ‖u − u'‖ = s ‖a − a'‖ and the
        closest point of a polytope is the same point in either coordinates. Scales equal to a
        relative 1e-12 count as equal (``(high − low) / 2`` rounds differently for different
        bounds of one width).
        """
        return bool(np.allclose(self.scale, self.scale[0], rtol=1e-12, atol=0.0))

    def to_physical(self, a: np.ndarray) -> np.ndarray:
        """u = center + scale ⊙ a (a normalised, ``[..., m]``; no clipping)."""
        return self.center + self.scale * np.asarray(a, dtype=np.float64)

    def to_normalized(self, u: np.ndarray) -> np.ndarray:
        """a = (u − center) ⊘ scale (u physical, ``[..., m]``; no clipping)."""
        return (np.asarray(u, dtype=np.float64) - self.center) / self.scale

    def halfspaces_to_normalized(
        self, A: np.ndarray, b: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """{u : A u <= b} (physical) as {a : A' a <= b'}: ``A' = A diag(scale)``, ``b' = b − A c``.

        Exact up to rounding: a satisfies the new rows iff ``to_physical(a)`` satisfies the old
        ones (the map is a bijection, so an empty set stays empty). Rows keep their order.

        :param A: ``[k, m]``; :param b: ``[k]``.
        """
        A, b = np.asarray(A, dtype=np.float64), np.asarray(b, dtype=np.float64)
        return A * self.scale, b - A @ self.center

    def halfspaces_to_physical(
        self, A: np.ndarray, b: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """{a : A a <= b} (normalised) as {u : A' u <= b'}: the inverse of the map above.

        ``A' = A diag(1/scale)``, ``b' = b + A' center``.

        :param A: ``[k, m]``; :param b: ``[k]``.
        """
        A, b = np.asarray(A, dtype=np.float64), np.asarray(b, dtype=np.float64)
        A_phys = A / self.scale
        return A_phys, b + A_phys @ self.center

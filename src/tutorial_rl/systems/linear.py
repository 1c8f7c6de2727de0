"""Boxes and affine discrete-time models, and their exact (matrix exponential) discretization.

The shared part of :mod:`tutorial_rl.systems` (chapter 2, chapters/02_zonotopes.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.linalg


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=np.float64, copy=True)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class Box:
    """An axis-aligned box ``{x : lower <= x <= upper}`` (state, input or disturbance bounds).

    :param lower: lower bounds, shape ``(n,)``.
    :param upper: upper bounds, shape ``(n,)``; ``upper >= lower`` elementwise.
    """

    lower: np.ndarray
    upper: np.ndarray

    def __post_init__(self) -> None:
        lo = np.atleast_1d(np.asarray(self.lower, dtype=np.float64))
        hi = np.atleast_1d(np.asarray(self.upper, dtype=np.float64))
        if lo.ndim != 1 or lo.shape != hi.shape:
            raise ValueError(f"Box bounds must be 1-D of equal shape, got {lo.shape}, {hi.shape}")
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
            raise ValueError("Box bounds must be finite")
        if np.any(hi < lo):
            raise ValueError(f"Box needs upper >= lower, got lower={lo}, upper={hi}")
        object.__setattr__(self, "lower", _readonly(lo))
        object.__setattr__(self, "upper", _readonly(hi))

    @property
    def dim(self) -> int:
        """Dimension ``n``."""
        return int(self.lower.shape[0])

    @property
    def center(self) -> np.ndarray:
        """Midpoint ``(lower + upper) / 2``."""
        return (self.lower + self.upper) / 2.0

    @property
    def half_widths(self) -> np.ndarray:
        """Half edge lengths ``(upper − lower) / 2``."""
        return (self.upper - self.lower) / 2.0

    @property
    def volume(self) -> float:
        """Lebesgue measure ``∏ (upper − lower)``."""
        return float(np.prod(self.upper - self.lower))

    def contains(self, x: np.ndarray, tol: float = 0.0) -> np.ndarray | bool:
        """Whether ``x`` (shape ``(n,)`` or ``(N, n)``) lies in the box, up to ``tol``."""
        x = np.asarray(x, dtype=np.float64)
        inside = np.all((x >= self.lower - tol) & (x <= self.upper + tol), axis=-1)
        return bool(inside) if x.ndim == 1 else inside

    def shifted(self, offset: np.ndarray) -> Box:
        """The translated box ``{x + offset}``."""
        return Box(self.lower + offset, self.upper + offset)

    def __repr__(self) -> str:
        return f"Box(lower={self.lower.tolist()}, upper={self.upper.tolist()})"


@dataclass(frozen=True, eq=False)
class LinearSystem:
    """Discrete-time affine model ``x⁺ = A x + B u + c + D w`` with box constraints.

    :param name: short system name (``"pendulum"``, ``"quadrotor"``).
    :param A: state matrix, ``(n, n)``.
    :param B: input matrix, ``(n, m)``.
    :param c: affine term, ``(n,)``; equals ``x_eq − A x_eq − B u_eq`` (gravity lives here).
    :param D: disturbance input matrix, ``(n, q)``.
    :param state_box: state constraints ``X`` (physical units).
    :param input_box: input constraints ``U`` (physical units).
    :param disturbance_box: disturbance bounds (``w`` space, physical units).
    :param x_eq: equilibrium state.
    :param u_eq: equilibrium input.
    :param dt: sampling time in seconds.
    """

    name: str
    A: np.ndarray
    B: np.ndarray
    c: np.ndarray
    D: np.ndarray
    state_box: Box
    input_box: Box
    disturbance_box: Box
    x_eq: np.ndarray
    u_eq: np.ndarray
    dt: float
    notes: str = field(default="")

    def __post_init__(self) -> None:
        for name in ("A", "B", "c", "D", "x_eq", "u_eq"):
            object.__setattr__(self, name, _readonly(getattr(self, name)))
        n, m = self.B.shape
        if self.A.shape != (n, n) or self.c.shape != (n,) or self.D.shape[0] != n:
            raise ValueError("inconsistent LinearSystem shapes")
        if self.state_box.dim != n or self.input_box.dim != m:
            raise ValueError("constraint boxes do not match the model dimensions")
        if self.disturbance_box.dim != self.D.shape[1]:
            raise ValueError("disturbance box does not match D")

    @property
    def n_states(self) -> int:
        """State dimension ``n``."""
        return int(self.A.shape[0])

    @property
    def n_inputs(self) -> int:
        """Input dimension ``m``."""
        return int(self.B.shape[1])

    def step(self, x: np.ndarray, u: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
        """Batched ``A x + B u + c + D w`` for ``x (N, n)``, ``u (N, m)``, ``w (N, q)``."""
        x = np.asarray(x, dtype=np.float64)
        u = np.asarray(u, dtype=np.float64)
        out = x @ self.A.T + u @ self.B.T + self.c
        if w is not None:
            out = out + np.asarray(w, dtype=np.float64) @ self.D.T
        return out

    def deviation(self) -> LinearSystem:
        """The same model in deviation coordinates ``x − x_eq``, ``u − u_eq`` (then ``c = 0``)."""
        return LinearSystem(
            name=self.name,
            A=self.A,
            B=self.B,
            c=self.c - self.x_eq + self.A @ self.x_eq + self.B @ self.u_eq,
            D=self.D,
            state_box=self.state_box.shifted(-self.x_eq),
            input_box=self.input_box.shifted(-self.u_eq),
            disturbance_box=self.disturbance_box,
            x_eq=np.zeros_like(self.x_eq),
            u_eq=np.zeros_like(self.u_eq),
            dt=self.dt,
            notes=self.notes,
        )


def exact_discretization(
    A_c: np.ndarray, B_c: np.ndarray, dt: float
) -> tuple[np.ndarray, np.ndarray]:
    """Zero-order-hold discretization ``A_d = e^{A_c dt}``, ``B_d = ∫_0^dt e^{A_c τ} dτ B_c``.

    Both come from one matrix exponential of the augmented matrix ``[[A_c, B_c], [0, 0]]·dt``
    (Van Loan), which is exact for piecewise-constant inputs.
    """
    A_c = np.asarray(A_c, dtype=np.float64)
    B_c = np.asarray(B_c, dtype=np.float64)
    n, m = B_c.shape
    aug = np.zeros((n + m, n + m))
    aug[:n, :n] = A_c
    aug[:n, n:] = B_c
    phi = scipy.linalg.expm(aug * dt)
    return phi[:n, :n].copy(), phi[:n, n:].copy()


def blockwise_discretization(
    A_c: np.ndarray, B_c: np.ndarray, dt: float
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`exact_discretization` applied per decoupled block of ``A_c``.

    ``scipy.linalg.expm`` leaves ~1e-18 residue where the exact exponential is zero; the
    quadrotor's lateral ``(x, ẋ, θ, θ̇)`` and vertical ``(z, ż)`` subsystems are decoupled, and
    keeping their coupling *exactly* zero lets the safe sets keep a product structure.
    """
    n = A_c.shape[0]
    # Connected components of the undirected coupling graph of A_c.
    adjacency = (A_c != 0) | (A_c.T != 0)
    label = -np.ones(n, dtype=int)
    for start in range(n):
        if label[start] >= 0:
            continue
        stack, label[start] = [start], start
        while stack:
            i = stack.pop()
            for j in np.flatnonzero(adjacency[i]):
                if label[j] < 0:
                    label[j] = start
                    stack.append(j)
    A_d = np.zeros_like(A_c, dtype=np.float64)
    B_d = np.zeros_like(B_c, dtype=np.float64)
    for root in np.unique(label):
        idx = np.flatnonzero(label == root)
        a, b = exact_discretization(A_c[np.ix_(idx, idx)], B_c[idx], dt)
        A_d[np.ix_(idx, idx)] = a
        B_d[idx] = b
    return A_d, B_d

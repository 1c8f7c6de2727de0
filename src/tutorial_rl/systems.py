"""Physical constants and linear(ized) discrete-time models of the course's control benchmarks.

Chapter 2 (``chapters/02_zonotopes.py``) and Chapter 3 (RCI sets) use these models; the
environments in ``tutorial_rl.envs`` import the physical constants from here so that the
safe sets and the simulators can never disagree (DESIGN §5).

Two systems are described:

* **Pendulum** (paper A.8.1). The simulator is *nonlinear* and uses semi-implicit Euler:
  ``θ̇⁺ = θ̇ + dt·(3g/(2l)·sin θ + 3/(m l²)·u)``, then ``θ⁺ = θ + dt·θ̇⁺``, plus additive noise
  ``w ∈ [−0.1, 0.1]²``. The *model* used for the safe set is the exact (matrix exponential)
  discretization of the linearization about the upright equilibrium ``θ = 0``;
  the mismatch between the two is bounded in :mod:`tutorial_rl.sets.rci_systems`.
* **2-D quadrotor** (paper A.8.2, after Mitchell et al. 2019 / Stolz et al. 2024). Its
  dynamics are linear, ``ẍ = gθ + w0``, ``z̈ = −g + K(u1 + u2) + w1``,
  ``θ̈ = −d0·θ − d1·θ̇ + n0(−u1 + u2)``, so the exact discretization with a zero-order hold on
  the thrusts *and* on the disturbance is the simulator itself.

All models are written in *physical* coordinates as an affine system

.. math:: x^+ = A x + B u + c + D w,\\qquad w \\in \\mathcal{W}_{box},

where ``c = x_eq − A x_eq − B u_eq`` carries gravity; the RCI computation works in deviation
coordinates ``x − x_eq``, ``u − u_eq`` (:meth:`LinearSystem.deviation`).
This module depends on numpy/scipy only, so both the environments and
:mod:`tutorial_rl.sets` can import it.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg

__all__ = [
    "Box",
    "LinearSystem",
    "PendulumParameters",
    "QuadrotorParameters",
    "exact_discretization",
    "pendulum_continuous_linearization",
    "pendulum_euler_linearization",
    "pendulum_linear_model",
    "pendulum_step",
    "quadrotor_continuous_model",
    "quadrotor_linear_model",
    "quadrotor_step",
]


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


def _blockwise_discretization(
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


# --------------------------------------------------------------------------------------------
# Pendulum
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PendulumParameters:
    """Inverted pendulum of the paper's public code (DESIGN §5, paper A.8.1).

    State ``[θ, θ̇]`` with ``θ = 0`` upright; one torque input ``u``.
    """

    mass: float = 1.0
    """Pendulum mass ``m`` (kg)."""
    length: float = 1.0
    """Pendulum length ``l`` (m)."""
    gravity: float = 9.81
    """Gravitational acceleration ``g`` (m/s²)."""
    dt: float = 0.05
    """Sampling time (s) of the semi-implicit Euler simulator."""
    max_torque: float = 8.0
    """Input bound: ``|u| <= max_torque``."""
    theta_bound: float = 2.0
    """State constraint ``|θ| <= theta_bound`` (rad) that the RCI set must respect."""
    theta_dot_bound: float = 6.5
    """State constraint ``|θ̇| <= theta_dot_bound`` (rad/s)."""
    noise_bound: float = 0.1
    """Additive noise ``w ∈ [−noise_bound, noise_bound]²`` on both states after each step."""
    episode_length: int = 200
    """Steps per episode."""

    @property
    def gravity_coefficient(self) -> float:
        """``a = 3g/(2l)``, the coefficient of ``sin θ`` in ``θ̈``."""
        return 3.0 * self.gravity / (2.0 * self.length)

    @property
    def input_coefficient(self) -> float:
        """``b = 3/(m l²)``, the coefficient of ``u`` in ``θ̈``."""
        return 3.0 / (self.mass * self.length**2)


def pendulum_step(
    state: np.ndarray,
    action: np.ndarray,
    params: PendulumParameters = PendulumParameters(),  # noqa: B008 - frozen, immutable
    noise: np.ndarray | None = None,
) -> np.ndarray:
    """The simulator's nonlinear semi-implicit Euler step (vectorized over a leading batch axis).

    ``θ̇⁺ = θ̇ + dt·(a sin θ + b u)``, ``θ⁺ = θ + dt·θ̇⁺``, then ``+ noise``.

    :param state: ``(..., 2)`` array ``[θ, θ̇]``.
    :param action: ``(..., 1)`` or ``(...)`` torque.
    :param noise: optional additive noise, broadcastable to ``(..., 2)``.
    """
    state = np.asarray(state, dtype=np.float64)
    u = np.asarray(action, dtype=np.float64)
    if u.ndim == state.ndim:
        u = u[..., 0]
    theta, theta_dot = state[..., 0], state[..., 1]
    dt = params.dt
    theta_dot_next = theta_dot + dt * (
        params.gravity_coefficient * np.sin(theta) + params.input_coefficient * u
    )
    theta_next = theta + dt * theta_dot_next
    out = np.stack([theta_next, theta_dot_next], axis=-1)
    return out if noise is None else out + noise


def pendulum_continuous_linearization(
    params: PendulumParameters = PendulumParameters(),  # noqa: B008
) -> tuple[np.ndarray, np.ndarray]:
    """``θ̈ ≈ a θ + b u`` about ``θ = 0``: ``A_c = [[0, 1], [a, 0]]``, ``B_c = [[0], [b]]``."""
    A_c = np.array([[0.0, 1.0], [params.gravity_coefficient, 0.0]])
    B_c = np.array([[0.0], [params.input_coefficient]])
    return A_c, B_c


def pendulum_euler_linearization(
    params: PendulumParameters = PendulumParameters(),  # noqa: B008
) -> tuple[np.ndarray, np.ndarray]:
    """Jacobians of the simulator's semi-implicit Euler map at the origin.

    ``A_e = [[1 + dt² a, dt], [dt a, 1]]``, ``B_e = [[dt² b], [dt b]]``; the simulator is
    exactly ``A_e x + B_e u + a·dt·[dt, 1]ᵀ (sin θ − θ)``.
    """
    dt, a, b = params.dt, params.gravity_coefficient, params.input_coefficient
    A_e = np.array([[1.0 + dt * dt * a, dt], [dt * a, 1.0]])
    B_e = np.array([[dt * dt * b], [dt * b]])
    return A_e, B_e


@functools.lru_cache(maxsize=32)
def pendulum_linear_model(
    params: PendulumParameters = PendulumParameters(),  # noqa: B008
    discretization: str = "exact",
) -> LinearSystem:
    """Discrete linear model of the pendulum about the upright equilibrium (DESIGN §5).

    :param discretization: ``"exact"`` (matrix exponential of the linearization; the course's
        model, ``A_d ≈ [[1.01845, 0.05031], [0.74027, 1.01845]]``, ``B_d ≈ [0.0037615, 0.15092]``)
        or ``"euler"`` (Jacobian of the simulator's semi-implicit Euler step).
    """
    if discretization == "exact":
        A, B = exact_discretization(*pendulum_continuous_linearization(params), params.dt)
    elif discretization == "euler":
        A, B = pendulum_euler_linearization(params)
    else:
        raise ValueError(f"discretization must be 'exact' or 'euler', got {discretization!r}")
    nb = params.noise_bound
    return LinearSystem(
        name="pendulum",
        A=A,
        B=B,
        c=np.zeros(2),
        D=np.eye(2),
        state_box=Box([-params.theta_bound, -params.theta_dot_bound],
                      [params.theta_bound, params.theta_dot_bound]),
        input_box=Box([-params.max_torque], [params.max_torque]),
        disturbance_box=Box([-nb, -nb], [nb, nb]),
        x_eq=np.zeros(2),
        u_eq=np.zeros(1),
        dt=params.dt,
        notes=f"pendulum linearized about theta=0, {discretization} discretization; the "
        "simulator is nonlinear (semi-implicit Euler), see tutorial_rl.sets.rci_systems",
    )


# --------------------------------------------------------------------------------------------
# 2-D quadrotor
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuadrotorParameters:
    """Planar quadrotor of Mitchell et al. (2019) as used by Stolz et al. (2024) (DESIGN §5).

    State ``[x, z, ẋ, ż, θ, θ̇]``; inputs are the two rotor thrusts ``[u1, u2]``;
    disturbance ``w = [w0, w1]`` enters ``ẍ`` and ``z̈``.

    The disturbance is **one-sided**, ``w ∈ [0, 0.08]²`` (uniform), as sampled in the paper's
    public code; the safe sets are computed for exactly this set (its centre ``0.04`` is a
    constant push that the RCI set absorbs by shifting its centre).
    """

    thrust_gain: float = 0.89 / 1.4
    """``K``: vertical acceleration per unit thrust."""
    d0: float = 70.0
    """Angular stiffness ``d0`` in ``θ̈ = −d0 θ − d1 θ̇ + n0(−u1 + u2)``."""
    d1: float = 17.0
    """Angular damping ``d1``."""
    n0: float = 55.0
    """Angular acceleration per unit thrust difference ``n0``."""
    gravity: float = 9.81
    """Gravitational acceleration ``g`` (m/s²)."""
    dt: float = 0.05
    """Sampling time (s); thrusts and disturbance are held constant over a step."""
    thrust_min: float = 6.83483
    """Lower thrust bound per rotor."""
    thrust_max: float = 8.59663
    """Upper thrust bound per rotor."""
    x_bound: float = 1.7
    """``|x| <= x_bound`` (m)."""
    z_min: float = 0.3
    """``z >= z_min`` (m)."""
    z_max: float = 2.0
    """``z <= z_max`` (m)."""
    vx_bound: float = 0.8
    """``|ẋ| <= vx_bound`` (m/s)."""
    vz_bound: float = 1.0
    """``|ż| <= vz_bound`` (m/s)."""
    theta_bound: float = math.pi / 12
    """``|θ| <= theta_bound`` (rad)."""
    theta_dot_bound: float = math.pi / 2
    """``|θ̇| <= theta_dot_bound`` (rad/s)."""
    disturbance_lower: tuple[float, float] = (0.0, 0.0)
    """Lower disturbance bounds ``[w0, w1]`` (one-sided, as in the paper's code)."""
    disturbance_upper: tuple[float, float] = (0.08, 0.08)
    """Upper disturbance bounds ``[w0, w1]``."""
    hover_height: float = 1.0
    """Height ``z`` of the equilibrium ``x_eq = [0, hover_height, 0, 0, 0, 0]``."""

    @property
    def hover_thrust(self) -> float:
        """``u_eq = g / (2K)`` per rotor (≈ 7.716)."""
        return self.gravity / (2.0 * self.thrust_gain)

    @property
    def equilibrium_state(self) -> np.ndarray:
        """``x_eq = [0, hover_height, 0, 0, 0, 0]``."""
        return np.array([0.0, self.hover_height, 0.0, 0.0, 0.0, 0.0])

    @property
    def equilibrium_input(self) -> np.ndarray:
        """``u_eq = [g/(2K), g/(2K)]``."""
        return np.full(2, self.hover_thrust)


def quadrotor_continuous_model(
    params: QuadrotorParameters = QuadrotorParameters(),  # noqa: B008
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Continuous-time ``ẋ = A_c x + B_c u + D_c w + e`` with ``e = [0, 0, 0, −g, 0, 0]``."""
    p = params
    A_c = np.zeros((6, 6))
    A_c[0, 2] = A_c[1, 3] = A_c[4, 5] = 1.0  # positions integrate velocities
    A_c[2, 4] = p.gravity  # ẍ = g θ
    A_c[5, 4], A_c[5, 5] = -p.d0, -p.d1
    B_c = np.zeros((6, 2))
    B_c[3, :] = p.thrust_gain
    B_c[5, :] = [-p.n0, p.n0]
    D_c = np.zeros((6, 2))
    D_c[2, 0] = D_c[3, 1] = 1.0
    e = np.array([0.0, 0.0, 0.0, -p.gravity, 0.0, 0.0])
    return A_c, B_c, D_c, e


@functools.lru_cache(maxsize=32)
def quadrotor_linear_model(
    params: QuadrotorParameters = QuadrotorParameters(),  # noqa: B008
) -> LinearSystem:
    """Exact zero-order-hold discretization of the (linear) quadrotor in physical coordinates.

    One matrix exponential of ``[[A_c, B_c, D_c, e], 0]·dt`` gives ``A``, ``B``, ``D`` and the
    gravity term ``c`` (exact: the dynamics are linear and inputs/disturbances are held).
    """
    A_c, B_c, D_c, e = quadrotor_continuous_model(params)
    A, BDe = _blockwise_discretization(A_c, np.hstack([B_c, D_c, e[:, None]]), params.dt)
    B, D, c = BDe[:, :2], BDe[:, 2:4], BDe[:, 4]
    p = params
    state_box = Box(
        [-p.x_bound, p.z_min, -p.vx_bound, -p.vz_bound, -p.theta_bound, -p.theta_dot_bound],
        [p.x_bound, p.z_max, p.vx_bound, p.vz_bound, p.theta_bound, p.theta_dot_bound],
    )
    return LinearSystem(
        name="quadrotor",
        A=A,
        B=B,
        c=c,
        D=D,
        state_box=state_box,
        input_box=Box([p.thrust_min] * 2, [p.thrust_max] * 2),
        disturbance_box=Box(p.disturbance_lower, p.disturbance_upper),
        x_eq=p.equilibrium_state,
        u_eq=p.equilibrium_input,
        dt=p.dt,
        notes="planar quadrotor, exact ZOH discretization (inputs and disturbance held); "
        "disturbance one-sided w in [0, 0.08]^2 as in the paper's code",
    )


def quadrotor_step(
    state: np.ndarray,
    action: np.ndarray,
    params: QuadrotorParameters = QuadrotorParameters(),  # noqa: B008
    disturbance: np.ndarray | None = None,
) -> np.ndarray:
    """Exact one-step map of the quadrotor (vectorized over leading axes).

    :param state: ``(..., 6)``; :param action: thrusts ``(..., 2)``;
    :param disturbance: ``(..., 2)`` held over the step (``None`` means zero).
    """
    model = quadrotor_linear_model(params)
    x = np.asarray(state, dtype=np.float64)
    u = np.asarray(action, dtype=np.float64)
    out = x @ model.A.T + u @ model.B.T + model.c
    if disturbance is not None:
        out = out + np.asarray(disturbance, dtype=np.float64) @ model.D.T
    return out

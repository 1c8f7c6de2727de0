"""The 2-D quadrotor (paper A.8.2): physical constants, the exact discretization (which is
the simulator) and its step (chapters 2 and 3).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from tutorial_rl.systems.linear import Box, LinearSystem, blockwise_discretization


@dataclass(frozen=True)
class QuadrotorParameters:
    """Planar quadrotor of Mitchell et al. (2019) as used by Stolz et al. (2024).

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
    A, BDe = blockwise_discretization(A_c, np.hstack([B_c, D_c, e[:, None]]), params.dt)
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
    # one vector-matrix product per state (stacked), so a state's next state has the same bits
    # whether it is stepped alone or in a batch (tutorial_rl.envs.vector)
    out = _times(x, model.A.T) + _times(u, model.B.T) + model.c
    if disturbance is not None:
        out = out + _times(np.asarray(disturbance, dtype=np.float64), model.D.T)
    return out


def _times(v: np.ndarray, M: np.ndarray) -> np.ndarray:
    """``v @ M`` for ``v`` of shape ``(..., n)``, row by row (see ``quadrotor_step``)."""
    return (v[..., None, :] @ M)[..., 0, :]

"""The pendulum (paper A.8.1): physical constants, the nonlinear simulator step and the
linear models the RCI set is computed for (chapters 2 and 3).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from tutorial_rl.systems.linear import Box, LinearSystem, exact_discretization


@dataclass(frozen=True)
class PendulumParameters:
    """Inverted pendulum of the paper's public code (paper A.8.1).

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
    """Discrete linear model of the pendulum about the upright equilibrium.

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

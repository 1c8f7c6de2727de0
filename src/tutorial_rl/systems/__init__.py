"""Physical constants and linear(ized) discrete-time models of the course's control benchmarks.

Chapter 2 (``chapters/02_zonotopes.py``) and Chapter 3 (RCI sets) use these models; the
environments in ``tutorial_rl.envs`` import the physical constants from here so that the
safe sets and the simulators can never disagree.

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

from tutorial_rl.systems.linear import Box, LinearSystem, exact_discretization
from tutorial_rl.systems.pendulum import (
    PendulumParameters,
    pendulum_continuous_linearization,
    pendulum_euler_linearization,
    pendulum_linear_model,
    pendulum_step,
)
from tutorial_rl.systems.quadrotor import (
    QuadrotorParameters,
    quadrotor_continuous_model,
    quadrotor_linear_model,
    quadrotor_step,
)

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

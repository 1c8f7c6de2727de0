"""Models, RCI computation and the stored sets (Chapter 3; systems.py, sets/rci*.py)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from tutorial_rl import systems
from tutorial_rl.sets import Zonotope
from tutorial_rl.sets.rci import RCISetInfeasibleError, certificate_violations, compute_rci
from tutorial_rl.sets.rci_systems import (
    LATERAL,
    VERTICAL,
    build_pendulum_rci,
    build_quadrotor_rci,
    direction_template,
    load_rci,
    load_rci_file,
    main,
    pendulum_model_error,
    save_rci,
)
from tutorial_rl.sets.verification import zonotope_corners

SYSTEMS = ["pendulum", "quadrotor"]


# ---------------------------------------------------------------------- models
def test_pendulum_exact_discretization_matches_design_and_expm() -> None:
    p = systems.PendulumParameters()
    model = systems.pendulum_linear_model(p)
    # DESIGN §5 numbers.
    assert np.allclose(model.A, [[1.01845, 0.05031], [0.74027, 1.01845]], atol=1e-5)
    assert np.allclose(model.B[:, 0], [0.0037615, 0.15092], atol=1e-6)
    # Independent check: A_d = expm(A_c dt), B_d = A_c⁻¹ (A_d − I) B_c (A_c invertible).
    A_c, B_c = systems.pendulum_continuous_linearization(p)
    A_d = scipy.linalg.expm(A_c * p.dt)
    assert np.allclose(model.A, A_d, atol=1e-13)
    assert np.allclose(model.B, np.linalg.solve(A_c, (A_d - np.eye(2)) @ B_c), atol=1e-13)


def test_pendulum_step_is_semi_implicit_euler() -> None:
    p = systems.PendulumParameters()
    x, u = np.array([0.3, -1.0]), np.array([2.0])
    nxt = systems.pendulum_step(x, u, p)
    th_dot = -1.0 + p.dt * (1.5 * p.gravity * np.sin(0.3) + 3.0 * 2.0)
    assert np.allclose(nxt, [0.3 + p.dt * th_dot, th_dot])
    # Its Jacobian at the origin is the Euler linearization.
    A_e, B_e = systems.pendulum_euler_linearization(p)
    eps = 1e-6
    J = np.column_stack([(systems.pendulum_step(eps * e, np.zeros(1), p)
                          - systems.pendulum_step(-eps * e, np.zeros(1), p)) / (2 * eps)
                         for e in np.eye(2)])
    assert np.allclose(J, A_e, atol=1e-8)
    assert np.allclose(systems.pendulum_step(np.zeros(2), np.ones(1), p), B_e[:, 0])


def test_quadrotor_model_is_the_exact_discretization() -> None:
    p = systems.QuadrotorParameters()
    model = systems.quadrotor_linear_model(p)
    A_c, B_c, D_c, e = systems.quadrotor_continuous_model(p)
    aug = np.zeros((10, 10))
    aug[:6, :6], aug[:6, 6:8], aug[:6, 8:] = A_c, B_c, D_c
    phi = scipy.linalg.expm(aug * p.dt)
    assert np.allclose(model.A, phi[:6, :6], atol=1e-14)
    assert np.allclose(model.B, phi[:6, 6:8], atol=1e-14)
    assert np.allclose(model.D, phi[:6, 8:], atol=1e-14)
    assert p.hover_thrust == pytest.approx(7.7157, abs=1e-4)
    # Hover is an equilibrium of the affine model (gravity lives in c).
    assert np.allclose(model.step(p.equilibrium_state[None], p.equilibrium_input[None]),
                       p.equilibrium_state, atol=1e-15)
    # Lateral and vertical blocks are exactly decoupled.
    assert np.all(model.A[np.ix_(LATERAL, VERTICAL)] == 0)
    assert np.all(model.A[np.ix_(VERTICAL, LATERAL)] == 0)
    assert np.all(model.B[LATERAL, 0] == -model.B[LATERAL, 1])
    assert np.all(model.B[VERTICAL, 0] == model.B[VERTICAL, 1])
    assert np.allclose(systems.quadrotor_step(p.equilibrium_state, p.equilibrium_input, p),
                       p.equilibrium_state)


# ---------------------------------------------------------------------- stored sets
@pytest.mark.parametrize("name", SYSTEMS)
def test_stored_set_certificate_and_constraints(name: str) -> None:
    rci = load_rci(name)
    ctrl = rci.controller
    f = ctrl.template.shape[1]
    E_used = ctrl.T[0][:, : ctrl.T.shape[2] - f]
    X_box = rci.state_box.shifted(-rci.x_eq)
    U_box = rci.input_box.shifted(-rci.u_eq)
    assert certificate_violations(ctrl, rci.A, rci.B, E_used, X_box, U_box) == []
    lo, hi = rci.set.interval_hull()
    assert np.all(lo >= rci.state_box.lower - 1e-12) and np.all(hi <= rci.state_box.upper + 1e-12)
    # The stored disturbance is inside the one the certificate was built for.
    design_W = Zonotope(ctrl.c_w + rci.x_eq - rci.A @ rci.x_eq - rci.B @ rci.u_eq - rci.c,
                        E_used)
    assert np.all(rci.disturbance.support(np.eye(len(lo))) <= design_W.support(np.eye(len(lo)))
                  + 1e-12)
    assert 0.1 < rci.volume_ratio() < 1.0
    assert rci.diagnostics["status"] == "optimal"


@pytest.mark.parametrize("name", SYSTEMS)
def test_certificate_controller_keeps_states_inside(name: str) -> None:
    """x = x̄ + Σ T_i ζ_i, u = ū + Σ M_i ζ_i: u ∈ U and A x + B u + c + w ∈ X for all w ∈ W."""
    rci = load_rci(name)
    ctrl, rng = rci.controller, np.random.default_rng(1)
    T = np.concatenate(list(ctrl.T), axis=1)
    zeta = rng.choice([-1.0, 1.0], size=(4000, T.shape[1])) * rng.uniform(0.5, 1, (4000, 1))
    x = rci.x_eq + ctrl.x_bar + zeta @ T.T
    u = rci.u_eq + ctrl.input_for(zeta)
    assert np.all(rci.input_box.contains(u, tol=1e-12))
    H, h = rci.set.halfspaces()
    nxt = x @ rci.A.T + u @ rci.B.T + rci.c
    worst = (zonotope_corners(rci.disturbance) @ H.T).max(axis=0)
    assert np.all(nxt @ H.T + worst <= h + 1e-9)


def test_pendulum_error_bound_covers_the_simulator() -> None:
    """f(x, u) + w − (A_d x + B_d u) lies in the stored W for x ∈ X, u ∈ U, noise vertices."""
    p, rci = systems.PendulumParameters(), load_rci("pendulum")
    rng = np.random.default_rng(2)
    x = np.vstack([rci.set.vertices_2d(), rci.set.sample(20000, rng)])
    u = rng.uniform(-p.max_torque, p.max_torque, size=(len(x), 1))
    u[: len(u) // 4] = p.max_torque * np.sign(u[: len(u) // 4])
    corners = zonotope_corners(Zonotope.from_box([-0.1, -0.1], [0.1, 0.1]))
    for w in corners:
        err = systems.pendulum_step(x, u, p) + w - (x @ rci.A.T + u @ rci.B.T + rci.c)
        assert np.all(rci.disturbance.contains_point(err, tol=1e-12))
    d = rci.diagnostics
    assert d["tau_final"][2] == pytest.approx(d["hull_radius"][0] - np.sin(d["hull_radius"][0]))
    assert d["tau_final"][2] <= d["tau_designed"][2] <= d["hull_radius"][0] ** 3 / 6


@pytest.mark.parametrize("name", SYSTEMS)
def test_regeneration_reproduces_the_stored_set(name: str) -> None:
    stored = load_rci(name)
    fresh = build_pendulum_rci() if name == "pendulum" else build_quadrotor_rci()
    assert fresh.solve_time < 10.0
    for a, b in [(fresh.set.center, stored.set.center),
                 (fresh.set.generators, stored.set.generators),
                 (fresh.disturbance.generators, stored.disturbance.generators)]:
        assert a.shape == b.shape
        assert np.allclose(a, b, rtol=1e-5, atol=1e-5 * np.abs(b).max())
    assert fresh.volume_ratio() == pytest.approx(stored.volume_ratio(), rel=1e-5)


def test_save_load_roundtrip_and_cli(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["--system", "pendulum", "--out", str(tmp_path)])
    assert "pendulum:" in capsys.readouterr().out
    loaded = load_rci_file(tmp_path / "pendulum_rci.npz")
    stored = load_rci("pendulum")
    assert np.allclose(loaded.set.generators, stored.set.generators, rtol=1e-5,
                       atol=1e-5 * np.abs(stored.set.generators).max())
    again = load_rci_file(save_rci(loaded, tmp_path / "copy.npz"))
    assert np.array_equal(again.set.generators, loaded.set.generators)
    assert again.diagnostics["metadata"]["discretization"] == "exact"
    assert np.isnan(again.solve_time)


# ---------------------------------------------------------------------- generic program, errors
def test_double_integrator_rci_is_invariant() -> None:
    dt = 0.1
    model = systems.LinearSystem(
        name="double_integrator", A=np.array([[1, dt], [0, 1]]), B=np.array([[0.5 * dt**2], [dt]]),
        c=np.zeros(2), D=np.eye(2), state_box=systems.Box([-1, -1], [1, 1]),
        input_box=systems.Box([-1], [1]), disturbance_box=systems.Box([-0.01, -0.01], [0.01, 0.01]),
        x_eq=np.zeros(2), u_eq=np.zeros(1), dt=dt)
    # Box-axis template (default) vs. 6 directions: the richer template cuts the braking
    # corners and roughly triples the area (the maximal RCI set covers ~90 % of the box).
    assert compute_rci(model, horizon=5).volume_ratio() < 0.3
    rci = compute_rci(model, horizon=5, template=direction_template(np.ones(2), 6))
    assert rci.solve_time < 10.0 and rci.volume_ratio() > 0.7
    rng = np.random.default_rng(3)
    x = np.vstack([rci.set.vertices_2d(), rci.set.sample(2000, rng)])
    H, h = rci.set.halfspaces()
    W_corners = zonotope_corners(rci.disturbance)
    # For every state some input in U keeps every disturbance inside: solve per state by LP.
    import scipy.optimize

    for xi in x[:: 50]:
        A_ub = np.tile(H @ model.B, (len(W_corners), 1))
        b_ub = (h[None] - (model.A @ xi + W_corners) @ H.T).reshape(-1) + 1e-9
        res = scipy.optimize.linprog([0.0], A_ub=A_ub, b_ub=b_ub, bounds=[(-1, 1)])
        assert res.status == 0


def test_infeasible_problem_raises_a_clear_error() -> None:
    p = systems.PendulumParameters(noise_bound=2.0)
    model = systems.pendulum_linear_model(p)
    with pytest.raises(RCISetInfeasibleError, match="solver status") as info:
        compute_rci(model, horizon=4)
    assert isinstance(info.value, ValueError)
    assert "infeasible" in str(info.value) or info.value.status != "optimal"


def test_bad_arguments_are_named() -> None:
    model = systems.pendulum_linear_model()
    with pytest.raises(ValueError, match="horizon"):
        compute_rci(model, horizon=0)
    with pytest.raises(ValueError, match="template"):
        compute_rci(model, template=np.ones((2, 1)))
    with pytest.raises(ValueError, match="disturbance has dimension"):
        compute_rci(model, disturbance=Zonotope.from_box([0, 0, 0], [1, 1, 1]))
    with pytest.raises(ValueError, match="unknown system"):
        load_rci("cartpole")
    with pytest.raises(ValueError, match="discretization"):
        systems.pendulum_linear_model(discretization="rk4")
    fixed, hull = pendulum_model_error()
    assert fixed.dim == 2 and hull.generators.shape == (2, 3)


def test_cli_module_runs_cleanly(tmp_path) -> None:
    """``python -m tutorial_rl.sets.rci_systems`` (the documented command) runs warning-free."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-W", "error::RuntimeWarning", "-m", "tutorial_rl.sets.rci_systems",
         "--system", "pendulum", "--out", str(tmp_path)],
        capture_output=True, text=True, check=True)
    assert "volume ratio" in out.stdout and out.stderr == ""
    assert (tmp_path / "pendulum_rci.npz").exists()


def test_package_exports_resolve() -> None:
    import tutorial_rl.sets as sets

    for name in sets.__all__:
        assert getattr(sets, name) is not None

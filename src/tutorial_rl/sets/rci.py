r"""Zonotopic robust control invariant (RCI) sets by one convex program (Chapter 3).

A set ``X`` is *robust control invariant* for ``x⁺ = A x + B u + w``, ``w ∈ W``, under
``x ∈ 𝒳`` and ``u ∈ 𝒰`` if ``X ⊆ 𝒳`` and every ``x ∈ X`` has some ``u ∈ 𝒰`` with
``A x + B u ⊕ W ⊆ X``. The safe action set of the paper (eq. (12b), A.1) is built on such a set:
``U_s(x) = {u ∈ 𝒰 : A x + B u ⊕ W ⊆ X}`` is then non-empty for every ``x ∈ X``.

Parameterization
----------------------------
Work in deviation coordinates and write ``W = ⟨c_w, E⟩``. Fix a *template* ``F0 ∈ R^{n×f}``
and a *horizon* ``h``; the decision variables are the scales ``s ∈ R^f``, a centre ``x̄``, a
nominal input ``ū``, feedback matrices ``M_0, …, M_{h−1} ∈ R^{m×q}`` (``q = n_E + f``) and a
terminal map ``[γ, Γ'] ∈ R^{f×(1+q)}``. Define

.. math::

    T_0 = [E,\; F_0 \operatorname{diag}(s)], \qquad T_{i+1} = A T_i + B M_i, \qquad
    X = ⟨x̄,\; [T_0, T_1, …, T_{h−1}]⟩ .

The constraints, linear in the variables except for convex norm bounds, are

.. math::

    A x̄ + B ū + c_w − x̄ = F_0 γ, \qquad A T_{h−1} + B M_{h−1} = F_0 Γ', \qquad
    |γ_j| + \textstyle\sum_k |Γ'_{jk}| <= s_j \;(j = 1..f),

    \text{state: } ±e_k^⊤ x̄ + \textstyle\sum_i ‖T_i^⊤ e_k‖_1 <= \text{bound}_k, \qquad
    \text{input: } ±e_j^⊤ ū + \textstyle\sum_i ‖M_i^⊤ e_j‖_1 <= \text{bound}_j ,

and the objective maximizes the volume proxy ``(∏_j s_j)^{1/f}`` (a monotone transform of
``Σ_j log s_j``, the log-volume of the parallelotope ``F0 diag(s)`` contained in ``X``; the
geometric mean is second-order-cone representable, which Clarabel solves more reliably than
exponential cones), minus a tiny ridge on the auxiliary variables that makes the optimizer
unique (so regenerated sets agree with the stored ones). Constraints are tightened by a
relative ``1e-6`` so that solver tolerances cannot break them, and the certificate is
re-checked in floating point (:func:`certificate_violations`) before a set is returned.

Why ``X`` is RCI: write ``x = x̄ + Σ_i T_i ζ_i`` with ``‖ζ_i‖∞ <= 1`` and apply
``u = ū + Σ_i M_i ζ_i`` (inside ``𝒰`` by the input constraint). With ``w = c_w + E ζ_w``,

.. math::

    x^+ = x̄ + F_0(γ + Γ' ζ_{h−1}) + E ζ_w + \textstyle\sum_{i=0}^{h-2} T_{i+1} ζ_i
        = x̄ + T_0 ζ'_0 + \textstyle\sum_{i=1}^{h-1} T_i ζ'_i ,

with ``ζ'_0 = [ζ_w; η]``, ``η_j = (γ + Γ'ζ_{h−1})_j / s_j ∈ [−1, 1]`` and ``ζ'_i = ζ_{i−1}``:
so ``x⁺ ∈ X``. The generators ``T_1..T_{h−1}`` are an ``h``-step tube that lets the
disturbance and the template shrink under feedback before they fold back into ``F0 diag(s)``.

Extensions over the basic parameterization:

* the centre need not be a fixed point (``γ`` absorbs the offset; the quadrotor's one-sided
  disturbance pushes it);
* a *hull-dependent disturbance* (:class:`HullDependentDisturbance`) adds generators
  ``g_k τ_k`` to ``E`` with ``τ_k >= ψ_k(ρ)`` and ``ρ_j >= max_{x∈X} |x_j|``: a
  linearization error bound that shrinks with the set is optimized *jointly* with the set,
  still as one convex program when ``ψ_k`` are convex and non-decreasing;
* structured feedback (``input_transform``, ``input_mask``) keeps decoupled subsystems
  decoupled, so the set is a Cartesian product with few facets.

Regenerate the stored sets (deterministic up to solver tolerance)::

    python -m tutorial_rl.sets.rci_systems --system pendulum --out src/tutorial_rl/data/
    python -m tutorial_rl.sets.rci_systems --system quadrotor --out src/tutorial_rl/data/
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import cvxpy as cp
import numpy as np

from tutorial_rl.sets.zonotope import Zonotope
from tutorial_rl.systems import Box, LinearSystem

__all__ = [
    "HullDependentDisturbance",
    "RCIController",
    "RCISet",
    "RCISetInfeasibleError",
    "certificate_violations",
    "compute_rci",
]

#: Relative tightening of all inequality constraints (absorbs solver tolerances ~1e-8).
MARGIN = 1e-6


class RCISetInfeasibleError(ValueError):
    """The RCI program has no solution (e.g. the disturbance is too large for the constraints).

    :param status: the solver status reported by cvxpy (e.g. ``"infeasible"``).
    """

    def __init__(self, message: str, status: str) -> None:
        super().__init__(f"{message} (solver status: {status!r})")
        self.status = status


@dataclass(frozen=True)
class HullDependentDisturbance:
    """Disturbance generators whose size depends on the set: ``⊕_k ⟨0, g_k τ_k⟩``.

    Used for linearization errors: the error of a linear model over ``X`` is bounded by a
    function of the half-widths ``ρ`` of a box around the equilibrium that contains ``X``.

    :param generators: ``g_k`` as columns, shape ``(n, K)``.
    :param convex_bound: ``ρ ↦ [ψ_1(ρ), …, ψ_K(ρ)]``, cvxpy expressions convex and
        non-decreasing in ``ρ >= 0`` (deviation coordinates); ``τ_k >= ψ_k(ρ)`` is imposed.
    :param exact_bound: numeric ``ρ ↦ ψ̂(ρ)`` with ``ψ̂ <= ψ``, evaluated at the actual hull of
        the result to build the (tighter) stored disturbance set.
    :param description: what the bound is, for metadata.
    """

    generators: np.ndarray
    convex_bound: Callable[[cp.Expression], list[cp.Expression]]
    exact_bound: Callable[[np.ndarray], np.ndarray]
    description: str = ""


@dataclass(frozen=True, eq=False)
class RCIController:
    """Certificate of invariance: ``u = ū + Σ_i M_i ζ_i`` for ``x = x̄ + Σ_i T_i ζ_i``.

    All quantities are in *deviation* coordinates (``x − x_eq``, ``u − u_eq``).

    :param x_bar: centre ``x̄`` ``(n,)``.
    :param u_bar: nominal input ``ū`` ``(m,)``.
    :param M: feedback gains ``M_i``, stacked ``(h, m, q)``.
    :param T: tube generators ``T_i``, stacked ``(h, n, q)``; ``T_0 = [E, F0 diag(s)]``.
    :param template: ``F0`` ``(n, f)``.
    :param scales: ``s`` ``(f,)``.
    :param terminal: ``[γ, Γ']`` ``(f, 1 + q)``.
    :param c_w: centre of the disturbance the certificate was computed for (incl. the
        model's affine term in deviation coordinates).
    """

    x_bar: np.ndarray
    u_bar: np.ndarray
    M: np.ndarray
    T: np.ndarray
    template: np.ndarray
    scales: np.ndarray
    terminal: np.ndarray
    c_w: np.ndarray

    @property
    def horizon(self) -> int:
        """Tube length ``h``."""
        return int(self.M.shape[0])

    def input_for(self, zeta: np.ndarray) -> np.ndarray:
        """``ū + Σ_i M_i ζ_i`` for stacked coefficients ``zeta`` of shape ``(..., h·q)``."""
        return self.u_bar + np.asarray(zeta) @ np.concatenate(list(self.M), axis=1).T


@dataclass(frozen=True, eq=False)
class RCISet:
    """An RCI zonotope with the model it is invariant for (physical coordinates).

    The model is ``x⁺ = A x + B u + c + w`` with ``w ∈ disturbance``; for ``x ∈ set`` there is
    ``u ∈ input_box`` with ``A x + B u + c ⊕ disturbance ⊆ set``.

    :param system: system name.
    :param set: the RCI set ``X`` (physical coordinates).
    :param A: model state matrix. :param B: model input matrix. :param c: affine term.
    :param disturbance: ``W`` in state space: everything the model leaves out (noise, and for
        the pendulum the linearization error bound).
    :param state_box: state constraints. :param input_box: input constraints.
    :param x_eq: equilibrium state. :param u_eq: equilibrium input.
    :param controller: the invariance certificate (deviation coordinates).
    :param solve_time: solver seconds of the final solve (``nan`` when loaded from disk).
    :param diagnostics: JSON-serializable facts (status, sizes, volume ratio, …).
    """

    system: str
    set: Zonotope
    A: np.ndarray
    B: np.ndarray
    c: np.ndarray
    disturbance: Zonotope
    state_box: Box
    input_box: Box
    x_eq: np.ndarray
    u_eq: np.ndarray
    controller: RCIController
    solve_time: float = float("nan")
    diagnostics: dict[str, Any] = field(default_factory=dict)

    def volume_ratio(self) -> float:
        """``vol(X) / vol(state box)``."""
        return self.set.volume() / self.state_box.volume


def certificate_violations(
    ctrl: RCIController, A: np.ndarray, B: np.ndarray, E: np.ndarray,
    X_box: Box, U_box: Box, tol: float = 1e-12,
) -> list[str]:
    """Check the invariance certificate in floating point (deviation coordinates).

    :param E: disturbance generators the certificate claims to handle (``T_0 = [E, F0 s]``).
    :returns: human-readable violations; empty when ``⟨x̄, [T_i]⟩`` is RCI.
    """
    out: list[str] = []
    F0, s, T, M = ctrl.template, ctrl.scales, ctrl.T, ctrl.M
    n = A.shape[0]
    scale = max(1.0, float(np.abs(T).max()))
    if np.any(s <= 0):
        out.append(f"non-positive scale s_min={s.min():.3g}")
    if T[0].shape != (n, E.shape[1] + F0.shape[1]) or np.abs(
            T[0] - np.hstack([E, F0 * s])).max() > tol * scale:
        out.append("T_0 != [E, F0 diag(s)]")
    for i in range(len(T) - 1):
        if np.abs(T[i + 1] - A @ T[i] - B @ M[i]).max() > 1e-9 * scale:
            out.append(f"tube recursion broken at step {i}")
    rhs = np.hstack([((A - np.eye(n)) @ ctrl.x_bar + B @ ctrl.u_bar + ctrl.c_w)[:, None],
                     A @ T[-1] + B @ M[-1]])
    if np.abs(F0 @ ctrl.terminal - rhs).max() > 1e-9 * scale:
        out.append("terminal map is not exact (template not full row rank?)")
    excess = np.abs(ctrl.terminal).sum(axis=1) - s
    if np.any(excess > tol):
        out.append(f"terminal row sums exceed s by {excess.max():.3g}")
    x_rad = np.abs(np.concatenate(list(T), axis=1)).sum(axis=1)
    if np.any(ctrl.x_bar + x_rad > X_box.upper + tol) or np.any(
            ctrl.x_bar - x_rad < X_box.lower - tol):
        out.append("set leaves the state box")
    u_rad = np.abs(np.concatenate(list(M), axis=1)).sum(axis=1)
    if np.any(ctrl.u_bar + u_rad > U_box.upper + tol) or np.any(
            ctrl.u_bar - u_rad < U_box.lower - tol):
        out.append("feedback leaves the input box")
    return out


def _value(x: cp.Expression, name: str) -> np.ndarray:
    if x.value is None:
        raise RCISetInfeasibleError(f"solver returned no value for {name}", "no_value")
    return np.asarray(x.value, dtype=np.float64)


def compute_rci(
    system: LinearSystem,
    disturbance: Zonotope | None = None,
    horizon: int = 4,
    template: np.ndarray | None = None,
    state_box: Box | None = None,
    hull_disturbance: HullDependentDisturbance | None = None,
    input_transform: np.ndarray | None = None,
    input_mask: np.ndarray | None = None,
    ridge: float = 1e-6,
    solver: str = "CLARABEL",
) -> RCISet:
    """Solve the RCI program above for ``system`` (results in its physical coordinates).

    :param system: the affine model; constraints default to its boxes.
    :param disturbance: ``W`` as a zonotope in state space; defaults to
        ``D · disturbance_box``.
    :param horizon: tube length ``h >= 1``.
    :param template: ``F0`` ``(n, f)`` of rank ``n``; defaults to ``diag`` of the state box
        half-widths (so ``s`` are fractions of the box).
    :param state_box: overrides ``system.state_box`` (physical).
    :param hull_disturbance: extra, set-dependent disturbance (linearization error).
    :param input_transform: ``P`` ``(m, m)``: feedback is ``M_i = P (mask ⊙ M̃_i)``.
    :param input_mask: boolean ``(m, q)``: which columns of ``T_0`` (``E``, then the
        hull-dependent generators, then ``F0``) each input direction ``P e_r`` may react to.
    :param ridge: weight of the uniqueness ridge on the auxiliary variables.
    :param solver: cvxpy solver name.
    :raises RCISetInfeasibleError: if the program is infeasible or the answer fails the
        floating-point certificate check.
    """
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    dev = system.deviation()
    A, B = system.A, system.B
    n, m = system.n_states, system.n_inputs
    X_box = (state_box if state_box is not None else system.state_box).shifted(-system.x_eq)
    U_box = dev.input_box
    W = disturbance if disturbance is not None else Zonotope.from_box(
        system.disturbance_box.lower, system.disturbance_box.upper).linear_map(system.D)
    if W.dim != n:
        raise ValueError(f"disturbance has dimension {W.dim}, the system {n}")
    W = W.compact()
    c_w = W.center + dev.c  # the deviation model's affine term acts like a constant w
    G_h = np.zeros((n, 0)) if hull_disturbance is None else np.asarray(
        hull_disturbance.generators, dtype=np.float64)
    F0 = np.diag(X_box.half_widths) if template is None else np.asarray(template, float)
    if F0.ndim != 2 or F0.shape[0] != n or np.linalg.matrix_rank(F0) < n:
        raise ValueError(f"template must be (n, f) with rank n = {n}, got shape {F0.shape}")
    n_e, k_h, f = W.n_generators, G_h.shape[1], F0.shape[1]
    q = n_e + k_h + f
    P = np.eye(m) if input_transform is None else np.asarray(input_transform, float)
    mask = np.ones((m, q), bool) if input_mask is None else np.asarray(input_mask, bool)
    if P.shape != (m, m) or mask.shape != (m, q):
        raise ValueError(f"input_transform must be ({m}, {m}) and input_mask ({m}, {q})")

    # Feedback M_i = P (mask ⊙ M̃_i) with variables only where the mask allows: free masked
    # entries would give the solver an unbounded optimal face.
    def structured(i: int) -> cp.Expression:
        rows = []
        for r in range(m):
            idx = np.flatnonzero(mask[r])
            if len(idx):
                rows.append(cp.Variable((1, len(idx)), name=f"M{i}_{r}") @ np.eye(q)[idx])
            else:
                rows.append(np.zeros((1, q)))
        return cp.vstack(rows)

    s = cp.Variable(f, name="s")
    x_bar, u_bar = cp.Variable(n, name="x_bar"), cp.Variable(m, name="u_bar")
    M_tilde = [structured(i) for i in range(horizon)]
    M = [P @ Mi for Mi in M_tilde]
    Gam = cp.Variable((f, q + 1), name="terminal")
    tau = cp.Variable(k_h, name="tau") if k_h else None
    T0_parts = [W.generators] if n_e else []
    if tau is not None:
        T0_parts.append(G_h @ cp.diag(tau))
    T = [cp.hstack([*T0_parts, F0 @ cp.diag(s)])]
    for i in range(horizon - 1):
        T.append(A @ T[-1] + B @ M[i])
    x_rad = cp.sum(cp.abs(cp.hstack(T)), axis=1)
    u_rad = cp.sum(cp.abs(cp.hstack(M)), axis=1)
    x_tight, u_tight = MARGIN * X_box.half_widths, MARGIN * U_box.half_widths
    constraints = [
        A @ x_bar + B @ u_bar + c_w - x_bar == F0 @ Gam[:, 0],
        A @ T[-1] + B @ M[-1] == F0 @ Gam[:, 1:],
        cp.sum(cp.abs(Gam), axis=1) <= (1.0 - MARGIN) * s - 0.1 * MARGIN,
        x_bar + x_rad <= X_box.upper - x_tight,
        x_bar - x_rad >= X_box.lower + x_tight,
        u_bar + u_rad <= U_box.upper - u_tight,
        u_bar - u_rad >= U_box.lower + u_tight,
    ]
    aux = sum(cp.sum_squares(Mi) for Mi in M_tilde) + cp.sum_squares(Gam)
    aux = aux + cp.sum_squares(x_bar) + cp.sum_squares(u_bar)
    if hull_disturbance is not None and tau is not None:
        rho = cp.Variable(n, name="rho")
        constraints += [cp.abs(x_bar) + x_rad <= rho,
                        tau >= cp.hstack(hull_disturbance.convex_bound(rho))]
        aux = aux + cp.sum_squares(rho) + cp.sum_squares(tau)
    problem = cp.Problem(cp.Maximize(cp.geo_mean(s) - ridge * aux), constraints)
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            # cvxpy notes that geo_mean uses SOC constraints (exactly, "error: 0.00e+00").
            warnings.filterwarnings("ignore", message="geo_mean is being approximated")
            problem.solve(solver=solver)
    except cp.SolverError as exc:
        raise RCISetInfeasibleError(f"RCI program for {system.name!r}: the solver failed "
                                    f"({exc}); the program may be nearly infeasible",
                                    "solver_error") from exc
    wall = time.perf_counter() - t0
    if problem.status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE):
        raise RCISetInfeasibleError(
            f"no zonotopic RCI set of this form exists for {system.name!r} with horizon "
            f"{horizon}: the disturbance may be too large for the state/input constraints",
            str(problem.status))

    # Rebuild the certificate in numpy from the free variables (exact zeros stay exact, so a
    # decoupled system keeps its product structure) and check it without solver tolerances.
    BP = B @ P
    Mt_val = [_value(Mi, "M") for Mi in M_tilde]
    s_val, x_bar_v, u_bar_v = _value(s, "s"), _value(x_bar, "x_bar"), _value(u_bar, "u_bar")
    tau_val = _value(tau, "tau") if tau is not None else np.zeros(0)
    E_used = np.hstack([W.generators, G_h * tau_val])
    T_val = [np.hstack([E_used, F0 * s_val])]
    for i in range(horizon - 1):
        T_val.append(A @ T_val[-1] + BP @ Mt_val[i])
    rhs = np.hstack([((A - np.eye(n)) @ x_bar_v + B @ u_bar_v + c_w)[:, None],
                     A @ T_val[-1] + BP @ Mt_val[-1]])
    terminal = _value(Gam, "terminal")
    # Least-norm correction so that F0 [γ, Γ'] equals the recomputed right-hand side exactly.
    terminal = terminal + np.linalg.pinv(F0) @ (rhs - F0 @ terminal)
    ctrl = RCIController(x_bar=x_bar_v, u_bar=u_bar_v, M=np.stack([P @ Mi for Mi in Mt_val]),
                         T=np.stack(T_val), template=F0, scales=s_val, terminal=terminal,
                         c_w=c_w)
    issues = certificate_violations(ctrl, A, B, E_used, X_box, U_box)
    X = Zonotope(x_bar_v + system.x_eq, np.concatenate(T_val, axis=1))
    lo, hi = X.interval_hull()
    W_final, extra = W, {}
    if hull_disturbance is not None:
        rho_val = np.maximum(np.abs(lo - system.x_eq), np.abs(hi - system.x_eq))
        tau_exact = np.asarray(hull_disturbance.exact_bound(rho_val), dtype=np.float64)
        if np.any(tau_exact > tau_val * (1 + 1e-9) + 1e-12):
            issues.append("hull-dependent disturbance bound exceeds the one designed for")
        W_final = W + Zonotope(np.zeros(n), G_h * tau_exact)
        extra = {"hull_radius": rho_val.tolist(), "tau_designed": tau_val.tolist(),
                 "tau_final": tau_exact.tolist(),
                 "hull_disturbance": hull_disturbance.description}
    if issues:
        raise RCISetInfeasibleError(
            f"the solver's answer for {system.name!r} (horizon {horizon}) fails the invariance "
            f"check: {'; '.join(issues)}; the program is probably (nearly) infeasible",
            str(problem.status))
    diagnostics: dict[str, Any] = {
        "status": str(problem.status), "solver": solver, "horizon": horizon,
        "objective": float(problem.value), "n_generators": X.n_generators,
        "template_size": f, "min_scale": float(s_val.min()),
        "interval_hull_lower": lo.tolist(), "interval_hull_upper": hi.tolist(),
        "wall_time_s": wall, **extra,
    }
    stats = problem.solver_stats
    result = RCISet(
        system=system.name, set=X, A=A, B=B, c=system.c, disturbance=W_final,
        state_box=state_box if state_box is not None else system.state_box,
        input_box=system.input_box, x_eq=system.x_eq, u_eq=system.u_eq, controller=ctrl,
        solve_time=float(stats.solve_time) if stats.solve_time is not None else wall,
        diagnostics=diagnostics,
    )
    try:
        diagnostics["volume_ratio"] = result.volume_ratio()
    except ValueError:  # too many generators for an exact volume
        diagnostics["volume_ratio"] = None
    return result

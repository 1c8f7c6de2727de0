r"""The course's stored RCI sets: pendulum and 2-D quadrotor (Chapter 3).

Everyone else calls :func:`load_rci`; :func:`build_rci` recomputes a set from the parameters
in :mod:`tutorial_rl.systems` (``python -m tutorial_rl.sets.rci_systems --system NAME`` writes it).

Pendulum: linearization error bound
-----------------------------------
The simulator is ``f(x, u) = A_e x + B_e u + a·dt·[dt, 1]ᵀ (sin θ − θ)`` (semi-implicit Euler,
``a = 3g/(2l)``, ``A_e``, ``B_e`` its Jacobians at the origin), while the safe sets use the
exact discretization ``A_d``, ``B_d`` of the linearization. Hence, exactly,

.. math::

    f(x, u) + w − (A_d x + B_d u) = (A_e − A_d) x + (B_e − B_d) u
        + a\,dt\,[dt, 1]^⊤ (\sin θ − θ) + w .

For ``x ∈ X ⊆ [−ρ_θ, ρ_θ] × [−ρ_ω, ρ_ω]`` and ``|u| <= u_max`` each term lies in a zonotope:
``(A_e − A_d) x ∈ ⟨0, (A_e − A_d) diag(ρ_θ, ρ_ω)⟩``, ``(B_e − B_d) u ∈ ⟨0, (B_e − B_d) u_max⟩``,
and ``|sin θ − θ| <= ρ_θ − sin ρ_θ`` (``θ − sin θ`` is odd and increasing), which is at most
the Taylor remainder ``ρ_θ³/6``. Since ``ρ − sin ρ`` is convex on ``[0, π]``, its chord
interpolant ``ψ(ρ)`` on an 81-point grid over ``[0, 2]`` is a convex, non-decreasing upper
bound (error ``< 1e-4``, tighter than ``ρ³/6``) that a convex program can handle. The
disturbance the set is designed for is therefore

.. math::

    W = [−0.1, 0.1]^2 ⊕ ⟨0, (B_e − B_d) u_max⟩ ⊕ ⟨0, (A_e − A_d)\operatorname{diag}(ρ_θ, ρ_ω)⟩
        ⊕ ⟨0, a\,dt\,[dt, 1]^⊤ ψ(ρ_θ)⟩ ,

with ``ρ`` a decision variable bounded below by the set's own interval hull (no outer
iteration is needed: the fixed point "bound over the set ⇄ set for the bound" is one convex
program). The *stored* ``W`` re-evaluates the bound at the final hull with the exact
``ρ_θ − sin ρ_θ`` (tighter, still rigorous); :func:`tutorial_rl.sets.verification` checks
invariance through the nonlinear simulator.

Quadrotor
---------
Lateral ``(x, ẋ, θ, θ̇)`` and vertical ``(z, ż)`` dynamics are decoupled; they share only the
thrust box. The feedback is structured in the basis ``v = u1 + u2`` (vertical) and
``δ = u2 − u1`` (lateral), so the RCI set is a product of a 4-D and a 2-D zonotope: its facets
(and the safe action polygon's 8 edge directions) stay few. The lateral template is refined
by a few rounds of principal axes of the previous set (keeping the largest volume); the
vertical template has four directions so that the set can cut the box's braking corners.
The disturbance is one-sided, ``w ∈ [0, 0.08]²``, as in the paper's code.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import zipfile
from pathlib import Path
from typing import Any

import cvxpy as cp
import numpy as np

from tutorial_rl.sets.rci import (
    HullDependentDisturbance,
    RCIController,
    RCISet,
    compute_rci,
)
from tutorial_rl.sets.zonotope import Zonotope
from tutorial_rl.systems import (
    Box,
    PendulumParameters,
    QuadrotorParameters,
    pendulum_euler_linearization,
    pendulum_linear_model,
    quadrotor_linear_model,
)

__all__ = [
    "BUILDERS",
    "DATA_DIR",
    "build_pendulum_rci",
    "build_quadrotor_rci",
    "build_rci",
    "direction_template",
    "load_rci",
    "load_rci_file",
    "pendulum_model_error",
    "save_rci",
]

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
"""Where the stored sets live (``src/tutorial_rl/data``)."""

#: Quadrotor coordinate blocks: lateral (x, ẋ, θ, θ̇) and vertical (z, ż).
LATERAL, VERTICAL = np.array([0, 2, 4, 5]), np.array([1, 3])
#: (v, δ) -> (u1, u2): u1 = (v − δ)/2, u2 = (v + δ)/2.
THRUST_BASIS = np.array([[0.5, -0.5], [0.5, 0.5]])


def direction_template(half_widths: np.ndarray, k: int, dims: np.ndarray | None = None,
                       n: int | None = None) -> np.ndarray:
    """``k`` directions evenly spread over a half-circle, scaled to the box (a 2-D template).

    :param half_widths: box half-widths of the plane's two coordinates.
    :param dims: the two coordinates of an ``n``-D state they live in (default ``[0, 1]``).
    """
    angles = np.pi * np.arange(k) / k
    dims = np.array([0, 1]) if dims is None else np.asarray(dims)
    F = np.zeros((n or 2, k))
    F[dims[0]] = np.cos(angles) * half_widths[0]
    F[dims[1]] = np.sin(angles) * half_widths[1]
    return F


# ------------------------------------------------------------------------------ pendulum
def pendulum_model_error(
    params: PendulumParameters = PendulumParameters(),  # noqa: B008 - frozen
    discretization: str = "exact",
) -> tuple[Zonotope, HullDependentDisturbance]:
    """Noise plus the rigorous bound on simulator − model (module docstring).

    :returns: the fixed part ``[−nb, nb]² ⊕ ⟨0, (B_e − B_d) u_max⟩`` and the hull-dependent
        part with generators ``[(A_e − A_d) e_1, (A_e − A_d) e_2, a·dt·[dt, 1]]`` scaled by
        ``[ρ_θ, ρ_ω, ψ(ρ_θ)]`` (design, ``ψ`` the chord bound) or
        ``[ρ_θ, ρ_ω, ρ_θ − sin ρ_θ]`` (stored).
    """
    model = pendulum_linear_model(params, discretization)
    A_e, B_e = pendulum_euler_linearization(params)
    nb = params.noise_bound
    fixed = Zonotope.from_box([-nb, -nb], [nb, nb]) + Zonotope(
        np.zeros(2), (B_e - model.B) * params.max_torque)
    a, dt = params.gravity_coefficient, params.dt
    G = np.column_stack([(A_e - model.A)[:, 0], (A_e - model.A)[:, 1],
                         a * dt * np.array([dt, 1.0])])

    # θ − sin θ is convex on [0, π], so its chord interpolant on a grid lies above it and is
    # the maximum of its (extended) chords: a DCP-convex, non-decreasing upper bound that is
    # tighter than the Taylor bound ρ³/6 (0.168 vs 0.178 at ρ = 1.02).
    grid = np.linspace(0.0, min(params.theta_bound, np.pi), 81)
    vals = grid - np.sin(grid)
    slopes = np.diff(vals) / np.diff(grid)
    intercepts = vals[:-1] - slopes * grid[:-1] + 1e-12  # + rounding guard

    def convex_bound(rho: cp.Expression) -> list[cp.Expression]:
        return [rho[0], rho[1], cp.max(slopes * rho[0] + intercepts)]

    def exact_bound(rho: np.ndarray) -> np.ndarray:
        return np.array([rho[0], rho[1], rho[0] - np.sin(rho[0])])

    hull = HullDependentDisturbance(
        generators=G, convex_bound=convex_bound, exact_bound=exact_bound,
        description="(A_e-A_d)·box(rho) + (B_e-B_d)·U + a·dt·[dt,1]·(sin θ-θ) with "
                    "|sin θ-θ| <= chord interpolant of ρ-sin ρ (design, grid 0.025) and "
                    "ρ_θ-sin ρ_θ at the final hull (stored)",
    )
    return fixed, hull


def build_pendulum_rci(
    params: PendulumParameters = PendulumParameters(),  # noqa: B008
    discretization: str = "exact",
    horizon: int = 10,
    directions: int = 8,
) -> RCISet:
    """RCI set of the pendulum, robust to noise *and* to the nonlinear simulator.

    :param discretization: linear model, ``"exact"`` (the course's) or ``"euler"``.
    :param horizon: tube length; ``10`` with ``8`` template directions was the best
        trade-off between area and generator count in a sweep of ``h ∈ [2, 20]``.
    """
    model = pendulum_linear_model(params, discretization)
    fixed, hull = pendulum_model_error(params, discretization)
    F0 = direction_template(model.state_box.half_widths, directions)
    rci = compute_rci(model, disturbance=fixed, horizon=horizon, template=F0,
                      hull_disturbance=hull)
    rci.diagnostics["metadata"] = {
        "parameters": dataclasses.asdict(params), "discretization": discretization,
        "horizon": horizon, "template_directions": directions,
        "linearization_error": hull.description,
    }
    return rci


# ------------------------------------------------------------------------------ quadrotor
def _block_mask(columns: np.ndarray) -> np.ndarray:
    """Which template columns the vertical (row 0: v) and lateral (row 1: δ) input see."""
    lateral = np.abs(columns[LATERAL]).sum(axis=0) > 0
    vertical = np.abs(columns[VERTICAL]).sum(axis=0) > 0
    if np.any(lateral & vertical):
        raise ValueError("template column couples the lateral and vertical blocks")
    return np.vstack([vertical, lateral])


def build_quadrotor_rci(
    params: QuadrotorParameters = QuadrotorParameters(),  # noqa: B008
    horizon: int = 7,
    iterations: int = 12,
    vertical_directions: int = 4,
    lateral_template: np.ndarray | None = None,
) -> RCISet:
    """RCI set of the planar quadrotor (exact ZOH model, one-sided disturbance).

    :param horizon: tube length (``7``: a sweep of ``h ∈ [4, 8]`` traded volume against the
        lateral facet count, which grows like ``2·C(5h, 3)``).
    :param iterations: template refinement rounds (principal axes of the previous set).
    :param lateral_template: start (or, with ``iterations=1``, fix) the lateral template
        ``(4, 4)``; default: the state box axes.
    """
    model = quadrotor_linear_model(params)
    hw = model.state_box.half_widths
    W = Zonotope.from_box(model.disturbance_box.lower,
                          model.disturbance_box.upper).linear_map(model.D).compact()
    F_ver = direction_template(hw[VERTICAL], vertical_directions, VERTICAL, 6)
    F_lat = np.zeros((6, 4))
    F_lat[LATERAL] = np.diag(hw[LATERAL]) if lateral_template is None else lateral_template
    best: RCISet | None = None
    volumes = []
    for _ in range(iterations):
        F0 = np.hstack([F_lat, F_ver])
        rci = compute_rci(model, disturbance=W, horizon=horizon, template=F0,
                          input_transform=THRUST_BASIS,
                          input_mask=_block_mask(np.hstack([W.generators, F0])))
        volumes.append(rci.diagnostics["volume_ratio"])
        if best is None or volumes[-1] > best.diagnostics["volume_ratio"]:
            best = rci
        # Next template: principal axes of the lateral part, scaled by singular values.
        U, S, _ = np.linalg.svd(rci.set.generators[LATERAL], full_matrices=False)
        F_lat = np.zeros((6, 4))
        F_lat[LATERAL] = U * S
    assert best is not None
    best.diagnostics["refinement_volume_ratios"] = volumes
    best.diagnostics["metadata"] = {
        "parameters": dataclasses.asdict(params), "horizon": horizon,
        "iterations": iterations, "vertical_directions": vertical_directions,
        "lateral_template": best.controller.template[LATERAL][:, :4].tolist(),
        "disturbance": "one-sided w in [0, 0.08]^2 entering x'' and z'' (ZOH)",
    }
    return best


BUILDERS = {"pendulum": build_pendulum_rci, "quadrotor": build_quadrotor_rci}


def build_rci(system: str) -> RCISet:
    """Recompute the stored set of ``system`` (``"pendulum"`` or ``"quadrotor"``)."""
    if system not in BUILDERS:
        raise ValueError(f"unknown system {system!r}; choose one of {sorted(BUILDERS)}")
    return BUILDERS[system]()


# ------------------------------------------------------------------------------ persistence
_ARRAYS = ("A", "B", "c", "x_eq", "u_eq")
_CTRL = ("x_bar", "u_bar", "M", "T", "template", "scales", "terminal", "c_w")


def save_rci(rci: RCISet, path: str | Path) -> Path:
    """Write ``rci`` to a deterministic ``.npz`` (no timings; metadata as a JSON string)."""
    path = Path(path)
    diag = {k: v for k, v in rci.diagnostics.items() if k != "wall_time_s"}
    arrays: dict[str, np.ndarray] = {
        "set_center": rci.set.center, "set_generators": rci.set.generators,
        "w_center": rci.disturbance.center, "w_generators": rci.disturbance.generators,
        "state_lower": rci.state_box.lower, "state_upper": rci.state_box.upper,
        "input_lower": rci.input_box.lower, "input_upper": rci.input_box.upper,
        "metadata": np.array(json.dumps({"system": rci.system, "diagnostics": diag},
                                        sort_keys=True, indent=1)),
    }
    arrays.update({k: getattr(rci, k) for k in _ARRAYS})
    arrays.update({f"ctrl_{k}": getattr(rci.controller, k) for k in _CTRL})
    path.parent.mkdir(parents=True, exist_ok=True)
    # Like np.savez, but with fixed zip timestamps: same numbers, same bytes (clean git diffs).
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, value in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(info, "w") as fh:
                np.lib.format.write_array(fh, np.asanyarray(value), allow_pickle=False)
    return path


def load_rci_file(path: str | Path) -> RCISet:
    """Read an ``.npz`` written by :func:`save_rci`."""
    with np.load(Path(path), allow_pickle=False) as data:
        meta: dict[str, Any] = json.loads(str(data["metadata"]))
        return RCISet(
            system=meta["system"],
            set=Zonotope(data["set_center"], data["set_generators"]),
            disturbance=Zonotope(data["w_center"], data["w_generators"]),
            state_box=Box(data["state_lower"], data["state_upper"]),
            input_box=Box(data["input_lower"], data["input_upper"]),
            controller=RCIController(**{k: data[f"ctrl_{k}"] for k in _CTRL}),
            diagnostics=meta["diagnostics"],
            **{k: data[k] for k in _ARRAYS},
        )


@functools.lru_cache(maxsize=8)
def load_rci(system: str) -> RCISet:
    """The stored RCI set of ``system`` (``"pendulum"`` or ``"quadrotor"``), cached.

    :raises FileNotFoundError: if the data file is missing (regenerate it with
        ``python -m tutorial_rl.sets.rci_systems --system NAME``).
    """
    if system not in BUILDERS:
        raise ValueError(f"unknown system {system!r}; choose one of {sorted(BUILDERS)}")
    path = DATA_DIR / f"{system}_rci.npz"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; regenerate it with "
                                f"`python -m tutorial_rl.sets.rci_systems --system {system}`")
    return load_rci_file(path)

def main(argv: list[str] | None = None) -> None:
    """CLI: ``python -m tutorial_rl.sets.rci_systems --system pendulum|quadrotor --out DIR``."""
    parser = argparse.ArgumentParser(
        description="Compute a stored RCI set (see tutorial_rl.sets.rci and rci_systems).")
    parser.add_argument("--system", choices=sorted(BUILDERS), required=True)
    parser.add_argument("--out", type=Path, default=DATA_DIR)
    args = parser.parse_args(argv)
    rci = build_rci(args.system)
    path = save_rci(rci, args.out / f"{args.system}_rci.npz")
    d = rci.diagnostics
    print(f"{args.system}: {d['n_generators']} generators, volume ratio "
          f"{d['volume_ratio']:.4f}, solve {rci.solve_time:.3f} s -> {path}")


if __name__ == "__main__":
    main()

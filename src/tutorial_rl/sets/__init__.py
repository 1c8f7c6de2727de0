"""Safe sets for action projection: zonotopes, RCI sets, safe action sets (Chapters 2-4).

Modules (one concept each):

* :mod:`~tutorial_rl.sets.zonotope`: :class:`Zonotope` and its operations (Chapter 2).
* :mod:`~tutorial_rl.sets.containment`: the Ghasemi containment constraints (paper eq. (32)).
* :mod:`~tutorial_rl.sets.rci`: the RCI convex program; :mod:`~tutorial_rl.sets.rci_systems` the
  course's two systems and the CLI that regenerates the data.
* :mod:`~tutorial_rl.sets.rci_systems`: the pendulum/quadrotor sets, :func:`load_rci`.
* :mod:`~tutorial_rl.sets.safe_actions`: :class:`LinearSafeActionSet` (fast halfspace path and
  containment QP), :func:`containment_coverage`.
* :mod:`~tutorial_rl.sets.verification`: :func:`verify_invariance`.
* :mod:`~tutorial_rl.sets.polygon`, :mod:`~tutorial_rl.sets.plotting`: small helpers.

Names from modules that need cvxpy solves or matplotlib are imported lazily, so that
``python -m tutorial_rl.sets.rci_systems`` runs without importing itself twice.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tutorial_rl.sets.zonotope import Zonotope, coordinate_blocks

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from tutorial_rl.sets.containment import (
        ContainmentVariables,
        containment_constraints,
        is_contained,
    )
    from tutorial_rl.sets.plotting import plot_polygon, plot_zonotope
    from tutorial_rl.sets.polygon import ordered_vertices, polygon_area, polygon_vertices
    from tutorial_rl.sets.rci import (
        HullDependentDisturbance,
        RCIController,
        RCISet,
        RCISetInfeasibleError,
        certificate_violations,
        compute_rci,
    )
    from tutorial_rl.sets.rci_systems import build_rci, load_rci, load_rci_file, save_rci
    from tutorial_rl.sets.safe_actions import (
        ContainmentQP,
        CoverageReport,
        EmptySafeActionSetError,
        LinearSafeActionSet,
        containment_coverage,
        pendulum_safe_action_set,
        quadrotor_safe_action_set,
    )
    from tutorial_rl.sets.verification import VerificationReport, verify_invariance

_LAZY = {
    "containment": ["ContainmentVariables", "containment_constraints", "is_contained"],
    "plotting": ["plot_polygon", "plot_zonotope"],
    "polygon": ["ordered_vertices", "polygon_area", "polygon_vertices"],
    "rci": ["HullDependentDisturbance", "RCIController", "RCISet", "RCISetInfeasibleError",
            "certificate_violations", "compute_rci"],
    "rci_systems": ["build_rci", "load_rci", "load_rci_file", "save_rci"],
    "safe_actions": ["ContainmentQP", "CoverageReport", "EmptySafeActionSetError",
                     "LinearSafeActionSet", "containment_coverage", "pendulum_safe_action_set",
                     "quadrotor_safe_action_set"],
    "verification": ["VerificationReport", "verify_invariance"],
}
_WHERE = {name: module for module, names in _LAZY.items() for name in names}

__all__ = [
    "ContainmentQP",
    "ContainmentVariables",
    "CoverageReport",
    "EmptySafeActionSetError",
    "HullDependentDisturbance",
    "LinearSafeActionSet",
    "RCIController",
    "RCISet",
    "RCISetInfeasibleError",
    "VerificationReport",
    "Zonotope",
    "build_rci",
    "certificate_violations",
    "compute_rci",
    "containment_constraints",
    "containment_coverage",
    "coordinate_blocks",
    "is_contained",
    "load_rci",
    "load_rci_file",
    "ordered_vertices",
    "pendulum_safe_action_set",
    "plot_polygon",
    "plot_zonotope",
    "polygon_area",
    "polygon_vertices",
    "quadrotor_safe_action_set",
    "save_rci",
    "verify_invariance",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(f"tutorial_rl.sets.{_WHERE[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tutorial_rl.sets' has no attribute {name!r}")

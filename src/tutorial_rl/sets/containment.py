"""Zonotope-in-zonotope containment (Chapter 2, ``chapters/02_zonotopes.py``).

Deciding ``Z1 ⊆ Z2`` for zonotopes is co-NP-complete in general (Kulmburg & Althoff 2021).
The paper (A.1, eq. 32) uses the *sufficient* linear condition of Ghasemi et al. (2020, Lemma 1):

.. math::

    ⟨c_1, G_1⟩ ⊆ ⟨c_2, G_2⟩ \\;\\Leftarrow\\; ∃\\, Γ, β:\\;
    G_1 = G_2 Γ,\\quad c_2 − c_1 = G_2 β,\\quad ‖[Γ, β]‖_∞ <= 1,

where ``‖·‖∞`` is the maximum absolute row sum. It is linear in ``(c1, G1, Γ, β)``, so it can sit
inside larger convex programs (the safe action set, paper eq. (12b), ``c1`` depending on ``u``).
:func:`is_contained` also offers exact checks (facets of ``Z2`` against the support function
of ``Z1``, or the vertices of ``Z1`` in 2-D) to measure how conservative the condition is.
"""

from __future__ import annotations

from dataclasses import dataclass

import cvxpy as cp
import numpy as np

from tutorial_rl.sets.zonotope import Zonotope

__all__ = ["ContainmentVariables", "containment_constraints", "is_contained"]

ArrayOrExpr = np.ndarray | cp.Expression


@dataclass(frozen=True)
class ContainmentVariables:
    """The auxiliary variables of the Ghasemi containment condition.

    :param Gamma: ``Γ``, shape ``(p2, p1)``, with ``G1 = G2 Γ``.
    :param beta: ``β``, shape ``(p2,)``, with ``c2 − c1 = G2 β``.
    """

    Gamma: cp.Variable
    beta: cp.Variable


def containment_constraints(
    c1: ArrayOrExpr,
    G1: ArrayOrExpr,
    outer: Zonotope | tuple[ArrayOrExpr, ArrayOrExpr],
) -> tuple[list[cp.Constraint], ContainmentVariables]:
    """cvxpy constraints that imply ``⟨c1, G1⟩ ⊆ outer`` (Ghasemi et al. 2020, Lemma 1).

    :param c1: centre of the inner zonotope: an array or a cvxpy expression of shape ``(n,)``
        (e.g. ``A @ x + B @ u`` with ``u`` a variable).
    :param G1: inner generators ``(n, p1)``, array or expression.
    :param outer: the outer zonotope, or ``(c2, G2)`` with ``G2`` a constant array.
    :returns: the constraint list and the auxiliary variables ``(Γ, β)`` it introduced.
    """
    if isinstance(outer, Zonotope):
        c2, G2 = outer.center, outer.generators
    else:
        c2, G2 = outer
    n, p2 = G2.shape
    p1 = G1.shape[1] if len(G1.shape) == 2 else 0
    if tuple(c1.shape) != (n,) or (p1 and G1.shape[0] != n):
        raise ValueError(f"inner zonotope shapes {c1.shape}, {G1.shape} do not match outer "
                         f"dimension {n}")
    beta = cp.Variable(p2, name="beta")
    constraints: list[cp.Constraint] = [G2 @ beta == c2 - c1]
    if p1:
        Gamma = cp.Variable((p2, p1), name="Gamma")
        constraints.append(G2 @ Gamma == G1)
        row_sums = cp.sum(cp.abs(Gamma), axis=1) + cp.abs(beta)
    else:
        Gamma = cp.Variable((p2, 0), name="Gamma")
        row_sums = cp.abs(beta)
    constraints.append(row_sums <= 1)
    return constraints, ContainmentVariables(Gamma=Gamma, beta=beta)


def is_contained(
    inner: Zonotope, outer: Zonotope, method: str = "ghasemi", tol: float = 1e-7
) -> bool:
    """Whether ``inner ⊆ outer``.

    :param method: ``"ghasemi"``: the sufficient LP above (``True`` is a proof, ``False`` may
        be a false negative); ``"halfspaces"``: exact, ``h_inner(H_i) <= h_i`` for every
        facet ``H_i x <= h_i`` of ``outer``; ``"vertices"``: exact in 2-D, every vertex of
        ``inner`` lies in ``outer``.
    :param tol: absolute slack for the exact checks and the LP row sums.
    """
    if inner.dim != outer.dim:
        raise ValueError(f"dimension mismatch: {inner.dim} vs {outer.dim}")
    if method == "halfspaces":
        H, h = outer.halfspaces()
        return bool(np.all(inner.support(H) <= h + tol))
    if method == "vertices":
        if inner.dim != 2:
            raise ValueError("method='vertices' is exact only in 2-D; use 'halfspaces'")
        return bool(np.all(outer.contains_point(inner.vertices_2d(), tol=tol)))
    if method != "ghasemi":
        raise ValueError(f"method must be 'ghasemi', 'halfspaces' or 'vertices', got {method!r}")
    # Minimise the largest row sum: feasible with value <= 1 iff the condition holds, and the
    # problem is always feasible when G2 has full row rank (so no infeasibility status to parse).
    cons, v = containment_constraints(inner.center, inner.generators, outer)
    t = cp.Variable(name="t")
    cons = cons[:-1]
    rows = cp.abs(v.beta)
    if inner.n_generators:
        rows = rows + cp.sum(cp.abs(v.Gamma), axis=1)
    prob = cp.Problem(cp.Minimize(t), [*cons, rows <= t])
    prob.solve(solver=cp.CLARABEL)
    if prob.status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE):
        return False  # equality constraints unsatisfiable: G1 or c2 − c1 outside range(G2)
    return bool(t.value <= 1.0 + tol)

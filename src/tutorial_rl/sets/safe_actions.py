r"""Safe action sets ``U_s(x) = {u ∈ U : A x + B u + c ⊕ W ⊆ X_rci}`` (Chapter 4).

Two equivalent-in-spirit descriptions are provided, because the course compares them:

(a) **Containment form** (paper A.1, eq. (32)): ``u`` is safe if the zonotope
    ``⟨A x + B u + c + c_W, G_W⟩`` passes the Ghasemi containment test against
    ``X_rci = ⟨c_X, G_X⟩``, with auxiliary variables ``Γ, β``. It is a QP with equality
    constraints (:meth:`LinearSafeActionSet.containment_problem`), *sufficient* only, so its
    feasible set can be smaller than ``U_s(x)`` (:func:`containment_coverage` measures by how
    much). For the course's stored sets it loses nothing (coverage 1 up to solver tolerance):
    the RCI parameterization puts ``W``'s generators (scaled by at most 1) among those of
    ``X_rci = X' ⊕ W``, so ``Γ`` can select them and the condition reduces to
    ``c − c_X ∈ X'``, which is exactly ``X_rci ⊖ W``.

(b) **Exact halfspace form** (the fast path): with ``X_rci = {z : H z <= h}`` (facets computed
    once), ``X_rci ⊖ W = {z : H z <= h − h_W(H)}`` exactly, so

    .. math:: U_s(x) = \{u ∈ U : (H B) u <= h − h_W(H) − H c − H A x\} ,

    a polytope in action space whose rows do not depend on ``x``. Rows with ``H B = 0`` are
    state-only conditions (checked, to detect emptiness); rows with parallel ``H B`` are merged
    into one row whose offset is the minimum, so the pendulum gets an interval (2 rows) and the
    quadrotor an octagon (thrust box + one ± pair per decoupled subsystem).

Where ``x`` is outside ``X_rci`` (or ``U_s(x)`` is empty) :meth:`halfspaces` returns the rows
with every offset ``−1``, an empty set that :meth:`is_empty` reports; never a silently wrong
answer.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import cvxpy as cp
import numpy as np
import scipy.optimize

from tutorial_rl.sets.containment import containment_constraints
from tutorial_rl.sets.polygon import polygon_area, polygon_vertices
from tutorial_rl.sets.rci import RCISet
from tutorial_rl.sets.rci_systems import load_rci

__all__ = [
    "ContainmentQP",
    "CoverageReport",
    "EmptySafeActionSetError",
    "LinearSafeActionSet",
    "containment_coverage",
    "pendulum_safe_action_set",
    "quadrotor_safe_action_set",
]

_EMPTY_OFFSET = -1.0  # every row ``a·u <= −1``: with ± box rows present, an empty set


class EmptySafeActionSetError(ValueError):
    """No safe action exists for the given state (it is outside the RCI set)."""


@dataclass(frozen=True)
class ContainmentQP:
    """The containment-form projection (a) as a parametrized cvxpy problem.

    ``problem, parameters = safe_set.containment_problem()`` unpacks to the problem and
    ``[x, u_tilde]`` (ready for ``CvxpyLayer(problem, parameters, variables)``).
    """

    problem: cp.Problem
    x: cp.Parameter
    u_tilde: cp.Parameter
    u: cp.Variable

    @property
    def parameters(self) -> list[cp.Parameter]:
        """``[x, u_tilde]``."""
        return [self.x, self.u_tilde]

    @property
    def variables(self) -> list[cp.Variable]:
        """``[u]``."""
        return [self.u]

    def __iter__(self) -> Iterator[Any]:
        yield self.problem
        yield self.parameters


class LinearSafeActionSet:
    """Safe action sets of a linear(ized) system with an RCI set (module docstring).

    For the pendulum, ``W`` contains the bound on simulator − model, which holds for states in
    ``X_rci`` (it was computed over the set's interval hull): the guarantee for the nonlinear
    simulator is for states in ``X_rci`` and actions in ``U_s(x)``.

    :param rci: the RCI set with its model (``x⁺ = A x + B u + c + w``, ``w ∈ W``).
    :param state_tol: slack (state units, on unit-norm facets) for :meth:`contains_state`;
        states this close to ``X_rci`` still get their exact ``U_s(x)``.
    :param tol: slack for emptiness decisions in action space.
    """

    def __init__(self, rci: RCISet, state_tol: float = 1e-7, tol: float = 1e-9) -> None:
        self.rci = rci
        self.A, self.B, self.c = rci.A, rci.B, rci.c
        self.X, self.W, self.input_box = rci.set, rci.disturbance, rci.input_box
        self.n_states, self.n_inputs = self.B.shape
        self.state_tol, self.tol = state_tol, tol
        H, h = self.X.halfspaces()
        self._H, self._h = H, h
        # Augmented [H; −h]ᵀ: one matmul of [x, 1] gives H x − h (fewer passes over memory).
        # C order: BLAS multiplies [N, n+1] @ [n+1, k] several times faster than with the
        # transposed (Fortran-order) layout vstack would keep
        self._H_aug = np.ascontiguousarray(np.vstack([H.T, -h[None, :]]))
        g = h - self.W.support(H) - H @ self.c  # X ⊖ W, shifted by the affine term
        HB, HA = H @ self.B, H @ self.A
        norms = np.linalg.norm(HB, axis=1)
        u_abs = np.maximum(np.abs(self.input_box.lower), np.abs(self.input_box.upper))
        state_only = norms <= 1e-12 * np.linalg.norm(self.B)
        # State-only rows: HA x <= g − |HB| |u|max (the tiny HB u term bounded over U).
        self._S = HA[state_only]
        self._s = g[state_only] - np.abs(HB[state_only]) @ u_abs
        act = ~state_only
        D = HB[act] / norms[act, None]
        R, r = HA[act] / norms[act, None], g[act] / norms[act]
        # Merge rows with (numerically) equal directions; the offset loses |d_j − d_g|·|u|max
        # so the merged row stays an inner (never an outer) description.
        m = self.n_inputs
        box_dirs = np.vstack([np.eye(m), -np.eye(m)])
        box_off = np.concatenate([self.input_box.upper, -self.input_box.lower])
        dirs: list[np.ndarray] = []
        member: list[int] = []
        for d in np.vstack([box_dirs, D]):
            match = [i for i, e in enumerate(dirs) if np.abs(e - d).sum() < 1e-9]
            if match:
                member.append(match[0])
            else:
                dirs.append(d)
                member.append(len(dirs) - 1)
        members = np.array(member)
        self.action_rows = np.array(dirs)
        self.action_rows.setflags(write=False)
        self._box_offsets = np.full(len(dirs), np.inf)
        self._box_offsets[members[: 2 * m]] = box_off  # ±e_i: never merged with each other
        fm = members[2 * m:]
        slack = np.abs(self.action_rows[fm] - D).sum(axis=1) * u_abs.max()
        order = np.argsort(fm, kind="stable")
        self._R, self._r = R[order], (r - slack)[order]
        # [x, 1] @ R_aug = r − R x (C order, as _H_aug)
        self._R_aug = np.ascontiguousarray(np.vstack([-self._R.T, self._r[None, :]]))
        self._groups, self._starts = np.unique(fm[order], return_index=True)

    # ------------------------------------------------------------------ input handling
    def _states(self, x: np.ndarray) -> tuple[np.ndarray, bool]:
        x = np.asarray(x, dtype=np.float64)
        single = x.ndim == 1
        x2 = np.atleast_2d(x)
        if x2.ndim != 2 or x2.shape[1] != self.n_states:
            raise ValueError(f"state must have shape ({self.n_states},) or "
                             f"(N, {self.n_states}), got {x.shape}")
        if not np.all(np.isfinite(x2)):
            raise ValueError("state contains NaN or inf")
        return x2, single

    @property
    def n_rows(self) -> int:
        """Number ``k`` of action-space rows returned by :meth:`halfspaces`."""
        return int(self.action_rows.shape[0])

    # ------------------------------------------------------------------ fast path (b)
    def offsets(self, x: np.ndarray) -> np.ndarray:
        """Offsets ``b(x)`` of the exact ``U_s(x) = {u : action_rows u <= b(x)}``, ``(N, k)``.

        No emptiness marker is applied (see :meth:`halfspaces`).
        """
        x2, _ = self._states(x)
        out = np.tile(self._box_offsets, (len(x2), 1))
        if len(self._r) == 0:
            return out
        chunk = max(1, 1_000_000 // len(self._r))  # cache-sized blocks
        for i in range(0, len(x2), chunk):
            xa = np.hstack([x2[i:i + chunk], np.ones((len(x2[i:i + chunk]), 1))])
            mins = np.minimum.reduceat(xa @ self._R_aug, self._starts, axis=1)
            out[i:i + chunk, self._groups] = np.minimum(out[i:i + chunk, self._groups], mins)
        return out

    def halfspaces(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``U_s(x) = {u : A u <= b}``: ``A (k, m), b (k,)`` or ``A (N, k, m), b (N, k)``.

        Exact for states in ``X_rci``; includes the input box. For a state outside
        ``X_rci`` (beyond ``state_tol``) or with empty ``U_s(x)`` all offsets are ``−1``.
        """
        x2, single = self._states(x)
        b = self.offsets(x2)
        b[self._empty(x2, b)] = _EMPTY_OFFSET
        if single:
            return self.action_rows.copy(), b[0]
        return np.broadcast_to(self.action_rows, (len(x2), *self.action_rows.shape)).copy(), b

    def contains_state(self, x: np.ndarray) -> bool | np.ndarray:
        """Whether ``x ∈ X_rci`` (exact facet test, up to ``state_tol``)."""
        x2, single = self._states(x)
        inside = np.empty(len(x2), dtype=bool)
        chunk = max(1, 1_000_000 // len(self._h))
        for i in range(0, len(x2), chunk):
            xa = np.hstack([x2[i:i + chunk], np.ones((len(x2[i:i + chunk]), 1))])
            inside[i:i + chunk] = (xa @ self._H_aug).max(axis=1) <= self.state_tol
        return bool(inside[0]) if single else inside

    def is_empty(self, x: np.ndarray) -> bool | np.ndarray:
        """Whether :meth:`halfspaces` describes the empty set at ``x``."""
        x2, single = self._states(x)
        empty = self._empty(x2, self.offsets(x2))
        return bool(empty[0]) if single else empty

    def _empty(self, x2: np.ndarray, b: np.ndarray) -> np.ndarray:
        empty = ~np.asarray(self.contains_state(x2), dtype=bool).reshape(-1)
        if len(self._s):
            empty |= np.any(x2 @ self._S.T > self._s + self.tol, axis=1)
        scale = 1.0 + np.abs(b).max(axis=1)
        if self.n_inputs == 1:
            up = self.action_rows[:, 0] > 0
            empty |= b[:, up].min(axis=1) + b[:, ~up].min(axis=1) < -self.tol * scale
        elif self.n_inputs == 2:
            _, valid = polygon_vertices(self.action_rows, b, self.tol)
            empty |= ~valid.any(axis=1)
        else:  # general m: one feasibility LP per state
            for i in np.flatnonzero(~empty):
                res = scipy.optimize.linprog(np.zeros(self.n_inputs), A_ub=self.action_rows,
                                             b_ub=b[i] + self.tol * scale[i],
                                             bounds=[(None, None)] * self.n_inputs)
                empty[i] = res.status != 0
        return empty

    def safe_interval(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For one input: ``U_s(x) = [lower, upper]`` (``lower > upper`` when empty)."""
        if self.n_inputs != 1:
            raise ValueError("safe_interval needs a single input; use halfspaces")
        A, b = self.halfspaces(np.atleast_2d(x))
        up = self.action_rows[:, 0] > 0
        upper = (b[:, up] / self.action_rows[up, 0]).min(axis=1)
        lower = (b[:, ~up] / self.action_rows[~up, 0]).max(axis=1)
        return lower, upper

    # ------------------------------------------------------------------ containment form (a)
    def _containment_constraints(self, x: cp.Expression, u: cp.Variable) -> list[cp.Constraint]:
        c1 = self.A @ x + self.B @ u + self.c + self.W.center
        cons, _ = containment_constraints(c1, self.W.generators, self.X)
        return [*cons, u <= self.input_box.upper, u >= self.input_box.lower]

    def containment_problem(self) -> ContainmentQP:
        """(a): ``min ‖u − ũ‖² s.t. u ∈ U, A x + B u + c ⊕ W ⊆ X_rci`` (paper eq. (32)).

        DPP-compliant in the parameters ``x`` and ``u_tilde`` (wrap it in a ``CvxpyLayer``).
        """
        x = cp.Parameter(self.n_states, name="x")
        u_tilde = cp.Parameter(self.n_inputs, name="u_tilde")
        u = cp.Variable(self.n_inputs, name="u")
        problem = cp.Problem(cp.Minimize(cp.sum_squares(u - u_tilde)),
                             self._containment_constraints(x, u))
        return ContainmentQP(problem=problem, x=x, u_tilde=u_tilde, u=u)

    @functools.cached_property
    def _qp(self) -> ContainmentQP:
        return self.containment_problem()

    def project_containment(self, x: np.ndarray, u_tilde: np.ndarray) -> np.ndarray:
        """Solve (a) with cvxpy/Clarabel (reference path); batched inputs are looped.

        :raises EmptySafeActionSetError: if the containment form has no feasible action.
        """
        x2, single = self._states(x)
        ut = np.atleast_2d(np.asarray(u_tilde, dtype=np.float64))
        if ut.shape != (len(x2), self.n_inputs) or not np.all(np.isfinite(ut)):
            raise ValueError(f"u_tilde must be finite with shape ({self.n_inputs},) or "
                             f"(N, {self.n_inputs}) matching x, got {np.shape(u_tilde)}")
        qp, out = self._qp, np.empty_like(ut)
        for i, (xi, ui) in enumerate(zip(x2, ut, strict=True)):
            qp.x.value, qp.u_tilde.value = xi, ui
            qp.problem.solve(solver=cp.CLARABEL)
            if qp.problem.status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE) or qp.u.value is None:
                raise EmptySafeActionSetError(
                    f"containment form infeasible at state {xi.tolist()} "
                    f"(solver status {qp.problem.status!r}): no certified safe action")
            out[i] = qp.u.value
        return out[0] if single else out

    @functools.cached_property
    def _support_lp(self) -> tuple[cp.Problem, cp.Parameter, cp.Parameter, cp.Variable]:
        x = cp.Parameter(self.n_states)
        d = cp.Parameter(self.n_inputs)
        u = cp.Variable(self.n_inputs)
        prob = cp.Problem(cp.Maximize(d @ u), self._containment_constraints(x, u))
        return prob, x, d, u

    def containment_support_points(self, x: np.ndarray, directions: np.ndarray) -> np.ndarray:
        """Maximisers of ``dᵀu`` over the containment-form set at one state, ``(K, m)``.

        Rows are ``nan`` where the containment form is infeasible.
        """
        prob, xp, dp, u = self._support_lp
        xp.value = self._states(x)[0][0]
        out = np.full((len(directions), self.n_inputs), np.nan)
        for k, d in enumerate(directions):
            dp.value = d
            prob.solve(solver=cp.CLARABEL)
            if prob.status in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE) and u.value is not None:
                out[k] = u.value
        return out


@dataclass(frozen=True)
class CoverageReport:
    """How much of the exact ``U_s(x)`` the containment form (a) keeps.

    :param ratios: per state, length (1-D) or area (2-D) of the containment-form set divided
        by that of the exact set; ``nan`` where the exact set is degenerate.
    :param states: the states used.
    """

    ratios: np.ndarray
    states: np.ndarray

    @property
    def mean(self) -> float:
        """Mean ratio over non-degenerate states."""
        return float(np.nanmean(self.ratios))

    @property
    def median(self) -> float:
        """Median ratio."""
        return float(np.nanmedian(self.ratios))

    @property
    def minimum(self) -> float:
        """Smallest ratio."""
        return float(np.nanmin(self.ratios))


def containment_coverage(safe_set: LinearSafeActionSet, states: np.ndarray,
                         n_directions: int = 32) -> CoverageReport:
    """Measure (a) against (b) at ``states`` (Chapter 4's coverage figure).

    1-D inputs: exact interval lengths from two LPs. 2-D inputs: the containment-form set is
    approximated from inside by the convex hull of its maximisers in ``n_directions``
    directions (so the ratio is a slight under-estimate), the exact polygon from its vertices.
    """
    X, _ = safe_set._states(states)
    m = safe_set.n_inputs
    if m == 1:
        dirs = np.array([[1.0], [-1.0]])
    elif m == 2:
        ang = 2 * np.pi * np.arange(n_directions) / n_directions
        dirs = np.stack([np.cos(ang), np.sin(ang)], axis=1)
    else:
        raise ValueError("containment_coverage supports 1 or 2 inputs")
    A, b = safe_set.halfspaces(X)
    ratios = np.full(len(X), np.nan)
    for i, x in enumerate(X):
        pts = safe_set.containment_support_points(x, dirs)
        if m == 1:
            exact = b[i][safe_set.action_rows[:, 0] > 0].min() + b[i][
                safe_set.action_rows[:, 0] < 0].min()
            inner = 0.0 if np.isnan(pts).any() else float(pts[0, 0] - pts[1, 0])
        else:
            exact = float(polygon_area(safe_set.action_rows, b[i][None])[0])
            P = pts[~np.isnan(pts).any(axis=1)]
            inner = 0.0
            if len(P) >= 3:
                c = P.mean(axis=0)
                P = P[np.argsort(np.arctan2(P[:, 1] - c[1], P[:, 0] - c[0]))]
                inner = 0.5 * abs(np.dot(P[:, 0], np.roll(P[:, 1], -1))
                                  - np.dot(P[:, 1], np.roll(P[:, 0], -1)))
        if exact > 1e-9:
            ratios[i] = min(inner / exact, 1.0 + 1e-6)
    return CoverageReport(ratios=ratios, states=X)


@functools.lru_cache(maxsize=4)
def pendulum_safe_action_set() -> LinearSafeActionSet:
    """Safe torques of the pendulum from the stored RCI set (model and error bound inside)."""
    return LinearSafeActionSet(load_rci("pendulum"))


@functools.lru_cache(maxsize=4)
def quadrotor_safe_action_set() -> LinearSafeActionSet:
    """Safe thrust pairs of the 2-D quadrotor from the stored RCI set (physical units)."""
    return LinearSafeActionSet(load_rci("quadrotor"))

"""Identify, polish and verify the active set of the projection, then apply the face rule.

Chapter 1 (chapters/01_projection.py), "A fast exact projection for any action dimension";
:func:`identify` is the whole exact method short of autograd:

1. an active set, by the route :func:`route` picks as the faster (a measured crossover): for
   m = 2 and few rows or small batches the edge search of :mod:`~tutorial_rl.projection.planar`
   (its own polish and verification included), otherwise the compiled dual active-set method
   (:mod:`~tutorial_rl.projection.dual`); the candidate enumeration
   (:mod:`~tutorial_rl.projection.enumeration`) only when forced (:data:`FORCE`) or as a fallback;
2. polish: the KKT system on that set, solved afresh in float64;
3. verify, per element, to the tolerance tol = VERIFY_RTOL · (1 + ‖u‖∞ + max_i |b_i|/‖a_i‖) (a
   distance; rows are scaled to unit norm): primal feasibility (every row violated by at most
   tol), multiplier signs (λ >= −tol), complementarity (every row of the set within tol of
   equality) and stationarity (‖u − x − A_Sᵀλ‖∞ <= tol). Where a far row makes that scale more
   than :data:`TRUST` times 1 + ‖u‖∞ + ‖x‖₂, the element is solved again on the latter
   (:func:`identify`); rows of extreme magnitude are first rescaled exactly
   (:mod:`~tutorial_rl.projection.scaling`);
4. elements that fail go to fallbacks in turn: more iterations; the enumeration where it fits;
   Clarabel (cvxpy) followed by the same polish and verification. An element that still fails
   raises a ``RuntimeError``: an unverified point is never returned. Emptiness certificates of
   the dual method are confirmed by an LP (HiGHS) before ``InfeasibleSetError`` is raised;
5. the rule for degenerate points (:mod:`~tutorial_rl.projection.face`): the rows with a positive
   multiplier, and a basis of them, which defines the Jacobian.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from tutorial_rl._validation import InfeasibleSetError, empty_polytope_message
from tutorial_rl.projection import enumeration, planar
from tutorial_rl.projection.dual import (
    ADD_RTOL,
    DEPENDENT_TOL,
    EMPTY,
    SOLVED,
    dual_active_set,
    residuals,
    take,
)
from tutorial_rl.projection.face import degenerate, face_basis, polish, strong_rows
from tutorial_rl.projection.scaling import rescale_rows

__all__ = ["FORCE", "ROUTES", "TRUST", "VERIFY_RTOL", "Identified", "identify", "normalise",
           "route"]

VERIFY_RTOL = 1e-9
ROUTES = ("planar", "enumeration", "dual")
# Benchmarks and tests: force one route wherever it applies (planar: m = 2; enumeration: where its
# table fits); None: :func:`route` decides.
FORCE: str | None = None


class Identified(NamedTuple):
    """The result of :func:`identify` (float64, no autograd)."""

    rows: Tensor  # [B, m] a basis of the locally active face's rows (slots; k = empty)
    face: Tensor | None  # [B, k] bool: the rows with a positive multiplier (the rule's I₊);
    # None where need_face=False
    x: Tensor  # [B, m] the verified projection


def normalise(u: Tensor, A: Tensor, b: Tensor, given: Tensor | None = None
              ) -> tuple[Tensor, Tensor, Tensor]:
    """Unit rows with a zero padding row k: An [1|B, k+1, m], bn [1|B, k+1], and the scale [B]
    (``given``, if the caller knows a better one; see :func:`identify`).

    A zero row (0 <= b_i, already validated) gets b = +inf: it can never bind.
    """
    norms = A.norm(dim=-1)
    inv = torch.where(norms > 0, 1 / norms.clamp_min(1e-300), 0.0)
    An = A.new_empty(A.shape[0], A.shape[1] + 1, A.shape[2])  # written in place: no second copy
    torch.mul(A, inv[..., None], out=An[:, :-1])
    An[:, -1] = 0.0
    bn = torch.where(norms > 0, b * inv, torch.inf)
    big = torch.where(torch.isinf(bn), 0.0, bn).abs().amax(-1) if bn.shape[-1] else bn.new_zeros(
        bn.shape[0])
    bn = torch.cat([bn, bn.new_zeros(bn.shape[0], 1)], 1)
    scale = 1 + u.abs().amax(-1) + big if given is None else given
    return An, bn, scale


def _verify(u: Tensor, x: Tensor, An: Tensor, bn: Tensor, slots: Tensor, lam: Tensor,
            tol: Tensor) -> tuple[Tensor, Tensor]:
    """KKT check of a polished point: (ok [B], residuals of the unit rows [B, k]).

    Stationarity holds by construction (x = u − A_Sᵀλ); checked: primal feasibility, the signs
    of the multipliers and complementarity (the rows of S within tol of equality).
    """
    k = An.shape[-2] - 1
    res = residuals(An, bn, x)  # the padding row k has residual 0
    ok = (res[:, :k].amax(1) <= tol) & (lam >= -tol[:, None]).all(1)
    ok &= (res.gather(1, slots).abs() <= tol[:, None]).all(1)
    return ok, res[:, :k]


def route(m: int, k: int, B: int) -> str:
    """The method that identifies the active set for B elements with k rows in m dimensions.

    All three are exact and verified alike; the rule picks the fastest, from forward + backward
    times measured side by side (``python benchmarks/projection.py --routes``, 1 thread, which
    prints whether this rule picks the fastest route in each case):

    - m = 2: the edge search (:mod:`~tutorial_rl.projection.planar`, no iteration, O(k²) work per
      element, with a leaner polish of its own) for k <= 2 or k B <= PLANAR_WORK; beyond, the
      compiled dual method, whose cost per element grows more slowly in k (k = 6, B = 256: 1.17 vs
      1.28 ms; k = 15, B = 4096: 7.2 vs 40 ms; k = 4, B = 256: planar 1.07 vs 1.14 ms).
    - m >= 3: the dual method. Since its loop is compiled the candidate enumeration is never
      faster (m = 3, k = 4, B = 1: 0.86 vs 1.00 ms; m = 4, k = 5, B = 16: 1.05 vs 1.39 ms); it
      stays as a fallback (:func:`_fallback`), the teaching version of chapter 1 and the
      benchmark's baseline (``FORCE = "enumeration"``).

    The crossovers are those of one run on a shared 2-core machine, where repeated runs differ by
    up to 30 % near them; in the next run the rule was within 10 % of the fastest route in all 68
    cases of the --routes grid.
    """
    fits = enumeration.fits(k, m)
    if FORCE is not None and (FORCE == "dual" or (FORCE == "planar" and m == 2)
                              or (FORCE == "enumeration" and fits)):
        return FORCE
    if m == 2:
        return "planar" if k <= 2 or k * B <= PLANAR_WORK else "dual"
    return "dual"


# The crossover of :func:`route` for m = 2 (benchmarks/projection.py --routes, B in {1, 16, 256,
# 4096}).
PLANAR_WORK = 1_024


def _pad(sel: Tensor, m: int, fill: float) -> Tensor:
    if sel.shape[1] == m:
        return sel
    return torch.cat([sel, sel.new_full((sel.shape[0], m - sel.shape[1]), fill)], 1)


def _sub(X: Tensor, idx: Tensor) -> Tensor:
    return X if X.shape[0] == 1 else X[idx]


def _raise_if_empty(A: Tensor, b: Tensor, B: int, certified: Tensor) -> Tensor:
    """Confirm the dual method's emptiness certificates by LP; raise for the confirmed ones.

    :returns: the certified elements the LP found nonempty (sent to the fallbacks).
    """
    from tutorial_rl.projection.reference import empty_by_lp

    idx = certified.nonzero(as_tuple=True)[0]
    confirmed = empty_by_lp(_sub(A, idx), _sub(b, idx), len(idx)).to(certified.device)
    if bool(confirmed.any()):
        empty = torch.zeros(B, dtype=torch.bool, device=certified.device)
        empty[idx[confirmed]] = True
        raise InfeasibleSetError(empty_polytope_message(empty), empty)
    return certified


def _clarabel_basis(u: Tensor, A: Tensor, b: Tensor, An: Tensor, scale: Tensor) -> Tensor:
    """A KKT basis from an interior-point solution: active rows, NNLS multipliers, independent."""
    from scipy.optimize import nnls

    from tutorial_rl.projection.reference import clarabel_projection

    B, m = u.shape
    k = An.shape[-2] - 1
    slots = torch.full((B, m), k, dtype=torch.long, device=u.device)
    for i in range(B):
        Ai, bi = A[i % A.shape[0]].cpu().numpy(), b[i % b.shape[0]].cpu().numpy()
        xs = clarabel_projection(u[i].cpu().numpy(), Ai, bi)
        if xs is None:
            continue
        Ani = An[i % An.shape[0], :k].cpu().numpy()
        norms = np.linalg.norm(Ai, axis=1)
        res = (Ai @ xs - bi) / np.where(norms > 0, norms, np.inf)
        act = np.flatnonzero(np.abs(res) <= 1e-6 * float(scale[i]))
        if len(act) == 0:
            continue
        lam, _ = nnls(Ani[act].T, u[i].cpu().numpy() - xs)
        chosen: list[int] = []
        for at in np.argsort(-lam):
            if lam[at] <= 0 or len(chosen) == m:
                break
            row = int(act[at])
            if np.linalg.matrix_rank(Ani[chosen + [row]], tol=1e-7) == len(chosen) + 1:
                chosen.append(row)
        slots[i, : len(chosen)] = torch.tensor(chosen, dtype=torch.long, device=u.device)
    return slots


@contextmanager
def _naming_whole_batch(subset: Tensor, batch: int) -> Iterator[None]:
    """Re-raise an InfeasibleSetError of the sub-batch ``subset`` (indices into a batch of
    ``batch`` elements) with the indices of the whole batch."""
    try:
        yield
    except InfeasibleSetError as err:
        if err.empty is None:
            raise
        empty = torch.zeros(batch, dtype=torch.bool, device=subset.device)
        empty[subset[err.empty]] = True
        raise InfeasibleSetError(empty_polytope_message(empty), empty) from None


def _fallback(u: Tensor, A: Tensor, b: Tensor, An: Tensor, bn: Tensor, scale: Tensor,
              slots: Tensor, ok: Tensor) -> tuple[Tensor, Tensor]:
    """Re-solve the elements that failed verification; returns (slots, ok) for the whole batch."""
    B, m = u.shape
    k = An.shape[-2] - 1
    tol = VERIFY_RTOL * scale
    stages = ["iterations", "enumeration", "clarabel"]
    for stage in stages:
        bad = (~ok).nonzero(as_tuple=True)[0]
        if bad.numel() == 0:
            break
        ub, Ab, bb, Anb, bnb = u[bad], _sub(A, bad), _sub(b, bad), _sub(An, bad), _sub(bn, bad)
        if stage == "iterations":
            res = dual_active_set(ub, Anb, bnb, ADD_RTOL * scale[bad], max_iter=40 * (k + m) + 200,
                                  refresh=1)
            if bool((res.status == EMPTY).any()):
                with _naming_whole_batch(bad, B):
                    _raise_if_empty(Ab, bb, len(bad), res.status == EMPTY)
            new, good = res.slots, res.status == SOLVED
        elif stage == "enumeration":
            if not enumeration.fits(k, m):
                continue
            new = _pad(enumeration.select(ub, Ab, bb, scale[bad]).rows, m, k)
            good = torch.ones_like(bad, dtype=torch.bool)
        else:
            new = _clarabel_basis(ub, Ab, bb, Anb, scale[bad])
            good = torch.ones_like(bad, dtype=torch.bool)
        x, lam = polish(ub, Anb, bnb, new)
        good &= _verify(ub, x, Anb, bnb, new, lam, tol[bad])[0]
        slots[bad[good]] = new[good]
        ok[bad[good]] = True
    if not bool(ok.all()):
        raise RuntimeError(
            f"the exact projection could not be verified (KKT to {VERIFY_RTOL:g} x scale) for "
            f"batch indices {(~ok).nonzero().flatten().tolist()[:5]}, even after its fallbacks; "
            "the problem is numerically degenerate beyond float64 (e.g. rows within 1e-7 rad)"
        )
    return slots, ok


@torch.no_grad()
def identify(u: Tensor, A: Tensor, b: Tensor, need_face: bool = True,
             need_basis: bool = True, rescaled: bool = False) -> Identified:
    """The verified projection of u [B, m] onto {A v <= b} (A [1|B, k, m], b [1|B, k], float64),
    with the rows of its locally active face and a basis of them (see the module docstring).
    ``need_face=False``: only the basis (and x) is needed, which saves work at some ties.
    ``need_basis=False`` (implies no face): only the verified x is wanted (no gradient); ``rows``
    is then the verified KKT basis, not the face rule's.

    The tolerances scale with s = 1 + ‖u‖∞ + max_i |b_i|/‖a_i‖, the size of the numbers whose
    rounding they absorb. A far row (a bound of 10¹² on a coordinate, say) inflates that maximum
    without taking part in the answer; where s exceeds :data:`TRUST` times the size of the
    numbers that do meet in the answer, s* = 1 + ‖u‖∞ + ‖x‖₂ (the rows active at x have
    |b_i|/‖a_i‖ = |a_iᵀx|/‖a_i‖ <= ‖x‖₂), those elements are solved again with s* (and again if
    their answer moves so far that s* changes by that much), so no far row can loosen them.
    Below that ratio (every set of the course) nothing changes. Rows of extreme magnitude are
    rescaled first (:func:`~.scaling.rescale_rows`; ``rescaled=True``: the caller has done it).

    :raises InfeasibleSetError: empty polytopes (their batch indices named).
    :raises RuntimeError: an element no method could verify (never seen in the tests).
    """
    B = u.shape[0]
    if not rescaled:
        A, b = rescale_rows(A, b, B)
    found, tol = _identify(u, A, b, need_face, need_basis, None)
    for _ in range(3):
        # s* >= 1, so no element needs it while every scale is below TRUST (every set of the
        # course): one reduction decides the common case
        if tol is None or float(tol.max()) <= TRUST * VERIFY_RTOL:
            break
        honest = 1 + u.abs().amax(-1) + found.x.norm(dim=-1)
        redo = (tol > TRUST * VERIFY_RTOL * honest).nonzero(as_tuple=True)[0]
        if redo.numel() == 0:
            break
        with _naming_whole_batch(redo, B):
            sub, tol_r = _identify(u[redo], _sub(A, redo), _sub(b, redo), need_face, need_basis,
                                   honest[redo])
        rows, x, face = found.rows.clone(), found.x.clone(), found.face
        rows[redo], x[redo] = sub.rows, sub.x
        if face is not None and sub.face is not None:
            face = face.clone()
            face[redo] = sub.face
        found = Identified(rows, face, x)
        assert tol_r is not None
        tol = tol.clone()
        tol[redo] = tol_r
    return found


#: How much larger than s* = 1 + ‖u‖∞ + ‖x‖₂ the tolerances' scale may be before
#: :func:`identify` solves again with s* (far rows). Every set of the course stays below it.
TRUST = 100.0
def _identify(u: Tensor, A: Tensor, b: Tensor, need_face: bool, need_basis: bool,
              given: Tensor | None) -> tuple[Identified, Tensor | None]:
    """:func:`identify` with the tolerances' scale ``given`` (None: s), and the tolerances used
    [B] (None where there was nothing to solve)."""
    B, m = u.shape
    k = A.shape[-2]
    if k == 0 or B == 0:
        return Identified(torch.full((B, m), k, dtype=torch.long, device=u.device),
                          torch.zeros(B, k, dtype=torch.bool, device=u.device), u.clone()), None
    method = route(m, k, B)
    planar_path = method == "planar"
    if method != "dual":
        # The KKT solve on the set found is done (float64, unit rows) and, for the planar
        # search, verified; the enumeration checked feasibility for every candidate, so only the
        # multiplier signs remain to verify.
        sel = (planar.select if planar_path else enumeration.select)(u, A, b, given)
        slots, lam, res, x = _pad(sel.rows, m, k), _pad(sel.lam, m, 0.0), sel.res, sel.x
        tol = sel.tol  # VERIFY_RTOL · scale, computed alike
        ok = (sel.lam >= -tol[:, None]).all(1)  # NaN where the planar search left one unverified
        all_ok = bool(ok.all())
        if all_ok and not need_basis:
            return Identified(slots, None, x), tol
        if all_ok and not need_face:
            T = _plain_basis(slots, lam, res, tol, A)
            if T is not None:
                return Identified(T, None, x), tol
        if all_ok:  # the face rule, normalised rows only where degenerate
            T, face, extra = strong_rows(slots, lam, res, tol)
            face, flagged = degenerate(T, face, extra, need_face)
            if m == 2 and not need_face and bool(flagged.any()):
                flagged &= ~_single_outside_2d(A, T, extra, flagged)
            if not bool(flagged.any()):  # the common case: done
                return Identified(T, face if need_face else None, x), tol
            fi = flagged.nonzero(as_tuple=True)[0]
            Af, bf, _ = normalise(u[fi], _sub(A, fi), _sub(b, fi))
            rows_f, face[fi] = face_basis(u[fi], x[fi], Af, slots[fi], lam[fi], res[fi], tol[fi])
            T[fi] = _checked(u[fi], x[fi], Af, bf, slots[fi], rows_f, tol[fi])
            return Identified(T, face if need_face else None, x), tol
        An, bn, scale = normalise(u, A, b, given)
    else:
        An, bn, scale = normalise(u, A, b, given)
        tol = VERIFY_RTOL * scale
        dual = dual_active_set(u, An, bn, ADD_RTOL * scale)
        slots = dual.slots
        if bool((dual.status == EMPTY).any()):
            _raise_if_empty(A, b, B, dual.status == EMPTY)
        x, lam = polish(u, An, bn, slots)
        ok, res = _verify(u, x, An, bn, slots, lam, tol)
        ok &= dual.status == SOLVED
    if not bool(ok.all()):
        slots, _ = _fallback(u, A, b, An, bn, scale, slots, ok)
        x, lam = polish(u, An, bn, slots)
        res = residuals(An, bn, x)[:, :k]
    if not need_basis:
        return Identified(slots, None, x), tol
    if not need_face:
        T = _plain_basis(slots, lam, res, tol, A)
        if T is not None:
            return Identified(T, None, x), tol
    rows, face = face_basis(u, x, An, slots, lam, res, tol, need_face)
    return (Identified(_checked(u, x, An, bn, slots, rows, tol), face if need_face else None, x),
            tol)


def _plain_basis(slots: Tensor, lam: Tensor, res: Tensor, tol: Tensor,
                 A: Tensor) -> Tensor | None:
    """The face rule's basis where no element needs the full rule, else None.

    The basis is T, the rows of the verified basis with λ > tol, unless a second extra row is
    active where T has fewer than m rows (the test of
    :func:`~tutorial_rl.projection.face.degenerate` with ``need_face=False``). For m = 2 with one
    row t in T the rule has a closed form: g = u − x is a positive multiple of a_t, so another
    active row can carry a positive multiplier iff a_t lies inside the cone of the active normals,
    i.e. active rows turn away from a_t on both sides (then every active row does and J = 0:
    the basis is t and one of them), else none outside span(a_t) does (the basis is t).
    """
    k, m = res.shape[1], slots.shape[1]
    T = torch.where((lam > tol[:, None]) & (slots < k), slots, k)
    n_T = (T < k).sum(1)
    active = res >= -tol[:, None]
    flagged = ((active.sum(1) - n_T > 1) & (n_T < m))
    if not bool(flagged.any()):
        return T
    if m != 2 or bool((flagged & (n_T == 0)).any()):
        return None
    fi = flagged.nonzero(as_tuple=True)[0]
    Tf = T[fi]
    t = torch.where(Tf[:, 0] < k, Tf[:, 0], Tf[:, 1])  # the one row of T
    Af = A[0].expand(len(fi), -1, -1) if A.shape[0] == 1 else A[fi]
    at = Af[torch.arange(len(fi), device=A.device), t]  # [n, 2]
    cross = Af[..., 1] * at[:, None, 0] - Af[..., 0] * at[:, None, 1]  # a_t × a_j
    thr = DEPENDENT_TOL * Af.norm(dim=-1) * at.norm(dim=-1, keepdim=True)
    left = active[fi] & (cross > thr)
    both = left.any(1) & (active[fi] & (cross < -thr)).any(1)
    second = torch.where(both, left.to(torch.int8).argmax(1), k)
    T[fi] = torch.stack([t, second], 1)
    return T


def _single_outside_2d(A: Tensor, T: Tensor, extra: Tensor, flagged: Tensor) -> Tensor:
    """m = 2, one row t in T: at most one extra active row is not parallel to t, so the basis is T
    (see :func:`~tutorial_rl.projection.face.degenerate`). A cross product instead of the general
    span test: the course's 2-D sets meet this at every saturated action on a flat set."""
    k = A.shape[-2]
    one = flagged & ((T < k).sum(1) == 1)
    if not bool(one.any()):
        return one
    t_row = torch.where(T[:, 0] < k, T[:, 0], T[:, 1]).clamp_max(k - 1)
    t = take(A, t_row[:, None])[:, 0] if A.shape[0] > 1 else A[0][t_row]  # [B, 2]
    rows = A.expand(len(T), -1, -1)
    cross = rows[..., 0] * t[:, None, 1] - rows[..., 1] * t[:, None, 0]
    outside = cross.abs() > DEPENDENT_TOL * rows.norm(dim=-1) * t.norm(dim=-1, keepdim=True)
    return one & ((extra & outside).sum(1) <= 1)


def _checked(u: Tensor, x: Tensor, An: Tensor, bn: Tensor, slots: Tensor, rows: Tensor,
             tol: Tensor) -> Tensor:
    """The face basis, except where it holds rows beyond the basis S and fails to reproduce x
    (it does in exact arithmetic): there S itself."""
    k = An.shape[-2] - 1
    changed = ~((rows[:, :, None] == slots[:, None, :]).any(-1) | (rows == k)).all(1)
    if bool(changed.any()):
        ci = changed.nonzero(as_tuple=True)[0]
        x_face, _ = polish(u[ci], _sub(An, ci), _sub(bn, ci), rows[ci])
        off = ci[(x_face - x[ci]).abs().amax(1) > tol[ci]]
        rows[off] = slots[off]
    return rows

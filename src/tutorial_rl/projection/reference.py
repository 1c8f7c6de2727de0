"""Reference solvers: cvxpylayers (``method="cvxpylayers"``), Clarabel and HiGHS for fallbacks.

Chapter 1 (chapters/01_projection.py), "A fast exact projection". The cvxpylayers
layer is the paper's setup: the projection as a cvxpy ``Problem`` in a ``CvxpyLayer`` (diffcp +
SCS, eps 1e-9), solved in float64, one conic solve per batch element. Slow; it is the reference.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor

from tutorial_rl._validation import InfeasibleSetError, empty_polytope_message

__all__ = ["clarabel_projection", "empty_by_lp", "project_cvxpylayers"]

_SOLVER_ARGS = {"eps": 1e-9, "max_iters": 100_000}


@functools.lru_cache(maxsize=16)
def _layer(k: int, m: int):
    import cvxpy as cp
    from cvxpylayers.torch import CvxpyLayer

    v, A = cp.Variable(m), cp.Parameter((k, m))
    b, u = cp.Parameter(k), cp.Parameter(m)
    problem = cp.Problem(cp.Minimize(cp.sum_squares(v - u)), [A @ v <= b])
    return CvxpyLayer(problem, parameters=[A, b, u], variables=[v])


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence diffcp's numpy-2 ``__array__`` DeprecationWarning here only (it fires every call)."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"__array__ implementation", category=DeprecationWarning
        )
        yield


class _QuietLayer(torch.autograd.Function):
    """The layer on a private graph, so that its backward pass also runs inside ``_quiet()``."""

    @staticmethod
    def forward(ctx, layer, *params: Tensor) -> Tensor:  # type: ignore[override]
        with torch.enable_grad(), _quiet():
            inputs = [p.detach().requires_grad_(True) for p in params]
            (v,) = layer(*inputs, solver_args=dict(_SOLVER_ARGS))
        ctx.graph = (v, inputs)
        return v.detach()

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        v, inputs = ctx.graph
        with _quiet():
            grads = torch.autograd.grad(v, inputs, grad, allow_unused=True)
        return (None, *grads)


def empty_by_lp(A: Tensor, b: Tensor, B: int) -> Tensor:
    """Which polytopes are empty, by one LP (HiGHS) each: used when a solver reports failure, and
    to confirm the dual active-set method's emptiness certificates."""
    from scipy.optimize import linprog

    An, bn = A.detach().cpu().numpy(), b.detach().cpu().numpy()
    empty = torch.zeros(B, dtype=torch.bool)
    for i in range(B):
        Ai, bi = An[i % An.shape[0]], bn[i % bn.shape[0]]
        res = linprog(0 * Ai[0], A_ub=Ai, b_ub=bi, bounds=[(None, None)] * Ai.shape[1])
        empty[i] = res.status == 2
    return empty


def project_cvxpylayers(u: Tensor, A: Tensor, b: Tensor) -> Tensor:
    import cvxpy as cp
    from diffcp import SolverError

    B, m = u.shape
    k = A.shape[-2]
    if k == 0 or B == 0:  # nothing to solve (and cvxpy rejects empty parameters)
        return u
    from tutorial_rl.projection.core import identify

    identify(u.detach(), A.detach(), b.detach())  # names empty polytopes before solving
    # Unbatched parameters are broadcast by the layer; batched ones keep their batch axis.
    params = [x[0] if x.shape[0] == 1 and B > 1 else x for x in (A, b)] + [u]
    layer = _layer(k, m)
    try:
        if torch.is_grad_enabled() and any(x.requires_grad for x in params):
            v = _QuietLayer.apply(layer, *params)
        else:
            with _quiet():
                (v,) = layer(*params, solver_args=dict(_SOLVER_ARGS))
    except (SolverError, cp.error.SolverError) as exc:
        empty = empty_by_lp(A, b, B)
        if bool(empty.any()):
            raise InfeasibleSetError(empty_polytope_message(empty), empty) from exc
        raise
    return v


def clarabel_projection(u: np.ndarray, A: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    """One projection by cvxpy + Clarabel (interior point, tight tolerances); None if it fails.

    The last-resort fallback of the exact method for elements its verification rejected; the
    result is polished and verified again by the caller.
    """
    import cvxpy as cp

    v = cp.Variable(len(u))
    problem = cp.Problem(cp.Minimize(cp.sum_squares(v - u)), [A @ v <= b])
    for tol in (1e-12, 1e-10, 1e-8):  # Clarabel can stall at the tightest tolerance
        try:
            problem.solve(solver=cp.CLARABEL, tol_gap_abs=tol, tol_gap_rel=tol, tol_feas=tol)
        except cp.error.SolverError:
            continue
        if v.value is not None:
            return np.asarray(v.value, dtype=float)
    return None

"""Rows of extreme magnitude, rescaled exactly by powers of two before the projection (Chapter 1,
"A fast exact projection for any action dimension": the tolerances)."""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from tutorial_rl._validation import InfeasibleSetError, empty_polytope_message

__all__ = ["RESCALE_EXP", "rescale_rows"]

#: Rows whose largest |a_ij| lies outside [2^-RESCALE_EXP, 2^RESCALE_EXP] are rescaled by a power
#: of two (exact) before their norms are taken, which would under- or overflow otherwise.
RESCALE_EXP = 400


def rescale_rows(A: Tensor, b: Tensor, batch: int = 1) -> tuple[Tensor, Tensor]:
    """{A v <= b} with rows of extreme magnitude rescaled, exactly, by powers of two.

    A row like 1e-170 · v_1 <= 1e-170 is v_1 <= 1, but its norm underflows to 0 and it would be
    taken for a zero row; a row of 1e300's overflows. Scaling a row and its offset by 2^-e (e: the
    exponent of its largest entry, in two steps so that the factor itself cannot overflow) leaves
    the polytope and its projection unchanged. An offset that then overflows is +inf (no finite
    point reaches that hyperplane: the row can never bind, and becomes 0 · v <= 1) or -inf (no
    finite point satisfies the row: the element is empty, and InfeasibleSetError names it).
    Other rows, and every row of the course's sets, are not touched. Differentiable: the
    factors are constants, so gradients for A and b follow through them. ``batch``: the number of
    proposals, for the indices an InfeasibleSetError names where the polytope is shared.
    """
    if not _has_extreme_rows(A):  # the common case, decided in a few microseconds
        return A, b
    amax = A.detach().abs().amax(-1)
    extreme = (amax > 0) & ((amax < 2.0**-RESCALE_EXP) | (amax > 2.0**RESCALE_EXP))
    e = torch.frexp(torch.where(extreme, amax, 1.0))[1].to(A.dtype)
    half = torch.where(extreme, torch.exp2(-torch.div(e, 2, rounding_mode="floor")), 1.0)
    rest = torch.where(extreme, torch.exp2(-e + torch.div(e, 2, rounding_mode="floor")), 1.0)
    A = A * half[..., None] * rest[..., None]
    b = b * half * rest
    empty = torch.isneginf(b.detach()).any(-1)
    if bool(empty.any()):
        empty = empty.expand(max(A.shape[0], b.shape[0], batch))
        raise InfeasibleSetError(empty_polytope_message(empty), empty)
    never = torch.isposinf(b.detach())
    if bool(never.any()):
        A = torch.where(never[..., None], 0.0, A)
        b = torch.where(never, 1.0, b)
    return A, b


def _has_extreme_rows(A: Tensor) -> bool:
    """Whether some nonzero row's largest |a_ij| lies outside [2^-RESCALE_EXP, 2^RESCALE_EXP]
    (NumPy on the CPU: a handful of microseconds, where the same test in torch costs tens)."""
    a = A.detach()
    if a.numel() == 0:
        return False
    if a.device.type != "cpu":
        amax = a.abs().amax(-1)
        return bool(((amax > 0) & (amax < 2.0**-RESCALE_EXP)).any()
                    or (amax > 2.0**RESCALE_EXP).any())
    arr = a.cpu().numpy()  # .cpu(): a no-op here, the one way to numpy (test_device)
    m = arr.shape[-1]
    # Without a temporary of A's size in floats (a fresh one costs page faults at every call
    # for large batches). From m = 4 on, squared row norms in one einsum: a row whose largest
    # |a_ij| is below 2^-E has a squared norm below m 2^-2E (zero rows and underflow included),
    # one whose largest is above 2^E a squared norm above 2^2E (or inf); those rows (a factor 2
    # of margin for rounding) are tested exactly. For m < 4, where einsum's inner loop is too
    # short to be fast, the largest magnitude from max and min, the tiny ones by masks.
    if m >= 4:
        sq = np.einsum("...i,...i->...", arr, arr)
        rows = (sq < 2 * m * 2.0 ** (-2 * RESCALE_EXP)) | (sq > 2.0 ** (2 * RESCALE_EXP - 1))
    else:
        if arr.max() > 2.0**RESCALE_EXP or arr.min() < -(2.0**RESCALE_EXP):
            return True
        tiny = (arr < 2.0**-RESCALE_EXP) & (arr > -(2.0**-RESCALE_EXP))
        tiny &= arr != 0
        if not tiny.any():  # the common case, without the reduction over each row's m entries
            return False  # (along a 2-long axis it costs 20 times the rest: 0.6 ms at 4096 x 12)
        rows = tiny.any(-1)  # the rows holding a tiny entry
    if not rows.any():
        return False
    amax = np.abs(arr[rows]).max(-1)
    return bool(((amax > 0) & ((amax < 2.0**-RESCALE_EXP) | (amax > 2.0**RESCALE_EXP))).any())

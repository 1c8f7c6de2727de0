"""Input checks for :mod:`tutorial_rl.projection`: clear errors before any computation or solver.

Every message names the argument, the expected and received shapes, or the batch index at fault,
because these errors usually surface deep inside a training loop.
"""

from __future__ import annotations

import torch
from torch import Tensor

_SHOW = 5  # batch indices named in a message


class InfeasibleSetError(ValueError):
    """The polytope {v : A v <= b} of at least one batch element is empty.

    ``empty`` is the BoolTensor [B] of the empty batch elements where the projection knows it
    (``None`` otherwise), so a caller with a fallback can handle exactly those.
    """

    __module__ = "tutorial_rl.projection"

    def __init__(self, message: str, empty: Tensor | None = None) -> None:
        super().__init__(message)
        self.empty = empty


def _indices(flags: Tensor) -> str:
    idx = flags.nonzero().flatten().tolist()
    more = f" and {len(idx) - _SHOW} more" if len(idx) > _SHOW else ""
    return f"{idx[:_SHOW]}{more}"


def empty_polytope_message(empty: Tensor) -> str:
    """Message for an ``InfeasibleSetError``; ``empty`` is a BoolTensor [B]."""
    n = int(empty.sum())
    return (
        f"the polytope {{v : A v <= b}} is empty for {n} of {empty.numel()} batch elements, "
        f"at batch index/indices {_indices(empty)}; there is no safe action to project onto"
    )


def _first_bad_batch(bad: Tensor, batched: bool) -> str:
    if not batched:
        return "shared by every batch element"
    return f"first at batch index {int(bad.flatten(1).any(1).nonzero()[0, 0])}"


def check_inputs(
    u: Tensor, A: Tensor, b: Tensor, check_empty_rows: bool = True
) -> tuple[Tensor, Tensor, Tensor, bool]:
    """Validate u [B, m] or [m], A [k, m] or [B, k, m], b [k] or [B, k].

    :returns: u as [B, m], A as [1 or B, k, m], b as [1 or B, k], all float64 (autograd kept),
        and whether u was a single action [m].
    :raises ValueError: wrong types, ranks, shapes, batch sizes, devices, NaN or inf.
    :raises InfeasibleSetError: a zero row of A with negative b (``check_empty_rows``).
    """
    named = (("u", u, 2), ("A", A, 3), ("b", b, 2))
    for name, t, _ in named:
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor; got {type(t).__name__}")
        if not t.is_floating_point():
            raise ValueError(
                f"{name} must have a floating dtype (float32 or float64); got {t.dtype}"
            )
    if u.dim() not in (1, 2) or u.shape[-1] == 0:
        raise ValueError(f"u must have shape [B, m] or [m] with m >= 1; got shape {tuple(u.shape)}")
    m = u.shape[-1]
    if A.dim() not in (2, 3) or A.shape[-1] != m:
        raise ValueError(
            f"A must have shape [k, m] or [B, k, m] with m = {m} (the last dimension of u); "
            f"got shape {tuple(A.shape)}"
        )
    k = A.shape[-2]
    if b.dim() not in (1, 2) or b.shape[-1] != k:
        raise ValueError(
            f"b must have shape [k] or [B, k] with k = {k} (the rows of A); "
            f"got shape {tuple(b.shape)}"
        )
    sizes = {name: t.shape[0] for name, t, full in named if t.dim() == full}
    if len(set(sizes.values())) > 1:
        detail = ", ".join(f"{name} has B={n}" for name, n in sizes.items())
        raise ValueError(
            f"batch sizes differ: {detail} (shapes u {tuple(u.shape)}, "
            f"A {tuple(A.shape)}, b {tuple(b.shape)})"
        )
    if u.dim() == 1 and set(sizes.values()) - {1}:
        raise ValueError(
            f"u has shape [m] (one action) but A {tuple(A.shape)} / b {tuple(b.shape)} carry a "
            f"batch of polytopes; pass u with shape [B, m]"
        )
    if len({u.device, A.device, b.device}) > 1:
        raise ValueError(
            f"u, A and b must be on one device; got {u.device}, {A.device}, {b.device}"
        )
    for name, t, full in named:
        if bool(torch.isfinite(t.detach().sum())):  # NaN and inf propagate into the sum: all finite
            continue  # (one reduction; the element-wise test below costs ten times more)
        bad = ~torch.isfinite(t)
        if bool(bad.any()):
            where = _first_bad_batch(bad, t.dim() == full)
            raise ValueError(f"{name} contains NaN or inf ({where})")
    u2 = (u if u.dim() == 2 else u[None]).to(torch.float64)
    A3 = (A if A.dim() == 3 else A[None]).to(torch.float64)
    b2 = (b if b.dim() == 2 else b[None]).to(torch.float64)
    negative = b2.detach() < 0  # only a negative b_i can be empty: 0 <= b_i < 0 is impossible
    if check_empty_rows and bool(negative.any()):
        # the rows with b_i < 0 alone are looked at (a gather, not a pass over all of A)
        batch, row = negative.expand(max(A3.shape[0], b2.shape[0]), -1).nonzero(as_tuple=True)
        zero = (A3.detach()[batch if A3.shape[0] > 1 else 0, row] == 0).all(-1)
        if bool(zero.any()):
            first = int(zero.nonzero()[0, 0])
            batch, row = int(batch[first]), int(row[first])
            batched = A.dim() == 3 or b.dim() == 2
            where = f"batch index {batch}" if batched else "every batch element"
            raise InfeasibleSetError(
                f"A has a zero row with negative b (row {row}, {where}): the constraint "
                f"0 <= b[{row}] cannot hold, so the polytope is empty"
            )
    return u2, A3, b2, u.dim() == 1

"""Fitting the critics of the fixed-state experiment by supervised regression (Chapter 6,
chapters/06_aliasing.py, "The fixed-state experiment").

Several small MLPs, one per critic, are trained at once as batched matrices; they come back as
ordinary float64 ``nn.Sequential`` modules with gradients off.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Protocol

import torch
from torch import Tensor, nn

__all__ = ["FitSettings", "fit_critics", "one_thread"]


class FitSettings(Protocol):
    """What a critic fit reads from the experiment's configuration (an ``ExperimentConfig``).

    A protocol, so that this module needs no import of :mod:`tutorial_rl.aliasing.experiment`,
    which imports this one.
    """

    @property
    def hidden(self) -> tuple[int, ...]: ...

    @property
    def critic_lr(self) -> float: ...

    @property
    def epochs(self) -> int: ...


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Tiny networks run fastest (and are not slowed by a busy machine) on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _init_layers(hidden: tuple[int, ...], seed: int) -> list[tuple[Tensor, Tensor]]:
    """(weight [in, out], bias [out]) per layer, float32, drawn like ``nn.Linear``'s default
    (U(±1/√fan_in)) from a private generator: the global RNG and default dtype play no part."""
    gen = torch.Generator().manual_seed(seed)
    sizes = (2, *hidden, 1)
    layers = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
        bound = fan_in**-0.5
        w = (2 * torch.rand(fan_in, fan_out, generator=gen, dtype=torch.float32) - 1) * bound
        bias = (2 * torch.rand(fan_out, generator=gen, dtype=torch.float32) - 1) * bound
        layers.append((w, bias))
    return layers


def _as_module(layers: list[tuple[Tensor, Tensor]]) -> nn.Sequential:
    """An ordinary float64 ``nn.Sequential`` (SiLU between layers) with the given weights."""
    modules: list[nn.Module] = []
    for w, bias in layers:
        linear = torch.nn.utils.skip_init(nn.Linear, *w.shape, dtype=torch.float64)
        linear.weight.data.copy_(w.T)
        linear.bias.data.copy_(bias)
        modules += [linear, nn.SiLU()]
    return nn.Sequential(*modules[:-1]).requires_grad_(False)


def fit_critics(inputs: Tensor, targets: Tensor, config: FitSettings,
                seeds: list[int]) -> tuple[list[nn.Module], list[float]]:
    """Regress C independent MLPs at once: inputs [C, N, 2], targets [C, N], one seed each.

    Full-batch Adam with a cosine-decayed step size; the C networks are stacked into batched
    matrices (one forward pass for all), which is exact because their parameters, losses and
    Adam's element-wise updates are independent. Trained in float32 on one thread, returned as
    float64 ``nn.Sequential`` critics [2 -> hidden -> 1] with gradients off, with their RMSE.
    Chapter 6 (chapters/06_aliasing.py), "The fixed-state experiment".
    """
    members = [_init_layers(config.hidden, seed) for seed in seeds]
    params = [torch.stack([m[i][j] for m in members]).requires_grad_(True)
              for i in range(len(members[0])) for j in (0, 1)]
    x, y = inputs.float(), targets.float()

    def forward(h: Tensor) -> Tensor:
        for i in range(0, len(params), 2):
            h = torch.baddbmm(params[i + 1][:, None, :], h, params[i])
            if i + 2 < len(params):
                h = torch.nn.functional.silu(h)
        return h.squeeze(-1)

    opt = torch.optim.Adam(params, lr=config.critic_lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, config.epochs, config.critic_lr / 50)
    with one_thread():
        for _ in range(config.epochs):
            opt.zero_grad()
            loss = (forward(x) - y).square().mean(-1).sum()
            loss.backward()
            opt.step()
            sched.step()
    critics = [_as_module([(params[i][c].detach(), params[i + 1][c].detach())
                           for i in range(0, len(params), 2)]) for c in range(len(seeds))]
    with torch.no_grad():
        rmse = [(net(inputs[c]).squeeze(-1) - targets[c]).square().mean().sqrt().item()
                for c, net in enumerate(critics)]
    return critics, rmse

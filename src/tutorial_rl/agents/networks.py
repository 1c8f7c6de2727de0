"""Small torch networks of the agents: MLPs, a deterministic actor, Q- and value critics.

Chapter 4 (chapters/04_se_rl.py) and Chapter 5 (chapters/05_sp_rl.py) build TD3 and A2C from these
blocks. Every network takes and returns actions in the units of the environment's action space,
because the safe action set U_s(x) = {u : A u <= b} and the projection Φ(x, ũ) of Chapter 1 are
given in them. The course's environments already use normalised actions in [-1, 1] (their
``ACTION_MAP``), where :class:`ActionScale` is the identity; it keeps the agents correct for any
bounded ``Box`` (e.g. thrusts in newtons) and the networks' inputs and outputs well conditioned.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

__all__ = [
    "ActionScale",
    "DeterministicActor",
    "GaussianActor",
    "QNetwork",
    "TwinQ",
    "ValueNetwork",
    "mlp",
]


def mlp(
    sizes: Sequence[int], activation: type[nn.Module] = nn.ReLU, output_activation: type[nn.Module]
    | None = None
) -> nn.Sequential:
    """A multilayer perceptron ``sizes[0] -> ... -> sizes[-1]`` (no activation on the output)."""
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(activation())
        elif output_activation is not None:
            layers.append(output_activation())
    return nn.Sequential(*layers)


class ActionScale(nn.Module):
    """Affine map between the action box [low, high] and [-1, 1]: u = center + half_width · ū.

    Buffers (not parameters): they are saved with the model and never trained.
    """

    center: Tensor
    half_width: Tensor

    def __init__(self, low: np.ndarray, high: np.ndarray) -> None:
        super().__init__()
        low64, high64 = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
        if not (np.all(np.isfinite(low64)) and np.all(np.isfinite(high64))):
            raise ValueError("the action space must be a bounded Box")
        self.register_buffer("center", torch.as_tensor((low64 + high64) / 2, dtype=torch.float32))
        half_width = torch.as_tensor((high64 - low64) / 2, dtype=torch.float32)
        self.register_buffer("half_width", half_width)

    def to_action(self, normalized: Tensor) -> Tensor:
        """ū in [-1, 1] -> u in [low, high]."""
        return self.center + self.half_width * normalized

    def to_normalized(self, action: Tensor) -> Tensor:
        """u in the action space's units -> ū (1 at ``high``, -1 at ``low``)."""
        return (action - self.center) / self.half_width


class DeterministicActor(nn.Module):
    """μθ(x) = center + half_width · tanh(MLP(x)): TD3's policy, always inside the action box.

    It is the *unsafe* policy ũ = μθ(x): SE-RL (Chapter 4) sends it to the safeguarded environment,
    SP-RL (Chapter 5) adds the projection Φ(x, μθ(x)) as the last layer.
    """

    def __init__(self, obs_dim: int, scale: ActionScale, hidden: Sequence[int]) -> None:
        super().__init__()
        self.scale = scale
        self.net = mlp([obs_dim, *hidden, scale.center.numel()], nn.ReLU, nn.Tanh)

    def forward(self, obs: Tensor) -> Tensor:
        """Actions in the action space's units, shape [B, m]."""
        return self.scale.to_action(self.net(obs))


class QNetwork(nn.Module):
    """Q(x, u): state-action value; the action enters normalised (see :class:`ActionScale`)."""

    def __init__(self, obs_dim: int, scale: ActionScale, hidden: Sequence[int]) -> None:
        super().__init__()
        self.scale = scale
        self.net = mlp([obs_dim + scale.center.numel(), *hidden, 1], nn.ReLU)

    def forward(self, obs: Tensor, action: Tensor) -> Tensor:
        """Values, shape [B]."""
        return self.net(torch.cat([obs, self.scale.to_normalized(action)], dim=-1)).squeeze(-1)


class TwinQ(nn.Module):
    """TD3's clipped double-Q pair (Fujimoto et al. 2018): two independent critics Q1, Q2."""

    def __init__(self, obs_dim: int, scale: ActionScale, hidden: Sequence[int]) -> None:
        super().__init__()
        self.q1 = QNetwork(obs_dim, scale, hidden)
        self.q2 = QNetwork(obs_dim, scale, hidden)

    def forward(self, obs: Tensor, action: Tensor) -> tuple[Tensor, Tensor]:
        """(Q1(x, u), Q2(x, u)), each of shape [B]."""
        return self.q1(obs, action), self.q2(obs, action)


class ValueNetwork(nn.Module):
    """V(x): A2C's state-value critic (tanh MLP, as in Mnih et al. 2016 and SB3's A2C)."""

    def __init__(self, obs_dim: int, hidden: Sequence[int]) -> None:
        super().__init__()
        self.net = mlp([obs_dim, *hidden, 1], nn.Tanh)

    def forward(self, obs: Tensor) -> Tensor:
        """Values, shape [B]."""
        return self.net(obs).squeeze(-1)


class GaussianActor(nn.Module):
    """πθ(ũ|x) = N(μθ(x), diag σ²): A2C's policy over *unsafe* actions ũ.

    The mean is an unbounded linear output in normalised units (as in SB3's A2C): actions outside
    the box need no clipping, the safeguard or the environment handles them. σ is a
    state-independent parameter (``log_std``, normalised units).
    """

    def __init__(
        self, obs_dim: int, scale: ActionScale, hidden: Sequence[int], log_std_init: float
    ) -> None:
        super().__init__()
        self.scale = scale
        m = scale.center.numel()
        self.net = mlp([obs_dim, *hidden, m], nn.Tanh)
        self.log_std = nn.Parameter(torch.full((m,), float(log_std_init)))

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """(mean, std) in the action space's units, each [B, m]."""
        mean = self.scale.to_action(self.net(obs))
        std = self.scale.half_width * self.log_std.exp()
        return mean, std.expand_as(mean)

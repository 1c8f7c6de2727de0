"""K TD3 runs of one configuration updated as one: networks stacked on a leading run axis.

Issue 11 (grouped training; Chapter 8, "Running a sweep"). The runs of a sweep that share task,
algorithm and variant differ only in their seeds and α, so their updates have the same shapes. A
:class:`GroupedTD3Update` evaluates the *agents' own* loss functions
(:meth:`TD3.target_actions <tutorial_rl.agents.td3.TD3.target_actions>`, ``compute_loss_q``,
``compute_loss_pen``, ``compute_loss_pi``) for all K runs at once, the way PyTorch's "model
ensembling" tutorial does: ``torch.func.stack_module_state``-style stacked parameters and
``torch.vmap`` over ``torch.func.functional_call`` of one template agent. There is no second copy
of TD3: the group only decides *how often* its functions are called.

What stays per run: the minibatch (each run samples its own buffer with its own generator), the
target-policy noise (drawn from each run's torch generator, in the order ``TD3.update`` draws it),
α (a ``[K]`` tensor mapped by ``vmap`` like the parameters: the per-sample loss's weight in
``compute_loss_pi``; the penalty critic's rewards −α‖ũ − Φ(ũ)‖² are stored per run by
``TD3.store``) and, through the elementwise Adam, the optimiser state. What is shared: one
kernel call per layer for all K runs, one Adam step over the stacked tensors, one Polyak update
and, in SP-RL, one projection call for the K target-action batches and the K policy batches
(:func:`~tutorial_rl.agents.safe_layer.project_many` pads their row counts).

Batched matrix products round differently from single ones, so a grouped update equals K
separate ``TD3.update`` calls to about 1e-6 per update, not bit for bit (``tests/test_grouped.py``).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.utils._pytree import tree_map

from tutorial_rl.agents.buffers import Batch
from tutorial_rl.agents.common import ConfigError
from tutorial_rl.agents.safe_layer import project_many
from tutorial_rl.agents.td3 import TD3, _adam

__all__ = ["GroupedTD3Update", "StackedNetworks", "run_alphas"]

#: Batch fields the losses read inside ``vmap`` (the safe sets are used outside, in Φ).
_VMAPPED_FIELDS = ("obs", "action", "reward", "next_obs", "done", "unsafe_action", "penalty")


def run_alphas(agents: list[Any]) -> Tensor:
    """Each run's α as a ``[K]`` float32 tensor on the agents' device, for ``vmap`` (the losses'
    ``alpha`` argument).

    :raises ConfigError: agents whose configs, devices, or safety settings other than α, differ.
    """
    def shared(safety: Any) -> list[Any]:  # everything but α
        return [getattr(safety, f.name) for f in dataclasses.fields(safety) if f.name != "alpha"]

    first = agents[0]
    for agent in agents[1:]:
        if agent.config != first.config or shared(agent.safety) != shared(first.safety):
            raise ConfigError("the agents of a group must share config and safety (mode, "
                              "mitigation, projection); only α and the seed may differ")
        if agent.device != first.device:
            raise ConfigError(f"the agents of a group must share one device; got {first.device} "
                              f"and {agent.device}")
    return torch.tensor([a.safety.weight for a in agents], dtype=torch.float32,
                        device=first.device)


class _Networks(nn.Module):
    """The template agent's networks as one module, so ``functional_call`` can swap them all.

    ``forward(name, *args)`` calls the template's method ``name``: its ``self.actor``,
    ``self.critic``, ... are the submodules here, so they run with the substituted parameters.
    """

    def __init__(self, template: Any) -> None:
        super().__init__()
        for name, net in template.networks().items():
            self.add_module(name, net)
        self._template = [template]  # a list: not registered as a submodule

    def forward(self, method: str, *args: Any) -> Any:
        return getattr(self._template[0], method)(*args)


class StackedNetworks:
    """The networks of K agents stacked along a leading run axis, and calls of their methods.

    ``params[name]`` is ``[K, ...]``: run k's parameter ``name`` at index k (target networks'
    parameters do not require gradients). :meth:`call` evaluates a method of the first agent
    (the template) for every run with that run's parameters; :meth:`write_back` copies them into
    the agents' own networks. Works for any agent whose ``networks()`` names its modules (TD3,
    A2C).

    :param agents: K >= 1 agents of one configuration.
    """

    def __init__(self, agents: list[Any]) -> None:
        self.agents, self.template = agents, agents[0]
        self.module = _Networks(self.template)
        per_agent = [dict(_Networks(a).named_parameters()) for a in agents]
        self.params: dict[str, Tensor] = {
            key: torch.stack([p[key].detach() for p in per_agent]).requires_grad_(
                not key.split(".")[0].endswith("_target"))
            for key in per_agent[0]}

    def call(self, method: str, *args: Any) -> Any:
        """``template.method(*args)`` for every run: run k's parameters and arguments."""
        def one(params: dict[str, Tensor], *a: Any) -> Any:
            return functional_call(self.module, params, (method, *a), tie_weights=False)

        # run axis 0 on every tensor, none on the unused (None) fields
        in_dims = (0, *(tree_map(lambda x: 0 if isinstance(x, Tensor) else None, a)
                        for a in args))
        return torch.vmap(one, in_dims=in_dims)(self.params, *args)

    def stacked_module(self, name: str) -> nn.Module:
        """The template's network ``name`` running all K runs in one call, for acting.

        A structural copy whose ``nn.Linear`` layers multiply with the stacked weights
        (``torch.baddbmm``) and whose other parameters are the stacked ones with a broadcast
        axis; everything else (activations, the action scaling, the network's own ``forward``)
        is the template's code. Inputs and outputs carry the run axis first, ``[K, B, ...]``.
        It reads ``params`` live (views, no copies), so it always acts with the current
        parameters. ``vmap`` over ``functional_call`` (:meth:`call`) does the same with
        autograd-friendly generality but costs about ten times more per call, which dominates
        acting with tiny networks.
        """
        module = copy.deepcopy(dict(self.template.networks())[name])
        for path, linear in list(module.named_modules()):
            if isinstance(linear, nn.Linear):
                parent, _, attr = path.rpartition(".")
                owner = module.get_submodule(parent) if parent else module
                prefix = f"{name}.{path}."
                setattr(owner, attr, _StackedLinear(self.params[prefix + "weight"],
                                                    self.params.get(prefix + "bias")))
        for path, _ in list(module.named_parameters()):
            parent, _, attr = path.rpartition(".")
            owner = module.get_submodule(parent) if parent else module
            stacked = self.params[f"{name}.{path}"]
            del owner._parameters[attr]
            setattr(owner, attr, stacked.unsqueeze(1))  # [K, 1, ...]: broadcasts over a batch
        return module

    @torch.no_grad()
    def write_back(self, networks: tuple[str, ...] | None = None) -> None:
        """Copy run k's stacked parameters into agent k's networks (all, or those named)."""
        plan = self.__dict__.get("_plan")  # absent in checkpoints written before it existed
        if plan is None:
            plan = self._plan = self._copy_plan()
        for name, pairs in plan.items():
            if networks is None or name in networks:
                for key, targets in pairs:
                    for value, source in zip(targets, self.params[key].unbind(0), strict=True):
                        value.copy_(source)

    def _copy_plan(self) -> dict[str, list[tuple[str, list[Tensor]]]]:
        """Per network, each stacked key with the K agents' parameters it is copied into.

        Built once: walking K agents' module trees costs far more than the copies (TD3 acts
        with the agents' own actors, so the actors are written back every ``policy_delay``
        steps)."""
        per_agent = [dict(_Networks(a).named_parameters()) for a in self.agents]
        plan: dict[str, list[tuple[str, list[Tensor]]]] = {}
        for key in per_agent[0]:
            plan.setdefault(key.split(".")[0], []).append((key, [p[key] for p in per_agent]))
        return plan

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without the copy plan: it is rebuilt from the unpickled agents."""
        state = self.__dict__.copy()
        state.pop("_plan", None)
        return state


class _StackedLinear(nn.Module):
    """``nn.Linear`` of K runs: x [K, B, in] -> x W_kᵀ + b_k [K, B, out] (stacked W, b)."""

    def __init__(self, weight: Tensor, bias: Tensor | None) -> None:
        super().__init__()
        self.weight, self.bias = weight, bias

    def forward(self, x: Tensor) -> Tensor:
        wt = self.weight.transpose(1, 2)
        if self.bias is None:
            return torch.bmm(x, wt)
        return torch.baddbmm(self.bias.unsqueeze(1), x, wt)


class GroupedTD3Update:
    """One TD3 update for K agents of the same configuration (see the module docstring).

    The agents' parameters are copied into stacked tensors ``[K, ...]`` when the group is built
    (:class:`StackedNetworks`); :meth:`update` trains those, :meth:`write_back` copies them into
    the agents again (for ``model.pt``, evaluation or acting with the agents' own
    ``select_action``).

    :param agents: K >= 1 fresh TD3 agents with equal ``config``, equal ``safety`` up to α, and
        equal observation and action spaces (their seeds differ).
    """

    def __init__(self, agents: list[TD3]) -> None:
        if not agents:
            raise ValueError("a group needs at least one agent")
        first = agents[0]
        self.alphas = run_alphas(agents)
        self.agents, self.template = agents, first
        self.config, self.safety = first.config, first.safety
        self.stacked = StackedNetworks(agents)
        self.params = self.stacked.params
        names = list(first.networks())
        groups = {name: [v for k, v in self.params.items() if k.split(".")[0] == name]
                  for name in names}
        lr = self.config.learning_rate
        self.actor_optimizer = _adam(groups["actor"], lr)
        self.critic_optimizer = _adam(groups["critic"], lr)
        self.penalty_optimizer = _adam(groups["penalty_critic"], lr) \
            if "penalty_critic" in groups else None
        online = [n for n in names if not n.endswith("_target")]
        self._online = [v for n in online for v in groups[n]]
        self._target = [v for n in online for v in groups[f"{n}_target"]]
        self.n_updates = 0

    def _call(self, method: str, *args: Any) -> Any:
        return self.stacked.call(method, *args)

    def _stack(self, batches: list[Batch]) -> Batch:
        fields = {name: torch.stack([getattr(b, name) for b in batches])
                  for name in _VMAPPED_FIELDS if getattr(batches[0], name) is not None}
        return Batch(**fields)

    def _safe_actions(self, batches: list[Batch], target_unsafe: Tensor,
                      mu: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """SP-RL's Φ for all runs in one projection call (identity in unsafe and SE modes)."""
        if not self.template.sp:
            return target_unsafe, mu
        parts: list[tuple[Tensor, Tensor, Tensor, Tensor | None]] = []
        for k, b in enumerate(batches):
            assert b.next_A is not None and b.next_b is not None
            parts.append((target_unsafe[k], b.next_A, b.next_b, b.next_safe_point))
        if mu is not None:
            for k, b in enumerate(batches):
                assert b.A is not None and b.b is not None
                parts.append((mu[k], b.A, b.b, b.action.to(b.A.dtype)))
        out = project_many(parts, self.safety.projection_method)
        K = len(batches)
        target = torch.stack(out[:K])
        return target, (torch.stack(out[K:]) if mu is not None else None)

    def update(self, batches: list[Batch], update_actor: bool) -> None:
        """:meth:`TD3.update <tutorial_rl.agents.td3.TD3.update>` for every run at once.

        :param batches: run k's minibatch at index k (each sampled from its own buffer).
        :param update_actor: the delayed actor and target step (the same for all runs).
        """
        if len(batches) != len(self.agents):
            raise ValueError(f"expected {len(self.agents)} minibatches, got {len(batches)}")
        m = self.template._low_t.numel()
        # each run's target-policy noise from its own (CPU) generator, as TD3.target_actions
        # draws it, moved to the device in one transfer for the group
        noise = torch.stack([torch.randn(b.next_obs.shape[0], m, generator=a.generator,
                                         device="cpu")
                             for a, b in zip(self.agents, batches, strict=True)]).to(
            self.template.device)
        batch = self._stack(batches)
        with torch.no_grad():
            target_unsafe = self._call("target_actions", batch, noise)
        mu = self._call("actor", batch.obs) if update_actor else None
        target_action, u = self._safe_actions(batches, target_unsafe, mu)
        loss_q = self._call("compute_loss_q", batch, target_action).sum()  # Σ_k: K independent
        self.critic_optimizer.zero_grad(set_to_none=True)
        loss_q.backward()
        self.critic_optimizer.step()
        if self.penalty_optimizer is not None:
            loss_pen = self._call("compute_loss_pen", batch, target_unsafe).sum()
            self.penalty_optimizer.zero_grad(set_to_none=True)
            loss_pen.backward()
            self.penalty_optimizer.step()
        if update_actor:
            loss_pi = self._call("compute_loss_pi", batch, mu, u, self.alphas).sum()
            self.actor_optimizer.zero_grad(set_to_none=True)
            actor = [v for k, v in self.params.items() if k.split(".")[0] == "actor"]
            loss_pi.backward(inputs=actor)
            self.actor_optimizer.step()
            with torch.no_grad():
                torch._foreach_lerp_(self._target, self._online, self.config.tau)
        self.n_updates += 1

    def write_back(self, networks: tuple[str, ...] | None = None) -> None:
        """Copy run k's stacked parameters into agent k's networks (all, or those named)."""
        self.stacked.write_back(networks)

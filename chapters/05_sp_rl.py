# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Safeguarding the policy (SP-RL)
#
# The previous chapter hid the safeguard in the environment. This chapter moves it into the agent:
# the projection becomes the **last layer of the policy**, $\pi(x) = \Phi(x, \mu_\theta(x))$, a
# differentiable layer like any other {cite:p}`dalal2018safe,agrawal2019differentiable`. The
# environment is the original task, the policy only ever outputs safe actions, and gradients flow
# *through* the projection. This is **safe policy RL** (SP-RL) {cite:p}`markgraf2026safeguard`. What
# the agent applies is exactly what an SE-RL agent with the same network would apply, yet what it
# learns differs, and the chapter makes the difference precise: for deterministic policies it is
# the Jacobian of $\Phi$; for stochastic policies with a state-value critic there is, remarkably,
# none at all.
#
# ```{admonition} Learning goals
# :class: tip
# After this chapter you can
# 1. describe SP-RL's policy, its critic on safe actions and TD3's projected target actions, and
#    explain why the replay buffer must store the halfspaces of $\mathcal U_s(x)$ and
#    $\mathcal U_s(x')$;
# 2. derive the deterministic SP-RL policy gradient through $\partial\Phi/\partial\tilde u$ and
#    connect it to the zero-gradient problem of chapter 1;
# 3. state the unbiased stochastic SP-RL gradient with the unsafe sample's log-likelihood, prove
#    that A2C's SE-RL and SP-RL updates are identical (the paper's Lemma 1), and see it bit for bit;
# 4. explain why the projected-mean variant and TD3 break that equivalence;
# 5. state Theorem 1 (SE-RL and SP-RL share the optimal value function) and its proof idea;
# 6. train TD3 unsafe, in SE and in SP mode and say what SP-RL costs per update.
# ```
#
# ```{admonition} Run this chapter
# :class: seealso
# This page shows the chapter as it ran when the book was built. To run it yourself, get
# {{ repository_link }}, run `make lab` (it installs everything into `.venv` and opens
# JupyterLab), and open `chapters/05_sp_rl.py` as a notebook (right click, *Open With → Notebook*).
# Every cell can be edited and re-run there, and the interactive widgets respond.
# ```

# %%
import copy
import dataclasses
import tempfile
import time
import warnings
from pathlib import Path

import gymnasium as gym
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

import tutorial_rl  # noqa: F401  (registers the environments)
from tutorial_rl.agents.plots import (
    MODE_COLORS,
    parameter_table,
    plot_critic_slice,
    plot_mode_comparison,
)
from tutorial_rl.agents.safe_layer import project, violates
from tutorial_rl.experiments.training import RunConfig, evaluate, train
from tutorial_rl.profile import by_profile
from tutorial_rl.results import load_result

# %% [markdown]
# ## The safe policy and its critic
#
# In SP-RL the policy network $\mu_\theta$ still proposes an unsafe action $\tilde u =
# \mu_\theta(x)$, but the policy's output is its projection,
#
# $$
# \pi_\theta(x) = \Phi\big(x, \mu_\theta(x)\big) \in \mathcal U_s(x),
# $$ (eq-sp-policy)
#
# so the agent interacts with the *original* MDP, restricted to safe actions: $p_{SP}(x' \mid x, u)
# = p(x' \mid x, u)$ and $r_{SP}(x, u, x') = r(x, u, x')$ with $u \in \mathcal U_s(x)$. Its
# value functions are those of the safe policy, and the critic $Q_{SP}(x, u)$ takes the **safe**
# action as its argument; it is trained only on actions that were applied. Compare SE-RL's
# $Q_{SE}(x, \tilde u)$ of chapter 4, trained on proposals.
#
# The critic's bootstrap target must then evaluate the next *safe* action too. In TD3 the
# smoothed target action $\tilde u' = \operatorname{clip}(\mu_{\theta'}(x') + \varepsilon')$ is
# projected with the safe set of the **next** state:
#
# $$
# y = r + \gamma (1 - d) \min_{i = 1, 2} Q_{\phi_i'}\big(x', \Phi(x', \tilde u')\big).
# $$ (eq-sp-target)
#
# Without the projection the target would query $Q_{SP}$ at unsafe actions, where it has never
# been trained, and it would estimate the value of a policy that the agent never runs.
#
# ### Why the replay buffer stores the safe sets
#
# A TD3 update draws old transitions $(x, u, r, x', d)$ from the buffer, in any order, long after
# they were collected. For each of them it needs $\Phi(x, \mu_\theta(x))$ (the actor's action,
# below) and $\Phi(x', \tilde u')$ in {eq}`eq-sp-target`: projections onto $\mathcal U_s(x)$ and
# $\mathcal U_s(x')$, sets that change with the state. The environment can only describe the safe
# set of its *current* state (`safe_action_set()` takes no state argument, and for a real system
# there is no way to rewind it), so the halfspaces $(A, b)$ of both sets are recorded when the
# transition happens and stored with it. The stored action is the safe $u$, the argument of
# $Q_{SP}$. When every state shares the same rows $A$ (pendulum, quadrotor: only $b$ moves) the
# buffer keeps one copy of $A$, and the projection factors it once for the whole minibatch.
#
# ## The deterministic gradient runs through the Jacobian
#
# The deterministic policy gradient of the safe policy {eq}`eq-sp-policy` follows by the chain rule
# {cite:p}`silver2014deterministic,gros2020safe`:
#
# $$
# \nabla_\theta J(\theta) = \mathbb E_{x}\Big[\nabla_\theta \mu_\theta(x)\,
# \frac{\partial \Phi}{\partial \tilde u}\Big|_{\tilde u = \mu_\theta(x)}\,
# \nabla_u Q_{SP}(x, u)\big|_{u = \Phi(x, \mu_\theta(x))}\Big].
# $$ (eq-sp-dpg)
#
# Compare SE-RL's gradient $\nabla_\theta\mu_\theta \nabla_{\tilde u} Q_{SE}$: SP-RL replaces the
# critic's slope at the proposal by the critic's slope at the safe action, filtered by the
# Jacobian of chapter 1, {eq}`eq-jacobian`. That Jacobian is the identity when $\mu_\theta(x)$ is
# safe, removes the normal direction when it faces a face, and is **zero** when it lies in the
# normal cone of a vertex (the zero-gradient problem {cite:p}`lin2021escaping`). For the pendulum's
# one-dimensional torque every safe set is an interval, whose ends are vertices: a proposal
# outside the interval gets $\partial\Phi/\partial\tilde u = 0$, and the sample contributes
# nothing to {eq}`eq-sp-dpg`.
#
# ## The SP layer in the package
#
# The layer is `project` in `tutorial_rl.agents.safe_layer`: a batched, differentiable
# $\Phi(x, u)$ on top of the exact projection of chapter 1, which skips rows that are already safe
# (their Jacobian is the identity) and projects only the others:
#
# ```{literalinclude} ../src/tutorial_rl/agents/safe_layer.py
# :pyobject: project
# ```
#
# TD3 calls it in one place, `safe_actions`, which projects the target actions onto
# $\mathcal U_s(x')$ for {eq}`eq-sp-target` and the actor's proposals onto $\mathcal U_s(x)$ for
# {eq}`eq-sp-dpg`, in a single call. It is the identity in the other modes, which is all that
# distinguishes SP-RL from SE-RL inside `TD3.update` (chapter 4 shows `update` and
# `compute_loss_pi`; in SP mode the latter receives $u = \Phi(x, \mu_\theta(x))$ with its graph):
#
# ```{literalinclude} ../src/tutorial_rl/agents/td3.py
# :pyobject: TD3.safe_actions
# ```
#
# ## TD3 unsafe, in SE and in SP mode
#
# Three runs of TD3 on the pendulum from the same seed: without a safeguard (the task then ends
# an episode that leaves the state limits, with a termination penalty of 100), in SE mode and in
# SP mode. `by_profile` sets the budget; the runs write into a temporary directory.

# %%
steps = int(by_profile(ci=3_000, full=10_000))
td3 = {}
with tempfile.TemporaryDirectory() as tmp:
    for mode in ("unsafe", "se", "sp"):
        td3[mode] = train(RunConfig(env="pendulum", algo="td3", mode=mode, steps=steps, seed=0,
                                    out=Path(tmp) / f"td3-{mode}", num_threads=1,
                                    progress_bar=False))
        evaluation = evaluate(td3[mode].run_dir, episodes=5, seed=100, write=False)
        rows = td3[mode].progress
        print(f"{mode:>6}: {td3[mode].wall_time:4.1f} s, {len(rows):3d} episodes, "
              f"{sum(r['interventions'] for r in rows):5d} interventions, "
              f"{sum(r['constraint_violations'] for r in rows):4d} constraint violations; "
              f"evaluation: mean return {evaluation['mean_return']:7.2f}, "
              f"violations {evaluation['constraint_violations']}")
print(f"{steps:,} training steps per run")

# %% tags=["hide-input"] mystnb={"figure": {"caption": "TD3 on the pendulum without a safeguard, with it in the environment (SE) and in the policy (SP), same seed: episode return, interventions and constraint violations per episode. Without it, violations go on until the end; with it, in either place, there is none.", "name": "fig-mode-comparison"}, "image": {"alt": "Training curves of return, interventions and violations for three agents"}}
fig = plot_mode_comparison({mode: result.progress for mode, result in td3.items()})
fig.suptitle(f"TD3 on the pendulum, {steps} steps, seed 0", y=1.02)
fig.axes[0].set_ylim(bottom=max(fig.axes[0].get_ylim()[0], -160))
plt.show()

# %% [markdown]
# Without the safeguard, the agent leaves the safe (RCI) set again and again while it learns, and
# often the state limits too, which ends the episode with the termination penalty: many short
# episodes with very low returns at first, and constraint violations until the end. With the safeguard, in either position, every episode runs its full
# 200 steps and no constraint is ever violated. SE and SP agents start identically (the same seed,
# the same warm-up actions, the same $\Phi$ applied), then drift apart as soon as the updates
# begin: their critics are different functions. On the pendulum the task and safety agree, so
# both learn; chapter 8 compares them over many seeds and tasks.
#
# The SP agent's replay buffer holds what its updates need. A minibatch shows the stored
# halfspaces (one shared $A$ for the pendulum) and how many of the actor's proposals currently lie
# outside their safe interval, where $\partial\Phi/\partial\tilde u = 0$:

# %%
sp_agent = td3["sp"].agent
batch = sp_agent.buffer.sample(256)
print(f"A {tuple(batch.A.shape)}, b {tuple(batch.b.shape)}, A' {tuple(batch.next_A.shape)}, "
      f"b' {tuple(batch.next_b.shape)}, stored (safe) actions {tuple(batch.action.shape)}")
proposal = sp_agent.actor(batch.obs).detach().requires_grad_(True)
safe_action = project(proposal, batch.A, batch.b)
jacobian, = torch.autograd.grad(safe_action.sum(), proposal)  # ∂Φ/∂ũ per sample (1-D action)
print(f"proposals outside U_s(x): {violates(proposal, batch.A, batch.b).float().mean():.0%}; "
      f"samples with ∂Φ/∂ũ = 0: {int((jacobian == 0).sum())} of {len(jacobian)}, "
      f"with ∂Φ/∂ũ = 1: {int((jacobian == 1).sum())}")

# %% [markdown]
# Every sample with $\partial\Phi/\partial\tilde u = 0$ is lost for the actor's update. The two
# critics also look different: at the state $\theta = 0$, $\dot\theta = 1$ of chapter 4, where only
# torques $\le -0.205$ are safe, the SE critic was trained on proposals across the whole box, the
# SP critic only inside the safe interval. Outside it, the SP critic is an extrapolation that is
# never used: the actor evaluates it at $\Phi(x, \mu_\theta(x))$.

# %% tags=["hide-input"] mystnb={"figure": {"caption": "The SE and the SP critic at the same state. The SE critic was trained on proposals across the whole action range; the SP critic only on safe actions, so outside the shaded safe interval it is an extrapolation that the actor never uses.", "name": "fig-se-sp-critics"}, "image": {"alt": "Two curves of critic value against torque, SE-RL and SP-RL, with the safe interval shaded"}}
env = gym.make("tutorial_rl/Pendulum-v0")
env.reset(seed=0)
env.unwrapped.state = np.array([0.0, 1.0])
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=False)
for ax, mode in zip(axes, ("se", "sp"), strict=True):
    plot_critic_slice(td3[mode].agent, np.array([0.0, 1.0], dtype=np.float32),
                      env.unwrapped.safe_action_set(), ax=ax, color=MODE_COLORS[mode])
    ax.set_title(rf"{mode.upper()} critic at $\theta = 0$, $\dot\theta = 1$")
axes[0].legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Stochastic policies: the unsafe sample's likelihood
#
# With a stochastic policy, SP-RL samples $\tilde u \sim \pi_\theta(\cdot \mid x)$ and applies
# $u = \Phi(x, \tilde u)$. The likelihood-ratio gradient seems to need $\log$ of the distribution
# of the *safe* action $u$, but that distribution has atoms: every proposal in a normal cone lands
# on the same boundary point, so it has no density there (exercise 4 of chapter 4). Gros et al.
# {cite:p}`gros2020safe` (Proposition 2) show that the log-likelihood of the **unsafe sample**
# gives an unbiased estimate instead:
#
# $$
# \nabla_\theta J(\pi_{SP}) = \mathbb E\Big[\nabla_\theta \log \pi_\theta(\tilde u \mid x)\,
# A^{\pi_{SP}}\big(x, \Phi(x, \tilde u)\big)\Big],
# $$ (eq-sp-spg)
#
# with the advantage of the safe action, estimated in practice from the safe transitions by GAE.
# One way to see it: the safe process under $\pi_{SP}$ is the SE-RL process under $\pi_\theta$
# (the same states, the same applied actions, the same rewards), so $J(\pi_{SP}) = J_{SE}(
# \pi_\theta)$ for every $\theta$, their gradients agree, and the SE-RL gradient {eq}`eq-se-spg` is
# {eq}`eq-sp-spg` because $A_{SE}(x, \tilde u) = A_{SP}(x, \Phi(x, \tilde u))$. The package's A2C
# implements exactly this: `distribution` builds $\mathcal N(\mu_\theta(x), \sigma^2)$ over
# unsafe actions, the loss takes the log-likelihood of the stored proposal $\tilde u$, and the
# advantage comes from the rollout's (safe) rewards:
#
# ```{literalinclude} ../src/tutorial_rl/agents/a2c.py
# :pyobject: A2C.compute_loss_pi
# ```
#
# With a state-value critic, the consequence is striking.
#
# ```{prf:lemma} SE-RL and SP-RL A2C coincide; Lemma 1 of the paper
# :label: lem-a2c-equivalence
# Let an actor-critic algorithm with a stochastic policy $\pi_\theta(\tilde u \mid x)$ over unsafe
# actions and a state-value critic $V_\psi(x)$ estimate its advantages by GAE. In SE-RL, use the
# gradient {eq}`eq-se-spg` with $\hat A$ from the SE transitions; in SP-RL, use {eq}`eq-sp-spg` with
# $\hat A$ from the safe transitions. Then for the same initial parameters $(\theta_0, \psi_0)$,
# the same hyperparameters and the same random numbers, the parameter updates of SE-RL and SP-RL
# are identical at every iteration {cite:p}`markgraf2026safeguard`.
# ```
#
# ```{prf:proof}
# By induction over iterations; at iteration 0 the parameters agree by assumption. Suppose they
# agree at iteration $k$. *Acting:* both draw $\tilde u_t \sim \pi_{\theta_k}(\cdot \mid x_t)$ with
# the same random numbers and both apply $u_t = \Phi(x_t, \tilde u_t)$ to the system (SE-RL inside
# the environment, SP-RL as the policy's last layer), so the rollouts $(x_t, \tilde u_t, u_t, r_t)$
# coincide. *Advantages:* $r_{SE,t} = r(x_t, \Phi(x_t, \tilde u_t), x_{t+1}) = r_t$ by
# {eq}`eq-se-mdp`, and the critic $V_{\psi_k}$ sees only states, so every TD residual $\delta_t$ and
# hence every GAE $\hat A_t$ is the same in both. *Policy loss:* both use $\nabla_\theta \log
# \pi_{\theta_k}(\tilde u_t \mid x_t)\, \hat A_t$ with the same unsafe sample. *Critic loss:*
# $(V_\psi(x_t) - \hat R_t)^2$ with the same states and targets. The same gradients and the same
# optimizer state give the same parameters at iteration $k + 1$.
# ```
#
# The proof uses the state-value critic in an essential way: a critic $Q(x, \cdot)$ of the action would be evaluated
# at $\tilde u$ in SE-RL and at $u$ in SP-RL, and the two would part at the first update. The
# package is written so that the lemma holds to the last bit, not only in exact arithmetic: both
# modes run one code path, draw one normal sample per step in the same order, and apply the same
# $\Phi$ at acting time. The package's `A2C`, line by line with its methods:
#
# ````{prf:algorithm} A2C with the safeguard in the environment or in the policy
# :label: alg-a2c
#
# ```text
# repeat until the step budget is spent:             A2C.learn
#   for t = 1, ..., n:                               collect_rollout
#     ũ_t ← μθ(x_t) + σθ ⊙ ε_t, one ε_t ~ N(0, I)    select_action
#     the system receives u_t = Φ(x_t, ũ_t)
#       (SE: the environment projects,
#        SP: the policy's last layer)
#     observe r_t, x_{t+1}; keep (x_t, ũ_t, r_t)
#   Â_t ← GAE(r, V_ψ), R̂_t ← Â_t + V_ψ(x_t)          compute_gae
#   one gradient step on                             update
#     L = −mean log N(ũ_t; μθ(x_t), σθ²) Â_t         compute_loss_pi
#         + c_v mean (V_ψ(x_t) − R̂_t)²               compute_loss_v
# ```
# ````
#
# Nothing in the box depends on the mode except who applies $\Phi$, and that does not change
# $u_t$: this is the lemma's proof, as code.
#
# ### The paper's Lemma 1, live
#
# Train A2C in SE mode and in SP mode from the same seed and compare every parameter tensor:

# %%
a2c_steps = int(by_profile(ci=2_000, full=20_000))
a2c = {}
with tempfile.TemporaryDirectory() as tmp:
    for mode in ("se", "sp"):
        a2c[mode] = train(RunConfig(env="pendulum", algo="a2c", mode=mode, steps=a2c_steps, seed=3,
                                    out=Path(tmp) / f"a2c-{mode}", num_threads=1,
                                    progress_bar=False))
print(f"A2C, {a2c_steps} steps, seed 3: interventions SE "
      f"{sum(r['interventions'] for r in a2c['se'].progress)}, SP "
      f"{sum(r['interventions'] for r in a2c['sp'].progress)}")
print(pd.DataFrame(parameter_table(a2c["se"].agent, a2c["sp"].agent)).to_string(index=False))
se_state, sp_state = a2c["se"].agent.state_dict(), a2c["sp"].agent.state_dict()
equal = [torch.equal(se_state[net][name], sp_state[net][name])
         for net in se_state for name in se_state[net]]
print(f"torch.equal over the state dicts: {sum(equal)} of {len(equal)} tensors identical")
print("identical episode returns:",
      [r["episode_return"] for r in a2c["se"].progress] ==
      [r["episode_return"] for r in a2c["sp"].progress])

# %% [markdown]
# Every tensor is identical, bit for bit, although the safeguard intervened in a large share of
# the steps. For TD3 the same comparison of the SE and SP runs above gives the opposite picture:
# not one tensor agrees, because the critics are trained on different actions ($\tilde u$ versus
# $u$) and the actor gradients differ by the Jacobian.

# %%
td3_table = pd.DataFrame(parameter_table(td3["se"].agent, td3["sp"].agent))
td3_table["network"] = td3_table["parameter"].str.split(".").str[0]
print(td3_table.groupby("network", sort=False).agg(
    tensors=("identical", "size"), identical=("identical", "sum"),
    max_abs_difference=("max_abs_difference", "max")).to_string())

# %% [markdown]
# ## The projected-mean variant breaks the equivalence
#
# A different way to build a stochastic SP-RL policy {cite:p}`chen2021enforcing` (the paper's
# appendix A.5) projects the *mean* first, samples around it and projects again:
#
# $$
# \tilde u \sim \mathcal N\big(\Phi(x, \mu_\theta(x)), \operatorname{diag}(\sigma)^2\big), \qquad
# u = \Phi(x, \tilde u),
# \qquad
# \log \pi_\theta(\tilde u \mid x) = -\sum_{i=1}^m \frac{\big(\tilde u_i - \Phi_i(x, \mu_\theta(x))\big)^2}{2\sigma_i^2}
# - \sum_{i=1}^m \log \sigma_i - \frac m2 \log 2\pi .
# $$ (eq-projected-mean)
#
# Its gradient with respect to the network's mean passes through the projection:
#
# $$
# \nabla_{\mu} \log \pi_\theta(\tilde u \mid x) =
# \Big(\frac{\partial \Phi}{\partial \tilde u}\Big|_{\tilde u = \mu_\theta(x)}\Big)^{\!\top}
# \operatorname{diag}(\sigma)^{-2}\big(\tilde u - \Phi(x, \mu_\theta(x))\big) .
# $$ (eq-projected-mean-grad)
#
# The Jacobian is back, and with it the zero-gradient problem: a mean in a vertex cone (for the
# pendulum, any mean outside the safe interval) receives no gradient from the policy loss, only
# $\sigma$ does. SE-RL has no such factor, so the two no longer coincide. The package implements
# the variant in `A2C.distribution`, whose `projected_mean` branch replaces the centre
# $\mu_\theta(x)$ of the normal distribution by `project(mean, A, b, ...)`, the SP layer above.
#
# The same seed and budget as the Lemma 1 run, with `sp_log_likelihood="projected-mean"`:

# %%
with tempfile.TemporaryDirectory() as tmp:
    projected_mean = train(RunConfig(env="pendulum", algo="a2c", mode="sp", steps=a2c_steps,
                                     seed=3, agent={"sp_log_likelihood": "projected-mean"},
                                     out=Path(tmp) / "a2c-sp-pm", num_threads=1,
                                     progress_bar=False))
print(pd.DataFrame(parameter_table(a2c["se"].agent, projected_mean.agent)).to_string(index=False))

# %% [markdown]
# ## Theorem 1: the same optimal value function
#
# Lemma 1 is about one algorithm family. The paper's first result is about the problem itself:
# whatever the algorithm, SE-RL and SP-RL aim at the same target.
#
# ```{prf:theorem} SE-RL and SP-RL share the optimal value function; Theorem 1 of the paper
# :label: thm-same-optimum
# Let $V_{SE}^\star$ be the optimal value function of the SE-RL MDP {eq}`eq-se-mdp`, optimising
# over policies $\pi(\tilde u \mid x)$ on the action box $\mathcal U$, and $V_{SP}^\star$ that of
# SP-RL, optimising over safe policies $\pi_s(u \mid x)$ supported on $\mathcal U_s(x)$. Then
# $V_{SE}^\star(x) = V_{SP}^\star(x)$ for every state $x$ {cite:p}`markgraf2026safeguard`.
# ```
#
# ```{prf:proof}
# (Idea; the paper's appendix A.3 has the details.) For a policy $\pi$ over $\mathcal U$, let
# $\Phi_\# \pi$ be its **pushforward**: the safe policy that samples $\tilde u \sim \pi(\cdot \mid
# x)$ and outputs $\Phi(x, \tilde u)$.
#
# 1. *Every SE-RL value is an SP-RL value.* By {eq}`eq-se-mdp`, running $\pi$ in the SE-RL MDP and
#    running $\Phi_\#\pi$ in the SP-RL MDP produce the same distribution of states, applied
#    actions and rewards, so $V_{SE}^\pi = V_{SP}^{\Phi_\#\pi}$ and $V_{SE}^\star \le
#    V_{SP}^\star$.
# 2. *Every SP-RL value is an SE-RL value.* $\Phi(x, \cdot)$ maps $\mathcal U$ **onto**
#    $\mathcal U_s(x)$: it is the identity on $\mathcal U_s(x)$, so every safe action has a
#    preimage (itself). A safe policy $\pi_s$ is therefore also a policy over $\mathcal U$ with
#    $\Phi_\#\pi_s = \pi_s$, and step 1 gives $V_{SP}^{\pi_s} = V_{SE}^{\pi_s}$, so
#    $V_{SP}^\star \le V_{SE}^\star$.
#
# Both inequalities together give $V_{SE}^\star = V_{SP}^\star$.
# ```
#
# The theorem says that neither integration gives up optimality, not that they find it equally
# easily: an optimal SE-RL policy is any policy whose pushforward is optimal, and because of
# action aliasing there are many (any proposal in the right normal cone will do), so nothing
# pulls an SE-RL policy into the safe set. The mitigations of chapter 7 change the reward or the
# loss and, with it, whether the equivalence survives.
#
# ## What SP-RL costs
#
# SE-RL projects one action per environment step. SP-RL projects that one too, and in every TD3
# update it also projects a whole minibatch twice (the target actions onto $\mathcal U_s(x')$ and
# the proposals onto $\mathcal U_s(x)$) and backpropagates through the second projection. The
# paper computed these projections and their sensitivities with `cvxpylayers`
# {cite:p}`agrawal2019differentiable`, which solves a conic program per sample and is where its
# reported computational overhead of SP-RL comes from. This package uses the exact batched
# projection of chapter 1 instead (`projection_method="exact"`, the default; `"cvxpylayers"` is
# available as the reference). `benchmarks/training.py` times TD3 update steps of warmed-up SE and
# SP agents side by side. Its committed measurement, the one this book quotes (chapter 8 too), was
# taken on a busy 2-core CPU with one torch thread:

# %%
update_cost = load_result("update-cost")
print(update_cost.describe())
for env, r in update_cost.data.items():
    print(f"{env:>9}: SP/SE time per TD3 update {r['ratio']:.2f}x with the exact projection, "
          f"{r['cvx_ratio']:.0f}x with cvxpylayers")

# %% [markdown]
# That is an SP/SE ratio of 1.45 to 1.7 with the exact projection and of about 60 to 170 with
# `cvxpylayers`. Even the pendulum, whose 1-D projection is a clamp onto an interval, pays about
# 1.45: at a minibatch of 256 what SP-RL adds is mostly the fixed cost of the layer's calls (input
# checks, finding the unsafe rows, the projection's autograd node, the stored safe sets to sample),
# not the arithmetic of the projection. Run `python benchmarks/training.py --skip-sb3` for the figures on your machine. A
# quick version of the same measurement with the agents trained above (a few updates, so only
# indicative):

# %%
torch.set_num_threads(1)
n_updates = int(by_profile(ci=50, full=300))
n_cvx = int(by_profile(ci=2, full=5))
cvx_agent = copy.copy(sp_agent)  # the same networks and buffer, projected with cvxpylayers
cvx_agent.safety = dataclasses.replace(sp_agent.safety, projection_method="cvxpylayers")
timings = {}
for name, agent, count in (("SE", td3["se"].agent, n_updates), ("SP, exact", sp_agent, n_updates),
                           ("SP, cvxpylayers", cvx_agent, n_cvx)):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cvxpylayers warns on every call under numpy 2
        agent.update(agent.buffer.sample(256), update_actor=True)  # warm-up (builds the layer)
        start = time.perf_counter()
        for i in range(count):
            agent.update(agent.buffer.sample(256), update_actor=i % 2 == 0)
        timings[name] = (time.perf_counter() - start) / count
for name, seconds in timings.items():
    print(f"{name:>16}: {seconds * 1e3:7.2f} ms per update, {seconds / timings['SE']:6.1f}x SE")

# %% [markdown]
# A factor of one and a half makes SP-RL experiments as affordable as SE-RL ones; a factor of
# sixty to 170 turns a ten-minute run into ten hours or more. That gap, not a property of SP-RL itself, is what
# made SP-RL expensive in practice.
#
# ## Summary
#
# - SP-RL makes $\Phi$ the policy's last layer {eq}`eq-sp-policy`. Its critic $Q_{SP}(x, u)$ is
#   trained on safe actions, and TD3's target actions are projected onto the next state's safe set
#   {eq}`eq-sp-target`, so the buffer stores the halfspaces of $\mathcal U_s(x)$ and
#   $\mathcal U_s(x')$ with every transition.
# - The deterministic gradient {eq}`eq-sp-dpg` passes through $\partial\Phi/\partial\tilde u$;
#   proposals in a vertex cone (for a 1-D action: outside the interval) give no gradient.
# - For stochastic policies, the unsafe sample's log-likelihood gives an unbiased gradient
#   {eq}`eq-sp-spg`; with a state-value critic and GAE, A2C's SE and SP updates are identical
#   ({prf:ref}`lem-a2c-equivalence`), which the runs above reproduce bit for bit. TD3 and the
#   projected-mean variant {eq}`eq-projected-mean-grad` do not share this property.
# - SE-RL and SP-RL share the optimal value function ({prf:ref}`thm-same-optimum`), because
#   $\Phi(x, \cdot)$ maps the action box onto the safe set.
# - With an exact batched projection, an SP-RL update costs a small factor more than an SE-RL
#   update; with a generic differentiable-optimization layer, about 60 to 170 times more.
#
# ## Exercises
#
# ```{exercise}
# :label: ex-sp-interval
# For a 1-D action with $\mathcal U_s(x) = [\ell, h]$, write $\Phi(x, \tilde u)$ and
# $\partial\Phi/\partial\tilde u$. A TD3 SP-RL agent has $\mu_\theta(x) > h$ at some state and its
# critic says that smaller torques are better there. What does {eq}`eq-sp-dpg` do for this state,
# and what would SE-RL's gradient do with a critic that has learned {eq}`eq-se-q-invariance`
# exactly? With an imperfect one?
# ```
#
# ```{solution} ex-sp-interval
# :class: dropdown
# $\Phi(x, \tilde u) = \min(\max(\tilde u, \ell), h)$, with derivative $1$ on $(\ell, h)$ and $0$
# outside $[\ell, h]$. For $\mu_\theta(x) > h$ the Jacobian is zero, so {eq}`eq-sp-dpg` gives no
# gradient at all for that state, whatever the critic says: the proposal stays where it is. A
# perfect SE critic is constant for $\tilde u \ge h$ (all those proposals apply $h$), so its slope
# at $\mu_\theta(x)$ is zero too: the same outcome, arrived at through the critic. An imperfect SE
# critic usually has *some* slope outside the interval, often continuing the trend it learned near
# $h$, which can move the proposal back into the interval: the approximation error helps here.
# ```
#
# ```{exercise}
# :label: ex-lemma-q-critic
# Where exactly does the proof of {prf:ref}`lem-a2c-equivalence` break for TD3? Name the first
# quantity that differs between the SE and SP runs above.
# ```
#
# ```{solution} ex-lemma-q-critic
# :class: dropdown
# Acting is still identical during the warm-up, and the rewards of the transitions are the same.
# The first difference is what is *stored*: SE-RL stores $\tilde u$, SP-RL stores $u = \Phi(x,
# \tilde u)$, so the very first critic update regresses $Q_{\phi}(x, \tilde u)$ in one run and
# $Q_\phi(x, u)$ in the other, on the first minibatch that contains an intervention. The target
# $y$ differs as well ($\tilde u'$ versus $\Phi(x', \tilde u')$ in {eq}`eq-sp-target`), and the
# actor gradient differs by the Jacobian. Once the parameters differ, the actions differ too.
# ```
#
# ```{exercise}
# :label: ex-lemma-seeker
# Repeat the Lemma 1 demonstration on the seeker, whose action is 2-D and whose safe sets change
# shape from state to state. Then add the SP per-sample loss (`mitigation="per-sample-loss"`,
# `alpha=0.5`) to the SP run only. Which tensors still agree?
# ```
#
# ````{solution} ex-lemma-seeker
# :class: dropdown
# ```python
# seeker = {}
# for name, mode, mitigation, alpha in (("se", "se", "none", None), ("sp", "sp", "none", None),
#                                       ("sp-psl", "sp", "per-sample-loss", 0.5)):
#     seeker[name] = train(RunConfig(env="seeker", algo="a2c", mode=mode, mitigation=mitigation,
#                                    alpha=alpha, steps=400, seed=7, num_threads=1,
#                                    progress_bar=False))
# for other in ("sp", "sp-psl"):
#     table = pd.DataFrame(parameter_table(seeker["se"].agent, seeker[other].agent))
#     print(other, table["identical"].sum(), "of", len(table), "identical")
# ```
#
# Without a mitigation all tensors agree: the proof of the lemma never used the shape of
# $\mathcal U_s(x)$ or the action dimension. The per-sample loss $\alpha\lVert \mu_\theta(x) -
# \Phi(x, \mu_\theta(x))\rVert^2$ is added to the SP actor loss only, so the actor's tensors
# differ after the first update in which a mean lies outside its safe set, and through the
# shared optimizer step and the next rollouts so does everything else.
# ````
#
# ```{exercise}
# :label: ex-theorem-penalty
# Does {prf:ref}`thm-same-optimum` still hold when SE-RL uses the penalised reward
# {eq}`eq-se-penalty` of chapter 4? Which step of the proof fails, and what survives?
# ```
#
# ```{solution} ex-theorem-penalty
# :class: dropdown
# Step 1 fails: the penalised reward $r - \alpha\lVert\tilde u - \Phi(x, \tilde u)\rVert^2$ depends
# on the proposal $\tilde u$, not only on the applied action, so running $\pi$ in the penalised
# SE-RL MDP and $\Phi_\#\pi$ in the SP-RL MDP no longer give the same rewards; for a given policy
# the value functions differ, $V_\alpha^\pi \le V_{SE}^\pi$. The optimal *values* still agree
# over all policies: $V_\alpha^\star \le V_{SE}^\star = V_{SP}^\star$ because the penalty is
# $\le 0$, and an optimal safe policy, run in the penalised MDP, proposes only safe actions and pays
# no penalty, so $V_\alpha^\star \ge V_{SP}^\star$. What changes is the set of optimal policies
# (only those that propose safe actions remain), and, for a restricted policy class such as a
# Gaussian with a fixed $\sigma > 0$ whose samples leave the set with positive probability, the
# best value the class can reach. The SP-RL mitigations of chapter 7 are compared with exactly
# this in mind.
# ```

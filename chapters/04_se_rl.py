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
# # Safeguarding the environment (SE-RL)
#
# The simplest way to use a projection safeguard in reinforcement learning is to hide it. The agent
# proposes an action $\tilde u$; before the action reaches the system, the safeguard replaces it by
# $u = \Phi(x, \tilde u)$, the closest safe action. The agent is never told. From its point of view
# the safeguard is part of the environment's dynamics, so any off-the-shelf RL algorithm can be
# trained on the wrapped environment without a single change. This is **safe environment RL**
# (SE-RL) {cite:p}`markgraf2026safeguard`. This chapter writes down the MDP such an agent
# actually solves, its value functions and policy gradients, recalls TD3, and trains it in SE mode
# on the pendulum.
#
# ```{admonition} Learning goals
# :class: tip
# After this chapter you can
# 1. write the modified MDP of SE-RL: transition and reward composed with $\Phi$, the action space
#    unchanged;
# 2. explain why the SE-RL critic $Q(x, \tilde u)$ is evaluated on *unsafe* actions and why it is
#    constant wherever $\Phi$ is (action aliasing, seen by the critic);
# 3. state the deterministic and stochastic policy gradients of SE-RL and say why no Jacobian of
#    $\Phi$ appears in them;
# 4. read TD3's pseudocode against the package's named steps (`target_actions`,
#    `compute_loss_q`, `compute_loss_pi`, `update`) and the environment side of a mode
#    (`ModeEnv`);
# 5. train TD3 in SE mode with `train(RunConfig(...))`, read its `progress.csv`, and check that it
#    never violated a constraint.
# ```
#
# ```{admonition} Run this chapter
# :class: seealso
# This page shows the chapter as it ran when the book was built. To run it yourself, get
# {{ repository_link }}, run `make lab` (it installs everything into `.venv` and opens
# JupyterLab), and open `chapters/04_se_rl.py` as a notebook (right click, *Open With → Notebook*).
# Every cell can be edited and re-run there, and the interactive widgets respond.
# ```

# %%
import tempfile
from pathlib import Path

import gymnasium as gym
import matplotlib.pyplot as plt
import numpy as np

import tutorial_rl  # noqa: F401  (registers the environments)
from tutorial_rl.agents import ModeEnv, SafetyConfig
from tutorial_rl.agents.plots import (
    MODE_COLORS,
    plot_critic_slice,
    plot_progress,
    read_progress,
    safe_interval,
)
from tutorial_rl.experiments.training import RunConfig, env_defaults, evaluate, train
from tutorial_rl.profile import by_profile

# %% [markdown]
# ## The modified MDP
#
# Start from the task's MDP $(\mathcal X, \mathcal U, p, r, \gamma)$: states $x$, actions $u$ in the
# action box $\mathcal U$, a transition density $p(x' \mid x, u)$, a reward $r(x, u, x')$ and a
# discount $\gamma$. For each state the safe action set $\mathcal U_s(x) \subseteq \mathcal U$ is a
# convex polytope (chapter 3 builds them for the three tasks), and the safeguard is the projection
# of {doc}`chapter 1 <01_projection>`,
#
# $$
# \Phi(x, \tilde u) = \arg\min_{v \in \mathcal U_s(x)} \lVert v - \tilde u \rVert_2^2 .
# $$
#
# In SE-RL the agent keeps choosing from the whole box $\mathcal U$, but whatever it chooses is
# projected before it acts. The agent therefore interacts with a *different* MDP
# $(\mathcal X, \mathcal U, p_{SE}, r_{SE}, \gamma)$, whose transition and reward are the task's
# composed with $\Phi$ {cite:p}`markgraf2026safeguard`:
#
# $$
# p_{SE}(x' \mid x, \tilde u) = p\big(x' \mid x, \Phi(x, \tilde u)\big), \qquad
# r_{SE}(x, \tilde u, x') = r\big(x, \Phi(x, \tilde u), x'\big).
# $$ (eq-se-mdp)
#
# Three things follow at once.
#
# - **The action space is unchanged.** The agent's policy $\pi_\theta(\tilde u \mid x)$ (or
#   $\mu_\theta(x)$) is a policy over the whole box. Nothing in the agent knows that a safe set
#   exists; the safeguard is a black box inside the environment, exactly like friction.
# - **Every trajectory is safe.** Only projected actions reach the system, so the states stay in
#   the set where a safe action exists, during training as well as after it.
# - **The guarantees of the RL algorithm survive.** SE-RL solves an ordinary MDP with an ordinary
#   algorithm, so whatever that algorithm promises for an MDP it promises here. The price is that
#   the MDP now has a peculiar structure, which the next section makes visible.
#
# ## Value functions: a critic on unsafe actions
#
# The value functions of a policy $\pi$ in the modified MDP are the usual ones, with the SE
# transition and reward:
#
# $$
# V_{SE}^\pi(x) = \mathbb E_{\pi, p_{SE}}\Big[\sum_{t \ge 0} \gamma^t r_{SE}(x_t, \tilde u_t, x_{t+1})
# \;\Big|\; x_0 = x\Big], \qquad
# Q_{SE}^\pi(x, \tilde u) = \mathbb E_{x' \sim p_{SE}(\cdot \mid x, \tilde u)}\big[r_{SE}(x, \tilde u, x') +
# \gamma V_{SE}^\pi(x')\big].
# $$ (eq-se-values)
#
# The action-value function $Q_{SE}(x, \tilde u)$ takes the *unsafe* action as its argument: an
# SE-RL critic is trained on the proposals $\tilde u$ the agent made, most of which may lie outside
# $\mathcal U_s(x)$. By {eq}`eq-se-mdp`, $\tilde u$ enters only through $\Phi(x, \tilde u)$, and a
# safe action is its own projection, so
#
# $$
# Q_{SE}^\pi(x, \tilde u) = Q_{SE}^\pi\big(x, \Phi(x, \tilde u)\big) \quad \text{for every } \tilde u .
# $$ (eq-se-q-invariance)
#
# The true critic is constant along every set of proposals that the projection maps to the same
# safe action: along each normal cone $u + N(u)$ of {prf:ref}`lem-normal-cone`. This is action
# aliasing seen by the critic. A critic that had learned {eq}`eq-se-q-invariance` perfectly would
# have zero slope in the normal directions outside the safe set: the *flat-lining critic*, which
# chapter 6 studies. Learned critics are not perfect, which, as we will see, is sometimes a
# blessing.
#
# ## Policy gradients without a Jacobian
#
# Because SE-RL is an ordinary MDP, its policy gradients are the textbook ones. For a deterministic
# policy $\tilde u = \mu_\theta(x)$, the deterministic policy gradient theorem
# {cite:p}`silver2014deterministic` gives
#
# $$
# \nabla_\theta J(\theta) = \mathbb E_{x \sim \rho^\mu}\Big[\nabla_\theta \mu_\theta(x)\,
# \nabla_{\tilde u} Q_{SE}(x, \tilde u)\big|_{\tilde u = \mu_\theta(x)}\Big],
# $$ (eq-se-dpg)
#
# with $\rho^\mu$ the discounted state distribution of the policy and $Q_{SE}$ replaced by a
# learned critic in practice. For a stochastic policy $\pi_\theta(\tilde u \mid x)$, such as A2C's
# Gaussian {cite:p}`mnih2016asynchronous`, the likelihood-ratio form is
#
# $$
# \nabla_\theta J(\theta) = \mathbb E\Big[\nabla_\theta \log \pi_\theta(\tilde u_t \mid x_t)\,
# \hat A_t\Big], \qquad
# \hat A_t = \sum_{l \ge 0} (\gamma\lambda)^l \delta_{t+l}, \quad
# \delta_t = r_{SE,t} + \gamma V(x_{t+1}) - V(x_t),
# $$ (eq-se-spg)
#
# with the generalised advantage estimate (GAE) $\hat A_t$ {cite:p}`schulman2015gae` computed from
# a state-value critic $V$. Note what is *absent* from both: no safe set and no Jacobian
# $\partial\Phi/\partial\tilde u$. The log-likelihood is that of the unsafe sample $\tilde u_t$,
# which has an ordinary Gaussian density; the rewards in $\delta_t$ are those of the safe
# transitions that really happened. The package computes $\hat A_t$ exactly as written, backwards
# through a rollout:
#
# ```{literalinclude} ../src/tutorial_rl/agents/buffers.py
# :pyobject: compute_gae
# ```
#
# The effect of the safeguard on learning is entirely in what the critic has to learn:
# {eq}`eq-se-dpg` follows $\nabla_{\tilde u} Q_{SE}$, which by {eq}`eq-se-q-invariance` carries no
# information along the normal directions of the safe set.
#
# ## TD3, recalled
#
# The deterministic agent of this course is TD3 {cite:p}`fujimoto2018addressing`, DDPG with three
# fixes against the overestimation of Q-learning: two critics and the minimum of their targets,
# a delayed actor update, and smoothing noise on the target action. One training run reads:
#
# 1. Initialise the actor $\mu_\theta$, two critics $Q_{\phi_1}, Q_{\phi_2}$, target copies
#    $\theta' \leftarrow \theta$, $\phi_i' \leftarrow \phi_i$, and an empty replay buffer.
# 2. For $t = 1, \dots, T$: in state $x$ propose $\tilde u = \mu_\theta(x) + \varepsilon$,
#    $\varepsilon \sim \mathcal N(0, \sigma^2)$, clipped to the action box (uniformly random
#    actions during the first `learning_starts` steps). *(`select_action`)*
# 3. Send $\tilde u$ to the environment; observe $r$, $x'$ and whether $x'$ is terminal, $d$.
#    *(`ModeEnv.step`)*
# 4. Store $(x, \tilde u, r, x', d)$ in the buffer. *(`store`)*
# 5. Sample a minibatch and form the smoothed target action $\tilde u' = \operatorname{clip}(
#    \mu_{\theta'}(x') + \operatorname{clip}(\varepsilon', -c, c))$, $\varepsilon' \sim
#    \mathcal N(0, \tilde\sigma^2)$. *(`target_actions`)*
# 6. Regress both critics on the clipped double-Q target $y = r + \gamma (1 - d) \min_i
#    Q_{\phi_i'}(x', \tilde u')$: minimise $\sum_i (Q_{\phi_i}(x, \tilde u) - y)^2$.
#    *(`compute_loss_q`)*
# 7. Every `policy_delay` steps: take an actor step on $-Q_{\phi_1}(x, \mu_\theta(x))$, i.e. along
#    {eq}`eq-se-dpg` *(`compute_loss_pi`)*, and move the targets, $\theta' \leftarrow (1 - \tau)
#    \theta' + \tau\theta$, $\phi_i' \leftarrow (1 - \tau)\phi_i' + \tau\phi_i$. *(`update`)*
#
# The package's `TD3` class has one method per step, with these names; the algorithm below is the
# loop of `TD3.learn` written out, with the method that does each line on its right:
#
# ````{prf:algorithm} TD3 with the safeguard in the environment (SE-RL)
# :label: alg-td3-se
#
# ```text
# for t = 1, ..., T:                                 TD3.learn
#   ũ ← clip(μθ(x) + ε), ε ~ N(0, σ²)                select_action
#       (uniformly random before learning_starts)
#   environment applies u = Φ(x, ũ); r, x', d        ModeEnv.step
#   add (x, ũ, r, x', d) to the replay buffer        store
#   sample a minibatch                               update
#   ũ' ← clip(μθ'(x') + clip(ε', −c, c))             target_actions
#   y ← r + γ (1 − d) min_i Qφi'(x', ũ')             compute_loss_q
#   φi ← φi − η ∇ Σ (Qφi(x, ũ) − y)²  (i = 1, 2)
#   every policy_delay steps:
#     θ ← θ + η ∇θ mean Qφ1(x, μθ(x))  (no ∂Φ/∂ũ)    compute_loss_pi
#     θ' ← (1 − τ)θ' + τθ, φi' ← (1 − τ)φi' + τφi    update
# ```
# ````
#
# Only two lines know about the safeguard: the environment applies $\Phi$, and the buffer stores
# the proposal $\tilde u$, so the critic learns $Q_{SE}(x, \tilde u)$ and the actor's gradient is
# {eq}`eq-se-dpg`, with no Jacobian. Without a safeguard the algorithm is plain TD3; the next
# chapter changes the lines that store and differentiate, not the loop. The whole class is in
# `src/tutorial_rl/agents/td3.py`, one method per line of the box.
#
# ## How SE mode is implemented
#
# The agent code above is the same in every mode. What differs is the environment side, the class
# `ModeEnv`: in SE (and SP) mode it wraps the task in the `ProjectionSafeguard` of chapter 3, and
# at every step it reports what happened as an `EnvStep` with both actions, the unsafe
# `unsafe_action` ($\tilde u$) and the applied `safe_action` ($u$):
#
# | mode | the environment receives | the learner stores and differentiates |
# |---|---|---|
# | `unsafe` | $\tilde u$ (no safeguard) | $\tilde u$ |
# | `se` | $\Phi(x, \tilde u)$ | $\tilde u$ and the (possibly penalised) reward |
# | `sp` | $\Phi(x, \tilde u)$, the policy's last layer | $u = \Phi(x, \tilde u)$, $\mathcal U_s(x)$, $\mathcal U_s(x')$; $\partial\Phi/\partial\tilde u$ |
#
# ```{literalinclude} ../src/tutorial_rl/agents/common.py
# :pyobject: ModeEnv.step
# ```
#
# The agent decides which action its critic learns on: SE-RL stores the proposal $\tilde u$, the
# argument of $Q_{SE}$ in {eq}`eq-se-values`:
#
# ```{literalinclude} ../src/tutorial_rl/agents/td3.py
# :pyobject: TD3.store
# ```
#
# One step by hand. We put the pendulum in the state $\theta = 0$, $\dot\theta = 1$ rad/s (upright
# but swinging to the right) and propose a positive torque, which would push it further:

# %%
env = ModeEnv(gym.make("tutorial_rl/Pendulum-v0"), SafetyConfig("se"))
env.reset(seed=0)
env.env.unwrapped.state = np.array([0.0, 1.0])  # upright, swinging to the right
low, high = safe_interval(*env.env.unwrapped.safe_action_set())
print(f"U_s(x) = [{low:.3f}, {high:.3f}] (normalised torque; 1 = 8 N m)")
step = env.step(np.array([0.5]))
print(f"proposed ũ = {step.unsafe_action}, applied u = {step.safe_action.round(4)}, "
      f"intervened: {step.intervened}, ‖ũ − u‖² = {step.distance_sq:.4f}")
print(f"reward {step.reward:.4f}, constraint violation: {step.violation}")

# %% [markdown]
# Only a torque of at most about $-0.205$ (braking the swing) is safe in this state, so the proposal
# $0.5$ was moved to the end of the interval, and the agent learns $Q_{SE}(x, 0.5)$ from a
# transition that really used $-0.205$.
#
# ## Training TD3 in SE mode
#
# A whole run is one call of `train` with a `RunConfig`. Every task has its defaults in
# `env_defaults` (for the pendulum: networks $[32, 32]$ and 10 000 steps, as in the paper's code);
# the number of steps here comes from `by_profile`, the one switch that keeps the book's build
# short. The run writes `config.json`, `progress.csv` (one row per episode) and `model.pt` into a
# temporary directory. From a shell the same run is
# `tutorial-rl train --env pendulum --algo td3 --mode se --steps 10000 --out runs/td3-se`.

# %%
print("pendulum TD3 defaults:", env_defaults("pendulum", "td3")["agent"])
steps = int(by_profile(ci=3_000, full=10_000))
with tempfile.TemporaryDirectory() as tmp:
    result = train(RunConfig(env="pendulum", algo="td3", mode="se", steps=steps, seed=0,
                             out=Path(tmp) / "td3-se", num_threads=1, progress_bar=False))
    print("files of the run:", sorted(p.name for p in result.run_dir.iterdir()))
    progress = read_progress(result.run_dir)
    evaluation = evaluate(result.run_dir, episodes=5, seed=100, write=False)
print(f"{steps:,} training steps in {result.wall_time:.1f} s")
print(f"training: {sum(r['interventions'] for r in progress)} interventions, "
      f"{sum(r['constraint_violations'] for r in progress)} constraint violations")
print(f"evaluation of μθ over {evaluation['episodes']} episodes: mean return "
      f"{evaluation['mean_return']:.2f}, interventions per episode "
      f"{evaluation['interventions_per_episode']}, "
      f"constraint violations {evaluation['constraint_violations']}")

# %% tags=["hide-input"] mystnb={"figure": {"caption": "TD3 with the safeguard in the environment on the pendulum: episode return, safeguard interventions and constraint violations per training episode. The return climbs, interventions fall, and violations stay at zero from the first step.", "name": "fig-se-progress"}, "image": {"alt": "Training curves of return, interventions and violations per episode"}}
axes = plot_progress(progress, label="TD3, SE-RL", color=MODE_COLORS["se"])
axes[0].legend(fontsize=8)
axes[0].figure.suptitle(f"TD3 in SE mode on the pendulum ({steps} steps, seed 0)", y=1.02)
plt.show()

# %% [markdown]
# The episode return (the task's reward, without any penalty) climbs as the pendulum is held
# closer to upright; the first `learning_starts` steps use random actions. The interventions per
# episode fall as well, although nothing in the agent's objective asks for that: on a
# stabilisation task, a good policy stays near the upright equilibrium, deep inside the safe set,
# so it rarely proposes an unsafe torque. The constraint violations are zero in every episode:
# exploration noise, random warm-up actions and an untrained actor included. Safety does not wait
# for learning.
#
# ## What the SE critic has learned on unsafe actions
#
# The trained critic can be evaluated at any action, safe or not. Drawn over the whole action box
# at two states where only one sign of torque is safe, $Q_1(x, \tilde u)$ should by
# {eq}`eq-se-q-invariance` be flat outside $\mathcal U_s(x)$, the shaded interval: every
# proposal beyond the interval's end is applied as that end.

# %% tags=["hide-input"] mystnb={"figure": {"caption": "The trained SE critic Q₁(x, ũ) over the whole action range at two states where only one sign of torque is safe (shaded interval): outside the interval it should be flat, since every proposal beyond an end is applied as that end.", "name": "fig-se-critic-slices"}, "image": {"alt": "Two curves of the critic's value against the proposed torque, with the safe interval shaded"}}
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
for ax, state in zip(axes, ([0.0, 1.0], [0.0, -1.0]), strict=True):
    env.env.unwrapped.state = np.array(state)
    plot_critic_slice(result.agent, np.array(state, dtype=np.float32),
                      env.env.unwrapped.safe_action_set(), ax=ax, color=MODE_COLORS["se"])
    ax.set_title(rf"SE critic at $\theta = {state[0]}$, $\dot\theta = {state[1]}$")
axes[0].legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# Compare the curves outside the shaded intervals with the flat continuation that
# {eq}`eq-se-q-invariance` predicts. A learned critic is rarely flat there after a short run: it
# was fitted to a few thousand noisy transitions, and nothing in its architecture knows that all
# proposals beyond the interval's end are the same action. Its slope outside the set is an
# artefact of function approximation, not information about the task, yet {eq}`eq-se-dpg` follows
# it, and it may push a proposal back into the set or further out. Where the critic *has* become
# flat, the actor receives no gradient there at all. Both effects are action aliasing, and
# chapter 6 measures them.
#
# ## Preview: the SE penalty
#
# The usual remedy in SE-RL {cite:p}`wabersich2021predictive,krasowski2023provably` is to tell the
# agent that it was corrected: the environment's reward becomes
#
# $$
# r_\alpha(x, \tilde u, x') = r\big(x, \Phi(x, \tilde u), x'\big) - \alpha \lVert \tilde u - \Phi(x, \tilde u) \rVert_2^2 ,
# $$ (eq-se-penalty)
#
# with a weight $\alpha \ge 0$. Now $Q_{SE}$ decreases with the distance to the safe set, and
# {eq}`eq-se-q-invariance` no longer holds: the critic can learn a slope that points back towards
# $\mathcal U_s(x)$. The penalty changes the MDP. Over all policies the best achievable return is
# the same (a policy that proposes only safe actions pays no penalty), but the set of optimal
# policies shrinks to those that propose safe actions, and for the policies an agent actually
# learns (a Gaussian that puts mass outside the set, a network that is only approximately
# optimal) $\alpha$ trades the task against interventions. In the package it is one more field of the configuration
# (`RunConfig(mode="se", mitigation="penalty", alpha=...)`), applied by the safeguard; the
# reported `task_reward` stays the task's own. Chapter 7 compares it with SP-RL's mitigations.

# %%
penalised = ModeEnv(gym.make("tutorial_rl/Pendulum-v0"), SafetyConfig("se", "penalty", alpha=1.0))
penalised.reset(seed=0)
penalised.env.unwrapped.state = np.array([0.0, 1.0])
step = penalised.step(np.array([0.5]))
print(f"‖ũ − u‖² = {step.distance_sq:.4f}: reward the agent learns from {step.reward:.4f}, "
      f"task reward {step.task_reward:.4f}")

# %% [markdown]
# ## Summary
#
# - SE-RL treats the safeguard as part of the environment: transition and reward are composed
#   with $\Phi$ {eq}`eq-se-mdp`, the action space stays the whole box, and any RL algorithm applies
#   unchanged, with its guarantees.
# - The critic $Q_{SE}(x, \tilde u)$ is learned on unsafe proposals, but the true one depends on
#   them only through $\Phi(x, \tilde u)$ {eq}`eq-se-q-invariance`: it is constant along normal
#   cones.
# - The policy gradients {eq}`eq-se-dpg` and {eq}`eq-se-spg` contain no Jacobian of $\Phi$; the
#   safeguard acts on learning only through what the critic must represent.
# - In the package the agent is the same in every mode; `ModeEnv` puts the safeguard in front of
#   the task and reports both actions, and TD3 stores the proposal $\tilde u$ in SE mode.
# - TD3 in SE mode learns the pendulum with zero constraint violations from the first step, and
#   proposes fewer unsafe actions as it improves.
#
# ## Exercises
#
# ```{exercise}
# :label: ex-se-invariance
# Prove {eq}`eq-se-q-invariance` from {eq}`eq-se-mdp`. Then let $u$ be a point on the boundary of
# $\mathcal U_s(x)$, $n \in N(u)$ a normal direction and $\tilde u = u + s n$ with $s > 0$. Show
# that $\frac{d}{ds} Q_{SE}^\pi(x, u + s n) = 0$. What does this imply for the component of
# {eq}`eq-se-dpg` along $n$ when the critic is perfect and $\mu_\theta(x) = \tilde u$?
# ```
#
# ```{solution} ex-se-invariance
# :class: dropdown
# $p_{SE}$ and $r_{SE}$ depend on $\tilde u$ only through $\Phi(x, \tilde u)$, and $\Phi(x, v) = v$
# for $v \in \mathcal U_s(x)$, so $\Phi(x, \Phi(x, \tilde u)) = \Phi(x, \tilde u)$. Hence
# $p_{SE}(\cdot \mid x, \tilde u) = p_{SE}(\cdot \mid x, \Phi(x, \tilde u))$ and the same for the
# reward; the first step of $Q_{SE}^\pi$ in {eq}`eq-se-values` is identical for both arguments and
# the rest ($V_{SE}^\pi(x')$) does not depend on the first action. By
# {prf:ref}`lem-normal-cone`, $\Phi(x, u + s n) = u$ for all $s \ge 0$, so $s \mapsto
# Q_{SE}^\pi(x, u + sn)$ is constant and its derivative is zero. With a perfect critic the
# gradient $\nabla_{\tilde u} Q_{SE}$ has no component along $n$: the actor is never pushed back
# along the normal, towards the safe set. (At a vertex of a 2-D set the whole normal cone has
# interior, the critic is locally constant and the gradient vanishes entirely.)
# ```
#
# ```{exercise}
# :label: ex-se-store
# `TD3.store` keeps the proposal $\tilde u$ in SE mode. Suppose it stored the applied action
# $u = \Phi(x, \tilde u)$ instead, and nothing else changed. Which function would the critic learn,
# where would the actor query it, and why is that a problem?
# ```
#
# ```{solution} ex-se-store
# :class: dropdown
# The critic would be regressed only on safe actions and learn (an approximation of) the value of
# safe actions, the SP-RL critic of the next chapter. But the actor loss still evaluates it at
# $\mu_\theta(x)$, which may lie outside $\mathcal U_s(x)$, where the critic has never seen data:
# the actor would follow the extrapolation of a network, not any estimate of the return. SP-RL
# fixes the mismatch consistently by evaluating the critic at $\Phi(x, \mu_\theta(x))$, which brings
# in the Jacobian of $\Phi$. SE-RL fixes it by learning the critic on $\tilde u$.
# ```
#
# ```{exercise}
# :label: ex-se-penalty-run
# Train TD3 in SE mode with the penalty {eq}`eq-se-penalty`, $\alpha = 1$, for the same number of
# steps and seed as above, and compare the interventions per episode and the returns with the
# vanilla run. Which column of `progress.csv` records the penalty?
# ```
#
# ````{solution} ex-se-penalty-run
# :class: dropdown
# ```python
# with tempfile.TemporaryDirectory() as tmp:
#     penalty_run = train(RunConfig(env="pendulum", algo="td3", mode="se", mitigation="penalty",
#                                   alpha=1.0, steps=steps, seed=0, out=Path(tmp) / "td3-se-pen",
#                                   num_threads=1, progress_bar=False))
# for name, rows in (("vanilla", progress), ("penalty", penalty_run.progress)):
#     print(name, [r["interventions"] for r in rows], [round(r["episode_return"], 1) for r in rows])
# print("penalty column:", [round(r["penalty"], 3) for r in penalty_run.progress])
# ```
#
# The `penalty` column holds $\alpha \sum_t \lVert \tilde u_t - u_t \rVert^2$ per episode;
# `episode_return` is the task's return without it, so the two runs are compared on the same
# scale. With the penalty the agent is paid to propose safe torques, so interventions usually fall
# faster; on the pendulum, where safety and the task agree, the return is similar. A very large
# $\alpha$ can make the agent over-cautious, which is why chapter 7 scans it.
# ````
#
# ```{exercise}
# :label: ex-se-likelihood
# A2C in SE mode uses $\log \pi_\theta(\tilde u \mid x)$ of the Gaussian proposal. Why would
# $\log$ of the density of the *applied* action $u = \Phi(x, \tilde u)$ not work? Consider the
# pendulum in a state where $\mathcal U_s(x) = [-1, -0.205]$.
# ```
#
# ```{solution} ex-se-likelihood
# :class: dropdown
# The distribution of $u$ is the pushforward of the Gaussian through $\Phi$. Every proposal above
# $-0.205$ is applied as $-0.205$, so $u$ takes the value $-0.205$ with positive probability
# $P(\tilde u \ge -0.205)$: the distribution has an atom (a Dirac component) at the end of the
# interval and no density there. Its "log-density" is undefined at exactly the actions the
# safeguard produces most often. The Gaussian density of $\tilde u$ is always defined, which is
# why SE-RL's estimator {eq}`eq-se-spg` works unchanged; the next chapter shows that SP-RL can use
# it too {cite:p}`gros2020safe`.
# ```

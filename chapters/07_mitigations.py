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
# # Mitigations
#
# Chapter 6 showed the two faces of action aliasing: the flat-lining SE critic and the zero
# gradient of SP-RL. Both lose the same information, the component of the policy gradient along
# the normal of the safe set. This chapter adds it back with a penalty on the distance between
# the proposed and the applied action, in the three ways the paper compares
# {cite:p}`markgraf2026safeguard`: a reward penalty for SE-RL, a per-sample loss for SP-RL, and
# the paper's proposal, a penalty critic for SP-RL. It then answers a natural objection: how
# does the penalty get past a Jacobian of rank zero? Exactly: its immediate part does, its
# long-term part does not. Finally it builds a state where the long-term part matters, and shows
# what the penalty critic gains there over the per-sample loss.
#
# ```{admonition} Learning goals
# :class: tip
# After this chapter you can
# 1. write down the policy-gradient estimators of the three mitigations side by side and say
#    which parts are myopic and which carry long-term consequences;
# 2. prove that the gradient of the penalty $\alpha\lVert\tilde u - \Phi(\tilde u)\rVert^2$ is
#    $2\alpha(\tilde u - \Phi(\tilde u))$ whatever the rank of $\partial\Phi/\partial\tilde u$, and
#    that it lives exactly in the directions the Jacobian deletes;
# 3. split the penalty critic's gradient into that immediate part and a long-term part that
#    passes through $J^\top$ like the task gradient, and show that SE-RL with a reward penalty
#    follows the same gradient;
# 4. read the fixed-state experiment: why the per-sample loss stops on the boundary while the
#    penalty critic and the SE reward penalty reach the interior, and when that difference
#    disappears;
# 5. build a state where today's action changes tomorrow's penalties, and measure what the
#    penalty critic's long-term part buys there.
# ```
#
# ```{admonition} Run this chapter
# :class: seealso
# This page shows the chapter as it ran when the book was built. To run it yourself, get
# {{ repository_link }}, run `make lab` (it installs everything into `.venv` and opens
# JupyterLab), and open `chapters/07_mitigations.py` as a notebook (right click, *Open With → Notebook*).
# Every cell can be edited and re-run there, and the interactive widgets respond.
# ```

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch

from tutorial_rl.aliasing import (
    LONG_HORIZON_LABELS,
    SETTING_LABELS,
    SETTINGS,
    decomposition_check,
    is_on_boundary,
    penalty_gradient_check,
    run_all,
    run_long_horizon,
)
from tutorial_rl.aliasing.plots import plot_long_horizon, plot_settings
from tutorial_rl.plotting import polygon_vertices
from tutorial_rl.projection import project_polytope, projection_jacobian

torch.set_default_dtype(torch.float64)
torch.set_num_threads(1)  # tiny tensors: one thread is fastest and is not slowed by a busy machine
results = run_all()  # the experiment of chapter 6, all six settings (sizes from the profile)
alpha = results["quadrotor"].config.alpha
print("penalty weight alpha =", alpha, "| policy step size =", results["quadrotor"].config.policy_lr)

# %% [markdown]
# ## Three remedies, three gradient estimators
#
# All three use the squared distance of the proposal to the safe set,
#
# $$
# d(x, \tilde u)^2 = \lVert \tilde u - \Phi(x, \tilde u) \rVert^2 ,
# $$ (eq-mit-penalty)
#
# weighted by $\alpha > 0$. Write $\mu = \mu_\theta(x)$ for the deterministic policy,
# $u = \Phi(x, \mu)$ for the applied action and $J = \partial\Phi/\partial\tilde u$ at $\mu$.
#
# **SE-RL with a reward penalty** (paper eq. 23-25; {cite:t}`wabersich2021predictive`). The
# environment returns $r - \alpha d^2$. The critic learns the penalised value on unsafe actions,
# $Q_{SE,\alpha}(x, \tilde u) = Q_{SE}(x, \tilde u) - \alpha d(x, \tilde u)^2 - \gamma\,
# \mathbb E[\text{discounted future penalties}]$, and the actor follows it:
#
# $$
# \nabla_\theta J_{SE,\alpha} = \mathbb E\big[\nabla_\theta \mu \; \nabla_{\tilde u}
# Q_{SE,\alpha}(x, \tilde u)\big|_{\tilde u = \mu}\big].
# $$ (eq-mit-se-penalty)
#
# **SP-RL with a per-sample loss** (paper eq. 27-28; {cite:t}`chen2021enforcing`). The critic is
# unchanged (safe actions, no penalty); the actor's loss gets $+\alpha d^2$ of its own output:
#
# $$
# \nabla_\theta J_{PSL} = \mathbb E\big[\nabla_\theta \mu \, \big(J^\top \nabla_u Q(x, u)
# - 2\alpha\,(\mu - \Phi(x, \mu))\big)\big].
# $$ (eq-mit-psl)
#
# **SP-RL with a penalty critic** (paper eq. 29-31, the paper's proposal). A second critic on the
# unsafe action learns the discounted sum of penalties under the unsafe policy, $Q_{pen}(x, \tilde
# u) = \mathbb E[\sum_k \gamma^k (-\alpha d(x_k, \tilde u_k)^2)]$, and the actor follows both:
#
# $$
# \nabla_\theta J_{PenC} = \mathbb E\big[\nabla_\theta \mu \, \big(J^\top \nabla_u Q(x, u)
# + \nabla_{\tilde u} Q_{pen}(x, \tilde u)\big|_{\tilde u = \mu}\big)\big].
# $$ (eq-mit-penc)
#
# | | critic(s) | penalty enters | horizon of the penalty | gradient through $J$ |
# |---|---|---|---|---|
# | SE + reward penalty {eq}`eq-mit-se-penalty` | $Q_{SE,\alpha}(x, \tilde u)$ | the reward | long-term (discounted) | no |
# | SP + per-sample loss {eq}`eq-mit-psl` | $Q(x, u)$ | the actor loss | myopic (this sample) | task term only |
# | SP + penalty critic {eq}`eq-mit-penc` | $Q(x, u)$ and $Q_{pen}(x, \tilde u)$ | a second critic | long-term (discounted) | task term only |
#
# The per-sample loss is a myopic regulariser of the actor, not the value of any reward, so the
# penalised-MDP structure of {eq}`eq-mit-se-penalty` is lost. Over all policies the optimum is
# unchanged (an optimal policy that proposes only safe actions pays no loss, so it is still
# $V^\star_{SP}$), but the surrogate the actor ascends, and its optimum within a restricted policy
# class, differ from SE-RL with a reward penalty; this is what the paper means by the equivalence
# of its Theorem 1 breaking. The penalty critic restores the structure of
# {eq}`eq-mit-se-penalty`, split into a safe-action part and an unsafe-action part. In the
# fixed-state experiment each estimator becomes an objective for the free action $\tilde u$:
#
# ```{literalinclude} ../src/tutorial_rl/aliasing/experiment.py
# :pyobject: _objective
# ```
#
# In this experiment only the first action is learned (the continuation is fixed and safe), so
# the penalty critic's target is just the immediate penalty $-\alpha d^2$: here $Q_{pen}$ differs
# from the per-sample loss *only* by being a fitted, smooth network. In full RL it also carries the
# discounted penalties of the states the unsafe action leads to. Keep this in mind when reading
# the results below.
#
# ## The penalty and the rank-deficient Jacobian
#
# The objection: the penalty is computed from $\Phi(\tilde u)$, the output of the
# projection; so is its gradient not filtered by the same rank-deficient $J$ it is meant to
# repair? It is not, and the reason is exact.
#
# ```{prf:proposition} Gradient of the penalty
# :label: prop-penalty-gradient
# Let $\tilde u$ be a point where the active set of the projection is locally constant and
# $J = I - A_{\mathcal A}^\top(A_{\mathcal A}A_{\mathcal A}^\top)^{-1}A_{\mathcal A}$. Then
#
# $$
# J^\top(\tilde u - \Phi(\tilde u)) = 0
# \qquad\text{and}\qquad
# \nabla_{\tilde u}\, \alpha\lVert \tilde u - \Phi(\tilde u)\rVert^2 = 2\alpha\,(\tilde u - \Phi(\tilde u)).
# $$
#
# The penalty's gradient lies in $\mathrm{range}(A_{\mathcal A}^\top)$, the span of the active
# normals: exactly the null space of $J$, the directions that $J$ deletes from the task gradient
# $J^\top\nabla_u Q$, which lies in $\mathrm{range}(J) = \mathrm{null}(A_{\mathcal A})$. The
# per-sample loss's two terms in {eq}`eq-mit-psl` are therefore orthogonal and complementary.
# ```
#
# ```{prf:proof}
# By the KKT conditions of the projection (chapter 1), $\tilde u - \Phi(\tilde u) =
# A_{\mathcal A}^\top\lambda$ for multipliers $\lambda \ge 0$ of the active constraints. $J$ is
# symmetric and $J A_{\mathcal A}^\top = A_{\mathcal A}^\top - A_{\mathcal A}^\top
# (A_{\mathcal A}A_{\mathcal A}^\top)^{-1}A_{\mathcal A}A_{\mathcal A}^\top = 0$, so
# $J^\top(\tilde u - \Phi(\tilde u)) = J A_{\mathcal A}^\top \lambda = 0$. By the chain rule,
# $\nabla \alpha\lVert\tilde u - \Phi(\tilde u)\rVert^2 = 2\alpha (I - J)^\top(\tilde u -
# \Phi(\tilde u)) = 2\alpha(\tilde u - \Phi(\tilde u)) - 2\alpha J^\top(\tilde u - \Phi(\tilde u))
# = 2\alpha(\tilde u - \Phi(\tilde u))$. Finally $J$ is the orthogonal projector onto
# $\mathrm{null}(A_{\mathcal A})$, whose orthogonal complement is $\mathrm{range}(A_{\mathcal
# A}^\top)$.
# ```
#
# Three consequences answer the objection. (i) The path of the gradient *through* $\Phi$
# contributes $-2\alpha J^\top(\tilde u - \Phi) = 0$: whether an implementation lets autograd
# differentiate through the projection inside the penalty or stops the gradient there, the result
# is the same. (ii) The gradient is continuous in $\tilde u$, even across the kinks of $\Phi$
# ($d^2$ is continuously differentiable, being the squared distance to a convex set
# {cite:p}`rockafellar1998variational`), so the boundary convention of chapter 6 plays no role for
# it. (iii) Facing a vertex of a 2-D set, $J = 0$ and the task term vanishes, but the penalty term
# is a full-size vector towards the set. Numerically, at a point facing an edge, one facing a
# vertex, and one inside, for the quadrotor's safe set:

# %%
s = results["quadrotor"].scenario
points = np.array([[0.5, -0.6], [1.5, 0.0], [0.0, 0.0]])
names = ["facing an edge", "facing a vertex", "inside"]
check = penalty_gradient_check(s.A, s.b, points, alpha=alpha)
for i, name in enumerate(names):
    print(f"{name:>16}: rank J = {check['rank'][i]}, autograd gradient {check['autograd'][i].round(4)}, "
          f"2 alpha (ũ - Φ(ũ)) = {check['closed_form'][i].round(4)}, |Jᵀ(ũ - Φ(ũ))| = {check['J_residual'][i]:.1e}")

# the same gradient with the path through Φ cut (Φ treated as a constant)
u = torch.as_tensor(points, dtype=torch.float64).requires_grad_(True)
safe = project_polytope(u, torch.as_tensor(s.A), torch.as_tensor(s.b))
(grad_detached,) = torch.autograd.grad((alpha * (u - safe.detach()).square().sum(-1)).sum(), u)
print("max |gradient with Φ detached - autograd gradient| =",
      f"{np.abs(grad_detached.numpy() - check['autograd']).max():.1e}")

# %% [markdown]
# And along the SP-RL trajectories of the experiment, the task term $J^\top\nabla_u Q_{SP}$ and the
# immediate penalty term $2\alpha(\tilde u - \Phi(\tilde u))$ are orthogonal at every step:

# %%
for name, result in results.items():
    s = result.scenario
    A, b = torch.as_tensor(s.A), torch.as_tensor(s.b)
    path = torch.as_tensor(result.trajectories["sp_per_sample"].unsafe)
    safe = project_polytope(path, A, b).requires_grad_(True)
    (grad_q,) = torch.autograd.grad(result.critics["sp"](safe).sum(), safe)
    task = (projection_jacobian(path, A, b).mT @ grad_q[..., None]).squeeze(-1)
    pen = 2 * alpha * (path - safe.detach())
    cosine = (task * pen).sum(-1) / (task.norm(dim=-1) * pen.norm(dim=-1)).clamp_min(1e-300)
    outside = pen.norm(dim=-1) > 0
    print(f"{name:>9}: {int(outside.sum())} steps outside the set, max |cos(task term, penalty term)| = "
          f"{cosine[outside].abs().max():.1e}")

# %% [markdown]
# So the immediate penalty is not filtered by $J$: it acts exactly where $J$ is blind. What it
# cannot do is tell the policy where to go *along* the boundary, or inside the set.
#
# ### The penalty critic's long-term part
#
# The proposition is about the immediate penalty $-\alpha d^2$ only. The penalty critic learns
# more: the discounted penalties of the states the action leads to. Its gradient has a second
# part, and that part does not escape the Jacobian.
#
# ```{prf:proposition} The gradients of the three mitigations with exact critics
# :label: prop-penalty-critic-gradient
# Let the policy be deterministic, write $u = \Phi(x, \tilde u)$, let $Q(x, u)$ be the task
# critic on safe actions and $V_{pen}(x) = Q_{pen}(x, \mu_\theta(x))$, and let the critics be
# exact. The next state depends on $\tilde u$ only through $u$, so
#
# $$
# Q_{pen}(x, \tilde u) = -\alpha\, d(x, \tilde u)^2 + F(x, \Phi(x, \tilde u)), \qquad
# F(x, u) = \gamma\, \mathbb E\big[V_{pen}(x') \mid x, u\big],
# $$
#
# and at every $\tilde u$ where the active set is locally constant
#
# $$
# \nabla_{\tilde u} Q_{pen}(x, \tilde u) = \underbrace{-2\alpha\,(\tilde u - \Phi)}_{\text{immediate:
# in } \mathrm{null}(J)} + \underbrace{J^\top \nabla_u F(x, u)}_{\text{long-term: in }
# \mathrm{range}(J)} .
# $$ (eq-mit-penc-split)
#
# SE-RL with the reward penalty and SP-RL with the penalty critic then follow the same gradient,
#
# $$
# \nabla_{\tilde u} Q_{SE,\alpha} = J^\top\nabla_u Q + \nabla_{\tilde u} Q_{pen} =
# J^\top \nabla_u\big[Q(x, u) + F(x, u)\big] - 2\alpha\,(\tilde u - \Phi),
# $$ (eq-mit-same-gradient)
#
# and the per-sample loss {eq}`eq-mit-psl` lacks exactly $J^\top\nabla_u F$, the gradient of the
# future penalties.
# ```
#
# ```{prf:proof}
# The penalty critic's Bellman equation is $Q_{pen}(x, \tilde u) = -\alpha d(x, \tilde u)^2 +
# \gamma\mathbb E[Q_{pen}(x', \mu_\theta(x'))]$ with $x' \sim P(\cdot \mid x, \Phi(x, \tilde u))$,
# which is the first display. Differentiate: the first term gives $-2\alpha(\tilde u - \Phi)$ by
# {prf:ref}`prop-penalty-gradient`, the second $J^\top\nabla_u F$ by the chain rule. $J$ is an
# orthogonal projector, so $J^\top\nabla_u F \in \mathrm{range}(J)$. SE-RL's environment pays
# $r - \alpha d^2$, and the value of a sum of rewards under one policy is the sum of the values:
# $V_{SE,\alpha} = V + V_{pen}$, hence $Q_{SE,\alpha}(x, \tilde u) = r(x, u) - \alpha d^2 +
# \gamma\mathbb E[V(x') + V_{pen}(x')] = Q(x, \Phi(x, \tilde u)) + Q_{pen}(x, \tilde u)$, whose
# gradient is $J^\top \nabla_u Q + \nabla_{\tilde u} Q_{pen}$. The same holds without a penalty: $\nabla_{\tilde u} Q_{SE} = J^\top \nabla_u Q$,
# the reason SE-RL and SP-RL share their gradient when the critics are exact (chapter 6).
# ```
#
# This is the precise answer to the objection. The penalty's gradient has two
# parts, and they meet the rank-deficient Jacobian differently:
#
# - the **immediate part** $-2\alpha(\tilde u - \Phi)$ lies in $\mathrm{null}(J)$, the span of
#   the active normals. It is never filtered, whatever the rank of $J$ and whether or not the
#   implementation differentiates through $\Phi$ (consequence (i) above);
# - the **long-term part** $J^\top\nabla_u F$ lies in $\mathrm{range}(J)$, the same subspace as
#   the task term, and is deleted wherever the task term is: along the normal of a face, and
#   completely at a vertex ($J = 0$).
#
# So no mitigation restores the normal component of the *task* or *future-penalty* gradient. The
# penalty only pulls the proposal back to the set, where $J$ has full rank again. With exact
# critics the SE reward penalty and the penalty critic follow the same gradient
# {eq}`eq-mit-same-gradient`. For A2C, whose critic is a state-value function, they are even one
# algorithm: $V + V_{pen}$ is the value of $r - \alpha d^2$, and the package's A2C penalty critic
# produces bit for bit the parameters of A2C with the SE reward penalty (paper §7.2, §8.2.2;
# `tests/test_agents.py`). They differ only through approximation: a fitted $Q_{SE,\alpha}(x,
# \tilde u)$ has to learn the flat-lined $Q(x, \Phi(\tilde u))$ ({prf:ref}`lem-flat-lining`), while
# the penalty critic gets $J^\top\nabla_u Q$ exactly and has to learn the penalties only. The
# per-sample loss lacks the long-term part altogether. Where today's action changes tomorrow's
# penalties, that is a real difference: the last section of this chapter builds such a state and
# checks {eq}`eq-mit-penc-split` on a fitted penalty critic.
#
# ## The fixed-state experiment with mitigations
#
# The settings of chapter 6, now with the three mitigations ($\alpha$ and the step size as printed
# above; the same initial action, critics and 50 steps):

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Fixed-state experiment with the three mitigations, quadrotor: SE reward penalty, SP per-sample loss and SP penalty critic (red: proposal ũ, blue: applied Φ(ũ), black cross: the best safe action).", "name": "fig-mitigations-quadrotor"}, "image": {"alt": "Three panels with contours, the safe set and the paths of proposal and applied action"}}
axes = plot_settings(results["quadrotor"], settings=("se_penalty", "sp_per_sample", "sp_penalty_critic"))
axes[0].figure.suptitle(results["quadrotor"].scenario.description, y=0.98)
plt.show()

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Fixed-state experiment with the three mitigations, seeker.", "name": "fig-mitigations-seeker"}, "image": {"alt": "Three panels with contours, the safe set and the paths of proposal and applied action"}}
axes = plot_settings(results["seeker"], settings=("se_penalty", "sp_per_sample", "sp_penalty_critic"))
axes[0].figure.suptitle(results["seeker"].scenario.description, y=0.98)
plt.show()

# %%
print(f"{'':>9} {'setting':>24}  {'final ũ':>16}  {'|ũ - Φ(ũ)|':>10}  ũ inside?  Φ on boundary?  true value (best safe)")
for name, result in results.items():
    s = result.scenario
    for setting in SETTINGS:
        tr = result.trajectories[setting]
        gap = np.linalg.norm(tr.unsafe[-1] - tr.safe[-1])
        inside = bool(((s.b - s.A @ tr.unsafe[-1]) / np.linalg.norm(s.A, axis=1)).min() > 1e-9)
        print(f"{name:>9} {SETTING_LABELS[setting]:>24}  {np.array2string(tr.unsafe[-1], precision=3):>16}  "
              f"{gap:10.1e}  {inside!s:>9}  {is_on_boundary(tr.applied[-1], s.A, s.b)!s:>14}  "
              f"{tr.final_value:6.3f} ({result.best_safe_value:.3f})")

# %% [markdown]
# **Quadrotor (aligned).** This reproduces the paper's figure 2. The SE reward penalty turns the
# flat region outside the band into a slope towards it; the policy crosses the boundary and
# finds the best action inside, like the policy without a safeguard. The per-sample loss pulls
# $\tilde u$ towards the boundary, but never over it: the applied action ends where plain SP-RL
# ended, on the edge, far from the best action. The penalty critic reaches the interior and the
# best action.
#
# Why the difference between the last two, when their penalty targets are identical here? With
# the per-sample loss, a gradient step moves the policy by $\eta\,(J^\top\nabla Q - 2\alpha(\tilde
# u - \Phi))$; the first term is tangential, so the distance to the set shrinks by the factor $(1 -
# 2\alpha\eta)$ per step, geometrically, and never reaches zero (it would overshoot into the set
# only if $2\alpha\eta > 1$). On the boundary itself the penalty's gradient is zero, so nothing
# pushes the policy *inside*, where the critic's gradient would finally reach it in full:

# %%
result = results["quadrotor"]
gap = np.linalg.norm(result.trajectories["sp_per_sample"].unsafe - result.trajectories["sp_per_sample"].safe, axis=1)
eta = result.config.policy_lr
print("distance to the set every 10 steps:", np.array2string(gap[::10], precision=2))
print(f"ratio of successive distances: {np.median(gap[1:] / gap[:-1]):.4f}  vs  1 - 2 alpha eta = {1 - 2 * alpha * eta:.4f}")

# %% [markdown]
# The penalty critic is a network fitted to $-\alpha d^2$, a function that is exactly zero inside
# the set and curves down outside. A smooth fit rounds the junction off, and a rounded version of
# it slopes *inwards* across the boundary (smoothing averages the inward gradients outside with
# the zero gradients inside). So on the boundary the fitted penalty critic still pushes the policy
# a little into the set, and once there, the task critic takes over. We can see the inward slope
# by differentiating $Q_{pen}$ along the outward normal at the middle of the edges the policy
# meets:

# %%
for name, result in results.items():
    s = result.scenario
    vertices = polygon_vertices(s.A, s.b)
    edges = [(v, w) for v, w in zip(vertices, np.roll(vertices, -1, axis=0), strict=True)]
    for v, w in edges:
        mid = (v + w) / 2
        rows = np.abs(s.A @ mid - s.b) < 1e-9
        if np.abs(mid).max() >= 1 - 1e-9:  # edges on the action box: the critics saw nothing beyond
            continue
        n = s.A[rows][0] / np.linalg.norm(s.A[rows][0])
        x = torch.as_tensor(mid + np.outer([-0.05, 0.0, 0.05], n)).requires_grad_(True)
        (g,) = torch.autograd.grad(result.critics["penalty"](x).sum(), x)
        slope = (g.numpy() @ n).round(3)
        print(f"{name:>9} edge at {np.array2string(mid, precision=2)}: d/dn Q_pen at t = -0.05, 0, +0.05 "
              f"= {slope}  (exact -alpha d^2: 0, 0, {-2 * alpha * 0.05:.2f})")

# %% [markdown]
# The slopes at $t = 0$ are negative: the fitted critic increases *into* the set where the exact
# penalty is flat. That is an artefact of function approximation, and in this experiment it is the
# whole difference between the per-sample loss and the penalty critic. In full RL the penalty
# critic has a second, principled advantage: it also sees the future penalties an action causes,
# the long-term part $J^\top\nabla_u F$ of {eq}`eq-mit-penc-split` that the myopic per-sample
# loss lacks. The next section measures it.
#
# **Seeker (not aligned).** The best action is unsafe, the best safe action lies on the boundary,
# and every safeguarded setting ends on or next to the boundary, with true values within a few
# hundredths of the best safe value (the value changes slowly along this edge). With the optimum on the boundary, pulling the policy
# onto the boundary is all a mitigation can contribute, and the differences between them almost
# vanish, as in the paper's figure 6 (appendix A.7). Which of them learns best in closed loop is
# an empirical question, answered on the full tasks in chapter 8.
#
# ## Where the long-term part matters: braking late
#
# In the fixed-state experiment the continuation after the first action was safe by itself, so
# $F = 0$ and the penalty critic had no long-term part. Now take a state where today's action
# changes tomorrow's penalties: the seeker at $p = (2, 0)$ moving towards the right-hand wall at
# speed 3, its goal at $(9.3, 0)$, just in front of the wall. The first action $\tilde u$ is learned
# as before; after it a fixed controller takes over: the seeker's greedy goal controller with too
# little damping, $a = \mathrm{clip}(0.3\,(g - p) - 0.5\,v)$, behind the safeguard. It brakes too
# late, so the safeguard brakes for it, and the faster the first action sends the seeker on, the
# harder it has to. The task rewards accelerating (the goal comes closer sooner); the future
# penalties $F$ punish it. The first action's safe set is $\tilde u_1 \le 0.45$ (the braking
# distance to the wall) inside the action box.
#
# Each critic is fitted by regression on 256 (`ci`) or 512 proposals drawn uniformly from
# $[-1.5, 1.5]^2$, with targets from the true rollouts, as in chapter 6: the task critic $Q$ on
# $\Phi(\tilde u)$, the penalty critic on $\tilde u$ with target $-\alpha d^2 - \alpha\sum_{k \ge
# 1}\gamma^k d_k^2$, SE-RL's critic on $\tilde u$ with the penalised return, and, for the check
# only, a critic of $F$ on $\Phi(\tilde u)$. First the check of {eq}`eq-mit-penc-split` on the
# fitted penalty critic, at two proposals inside the safe set, two facing its face $\tilde u_1 =
# 0.45$ and two facing the vertex $(0.45, 1)$:

# %%
long_horizon = run_long_horizon()  # sizes from the profile; deterministic (seed 0)
alpha_lh = long_horizon.config.alpha
proposals = np.array([[0.0, 0.0], [0.2, -0.4], [0.9, 0.0], [0.9, -0.5], [0.8, 1.25], [1.0, 1.2]])
split = decomposition_check(long_horizon, proposals)
predicted = split["immediate"] + split["predicted"]
print(f"alpha = {alpha_lh}; fitted RMSE of the penalty critic {long_horizon.fit_rmse['penalty']:.3f}, "
      f"of the F critic {long_horizon.fit_rmse['future']:.4f}")
print(f"{'proposal':>13} {'rank J':>6}  {'fitted grad Q_pen':>18}  {'-2a(u-Phi)':>14}  {'J^T grad F':>14}  "
      f"{'rel. error':>10}  {'|(I-J) long-term|':>17}")
for i, x in enumerate(proposals):
    error = np.linalg.norm(split["gradient"][i] - predicted[i]) / np.linalg.norm(predicted[i])
    print(f"{np.array2string(x, precision=2):>13} {split['rank'][i]:>6}  "
          f"{np.array2string(split['gradient'][i], precision=3):>18}  "
          f"{np.array2string(split['immediate'][i], precision=2):>14}  "
          f"{np.array2string(split['predicted'][i], precision=3, suppress_small=True):>14}  {error:10.2f}  "
          f"{split['normal'][i]:17.3f}")

# %% [markdown]
# Inside the set ($J = I$) there is no immediate part and the fitted gradient is the long-term part:
# it points the way $J^\top\nabla_u F$ does (braking, $-\tilde u_1$), but its size is off by up to
# about a third. The penalty critic's target is dominated by the immediate penalty outside the
# set, and the long-term part is a small signal next to it, so a fit of the whole target gets the
# small part only roughly. Facing the face, $F$'s gradient points along the face's normal (braking is the only
# thing that lowers future penalties), so $J^\top\nabla_u F \approx 0$: the long-term part is
# deleted, and the fitted gradient is the immediate part, up to a normal leak of a few percent
# (the smooth fit rounding the kink at the boundary, the same artefact as above). Facing the
# vertex, $J = 0$ and again only the immediate part is left, up to a leak of at most a tenth of
# it. The fitted critic follows {eq}`eq-mit-penc-split` within its fitting error.
#
# Now the three mitigations, each ascending its objective for 100 steps ($\eta = 0.1$, so
# $2\alpha\eta < 1$) from the same proposal $(-0.4, 0.6)$ inside the safe set. Each end point is
# judged by the true rollout: the task return, the future penalties $\alpha\sum_{k\ge
# 1}\gamma^k d_k^2$, and the penalised return (task return $- \alpha d(\tilde u_T)^2 -$ future
# penalties) that SE-RL with the penalty maximises.

# %%
print(f"{'':>24}  {'final applied u':>16}  {'task':>7}  {'future penalties':>16}  "
      f"{'interventions':>13}  {'penalised':>9}")
for setting, out in long_horizon.outcomes.items():
    print(f"{LONG_HORIZON_LABELS[setting]:>24}  {np.array2string(out.applied, precision=3):>16}  "
          f"{out.task:7.3f}  {out.future_penalty:16.3f}  {out.interventions:>13}  {out.penalised:9.3f}")
penalised_grid = long_horizon.grid_task - long_horizon.grid_future
best = np.unravel_index(np.argmax(penalised_grid), penalised_grid.shape)
print(f"best penalised value on the grid: {penalised_grid[best]:.3f} at u = "
      f"{np.array2string(long_horizon.grid[best], precision=2)}")

# %% tags=["hide-input"] mystnb={"figure": {"caption": "The long-horizon experiment. Left: the first action's safe set (green; the face ũ1 = 0.45 is the braking distance to the wall), contours of the true penalised value of the applied action, and the paths of the three mitigations' proposals from (-0.4, 0.6) (circle) to their end (square). Right: along ũ2 = 0, the task value rises with the first acceleration while the future penalties fall; their sum peaks inside the set. The per-sample loss ends on the face, the penalty critic and the SE reward penalty near the peak.", "name": "fig-mitigations-long-horizon"}, "image": {"alt": "Left: safe set, contours and three paths of the proposal; right: task value, future penalties and their sum along u2 = 0 with the end points of the three mitigations"}}
plot_long_horizon(long_horizon)
plt.tight_layout()
plt.show()

# %% [markdown]
# The per-sample loss sees no penalty inside the set, so it follows the task critic to the face
# and stays there: the applied action accelerates as hard as the safe set allows, and the
# safeguard pays for it later, with future penalties of $0.58$. The penalty critic's long-term
# part passes $J = I$ inside the set in full; it stops where the task gradient and the future
# penalties balance, within a few hundredths of the best penalised value, and the future
# penalties drop to about $0.26$, less than half. The safeguard still intervenes in three or four
# of the later steps; the interventions are smaller. The SE reward penalty ends in the same place,
# as {eq}`eq-mit-same-gradient` says it should. The penalised return the mitigation is meant to
# maximise is $-1.21$ for the per-sample loss against about $-1.0$ for the other two; the task
# return alone is higher for the per-sample loss, which is the price of braking early, and the
# trade the weight $\alpha$ sets. `tests/test_aliasing.py` asserts this outcome for three seeds of
# the behaviour samples and critic initialisations.
#
# Two limits keep the result honest. The advantage exists only where $J$ passes the long-term
# part. From a proposal facing the face, $J^\top\nabla_u F$ is deleted (in this state $\nabla_u F$
# points along the face's normal), so with exact critics the penalty critic, like the per-sample
# loss, is only pulled back to the face; a fitted critic's leak across the boundary may carry it
# over, as in the fixed-state experiment. And it is one frozen state with a fixed continuation; whether the
# long-term part pays off in closed-loop training is what the penalty critic's results in chapter
# 8 test.
#
# ## Summary
#
# - All three mitigations add the gradient of $\alpha\lVert\tilde u - \Phi(\tilde u)\rVert^2$, which
#   is $2\alpha(\tilde u - \Phi(\tilde u))$ because $J^\top(\tilde u - \Phi(\tilde u)) = 0$: it lies
#   exactly in the span of the active normals, the directions the Jacobian deletes, and is
#   orthogonal to the task term. No rank deficiency can filter it.
# - The penalty critic and the SE reward penalty also carry the future penalties. With exact
#   critics both follow $J^\top\nabla_u[Q + F] - 2\alpha(\tilde u - \Phi)$; the long-term part
#   $J^\top\nabla_u F$ lies in $\mathrm{range}(J)$ and is deleted wherever the task term is. The
#   per-sample loss lacks it. For A2C the penalty critic and the SE penalty are one algorithm.
# - Where today's action changes tomorrow's penalties (the seeker approaching the wall at speed),
#   the per-sample loss accelerates up to the boundary and leaves the safeguard to brake later;
#   the penalty critic and the SE penalty brake earlier and cut the future penalties by more than
#   half.
# - SE reward penalty: the penalty enters the critic's targets and the value function
#   (long-term). Per-sample loss: the penalty enters the actor's loss only (myopic). Penalty critic:
#   a second critic on the unsafe action learns the discounted penalties (long-term) while the task
#   critic stays on safe actions.
# - In the aligned quadrotor state, the per-sample loss brings the policy to the boundary but not
#   across it (the distance decays by $1 - 2\alpha\eta$ per step); the SE reward penalty and the
#   penalty critic reach the interior optimum, the latter because its fitted surface slopes inward
#   at the boundary. In the seeker state, whose best safe action is on the boundary, all settings
#   end up close to it.
#
# ## Exercises
#
# ```{exercise}
# :label: ex-mit-overshoot
# Re-run the quadrotor experiment with a policy step size large enough that $2\alpha\eta > 1$,
# e.g. `ExperimentConfig(policy_lr=0.3)`. What happens to the per-sample loss now, and why is that
# not a fix?
# ```
#
# ````{solution} ex-mit-overshoot
# :class: dropdown
# With $2\alpha\eta = 1.2$ the normal step $-2\alpha\eta(\tilde u - \Phi)$ overshoots the
# boundary by $0.2$ times the distance, so the first steps land inside the set, where $J = I$ and
# the critic's gradient acts in full:
#
# ```python
# from tutorial_rl.aliasing import ExperimentConfig, quadrotor_scenario, run_experiment
# r = run_experiment(quadrotor_scenario(), ExperimentConfig(policy_lr=0.3),
#                    settings=("sp_per_sample",))
# tr = r.trajectories["sp_per_sample"]
# print(tr.unsafe[::5].round(2), tr.final_value, r.best_safe_value)
# ```
#
# It is not a fix. The same large step also applies to the task term, and the critic is steep
# across the band: in our run the policy jumps back and forth across the band and out of it again,
# and ends with a true value well below the best. The trick relies on the step size relative to
# $\alpha$ and on the critic's curvature, and in real training $\mu_\theta$ is a network, so a step
# in $\theta$ does not move $\tilde u$ by exactly $\eta$ times its gradient anyway.
# ````
#
# ```{exercise}
# :label: ex-mit-vertex
# At a proposal facing a vertex of a 2-D set, the SP-RL task term is zero. Show that gradient
# descent on the per-sample loss alone moves the proposal along the straight segment towards the
# vertex, and that it stays in the vertex's normal cone on the way. What does the policy learn
# about *which* safe action is best?
# ```
#
# ```{solution} ex-mit-vertex
# :class: dropdown
# With $J = 0$ the step is $\tilde u \leftarrow \tilde u - 2\alpha\eta(\tilde u - v)$ with $v$ the
# vertex, i.e. $\tilde u - v \leftarrow (1 - 2\alpha\eta)(\tilde u - v)$: the proposal moves
# along the segment to $v$. The normal cone is a cone, so for $0 < 1 - 2\alpha\eta$ the scaled
# offset stays in it, $\Phi$ stays $v$, and $J$ stays $0$ all the way. The policy learns nothing
# about which safe action is best: it only learns to stop proposing unsafe actions, and the
# applied action is the vertex throughout. Only a step that leaves the cone (a penalty critic's
# smoothed slope, an overshoot, exploration noise) lets the task gradient act again.
# ```
#
# ```{exercise}
# :label: ex-mit-penalty-critic-target
# In full RL the penalty critic is trained by temporal differences on $-\alpha d(x_k, \tilde
# u_k)^2$. Write its TD target for a transition $(x, \tilde u, x')$ with target policy
# $\mu_{\theta'}$, and explain why $Q_{pen}$ takes the *unsafe* action as input while the task
# critic takes the safe one.
# ```
#
# ```{solution} ex-mit-penalty-critic-target
# :class: dropdown
# $y = -\alpha\lVert\tilde u - \Phi(x, \tilde u)\rVert^2 + \gamma\,(1 - d)\min_{i=1,2}
# Q_{pen,i}'(x', \tilde u')$, where $Q_{pen,i}'$ are the twin target networks (TD3's clipped double
# Q, as for the task critic), $d$ the termination flag, and $\tilde u' =
# \operatorname{clip}(\mu_{\theta'}(x') + \operatorname{clip}(\varepsilon))$ the smoothed
# *unsafe* target action (`TD3.target_actions`; no projection). The penalty depends on
# $\tilde u$ itself, not only on $\Phi(\tilde u)$: all proposals in one normal cone share the safe
# action and the task value, but differ in their penalty. A critic on the safe action could not
# tell them apart (it would flat-line exactly as in {prf:ref}`lem-flat-lining`), so it could not
# produce the normal gradient the penalty is meant to supply. The task critic, on the other hand,
# should see the safe action: that is what the environment executes, and it keeps the task term's
# gradient exact through $J$.
# ```

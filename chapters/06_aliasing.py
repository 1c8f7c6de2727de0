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
# # Action aliasing
#
# A projection maps a whole cone of unsafe actions onto one safe action (chapter 1). This chapter
# follows that fact into learning. With the safeguard in the environment (SE-RL) the critic must
# learn a function that is constant along those cones, so it carries no gradient in the normal
# direction: the **flat-lining critic**. With the safeguard in the policy (SP-RL) the critic is
# smooth, but its gradient reaches the policy only through the rank-deficient Jacobian of the
# projection: the **zero-gradient problem**. Both are visible in one small experiment with a
# frozen state, after section 6.3 and appendix A.7 of {cite:t}`markgraf2026safeguard`.
#
# ```{admonition} Learning goals
# :class: tip
# After this chapter you can
# 1. state and prove the flat-lining lemma (Lemma 2 of the paper) for the SE-RL critic;
# 2. explain why SP-RL's policy gradient loses exactly the normal components, and why vertices of
#    the safe set are worst;
# 3. measure how flat a *fitted* SE critic really is, and explain why an imperfect critic can
#    soften the problem while an exact one cannot;
# 4. say precisely which matrix `tutorial_rl` returns as $\partial\Phi/\partial\tilde u$ at a
#    boundary point, how that differs from what `cvxpylayers` returns, and why it matters little.
# ```
#
# ```{admonition} Run this chapter
# :class: seealso
# This page shows the chapter as it ran when the book was built. To run it yourself, get
# {{ repository_link }}, run `make lab` (it installs everything into `.venv` and opens
# JupyterLab), and open `chapters/06_aliasing.py` as a notebook (right click, *Open With → Notebook*).
# Every cell can be edited and re-run there, and the interactive widgets respond.
# ```

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import HTML

from tutorial_rl.aliasing import (
    SETTING_LABELS,
    ExperimentConfig,
    boundary_points,
    compare_jacobians,
    is_on_boundary,
    normal_derivatives,
    run_all,
)
from tutorial_rl.aliasing.epoch_sweep import load_sweep, summarise
from tutorial_rl.aliasing.plots import (
    plot_critic_surfaces,
    plot_epoch_sweep,
    plot_normal_derivatives,
    plot_rank,
    plot_settings,
)
from tutorial_rl.players import aliasing_player
from tutorial_rl.plotting import polygon_vertices
from tutorial_rl.projection import project_polytope, projection_jacobian
from tutorial_rl.results import load_result, results_dir

torch.set_default_dtype(torch.float64)
torch.set_num_threads(1)  # tiny tensors: one thread is fastest and is not slowed by a busy machine

# %% [markdown]
# ## The fixed-state experiment
#
# Freeze one state $x$. Then a critic is a function of the two-dimensional action alone, and we
# can look at it. The experiment, in `tutorial_rl.aliasing`, has three parts.
#
# 1. **True values.** The value $V(u)$ of applying the action $u$ in $x$ is the environment's
#    reward for that step plus the discounted rewards of a fixed, simple continuation policy over
#    a short horizon (an LQR controller for the quadrotor, 40 steps; a PD controller towards the
#    goal that ignores obstacles for the seeker, 15 steps), with deterministic dynamics. Values
#    are standardised to zero mean and unit standard deviation over the action box, so one step
#    size serves both tasks. This is a cheap stand-in for the critic's target in a real run; only
#    the *first* action is safeguarded or not, as the setting demands.
# 2. **Critics.** A random behaviour policy draws actions uniformly from the action box
#    $[-1, 1]^2$. An MLP is fitted by regression to the true values: the **unsafe-action critic**
#    $Q_{raw}(\tilde u) \approx V(\tilde u)$ (no safeguard); the **SE critic** on the same unsafe
#    actions, but with targets from the projected action, $Q_{SE}(\tilde u) \approx V(\Phi(\tilde
#    u))$; the **SP critic** on the safe actions, $Q_{SP}(u) \approx V(u)$, $u = \Phi(\tilde u)$.
# 3. **Policy.** The deterministic policy is a free tensor $\tilde u$, started outside the safe
#    set and moved by 50 gradient-ascent steps on the learned objective. That gradient is exactly
#    the action factor of the deterministic policy gradients of chapters 4 and 5: $\nabla_{\tilde u}
#    Q_{SE}(\tilde u)$ for SE-RL and $\tfrac{\partial\Phi}{\partial\tilde u}^{\!\top}\nabla_u
#    Q_{SP}(u)\big|_{u=\Phi(\tilde u)}$ for SP-RL.
#
# The six settings (three here, three mitigations in chapter 7) differ only in the objective they
# ascend:
#
# ```{literalinclude} ../src/tutorial_rl/aliasing/experiment.py
# :pyobject: _objective
# ```
#
# Two scenarios, both from the course's environments: a **quadrotor** state in which task and
# safety are aligned (the best action is safe), and a **seeker** state with an obstacle between
# the agent and its goal, moving towards it, so that the best action is unsafe. Sizes come from
# the profile: the built book fits the critics with fewer samples and epochs than a full run.

# %%
print(ExperimentConfig())
start = time.time()
results = run_all()
print(f"both scenarios, all six settings: {time.time() - start:.1f} s")
for name, result in results.items():
    s = result.scenario
    print(f"{name:>9}: {s.description}; critic fit RMSE "
          + ", ".join(f"{k} {v:.3f}" for k, v in result.fit_rmse.items()))

# %% [markdown]
# ## The safe sets and where the Jacobian loses rank
#
# The quadrotor's safe thrusts in this state form a diagonal band: the differential thrust
# $u_2 - u_1$ (which turns the quadrotor) is limited, the collective thrust is not, and the band
# is cut by the thrust box. The seeker's safe accelerations form a narrow strip: the agent moves
# at speed $(2, -0.45)$ towards the obstacle and must brake, so $u_1$ is bounded above by two
# braking-distance constraints that meet at an angle. Chapter 1's map of the rank of
# $\partial\Phi/\partial\tilde u$ shows the consequence: rank 2 inside, rank 1 in the strips that
# face an edge, rank 0 in the wedge-shaped normal cones of the vertices, where two constraints are
# active at once (the seeker's inner vertex has a very narrow wedge, because its two constraints
# are almost parallel).

# %% tags=["hide-input"] mystnb={"figure": {"caption": "The two fixed states of the experiment: rank of ∂Φ/∂ũ over the action box (dotted) for the quadrotor (left) and the seeker (right). The wedge-shaped rank-0 regions at the vertices are where SP-RL gets no gradient.", "name": "fig-scenario-rank"}, "image": {"alt": "Two maps of the Jacobian rank around the safe action sets of the quadrotor and seeker states"}}
fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
for ax, (name, result) in zip(axes, results.items(), strict=True):
    plot_rank(result, ax=ax, extent=(-2.2, 2.2, -2.2, 2.2))
    ax.set_title(f"{name}: rank of $\\partial\\Phi/\\partial\\tilde u$ (dotted: action box)")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Lemma 2: the flat-lining critic
#
# In SE-RL the safeguard is part of the environment: the transition and reward of the SE-MDP are
# those of the original MDP composed with $\Phi$,
# $p_{SE}(x' \mid x, \tilde u) = p(x' \mid x, \Phi(x, \tilde u))$ and
# $r_{SE}(x, \tilde u) = r(x, \Phi(x, \tilde u))$.
#
# ```{prf:lemma} Flat-lining critic; Lemma 2 of the paper
# :label: lem-flat-lining
# Let $u$ be a point of the boundary of the convex safe set $\mathcal U_s(x)$, $N(u)$ its normal
# cone, and $\tilde u \in u + N(u)$ an unsafe action in it. Then for every policy $\pi$
#
# $$
# Q^\pi_{SE}(x, \tilde u) = Q^\pi_{SE}(x, u), \qquad A^\pi_{SE}(x, \tilde u) = A^\pi_{SE}(x, u),
# $$
#
# and the generalised advantage estimate of a transition from $(x, \tilde u)$ has the same
# distribution as that of a transition from $(x, u)$. In particular $t \mapsto Q^\pi_{SE}(x, u +
# t n)$ is constant on $t \ge 0$ for every $n \in N(u)$: wherever $Q^\pi_{SE}$ is differentiable
# at $\tilde u = u + t n$, $t > 0$, its derivative along $n$ is zero, and where $N(u)$ has a
# non-empty interior (a vertex of a 2-D set) its whole gradient is zero there.
# ```
#
# ```{prf:proof}
# By the projection lemma of chapter 1, $\tilde u - u \in N(u)$ means $\Phi(x, \tilde u) = u$,
# and $\Phi(x, u) = u$ because $u$ is safe. So the SE-MDP's transition and reward distributions
# at $(x, \tilde u)$ and at $(x, u)$ coincide. $Q^\pi_{SE}(x, a) = \mathbb E[r_{SE}(x, a) + \gamma
# V^\pi_{SE}(x')]$ with $x' \sim p_{SE}(\cdot \mid x, a)$ depends on $a$ only through these
# distributions, hence takes the same value at $\tilde u$ and $u$; $A = Q - V^\pi_{SE}(x)$
# subtracts the same number from both. The GAE of the transition is a function of the reward
# and of the value estimates of the states that follow, whose joint distribution (the rest of
# the trajectory under $\pi$) again depends on the first action only through $\Phi(x, \tilde u)
# = u$. Finally every $u + t n$, $t \ge 0$, $n \in N(u)$, lies in $u + N(u)$ ($N(u)$ is a cone),
# so the function is constant on that ray and its one-sided derivatives along $n$ vanish; if $N(u)$
# has interior, the function is constant on an open set and its gradient is zero there.
# ```
#
# **With exact critics SE-RL and SP-RL follow the same gradient.** The proof shows more than the
# lemma states: $Q^\pi_{SE}(x, \tilde u) = Q^\pi_{SE}(x, \Phi(x, \tilde u))$ for *every* $\tilde u$,
# and on safe actions the SE-MDP is the original MDP, so $Q^\pi_{SE}(x, u) = Q^{\Phi_\#\pi}_{SP}(x, u)$,
# the critic SP-RL learns on safe actions for the projected policy $\Phi_\#\pi$ (chapter 5). Wherever $\Phi$ is differentiable, the chain rule gives
#
# $$
# \nabla_{\tilde u} Q^\pi_{SE}(x, \tilde u) = J^\top \nabla_u Q_{SP}(x, u), \qquad u = \Phi(x,
# \tilde u),\; J = \partial\Phi/\partial\tilde u ,
# $$ (eq-alias-same-gradient)
#
# which is exactly SP-RL's policy gradient through the projection layer. The flat-lining critic of
# SE-RL and the rank-deficient Jacobian of SP-RL are one phenomenon seen from two sides: the
# normal components that $J^\top$ deletes. The two differ only through what is *fitted*: SE-RL's
# critic has to learn the composition $Q_{SP}\circ\Phi$ on unsafe actions, kinks included (and
# may smooth them, as measured below), while SP-RL's critic learns $Q_{SP}$ on safe actions and
# the exact $J$ is applied to it. (Exercise {ref}`ex-alias-se-gradient-face` works through a face.)
#
# The lemma is about the *exact* value function. The figure shows it for the quadrotor: the true
# value of the raw action (left) keeps changing outside the band; the target the SE critic has to
# learn (second) is exactly constant along every normal, with straight contour lines leaving the
# band at right angles; the fitted SE critic (third) is close to it; the SP critic (right) was
# only ever trained on safe actions and says nothing meaningful outside them.

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Lemma 2 of the paper for the quadrotor state: the value of the raw action (left) keeps changing outside the safe set; the target of the SE critic (second) is constant along every normal; the fitted SE critic (third) is close to it; the SP critic (right) is meaningless outside the set.", "name": "fig-critic-surfaces"}, "image": {"alt": "Four contour plots of critic values over the action plane"}}
plot_critic_surfaces(results["quadrotor"])
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Three settings, two scenarios
#
# Each panel draws the objective one setting ascends (contours), the safe set with the normal
# cones of its vertices, the policy action $\tilde u_t$ (red) and the applied action
# $\Phi(\tilde u_t)$ (blue) over the 50 steps, and the best safe action (black cross).

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Fixed-state experiment, quadrotor: 50 gradient steps on the objective of each setting (contours). Red: the policy's proposal ũ; blue: the applied action Φ(ũ); black cross: the best safe action.", "name": "fig-settings-quadrotor"}, "image": {"alt": "Three panels with contours, the safe set, normal cones and the paths of the proposal and applied action"}}
axes = plot_settings(results["quadrotor"], settings=("none", "se", "sp"))
axes[0].figure.suptitle(results["quadrotor"].scenario.description, y=0.98)
plt.show()

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Fixed-state experiment, seeker: the same three settings as in the previous figure.", "name": "fig-settings-seeker"}, "image": {"alt": "Three panels with contours, the safe set, normal cones and the paths of the proposal and applied action"}}
axes = plot_settings(results["seeker"], settings=("none", "se", "sp"))
axes[0].figure.suptitle(results["seeker"].scenario.description, y=0.98)
plt.show()

# %%
print(f"{'':>9} {'setting':>14}  {'final ũ':>16}  {'applied Φ(ũ)':>16}  ũ safe?  Φ on boundary?  true value (best safe)")
for name, result in results.items():
    s = result.scenario
    for setting in ("none", "se", "sp"):
        tr = result.trajectories[setting]
        safe = bool((s.A @ tr.unsafe[-1] <= s.b + 1e-9).all())
        print(f"{name:>9} {SETTING_LABELS[setting]:>14}  {np.array2string(tr.unsafe[-1], precision=3):>16}  "
              f"{np.array2string(tr.applied[-1], precision=3):>16}  {safe!s:>7}  "
              f"{is_on_boundary(tr.applied[-1], s.A, s.b)!s:>14}  {tr.final_value:6.3f} ({result.best_safe_value:.3f})")

# %% [markdown]
# The quadrotor reproduces the paper's figure 1(c)-(e):
#
# - **No safeguard.** The unsafe-action critic is a good approximation of the true objective, and
#   the policy walks into the band towards the best action, which is safe here. Only possible in
#   simulation: on the way it proposes unsafe actions, and nothing would stop them.
# - **SE-RL.** The policy never enters the safe set. Outside the band the SE target is flat
#   along the normal, so all that is left of the fitted critic's gradient there is a tangential
#   part plus fitting error (here the error even pushes $\tilde u$ further out); the applied
#   action stays on the boundary, far from the best safe action.
# - **SP-RL.** The same picture for a different reason: the critic is fine, but the Jacobian
#   removes the normal component of its gradient, so $\Phi(\tilde u)$ moves along the edge until
#   the tangential component vanishes, and stops on the boundary.
#
# In the seeker scenario the best action is *outside* the safe set and the best safe action lies
# on its boundary, so ending on the boundary is what a safe policy should do; the remaining
# question is only where on the boundary. Without a safeguard the policy heads for the unsafe
# optimum (with a true value far above any safe action's: it goes through the obstacle).

# %% [markdown]
# ## The zero-gradient problem in SP-RL
#
# In SP-RL, the policy's gradient is $J^\top \nabla_u Q_{SP}(u)$ with $J = \partial\Phi/\partial
# \tilde u = I - A_{\mathcal A}^\top (A_{\mathcal A} A_{\mathcal A}^\top)^{-1} A_{\mathcal A}$
# (chapter 1). $J$ is the orthogonal projector onto the null space of the active normals, so
# every component of the critic's gradient along an active normal is removed, however large.
# Facing an edge, one direction survives; facing a vertex of a 2-D set, none does, and the policy
# cannot move at all. The quadrotor's SP trajectory shows the first case step by step:
# the component of every step along the active normal is zero to machine precision.

# %%
result = results["quadrotor"]
s = result.scenario
A, b = torch.as_tensor(s.A), torch.as_tensor(s.b)
path = torch.as_tensor(result.trajectories["sp"].unsafe)
steps = path[1:] - path[:-1]
residual = path[:-1] - project_polytope(path[:-1], A, b)  # ũ − Φ(ũ): along the active normal
normal = residual / residual.norm(dim=-1, keepdim=True)
ranks = torch.linalg.matrix_rank(projection_jacobian(path[:-1], A, b), atol=1e-9, rtol=0.0)
print("rank of J along the SP trajectory:", sorted(set(ranks.tolist())))
print(f"largest step along the active normal: {(steps * normal).sum(-1).abs().max():.1e}")
print(f"largest step along the edge:          {(steps - (steps * normal).sum(-1, keepdim=True) * normal).norm(dim=-1).max():.1e}")

# %% [markdown]
# Vertices make it worse. Every proposal in a vertex's wedge gets $J = 0$. Where two nearly
# parallel constraints meet (an almost flat corner, as in the seeker's strip) the wedge is thin,
# but the quadrotor band's corners have wide ones, just outside the thrust box. This is why the paper
# calls the zero-gradient problem "particularly challenging for safe action sets with non-smooth
# surfaces". The exact SE critic suffers in exactly the same way ({eq}`eq-alias-same-gradient`):
# by {prf:ref}`lem-flat-lining` its *whole* gradient vanishes inside a vertex wedge, not only the
# normal part. Only a *fitted* SE critic, which rounds off the flat region, can suffer less; the
# next section measures how much.
#
# ## How flat is a fitted SE critic?
#
# The zero-gradient problem of SP-RL is exact: it is a property of $\Phi$, whatever the critic.
# The flat-lining of SE-RL is a property of the *exact* value function, and a critic is only a
# fit. A smooth network cannot reproduce the kink where the SE target turns from sloped (inside)
# to flat (outside); it rounds it off, and the rounded critic keeps a small slope in the normal
# direction near the boundary. The paper remarks that such an imperfect critic "may, in fact,
# alleviate the issue" {cite:p}`markgraf2026safeguard,suh2022differentiable`. We can measure it:
# at the midpoint $u$ of each edge whose normal ray stays in the action box, take $\tilde u = u +
# t n$ for several $t$ and differentiate the fitted critics along $n$ with autograd.

# %%
for name, result in results.items():
    nd = normal_derivatives(result)
    print(f"{name:>9}: {len(nd.points)} edges x {len(nd.distances)} distances t in "
          f"[{nd.distances.min():.2f}, {nd.distances.max():.2f}]")
    print(f"{'':>11}exact SE target  max |d/dn V(Φ(ũ))|  = {np.abs(nd.exact).max():.1e}  (finite differences)")
    print(f"{'':>11}fitted SE critic mean |d/dn Q_SE|     = {np.abs(nd.se).mean():.3f}  (max {np.abs(nd.se).max():.3f})")
    print(f"{'':>11}unsafe-action critic mean |d/dn Q_raw| = {np.abs(nd.raw).mean():.3f}, mean |grad Q_raw| = {nd.raw_norm.mean():.3f}")
    print(f"{'':>11}ratio mean |d/dn Q_SE| / mean |grad Q_raw| = {nd.ratio:.3f}")

# %% tags=["hide-input"] mystnb={"figure": {"caption": "How flat is a fitted SE critic? The derivative of the fitted critics along the normal of each edge, at distance t outside the set: the exact SE target has zero normal derivative there, the fitted SE critic keeps a small slope near the boundary.", "name": "fig-normal-derivatives"}, "image": {"alt": "Normal derivatives of the fitted critics against the distance from the boundary"}}
nd_quad = normal_derivatives(results["quadrotor"])
plot_normal_derivatives(results["quadrotor"], nd_quad)
plt.tight_layout()
plt.show()

# %% [markdown]
# The exact target is flat to the last digit, as the lemma says. The fitted SE critic is nearly
# flat: its normal derivative is about an order of magnitude below the unsafe-action critic's
# gradient, largest right next to the boundary (where the kink is rounded off) and small further
# out. Whether that residual slope matters depends on how good the fit is. Re-fitting only the SE
# critic with six numbers of training epochs, from six seeds each (1,024 samples, the `ci` size),
# and re-running SE-RL takes about ten minutes, so the book loads the committed sweep
# (`python -m tutorial_rl.aliasing.epoch_sweep --out results/aliasing-epochs`, provenance below):

# %%
epoch_sweep = load_sweep(results_dir() / "aliasing-epochs")
print(load_result("aliasing-epochs", "provenance.json").describe())
print(summarise(epoch_sweep).round(3).to_string())

# %% tags=["hide-input"] mystnb={"figure": {"caption": "SE-RL on the quadrotor state with SE critics fitted for 100 to 2,000 epochs, six seeds each (results/aliasing-epochs). Left: the share of seeds whose policy escaped into the safe band (green) falls as the fit error (grey, right axis) falls. Right: the true value of the final applied action per seed (filled: escaped; open: trapped on the boundary) against the best safe value (dotted).", "name": "fig-aliasing-epoch-sweep"}, "image": {"alt": "Left: share of escaped seeds and fit error against training epochs; right: final true value per seed against epochs"}}
plot_epoch_sweep(epoch_sweep, best_safe_value=results["quadrotor"].best_safe_value)
plt.tight_layout()
plt.show()

# %% [markdown]
# A poorly fitted critic (large RMSE, large residual normal slope) lets the policy creep over the
# boundary into the band, where the critic's gradient is the true one again, and the policy finds
# the best action; a well fitted critic is flat enough outside the band to trap the policy, as
# {prf:ref}`lem-flat-lining` predicts for the exact one. In the sweep all six seeds escape after
# 100 or 200 epochs, three of six after 400, one after 700 and after 1,000, none after 2,000, and
# the mean true value of the applied action falls from about 1.0 to 0.44 with them. So in this
# state the flat-lining critic is a problem of *good* SE critics: the longer the critic is
# trained, the more often the policy is trapped. (One state, one step size; the full tasks of
# chapter 8 test the consequence in closed loop.) The zero-gradient problem of SP-RL
# does not care about the critic at all. This asymmetry is the paper's explanation of why vanilla
# SE-RL is a strong baseline while vanilla SP-RL with deterministic policies often fails to
# converge (chapter 8 tests it on the full tasks).
#
# ## Which Jacobian at a boundary point?
#
# A careful reader will object: $\Phi$ is not differentiable where the active
# set changes, exactly at the boundaries between the regions of the rank map above, so "the
# Jacobian" there needs a definition. Here is the package's, precisely.
#
# **The rule.** `project_polytope` and `projection_jacobian` find the projection $u = \Phi(\tilde
# u)$ and its active rows (a dual active-set method, or the candidate enumeration for tiny
# problems; chapter 1), verify the KKT conditions {eq}`eq-kkt`, and return
#
# $$
# J = I - A_+^\top (A_+ A_+^\top)^{+} A_+, \qquad
# \mathcal A_+ = \{ i : \lambda_i > 0 \text{ for some KKT multiplier } \lambda \},
# $$
#
# the projector onto the null space of the rows that can carry part of the correction
# $\tilde u - u = A^\top\lambda$, $\lambda \ge 0$: the Jacobian of the *locally active face*.
# Where the active rows are independent the multiplier is unique and $\mathcal A_+$ is simply the
# rows with $\lambda_i > 0$; where it is not (a vertex with more than $m$ active rows, duplicate
# or dependent rows), every row that carries a positive multiplier in *some* solution counts.
# **Tolerances**: rows are normalised, computations are in float64, "active", "feasible" and
# "positive" mean within $10^{-9}(1 + \lVert \tilde u\rVert_\infty + \max_i |b_i|/\lVert
# a_i\rVert)$ (a distance). Consequences:
#
# - a feasible proposal exactly on an edge, or exactly at a vertex, gets $J = I$ ($\tilde u - u =
#   0$ needs no multiplier);
# - a proposal on the edge of a vertex wedge, $\tilde u = v + t\,a_i$, gets the edge Jacobian
#   $I - \hat a_i \hat a_i^\top$ (the other multiplier is zero in every solution);
# - a proposal inside the cone of a degenerate vertex gets $J = 0$ even when one of the rows
#   through it is redundant (rows $x \le 1$, $y \le 1$, $x + y \le 2$ at $\tilde u = (3, 3)$,
#   where $\Phi$ is locally constant; a smallest-active-set convention, used by earlier versions
#   of the package, returned $I - nn^\top$ of the redundant row there, which is not a limiting
#   Jacobian).
#
# **Which element of the generalized Jacobian.** $\Phi$ is piecewise affine. Around a kink point
# $\tilde u$, the finitely many affine pieces that meet there have Jacobians $J_{S_1}, \dots,
# J_{S_r}$, the limits of $\nabla\Phi$ along sequences of differentiable points tending to $\tilde
# u$. They form the B-subdifferential $\partial_B\Phi(\tilde u)$; its convex hull is Clarke's
# generalized Jacobian $\partial_C\Phi(\tilde u)$ {cite:p}`clarke1990optimization`. Near $\tilde
# u$, $\Phi(\tilde u + h) = u + \Pi_C(h)$ exactly, with the critical cone $C = \{d : a_i^\top d =
# 0\ (i \in \mathcal A_+),\ a_j^\top d \le 0\ (j \text{ active}, \notin \mathcal A_+)\}$. Every
# limiting Jacobian projects onto the span of a face of $C$, and by LP duality $C$ has interior
# relative to $\{d : A_+ d = 0\}$: on the open set of proposals $\tilde u + h$ whose $\Pi_C(h)$
# lies in that interior, $\Phi$ is affine with Jacobian $J$. So the package's $J$ is an element of
# $\partial_B\Phi(\tilde u) \subseteq \partial_C\Phi(\tilde u)$, the unique one of largest rank
# (the one-sided derivative from the "least constrained" side), and equal to $\nabla\Phi$ wherever
# $\Phi$ is differentiable. That settles the question at kinks exactly: there the gradient
# SP-RL backpropagates is a limiting Jacobian of the projection, chosen by a stated rule; it is
# deterministic and does not depend on solver accuracy.
#
# **What cvxpylayers does instead.** `cvxpylayers` {cite:p}`agrawal2019differentiable` rewrites
# the projection as a cone program (the squared norm becomes a second-order cone), solves it with
# SCS to a tolerance, and calls `diffcp` {cite:p}`agrawal2019cone`, which differentiates the
# *residual map* of the program's homogeneous self-dual embedding by the implicit function
# theorem. That derivative needs the derivative of the projection onto the cone; for the
# non-negative orthant of the inequality constraints, `diffcp` uses
# $D\Pi_{\mathbb R_+}(z) = \mathrm{diag}\big(\tfrac12(\mathrm{sign}(z) + 1)\big)$, evaluated at
# the solver's approximate $z$ (dual variable minus slack, one component per constraint). At a
# kink, the component of a weakly active constraint is zero in exact arithmetic, so its sign,
# i.e. the solver's last rounding, picks the piece; an exact zero would give the average $\tfrac12$,
# a convex combination of pieces (in $\partial_C\Phi$ but not in $\partial_B\Phi$). Away from
# kinks both methods compute the same implicit-function-theorem derivative.
#
# Both, compared at six points around the seeker's inner vertex (the vertex where the two
# braking constraints meet):

# %%
seeker = results["seeker"].scenario
vertex = int(np.argmin(np.abs(polygon_vertices(seeker.A, seeker.b)).max(1)))  # not on the box
points = boundary_points(seeker.A, seeker.b, vertex=vertex)
rows = compare_jacobians(seeker.A, seeker.b, points)
for r in rows:
    print(f"{r.name:>24}: ũ = {np.array2string(r.point, precision=3)}, active set {r.active}, "
          f"{len(r.pieces)} piece(s) meet here")
    print(f"{'':>26}exact {np.array2string(r.exact.round(3), separator=',').replace(chr(10), '')} "
          f"(piece {r.exact_piece}),  cvxpylayers {np.array2string(r.cvxpylayers.round(3), separator=',').replace(chr(10), '')} "
          f"(piece {r.cvx_piece}),  agree: {r.agree}")

# %% [markdown]
# And over every vertex of both safe sets (six point types per vertex), counting where the two
# methods return the same matrix:

# %%
counts: dict[str, list[int]] = {}
for result in results.values():
    s = result.scenario
    for v in range(len(polygon_vertices(s.A, s.b))):
        for r in compare_jacobians(s.A, s.b, boundary_points(s.A, s.b, vertex=v)):
            counts.setdefault(r.name, []).append(r.agree)
            assert r.exact_piece >= 0  # the package always returns a limiting Jacobian
for name, agree in counts.items():
    print(f"{name:>24}: agree at {sum(agree)} of {len(agree)}")

# %% [markdown]
# At generic points (inside, facing an edge, inside a vertex wedge) the two agree to solver
# accuracy every time. At the kinks (exactly on an edge, exactly at a vertex, on the edge of a
# vertex wedge) `cvxpylayers` returns one of the adjacent pieces, and which one depends on
# rounding inside SCS; the package always returns the least-constrained piece. The tolerance
# decides what "exactly" means, as moving a point that lies on an edge outwards shows:

# %%
face_point = points["exactly on a face"]
face_normal = points["facing the face"] - face_point
face_normal /= np.linalg.norm(face_normal)
for shift in (0.0, 1e-11, 1e-9, 1e-7):
    u = torch.as_tensor(face_point + shift * face_normal)[None]
    J = projection_jacobian(u, torch.as_tensor(seeker.A), torch.as_tensor(seeker.b))[0]
    print(f"pushed out by {shift:7.0e}: rank of the package's J = {int(torch.linalg.matrix_rank(J, atol=1e-9, rtol=0.0))}")

# %% [markdown]
# Does the choice matter for learning? The kink points have measure zero, so a policy with
# continuous outputs lands exactly on one with probability zero. It can, however, *converge*
# towards one: the mitigations of chapter 7 pull $\tilde u$ onto the boundary of the safe set,
# and every boundary point is a kink. Counting the policy actions of this chapter's trajectories
# at which the Jacobian is not the same at eight points a distance $10^{-6}$ around them, and the
# smallest distance any unsafe proposal kept from the safe set:

# %%
ring = 1e-6 * np.stack([np.cos(np.arange(8) * np.pi / 4), np.sin(np.arange(8) * np.pi / 4)], 1)
for name, result in results.items():
    A, b = torch.as_tensor(result.scenario.A), torch.as_tensor(result.scenario.b)
    near_kink = {}
    for setting, tr in result.trajectories.items():
        around = torch.as_tensor(tr.unsafe[:, None, :] + ring[None]).reshape(-1, 2)
        J = projection_jacobian(around, A, b).reshape(len(tr.unsafe), len(ring), 2, 2)
        count = int(((J - J[:, :1]).abs().amax(dim=(1, 2, 3)) > 1e-9).sum())
        if count:
            near_kink[SETTING_LABELS[setting]] = count
    gaps = np.concatenate([np.linalg.norm(tr.unsafe - tr.safe, axis=1)
                           for tr in result.trajectories.values()])
    steps = sum(len(tr.unsafe) for tr in result.trajectories.values())
    print(f"{name:>9}: {sum(near_kink.values())} of {steps} policy actions within 1e-6 of a kink "
          f"{near_kink or ''}; closest unsafe proposal: {gaps[gaps > 0].min():.1e} from the set")

# %% [markdown]
# The few actions near a kink belong to the mitigated settings, approaching an edge from
# outside. Even the closest stayed far outside the tolerance band ($\approx 10^{-9}$) in which
# the convention decides; outside that band the package returns the Jacobian of the piece the
# point actually lies in, the edge Jacobian here, which is the derivative a proposal there sees.
#
# What matters is the rank deficiency on the sets of *positive* area around the kinks, the edge
# strips and vertex wedges, and there every element of the generalized Jacobian, whichever a
# library picks, is the same matrix of rank 1 or 0. The zero-gradient problem does not come from a
# convention at the boundary; it comes from the interior of the normal cones.
#
# ## Try it
#
# The widget picks a scenario and any of the six settings (the three mitigations are the subject
# of chapter 7) and draws the objective, the safe set, the normal cones and the trajectory. It needs
# a running kernel; on this page the player below steps through every scenario and setting, and
# the static figure shows all six settings for the seeker at once.

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Player: the fixed-state experiment, one frame per scenario and setting. Compare where the proposal ũ (red) and the applied action Φ(ũ) (blue) end up with the best safe action (black cross).", "name": "fig-aliasing-player"}}
HTML(aliasing_player(results))

# %% tags=["hide-input"] mystnb={"figure": {"caption": "All six settings for the seeker state, the static companion of the widget: the top row without mitigation, the bottom row with the three mitigations of chapter 7.", "name": "fig-all-settings"}, "image": {"alt": "Six panels of the fixed-state experiment for the seeker"}}
axes = plot_settings(results["seeker"])
axes[0].figure.suptitle("seeker: all six settings (chapter 7 explains the lower row)", y=0.99)
plt.show()

# %% tags=["remove-cell"]
# Live readers only (the static page shows the player above): choose a scenario and a setting.
from tutorial_rl.widgets import aliasing_widget

aliasing_widget(results)

# %% [markdown]
# ## Summary
#
# - In SE-RL the exact critic is constant along every normal cone of the safe set
#   ({prf:ref}`lem-flat-lining`); its gradient has no normal component outside the set, and no
#   component at all in a vertex wedge. A policy stuck outside stays outside.
# - In SP-RL the critic is smooth, but the gradient passes through $J$, which deletes its normal
#   components exactly (rank 1 facing an edge, 0 facing a vertex): the zero-gradient problem.
# - A *fitted* SE critic rounds off the kink at the boundary and keeps a small normal slope. That
#   imperfection can let the policy escape, so the flat-lining critic hurts most when the critic
#   is good; the zero-gradient problem is independent of the critic.
# - At the kinks of $\Phi$ the package returns the limiting Jacobian of the least-constrained
#   adjacent piece (an element of the B-subdifferential); `cvxpylayers` returns a piece chosen by
#   solver rounding. Both agree everywhere else, which is almost everywhere.
#
# ## Exercises
#
# ```{exercise}
# :label: ex-alias-vertex-start
# Start the SP-RL policy of the quadrotor scenario inside the normal cone of a vertex of the
# band, at $\tilde u_0 = (1.5, 0)$ (outside the thrust box, whose edges are part of the safe set).
# Predict the trajectory before running it, then check with
# `run_experiment(quadrotor_scenario(initial_action=(1.5, 0.0)), settings=("sp",))`.
# ```
#
# ````{solution} ex-alias-vertex-start
# :class: dropdown
# The point projects onto the vertex $(1, 0.202)$ where the box edge $u_1 \le 1$ meets the lower
# edge of the band, with both multipliers positive (it lies strictly inside that vertex's wedge),
# so $J = 0$ and the SP gradient $J^\top\nabla Q_{SP}$ is zero up to rounding: the policy never
# moves, whatever the critic says, and the applied action stays at the vertex.
#
# ```python
# from tutorial_rl.aliasing import quadrotor_scenario, run_experiment
# r = run_experiment(quadrotor_scenario(initial_action=(1.5, 0.0)), settings=("sp",))
# tr = r.trajectories["sp"]
# print(tr.unsafe[0], tr.unsafe[-1], tr.safe[-1], tr.gradient_norms.max())  # ~1e-16
# ```
# ````
#
# ```{exercise}
# :label: ex-alias-se-gradient-face
# Let $u$ be a point in the relative interior of an edge with unit normal $n$, and suppose the
# exact $Q_{SE}$ is differentiable at $\tilde u = u + t n$, $t > 0$. Show that
# $\nabla Q_{SE}(\tilde u) = (I - nn^\top)\nabla_u V(u)$, where $V$ is the value of the applied
# action, and compare it with the SP-RL gradient at the same $\tilde u$ when $Q_{SP} = V$.
# ```
#
# ```{solution} ex-alias-se-gradient-face
# :class: dropdown
# Near $\tilde u$ the active set is $\{n\}$ and $\Phi$ is affine, $\Phi(\tilde w) = \tilde w -
# (n^\top \tilde w - b)\,n$, with Jacobian $J = I - nn^\top$. Since $Q_{SE}(\tilde w) =
# V(\Phi(\tilde w))$ there (Lemma 2's composition), the chain rule gives $\nabla Q_{SE}(\tilde u)
# = J^\top \nabla V(\Phi(\tilde u)) = (I - nn^\top)\nabla V(u)$. That is exactly the SP-RL
# gradient $J^\top\nabla_u Q_{SP}(u)$ with a perfect critic: for exact critics, SE-RL and SP-RL
# follow the same gradient outside the set. They differ through what is *fitted*: SE-RL learns
# the composition $V\circ\Phi$ (and may smooth it), SP-RL learns $V$ on the safe set and applies
# the exact $J$.
# ```
#
# ```{exercise}
# :label: ex-alias-tolerance
# The package treats a proposal within $10^{-9}$ (relative) of a face as lying on it. Using
# `projection_jacobian`, find the smallest outward displacement from the seeker's edge point
# `points["exactly on a face"]` at which the returned Jacobian changes rank, and relate it to the
# tolerance formula above.
# ```
#
# ````{solution} ex-alias-tolerance
# :class: dropdown
# Bisect on the displacement:
#
# ```python
# lo, hi = 0.0, 1e-6
# for _ in range(60):
#     mid = (lo + hi) / 2
#     u = torch.as_tensor(face_point + mid * face_normal)[None]
#     J = projection_jacobian(u, torch.as_tensor(seeker.A), torch.as_tensor(seeker.b))[0]
#     lo, hi = (mid, hi) if int(torch.linalg.matrix_rank(J, atol=1e-9, rtol=0.0)) == 2 else (lo, mid)
# print(hi)
# ```
#
# The switch happens at a distance of about $10^{-9}(1 + \lVert\tilde u\rVert_\infty + \max_i
# |b_i|/\lVert a_i\rVert)$, the feasibility tolerance: below it the point counts as feasible and
# gets $J = I$; above it the face candidate is the only one and $J = I - nn^\top$.
# ````

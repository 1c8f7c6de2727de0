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
# # Projecting actions onto a safe set
#
# A projection safeguard takes the action $\tilde u$ an agent proposes and returns the closest
# action $u$ that is known to be safe. Everything else in this course (where the safeguard sits,
# what it does to the gradients an agent learns from, how to repair the damage) follows from the
# geometry of that one operation. This chapter takes it apart.
#
# ```{admonition} Learning goals
# :class: tip
# After this chapter you can
# 1. write the projection onto a polytope as a quadratic program and state its KKT conditions;
# 2. explain, with the normal cone, why a whole region of unsafe actions is mapped onto one safe
#    action (**action aliasing**);
# 3. derive the Jacobian $\partial \Phi / \partial \tilde u$ and say why its rank is $m$ inside
#    the set, $m-1$ facing a face and $0$ facing a vertex of a 2-D set;
# 4. say where the safeguard can sit (environment or policy) and which gradient each choice gives;
# 5. use `tutorial_rl.projection.project_polytope`, the fast exact projection the rest of the
#    course trains with (any action dimension), and check it against a differentiable-optimization
#    reference.
# ```
#
# ```{admonition} Run this chapter
# :class: seealso
# This page shows the chapter as it ran when the book was built. To run it yourself, get
# {{ repository_link }}, run `make lab` (it installs everything into `.venv` and opens
# JupyterLab), and open `chapters/01_projection.py` as a notebook (right click, *Open With → Notebook*).
# Every cell can be edited and re-run there, and the interactive widgets respond.
# ```

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import HTML

from tutorial_rl.players import projection_player
from tutorial_rl.plotting import (
    active_constraint_count,
    plot_jacobian_rank,
    plot_normal_cone,
    plot_projection,
    plot_safe_set,
    plot_safeguard_placement,
    polygon_vertices,
)
from tutorial_rl.projection import active_set, project_polytope, projection_jacobian

torch.set_default_dtype(torch.float64)

# %% [markdown]
# ## A safe action set
#
# Take an agent with two action components, $\tilde u \in \mathbb R^2$. Suppose that in the
# current state $x$ the actions known to be safe form a convex polygon, written as $k$ linear
# inequalities
#
# $$
# \mathcal U_s(x) = \{ v \in \mathbb R^m : A v \le b \}, \qquad A \in \mathbb R^{k \times m},\; b \in \mathbb R^k .
# $$ (eq-safe-set)
#
# Here: the box $|u_1| \le 1.5$, $|u_2| \le 1.5$ with the top cut at $u_2 \le 1.2$ and a corner
# cut off by $u_1 + u_2 \le 2$. Where such sets come from (an invariant set of the dynamics,
# braking distances to obstacles) is the subject of the following chapters; here the set is given.

# %%
A = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0], [1.0, 1.0]])
b = torch.tensor([1.5, 1.2, 1.5, 1.5, 2.0])
print("vertices of the safe set:\n", polygon_vertices(A.numpy(), b.numpy()))

# %% [markdown]
# ## The projection is a quadratic program
#
# The safeguard replaces $\tilde u$ by
#
# $$
# \Phi(\tilde u) = \arg\min_{v} \tfrac12 \lVert v - \tilde u \rVert_2^2
# \quad \text{subject to} \quad A v \le b .
# $$ (eq-projection)
#
# The objective is strictly convex and the feasible set is a nonempty closed convex set, so the
# minimiser exists and is unique {cite:p}`boyd2004convex`: $\Phi$ is a well-defined function. A
# safe proposal is returned unchanged; an unsafe one is moved to the boundary. In the package the
# projection is one call on a whole batch of proposals of shape `[B, m]`:

# %%
proposals = torch.tensor([[0.3, -0.4], [2.3, 0.2], [0.0, 2.2], [2.2, 2.0], [-2.2, -2.1], [1.0, 2.4]])
safe = project_polytope(proposals, A, b)
for proposed, projected in zip(proposals, safe, strict=True):
    print(f"{proposed.numpy()} -> {projected.numpy().round(4)}")

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Six proposed actions ũ (red) and their projections u = Φ(ũ) (teal). A safe proposal is returned unchanged; an unsafe one moves to the nearest point of the safe set, on a face or at a vertex.", "name": "fig-projection-examples"}, "image": {"alt": "A pentagon-shaped safe action set with six proposed actions, each joined by an arrow to its projection"}}
fig, ax = plt.subplots(figsize=(5.5, 5.5))
plot_projection(A.numpy(), b.numpy(), proposals.numpy(), ax=ax, extent=(-2.6, 2.6, -2.6, 2.6))
ax.set_title("Proposed actions and their projections")
plt.show()

# %% [markdown]
# ## KKT conditions and the normal cone
#
# With a multiplier $\lambda \in \mathbb R^k$ for the constraints, the Lagrangian of
# {eq}`eq-projection` is $\tfrac12\lVert v - \tilde u\rVert^2 + \lambda^\top (A v - b)$. Since the
# problem is convex and its constraints are affine, $u$ solves it exactly when the **KKT
# conditions** hold:
#
# $$
# u - \tilde u + A^\top \lambda = 0, \qquad A u \le b, \qquad \lambda \ge 0, \qquad
# \lambda_i (a_i^\top u - b_i) = 0 \;\; (i = 1, \dots, k).
# $$ (eq-kkt)
#
# Only the **active** constraints, those with $a_i^\top u = b_i$, can carry a positive multiplier
# (complementary slackness). So the first condition says that the correction $\tilde u - u$ is a
# nonnegative combination of the normals of the active constraints: it lies in the **normal cone**
#
# $$
# N(u) = \Big\{ \textstyle\sum_{i \in \mathcal A(u)} \lambda_i a_i : \lambda_i \ge 0 \Big\},
# \qquad \mathcal A(u) = \{ i : a_i^\top u = b_i \}.
# $$ (eq-normal-cone)
#
# ```{prf:lemma} Projection and normal cone
# :label: lem-normal-cone
# For a point $u$ of the nonempty polytope $\mathcal U_s$ and any $\tilde u \in \mathbb R^m$,
# $\Phi(\tilde u) = u$ if and only if $\tilde u - u \in N(u)$, equivalently
# $(\tilde u - u)^\top (v - u) \le 0$ for every $v \in \mathcal U_s$.
# ```
#
# ```{prf:proof}
# If $\tilde u - u = A_{\mathcal A}^\top \lambda$ with $\lambda \ge 0$, then $u$ together with
# these multipliers (zero for inactive constraints) satisfies {eq}`eq-kkt`, which is sufficient
# for optimality of a convex problem. Conversely, the KKT conditions are necessary because the
# constraints are affine. For the variational form: $(\tilde u - u)^\top (v - u) =
# \sum_{i\in\mathcal A} \lambda_i (a_i^\top v - b_i) \le 0$ for feasible $v$; and the variational
# inequality is the first-order optimality condition of the strictly convex objective over the
# convex set {cite:p}`rockafellar1998variational`.
# ```
#
# We can read the multipliers off a computed projection. For the proposal $(2.2, 2.0)$, beyond
# the cut corner, the active constraints are found by the package and the multipliers by solving
# the first KKT equation on them:

# %%
u_tilde = torch.tensor([[2.2, 2.0]])
u = project_polytope(u_tilde, A, b)
active = active_set(u_tilde, A, b)[0]
A_act = A[active]
multipliers = torch.linalg.solve(A_act @ A_act.T, A_act @ (u_tilde - u)[0])
print("projection:", u.numpy().round(4), " active constraints:", torch.nonzero(active).flatten().tolist())
print("multipliers (all >= 0):", multipliers.numpy().round(4))
print("KKT residual u - ũ + A_actᵀλ:", (u[0] - u_tilde[0] + A_act.T @ multipliers).abs().max().item())

# %% [markdown]
# ## Action aliasing
#
# {prf:ref}`lem-normal-cone` has an uncomfortable consequence for learning. Every proposal in the
# translated cone $u + N(u)$ is projected onto the *same* safe action $u$. On a face of a 2-D set
# the cone is a ray (a one-dimensional family of proposals collapses to a point); at a vertex it
# is a two-dimensional wedge: a whole region of the action plane is mapped to a single action.
# {cite:t}`markgraf2026safeguard` call this **action aliasing**. An agent that only observes the
# consequences of $u$ cannot tell these proposals apart.

# %%
vertex = torch.tensor([1.5, 0.5])  # where u1 <= 1.5 meets u1 + u2 <= 2
rng = np.random.default_rng(0)
weights = torch.as_tensor(rng.uniform(0, 2, size=(500, 2)))
cone_samples = vertex + weights @ torch.stack([A[0], A[4]])  # vertex + λ1 a1 + λ5 a5, λ >= 0
images = project_polytope(cone_samples, A, b)
print(f"{len(cone_samples)} distinct proposals, spread of their projections: "
      f"{(images - vertex).abs().max().item():.2e}")

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Action aliasing. Left: 500 different proposals in the normal cone of a vertex all project onto that one vertex. Right: every proposal on the normal ray of a face projects onto the same point of the face.", "name": "fig-aliasing-cones"}, "image": {"alt": "Two panels: a wedge of red proposals beyond a vertex collapsing onto the vertex, and a ray of proposals above a face collapsing onto one point"}}
fig, axes = plt.subplots(1, 2, figsize=(10, 4.8))
extent = (-2.6, 3.4, -2.6, 3.4)
plot_safe_set(A.numpy(), b.numpy(), ax=axes[0], extent=extent)
plot_normal_cone(axes[0], A.numpy(), b.numpy(), vertex.numpy(), length=4)
axes[0].scatter(*cone_samples.numpy().T, s=4, color="#d1495b", alpha=0.5, label="500 proposals")
axes[0].scatter(*vertex.numpy(), color="#00798c", zorder=3, s=60, label="their one projection")
axes[0].set_title("A vertex's normal cone: 2-D region → 1 point")
axes[0].legend(loc="lower left", fontsize=8)
face_point = torch.tensor([0.0, 1.2])
plot_safe_set(A.numpy(), b.numpy(), ax=axes[1], extent=extent)
plot_normal_cone(axes[1], A.numpy(), b.numpy(), face_point.numpy(), length=4)
ray = face_point + torch.linspace(0, 2, 8)[:, None] * A[1]
axes[1].scatter(*ray.numpy().T, color="#d1495b", zorder=3, label="proposals on the ray")
axes[1].scatter(*face_point.numpy(), color="#00798c", zorder=4, s=60, label="their one projection")
axes[1].set_title("A face's normal cone: a ray → 1 point")
axes[1].legend(loc="lower left", fontsize=8)
plt.show()

# %% [markdown]
# ## The Jacobian of the projection
#
# A policy that ends in the safeguard (SP-RL, below) is trained by backpropagating through $\Phi$,
# so we need $\partial\Phi/\partial\tilde u$. Differentiating the KKT system {eq}`eq-kkt` with the
# implicit function theorem {cite:p}`krantz2002implicit,amos2017optnet` (the paper's appendix A.2)
# gives a closed form. Suppose the active set $\mathcal A$ does not change near $\tilde u$ and its
# rows $A_{\mathcal A}$ are linearly independent. The projection is then the projection onto the
# affine set $\{v : A_{\mathcal A} v = b_{\mathcal A}\}$,
#
# $$
# \Phi(\tilde u) = \tilde u - A_{\mathcal A}^\top (A_{\mathcal A} A_{\mathcal A}^\top)^{-1}
# (A_{\mathcal A} \tilde u - b_{\mathcal A}),
# \qquad
# \frac{\partial \Phi}{\partial \tilde u} = I - A_{\mathcal A}^\top (A_{\mathcal A} A_{\mathcal A}^\top)^{-1} A_{\mathcal A} .
# $$ (eq-jacobian)
#
# The Jacobian is the orthogonal projector onto the null space of the active normals, so its rank
# is $m - |\mathcal A|$: **2** for a proposal inside the set (identity), **1** for a proposal facing
# a face ($I - nn^\top$, which kills the normal direction) and **0** for a proposal in the normal
# cone of a vertex. Rank deficiency is action aliasing seen through derivatives: moving the
# proposal along a normal changes nothing, so the derivative in that direction is zero. The
# package computes {eq}`eq-jacobian` from the active rows (through their Gram matrix where they are
# well conditioned, and a QR factorisation of $A_{\mathcal A}^\top$, which does not square the
# condition number, where they are nearly dependent):
#
# ```{literalinclude} ../src/tutorial_rl/projection/__init__.py
# :pyobject: projection_jacobian
# ```
#
# Autograd through `project_polytope` gives the same matrix (its backward pass is the same KKT
# sensitivity on the same rows), and both agree with central finite differences wherever the
# active set is locally constant:

# %%
points = {"interior": [0.2, -0.3], "facing a face": [0.0, 2.0], "facing a vertex": [2.2, 1.1]}
eps = 1e-6
for name, point in points.items():
    u_tilde = torch.tensor([point], requires_grad=True)
    autograd_jac = torch.autograd.functional.jacobian(lambda v: project_polytope(v, A, b)[0], u_tilde)[:, 0, :]
    closed_form = projection_jacobian(u_tilde.detach(), A, b)[0]
    finite_diff = torch.stack([
        (project_polytope(u_tilde.detach() + eps * e, A, b) - project_polytope(u_tilde.detach() - eps * e, A, b))[0] / (2 * eps)
        for e in torch.eye(2)
    ], dim=1)
    print(f"{name:>16}: rank {int(torch.linalg.matrix_rank(closed_form))}, "
          f"|autograd - closed form| = {(autograd_jac - closed_form).abs().max():.1e}, "
          f"|finite diff - closed form| = {(finite_diff - closed_form).abs().max():.1e}")

# %% [markdown]
# Drawn over the whole action plane, the rank partitions it into the set itself (rank 2), one
# strip per face (rank 1, the face's normal cone swept along the face) and one wedge per vertex
# (rank 0). For this pentagon the rank-0 wedges cover a large part of the plane around the set:

# %% tags=["hide-input"] mystnb={"figure": {"caption": "The rank of the Jacobian ∂Φ/∂ũ over the action plane: 2 inside the set, 1 in the strips facing a face, 0 in the wedges facing a vertex. A policy in the safeguard (SP-RL) whose proposal lies in a rank-0 wedge receives no gradient at all.", "name": "fig-jacobian-rank"}, "image": {"alt": "The action plane coloured by the rank of the projection's Jacobian: the pentagon, strips beside its faces and wedges at its vertices"}}
fig, ax = plt.subplots(figsize=(6, 5))
plot_jacobian_rank(A.numpy(), b.numpy(), ax=ax, extent=(-3.5, 3.5, -3.5, 3.5), resolution=250)
ax.set_title(r"Rank of $\partial\Phi/\partial\tilde u$ over the action plane")
plt.show()

# %% [markdown]
# ### Which Jacobian at the boundary?
#
# Equation {eq}`eq-jacobian` needs a locally constant active set, and on the boundaries between
# the coloured regions above it is not: $\Phi$ is piecewise affine and has kinks there, where no
# classical derivative exists. Degenerate points add a second question: at a vertex where more
# than $m$ rows are active the multipliers of {eq}`eq-kkt` are not unique, and "the active set"
# is ambiguous. A library has to return *some* matrix, and a careful reader should ask which.
# The package's rule is one sentence:
#
# > $J = I - A_+^\top (A_+ A_+^\top)^{+} A_+$, the projector onto the null space of the rows
# > $\mathcal A_+$ that carry a **positive multiplier in some** solution $\lambda$ of the KKT
# > conditions {eq}`eq-kkt`: the Jacobian of the *locally active face*.
#
# Why this one. Near $\tilde u$, a piecewise-affine $\Phi$ is exactly $\Phi(\tilde u + h) = u +
# \Pi_C(h)$, the projection onto the critical cone $C = \{d : a_i^\top d = 0 \ (i \in
# \mathcal A_+),\ a_j^\top d \le 0 \ (j \text{ active, not in } \mathcal A_+)\}$. By LP duality
# every active row outside $\mathcal A_+$ has a direction $d \in C$ with $a_j^\top d < 0$, so $C$
# has interior relative to $\{d : A_+ d = 0\}$, and on the open set of proposals that $C$'s
# interior attracts, $\Phi$ is affine with Jacobian $J$. So $J$ is a limit of true Jacobians: it
# lies in the B-subdifferential $\partial_B\Phi(\tilde u)$ and hence in Clarke's generalized
# Jacobian $\partial_C\Phi(\tilde u) = \mathrm{conv}\,\partial_B\Phi(\tilde u)$
# {cite:p}`clarke1990optimization`; it is the largest element of $\partial_C\Phi$ in the Loewner
# order (the projectors of the other pieces project onto subspaces of its range) and the unique
# element of largest rank in $\partial_B\Phi$, and it is $\nabla\Phi$ wherever $\Phi$ is
# differentiable. Consequences:
#
# - a proposal that is itself feasible, even exactly on the boundary, gets the identity (no row
#   needs a multiplier to explain it);
# - a proposal whose projection is a vertex but whose correction $\tilde u - u$ is a multiple of
#   one face normal (the other multiplier is zero) gets that face's Jacobian $I - nn^\top$;
# - at a degenerate vertex, every row that *can* carry part of the correction counts, including a
#   redundant one; duplicate and dependent rows change nothing (only their span enters);
# - "active", "positive" and "feasible" are decided with a tolerance of $10^{-9}$ times the scale
#   of the data (a distance, with rows normalised), so the rule is stable under rounding.
#
# The set of kink points has measure zero, so a policy trained with continuous noise meets it with
# probability zero; what *does* matter is the rank-deficient regions themselves, which have
# positive area, and chapter 6 returns to them.

# %%
boundary_cases = {
    "feasible, exactly on a face": [0.0, 1.2],           # no constraint needed: identity
    "lands on the vertex along a face normal": [1.9, 0.5],  # correction is a multiple of a1 only
    "inside the vertex's normal cone": [2.2, 1.1],        # both normals needed: zero
}
for name, point in boundary_cases.items():
    point = torch.tensor([point])
    jac = projection_jacobian(point, A, b)[0]
    print(f"{name:>40}: projection {project_polytope(point, A, b)[0].numpy().round(3)}, "
          f"active {torch.nonzero(active_set(point, A, b)[0]).flatten().tolist()}, "
          f"rank {int(torch.linalg.matrix_rank(jac))}")

# %% [markdown]
# A degenerate vertex shows why the rule speaks of *some* multiplier. Take the rows $x \le 1$,
# $y \le 1$ and $x + y \le 2$ (with the box $x, y \ge 0$): all three pass through $(1, 1)$, and
# the third is redundant. For $\tilde u = (3, 3)$ the correction $(2, 2)$ can be carried by the
# third row alone or by the first two, so all three carry a positive multiplier in some solution.
# $\Phi$ is constant around $\tilde u$ (the whole quadrant $\tilde u > (1, 1)$ lands on the vertex),
# and finite differences agree with the rule's $J = 0$; the face Jacobian of the third row alone,
# which a rule that picks the smallest active set would return, would say rank 1:

# %%
A_deg = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
b_deg = torch.tensor([1.0, 1.0, 2.0, 0.0, 0.0])
u_deg = torch.tensor([[3.0, 3.0]])
finite_diff = torch.stack([
    (project_polytope(u_deg + 1e-6 * e, A_deg, b_deg) - project_polytope(u_deg - 1e-6 * e, A_deg, b_deg))[0] / 2e-6
    for e in torch.eye(2)
], dim=1)
print("rows with a positive multiplier:", torch.nonzero(active_set(u_deg, A_deg, b_deg)[0]).flatten().tolist())
print("package's J:", projection_jacobian(u_deg, A_deg, b_deg)[0].numpy().round(12).tolist(),
      " finite differences:", finite_diff.numpy().round(9).tolist())

# %% [markdown]
# ## Where the safeguard sits: SE-RL and SP-RL
#
# The projection can be applied in two places {cite:p}`markgraf2026safeguard,gros2020safe`.
#
# - **In the environment (SE-RL).** The agent proposes $\tilde u$, and the environment, wrapped by
#   the safeguard, applies $u = \Phi(x, \tilde u)$. The agent is an ordinary RL agent for a
#   modified MDP; its critic $Q(x, \tilde u)$ is learned on the *proposed* actions. The
#   deterministic policy gradient is $\nabla_\theta J = \mathbb E[\nabla_\theta \mu_\theta(x)\,
#   \nabla_{\tilde u} Q(x, \tilde u)]$: no Jacobian of $\Phi$ appears.
# - **In the policy (SP-RL).** The projection is the last layer of the policy, $\pi(x) =
#   \Phi(x, \mu_\theta(x))$; the environment only ever sees safe actions and the critic $Q(x, u)$
#   is learned on them. The gradient passes through the projection:
#   $\nabla_\theta J = \mathbb E[\nabla_\theta \mu_\theta(x)\, \tfrac{\partial\Phi}{\partial\tilde u}\,
#   \nabla_u Q(x, u)]$.
#
# The two settings share their optimal value function (the paper's Theorem 1, chapter 5), but
# their gradients differ exactly by the Jacobian above.

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Where the safeguard sits. SE-RL: the environment applies Φ, and the critic learns Q(x, ũ) on the proposals. SP-RL: Φ is the policy's last layer, the critic learns Q(x, u) on safe actions, and the policy gradient passes through ∂Φ/∂ũ.", "name": "fig-placement"}, "image": {"alt": "Block diagram of the two placements of the projection: inside the environment and as the last layer of the policy"}}
plot_safeguard_placement()
plt.tight_layout()
plt.show()

# %% [markdown]
# A toy critic shows what the rank-0 region does to SP-RL. Let the value of the applied action be
# $Q(u) = -\lVert u - u^\star \rVert^2$ with the best action $u^\star = (3, -0.5)$ outside the set,
# and let the policy's proposal start at $\tilde u = (2.5, 1)$, in the normal cone of the vertex
# $(1.5, 0.5)$.
# The SP-RL gradient $\tfrac{\partial\Phi}{\partial\tilde u}^\top \nabla_u Q$ is exactly zero: the
# proposal never moves, although the best safe action (the projection of $u^\star$, on the right
# face) is elsewhere. This is the **zero-gradient problem** {cite:p}`lin2021escaping`; chapters 6
# and 7 study it and its cures.

# %%
u_star = torch.tensor([3.0, -0.5])
u_tilde = torch.tensor([[2.5, 1.0]], requires_grad=True)
q_value = -((project_polytope(u_tilde, A, b) - u_star) ** 2).sum()
q_value.backward()
print("applied action:", project_polytope(u_tilde, A, b).detach().numpy(),
      " SP-RL gradient w.r.t. the proposal:", u_tilde.grad.numpy())
print("best safe action:", project_polytope(u_star[None], A, b).numpy())

# %% [markdown]
# ## A fast exact projection and a reference
#
# The paper's implementation solves {eq}`eq-projection` with a differentiable convex-optimization
# layer, `cvxpylayers` {cite:p}`agrawal2019differentiable`, which is general but calls a conic
# solver for every sample. The package offers that as `method="cvxpylayers"`, the reference, and a
# default `method="exact"` built on the structure above: find the active set, then solve the KKT
# system {eq}`eq-kkt` on it.
#
# - **The teaching version: enumeration.** The optimal active set is one of the candidate sets of
#   at most $m$ linearly independent rows; evaluate every candidate's affine projection at once,
#   discard the infeasible ones and keep the closest. Exact and simple, but the number of
#   candidates, $\sum_{s \le m} \binom{k}{s}$, explodes: 16 for a pentagon, 31,180 for 18 rows
#   in 6-D. The package keeps it as this teaching version and as a fallback: the method below is
#   faster at every size the benchmark measures.
# - **Any $m$ and $k$: a dual active-set method** {cite:p}`goldfarb1983numerically`. Start at
#   $v = \tilde u$ (all multipliers zero), add the most violated row, move along the part of its
#   normal outside the span of the active normals, and drop a row whose multiplier would turn
#   negative. Every step keeps {eq}`eq-kkt` for the rows added so far, and the dual objective rises
#   at every addition, so no set repeats and the method stops after about $|\mathcal A| +$ a few
#   steps. Each step is a rank-one update of the dual basis $(A_{\mathcal S} A_{\mathcal S}^\top)^{-1}
#   A_{\mathcal S}$ of the active normals, no factorisation: $O(|\mathcal S|\,m)$ work, plus
#   $O(km)$ to find the next row to add. Samples need different numbers of steps, so each runs
#   its own loop, compiled with numba; $O(B\,s\,(|\mathcal S| + k)\,m)$ in all for a batch of
#   $B$ and $s \approx |\mathcal A| +$ a few steps.
# - **Polish and verify.** The KKT system on the set found is solved afresh in float64 and checked
#   for every sample: feasibility, multiplier signs and complementarity to $10^{-9}$ times the
#   scale of the data. A sample that fails goes to a fallback (more iterations, the enumeration,
#   an interior-point solver); an unverified point is never returned. The Jacobian is
#   {eq}`eq-jacobian` on the rows of the rule above. The scale of the data is
#   $1 + \|\tilde u\|_\infty + \max_i |b_i| / \|a_i\|$, unless a far row (a "no bound" written
#   as $b_i = 10^{12}$) makes it more than 100 times $1 + \|\tilde u\|_\infty + \|u\|_2$, the
#   size of the numbers that meet in the answer; then the sample is solved again on the latter,
#   so that the far row cannot loosen every other row's test.
#
# Both methods give the same projections and the same gradients:

# %%
generator = torch.Generator().manual_seed(1)
batch = 3 * (torch.rand(64, 2, generator=generator) - 0.5) * 2
batch.requires_grad_(True)
exact = project_polytope(batch, A, b, method="exact")
reference = project_polytope(batch, A, b, method="cvxpylayers")
grad_exact, = torch.autograd.grad(exact.sum(), batch)
grad_reference, = torch.autograd.grad(reference.sum(), batch)
print(f"max |exact - cvxpylayers| in values:    {(exact - reference).abs().max().item():.1e}")
print(f"max |exact - cvxpylayers| in gradients: {(grad_exact - grad_reference).abs().max().item():.1e}")
print("constraints active per sample:", np.bincount(active_constraint_count(batch.detach().numpy(), A.numpy(), b.numpy())))

# %% [markdown]
# For 2-D actions, the course's case, the package does not iterate at all: outside a polygon the
# projection is the nearest point of one of its edges, and the nearest point of every edge follows
# in closed form from the other rows, $O(k^2)$ work per sample in a fixed number of array
# operations, polished and verified like the rest (beyond four rows at batch 256, or for large
# batches, the compiled dual method is faster, and the package switches to it at a crossover
# measured by the benchmark). The exact
# method is much faster than the reference: `benchmarks/projection.py` measures forward plus
# backward side by side with the enumeration, `cvxpylayers` and proxsuite's QP layer
# {cite:p}`bambade2023proxqp` for $m$ from 1 to 12, up to $4m + 6$ rows and batches up to 4096. At
# batch 256 it was 300 to 1500 times faster than `cvxpylayers` on 1-D and 2-D sets like the
# course's (on the 2-D ones 1.2 to 4.4 times faster than the enumeration, 21 times on 14 rows at
# batch 4096), 190 to 280 times for $m = 4$ and 6 and 150 to 170 times for $m = 12$, and 15 to 34
# times faster than proxsuite for $m = 4$ to 12. A single proposal is another matter: there the
# exact method's 0.2-1.1 ms are the fixed cost of its steps, `cvxpylayers` takes 4-6 ms, and for
# $m \ge 2$ proxsuite's one solve is the fastest (0.4-0.9 ms). The
# gap at batch 256, the size of a training minibatch, decides whether SP-RL experiments fit on a
# laptop. Run `make bench` for the figures on your
# machine.
#
# ### A 6-D action
#
# Nothing above depends on $m = 2$. A robot arm with six joints proposes a 6-D action; its safe
# set is a polytope in $\mathbb R^6$, here 18 random halfspaces around a centre. Projecting a batch
# of 256 proposals is one call, it agrees with the reference, and the Jacobian's rank is $6 -
# \operatorname{rank} A_+$ again, the dimension of the face the projection lands on.

# %%
generator = torch.Generator().manual_seed(6)
A6 = torch.randn(18, 6, generator=generator)
A6 = A6 / A6.norm(dim=1, keepdim=True)
b6 = 0.3 + torch.rand(18, generator=generator)  # the origin is inside
proposals6 = 1.5 * torch.randn(256, 6, generator=generator)
safe6 = project_polytope(proposals6, A6, b6)
reference6 = project_polytope(proposals6[:8], A6, b6, method="cvxpylayers")
ranks6 = torch.linalg.matrix_rank(projection_jacobian(proposals6, A6, b6), atol=1e-9, rtol=0.0)
print(f"max violation {(safe6 @ A6.T - b6).max().item():.1e}, "
      f"max |exact - cvxpylayers| on 8 samples {(safe6[:8] - reference6).abs().max().item():.1e}")
print("samples per Jacobian rank 0..6:", torch.bincount(ranks6, minlength=7).tolist())

# %% [markdown]
# ## Try it
#
# In a running chapter (`make lab`), a widget moves a proposed action with two sliders and redraws
# its projection, the normal cone at the projection, the active constraints and the Jacobian's
# rank. On this page the player below takes the proposal once around the set for you (press play
# or step through it), and the static figure after it shows the three cases side by side.

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Player: a proposal ũ travels around the safe set. Watch the projection stick to a vertex while ũ sweeps through the vertex's normal cone (rank 0), slide along a face while ũ faces it (rank 1), and coincide with ũ inside the set (rank 2).", "name": "fig-projection-player"}}
angles = np.linspace(0, 2 * np.pi, 36, endpoint=False)
radius = 1.7 + 0.8 * np.cos(3 * angles)
HTML(projection_player(A.numpy(), b.numpy(), radius[:, None] * np.stack([np.cos(angles), np.sin(angles)], axis=1)))

# %% tags=["hide-input"] mystnb={"figure": {"caption": "The three cases the interactive widget explores: a proposal inside the set (Jacobian of rank 2), facing a face (rank 1) and facing a vertex (rank 0).", "name": "fig-projection-cases"}, "image": {"alt": "Three panels with one proposal each: inside the set, above a face, beyond a vertex"}}
fig, axes = plt.subplots(1, 3, figsize=(13, 4.4))
for ax, (title, point) in zip(axes, {"inside: rank 2": [0.5, -0.5], "facing a face: rank 1": [0.2, 2.1], "facing a vertex: rank 0": [2.6, 1.0]}.items(), strict=False):
    plot_projection(A.numpy(), b.numpy(), np.array([point]), ax=ax, extent=(-2.6, 2.6, -2.6, 2.6))
    ax.set_title(title)
for ax in axes[1:]:
    ax.get_legend().remove()  # one legend for the three panels
plt.tight_layout()
plt.show()

# %% tags=["remove-cell"]
# Live readers only (the static page shows the player above): two sliders move the proposal.
from tutorial_rl.widgets import projection_widget

projection_widget(A.numpy(), b.numpy())

# %% [markdown]
# ## Summary
#
# - The projection safeguard is a small quadratic program {eq}`eq-projection`; its KKT conditions
#   say that the correction $\tilde u - u$ lies in the normal cone of the safe set at $u$.
# - Every proposal in $u + N(u)$ is mapped to $u$: **action aliasing**. On a face this is a ray, at
#   a vertex of a 2-D set a whole wedge of the plane.
# - Where the active set is locally constant, $\partial\Phi/\partial\tilde u$ is the projector
#   {eq}`eq-jacobian` onto the null space of the active normals, of rank $m - \operatorname{rank}
#   A_{\mathcal A}$; at kinks and degenerate points the package returns the Jacobian of the
#   locally active face (the rows with a positive multiplier), the largest element of Clarke's
#   generalized Jacobian in the Loewner order.
# - `project_polytope` handles any action dimension: a batched dual active-set method with a
#   verified KKT polish, the candidate enumeration being the teaching version.
# - With the safeguard in the policy, gradients pass through that projector and vanish in the
#   vertex cones; with the safeguard in the environment they do not, but the critic must learn a
#   function that is constant along the cones. The next chapters make both effects concrete.
#
# ## Exercises
#
# ```{exercise}
# :label: ex-box
# For the box $\{v : \ell \le v \le h\}$, show that $\Phi$ is the componentwise clip and that its
# Jacobian is diagonal with entries $1$ for components that are not clipped ($\ell_i \le \tilde u_i
# \le h_i$) and $0$ for clipped ones. (At $\tilde u_i \in \{\ell_i, h_i\}$, $\Phi$ has a kink; the
# package returns $1$ there, the rule above.) Check it with `project_polytope` and
# `projection_jacobian` for a few proposals.
# ```
#
# ````{solution} ex-box
# :class: dropdown
# The objective $\tfrac12\sum_i (v_i - \tilde u_i)^2$ and the constraints separate by component,
# so each component solves $\min_{\ell_i \le v_i \le h_i} (v_i - \tilde u_i)^2$, whose solution is
# $\mathrm{clip}(\tilde u_i, \ell_i, h_i)$. A component is active exactly when it is clipped, and
# the rows of the active constraints are unit vectors $e_i$, so {eq}`eq-jacobian` is $I - \sum_{i
# \text{ clipped}} e_i e_i^\top$.
#
# ```python
# A_box = torch.cat([torch.eye(2), -torch.eye(2)])
# b_box = torch.tensor([1.0, 1.0, 1.0, 1.0])
# u = torch.tensor([[2.0, 0.3], [-0.2, -4.0], [3.0, 3.0]])
# print(project_polytope(u, A_box, b_box))      # equals u.clamp(-1, 1)
# print(projection_jacobian(u, A_box, b_box))   # diag(0, 1), diag(1, 0), zeros
# ```
# ````
#
# ```{exercise}
# :label: ex-projector
# Show that the Jacobian {eq}`eq-jacobian` is symmetric and idempotent ($J^2 = J$), hence an
# orthogonal projector, and that its range is the null space of $A_{\mathcal A}$. What is $J$
# applied to a normal $a_i$ of an active constraint?
# ```
#
# ```{solution} ex-projector
# :class: dropdown
# With $P = A_{\mathcal A}^\top (A_{\mathcal A}A_{\mathcal A}^\top)^{-1}A_{\mathcal A}$, $P$ is
# symmetric and $P^2 = A_{\mathcal A}^\top (A_{\mathcal A}A_{\mathcal A}^\top)^{-1}
# (A_{\mathcal A}A_{\mathcal A}^\top)(A_{\mathcal A}A_{\mathcal A}^\top)^{-1} A_{\mathcal A} = P$,
# so $J = I - P$ is symmetric with $J^2 = I - 2P + P^2 = J$. $A_{\mathcal A} J = A_{\mathcal A} -
# A_{\mathcal A} = 0$, so the range of $J$ lies in the null space; for $v$ in the null space
# $Pv = 0$ and $Jv = v$, so the range is all of it. $J a_i = a_i - a_i = 0$ for active $a_i$
# ($a_i$ is in the range of $A_{\mathcal A}^\top$, which $P$ leaves unchanged): moving the
# proposal along an active normal does not move the safe action, which is action aliasing again.
# ```
#
# ```{exercise}
# :label: ex-nonexpansive
# Prove that $\Phi$ is non-expansive: $\lVert \Phi(\tilde u) - \Phi(\tilde w) \rVert \le
# \lVert \tilde u - \tilde w \rVert$. Hint: apply the variational inequality of
# {prf:ref}`lem-normal-cone` twice. What does this say about the singular values of $J$?
# ```
#
# ```{solution} ex-nonexpansive
# :class: dropdown
# Write $u = \Phi(\tilde u)$, $w = \Phi(\tilde w)$. The lemma gives $(\tilde u - u)^\top(w - u)
# \le 0$ and $(\tilde w - w)^\top(u - w) \le 0$. Adding them: $(\tilde u - \tilde w)^\top(w - u)
# + \lVert u - w\rVert^2 \le 0$, so $\lVert u - w\rVert^2 \le (\tilde u - \tilde w)^\top(u - w)
# \le \lVert \tilde u - \tilde w\rVert\,\lVert u - w\rVert$ by Cauchy-Schwarz. Dividing by
# $\lVert u - w \rVert$ gives the claim. Consequently every Jacobian has spectral norm at most 1;
# as an orthogonal projector its singular values are exactly 0 or 1.
# ```
#
# ```{exercise}
# :label: ex-penalty-gradient
# Let $d(\tilde u) = \lVert \tilde u - \Phi(\tilde u) \rVert^2$ be the squared distance of a
# proposal to the safe set, the penalty used by the mitigations of chapter 7. Show that
# $\nabla d(\tilde u) = 2(\tilde u - \Phi(\tilde u))$ even though $\partial\Phi/\partial\tilde u$
# may have rank 0, and check it with autograd at the proposal $(2.5, 1)$ of the toy critic.
# Why does this gradient help an SP-RL policy stuck in a vertex cone?
# ```
#
# ````{solution} ex-penalty-gradient
# :class: dropdown
# By the chain rule, $\nabla d = 2 (I - J)^\top (\tilde u - \Phi(\tilde u))$ with $J =
# \partial\Phi/\partial\tilde u$. The residual $\tilde u - \Phi(\tilde u) = A_{\mathcal A}^\top
# \lambda$ lies in the range of $A_{\mathcal A}^\top$, which $J$ annihilates (the previous exercise),
# so $J^\top(\tilde u - \Phi) = 0$ and $\nabla d = 2(\tilde u - \Phi(\tilde u))$: a full-size
# gradient pointing from the safe set to the proposal, whatever the rank of $J$.
#
# ```python
# u_tilde = torch.tensor([[2.5, 1.0]], requires_grad=True)
# d = ((u_tilde - project_polytope(u_tilde, A, b)) ** 2).sum()
# d.backward()
# print(u_tilde.grad, 2 * (u_tilde - project_polytope(u_tilde, A, b)).detach())
# ```
#
# Descending $d$ pulls the proposal back towards the set, out of the rank-0 wedge and into a region
# where the critic's gradient reaches the policy again.
# ````

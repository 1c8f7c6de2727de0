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
# # Zonotopes and safe sets
#
# Chapter 1 projected a proposed action onto a safe action set $\mathcal U_s(x)$ and took the
# set as given. This chapter builds it. For the pendulum and the quadrotor of the paper
# {cite:p}`markgraf2026safeguard`, $\mathcal U_s(x)$ is the set of actions after which the next
# state, whatever the disturbance, lies in a **robust control invariant (RCI) set** of states:
# a set that the controller can keep the system in forever. Both the RCI set and the set of
# possible next states are **zonotopes**, and "the next states lie in the RCI set" is a
# zonotope-in-zonotope containment condition. (The seeker of chapter 3 gets its safe set from
# braking distances instead; this chapter is about the other two tasks.)
#
# ```{admonition} Learning goals
# :class: tip
# After this chapter you can
# 1. write a zonotope in generator form $\langle c, G\rangle$, compute its support function, and
#    say why linear maps and Minkowski sums of zonotopes are zonotopes;
# 2. state the containment lemma of {cite:t}`ghasemi2020compositional`, prove it, and explain
#    why it is only *sufficient*;
# 3. define a robust control invariant set and say why it makes the safe action set non-empty at
#    every step (recursive feasibility) (the appendix, {doc}`a_rci`, computes one);
# 4. compute and draw the safe action sets of the pendulum (an interval) and the quadrotor (a
#    polygon), in the paper's containment form and in an exact halfspace form, and check that
#    they agree;
# 5. verify invariance numerically and recognise the two failure modes: a state outside the set
#    and a problem that has no RCI set at all.
# ```
#
# ```{admonition} Run this chapter
# :class: seealso
# This page shows the chapter as it ran when the book was built. To run it yourself, get
# {{ repository_link }}, run `make lab` (it installs everything into `.venv` and opens
# JupyterLab), and open `chapters/02_zonotopes.py` as a notebook (right click, *Open With → Notebook*).
# Every cell can be edited and re-run there, and the interactive widgets respond.
# ```

# %%
import time

import cvxpy as cp
import gymnasium as gym
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import HTML

import tutorial_rl  # noqa: F401  (registers the environments)
from tutorial_rl.players import pendulum_torque_player
from tutorial_rl.profile import by_profile
from tutorial_rl.results import load_result
from tutorial_rl.sets import (
    EmptySafeActionSetError,
    RCISetInfeasibleError,
    Zonotope,
    compute_rci,
    containment_constraints,
    is_contained,
    load_rci,
    pendulum_safe_action_set,
    quadrotor_safe_action_set,
    verify_invariance,
)
from tutorial_rl.sets.plotting import (
    plot_containment,
    plot_containment_scan,
    plot_linear_map,
    plot_minkowski_sum,
    plot_rci_projections,
    plot_support_function,
    plot_trajectories,
    plot_zonotope_anatomy,
)
from tutorial_rl.sets.safe_action_plots import (
    plot_next_state_sets,
    plot_safe_interval_map,
    plot_safe_polygons,
    plot_verification,
    plot_verification_counts,
    safe_interval_grid,
)
from tutorial_rl.systems import (
    PendulumParameters,
    pendulum_linear_model,
    pendulum_step,
)
from tutorial_rl.task_plots import rollout

# %% [markdown]
# ## Why safe sets
#
# Write the dynamics as $x^+ = f(x, u) + w$ with a bounded disturbance $w \in \mathcal W$, and
# let $\mathcal X$ be the states we must never leave (the **state box**: $|\theta| \le 2$,
# $|\dot\theta| \le 6.5$ for the pendulum). Requiring only $x^+ \in \mathcal X$ is not enough:
# a pendulum at $\theta = 1.5$ rad swinging outwards at $5$ rad/s is still inside the box, but
# no torque within $|u| \le 8$ N m can stop it before it leaves. What the safeguard needs is a
# set $\mathcal S \subseteq \mathcal X$ of states from which the system can be kept inside
# *forever*, and the safe actions are those that keep the next state in $\mathcal S$:
#
# $$
# \mathcal U_s(x) = \{ u \in \mathcal U : f(x, u) + w \in \mathcal S \text{ for all } w \in \mathcal W \}.
# $$ (eq-safe-action-set)
#
# If $\mathcal S$ is chosen so that $\mathcal U_s(x)$ is non-empty for *every* $x \in \mathcal
# S$, the projection of chapter 1 always has something to project onto. Such an $\mathcal S$ is
# a robust control invariant set {cite:p}`blanchini1999set`. For a linear(ized) model the set of
# next states $\{Ax + Bu + w : w \in \mathcal W\}$ is a translate of $\mathcal W$, and with
# zonotopes both it and $\mathcal S$ have short, exact descriptions. That is the paper's choice
# (its appendix A.1), and the rest of this chapter makes it concrete.
#
# ## Zonotopes
#
# A **zonotope** with centre $c \in \mathbb R^n$ and generator matrix $G = [g_1, \dots, g_p]
# \in \mathbb R^{n \times p}$ is the set
#
# $$
# \langle c, G \rangle = \{ c + G\beta : \lVert \beta \rVert_\infty \le 1 \}
# = \{ c + \textstyle\sum_{j=1}^p \beta_j g_j : -1 \le \beta_j \le 1 \} ,
# $$ (eq-zonotope)
#
# the image of the unit box $[-1, 1]^p$ under an affine map, or equivalently the sum of $p$
# line segments $[-g_j, g_j]$ moved to $c$. In the plane, one generator gives a segment, two a
# parallelogram, three a hexagon, four an octagon: every generator adds a pair of parallel
# edges. The package's `Zonotope` stores exactly $(c, G)$:

# %%
gens = np.array([[1.0, 0.3, -0.4, 0.5], [0.2, 0.8, 0.6, -0.5]])
gallery = [Zonotope([0.0, 0.0], gens[:, :p]) for p in (1, 2, 3, 4)]
for Z in gallery:
    print(f"{Z.n_generators} generator(s): {len(Z.vertices_2d())} vertices, area {Z.volume():.3f}")

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Zonotopes with one to four generators: a segment, a parallelogram, a hexagon and an octagon. Each generator adds one pair of parallel edges; the dots are points c + Gβ for random β in the unit box.", "name": "fig-zonotope-gallery"}, "image": {"alt": "Four zonotopes in the plane with one, two, three and four generators, with their generators drawn as arrows"}}
fig, axes = plt.subplots(1, 4, figsize=(14, 3.8), sharex=True, sharey=True)
for ax, Z, name in zip(axes, gallery, ["segment", "parallelogram", "hexagon", "octagon"], strict=True):
    plot_zonotope_anatomy(Z, ax=ax, n_samples=400)
    ax.set_title(f"p = {Z.n_generators}: {name}")
axes[0].legend(fontsize=7, loc="lower right")
plt.tight_layout()
plt.show()

# %% [markdown]
# The grey points are $c + G\beta$ with $\beta$ uniform in the unit box. They fill the set, but
# not uniformly: many $\beta$ map to the middle and few to the corners, so sampling $\beta$ is
# not sampling the set uniformly (use `Zonotope.sample_uniform` for that).
#
# ### The support function
#
# The **support function** $h_Z(d) = \max_{z \in Z} d^\top z$ says how far the set reaches in
# direction $d$. For a zonotope it has a closed form: $d^\top(c + G\beta) = d^\top c + \sum_j
# \beta_j (g_j^\top d)$ is maximised over the box by $\beta_j = \operatorname{sign}(g_j^\top d)$, so
#
# $$
# h_{\langle c, G\rangle}(d) = d^\top c + \lVert G^\top d \rVert_1 ,
# \qquad \arg\max = c + G \operatorname{sign}(G^\top d).
# $$ (eq-support)
#
# No vertex enumeration is needed, which matters in six dimensions. In 2-D we can check it
# against the largest $d^\top v$ over the vertices:

# %%
octagon = gallery[3] + np.array([0.5, -0.2])
directions = np.random.default_rng(0).normal(size=(1000, 2))
closed_form = octagon.support(directions)
over_vertices = (directions @ octagon.vertices_2d().T).max(axis=1)
print(f"max |h_Z(d) - max_v d·v| over 1000 directions: {np.abs(closed_form - over_vertices).max():.1e}")

# %% tags=["hide-input"] mystnb={"figure": {"caption": "The support function h_Z(d) of the octagon in three directions d: each supporting line dᵀz = h_Z(d) touches the zonotope at a maximiser, a vertex c + G sign(Gᵀd).", "name": "fig-support-function"}, "image": {"alt": "An octagon with three supporting lines and the vertices where they touch it"}}
fig, ax = plt.subplots(figsize=(5, 4.5))
plot_support_function(octagon, np.array([[1.0, 0.2], [-0.3, 1.0], [-1.0, -1.0]]), ax=ax)
ax.set_title(r"Supporting lines $d^\top z = h_Z(d)$ and maximisers")
plt.show()

# %% [markdown]
# ## Linear maps and Minkowski sums
#
# Two operations keep a zonotope a zonotope, and both act on $(c, G)$ in closed form:
#
# $$
# M \langle c, G\rangle = \langle Mc, MG\rangle, \qquad
# \langle c_1, G_1\rangle \oplus \langle c_2, G_2\rangle = \langle c_1 + c_2, [G_1\; G_2]\rangle ,
# $$ (eq-closure)
#
# where $A \oplus B = \{a + b : a \in A, b \in B\}$ is the **Minkowski sum**. The first holds
# because $M(c + G\beta) = Mc + (MG)\beta$ with the same $\beta$; the second because $(c_1 +
# G_1\beta_1) + (c_2 + G_2\beta_2) = (c_1 + c_2) + [G_1\,G_2]\,[\beta_1; \beta_2]$, and
# $[\beta_1; \beta_2]$ ranges over the unit box exactly when both parts do. The sum just
# concatenates generators, so it costs nothing to compute; in the package, `M @ Z` and
# `Z1 + Z2`. Picture the sum as $Z_2$ slid over every point of $Z_1$:

# %%
Z1 = Zonotope([0.0, 0.0], [[1.0, 0.4], [0.0, 0.8]])
Z2 = Zonotope([0.0, 0.0], [[0.3, -0.2, 0.0], [0.1, 0.2, 0.3]])
M = np.array([[0.8, -0.9], [0.6, 0.5]])
print("Z1 + Z2:", Z1 + Z2, " M @ Z1:", M @ Z1)
print("support is additive:", np.isclose((Z1 + Z2).support([1.0, 2.0]), Z1.support([1.0, 2.0]) + Z2.support([1.0, 2.0])))

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Zonotopes are closed under the two operations the safe sets need. Left: the Minkowski sum of two zonotopes concatenates their generators. Right: a linear map applies the matrix to the centre and every generator.", "name": "fig-sum-and-map"}, "image": {"alt": "Two panels: two zonotopes and their Minkowski sum; a zonotope and its image under a linear map"}}
fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
plot_minkowski_sum(Z1, Z2, ax=axes[0])
axes[0].set_title(r"Minkowski sum $Z_1 \oplus Z_2$")
plot_linear_map(Z1, M, ax=axes[1])
axes[1].set_title(r"Linear map $M Z$ (arrows: $g_j$ and $M g_j$)")
plt.tight_layout()
plt.show()

# %% [markdown]
# This closure is why zonotopes suit linear systems {cite:p}`girard2005reachability`. If the
# current state is known to lie in a zonotope $X_k$ and the input is fixed, the next states of
# $x^+ = Ax + Bu + w$, $w \in W = \langle c_w, G_w\rangle$, form
#
# $$
# X_{k+1} = A X_k \oplus \{Bu\} \oplus W = \langle A c_k + Bu + c_w,\; [A G_k\;\; G_w]\rangle ,
# $$
#
# again a zonotope, with $p_w$ more generators per step (order reduction,
# `Zonotope.reduce_order`, bounds the growth from outside). For the safe action set we need the
# simplest case, a single known state $x$: the next states form $Ax + Bu \oplus W =
# \langle Ax + Bu + c_w, G_w\rangle$, a copy of $W$ whose centre moves *linearly* with the
# action. The safeguard's job is to choose $u$ so that this copy fits inside the safe set.
#
# ## Zonotope containment
#
# Deciding whether one zonotope lies inside another is, in general, hard: {cite:t}`kulmburg2021containment`
# prove that it is co-NP-complete. The paper therefore uses a *sufficient* condition that is
# linear in all the data, so it can sit inside the projection problem as constraints.
#
# ```{prf:lemma} Zonotope containment
# :label: lem-containment
# (Ghasemi, Sadraddini and Belta, 2020, Lemma 1.) Let $Z_1 = \langle c_1, G_1\rangle$ and $Z_2 = \langle c_2, G_2\rangle$ with $G_1 \in \mathbb
# R^{n\times p_1}$, $G_2 \in \mathbb R^{n \times p_2}$. If there are $\Gamma \in \mathbb
# R^{p_2\times p_1}$ and $\beta \in \mathbb R^{p_2}$ with
#
# $$
# G_1 = G_2 \Gamma, \qquad c_2 - c_1 = G_2 \beta, \qquad \lVert [\Gamma,\, \beta] \rVert_\infty \le 1,
# $$ (eq-containment)
#
# where $\lVert\cdot\rVert_\infty$ is the largest absolute row sum, then $Z_1 \subseteq Z_2$.
# ```
#
# ```{prf:proof}
# Take any $z = c_1 + G_1\xi \in Z_1$, $\lVert\xi\rVert_\infty \le 1$. Substituting the two
# equalities, $z = c_2 - G_2\beta + G_2\Gamma\xi = c_2 + G_2(\Gamma\xi - \beta)$. Row $j$ of the
# new coefficient vector satisfies $|(\Gamma\xi - \beta)_j| \le \sum_k |\Gamma_{jk}|\,|\xi_k| +
# |\beta_j| \le \sum_k |\Gamma_{jk}| + |\beta_j| \le 1$. So $z$ is $c_2$ plus $G_2$ times a
# vector in the unit box: $z \in Z_2$.
# ```
#
# The proof shows where the condition can lose: it asks for *one linear map* $\Gamma$ that
# carries every point's coefficients $\xi$ to coefficients for $Z_2$. Exact containment only
# needs *some* coefficient vector for each point, chosen separately. When $G_2$ is square and
# invertible (a parallelotope) the coefficients are unique, the two agree, and the lemma is
# exact. The package writes {eq}`eq-containment` as cvxpy constraints in which $c_1$ and $G_1$
# may themselves be expressions of decision variables (the safe action $u$ enters $c_1$):
#
# ```{literalinclude} ../src/tutorial_rl/sets/containment.py
# :pyobject: containment_constraints
# ```
#
# `is_contained(inner, outer)` solves the feasibility problem (as "minimise the largest row
# sum"), and `method="halfspaces"` decides containment exactly by comparing the support
# function of the inner set with every facet $H_i z \le h_i$ of the outer one; in 2-D
# `method="vertices"` checks the inner vertices. A worked example, an inner parallelogram and
# an outer hexagon, at three positions:

# %%
outer = Zonotope([0.0, 0.0], [[1.0, 0.5, -0.5], [0.0, 0.8, 0.8]])
inner_G = np.array([[0.5, 0.2], [0.1, 0.35]])
for shift in ([0.0, 0.0], [1.0, 0.0], [1.2, 0.3]):
    inner = Zonotope(shift, inner_G)
    print(f"inner at {shift}: Ghasemi LP {is_contained(inner, outer)!s:5}, "
          f"facets {is_contained(inner, outer, method='halfspaces')!s:5}, "
          f"vertices {is_contained(inner, outer, method='vertices')!s:5}")

# %% [markdown]
# The certificate itself, $\Gamma$ and $\beta$ for the middle case (which only just fits),
# with its row sums:

# %%
inner = Zonotope([1.0, 0.0], inner_G)
constraints, certificate = containment_constraints(inner.center, inner.generators, outer)
cp.Problem(cp.Minimize(0), constraints).solve(solver=cp.CLARABEL)
print("Gamma =\n", certificate.Gamma.value.round(3), "\nbeta =", certificate.beta.value.round(3))
print("row sums |Gamma| + |beta|:", (np.abs(certificate.Gamma.value).sum(1) + np.abs(certificate.beta.value)).round(3))

# %% tags=["hide-input"] mystnb={"figure": {"caption": "The containment lemma at work: the same inner zonotope at three positions inside a fixed outer one. The lemma certifies the first two (the second only just fits) and rejects the third, which pokes out.", "name": "fig-containment"}, "image": {"alt": "Three panels showing an inner zonotope inside, just inside and partly outside an outer zonotope"}}
fig, axes = plt.subplots(1, 3, figsize=(13, 4))
for ax, shift in zip(axes, ([0.0, 0.0], [1.0, 0.0], [1.2, 0.3]), strict=True):
    plot_containment(Zonotope(shift, inner_G), outer, ax=ax)
    ax.set_title(f"inner centred at {shift}")
plt.tight_layout()
plt.show()

# %% [markdown]
# ### When the sufficient condition fails
#
# To find a case where the lemma cannot prove a true containment, we compare *how far* each
# test lets an inner set grow: the largest scale $s$ such that $\langle c_1, sG_1\rangle
# \subseteq Z_2$. Exactly, that is $\min_i (h_i - H_i c_1) / \lVert G_1^\top H_i^\top\rVert_1$
# over the facets of $Z_2$; for the lemma it is one LP, because {eq}`eq-containment` is linear
# in $G_1$ too, so `containment_constraints` accepts $sG_1$ with $s$ a variable. Over random
# pairs of 2-D zonotopes:

# %%
rng = np.random.default_rng(1)
gaps = []
for trial in range(int(by_profile(ci=40, full=500))):
    outer_r = Zonotope([0.0, 0.0], rng.normal(size=(2, rng.integers(3, 6))))
    inner_r = Zonotope(0.2 * rng.normal(size=2), rng.normal(size=(2, rng.integers(1, 5))))
    H, h = outer_r.halfspaces()
    if np.any(H @ inner_r.center >= h):
        continue  # the centre itself is outside: no scale works
    exact_scale = ((h - H @ inner_r.center) / np.abs(H @ inner_r.generators).sum(axis=1)).min()
    s = cp.Variable()
    constraints, _ = containment_constraints(inner_r.center, s * inner_r.generators, outer_r)
    cp.Problem(cp.Maximize(s), constraints).solve(solver=cp.CLARABEL)
    gaps.append(1 - s.value / exact_scale)
print(f"{len(gaps)} random 2-D pairs: largest relative loss of the lemma {max(gaps):.1e}")

# %% [markdown]
# We found **no** 2-D case where the lemma is conservative: in every random pair (and in the
# square-in-rotated-square and square-in-hexagon cases we tried by hand) it certified the same
# largest scale as the exact test, up to solver tolerance. We do not know a proof that 2-D is
# always exact, so we only report what we measured. In three dimensions a clean counterexample
# exists: the cube $[-s, s]^3$ inside the rhombic dodecahedron generated by the four diagonals
# $(\pm1, \pm1, 1)$. The cube fits exactly up to $s = 2$ (its edges touch the dodecahedron's
# faces), but the lemma certifies it only up to $s = 4/3$:

# %%
dodecahedron = Zonotope(np.zeros(3), [[1.0, 1.0, 1.0, -1.0], [1.0, 1.0, -1.0, 1.0], [1.0, -1.0, 1.0, 1.0]])
scales = np.round(np.arange(1.0, 2.31, 0.1), 2)
lemma_says = np.array([is_contained(Zonotope(np.zeros(3), s * np.eye(3)), dodecahedron) for s in scales])
exact_says = np.array([is_contained(Zonotope(np.zeros(3), s * np.eye(3)), dodecahedron, method="halfspaces") for s in scales])
print("scales contained (exact):       ", scales[exact_says])
print("scales certified by the lemma:  ", scales[lemma_says])

# %% tags=["hide-input"] mystnb={"figure": {"caption": "The lemma is sufficient, not necessary: a cube [-s, s]³ fits in the rhombic dodecahedron up to s = 2, but the lemma certifies it only up to s = 4/3 (the shaded gap).", "name": "fig-containment-gap"}, "image": {"alt": "Scale of the cube on the horizontal axis, with filled dots where it is contained and where the lemma certifies it"}}
fig, ax = plt.subplots(figsize=(9, 2.6))
plot_containment_scan(scales, lemma_says, exact_says, ax=ax)
ax.set_title(r"Cube $[-s, s]^3$ in a rhombic dodecahedron: the lemma is sufficient, not necessary")
plt.show()

# %% [markdown]
# For the safe sets of this course the gap does not matter: the RCI sets are built so that the
# lemma is exact for the containment the safeguard asks about (the appendix, {doc}`a_rci`,
# measures it). In general it does matter: a
# conservative containment test makes the safe action set smaller than it could be, or even
# empty where a safe action exists.
#
# ## Robust control invariant sets
#
# ```{prf:definition} Robust control invariant set
# :label: def-rci
# For $x^+ = Ax + Bu + w$ with $w \in W$, state constraints $\mathcal X$ and input constraints
# $\mathcal U$, a set $S \subseteq \mathcal X$ is **robust control invariant** if for every
# $x \in S$ there is a $u \in \mathcal U$ with $Ax + Bu + w \in S$ for every $w \in W$, that is,
# $Ax + Bu \oplus W \subseteq S$.
# ```
#
# With $S$ an RCI set, the safe action set {eq}`eq-safe-action-set` of a linear system is
#
# $$
# \mathcal U_s(x) = \{u \in \mathcal U : Ax + Bu \oplus W \subseteq S\},
# $$ (eq-us-rci)
#
# and the definition says precisely that $\mathcal U_s(x) \neq \emptyset$ for every $x \in S$.
# (For an affine model $x^+ = Ax + Bu + c + w$, with $c$ the model's constant term, for example
# from linearising away from an equilibrium, read $Ax + Bu + c$ for $Ax + Bu$ throughout; the
# package's models carry such a $c$.) This gives **recursive feasibility**: if the episode starts in $S$ and every applied action is
# in $\mathcal U_s(x)$, the next state is in $S$ (for any disturbance), so the next safe action
# set is non-empty again, and so on forever. The projection of chapter 1 never runs out of
# safe actions, and the state never leaves $S \subseteq \mathcal X$. With zonotopes, replacing
# "$\subseteq$" by the lemma's constraints turns {eq}`eq-us-rci` into linear constraints in
# $(u, \Gamma, \beta)$: the paper's safe action set (its eq. 12b with eq. 32).
#
# How the package computes such a set, one convex program whose solution carries its own
# certificate controller, is the subject of the appendix ({doc}`a_rci`). This chapter loads the
# two sets the course uses, computed by that program and stored in the package.
#
# ## The pendulum
#
# The pendulum's simulator is *nonlinear* (chapter 3), while the RCI set is computed for the
# exact discretization of its linearization about the upright position. The difference between
# the two is treated as part of the disturbance $W$, with a rigorous bound over the set
# ({eq}`eq-pendulum-w` in the appendix), so $W$ is larger than the simulator's noise alone:

# %%
pendulum_rci = load_rci("pendulum")
rho_theta, rho_omega = pendulum_rci.diagnostics["hull_radius"]
print(f"interval hull of the RCI set: |θ| <= {rho_theta:.3f} rad, |θ̇| <= {rho_omega:.3f} rad/s "
      f"(state box: |θ| <= 2, |θ̇| <= 6.5)")
print(f"W: {pendulum_rci.disturbance.n_generators} generators, interval hull ±{pendulum_rci.disturbance.interval_hull()[1].round(3)} "
      f"(the noise alone: ±[0.1 0.1])")
print(f"RCI set: {pendulum_rci.set.n_generators} generators, area {pendulum_rci.set.volume():.2f}, "
      f"{pendulum_rci.volume_ratio():.1%} of the state box")

# %% [markdown]
# The model error makes $W$ about three times as wide as the noise alone in the $\dot\theta$
# direction, and the set covers about an eighth of the state box: a thin diagonal band of
# states in which the pendulum is near upright or already swinging back towards it. Several episodes of the nonlinear pendulum,
# driven by uniformly random torques behind `ProjectionSafeguard`, stay inside it:

# %%
episodes = [rollout("tutorial_rl/Pendulum-v0", steps=int(by_profile(ci=120, full=200)), seed=seed) for seed in range(5)]
pendulum_safe = pendulum_safe_action_set()
print("steps outside the RCI set:", sum(int((~pendulum_safe.contains_state(ep.observations.astype(float))).sum()) for ep in episodes),
      " violations reported by the env:", sum(int(ep.violations.sum()) for ep in episodes),
      " interventions:", sum(ep.interventions for ep in episodes))

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Five episodes of the nonlinear pendulum driven by uniformly random torques behind the safeguard: every state stays inside the RCI set, a thin diagonal band of the state box.", "name": "fig-pendulum-trajectories"}, "image": {"alt": "Phase plane of the pendulum with the RCI set as a diagonal band and five random trajectories inside it"}}
fig, ax = plt.subplots(figsize=(7, 4.8))
plot_trajectories(pendulum_rci, [ep.observations for ep in episodes], ax=ax)
ax.set_title("Nonlinear pendulum, random torques behind the safeguard")
plt.show()

# %% [markdown]
# The environment's action space is normalised to $[-1, 1]$ (torque $= 8a$);
# `env.unwrapped.safe_action_set_physical()` gives the same interval in N m:

# %%
env = gym.make("tutorial_rl/Pendulum-v0")
obs, _ = env.reset(seed=3)
for name, (A, b) in (("physical (N m)", env.unwrapped.safe_action_set_physical()), ("normalised", env.unwrapped.safe_action_set())):
    print(f"state {obs}: safe {name:>14}: [{(b[A[:, 0] < 0] / A[A[:, 0] < 0, 0]).max():.3f}, {(b[A[:, 0] > 0] / A[A[:, 0] > 0, 0]).min():.3f}]")

# %% [markdown]
# With one input, $\mathcal U_s(x)$ is an interval $[\underline u(x), \overline u(x)]$
# (`LinearSafeActionSet.safe_interval`; `safe_interval_grid` evaluates it on a grid of states):

# %%
lower, upper = pendulum_safe.safe_interval(np.zeros(2))
grid_lower, grid_upper = safe_interval_grid(pendulum_safe, np.linspace(-1.1, 1.1, 111), np.linspace(-4.2, 4.2, 211))
width = grid_upper - grid_lower
print(f"at rest, upright: [{lower[0]:.2f}, {upper[0]:.2f}] N m;  over the set: widest interval {np.nanmax(width):.2f} N m, "
      f"mean width {np.nanmean(width):.2f} N m, narrower than 1 N m at {np.mean(width[~np.isnan(width)] < 1):.1%} of the grid states in the set")

# %% [markdown]
# Over the phase plane: along the middle of the band a wide interval is safe, but never the
# whole $[-8, 8]$ (part of the torque range is always needed in reserve against the
# disturbance). Towards the upper edge of the band, where the pendulum moves too fast towards
# positive $\theta$ for its angle, only negative (braking) torques remain, towards the lower
# edge only positive ones, and on the edges the interval shrinks to a single torque at the
# limit. Outside the set it is empty (blank).

# %% tags=["hide-input"] mystnb={"figure": {"caption": "The pendulum's safe torque interval over the RCI set: its lower end (left) and upper end (right). Near the upper edge of the band only braking (negative) torques remain, near the lower edge only positive ones; outside the set it is empty (blank).", "name": "fig-safe-interval-map"}, "image": {"alt": "Two heat maps over the pendulum's phase plane showing the lower and upper end of the safe torque interval"}}
plot_safe_interval_map(pendulum_safe, resolution=int(by_profile(ci=121, full=301)))
plt.tight_layout()
plt.show()

# %% [markdown]
# ## The quadrotor
#
# The planar quadrotor's model is linear and exactly discretized (chapter 3), so here $W$ is
# only the wind, the one-sided box $[0, 0.08]^2$ on the accelerations. Its six states split into
# a lateral block $(x, \dot x, \theta, \dot\theta)$ and a vertical block $(z, \dot z)$ that share
# only the thrust box; the package keeps them decoupled, so the RCI set is the product of a 4-D
# and a 2-D zonotope (few facets), and refines the lateral template over a few rounds (the
# appendix runs the computation live). The stored set:

# %%
quad_stored = load_rci("quadrotor")
lo, hi = quad_stored.set.interval_hull()
print(f"{quad_stored.set.n_generators} generators, {len(quad_stored.set.halfspaces()[1])} facets, "
      f"{quad_stored.volume_ratio():.1%} of the state box")
for name, l, u, bl, bu in zip(["x", "z", "ẋ", "ż", "θ", "θ̇"], lo, hi, quad_stored.state_box.lower, quad_stored.state_box.upper, strict=True):
    print(f"  {name:>2}: hull [{l:6.3f}, {u:6.3f}]   box [{bl:6.3f}, {bu:6.3f}]")

# %% [markdown]
# A 6-D set is seen through 2-D views. The filled polygons are **projections** (the shadow of
# the set on a coordinate plane, exact, and a zonotope again); the black outlines are
# **slices** through the hover state (the other four coordinates fixed at $x_{eq}$). A point in
# a projection need not be in the set; a point in a slice is. The hull nearly fills the state
# box in every coordinate, but the set is only about 14 % of the box's volume: the coordinates
# cannot take their extreme values together (e.g. far right *and* moving right fast).

# %% tags=["hide-input"] mystnb={"figure": {"caption": "The 6-D quadrotor RCI set seen in three coordinate planes: projections (filled, the shadow of the set) and slices through the hover state (outline). A point in a slice is in the set; a point in a projection need not be.", "name": "fig-quadrotor-rci"}, "image": {"alt": "Three panels with the quadrotor RCI set projected onto the (x, x-dot), (z, z-dot) and (theta, theta-dot) planes"}}
quad_labels = ["$x$ (m)", "$z$ (m)", r"$\dot x$ (m/s)", r"$\dot z$ (m/s)", r"$\theta$ (rad)", r"$\dot\theta$ (rad/s)"]
plot_rci_projections(quad_stored, [(0, 2), (1, 3), (4, 5)], quad_labels, slice_resolution=int(by_profile(ci=90, full=200)))
plt.suptitle("Quadrotor RCI set: projections (filled) and slices through hover (outline)")
plt.tight_layout()
plt.show()

# %% [markdown]
# With two rotors, $\mathcal U_s(x)$ is a polygon of thrust pairs. The vertical block constrains
# the total thrust $u_1 + u_2$, the lateral block the difference $u_2 - u_1$ (which turns the
# quadrotor). At hover most of the thrust box is safe; only the two corners with a large
# difference, which would tilt it too fast, are cut. Sinking fast near the floor, only a high
# total thrust is safe. Tilted and drifting right, only pairs with $u_2 - u_1$ at most slightly
# positive remain: those that stop the tilt or turn it back:

# %%
quadrotor_safe = quadrotor_safe_action_set()
hover = quad_stored.x_eq
quad_states = np.array([hover, hover + [0, -0.45, 0, -0.4, 0, 0], hover + [0.6, 0, 0.15, 0, 0.06, 0]])
quad_titles = ["hover", "sinking near the floor\n(z = 0.55, ż = -0.4)", "tilted, drifting right\n(x = 0.6, ẋ = 0.15, θ = 0.06)"]
print("states inside the RCI set:", quadrotor_safe.contains_state(quad_states))

# %% tags=["hide-input"] mystnb={"figure": {"caption": "The quadrotor's safe thrust pairs at three states. At hover only the two corners with a large thrust difference are cut; sinking near the floor only a high total thrust is safe; tilted and drifting right only pairs that stop or reverse the tilt remain.", "name": "fig-quadrotor-safe-polygons"}, "image": {"alt": "Three polygons of safe thrust pairs inside the thrust box"}}
plot_safe_polygons(quadrotor_safe, quad_states, titles=quad_titles)
plt.tight_layout()
plt.show()

# %% [markdown]
# (sec-two-forms)=
# ## Two forms of the safe action set
#
# The same set {eq}`eq-us-rci` can be written in two ways, and the package has both.
#
# **(a) Containment form (the paper's).** $u$ is safe if the next-state zonotope $\langle Ax +
# Bu + c + c_W, G_W\rangle$ passes the lemma against $X = \langle c_X, G_X\rangle$, with
# auxiliary variables $\Gamma, \beta$. The projection is then the quadratic program
# $\min_{u, \Gamma, \beta} \lVert u - \tilde u\rVert^2$ subject to {eq}`eq-containment` and $u
# \in \mathcal U$, which `containment_problem` builds with `x` and `u_tilde` as cvxpy parameters
# (ready for a `CvxpyLayer`):
#
# ```{literalinclude} ../src/tutorial_rl/sets/safe_actions.py
# :pyobject: LinearSafeActionSet.containment_problem
# :dedent: 4
# ```
#
# **(b) Exact halfspace form (the fast path).** Compute the facets $X = \{z : Hz \le h\}$ once.
# Then $Ax + Bu + c \oplus W \subseteq X$ exactly when $H(Ax + Bu + c) \le h - h_W(H)$ row by row
# (the support function of $W$ on each facet normal), so
#
# $$
# \mathcal U_s(x) = \{u \in \mathcal U : (HB)\,u \le h - h_W(H) - Hc - HAx\},
# $$ (eq-us-halfspaces)
#
# a polytope in action space whose rows $HB$ do not depend on $x$; only the offsets do.
# Parallel rows are merged, leaving an interval for the pendulum and an octagon (thrust box plus
# one pair of rows per decoupled block) for the quadrotor: `halfspaces(x)` returns $(A, b)$ for
# `project_polytope` of chapter 1.
#
# For the course's sets the two forms give the same safe set and the same projections, and (b)
# is several times faster per projection: the appendix measures both and explains why they agree
# ($X = X' \oplus W$). The course trains with (b) and keeps (a) as the reference.
#
# ## Verifying invariance
#
# Every step above relies on the RCI property, so it is checked numerically, not only proved.
# `verify_invariance` samples states in $X$ (vertices first: all of them in 2-D; for the 6-D
# set, the maximisers of 5,000 random directions), computes $\mathcal U_s(x)$ by
# the fast path, picks several safe actions per state (the interval ends or polygon vertices,
# projections of random actions, the centre), and checks that $Ax + Bu + c + w \in X$ for every
# vertex $w$ of $W$. For the pendulum it also steps the *nonlinear* simulator with every corner
# of the noise box, which tests the model-error bound {eq}`eq-pendulum-w` end to end.

# %%
n_verify = int(by_profile(ci=2_000, full=20_000))  # a sample to draw; the full check is below
noise_box = Zonotope.from_box([-0.1, -0.1], [0.1, 0.1])
start = time.perf_counter()
reports = [
    verify_invariance(pendulum_safe, n_states=n_verify, nonlinear_step=pendulum_step, noise=noise_box),
    verify_invariance(quadrotor_safe, n_states=n_verify),
]
print(f"verified in {time.perf_counter() - start:.1f} s")
for r in reports:
    print(f"{r.system:>9}: {r.n_states:,} states ({r.n_vertex_states:,} vertices), {r.n_actions:,} actions, "
          f"{r.n_transitions:,} + {r.n_nonlinear_transitions:,} next states; empty sets {r.n_empty}, "
          f"failures {r.n_failures} + {r.n_nonlinear_failures}; worst H z - h = {r.max_violation:.1e}")

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Numerical invariance check: sampled states of both RCI sets by outcome (left, centre) and what was checked (right). Every safe action of every sampled state leads, for every disturbance vertex, back into the set.", "name": "fig-verification"}, "image": {"alt": "Sampled states drawn inside the pendulum and quadrotor RCI sets, and a bar chart of checked states, actions and next states with zero failures"}}
fig, axes = plt.subplots(1, 3, figsize=(15, 4.3), gridspec_kw={"width_ratios": [1, 1, 1.3]})
plot_verification(reports[0], pendulum_rci.set, ax=axes[0])
axes[0].set_title("pendulum: sampled states by outcome")
plot_verification(reports[1], quad_stored.set, ax=axes[1], dims=(0, 2), labels=quad_labels[0:3:2])
axes[1].set_title(r"quadrotor: sampled states in the $(x, \dot x)$ view")
plot_verification_counts(reports, ax=axes[2])
axes[2].set_title("what was checked, and what failed")
plt.tight_layout()
plt.show()

# %% [markdown]
# No failures: every checked next state is inside the set (the worst facet value $Hz - h$
# printed above is at the level of floating-point rounding, against a tolerance of $10^{-9}$). The
# states are not uniform in the set: vertices first (for the 6-D quadrotor there are thousands,
# so a sample of up to a few thousand states holds vertices only), then samples $c + G\beta$,
# which crowd towards the centre, and random corners $c + G\sigma$. A sampling check is not
# a proof, but together with the certificate (an exact algebraic identity, checked in floating
# point) and the rigorous error bound it makes a mistake in the pipeline very unlikely to go
# unnoticed.
#
# The full check, $10^5$ states per system, was run with
# `python -m tutorial_rl.invariance_check --states 100000 --out results/invariance` and is
# loaded here with its provenance:

# %%
full_check = load_result("invariance")
print(full_check.describe())
for row in full_check.data:
    print(f"{row['system']:>9}: {row['n_states']:,} states ({row['n_vertex_states']:,} vertices), "
          f"{row['n_actions']:,} actions, {row['n_transitions']:,} + {row['n_nonlinear_transitions']:,} "
          f"next states; empty sets {row['n_empty']}, failures {row['n_failures']} + "
          f"{row['n_nonlinear_failures']}; worst H z - h = {row['max_violation']:.1e}")

# %% [markdown]
#
# ## Try it
#
# The widget sets the pendulum's state $(\theta, \dot\theta)$ and a torque $u$ with sliders and
# draws the RCI set with the next-state set $Ax + Bu \oplus W$: green while it stays inside
# (the torque is in $\mathcal U_s(x)$), red when it pokes out. It needs a running kernel; on
# this page the player below sweeps the torque from one limit to the other at three states, and
# the static figure after it shows the same states with the next-state sets of the two ends of
# the safe interval and of the two torque limits. An end that is not a torque limit is where the
# next-state set touches the boundary of the RCI set; one step further, it pokes out.

# %%
widget_states = np.array([[0.0, 1.0], [0.3, -1.0], [0.6, -3.0]])
for x in widget_states:
    lower, upper = pendulum_safe.safe_interval(x)
    print(f"x = {x}: safe torques [{lower[0]:.2f}, {upper[0]:.2f}] N m")

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Player: at three states the torque u sweeps from −8 to 8 N m. The next-state set Ax + Bu ⊕ W turns from red to green when u enters the safe interval and back to red when it leaves it.", "name": "fig-pendulum-player"}}
HTML(pendulum_torque_player(pendulum_safe, widget_states, np.linspace(-8.0, 8.0, 9)))

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Next-state sets Ax + Bu ⊕ W of the pendulum at three states, for the two torque limits and the two ends of the safe interval. Inside the RCI set (green) the torque is safe; poking out (red) it is not. An end of the interval that is not a torque limit is where the next-state set touches the boundary.", "name": "fig-next-state-sets"}, "image": {"alt": "Three panels of the pendulum RCI set with next-state parallelograms for four torques each"}}
fig, axes = plt.subplots(1, 3, figsize=(15, 4.8))
for ax, x in zip(axes, widget_states, strict=True):
    lower, upper = pendulum_safe.safe_interval(x)
    plot_next_state_sets(pendulum_safe, x, sorted({-8.0, lower[0], upper[0], 8.0}), ax=ax)
    ax.set_title(rf"$x = ({x[0]}, {x[1]})$: $\mathcal{{U}}_s = [{lower[0]:.2f}, {upper[0]:.2f}]$ N m", fontsize=10)
    ax.set_xlim(x[0] - 0.7, x[0] + 0.8)
    ax.set_ylim(x[1] - 2.6, x[1] + 2.2)
plt.tight_layout()
plt.show()

# %% tags=["remove-cell"]
# Live readers only (the static page shows the player above): sliders for θ, θ̇ and u.
from tutorial_rl.widgets import pendulum_safe_set_widget

pendulum_safe_set_widget(pendulum_safe)

# %% [markdown]
# (sec-bad-input)=
# ## Bad input
#
# Two things can go wrong, and both are reported rather than silently mishandled.
#
# **A state outside the RCI set.** There, no action need be safe. The fast path returns an
# empty polytope (every offset $-1$) that `is_empty` detects, the interval comes back with
# lower end above upper end, and the containment QP raises `EmptySafeActionSetError`. (The
# environments then apply their least-violating fallback action: see `fallback_action` in each
# environment's docstring, e.g. `help(tutorial_rl.envs.PendulumEnv)`.)

# %%
outside = np.array([0.5, 2.0])  # inside the state box, outside the RCI set
lower, upper = pendulum_safe.safe_interval(outside)
print("in the state box:", pendulum_rci.state_box.contains(outside), "| in the RCI set:", pendulum_safe.contains_state(outside),
      "| is_empty:", pendulum_safe.is_empty(outside), f"| interval [{lower[0]}, {upper[0]}]")
try:
    pendulum_safe.project_containment(outside, np.array([0.0]))
except EmptySafeActionSetError as error:
    print("EmptySafeActionSetError:", error)

# %% [markdown]
# **A problem with no RCI set.** If the disturbance is too large for the constraints (here
# pendulum noise of $\pm 2$ instead of $\pm 0.1$ on both states), no set of this form exists,
# and `compute_rci` says so instead of returning something unusable:

# %%
try:
    compute_rci(pendulum_linear_model(PendulumParameters(noise_bound=2.0)), horizon=4)
except RCISetInfeasibleError as error:
    print("RCISetInfeasibleError:", error)

# %% [markdown]
# ## Summary
#
# - A zonotope $\langle c, G\rangle$ is an affine image of a unit box. Linear maps and
#   Minkowski sums act on $(c, G)$ in closed form, and the support function is $d^\top c +
#   \lVert G^\top d\rVert_1$, so reachable sets of linear systems are cheap to write down.
# - The containment lemma {eq}`eq-containment` is linear in all the data, which is why the paper
#   can put it inside the projection problem; it is sufficient only (exact containment is
#   co-NP-complete). We found no 2-D case where it loses, but in 3-D it can lose a lot.
# - A robust control invariant set makes $\mathcal U_s(x)$ non-empty at every state it contains,
#   so the safeguard is recursively feasible. The package computes one by a single convex
#   program whose solution carries its own certificate controller; for the nonlinear pendulum
#   the linearization error is bounded over the set and added to $W$.
# - For these sets the paper's containment QP and the exact halfspace form give the same safe
#   set (coverage 1, because $X = X' \oplus W$) and the same projections; the halfspace form is
#   several times faster per projection (measured in the appendix, {doc}`a_rci`), and it batches. Numerical
#   verification found no failure.
#
# ## Exercises
#
# ```{exercise}
# :label: ex-support-sum
# Show that $h_{Z_1 \oplus Z_2}(d) = h_{Z_1}(d) + h_{Z_2}(d)$ for any two compact sets, and that
# $h_{MZ}(d) = h_Z(M^\top d)$. Check both with {eq}`eq-support` for the zonotopes `Z1`, `Z2`
# and the matrix `M` of this chapter.
# ```
#
# ````{solution} ex-support-sum
# :class: dropdown
# $\max_{a \in Z_1, b \in Z_2} d^\top(a + b) = \max_a d^\top a + \max_b d^\top b$ because the two
# maximisations are independent. And $\max_{z\in Z} d^\top Mz = \max_{z \in Z}(M^\top d)^\top z$.
# With {eq}`eq-support` the first is also visible directly: $\lVert[G_1\,G_2]^\top d\rVert_1 =
# \lVert G_1^\top d\rVert_1 + \lVert G_2^\top d\rVert_1$.
#
# ```python
# d = np.array([0.3, -1.2])
# print((Z1 + Z2).support(d), Z1.support(d) + Z2.support(d))
# print((M @ Z1).support(d), Z1.support(M.T @ d))
# ```
# ````
#
# ```{exercise}
# :label: ex-closure-proof
# Prove the two identities {eq}`eq-closure` as equalities of sets (both inclusions). Why does
# the Minkowski sum need the generators of *both* sets, while the linear map keeps their number?
# What is $\langle c, G\rangle \oplus \langle c, G\rangle$, and how would you describe it with
# only $p$ generators?
# ```
#
# ```{solution} ex-closure-proof
# :class: dropdown
# Linear map: $M(c + G\beta) = Mc + (MG)\beta$, so every point of $M\langle c, G\rangle$ is in
# $\langle Mc, MG\rangle$ with the same $\beta$, and every point $Mc + MG\beta$ of the latter is
# the image of $c + G\beta$. Minkowski sum: a point of the sum is $c_1 + G_1\beta_1 + c_2 +
# G_2\beta_2 = (c_1 + c_2) + [G_1\,G_2][\beta_1;\beta_2]$ with $\lVert[\beta_1;\beta_2]\rVert_\infty
# = \max(\lVert\beta_1\rVert_\infty, \lVert\beta_2\rVert_\infty) \le 1$; conversely split any
# $\beta$ of length $p_1 + p_2$ into its two parts. The sum needs independent coefficients for
# the two summands, hence both generator sets. $\langle c, G\rangle \oplus \langle c, G\rangle =
# \langle 2c, [G\,G]\rangle = \langle 2c, 2G\rangle$: parallel generators add up, so merging
# them is exact (`vertices_2d` does it internally). Order reduction, which replaces some
# non-parallel generators by a box, is only an outer approximation.
# ```
#
# ```{exercise}
# :label: ex-containment-hand
# Let $Z_1 = \langle (t, 0), \tfrac12 I\rangle$, a unit square centred at $(t, 0)$, and $Z_2 =
# \langle 0, \left[\begin{smallmatrix}1 & 1\\ 1 & -1\end{smallmatrix}\right]\rangle$, the square
# $|z_1| + |z_2| \le 2$ turned by 45°. Find $\Gamma$ and $\beta$ of the lemma by hand and the
# largest $t$ for which they prove containment. Is the answer exact? Check with `is_contained`.
# ```
#
# ````{solution} ex-containment-hand
# :class: dropdown
# $G_2$ is invertible with $G_2^{-1} = \tfrac12 G_2$, so $\Gamma = G_2^{-1}G_1 = \tfrac14
# \left[\begin{smallmatrix}1 & 1\\ 1 & -1\end{smallmatrix}\right]$ and $\beta = G_2^{-1}(0 -
# (t, 0)) = -\tfrac t2 (1, 1)$. Both rows have $|\Gamma_{j1}| + |\Gamma_{j2}| + |\beta_j| =
# \tfrac12 + \tfrac{|t|}2$, which is $\le 1$ iff $|t| \le 1$. This is exact: $Z_2$ is a
# parallelogram, so $\Gamma$ and $\beta$ are the only candidates, and directly, the corner $(t +
# \tfrac12, \tfrac12)$ satisfies $|z_1| + |z_2| \le 2$ iff $t \le 1$.
#
# ```python
# G2 = np.array([[1.0, 1.0], [1.0, -1.0]])
# for t in [0.9, 1.0, 1.1]:
#     Z1_t = Zonotope([t, 0.0], 0.5 * np.eye(2))
#     print(t, is_contained(Z1_t, Zonotope([0.0, 0.0], G2)), is_contained(Z1_t, Zonotope([0.0, 0.0], G2), method="vertices"))
# ```
# ````
#
# ```{exercise}
# :label: ex-why-rci
# Why does the safe action set require the next-state set to lie in the RCI set, and not just in
# the state box? Start the pendulum at $x = (1.5, 5)$, inside the state box, and simulate it with
# the strongest braking torque $u = -8$ N m (no noise) until it leaves the box. Then explain what
# would go wrong with a safeguard that only asked for $Ax + Bu \oplus W \subseteq \mathcal X$.
# ```
#
# ````{solution} ex-why-rci
# :class: dropdown
# ```python
# x = np.array([1.5, 5.0])
# for step in range(40):
#     x = pendulum_step(x, np.array([-8.0]))
#     if not pendulum_rci.state_box.contains(x):
#         print(f"left the box after {step + 1} steps at {x.round(2)}")
#         break
# ```
# The pendulum leaves the box after a few steps whatever torque is applied: the state is in the
# box, but not in any control invariant set. A safeguard that only kept the *next* state in the
# box would happily steer into such states (they satisfy its one-step test), and one step
# later it would find its safe action set empty. Requiring the next states to lie in an RCI set
# $S$ closes the loop: from every state of $S$ some action keeps the system in $S$, so the
# one-step test can be passed again at the next step, forever (recursive feasibility). This is
# also why $S$ must lie *inside* the state box: the guarantee "stay in $S$" is only worth
# something because $S \subseteq \mathcal X$.
# ````

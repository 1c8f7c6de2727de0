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
# # Appendix: computing the RCI sets
#
# Chapter 2 loads the robust control invariant (RCI) sets of the pendulum and the quadrotor from
# the package and uses them. This appendix shows where they come from: one convex program with a
# certificate controller ({prf:ref}`def-rci` recalls the definition), the bound on the
# pendulum's linearization error that enters its disturbance set, the quadrotor's computation run
# live, and the comparison of the two forms of the safe action set (coverage and timing).
#
# ```{admonition} Learning goals
# :class: tip
# After this appendix you can
# 1. state the convex program that computes an RCI set and why its solution is RCI (the
#    certificate controller);
# 2. bound a nonlinear model's linearization error and fold it into the disturbance set;
# 3. explain why the paper's containment form and the exact halfspace form give the same safe
#    action sets for these RCI sets, and what each costs.
# ```
#
# ```{admonition} Run this chapter
# :class: seealso
# This page shows the chapter as it ran when the book was built. To run it yourself, get
# {{ repository_link }}, run `make lab` (it installs everything into `.venv` and opens
# JupyterLab), and open `chapters/a_rci.py` as a notebook (right click, *Open With → Notebook*).
# Every cell can be edited and re-run there.
# ```

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import torch

from tutorial_rl.profile import by_profile
from tutorial_rl.projection import project_polytope
from tutorial_rl.sets import (
    build_rci,
    compute_rci,
    containment_coverage,
    load_rci,
    pendulum_safe_action_set,
    quadrotor_safe_action_set,
)
from tutorial_rl.sets.plotting import plot_state_box, plot_zonotope
from tutorial_rl.sets.rci_systems import direction_template
from tutorial_rl.sets.verification import zonotope_corners
from tutorial_rl.systems import Box, LinearSystem

# %% [markdown]
# ## One convex program
#
# The paper loads sets computed with the method of {cite:t}`schafer2023scalable`. This course
# computes its own with one convex program in `tutorial_rl.sets.rci`, in the spirit of
# parameterized RCI sets {cite:p}`rakovic2010parameterized` and zonotope scaling
# {cite:p}`mitchell2019invariant`. In deviation coordinates, with $W = \langle c_w, E\rangle$,
# a template $F_0 \in \mathbb R^{n\times f}$ and a horizon $h$, the decision variables are the
# scales $s \in \mathbb R^f$, a centre $\bar x$, a nominal input $\bar u$, feedback matrices
# $M_0, \dots, M_{h-1}$ and a terminal map $[\gamma, \Gamma']$. They define the candidate set
#
# $$
# T_0 = [E,\; F_0 \operatorname{diag}(s)], \qquad T_{i+1} = A T_i + B M_i, \qquad
# X = \langle \bar x, [T_0, T_1, \dots, T_{h-1}]\rangle,
# $$ (eq-rci-param)
#
# and the constraints are
#
# $$
# A\bar x + B\bar u + c_w - \bar x = F_0\gamma, \qquad A T_{h-1} + B M_{h-1} = F_0 \Gamma', \qquad
# |\gamma_j| + \textstyle\sum_k |\Gamma'_{jk}| \le s_j \;\; (j = 1, \dots, f),
# $$ (eq-rci-constraints)
#
# plus the state and input bounds written with the support function (e.g. $e_k^\top \bar x +
# \sum_i \lVert T_i^\top e_k\rVert_1$ at most the upper bound of state $k$, and the same for
# $\bar u$ and the $M_i$). The objective maximises the geometric mean of $s$, a proxy for the volume of $X$.
# Everything is linear except convex norm bounds, so cvxpy with Clarabel solves it in a
# fraction of a second.
#
# **Why the solution is RCI.** Every $x \in X$ can be written $x = \bar x + \sum_i T_i
# \zeta_i$ with $\lVert\zeta_i\rVert_\infty \le 1$. The **certificate controller** applies
# $u = \bar u + \sum_i M_i \zeta_i$, which respects the input bounds by construction. With $w =
# c_w + E\zeta_w$, the tube recursion shifts every generator one slot on, $A T_i + B M_i =
# T_{i+1}$, and the last one folds back into the template through $\Gamma'$:
#
# $$
# x^+ = \bar x + F_0(\gamma + \Gamma'\zeta_{h-1}) + E\zeta_w + \textstyle\sum_{i=0}^{h-2} T_{i+1}\zeta_i .
# $$
#
# The template part is $F_0 \operatorname{diag}(s)\,\eta$ with $\eta_j = (\gamma + \Gamma'
# \zeta_{h-1})_j / s_j \in [-1, 1]$ by the row-sum constraint, so $x^+ = \bar x + T_0
# [\zeta_w; \eta] + \sum_{i\ge1} T_i \zeta_{i-1} \in X$ for every $w$. The certificate is
# re-checked in floating point (`certificate_violations`) before `compute_rci` returns a set;
# if the program is infeasible it raises `RCISetInfeasibleError` instead (see
# {ref}`sec-bad-input`).
#
# A live example: a double integrator (position and velocity in $[-1, 1]$, acceleration in
# $[-1, 1]$, disturbance $\pm 0.01$), first with the box axes as template, then with six
# directions, which lets the set cut the corners where braking is impossible:

# %%
dt = 0.1
double_integrator = LinearSystem(
    name="double integrator", A=np.array([[1.0, dt], [0.0, 1.0]]), B=np.array([[0.5 * dt**2], [dt]]),
    c=np.zeros(2), D=np.eye(2), state_box=Box([-1.0, -1.0], [1.0, 1.0]), input_box=Box([-1.0], [1.0]),
    disturbance_box=Box([-0.01, -0.01], [0.01, 0.01]), x_eq=np.zeros(2), u_eq=np.zeros(1), dt=dt)
start = time.perf_counter()
di_box = compute_rci(double_integrator, horizon=5)
di_six = compute_rci(double_integrator, horizon=5, template=direction_template(np.ones(2), 6))
print(f"two RCI programs solved in {time.perf_counter() - start:.2f} s (wall, incl. cvxpy setup)")
for name, rci in (("box template", di_box), ("6 directions", di_six)):
    print(f"{name:>12}: {rci.set.n_generators} generators, {rci.volume_ratio():.0%} of the state box, "
          f"solver {1e3 * rci.solve_time:.1f} ms")

# %% [markdown]
# The certificate controller in action: at a vertex $x = \bar x + G\sigma$ of the set ($\sigma$
# a sign vector, so the $\zeta_i$ are blocks of $\sigma$) it applies $\bar u + \sum_i M_i\sigma_i$,
# and every corner of $W$ lands inside $X$:

# %%
X_di = di_six.set
sigmas = np.sign(np.random.default_rng(2).normal(size=(500, 2)) @ X_di.generators)  # sign(Gᵀd): vertices
vertices = X_di.center + sigmas @ X_di.generators.T
inputs = di_six.controller.input_for(sigmas)
next_states = (vertices @ double_integrator.A.T + inputs @ double_integrator.B.T)[:, None, :] + zonotope_corners(di_six.disturbance)
print(f"{len(np.unique(vertices.round(9), axis=0))} distinct vertices, inputs in [{inputs.min():.2f}, {inputs.max():.2f}], "
      f"all next states inside: {bool(np.all(X_di.contains_point(next_states.reshape(-1, 2))))}")

# %% tags=["hide-input"] mystnb={"figure": {"caption": "RCI sets of a double integrator computed by compute_rci: with a box template (orange) and with six directions (blue), which cuts the corners of the state box where braking in time is impossible. Black dots: vertices at which the certificate controller was checked.", "name": "fig-double-integrator-rci"}, "image": {"alt": "Position-velocity plane with the dashed state box and two nested RCI sets; the six-direction set has its upper-right and lower-left corners cut"}}
fig, ax = plt.subplots(figsize=(8, 4.5))
plot_state_box(double_integrator.state_box, ax=ax)
plot_zonotope(di_box.set, ax=ax, alpha=0.25, facecolor="tab:orange", edgecolor="tab:orange", label="RCI set, box template")
plot_zonotope(di_six.set, ax=ax, alpha=0.2, label="RCI set, 6 directions")
ax.scatter(*vertices.T, s=10, color="k", zorder=3, label="vertices (certificate checked)")
ax.set_xlabel("position")
ax.set_ylabel("velocity")
ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
ax.set_title("Double integrator: RCI sets from compute_rci")
plt.show()

# %% [markdown]
# The missing corners of the box are real: at position $0.9$ moving right at $0.9$ no
# admissible acceleration stops the mass before $x = 1$, so those states cannot be in any RCI
# set.

# %% [markdown]
# ## The pendulum's model error
#
# The pendulum's simulator is *nonlinear* (chapter 3), while the RCI set is computed for the
# exact discretization of its linearization about the upright position, $x^+ = A_d x + B_d u$.
# The difference between the two must be treated as part of the disturbance, with a rigorous
# bound. `tutorial_rl.sets.rci_systems` writes the simulator (semi-implicit Euler, $a =
# 3g/(2l)$) exactly as its own linearization $A_e x + B_e u$ plus the remainder $a\,dt\,[dt,
# 1]^\top(\sin\theta - \theta)$, so that
#
# $$
# f(x, u) + w - (A_d x + B_d u) = (A_e - A_d)x + (B_e - B_d)u + a\,dt\,[dt, 1]^\top(\sin\theta - \theta) + w .
# $$
#
# On a box $|\theta| \le \rho_\theta$, $|\dot\theta| \le \rho_\omega$ each term lies in a
# zonotope: $(A_e - A_d)x \in \langle 0, (A_e - A_d)\operatorname{diag}(\rho_\theta,
# \rho_\omega)\rangle$, $(B_e - B_d)u \in \langle 0, 8(B_e - B_d)\rangle$, and, since $\theta -
# \sin\theta$ is odd and increasing, $|\sin\theta - \theta| \le \rho_\theta - \sin\rho_\theta$
# (tighter than the Taylor bound $\rho_\theta^3/6$). So
#
# $$
# W = [-0.1, 0.1]^2 \oplus \langle 0, 8(B_e - B_d)\rangle \oplus \langle 0, (A_e - A_d)\operatorname{diag}(\rho_\theta, \rho_\omega)\rangle
# \oplus \langle 0,\, a\,dt\,[dt, 1]^\top(\rho_\theta - \sin\rho_\theta)\rangle .
# $$ (eq-pendulum-w)
#
# The bound depends on the set (through $\rho$, the half-widths of its interval hull) and the
# set depends on the bound. The package solves this fixed point inside the same convex program:
# $\rho$ is a variable bounded below by the set's own hull, and $\rho - \sin\rho$ enters through
# a convex piecewise-linear upper bound. The stored $W$ re-evaluates the exact
# $\rho_\theta - \sin\rho_\theta$ at the final hull. The numbers:

# %%
pendulum_rci = load_rci("pendulum")
d = pendulum_rci.diagnostics
rho_theta, rho_omega = d["hull_radius"]
print(f"interval hull of the RCI set: |θ| <= {rho_theta:.3f} rad, |θ̇| <= {rho_omega:.3f} rad/s "
      f"(state box: |θ| <= 2, |θ̇| <= 6.5)")
print(f"ρ_θ - sin ρ_θ = {rho_theta - np.sin(rho_theta):.4f}  (Taylor bound ρ³/6 = {rho_theta**3 / 6:.4f})")
print(f"W: {pendulum_rci.disturbance.n_generators} generators, interval hull ±{pendulum_rci.disturbance.interval_hull()[1].round(3)} "
      f"(the noise alone: ±[0.1 0.1])")
print(f"RCI set: {pendulum_rci.set.n_generators} generators, area {pendulum_rci.set.volume():.2f}, "
      f"{pendulum_rci.volume_ratio():.1%} of the state box")
start = time.perf_counter()
rebuilt = build_rci("pendulum")
print(f"rebuilt live in {time.perf_counter() - start:.2f} s (solver {1e3 * rebuilt.solve_time:.0f} ms); "
      f"max |generator difference| to the stored set {np.abs(rebuilt.set.generators - pendulum_rci.set.generators).max():.1e}")

# %% [markdown]
# ## The quadrotor, live
#
# The quadrotor's six states split into a lateral and a vertical block that share only the thrust
# box; `build_rci` keeps them decoupled and refines the lateral template over a few rounds:

# %%
quad_stored = load_rci("quadrotor")
start = time.perf_counter()
quad_live = build_rci("quadrotor")
wall = time.perf_counter() - start
print(f"build_rci('quadrotor'): {wall:.1f} s wall for {len(quad_live.diagnostics['refinement_volume_ratios'])} "
      f"template rounds, final solve {1e3 * quad_live.solve_time:.0f} ms (Clarabel)")
print(f"max |generator difference| to the stored set: {np.abs(quad_live.set.generators - quad_stored.set.generators).max():.1e}")

# %% [markdown]
# ## The two forms of the safe action set, compared
#
# Chapter 2 ({ref}`sec-two-forms`) writes $\mathcal U_s(x)$ in the paper's containment form (a)
# and in the exact halfspace form (b).
# How much of the exact set (b) does the sufficient form (a) keep? `containment_coverage`
# divides the length (pendulum) or area (quadrotor; inner polygon from 32 support directions)
# of (a) by that of (b) at sampled states. And both projections of random proposals:

# %%
pendulum_safe, quadrotor_safe = pendulum_safe_action_set(), quadrotor_safe_action_set()
rng = np.random.default_rng(4)
for safe_set, n_cov, spread in ((pendulum_safe, by_profile(ci=20, full=500), 4.0), (quadrotor_safe, by_profile(ci=6, full=100), 1.0)):
    states = safe_set.X.sample(int(n_cov), rng)
    coverage = containment_coverage(safe_set, states)
    mid, half = (safe_set.input_box.upper + safe_set.input_box.lower) / 2, (safe_set.input_box.upper - safe_set.input_box.lower) / 2
    proposals = rng.uniform(mid - (1 + spread) * half, mid + (1 + spread) * half, size=(len(states), safe_set.n_inputs))
    A, b = safe_set.halfspaces(states)
    fast = np.stack([project_polytope(torch.as_tensor(proposals[i:i + 1]), torch.as_tensor(A[i]), torch.as_tensor(b[i]))[0].numpy() for i in range(len(states))])
    reference = safe_set.project_containment(states, proposals)
    print(f"{safe_set.rci.system:>9}: coverage over {len(states)} states: min {coverage.minimum:.6f}, mean {coverage.mean:.6f}; "
          f"max |Φ_containment - Φ_halfspaces| = {np.abs(fast - reference).max():.1e} "
          f"({int(np.any(np.abs(fast - proposals) > 1e-9, axis=1).sum())} of {len(states)} proposals moved)")

# %% [markdown]
# And the time for one projection each way (one state, one proposal, on this machine):

# %%
repeats = int(by_profile(ci=20, full=200))
for safe_set in (pendulum_safe, quadrotor_safe):
    x = safe_set.X.center
    u_tilde = safe_set.input_box.upper + 1.0
    start = time.perf_counter()
    for _ in range(repeats):
        safe_set.project_containment(x, u_tilde)
    t_qp = (time.perf_counter() - start) / repeats
    start = time.perf_counter()
    for _ in range(repeats):
        A, b = safe_set.halfspaces(x)
        project_polytope(torch.as_tensor(u_tilde[None]), torch.as_tensor(A), torch.as_tensor(b))
    t_fast = (time.perf_counter() - start) / repeats
    print(f"{safe_set.rci.system:>9}: containment QP (cvxpy + Clarabel) {1e3 * t_qp:6.2f} ms, "
          f"halfspaces + exact projection {1e3 * t_fast:5.2f} ms ({t_qp / t_fast:.0f}x)")

# %% [markdown]
# The two forms agree to solver tolerance: coverage $1$ and the same projections. That is not
# luck, and it would not hold for an arbitrary RCI set. By {eq}`eq-rci-param` the first
# generators of $X$ are those of $W$ itself ($T_0 = [E, \dots]$; for the pendulum, the
# model-error generators enter with a designed size at least as large as the stored one), so
# $X = X' \oplus W$ with $X' = \langle c_X - c_W, G'\rangle$ and $G'$ the remaining
# generators. In the lemma, $\Gamma$ can then pick $W$'s generators one for one (an identity
# block, row sums $\le 1$), and what is left of {eq}`eq-containment` says $Ax + Bu + c \in X'$.
# For convex compact sets $(X' \oplus W) \ominus W = X'$ (with $\ominus$ the Minkowski
# difference), so this is exactly the condition $Ax + Bu + c \in X \ominus W$ of the halfspace
# form. For an RCI set from another method (or a $W$ that is not among $X$'s
# generators), the containment form can be strictly smaller than $\mathcal U_s(x)$, as the cube
# example of chapter 2 showed can happen.
#
# Speed is the other difference: the containment QP has $p_X(p_W + 1)$ auxiliary variables
# (140 × 7 for the pendulum) and costs a conic solve per state; the halfspace form costs one
# product with the precomputed facet matrix and the small exact projection of chapter 1. The
# course trains with (b) and keeps (a) as the reference; the SP-RL chapters return to what each does to gradients.
#
# ## Exercises
#
# ```{exercise}
# :label: ex-rci-braking
# For the double integrator above ($dt = 0.1$, acceleration in $[-1, 1]$, no disturbance), show
# that full braking from velocity $v = 0.1\,n > 0$ travels exactly $v^2/2$ before the mass stops,
# and conclude that no state with $x + v^2/2 > 1$ can belong to any RCI set. Check that
# $(0.9, 0.9)$ is such a state and that `di_six.set` excludes it.
# ```
#
# ````{solution} ex-rci-braking
# :class: dropdown
# With $u = -1$ the velocity drops by $dt = 0.1$ per step, so after $n$ steps it is zero, and
# step $j$ (from velocity $v_j = 0.1\,j$, $j = n, \dots, 1$) moves the mass by $dt\,v_j -
# \tfrac12 dt^2 = 0.01\,j - 0.005$. The sum is $0.01\,n(n+1)/2 - 0.005\,n = 0.005\,n^2 = v^2/2$,
# the continuous-time stopping distance: the model is the exact discretization of a constant
# acceleration. No admissible input brakes harder, so from $x + v^2/2 > 1$ every input sequence
# leaves the state box, and an RCI set (a subset of the box from which some input keeps the state
# in the set forever) cannot contain the state. At $(0.9, 0.9)$: $0.9 + 0.405 = 1.305 > 1$.
#
# ```python
# print(di_six.set.contains_point(np.array([[0.9, 0.9]])))  # [False]
# ```
# ````
#
# ```{exercise}
# :label: ex-rci-inputs
# The certificate controller $u = \bar u + \sum_i M_i \zeta_i$ "respects the input bounds by
# construction". Which constraints of the program make that true, written with the support
# function?
# ```
#
# ```{solution} ex-rci-inputs
# :class: dropdown
# Over all $\lVert\zeta_i\rVert_\infty \le 1$, the largest value of the $k$-th input is the support
# function of the zonotope $\langle \bar u, [M_0, \dots, M_{h-1}]\rangle$ in direction $e_k$:
# $e_k^\top \bar u + \sum_i \lVert M_i^\top e_k\rVert_1$. The program bounds it by the upper input
# bound, and $-e_k^\top \bar u + \sum_i \lVert M_i^\top e_k\rVert_1$ by minus the lower one. Both
# are convex (a norm plus a linear term at most a constant), and together they say that every
# input the controller can apply, at every point of $X$, is in the input box.
# ```
#
# ```{exercise}
# :label: ex-rci-horizon
# Recompute the double integrator's RCI set with horizons 1, 2, 5, 10 and 20, with the box
# template and with six directions. How do the share of the state box and the number of
# generators change? Why is the box template infeasible at short horizons, and why can a longer
# horizon give a *smaller* set?
# ```
#
# ````{solution} ex-rci-horizon
# :class: dropdown
# ```python
# from tutorial_rl.sets.rci import RCISetInfeasibleError
# for horizon in (1, 2, 5, 10, 20):
#     for name, template in (("box", None), ("6 directions", direction_template(np.ones(2), 6))):
#         try:
#             rci = compute_rci(double_integrator, horizon=horizon, template=template)
#             print(horizon, name, f"{rci.volume_ratio():.2f}", rci.set.n_generators)
#         except RCISetInfeasibleError:
#             print(horizon, name, "infeasible")
# ```
# With the box template, horizons 1 and 2 are infeasible: the set is then close to a box, and a
# box's corners (far right, moving right) cannot be stopped (exercise {ref}`ex-rci-braking`); from
# horizon 5 the generators $T_i = A T_{i-1} + B M_{i-1}$ shear the set and cut those corners
# (about 23 % of the box at horizon 5, 50 % at 10, 62 % at 20). Six directions cut them directly
# and give 71-81 % at every horizon up to 10. The generators grow linearly with the horizon (8, 16,
# 40, 80, 160 with six directions), and with them the rows of $\mathcal U_s(x)$ and the cost of
# every projection. A longer horizon is not monotonically better (six directions: 0.80 at 10,
# 0.58 at 20) because the program maximises the geometric mean of the template scales $s$, a
# proxy for the volume, not the volume itself; the other generators enter the volume but not the
# objective.
# ````

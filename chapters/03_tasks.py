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
# # Three safety-critical tasks
#
# The paper evaluates SE-RL and SP-RL on three tasks {cite:p}`markgraf2026safeguard`. Two are
# *stabilization* tasks, a pendulum and a 2-D quadrotor, where staying safe and doing the task
# well point the same way: the best thing to do is stay near the equilibrium, deep inside the safe
# set. The third, the *seeker*, is a navigation task where they conflict: an obstacle always
# stands between the agent and its goal, so the fastest path grazes the boundary of what is safe.
# This chapter introduces the three tasks as ordinary gymnasium environments, shows their safe
# action sets along trajectories, and puts the projection safeguard of chapter 1 in front of them.
#
# ```{admonition} Learning goals
# :class: tip
# After this chapter you can
# 1. create each task with `gymnasium.make` and read its state, action, reward and episode end;
# 2. say where each task's safe action set comes from (an invariant set of the dynamics, or a
#    braking-distance argument) and what it looks like along a trajectory;
# 3. wrap any task in `ProjectionSafeguard` and read what it reports (`unsafe_action`,
#    `safe_action`, `intervened`, `projection_distance`);
# 4. use the wrapped tasks with any RL library, and know what the safeguard costs per step.
# ```
#
# ```{admonition} Run this chapter
# :class: seealso
# This page shows the chapter as it ran when the book was built. To run it yourself, get
# {{ repository_link }}, run `make lab` (it installs everything into `.venv` and opens
# JupyterLab), and open `chapters/03_tasks.py` as a notebook (right click, *Open With → Notebook*).
# Every cell can be edited and re-run there, and the interactive widgets respond.
# ```

# %%
import gymnasium as gym
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import HTML

import tutorial_rl  # noqa: F401  (registers the three environments)
from tutorial_rl.envs.seeker import greedy_goal_policy
from tutorial_rl.profile import by_profile
from tutorial_rl.results import load_result
from tutorial_rl.safeguards import ProjectionSafeguard
from tutorial_rl.safety_check import safety_table
from tutorial_rl.sets import load_rci, plot_zonotope
from tutorial_rl.task_plots import (
    animation_html,
    filmstrip,
    plot_safe_actions_along,
    plot_safe_interval,
    plot_safety_counts,
    plot_seeker_map,
    quadrotor_filmstrip,
    rollout,
    seconds_per_step,
)

TASKS = {
    "pendulum": "tutorial_rl/Pendulum-v0",
    "quadrotor": "tutorial_rl/Quadrotor2D-v0",
    "seeker": "tutorial_rl/Seeker-v0",
}

# %% [markdown]
# ## The tasks at a glance
#
# Importing `tutorial_rl` registers the tasks with gymnasium, so they are created like any other
# environment. All three act in a normalised action box $[-1, 1]^m$ and convert to physical units
# inside (the torque is $8a$ N·m; each rotor's thrust is $7.716 + 0.881\,a$ N, so $a = 0$ hovers),
# which is what RL libraries expect; the conversion is the same scale on every component, so the
# closest safe action is the same whichever units it is computed in.

# %%
for name, env_id in TASKS.items():
    env = gym.make(env_id)
    print(f"{name:>9}: observation {env.observation_space.shape}, action {env.action_space}, "
          f"episode length {env.spec.max_episode_steps}")

# %% [markdown]
# | Task | State (observation) | Action | Reward per step | Safe action set from |
# |---|---|---|---|---|
# | Pendulum | $[\theta, \dot\theta]$, upright at $\theta = 0$ | torque | $-(\theta^2 + 0.1\dot\theta^2 + 0.001u^2)$ | an RCI set of the dynamics (chapter 2) |
# | 2-D quadrotor | $[x, z, \dot x, \dot z, \theta, \dot\theta]$ | two rotor thrusts | $-1 + \exp(-\lVert x - x_{eq}\rVert - 0.01\,\overline{\lvert a\rvert})$ | an RCI set of the dynamics (chapter 2) |
# | Seeker | position, velocity, goal, 3 obstacles $(x, y, r)$ | 2-D acceleration | $-1 + \exp(-d_{goal}/10)$ | braking distances to walls and obstacles |
#
# The pendulum and the quadrotor are disturbed at every step (bounded uniform noise on the
# pendulum's state, a one-sided wind on the quadrotor's accelerations), drawn from the
# environment's seeded generator, so the same seed gives the same episode. Their episodes start at
# a random state *inside the RCI set*, where a safe action is guaranteed to exist forever, and run
# for 200 steps, or end early if the state leaves its limits (which the safeguard prevents). A seeker episode draws a new layout (goal at least 5 away, one obstacle on the
# straight line to it), ends at the goal, on a collision, or after 100 steps. The full
# specification of each task is in its docstring, e.g. `help(tutorial_rl.envs.SeekerEnv)`.
#
# ```{admonition} What is the paper's and what is ours
# :class: note
# - **Pendulum.** The simulator uses $\ddot\theta = \tfrac{3g}{2\ell}\sin\theta +
#   \tfrac{3}{m\ell^2}u$, the uniform rod of gym's Pendulum and of the paper's code. The paper's
#   eq. 53 writes the point mass, $\tfrac{g}{\ell}\sin\theta + \tfrac{1}{m\ell^2}u$. We follow
#   the code, since that is what produced the paper's results.
# - **Quadrotor.** The model is linear, and we simulate it with the exact zero-order-hold
#   discretisation, for which the RCI set is computed. The paper's appendix A.8.2 discretises it
#   with explicit Euler instead. The two differ most in the stiff attitude loop, whose discrete
#   poles the next cell prints, so our quadrotor is close to the paper's but not identical with it.
# ```

# %%
from scipy.linalg import expm

from tutorial_rl.envs.quadrotor import PARAMS as QUAD
from tutorial_rl.systems.quadrotor import quadrotor_continuous_model

attitude = quadrotor_continuous_model(QUAD)[0][4:, 4:]  # (θ, θ̇): θ̈ = -d0 θ - d1 θ̇
print("attitude poles, zero-order hold (ours):", np.sort(np.linalg.eigvals(expm(attitude * QUAD.dt)).real).round(3))
print("attitude poles, explicit Euler (paper):", np.sort(np.linalg.eigvals(np.eye(2) + QUAD.dt * attitude).real).round(3))

# %% [markdown]
#
# ## The pendulum
#
# A random policy behind the safeguard, rendered every step (the orange bar is the applied torque):

# %%
pendulum = rollout(TASKS["pendulum"], steps=200, seed=1, render=True)
print(f"return {pendulum.rewards.sum():.1f}, interventions {pendulum.interventions} "
      f"of {len(pendulum.rewards)} steps, violations {pendulum.violations.sum()}")

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Six frames of a pendulum episode under uniformly random torques behind the safeguard; the orange bar is the applied torque. The pendulum never falls.", "name": "fig-pendulum-filmstrip"}, "image": {"alt": "Six snapshots of an inverted pendulum staying near upright"}}
filmstrip(pendulum.frames, count=6, title="Pendulum, random policy behind the safeguard")
plt.show()

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Player: the first 80 steps of the same episode (press play, or step through with the buttons).", "name": "fig-pendulum-episode-player"}, "image": {"alt": "Animation of the pendulum episode"}}
HTML(animation_html(pendulum.frames[:80], fps=20))

# %% [markdown]
# The safe set of a 1-D action is an interval. It moves with the state: when the pendulum leans
# and swings further out, only torques that push it back are safe, and the interval shrinks to
# one side of zero. Behind the safeguard every proposed torque outside the interval is replaced by
# the nearest end of the interval:

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Left: the safe torque interval along the episode, with the proposed (random) and applied torques; the safeguard replaces every proposal outside the interval by its nearest end. Right: the trajectory in the phase plane never leaves the RCI set.", "name": "fig-pendulum-interval"}, "image": {"alt": "Left, a band of safe torques over time with proposed and applied torques; right, the pendulum's trajectory inside its RCI set"}}
fig, axes = plt.subplots(1, 2, figsize=(13, 3.8), gridspec_kw={"width_ratios": [2.2, 1]})
plot_safe_interval(pendulum, ax=axes[0])
axes[0].set_title("Safe torque interval along the episode", loc="left")
plot_zonotope(load_rci("pendulum").set, ax=axes[1], alpha=0.3, label="RCI set")
axes[1].plot(pendulum.observations[:, 0], pendulum.observations[:, 1], ".-", color="0.3",
             markersize=2, linewidth=0.6, label="trajectory")
axes[1].set_xlabel(r"$\theta$")
axes[1].set_ylabel(r"$\dot\theta$")
axes[1].set_title("The state never leaves the RCI set")
axes[1].legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## The 2-D quadrotor
#
# The quadrotor of {cite:t}`stolz2024excluding` flies in the vertical $x$-$z$ plane, tilting by
# $\theta$ and pushed sideways by its tilt and by the wind. With two rotors its safe action set is
# a polygon in the plane of the two (normalised) thrusts. Along a random episode it changes shape
# and position, but it always contains some thrust pair:

# %%
quadrotor = rollout(TASKS["quadrotor"], steps=200, seed=2, render=True)
print(f"return {quadrotor.rewards.sum():.1f}, interventions {quadrotor.interventions} "
      f"of {len(quadrotor.rewards)} steps, violations {quadrotor.violations.sum()}")

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Six steps of a 2-D quadrotor episode under random thrusts behind the safeguard, each drawn in a window of ±0.8 m around the vehicle: body (blue), rotor thrusts (orange arrows, longer is stronger), hover target (green cross), ground (black). It drifts and tilts but never crashes.", "name": "fig-quadrotor-filmstrip"}, "image": {"alt": "Six snapshots of a planar quadrotor"}}
quadrotor_filmstrip(quadrotor, count=6, title="2-D quadrotor, random policy behind the safeguard")
plt.show()

# %% tags=["hide-input"] mystnb={"figure": {"caption": "The quadrotor's safe set of normalised thrust pairs (u₁, u₂) at five steps of the episode: it changes shape and position with the state, but is never empty.", "name": "fig-quadrotor-safe-along"}, "image": {"alt": "Five polygons of safe thrust pairs at five time steps"}}
plot_safe_actions_along(quadrotor, steps=[0, 40, 80, 120, 160])
plt.suptitle(r"Safe (normalised) thrust pairs $(u_1, u_2)$ at five steps of the episode")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## The seeker
#
# The seeker is a point mass that accelerates in two directions, $|u_i| \le 1$, with $v \leftarrow
# v + u$ and $p \leftarrow p + v$ every step. It cannot stop at once, so a safe action is one after
# which it *can still stop* before every wall and obstacle. The environment builds that set from
# the box the agent sweeps while braking at full deceleration: an action is safe if, after it, the
# braking box of the next state stays inside the walls and on the far side of a tangent line to
# every (inflated) obstacle. Braking always shrinks that box, so braking is always safe, and the set
# is never empty along a safeguarded trajectory. The construction is in
# `tutorial_rl.envs.seeker.safe_action_set`:
#
# ```{literalinclude} ../src/tutorial_rl/envs/seeker.py
# :pyobject: stopping_distance
# ```
#
# A policy that heads straight for the goal shows the conflict between task and safety: it is
# slowed, bent around the obstacle in its way, and the polygon of safe accelerations is cut by the
# obstacle's halfspace whenever the agent comes close.

# %%
go_to_goal = greedy_goal_policy  # accelerate towards the goal, damping the velocity; no planning
seeker = rollout(TASKS["seeker"], policy=go_to_goal, steps=100, seed=12, render=True)
print(f"{len(seeker.rewards)} steps, return {seeker.rewards.sum():.1f}, "
      f"interventions {seeker.interventions}, violations {seeker.violations.sum()}")

# %% tags=["hide-input"] mystnb={"figure": {"caption": "The seeker heading greedily for the goal behind the safeguard. Left: walls, obstacles, goal and the path taken. Right: the safe accelerations at three steps, cut by an obstacle's halfspace whenever the agent comes close.", "name": "fig-seeker"}, "image": {"alt": "Map of the seeker task with its path, and three polygons of safe accelerations"}}
fig = plt.figure(figsize=(13, 4.2))
map_ax = fig.add_subplot(1, 4, 1)
plot_seeker_map(seeker.observations[0], ax=map_ax, trajectory=seeker.observations[:, 0:2])
map_ax.set_title("Layout and path")
steps = np.linspace(0, len(seeker.rewards) - 1, 3).round().astype(int).tolist()
plot_safe_actions_along(seeker, steps=steps, axes=[fig.add_subplot(1, 4, i) for i in (2, 3, 4)])
plt.tight_layout()
plt.show()

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Player: the seeker episode step by step.", "name": "fig-seeker-player"}, "image": {"alt": "Animation of the seeker episode"}}
HTML(animation_html(seeker.frames, fps=8))

# %% [markdown]
# **Yardsticks for every score.** This go-to-goal policy is the seeker's *reference controller*
# (PD-to-goal); the pendulum and the quadrotor get an LQR of their own linear models
# (`tutorial_rl.controllers`). Behind the safeguard, with the evaluation protocol of chapter 8,
# they score as follows, next to the zero action that does nothing. Chapter 8 reads every RL score
# against these two numbers; {ref}`appendix-tuning` says how they are computed.

# %%
reference = load_result("reference").data
for task, entry in reference.items():
    print(f"{task:9s}  zero action {entry['zero']['mean']:8.2f}   "
          f"{entry['controller']['name']:10s} {entry['controller']['mean']:8.2f}")

# %% [markdown]
# ## A random policy with and without the safeguard
#
# The safeguard's promise is that *no* action, however bad, leads to a constraint violation. The
# test is the least intelligent policy there is: actions drawn uniformly from the action box, with
# the disturbances on. Each environment reports `info["constraint_violation"]` from its physical
# state (outside the RCI set or the state limits; a collision with an obstacle or a wall),
# independently of whether a safeguard is used. A short run, live:

# %%
live_rows = safety_table(steps=int(by_profile(ci=1_000, full=20_000)), seed=0)
for row in live_rows:
    print(f"{row['env_id']:>28} safeguard={row['safeguard']!s:5} steps={row['steps']} "
          f"violations={row['violations']:>5} interventions={row['interventions']:>5}")

# %% [markdown]
# The full experiment, $10^5$ steps per task and setting, was run with
# `python -m tutorial_rl.safety_check --steps 100000 --out results/safety` and is loaded here
# with its provenance:

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Uniformly random actions for 10⁵ steps per task: constraint violations without the safeguard, none with it (from results/safety, provenance printed below).", "name": "fig-safety-counts"}, "image": {"alt": "Bar chart of constraint violations per task with and without the safeguard"}}
full = load_result("safety")
plot_safety_counts(full.data)
plt.title("Uniformly random actions: constraint violations")
plt.show()
print(full.describe())
for row in full.data:
    print(f"{row['env_id']:>28} safeguard={row['safeguard']!s:5} violations={row['violations']:>6} "
          f"interventions={row['interventions']:>6} episodes={row['episodes']:>5}")

# %% [markdown]
# Zero violations with the safeguard, on every task, over $3 \times 10^5$ random steps; tens of
# thousands without it. The safeguard intervenes on roughly half of the random actions, far more
# often than it will for a trained agent, which learns to propose mostly safe actions.
#
# ## Using the safeguard with any agent
#
# `ProjectionSafeguard` is a `gymnasium.Wrapper`. It reads the current safe set from the
# environment (`env.unwrapped.safe_action_set()`, a polytope $\{a : Aa \le b\}$ in the normalised
# action space), projects the agent's action onto it with `project_polytope`, and passes the safe
# action on. The action space the agent sees is unchanged, so any library that trains on a
# gymnasium environment trains on the wrapped one: this is SE-RL, the safeguard in the
# environment. With `penalty=α` the reward becomes $r - \alpha\lVert \tilde u - u\rVert^2$, the
# SE-RL mitigation of chapter 7.

# %%
env = ProjectionSafeguard(gym.make(TASKS["seeker"]), penalty=0.1)
obs, _ = env.reset(seed=12)
for step in range(100):  # accelerate towards the goal at full power until the safeguard steps in
    unsafe = np.sign(obs[4:6] - obs[0:2])
    obs, reward, terminated, truncated, info = env.step(unsafe)
    if info["intervened"] or terminated or truncated:
        break
print(f"step {step}: intervened={info['intervened']}, unsafe_action={info['unsafe_action']}, "
      f"safe_action={info['safe_action'].round(3)}, "
      f"projection_distance={info['projection_distance']:.3f}")

vector_env = gym.make_vec(TASKS["seeker"], num_envs=4, vectorization_mode="sync",
                          wrappers=[ProjectionSafeguard])
observations, _ = vector_env.reset(seed=0)
observations, rewards, *_ = vector_env.step(vector_env.action_space.sample())
print("vectorised:", observations.shape, rewards.round(3))

# %% [markdown]
# An off-the-shelf agent needs nothing more. With Stable-Baselines3, for instance (not a
# dependency of the course; `pip install stable-baselines3`):
#
# ```python
# from stable_baselines3 import TD3
# model = TD3("MlpPolicy", ProjectionSafeguard(gym.make("tutorial_rl/Pendulum-v0")))
# model.learn(10_000)
# ```
#
# ### What the safeguard costs per step
#
# The projection runs on every step, so its cost matters. Measured here, side by side with the
# environment's own step (random actions; `benchmarks/safeguard_step.py` does this more carefully):

# %%
timing_steps = int(by_profile(ci=200, full=2_000))
for name, env_id in TASKS.items():
    plain = seconds_per_step(gym.make(env_id), timing_steps)
    guarded = seconds_per_step(ProjectionSafeguard(gym.make(env_id)), timing_steps)
    print(f"{name:>9}: env.step {1e6 * plain:6.0f} µs, safeguarded step {1e6 * guarded:6.0f} µs "
          f"({guarded / plain:.1f}x)")

# %% [markdown]
# A few hundred microseconds per step, almost all of it the fixed overhead of one small PyTorch
# call; a neural-network update of an off-policy agent costs more than that. The projection of a
# whole *batch* of actions, which SP-RL needs in every update, costs a small multiple of one
# action's: a batch of 256 about as much as one action for the pendulum's 1-D actions, two to four
# times as much for 2-D ones (`python benchmarks/projection.py` prints B = 1 against B = 256).
#
# ## Summary
#
# - The pendulum and the quadrotor are stabilization tasks whose safe action sets come from a
#   robust control invariant set: an interval of torques, a polygon of thrust pairs.
# - The seeker's safe accelerations keep a braking manoeuvre possible; the obstacle between start
#   and goal makes the task's best actions unsafe, so the agent must learn to work along the
#   boundary of the safe set.
# - Behind `ProjectionSafeguard` even a random policy never violates a constraint; without it, it
#   does so thousands of times. The wrapper works with any gymnasium-compatible agent.
#
# ## Exercises
#
# ```{exercise}
# :label: ex-stopping-distance
# Show that braking from speed $s \ge 0$ with $|a| \le 1$ and $dt = 1$ covers the distance
# $D(s) = q s - q(q+1)/2$ with $q = \lfloor s \rfloor$, and check `stopping_distance` against a
# direct simulation for a few speeds.
# ```
#
# ````{solution} ex-stopping-distance
# :class: dropdown
# Full braking lowers the speed by 1 per step and the position moves by the *new* speed. After
# $q = \lfloor s\rfloor$ steps the agent has moved $(s-1) + (s-2) + \dots + (s-q)$ and its speed
# $s - q$ is below 1, so one more step brings it to rest without moving. The sum is
# $qs - q(q+1)/2$.
#
# ```python
# from tutorial_rl.envs.seeker import stopping_distance
# for s in [0.0, 0.5, 1.0, 2.7, 5.0]:
#     v, travelled = s, 0.0
#     while v > 0:
#         v = max(v - 1.0, 0.0)
#         travelled += v
#     print(s, travelled, stopping_distance(np.array(s)))
# ```
# ````
#
# ```{exercise}
# :label: ex-seeker-policy
# The `go_to_goal` policy above ignores obstacles and relies on the safeguard. Run it for 20 seeds
# behind the safeguard and count how often it reaches the goal, how often the safeguard
# intervenes, and whether it ever collides. What stops it from reaching the goal when it fails?
# ```
#
# ````{solution} ex-seeker-policy
# :class: dropdown
# ```python
# results = [rollout(TASKS["seeker"], policy=go_to_goal, steps=100, seed=s) for s in range(20)]
# reached = sum(r.rewards[-1] > -0.05 for r in results)  # the last step ends within the goal
# print("reached:", reached, "collisions:", sum(r.violations.sum() for r in results),
#       "mean interventions:", np.mean([r.interventions for r in results]))
# ```
# There are no collisions. Failures are episodes in which the projection pushes the agent onto
# the boundary of an obstacle's halfspace straight in front of the goal: the projected action
# slides along the tangent, the greedy policy keeps pushing into the obstacle, and the two cancel.
# The safeguard keeps the agent safe; it does not plan around the obstacle. That is the
# conflict between task and safety that the learning agents of the later chapters must resolve.
# ````
#
# ```{exercise}
# :label: ex-penalty
# Step a `ProjectionSafeguard(..., penalty=0.5)` environment with an unsafe action and check that
# the reward is the unwrapped reward minus $0.5\,\lVert \tilde u - u\rVert^2$, where both actions
# are taken from `info`.
# ```
#
# ````{solution} ex-penalty
# :class: dropdown
# ```python
# plain = gym.make(TASKS["pendulum"])
# guarded = ProjectionSafeguard(gym.make(TASKS["pendulum"]), penalty=0.5)
# plain.reset(seed=3); guarded.reset(seed=3)
# action = np.array([1.0])
# _, r_guarded, *_, info = guarded.step(action)
# _, r_plain, *_ = plain.step(info["safe_action"])  # same state, same noise, the safe action
# print(r_guarded, r_plain - 0.5 * np.sum((info["unsafe_action"] - info["safe_action"]) ** 2))
# ```
# Both environments were reset with the same seed, so they draw the same noise, and the plain one
# applied the safe action: the rewards differ by exactly the penalty.
# ````

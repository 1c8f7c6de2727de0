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
# (appendix-tuning)=
# # Appendix: tuned baselines and reference controllers
#
# A return of −20 on the quadrotor means nothing until you know what doing nothing scores, what a
# textbook controller scores, and whether the learner's hyperparameters were given a fair chance.
# This appendix provides both yardsticks for chapter 8: **reference controllers** that every score
# is read against, and **tuned hyperparameters**, found the way the paper found its own: by tuning
# each algorithm on its *unsafe* baseline and reusing the result for every safeguarded variant
# {cite:p}`markgraf2026safeguard`.
#
# ```{admonition} Learning goals
# :class: tip
# After this appendix you can
# 1. say what the zero action and the reference controllers score on each task behind the
#    safeguard, and normalise an RL score with them;
# 2. describe the tuning protocol (search space, budgets, seeds, pruning) and its biases;
# 3. run, resume and distribute a study with `tutorial-rl tune`, and read its history and
#    hyperparameter importances;
# 4. tell which hyperparameters of the `paper` profile were tuned and which are defaults.
# ```
#
# ```{admonition} Run this chapter
# :class: seealso
# This page shows the chapter as it ran when the book was built. To run it yourself, get
# {{ repository_link }}, run `make lab` (it installs everything into `.venv` and opens
# JupyterLab), and open `chapters/appendix_tuning.py` as a notebook (right click, *Open With →
# Notebook*). Every cell can be edited and re-run there.
# ```

# %%
import matplotlib.pyplot as plt
import pandas as pd

from tutorial_rl.experiments import tuned_values, tuning
from tutorial_rl.experiments.budget_curves import PLATEAU_RULE, load_curve
from tutorial_rl.experiments.config import get_profile
from tutorial_rl.experiments.reference_runs import evaluate_references, unsafe_noise_rollouts
from tutorial_rl.experiments.tuning_plots import (
    evaluation_values,
    load_studies,
    plot_budget_curve,
    plot_history,
    plot_importances,
    trial_counts,
    trial_hours,
)
from tutorial_rl.results import describe_invocations, load_result, results_dir

pd.set_option("display.width", 160)

# %% [markdown]
# ## Reference controllers
#
# Three controllers, all acting in the normalised action space $[-1, 1]^m$ and, like every agent
# of the course, **through the projection safeguard**: the safeguard keeps them safe, not their
# design.
#
# - **Zero action.** $\tilde u = 0$: no torque on the pendulum, the middle of the thrust box on
#   the quadrotor (slightly above hover), no acceleration on the seeker. It is the "random play"
#   of this course: an agent that learned nothing scores about this.
# - **LQR** (pendulum and quadrotor). The infinite-horizon discrete LQR of the package's own
#   linear model, $u = u_{eq} - K (x - x_{eq})$ with $K = (R + B^\top P B)^{-1} B^\top P A$ and $P$
#   the solution of the discrete algebraic Riccati equation. The pendulum uses the task's own cost
#   weights ($Q = \mathrm{diag}(1, 0.1)$, $R = 0.001$, the reward $-(\theta^2 + 0.1\dot\theta^2 +
#   0.001 u^2)$); the quadrotor $Q = \mathrm{diag}(1, 1, 1, 1, 1, 0.1)$, $R = I$ (thrust in
#   newtons).
# - **PD-to-goal** (seeker). $\tilde u = \mathrm{clip}(0.5\,(g - p) - v, -1, 1)$: accelerate towards
#   the goal while damping the velocity. It ignores the obstacles; the safeguard brakes for it.
#
# ```{literalinclude} ../src/tutorial_rl/controllers.py
# :pyobject: lqr_gain
# ```
#
# They are evaluated with the `paper` profile's protocol: ten episodes whose start states come
# from the evaluation seed 1,000,000, the same start states every agent of the grid is tested on.
# The numbers below are read from `results/reference/reference.json`, which `tutorial-rl
# reference` wrote:

# %%
reference_dir = results_dir() / "reference"
reference = load_result("reference").data
ref_table = pd.DataFrame({
    env: {"zero action": entry["zero"]["mean"],
          "controller": entry["controller"]["mean"],
          "controller is": entry["controller"]["name"],
          "violations": entry["zero"]["constraint_violations"]
          + entry["controller"]["constraint_violations"]}
    for env, entry in reference.items()}).T
print(ref_table.to_string(float_format=lambda v: f"{v:.2f}"))
print()
print(describe_invocations(reference_dir))

# %% [markdown]
# Neither controller ever leaves the safe set: the safeguard corrects them (the LQR rarely, the
# zero action often on the pendulum, which would otherwise fall). Chapter 8 normalises every score
# with these two numbers,
#
# $$
# \text{normalised score} = \frac{\text{score} - \text{score}_\text{zero}}
#                               {\text{score}_\text{controller} - \text{score}_\text{zero}},
# $$
#
# so 0 means "no better than doing nothing" and 1 means "as good as the textbook controller".
# An RL agent can exceed 1: the LQR is optimal only for the linear model and a quadratic cost, and
# the PD controller knows nothing about obstacles.
#
# ## The tuning protocol
#
# The paper tunes each algorithm on the unsafe baseline and uses the result for all variants
# (its Section 8); we do the same with [Optuna](https://optuna.org) {cite:p}`akiba2019optuna`:
# a **TPE sampler** proposes hyperparameters, each trial trains the unsafe agent on two training
# seeds, and a **median pruner** stops a trial whose evaluation return, measured five times during
# each seed's training (ten reports per trial), falls below the median of earlier complete trials
# at the same point. TPE starts with 8 random trials (complete or pruned), and the pruner waits for
# 5 complete trials. The search space is stated once, per algorithm:

# %%
space = pd.DataFrame([{"algorithm": algo, "hyperparameter": name, "range": param.describe()}
                      for algo, params in tuning.SEARCH_SPACE.items()
                      for name, param in params.items()])
print(space.to_string(index=False))
print(f"\n'width' sets both hidden layers. Training seeds {tuning.TUNING_SEEDS}, evaluation seed "
      f"{tuning.TUNING_EVAL_SEED:,}: disjoint from the grid's seeds 0-6 and 1,000,000, so the "
      "grid's results never took part in tuning.")
budget = pd.DataFrame({"tuning steps per seed": tuning.TUNING_STEPS,
                       "paper profile steps": get_profile("paper").steps})
print()
print(budget.to_string())

# %% [markdown]
# **Budgets, and their bias.** A trial of the full budget costs two seeds of training; the whole
# tuning was to fit in about six core-hours on a 2-core laptop (about one core-hour per study, ~30
# trials). TD3 and A2C on the pendulum and A2C on the seeker are tuned at their full budget; TD3
# on the quadrotor (20k of 50k steps), TD3 on the seeker (30k of 100k) and A2C on the quadrotor
# (100k of 250k) at a shortened one. Pruning can stop a trial from the third of its first seed's
# five evaluations on (30 % of the trial). A short budget risks favouring hyperparameters that
# learn *fast* (larger learning rates, smaller networks) over those that learn *best* at the full
# budget. The tuned values do not show it (TD3 on the seeker chose a learning rate near the lower
# end of its range and the widest network), but it is the price of tuning on a laptop, and the
# reason the shortened budgets are as long as the time allowed.
#
# **Running it.** A study is resumable and distributable by construction: all six live in one
# SQLite file, `results/tuning/studies.db`, and a rerun of the same command continues until the
# study has `--trials` finished trials (a trial whose process was killed stops sending heartbeats
# and is retried once). Several processes can work on one study at once, and so can several
# machines that share a database server:
#
# ```bash
# tutorial-rl tune --env pendulum --algo td3 --trials 30     # one study, resumable
# make tune TUNE_JOBS=2 TUNE_TRIALS=30                       # all six, two workers per study
# tutorial-rl tune-export                                    # best values -> the paper profile
#
# # on a cluster: every node runs the same command against one PostgreSQL database
# srun --ntasks=16 tutorial-rl tune --env seeker --algo td3 --trials 60 \
#     --storage postgresql://user:password@dbhost/tuning
# ```
#
# ## What the studies found
#
# The committed studies, as they stand:

# %%
tuning_dir = results_dir() / "tuning"
studies_db = tuning_dir / "studies.db"
studies = load_studies(f"sqlite:///{studies_db}") if studies_db.is_file() else {}
rows = []
for name, study in studies.items():
    counts = trial_counts(study)
    best = study.best_value if counts["complete"] else float("nan")
    rows.append({"study": name, **counts, "core-hours": trial_hours(study),
                 "best mean return": best})
summary = pd.DataFrame(rows).set_index("study") if rows else pd.DataFrame()
if rows:
    print(summary.to_string(float_format=lambda v: f"{v:.2f}"))
    print(f"\nTuning cost: {summary['core-hours'].sum():.1f} core-hours in all.")
    print()
    print(describe_invocations(tuning_dir))
else:
    print("No study has been run yet: `make tune` starts all six (about six core-hours).")

# %% [markdown]
# A study's returns are those of the *unsafe* agent, with the termination penalty it pays for
# leaving the state limits, on the tuning evaluation seed. To read them against the yardsticks,
# evaluate the zero action and the reference controller on the *same* start states (the tuning
# evaluation seed), once behind the safeguard and once without it:

# %%
yardstick = []
for name, study in studies.items():
    algo, env = name.split("-", 1)
    if not trial_counts(study)["complete"]:
        continue
    safe = evaluate_references(env, episodes=10, seed=tuning.TUNING_EVAL_SEED)
    bare = evaluate_references(env, episodes=10, seed=tuning.TUNING_EVAL_SEED, mode="unsafe")
    zero, ctrl = safe["zero"]["mean"], safe["controller"]["mean"]
    yardstick.append({"study": name, "best tuning score": study.best_value,
                      "zero (safeguarded)": zero, "controller (safeguarded)": ctrl,
                      "normalised": (study.best_value - zero) / (ctrl - zero),
                      "controller without safeguard": bare["controller"]["mean"],
                      "its violations": bare["controller"]["constraint_violations"]})
yardstick_table = pd.DataFrame(yardstick).set_index("study") if yardstick else pd.DataFrame()
print(yardstick_table.to_string(float_format=lambda v: f"{v:.2f}"))

# %% [markdown]
# Read against the same start states, the pendulum studies found hyperparameters that bring the
# *unsafe* agents close to the LQR: normalised scores of about 0.86 (TD3) and 0.79 (A2C). TD3 on
# the quadrotor gets about 0.67 of the way from doing nothing to the LQR within its 20,000 tuning
# steps. A2C on the quadrotor and the seeker stays below the zero action behind the safeguard
# (about −0.75 and −0.22 after 100,000 and 150,000 steps), and TD3 on the seeker barely passes it
# (about 0.04 after 30,000). Their scores are those of the unsafe agent, which pays a termination
# penalty whenever it leaves the state limits. These three studies are also the thinnest, with 4,
# 6 and 12 complete trials (TD3 on the quadrotor has 19): a trial costs 1 to 20 minutes there on
# a busy laptop, and the tuning stopped when its budget of about six core-hours was spent. The
# A2C quadrotor study would not have gained from more trials (see below); the two seeker studies
# might, and a reader with more cores can continue them (raise their targets in the Makefile's
# `TUNE_STUDIES` and rerun `make tune`). The A2C quadrotor and seeker studies, with fewer than 8
# trials, never left TPE's random start-up: their values come from a random search, and too few
# trials completed for the median pruner to act. Every "best tuning score" above is also
# optimistic: it is the largest of its study's noisy scores (two seeds, the same 10 start states),
# the winner's curse again; re-evaluating the top few trials on fresh training seeds would give an
# unbiased estimate, and the grid, on its own seeds, gives one for the values chosen. The
# `paper` grid is only as final as these values: a
# sweep folder refuses to resume under other tuned values. The last two columns are the point of
# the safeguard: without it, the LQR leaves the quadrotor's state limits and the PD controller
# drives the seeker into obstacles.

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Left: every complete trial's mean evaluation return (dots), the last evaluation of pruned trials (crosses) and the best so far (line). Right: which hyperparameters separate the best trials from the rest (PED-ANOVA importances). Only studies with at least three complete trials are shown.", "name": "fig-tuning-studies"}, "image": {"alt": "Per study, an optimisation history and a bar chart of hyperparameter importances"}}
shown = [name for name, study in studies.items() if trial_counts(study)["complete"] >= 3]
fig, axes = plt.subplots(max(1, len(shown)), 2, figsize=(12, 3.6 * max(1, len(shown))),
                         squeeze=False)
for row, name in zip(axes, shown, strict=False):
    plot_history(studies[name], row[0])
    plot_importances(studies[name], row[1])
if not shown:
    for ax in axes[0]:
        ax.axis("off")
    axes[0][0].text(0.5, 0.5, "no study has three complete trials yet", ha="center")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## The tuned values of the `paper` profile
#
# `tutorial-rl tune-export` writes each study's best trial to one committed file,
# `src/tutorial_rl/data/tuned_hyperparameters.json`, and the `paper` profile reads it; a test
# checks that the file still matches the database. Everything else is a default of the package
# (or pinned by the profile, such as TD3's 1,000 warm-up steps):

# %%
paper = get_profile("paper")
table = []
for algo in paper.algos:
    for env in paper.envs:
        for row in tuned_values.hyperparameter_sources(paper, algo, env):
            table.append({"cell": f"{algo}/{env}", **row})
values = pd.DataFrame(table)
tuned_cells = sorted({c for c, s in zip(values["cell"], values["source"], strict=True)
                      if s == "tuned"})
print("tuned cells:", ", ".join(tuned_cells) if tuned_cells else "none yet (all defaults)")
wide = values.pivot(index="hyperparameter", columns="cell", values="value")
sources = values.pivot(index="hyperparameter", columns="cell", values="source")
marked = wide.astype(str) + sources.replace({"tuned": " *", "default": "", "profile": " (p)"})
print(marked.to_string())
print("\n* tuned on the unsafe baseline; (p) pinned by the profile; otherwise the package default")

# %% [markdown]
# ## Training budgets: which are the paper's and which are ours
#
# TD3 keeps the budgets of the paper's code: 10,000 steps on the pendulum, 50,000 on the
# quadrotor and 100,000 on the seeker. The paper does not state A2C's budgets, so **ours are read
# off the tuned unsafe A2C's learning curves**. `tutorial-rl budget-curve` trains the unsafe A2C
# with the tuned hyperparameters on the two tuning seeds for longer than any budget we would pick
# (100k, 400k and 500k steps), evaluates it 30 times along the way on the tuning evaluation seed
# (never on the grid's seeds, so the choice cannot flatter the grid), and applies one rule stated
# in advance:

# %%
print("Rule:", PLATEAU_RULE)
budget_dir = results_dir() / "budgets"
curves = {env: load_curve("a2c", env, budget_dir) for env in paper.envs
          if (budget_dir / f"a2c-{env}.json").is_file()}
budget_rows = []
for env in paper.envs:
    budget_rows.append({"cell": f"td3/{env}", "budget": paper.steps[f"td3/{env}"],
                        "source": "the paper's code"})
for env in paper.envs:
    choice = curves[env]["choice"] if env in curves else None
    if choice is None:
        source = "ours, provisional: no curve yet"
    elif choice["budget"] is None:
        source = "ours, provisional: the curve shows no learning"
    else:
        source = (f"ours: curve flattens at {choice['reached_at']:,} steps"
                  + ("" if choice["flattened"] else " (still rising at its end)"))
    budget_rows.append({"cell": f"a2c/{env}", "budget": paper.steps[f"a2c/{env}"],
                        "source": source})
print(pd.DataFrame(budget_rows).set_index("cell").to_string())
print()
print(pd.DataFrame({env: {"first evaluation": c["choice"]["first_evaluation"],
                          "plateau": c["choice"]["plateau"], "band": c["choice"]["band"],
                          "learned": c["choice"]["learned"],
                          "reached at": c["choice"]["reached_at"],
                          "rule revised": bool(c.get("rechosen"))}
                    for env, c in curves.items()}).T.to_string(float_format=lambda v: f"{v:.2f}"))
print()
print(describe_invocations(budget_dir))

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Learning curves of the tuned unsafe A2C on the two tuning seeds (thin lines) and their mean (black), evaluated on the tuning evaluation seed. The green band is the plateau the rule asks the mean curve to stay in (5 % of the rise or two standard errors of the running mean, whichever is larger); the dashed line is the budget it reads off, rounded up to 25,000 steps. The quadrotor's curve shows no learning and decides no budget. These budgets are ours, not the paper's.", "name": "fig-a2c-budgets"}, "image": {"alt": "Three learning curves of A2C with a dashed vertical line at the chosen budget"}}
fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3.8), squeeze=False)
for ax, curve in zip(axes[0], curves.values(), strict=True):
    plot_budget_curve(curve, ax)
fig.tight_layout()
plt.show()

# %% [markdown]
# On the pendulum the tuned A2C's curve flattens at about 47,000 steps, so the 50,000 steps we
# had first guessed (five times TD3's) stand. On the seeker it flattens at about 133,000 steps:
# its budget is 150,000, not the 500,000 we had guessed, which also cuts the grid's cost by a
# fifth. On the quadrotor the tuned A2C learned nothing in 400,000 steps: from the fifth
# evaluation on, its mean return is the same −211.8 at every evaluation, barely above its first.
# That curve decides no budget; 250,000 steps stay as a provisional budget. The next section
# shows why more trials would not help.
#
# **A rule we revised, and why.** The rule first stated had a band of 5 % of the rise alone. On
# the seeker the rise is small (about 15) and the evaluations on the plateau scatter by more than
# that band, so it read the budget off the noise: 450,000 steps, the 27th of 30 evaluations,
# where the mean curve had long stopped rising. We widened the
# band to at least two standard errors of the running mean and added the no-learning test. The
# curves were not rerun; `tutorial-rl budget-curve --rechoose` re-applied the rule, and each file
# keeps what the old rule said (its `rechosen` entry).
#
# ### Why the unsafe A2C learns to crash
#
# The quadrotor study's trials differ in every hyperparameter, yet their evaluations agree to the
# digit. Counting the distinct returns among all their evaluations:

# %%
crash_rows = []
for name in ("a2c-quadrotor", "a2c-seeker"):
    if name in studies:
        values = pd.Series(evaluation_values(studies[name]))
        mode_value = values.round(2).mode().iloc[0]
        crash_rows.append({"study": name, "evaluations": len(values),
                           "distinct (to 0.01)": values.round(2).nunique(),
                           "most frequent return": mode_value,
                           "share within 1 of it": float((values - mode_value).abs().lt(1).mean())})
print(pd.DataFrame(crash_rows).set_index("study").to_string(float_format=lambda v: f"{v:.2f}"))

# %% [markdown]
# On the quadrotor three quarters of all evaluations return −210.3 give or take 1: the policy's
# mean thrusts have left the action box, every state gets the same clipped thrusts, and the
# quadrotor leaves its state limits after about ten steps (the −200 termination penalty plus
# about 10 steps of cost). Why would learning produce that? Look at what an untrained stochastic policy meets
# without a safeguard: zero-mean Gaussian actions with standard deviation σ (in half-widths of the
# action box; A2C starts at σ ≈ 0.6), with the termination penalty the studies train with, on the
# tuning evaluation seed's start states:

# %%
noise_rows = []
for env in ("quadrotor", "seeker"):
    for row in unsafe_noise_rollouts(env, (0.0, 0.2, 0.6), episodes=10,
                                     seed=tuning.TUNING_EVAL_SEED):
        noise_rows.append({"task": env, **row})
noise_table = pd.DataFrame(noise_rows).set_index(["task", "noise_std"])
print(noise_table.to_string(float_format=lambda v: f"{v:.1f}"))

# %% [markdown]
# On the quadrotor even the zero action leaves the state limits, after about 57 steps: it is the
# hover thrust, but nothing restores height and climb rate ($\ddot z = -g + K(u_1 + u_2) + w_1$ is
# just the disturbance at hover thrust), so from the random start states the quadrotor climbs or
# sinks out of its altitude limits $z \in [0.3, 2]$. The crash is
# inevitable for everything an early policy does, so **crashing sooner costs less**: σ = 0.6
# crashes after about 4 steps and scores about −203, better than the zero action's −233. An
# on-policy gradient estimated from such episodes points toward crashing sooner. Nothing pulls
# the Gaussian mean back once it has left the action box: every action beyond the box is clipped
# to the same thrust, so the return no longer depends on the mean (action aliasing again,
# {doc}`chapter 6 <06_aliasing>`), and the mean drifts on. On the seeker the zero action survives
# its 100 steps (about −67), but exploration noise of either size crashes within about 11 steps;
# two thirds of the A2C evaluations there sit within 1 of −102, a crash within two or three steps.
#
# TD3 does not fall into this: its critic learns the value of hovering from replayed transitions,
# and its tanh actor cannot leave the box. So the unsafe A2C's tuning landscape on the quadrotor
# is flat: every trial finds the same crash, TPE has nothing to rank, and each further trial costs
# 10-20 minutes. We stopped that study at 4 trials; its "tuned" values are as good as any, and
# the table above marks them as tuned only because the protocol says so. For the grid this
# matters less than it seems: behind the safeguard no episode ends early, so the crash incentive
# is gone, but the mean can still drift out of the safe set, which is what the SE-RL penalty and
# the SP-RL penalty critic are for (the paper finds both help A2C on the quadrotor). The paper's
# protocol, tuning on the unsafe baseline, has a blind spot here, and we keep it to stay
# comparable.
#
# ## Exercises
#
# ```{exercise}
# :label: ex-tune-normalise
# A TD3 agent scores −40 on the quadrotor. What is its normalised score? What would an agent that
# keeps the quadrotor exactly at hover score, and why can an RL agent exceed 1?
# ```
#
# ````{solution} ex-tune-normalise
# :class: dropdown
# ```python
# ref = reference["quadrotor"]
# print((-40 - ref["zero"]["mean"]) / (ref["controller"]["mean"] - ref["zero"]["mean"]))
# ```
# With the committed references (zero action about −115, LQR about −25) that is about 0.83. At
# hover with zero effort the reward $-1 + e^{-(\|x - x_{eq}\| + 0.01\,\text{effort})}$ is 0 per
# step, so the return is 0, a normalised score of about 1.27. The LQR is optimal for its own
# quadratic cost on the linear model, not for this reward, and it starts from the same random
# states as the agent, so a learned policy can beat it.
# ````
#
# ```{exercise}
# :label: ex-tune-seeds
# Why do the tuning trials use training seeds 100 and 101 and evaluation seed 2,000,000 instead of
# the grid's seeds 0-6 and 1,000,000? What would go wrong otherwise?
# ```
#
# ```{solution} ex-tune-seeds
# :class: dropdown
# Tuning selects the hyperparameters that score best on the seeds it sees. If those were the
# grid's seeds, every variant of the grid, which all train with the tuned values, would be
# evaluated on seeds its hyperparameters had been selected on: the scores would be biased upwards
# (the winner's curse), and the more so the closer a variant is to the unsafe baseline the values
# were tuned on. Disjoint seeds keep the grid's results an honest test set.
# ```

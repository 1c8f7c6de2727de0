"""Training throughput on every cell of the paper's grid, and the grid's estimated core-hours.

Chapter 8 (chapters/08_experiments.py, "Running a sweep") and ``tutorial-rl sweep --dry-run``
use these figures: :data:`tutorial_rl.experiments.costs._MS_PER_STEP` holds the per-step costs
this script measures. For every task × algorithm × variant it trains one run of the real code
(``ModeEnv`` + ``TD3``/``A2C``, one torch thread, as a sweep worker does), lets it warm up
(TD3: past ``learning_starts``, so every step has an update; A2C: a few rollouts), and times the
steady state: milliseconds per environment step and environment steps per second per core. The
paper grid's core-hours follow from these costs and the grid's budgets, next to the estimate the
package currently uses (the table in ``costs.py``) and the one before this round's changes.

Each cell is measured ``--repeats`` times, interleaved with the other cells (the order changes per
repeat), and the median is reported, so a busy machine slows all cells alike. ``--baseline SRC``
measures an earlier version of the package in a second worker process, interleaved cell by cell,
and reports the speed-up per cell; applied to the table measured on a quiet machine, it gives
the new table without needing a quiet machine::

    git archive 0d0234f src | tar -x -C /tmp/base
    python benchmarks/grid_throughput.py --baseline /tmp/base/src [--steps 300] [--repeats 3]

Before the cell table it prints the grouped tables (issue 11): the cost of one TD3 update per run,
K separate ``TD3.update`` calls against one :class:`~tutorial_rl.agents.grouped.GroupedTD3Update`
(``--group-sizes 1,7,28``); env-steps per second per core of whole training runs for every
task × algorithm × variant at K = 1, 7, 28 (``--run-sizes``; K = 1 is a run alone, K > 1 a group
of :func:`~tutorial_rl.experiments.grouped.train_group`; mitigated groups mix the paper's four α,
as the sweep's groups do), measured side by side (``--clock cpu``: this process's CPU time, which
a loaded machine inflates less than wall time); SP-RL TD3's cost per run-step relative to SE-RL's
of the same group size at each K, against issue 11's target of at most 1.2x; the paper grid's
core-hours alone and grouped (the quiet machine's table scaled by the measured ratios at each K,
what ``costs._MS_PER_STEP_GROUPED`` holds, every run costed at its group's size); and, for the
seeker, one projection call on padded sets against one call per row count. ``--skip-cells``
stops there::

    python benchmarks/grid_throughput.py --group-sizes '' --skip-cells
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import torch

from tutorial_rl.agents import A2C, TD3, ModeEnv, ProgressRecorder, SafetyConfig
from tutorial_rl.experiments.config import PROFILES, VARIANTS
from tutorial_rl.experiments.costs import _MS_PER_STEP
from tutorial_rl.experiments.training import ENVS, env_defaults

#: The table of ``costs.py`` before the SP safe-set reuse and the cached emptiness check
#: (commit 0d0234f), for the "before" column of the grid estimate.
MS_PER_STEP_BEFORE: dict[str, dict[str, float]] = {
    "td3/pendulum": {"se-vanilla": 3.4, "se-penalty": 3.4, "sp-vanilla": 4.6,
                     "sp-per-sample-loss": 5.2, "sp-penalty-critic": 5.4},
    "td3/quadrotor": {"se-vanilla": 5.8, "se-penalty": 6.2, "sp-vanilla": 9.6,
                      "sp-per-sample-loss": 9.1, "sp-penalty-critic": 10.6},
    "td3/seeker": {"se-vanilla": 5.0, "se-penalty": 4.6, "sp-vanilla": 9.5,
                   "sp-per-sample-loss": 8.0, "sp-penalty-critic": 10.4},
    "a2c/pendulum": {"se-vanilla": 1.1, "se-penalty": 1.2, "sp-vanilla": 1.1,
                     "sp-per-sample-loss": 1.7, "sp-penalty-critic": 1.3},
    "a2c/quadrotor": {"se-vanilla": 1.7, "se-penalty": 2.4, "sp-vanilla": 2.3,
                      "sp-per-sample-loss": 3.7, "sp-penalty-critic": 2.0},
    "a2c/seeker": {"se-vanilla": 1.5, "se-penalty": 1.4, "sp-vanilla": 1.5,
                   "sp-per-sample-loss": 2.7, "sp-penalty-critic": 1.3},
}


def make_agent(env: str, algo: str, variant: str, warmup: int) -> tuple[TD3 | A2C, ModeEnv]:
    """A fresh agent and its mode's environment, as ``training.train`` builds them."""
    mode, mitigation = VARIANTS[variant]
    safety = SafetyConfig(mode, mitigation, None if mitigation == "none" else 0.5)  # type: ignore[arg-type]
    defaults = env_defaults(env, algo)
    task = gym.make(ENVS[env], termination_penalty=defaults["termination_penalty"])
    config = defaults["agent"]
    if algo == "td3":
        import dataclasses

        config = dataclasses.replace(config, learning_starts=warmup)
        agent: TD3 | A2C = TD3(task.observation_space, task.action_space, config, safety, seed=0,
                               buffer_capacity=100_000)
        track = mode == "sp"
    else:
        agent = A2C(task.observation_space, task.action_space, config, safety, seed=0)
        track = agent.needs_safe_sets
    return agent, ModeEnv(task, safety, track_safe_sets=track)


clock = time.perf_counter  # the grouped tables' clock (--clock)


class _TimingRecorder(ProgressRecorder):
    """A progress recorder that notes the time when step ``mark`` is recorded."""

    def __init__(self, total: int, mark: int) -> None:
        super().__init__(total)
        self.mark, self.marked_at = mark, 0.0

    def record(self, step, alpha: float = 0.0) -> None:  # type: ignore[no-untyped-def]
        super().record(step, alpha)
        if self.steps == self.mark:
            self.marked_at = clock()


def time_cell(env: str, algo: str, variant: str, steps: int, warmup: int) -> float:
    """Milliseconds per environment step in the steady state of one run (after ``warmup``)."""
    agent, mode_env = make_agent(env, algo, variant, warmup)
    recorder = _TimingRecorder(warmup + steps, warmup)
    agent.learn(mode_env, warmup + steps, recorder, seed=0)
    return (clock() - recorder.marked_at) / steps * 1e3


def _worker() -> None:
    """Measure the cells named on stdin (``env algo variant steps warmup``), one per line."""
    torch.set_num_threads(1)
    for line in sys.stdin:
        env, algo, variant, steps, warmup = line.split()
        print(time_cell(env, algo, variant, int(steps), int(warmup)), flush=True)


class Worker:
    """A process measuring cells with the package found on ``src`` (this tree or a baseline)."""

    def __init__(self, src: str) -> None:
        env = {**os.environ, "PYTHONPATH": src}
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker"], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def time(self, cell: tuple[str, str, str], steps: int, warmup: int) -> float:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{' '.join(cell)} {steps} {warmup}\n")
        self.proc.stdin.flush()
        return float(self.proc.stdout.readline())

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait()


def grid_core_hours(table: dict[str, dict[str, float]]) -> float:
    """Training core-hours of the paper profile's 588 runs at the given ms per step."""
    seconds = 0.0
    for spec in PROFILES["paper"].runs():
        per_step = table[f"{spec.algo}/{spec.env}"]
        seconds += spec.steps * per_step.get(spec.variant, per_step["se-vanilla"]) / 1000
    return seconds / 3600


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", default=",".join(ENVS))
    parser.add_argument("--algos", default="td3,a2c")
    parser.add_argument("--steps", type=int, default=300, help="timed steps per cell")
    parser.add_argument("--warmup", type=int, default=300, help="steps before timing")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", default=None, metavar="SRC",
                        help="a source tree of an earlier version (e.g. from `git archive`), "
                             "measured interleaved with this one: the 'x base' column")
    parser.add_argument("--group-sizes", default="1,7,28",
                        help="K of the grouped TD3 update table ('' skips it)")
    parser.add_argument("--updates", type=int, default=20, help="timed updates per K")
    parser.add_argument("--run-sizes", default="1,7,28",
                        help="K of the env-steps-per-second table ('' skips it)")
    parser.add_argument("--run-steps", type=int, default=160, help="timed steps per run there")
    parser.add_argument("--skip-cells", action="store_true",
                        help="only the grouped tables")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="the grouped tables' clock: wall time, or this process's CPU time "
                             "(one thread: steadier on a loaded machine)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    global clock
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    if args.worker:  # a baseline tree may predate the helpers imported below
        _worker()
        return
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)  # one core per worker, numpy's BLAS included (as train_group does)
    if args.group_sizes:
        sizes = [int(k) for k in args.group_sizes.split(",")]
        update_table(args.envs.split(","), sizes, args.updates)
    if args.run_sizes:
        cells = [(e, a, v) for e in args.envs.split(",") for a in args.algos.split(",")
                 for v in VARIANTS if v != "unsafe"]
        measured = group_table(cells, [int(k) for k in args.run_sizes.split(",")],
                               args.run_steps, args.warmup)
        sp_se_ratios(measured)
        grouped_estimate(measured)
        if "seeker" in args.envs:
            pad_or_group()
    if args.skip_cells:
        return
    from tutorial_rl.experiments.costs import estimate_ms_per_step

    here = str(Path(__file__).resolve().parents[1] / "src")
    workers = {"now": Worker(here)}
    if args.baseline:
        workers["base"] = Worker(args.baseline)
    cells = [(e, a, v) for e in args.envs.split(",") for a in args.algos.split(",")
             for v in VARIANTS if v != "unsafe"]
    times: dict[tuple[str, tuple[str, str, str]], list[float]] = {}
    rng = random.Random(0)
    for _ in range(args.repeats):
        order = cells[:]
        rng.shuffle(order)
        for cell in order:
            names = list(workers)
            rng.shuffle(names)  # alternate which version runs first
            for name in names:
                times.setdefault((name, cell), []).append(
                    workers[name].time(cell, args.steps, args.warmup))
    for worker in workers.values():
        worker.close()

    measured: dict[str, dict[str, float]] = {}
    scaled: dict[str, dict[str, float]] = {}
    print(f"{'cell':16s} {'variant':20s} {'ms/step':>8s} {'steps/s':>8s} {'base ms':>8s} "
          f"{'x base':>7s} {'table':>6s}")
    for env, algo, variant in cells:
        ms = statistics.median(times[("now", (env, algo, variant))])
        measured.setdefault(f"{algo}/{env}", {})[variant] = ms
        mode, mitigation = VARIANTS[variant]
        line = f"{algo + '/' + env:16s} {variant:20s} {ms:8.2f} {1000 / ms:8.0f} "
        if args.baseline:
            base = statistics.median(times[("base", (env, algo, variant))])
            before = MS_PER_STEP_BEFORE[f"{algo}/{env}"][variant]
            # the speed-up measured side by side, applied to the quiet machine's table
            scaled.setdefault(f"{algo}/{env}", {})[variant] = round(before * ms / base, 1)
            line += f"{base:8.2f} {base / ms:7.2f} "
        else:
            line += f"{'':8s} {'':7s} "
        print(line + f"{estimate_ms_per_step(algo, env, mode, mitigation):6.2f}")
    if scaled:
        print("\nthe quiet machine's table scaled by the measured speed-ups "
              "(for costs._MS_PER_STEP):")
        for cell, row in scaled.items():
            print(f"    {cell!r}: {row},")
    if len(cells) == len(PAPER_CELLS):
        print(f"\npaper grid, training core-hours: before {grid_core_hours(MS_PER_STEP_BEFORE):.1f}"
              f", package table now {grid_core_hours(_MS_PER_STEP):.1f}, at this machine's "
              f"measured costs {grid_core_hours(measured):.1f}"
              + (f", before table x measured speed-ups {grid_core_hours(scaled):.1f}"
                 if scaled else ""))


def filled_td3(env: str, variant: str, k: int, fill: int = 600) -> list[TD3]:
    """K TD3 agents (seeds 0..K-1) whose buffers hold ``fill`` random-action transitions."""
    import copy
    import dataclasses

    agents = []
    for seed in range(min(k, 7)):  # transitions of 7 seeds, copied up to K (the cost is the same)
        agent, mode_env = make_agent(env, "td3", variant, 10 * fill)
        agent.config = dataclasses.replace(agent.config, learning_starts=10 * fill)
        agent.learn(mode_env, fill, ProgressRecorder(fill), seed=seed)
        agents.append(agent)
    while len(agents) < k:
        agents.append(copy.deepcopy(agents[len(agents) % 7]))
    return agents


def time_updates(env: str, variant: str, k: int, updates: int) -> tuple[float, float]:
    """(ms per run-update of K separate ``TD3.update`` calls, of one grouped update)."""
    from tutorial_rl.agents.grouped import GroupedTD3Update

    agents = filled_td3(env, variant, k)
    batch = agents[0].config.batch_size
    for agent in agents:  # warm the kernels
        agent.update(agent.buffer.sample(batch), update_actor=True)
    start = time.perf_counter()
    for i in range(updates):
        for agent in agents:
            agent.update(agent.buffer.sample(batch), update_actor=i % 2 == 1)
    separate = (time.perf_counter() - start) / (updates * k) * 1e3
    group = GroupedTD3Update(agents)
    group.update([a.buffer.sample(batch) for a in agents], update_actor=True)
    start = time.perf_counter()
    for i in range(updates):
        group.update([a.buffer.sample(batch) for a in agents], update_actor=i % 2 == 1)
    return separate, (time.perf_counter() - start) / (updates * k) * 1e3


def update_table(envs: list[str], sizes: list[int], updates: int) -> None:
    """TD3 update cost per run: separate vs grouped, side by side, for K in ``sizes``."""
    torch.set_num_threads(1)
    print(f"\nTD3 update, ms per run-update (separate / grouped, speed-up), {updates} updates")
    print(f"{'task':10s} {'variant':20s} " + " ".join(f"{'K=' + str(k):>20s}" for k in sizes))
    for env in envs:
        for variant in ("se-vanilla", "sp-vanilla", "sp-penalty-critic"):
            cells = []
            for k in sizes:
                separate, grouped = time_updates(env, variant, k, updates)
                cells.append(f"{separate:6.2f}/{grouped:5.2f} {separate / grouped:4.1f}x")
            print(f"{env:10s} {variant:20s} " + " ".join(f"{c:>20s}" for c in cells), flush=True)


def group_cell(env: str, algo: str, variant: str, k: int, steps: int, warmup: int,
               device: str = "cpu") -> float:
    """ms per run-step of K runs of one cell trained as a group (steady state after warmup).

    K = 1 on the CPU is a run alone (:func:`time_cell`, today's ``train`` path); otherwise the
    group of :func:`~tutorial_rl.experiments.grouped.train_group` (vector env, grouped updates)
    with its agents' tensors on ``device`` (``benchmarks/cuda_check.py``).
    """
    if k == 1 and device == "cpu":
        return time_cell(env, algo, variant, steps, warmup)
    from tutorial_rl.experiments.grouped import _make_group
    from tutorial_rl.experiments.training import RunConfig, _resolve

    mode, mitigation = VARIANTS[variant]
    agent = {"learning_starts": warmup} if algo == "td3" else {}
    alphas = PROFILES["paper"].alphas  # a mitigated group mixes α, as the sweep groups them
    run = _make_group([_resolve(RunConfig(
        env=env, algo=algo, mode=mode, mitigation=mitigation, seed=s, steps=warmup + steps,
        alpha=None if mitigation == "none" else alphas[s % len(alphas)], agent=agent,
        device=device))
        for s in range(k)])
    recorders = [_TimingRecorder(warmup + steps, warmup) for _ in range(k)]
    run.learn(recorders, warmup + steps)  # type: ignore[arg-type]
    return (clock() - recorders[0].marked_at) / (steps * k) * 1e3


def group_table(cells: list[tuple[str, str, str]], sizes: list[int], steps: int,
                warmup: int) -> dict[int, dict[str, dict[str, float]]]:
    """Env-steps per second per core for every cell at every K, measured side by side.

    For each cell the K values run back to back (their order alternating), so a busy machine
    slows them alike; returns ms per run-step by K, then ``algo/env``, then variant.
    """
    torch.set_num_threads(1)
    print(f"\nenv-steps per second per core (run-steps / core-second), {steps} timed steps "
          f"after {warmup}; speed-up over K = 1 in brackets")
    print(f"{'cell':16s} {'variant':20s} " + " ".join(f"{'K=' + str(k):>14s}" for k in sizes))
    out: dict[int, dict[str, dict[str, float]]] = {k: {} for k in sizes}
    for i, (env, algo, variant) in enumerate(cells):
        order = sizes if i % 2 == 0 else sizes[::-1]
        for k in order:
            out[k].setdefault(f"{algo}/{env}", {})[variant] = group_cell(
                env, algo, variant, k, steps, warmup)
        base = out[sizes[0]][f"{algo}/{env}"][variant]
        texts = []
        for k in sizes:
            ms = out[k][f"{algo}/{env}"][variant]
            texts.append(f"{1000 / ms:7.0f} ({base / ms:4.1f}x)")
        print(f"{algo + '/' + env:16s} {variant:20s} " + " ".join(f"{t:>14s}" for t in texts),
              flush=True)
    return out


#: SP-RL TD3 against the SE-RL variant of the same group size (vanilla with vanilla, the
#: mitigations with the reward penalty), per run-step: issue 11's target, at most this ratio.
SP_SE_TARGET = 1.2
SP_SE_PAIRS = {"sp-vanilla": "se-vanilla", "sp-per-sample-loss": "se-penalty",
               "sp-penalty-critic": "se-penalty"}


def sp_se_ratios(measured: dict[int, dict[str, dict[str, float]]]) -> None:
    """SP-RL TD3's cost per run-step relative to SE-RL's at each measured K (the target)."""
    rows = []
    for k, table in measured.items():
        for cell, row in table.items():
            if not cell.startswith("td3/"):
                continue
            for sp, se in SP_SE_PAIRS.items():
                if sp in row and se in row:
                    rows.append((k, cell, sp, se, row[sp] / row[se]))
    if not rows:
        return
    print(f"\nSP-RL TD3 / SE-RL TD3 per run-step (target <= {SP_SE_TARGET}x with grouping):")
    for k, cell, sp, se, ratio in rows:
        print(f"  K={k:<3d} {cell:16s} {sp + ' / ' + se:42s} {ratio:5.2f}x"
              + ("" if k == 1 or ratio <= SP_SE_TARGET else "  <- above target"))
    grouped = [r for r in rows if r[0] > 1]
    if grouped:
        worst = max(grouped, key=lambda r: r[4])
        print(f"target SP-RL TD3 <= {SP_SE_TARGET}x SE-RL per run-step, grouped: "
              + ("met" if worst[4] <= SP_SE_TARGET else "NOT met")
              + f" (highest {worst[4]:.2f}x: {worst[1]} {worst[2]}, K = {worst[0]})")


def grouped_estimate(measured: dict[int, dict[str, dict[str, float]]]) -> None:
    """The paper grid's core-hours: the quiet table, and scaled by the grouped speed-ups.

    For every measured K > 1 it prints the quiet machine's table (runs alone) times the measured
    K ratios (``costs._MS_PER_STEP_GROUPED[K]``), then the grid's training core-hours with every
    run costed at its group's size under the default ``--group-size``, as
    :func:`~tutorial_rl.experiments.costs.estimate_wall_time` does (4 α × 7 seeds = 28 for a
    mitigated configuration, 7 for a vanilla one).
    """
    from tutorial_rl.experiments.config import DEFAULT_GROUP_SIZE
    from tutorial_rl.experiments.runner import group_units

    base = min(measured)
    tables = {k: {cell: {v: round(_MS_PER_STEP[cell][v] * measured[k][cell][v] / ms, 2)
                         for v, ms in row.items()} for cell, row in measured[base].items()}
              for k in measured if k > base}
    for k, table in tables.items():
        print(f"\nthe quiet machine's table (runs alone) x the measured K = {k} ratios "
              f"(for costs._MS_PER_STEP_GROUPED[{k}]):")
        for cell, row in table.items():
            print(f"    {cell!r}: {row},")
    if not tables or len(measured[base]) * 5 != len(PAPER_CELLS):
        return
    seconds = 0.0
    for unit in group_units(PROFILES["paper"].runs(), DEFAULT_GROUP_SIZE):
        sizes = [k for k in tables if k <= len(unit)]
        table = tables[max(sizes)] if sizes else _MS_PER_STEP
        for spec in unit:
            per_step = table[f"{spec.algo}/{spec.env}"]
            seconds += spec.steps * per_step.get(spec.variant, per_step["se-vanilla"]) / 1000
    print(f"\npaper grid, training core-hours: alone {grid_core_hours(_MS_PER_STEP):.1f}, "
          + ", ".join(f"every run at K = {k} {grid_core_hours(t):.1f}" for k, t in tables.items())
          + f", groups of --group-size {DEFAULT_GROUP_SIZE} {seconds / 3600:.1f}")


def pad_or_group(k: int = 28, steps: int = 200) -> None:
    """Seeker sets of K runs: one projection call on padded sets vs one call per row count."""
    import numpy as np

    from tutorial_rl.envs.vector import TaskVectorEnv
    from tutorial_rl.projection import InfeasibleSetError, project_polytope

    vec = TaskVectorEnv("tutorial_rl/Seeker-v0", k, safe_sets=True)
    vec.reset(seed=list(range(k)))
    rng = np.random.default_rng(0)
    padded = grouped = 0.0
    calls = 0
    for _ in range(steps):
        A, b, count = vec.safe_action_sets()
        u = rng.uniform(-2.0, 2.0, (k, 2))
        tensors = [torch.from_numpy(x) for x in (u, A, b)]
        try:
            start = time.perf_counter()
            project_polytope(*tensors)
            mid = time.perf_counter()
            for c in np.unique(count):
                rows = np.flatnonzero(count == c)
                project_polytope(*(torch.from_numpy(np.ascontiguousarray(x)) for x in
                                   (u[rows], A[rows, :c], b[rows, :c])))
            padded, grouped = padded + mid - start, grouped + time.perf_counter() - mid
            calls += 1
        except InfeasibleSetError:
            pass
        vec.step(rng.uniform(-0.2, 0.2, (k, 2)))
    print(f"\nseeker, {k} runs' sets (row counts {count.min()}-{count.max()}), ms per group-step "
          f"over {calls} steps: padded {padded / calls * 1e3:.2f}, grouped by row count "
          f"{grouped / calls * 1e3:.2f}")


PAPER_CELLS = [(e, a, v) for e in ENVS for a in ("td3", "a2c") for v in VARIANTS
               if v != "unsafe"]

if __name__ == "__main__":
    main()

"""The statistics of the paper's Section 8, as DataFrames (Chapter 8, chapters/08_experiments.py).

Conventions (the paper's, after Agarwal et al. 2021, "Deep RL at the edge of the statistical
precipice"):

- A run's *score* is the mean undiscounted task return of its deterministic policy over the
  evaluation episodes (10 in the paper); one score per training seed.
- Final performance of a configuration (task × algorithm × variant × α) is the interquartile mean
  IQM = mean of the middle 50 % of the scores (``scipy.stats.trim_mean(x, 0.25)``: with 7 seeds
  the lowest and highest score are dropped), with a 95 % percentile *stratified bootstrap*
  confidence interval from rliable (one task per configuration, so the strata are trivial).
- Significance (:mod:`~tutorial_rl.experiments.significance`): per task × algorithm, a
  Kruskal-Wallis H test across the configurations, then Dunn's pairwise tests with
  Bonferroni-adjusted p-values (scikit-posthocs).

Every function takes the tables of :func:`load_runs` / :func:`load_curves`, so a chapter can use
them on a committed sweep folder without the command line.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
import scipy.stats

if TYPE_CHECKING:
    from tutorial_rl.experiments.references import Reference

__all__ = ["CONFIG", "GROUP", "add_normalised", "aggregate_performance", "compute_cost",
           "curve_bands", "final_performance", "in_cells", "interventions", "iqm", "load_curves",
           "load_failures", "load_runs", "markdown_table", "normalised_performance"]

#: The columns that identify a configuration; ``config`` is its readable label.
GROUP: list[str] = ["env", "algo", "variant", "alpha"]
CONFIG = "config"


def _label(variant: str, alpha: float | None) -> str:
    return variant if alpha is None or (isinstance(alpha, float) and math.isnan(alpha)) \
        else f"{variant} α={alpha:g}"


def _done_records(sweep_dir: str | Path, name: str) -> list[dict]:
    runs = Path(sweep_dir) / "runs"
    return [json.loads(p.read_text()) for p in sorted(runs.glob(f"*/{name}"))]


def load_runs(sweep_dir: str | Path) -> pd.DataFrame:
    """One row per finished run (``done.json``): its configuration, score and costs.

    Columns: key, env, algo, variant, alpha (NaN for vanilla variants), config, seed, steps,
    score (mean evaluation return), eval_interventions (per episode, mean),
    train_interventions (total), train_intervention_rate (per step), train_episodes,
    train_violations and eval_violations (constraint violations in training and evaluation;
    a safeguarded run must have none), train_wall_s, eval_wall_s, wall_s (training, its share
    of its group's when grouped, plus evaluation).
    """
    rows = []
    for rec in _done_records(sweep_dir, "done.json"):
        spec, ev, tr = rec["spec"], rec["evaluation"], rec["training"]
        rows.append({
            "key": rec["key"], "env": spec["env"], "algo": spec["algo"],
            "variant": spec["variant"],
            "alpha": np.nan if spec["alpha"] is None else float(spec["alpha"]),
            CONFIG: _label(spec["variant"], spec["alpha"]), "seed": spec["seed"],
            "steps": spec["steps"], "score": ev["mean_return"],
            "eval_interventions": float(np.mean(ev["interventions_per_episode"])),
            "train_interventions": tr["interventions"],
            "train_intervention_rate": tr["interventions"] / tr["steps"],
            "train_episodes": tr["episodes"],
            "train_violations": int(tr["constraint_violations"]),
            "eval_violations": int(ev["constraint_violations"]),
            "train_wall_s": tr["wall_time_s"],
            "eval_wall_s": rec["evaluation_wall_time_s"],
            # the run's own compute: records of grouped runs written before group_size was
            # recorded hold the group's elapsed time in wall_time_s, so count training share
            # plus evaluation for every run (set-up, well under a second, is left out)
            "wall_s": tr["wall_time_s"] + rec["evaluation_wall_time_s"]})
    columns = ["key", *GROUP, CONFIG, "seed", "steps", "score", "eval_interventions",
               "train_interventions", "train_intervention_rate", "train_episodes",
               "train_violations", "eval_violations", "train_wall_s", "eval_wall_s", "wall_s"]
    return pd.DataFrame(rows, columns=columns)


def load_failures(sweep_dir: str | Path) -> pd.DataFrame:
    """One row per failed run (``failed.json``): key and the error's last line."""
    rows = [{"key": r["key"], "error": r["error"]} for r in _done_records(sweep_dir, "failed.json")]
    return pd.DataFrame(rows, columns=["key", "error"])


def load_curves(sweep_dir: str | Path, points: int = 50, window: int = 5) -> pd.DataFrame:
    """Training curves of the finished runs on a common grid of ``points`` environment steps.

    Each run's completed-episode returns (``progress.csv``) are smoothed by a moving average over
    ``window`` episodes, placed at the step where the episode ended, and linearly interpolated onto
    ``linspace(steps/points, steps, points)``; grid steps before the first episode end are NaN.
    Long format: GROUP, config, seed, step, episode_return.
    """
    runs = load_runs(sweep_dir)
    frames = []
    for run in runs.itertuples(index=False):
        progress = pd.read_csv(Path(sweep_dir) / "runs" / run.key / "progress.csv")
        done = progress[progress["complete"] == 1]
        grid = np.linspace(run.steps / points, run.steps, points)
        if done.empty:
            values = np.full(points, np.nan)
        else:
            smooth = done["episode_return"].rolling(window, min_periods=1).mean().to_numpy()
            values = np.interp(grid, done["step"].to_numpy(), smooth, left=np.nan)
        frames.append(pd.DataFrame({
            "env": run.env, "algo": run.algo, "variant": run.variant, "alpha": run.alpha,
            CONFIG: run.config, "seed": run.seed, "step": grid, "episode_return": values}))
    columns = [*GROUP, CONFIG, "seed", "step", "episode_return"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def in_cells(table: pd.DataFrame, cells: Sequence[tuple[str, str]]) -> pd.DataFrame:
    """The rows of ``table`` whose (env, algo) is one of ``cells`` (Chapter 8 shows only the
    finished task × algorithm cells of a grid that is still running)."""
    keep = pd.MultiIndex.from_frame(table[["env", "algo"]]).isin(list(cells))
    return table[keep].reset_index(drop=True)


def iqm(scores: Sequence[float] | np.ndarray) -> float:
    """Interquartile mean: the mean of the middle 50 % (rliable's ``metrics.aggregate_iqm``)."""
    from rliable import metrics

    return float(metrics.aggregate_iqm(np.asarray(scores, dtype=float)))


def _groups(table: pd.DataFrame, by: list[str]) -> pd.core.groupby.DataFrameGroupBy:
    # dropna=False: vanilla variants have alpha NaN and must stay in the tables
    return table.groupby(by, dropna=False, sort=True)


def _iqm_interval(matrix: np.ndarray, reps: int, confidence: float, seed: int
                  ) -> tuple[float, float, float]:
    """IQM of a (runs × tasks) score matrix with rliable's stratified bootstrap interval (runs
    resampled within each task); returns (iqm, low, high)."""
    from rliable import library as rly
    from rliable import metrics

    # rliable draws its resampling indices from numpy's *global* generator (random_state
    # only reaches arch), so seed that one and restore it: reproducible, no side effect
    global_state = np.random.get_state()  # noqa: NPY002
    np.random.seed(seed)  # noqa: NPY002
    try:
        with warnings.catch_warnings():  # arch warns about degenerate resamples of tiny n
            warnings.simplefilter("ignore")
            point, interval = rly.get_interval_estimates(
                {"x": matrix}, lambda x: np.array([metrics.aggregate_iqm(x)]), reps=reps,
                confidence_interval_size=confidence, random_state=np.random.RandomState(seed))
    finally:
        np.random.set_state(global_state)  # noqa: NPY002
    return float(point["x"][0]), float(interval["x"][0, 0]), float(interval["x"][1, 0])


def final_performance(runs: pd.DataFrame, reps: int = 5_000, confidence: float = 0.95,
                      seed: int = 0, column: str = "score") -> pd.DataFrame:
    """IQM of the scores per configuration with rliable's stratified bootstrap CI.

    Columns: GROUP, config, n (training seeds), iqm, ci_low, ci_high, mean, std. ``reps``
    bootstrap resamples (rliable's default, 50,000, takes ~5 s per configuration; 5,000 moves the
    CI's ends by about 1 % of its width). ``column``: the score column (``score_norm`` for
    normalised scores, :func:`add_normalised`).
    """
    rows = []
    for values, group in _groups(runs, [*GROUP, CONFIG]):
        scores = group[column].to_numpy(dtype=float)
        # one task per configuration: (runs × 1), so the strata are trivial
        point, low, high = _iqm_interval(scores[:, None], reps, confidence, seed)
        rows.append({**dict(zip([*GROUP, CONFIG], values, strict=True)), "n": len(scores),
                     "iqm": point, "ci_low": low, "ci_high": high,
                     "mean": float(np.mean(scores)),
                     "std": float(np.std(scores, ddof=1)) if len(scores) > 1 else 0.0})
    return pd.DataFrame(rows, columns=[*GROUP, CONFIG, "n", "iqm", "ci_low", "ci_high", "mean",
                                       "std"])


def add_normalised(runs: pd.DataFrame, references: Mapping[str, Reference]) -> pd.DataFrame:
    """``runs`` with a ``score_norm`` column: 0 = zero action, 1 = reference controller
    (:func:`~tutorial_rl.experiments.references.normalise`)."""
    from tutorial_rl.experiments.references import normalise

    return runs.assign(score_norm=normalise(runs, dict(references)))


def normalised_performance(runs: pd.DataFrame, references: Mapping[str, Reference],
                           reps: int = 5_000, confidence: float = 0.95, seed: int = 0
                           ) -> pd.DataFrame:
    """Per configuration: the normalised IQM and its rliable CI, as columns iqm_norm,
    ci_low_norm, ci_high_norm beside GROUP and config (merge it onto
    :func:`final_performance`)."""
    table = final_performance(add_normalised(runs, references), reps, confidence, seed,
                              column="score_norm")
    return table[[*GROUP, CONFIG, "iqm", "ci_low", "ci_high"]].rename(
        columns={"iqm": "iqm_norm", "ci_low": "ci_low_norm", "ci_high": "ci_high_norm"})


def aggregate_performance(runs: pd.DataFrame, references: Mapping[str, Reference],
                          reps: int = 5_000, confidence: float = 0.95, seed: int = 0
                          ) -> pd.DataFrame:
    """Normalised IQM across the tasks per algorithm × configuration (same α on every task),
    with rliable's *stratified* bootstrap CI: runs resampled within each task (Agarwal et al.
    2021, the aggregate of their figure 1). A configuration enters only where it has the same
    number of seeds on every task of the table (rliable's runs × tasks matrix).

    Columns: algo, variant, alpha, config, tasks, n (runs per task), iqm_norm, ci_low_norm,
    ci_high_norm.
    """
    table = add_normalised(runs, references)
    envs = sorted(table["env"].unique())
    rows = []
    for (algo, variant, alpha, config), group in _groups(
            table, ["algo", "variant", "alpha", CONFIG]):
        per_task = [group.loc[group["env"] == e].sort_values("seed")["score_norm"].to_numpy(float)
                    for e in envs]
        sizes = {len(s) for s in per_task}
        if len(sizes) != 1 or 0 in sizes:
            continue  # missing on a task, or unequal seeds: no runs × tasks matrix
        point, low, high = _iqm_interval(np.column_stack(per_task), reps, confidence, seed)
        rows.append({"algo": algo, "variant": variant, "alpha": alpha, CONFIG: config,
                     "tasks": len(envs), "n": sizes.pop(), "iqm_norm": point,
                     "ci_low_norm": low, "ci_high_norm": high})
    return pd.DataFrame(rows, columns=["algo", "variant", "alpha", CONFIG, "tasks", "n",
                                       "iqm_norm", "ci_low_norm", "ci_high_norm"])


def _mean_interval(values: np.ndarray, reps: int, confidence: float, seed: int
                   ) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean over seeds. It resamples the observed values, so
    it stays within their range: a count's interval never reaches below zero."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return float(values.mean()), float(values.mean())
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(reps, len(values)))].mean(axis=1)
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def interventions(runs: pd.DataFrame, reps: int = 2_000, confidence: float = 0.95,
                  seed: int = 0) -> pd.DataFrame:
    """Safeguard interventions per configuration over seeds -- the paper's Table A.9 rows:
    during training (total, and per step) and at evaluation (per episode). Each has its mean and
    std; the rate and the per-episode count also a 95 % percentile bootstrap interval of the mean
    (``*_low``, ``*_high``; non-negative, unlike mean ± std, and what the figures draw)."""
    agg = _groups(runs, [*GROUP, CONFIG]).agg(
        n=("score", "size"), train_total=("train_interventions", "mean"),
        train_total_std=("train_interventions", "std"),
        train_rate=("train_intervention_rate", "mean"),
        eval_per_episode=("eval_interventions", "mean"),
        eval_per_episode_std=("eval_interventions", "std")).reset_index()
    for column, source in (("train_rate", "train_intervention_rate"),
                           ("eval_per_episode", "eval_interventions")):
        bounds = [_mean_interval(group[source].to_numpy(), reps, confidence, seed)
                  for _, group in _groups(runs, [*GROUP, CONFIG])]
        agg[f"{column}_low"] = [low for low, _ in bounds]
        agg[f"{column}_high"] = [high for _, high in bounds]
    return agg


def compute_cost(runs: pd.DataFrame) -> pd.DataFrame:
    """Wall time per run (one worker, one torch thread) per task × algorithm × variant: mean
    training and evaluation seconds, ms per training step, and the total in core-hours."""
    table = runs.assign(ms_per_step=1000 * runs["train_wall_s"] / runs["steps"])
    agg = _groups(table, ["env", "algo", "variant"]).agg(
        runs=("wall_s", "size"), steps=("steps", "mean"), train_s=("train_wall_s", "mean"),
        eval_s=("eval_wall_s", "mean"), ms_per_step=("ms_per_step", "mean"),
        core_hours=("wall_s", "sum"))
    agg["core_hours"] /= 3600
    return agg.reset_index()


def curve_bands(curves: pd.DataFrame, stat: Literal["iqm", "mean"] = "iqm", reps: int = 2_000,
                confidence: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Across-seed center (IQM or mean) of the training curves with a percentile bootstrap band.

    The bootstrap resamples whole runs (seeds), vectorised over the step grid; a grid step is
    kept only where every seed has a value. Columns: GROUP, config, step, center, low, high, n.
    """
    rng = np.random.default_rng(seed)
    center = (lambda x, axis: scipy.stats.trim_mean(x, 0.25, axis=axis)) if stat == "iqm" \
        else (lambda x, axis: np.mean(x, axis=axis))
    frames = []
    for values, group in _groups(curves, [*GROUP, CONFIG]):
        wide = group.pivot_table(index="seed", columns="step", values="episode_return",
                                 dropna=False)
        wide = wide.loc[:, wide.notna().all(axis=0)]
        if wide.empty:
            continue
        matrix = wide.to_numpy(float)  # seeds × steps
        boot = matrix[rng.integers(0, len(matrix), (reps, len(matrix)))]  # reps × seeds × steps
        stats = center(boot, 1)
        tail = (1 - confidence) / 2 * 100
        frames.append(pd.DataFrame({
            **dict(zip([*GROUP, CONFIG], values, strict=True)), "step": wide.columns.to_numpy(),
            "center": center(matrix, 0), "low": np.percentile(stats, tail, axis=0),
            "high": np.percentile(stats, 100 - tail, axis=0), "n": len(matrix)}))
    columns = [*GROUP, CONFIG, "step", "center", "low", "high", "n"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def markdown_table(table: pd.DataFrame, digits: int = 3) -> str:
    """A GitHub-flavoured markdown table (no tabulate dependency); floats to ``digits``
    significant digits, NaN as an empty cell."""
    def cell(v: object) -> str:
        if isinstance(v, float | np.floating):
            return "" if math.isnan(v) else f"{v:.{digits}g}"
        return str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(map(str, table.columns)) + " |",
             "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |"
              for row in table.itertuples(index=False)]
    return "\n".join(lines)

"""``tutorial-rl sweep`` and ``tutorial-rl report`` (Chapter 8, chapters/08_experiments.py).

::

    tutorial-rl sweep --profile quick --jobs 2 --out runs/quick
    tutorial-rl sweep --profile paper --jobs 64 --out runs/paper --launcher submitit \\
        --slurm-partition cpu --slurm-time 180 --only algo=td3
    tutorial-rl report runs/quick --out runs/quick/report

Each ``add_*_parser(subparsers)`` adds one subcommand to an argparse ``subparsers`` object and sets
``run`` to its handler, which returns the exit code: 0 success, 1 some runs failed, 2 bad input
(an unknown profile, setting, filter value or folder; one line on stderr, nothing run).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from tutorial_rl.agents.common import ConfigError, resolve_device
from tutorial_rl.experiments.config import (
    DEFAULT_GROUP_SIZE,
    FILTER_KEYS,
    PROFILES,
    ExperimentProfile,
    ProfileError,
    get_profile,
    parse_assignments,
    select_runs,
)
from tutorial_rl.experiments.costs import cost_table_mismatches, estimate_wall_time
from tutorial_rl.experiments.runner import LAUNCHERS, RUNS_DIR, SWEEP_FILE, SlurmOptions, sweep

__all__ = ["OPTIONAL_TABLES", "REPORT_TABLES", "add_report_parser", "add_sweep_parser",
           "read_report", "run_report", "run_sweep", "write_report"]


#: ``--device`` of ``train`` and ``sweep``.
DEVICE_HELP = ("where the agents' tensors live: cpu (default), cuda or cuda:N; networks, "
               "optimiser states, minibatches, rollouts and the updates' projections run there, "
               "the numpy environments and the safeguard stay on the CPU (CUDA: supported by "
               "construction, untested on the course's machines)")


def _error(message: str) -> int:
    print(f"tutorial-rl: error: {message}", file=sys.stderr)
    return 2


def add_sweep_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``sweep`` to ``subparsers`` (``parser.add_subparsers(...)``); returns its parser."""
    p = subparsers.add_parser(
        "sweep", help="run every missing run of an experiment grid (resumable)",
        description="Run every unfinished run of a profile's grid in parallel; rerunning the "
                    "same command resumes (finished runs are skipped, interrupted ones redone).")
    p.add_argument("--profile", required=True,
                   help=f"experiment profile: {', '.join(PROFILES)}")
    p.add_argument("--out", required=True, help="sweep folder (created; resumed if it exists)")
    p.add_argument("--jobs", type=int, default=1,
                   help="parallel runs, one core each (submitit on SLURM: array parallelism)")
    p.add_argument("--launcher", default="local", choices=list(LAUNCHERS),
                   help="local: joblib process pool; submitit: SLURM, or local processes "
                        "where there is no SLURM")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a profile setting, e.g. --set seeds=3 --set steps=1000 "
                        "--set alphas=[0.1,1]")
    p.add_argument("--only", action="append", default=[], metavar="KEY=VALUE",
                   help=f"run a slice of the grid; keys: {', '.join(FILTER_KEYS)} "
                        f"(e.g. --only env=pendulum --only variant=se-vanilla,sp-vanilla)")
    p.add_argument("--confirm", default=None, metavar="GRID",
                   help="a confirmation sweep of the finished sweep GRID: every variant again, "
                        "mitigated ones at the alpha chosen on GRID's seeds, on fresh seeds "
                        "(report GRID with --confirmation OUT to test on them)")
    p.add_argument("--dry-run", action="store_true",
                   help="list the runs still to do and the estimated wall time; run nothing")
    p.add_argument("--checkpoint-every", type=_steps_or_auto, default=None, metavar="N",
                   help="environment steps between a run's exact checkpoints; a rerun continues "
                        "from them (default auto: about every 10 minutes of work; 0: none)")
    p.add_argument("--group-size", type=int, default=DEFAULT_GROUP_SIZE, metavar="K",
                   help="train up to K runs that differ only in their seed and alpha in one "
                        "process: one vector environment, one projection call and one stacked "
                        f"update per step for all of them (default {DEFAULT_GROUP_SIZE}, the "
                        "paper grid's 4 alphas x 7 seeds of a configuration; 1: every run alone)")
    p.add_argument("--device", default="cpu", metavar="DEVICE", help=DEVICE_HELP)
    p.add_argument("--slurm-partition", default=None, help="SLURM partition (submitit)")
    p.add_argument("--slurm-time", type=int, default=120,
                   help="time limit of one SLURM job in minutes (default 120)")
    p.add_argument("--slurm-cpus", type=int, default=1, help="CPUs per SLURM job (default 1)")
    p.set_defaults(run=run_sweep)
    return p


def _steps_or_auto(text: str) -> int | None:
    """``--checkpoint-every``: a step count >= 0, or ``auto`` (``None``)."""
    if text == "auto":
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a step count or 'auto', got {text!r}") \
            from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _dry_run(profile: ExperimentProfile, out: Path, only: list[str], jobs: int,
             group_size: int = DEFAULT_GROUP_SIZE, device: str = "cpu") -> int:
    from tutorial_rl.experiments.runner import run_status

    specs = select_runs(profile, only)
    todo = [s for s in specs if run_status(out / RUNS_DIR / s.key) != "done"]
    for spec in todo:
        print(spec.key)
    hours = estimate_wall_time(todo, jobs, group_size) / 3600
    print(f"profile {profile.name}: {len(specs)} runs selected, {len(specs) - len(todo)} done, "
          f"{len(todo)} to run; estimated {hours:.2f} h on {jobs} core(s) with --group-size "
          f"{group_size} (measured per-step costs of a 2-core development machine)",
          file=sys.stderr)
    if device != "cpu":
        print(f"the estimate is for CPU cores; --device {device} has not been measured",
              file=sys.stderr)
    mismatches = cost_table_mismatches(todo)
    if mismatches:
        print("note: the per-step costs were measured with the default networks and minibatches;"
              " these cells use others, so their runs cost more (wider) or less than estimated: "
              + "; ".join(f"{cell}: {sizes}" for cell, sizes in mismatches.items()),
              file=sys.stderr)
    return 0


def _sweep_command(args: argparse.Namespace) -> list[str]:
    """The command line that reproduces ``args`` (for provenance.json; works in-process too)."""
    words = ["tutorial-rl", "sweep", "--profile", args.profile, "--out", str(args.out),
             "--jobs", str(args.jobs), "--launcher", args.launcher]
    if args.checkpoint_every is not None:
        words += ["--checkpoint-every", str(args.checkpoint_every)]
    if args.group_size != DEFAULT_GROUP_SIZE:
        words += ["--group-size", str(args.group_size)]
    if args.device != "cpu":
        words += ["--device", args.device]
    if args.confirm is not None:
        words += ["--confirm", str(args.confirm)]
    for flag, values in (("--set", args.overrides), ("--only", args.only)):
        for value in values:
            words += [flag, shlex.quote(value)]
    if args.launcher == "submitit":
        words += ["--slurm-time", str(args.slurm_time), "--slurm-cpus", str(args.slurm_cpus)]
        words += ["--slurm-partition", args.slurm_partition] if args.slurm_partition else []
    return words


def run_sweep(args: argparse.Namespace) -> int:
    """Handler of ``tutorial-rl sweep``: 0 all runs finished, 1 some failed, 2 bad input."""
    try:
        overrides = dict(parse_assignments(args.overrides, "--set"))
        profile = get_profile(args.profile, overrides)  # validates everything before any run
        if args.confirm is not None:
            from tutorial_rl.experiments.confirmation import (
                CONFIRMATION_SETTINGS,
                confirmation_settings,
            )

            clash = sorted(set(overrides) & set(CONFIRMATION_SETTINGS))
            if clash:
                raise ProfileError(f"--confirm sets {', '.join(clash)} itself; drop --set "
                                   f"{clash[0]}=...")
            overrides.update(confirmation_settings(args.confirm, profile))
            profile = get_profile(args.profile, overrides)
        if args.dry_run:
            if args.jobs < 1:
                raise ProfileError(f"jobs must be an integer >= 1; got {args.jobs}")
            try:
                device = str(resolve_device(args.device, "--device"))
            except ConfigError as exc:
                raise ProfileError(str(exc)) from None
            return _dry_run(profile, Path(args.out), list(args.only), args.jobs,
                            args.group_size, device)
        summary = sweep(profile, args.out, jobs=args.jobs, launcher=args.launcher,
                        overrides=overrides, only=args.only,
                        slurm=SlurmOptions(args.slurm_partition, args.slurm_time,
                                           args.slurm_cpus),
                        command=_sweep_command(args), checkpoint_every=args.checkpoint_every,
                        group_size=args.group_size, device=args.device)
    except ProfileError as exc:
        return _error(str(exc))
    print(summary.describe())
    return summary.exit_code


def add_report_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``report`` to ``subparsers``; returns its parser."""
    p = subparsers.add_parser(
        "report", help="tables and figures of a sweep (IQM with CIs, curves, tests, costs)",
        description="Write CSV tables, PNG figures and report.md for a sweep folder.")
    p.add_argument("sweep_dir", help="a folder written by 'tutorial-rl sweep'")
    p.add_argument("--out", default=None, help="output folder (default: SWEEP_DIR/report)")
    p.add_argument("--reps", type=int, default=5_000,
                   help="bootstrap resamples of the confidence intervals (default 5000)")
    p.add_argument("--alphas", default="best", choices=["best", "all"],
                   help="significance tests on the best α per variant (the paper) or on all")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    p.add_argument("--confirmation", default=None, metavar="DIR",
                   help="a confirmation sweep of SWEEP_DIR (tutorial-rl sweep --confirm): the "
                        "findings then choose alpha on SWEEP_DIR's seeds and test on DIR's")
    p.add_argument("--references", default="auto", metavar="PATH",
                   help="reference scores (tutorial-rl reference) for reference lines and "
                        "normalised scores; default: SWEEP_DIR/../reference/reference.json "
                        "when it exists; 'none' for raw returns only")
    p.set_defaults(run=run_report)
    return p


def run_report(args: argparse.Namespace) -> int:
    """Handler of ``tutorial-rl report``: 0 written, 2 bad input (no sweep, no finished run)."""
    from tutorial_rl.experiments.references import ReferenceFileError

    references = None if args.references == "none" else args.references
    try:
        path = write_report(args.sweep_dir, args.out, reps=args.reps, alphas=args.alphas,
                            seed=args.seed, references=references,
                            confirmation=args.confirmation)
    except (ProfileError, ReferenceFileError, FileNotFoundError) as exc:
        return _error(str(exc))
    print(f"report of {args.sweep_dir} -> {path}")
    print(_resolve_references(Path(args.sweep_dir), references)[1].replace("`", ""))
    return 0


def _resolve_references(sweep_dir: Path, references: str | Path | None
                        ) -> tuple[dict[str, Any] | None, str]:
    """(references or None, a sentence for the report saying which were used)."""
    from tutorial_rl.experiments.references import default_reference_path, load_references

    if references is None:
        return None, "No reference scores used (--references none): raw returns only."
    if references == "auto":
        path = default_reference_path(sweep_dir)
        if not path.is_file():
            return None, (f"No reference scores used (no {path}; write it with `tutorial-rl "
                          f"reference`): raw returns only, and finding 3 cannot reach "
                          f"\"matches\".")
    else:
        path = Path(references)
    refs = load_references(path)  # FileNotFoundError / ReferenceFileError: clear messages
    return refs, (f"Reference scores from `{path}`: 0 = zero action, 1 = reference "
                  f"controller ({', '.join(sorted(refs))}).")


def write_report(sweep_dir: str | Path, out: str | Path | None = None, reps: int = 5_000,
                 alphas: str = "best", seed: int = 0,
                 references: str | Path | None = "auto",
                 confirmation: str | Path | None = None) -> Path:
    """Write the report of a sweep: CSV tables, PNG figures and ``report.md``; returns its path.

    Tables: runs (one row per run), final_performance (IQM, 95 % CI), interventions, kruskal,
    dunn, compute_cost, curves (bands), findings (the paper's four, :mod:`.findings`). Figures:
    final_performance, training_curves (best α per variant), interventions.

    With reference scores (``references``: a path, ``"auto"`` for
    :func:`~.references.default_reference_path` where it exists, None for none): runs gets
    ``score_norm``, final_performance ``iqm_norm``/``ci_low_norm``/``ci_high_norm``, two more
    tables (references; aggregate_normalised, the normalised IQM across tasks), the performance
    figures reference lines, and finding 3 its equivalence test.

    With a ``confirmation`` sweep (:mod:`~tutorial_rl.experiments.confirmation`) the findings
    choose α on this sweep's seeds and test on the confirmation's fresh seeds; every other table
    stays this sweep's.

    :raises ProfileError: ``sweep_dir`` is not a sweep folder or holds no finished run.
    :raises FileNotFoundError, ReferenceFileError: an explicit ``references`` file is missing
        or malformed.
    """
    import json

    import matplotlib.pyplot as plt
    import pandas as pd

    from tutorial_rl.experiments import plots, stats
    from tutorial_rl.experiments.findings import check_findings

    sweep_dir = Path(sweep_dir)
    if not (sweep_dir / SWEEP_FILE).is_file():
        raise ProfileError(f"{sweep_dir} is not a sweep folder (no {SWEEP_FILE})")
    if isinstance(reps, bool) or not isinstance(reps, int) or reps < 1:
        raise ProfileError(f"reps must be an integer >= 1; got {reps!r}")
    out = Path(out) if out is not None else sweep_dir / "report"
    runs = stats.load_runs(sweep_dir)
    if runs.empty:
        raise ProfileError(f"{sweep_dir} holds no finished run (no runs/*/done.json)")
    refs, refs_line = _resolve_references(sweep_dir, references)
    failures = stats.load_failures(sweep_dir)
    final = stats.final_performance(runs, reps=reps, seed=seed)
    extra: dict[str, Any] = {}
    if refs is not None:
        runs = stats.add_normalised(runs, refs)
        final = final.merge(stats.normalised_performance(runs, refs, reps=reps, seed=seed),
                            on=[*stats.GROUP, stats.CONFIG], how="left")
        extra["references"] = _references_table(refs)
        extra["aggregate_normalised"] = stats.aggregate_performance(runs, refs, reps=reps,
                                                                    seed=seed)
    kruskal, dunn = stats.significance(runs, alphas=alphas)  # type: ignore[arg-type]
    bands = stats.curve_bands(stats.load_curves(sweep_dir), seed=seed)
    selection: Any = "split"
    tested = runs
    if confirmation is not None:
        from tutorial_rl.experiments.confirmation import load_confirmation

        fresh, selection = load_confirmation(sweep_dir, confirmation)
        if refs is not None:
            fresh = stats.add_normalised(fresh, refs)
        tested = pd.concat([runs, fresh], ignore_index=True)
    findings = check_findings(tested, refs, seed=seed, selection=selection)
    tables = {"runs": runs, "final_performance": final,
              "interventions": stats.interventions(runs), "kruskal": kruskal, "dunn": dunn,
              "compute_cost": stats.compute_cost(runs), "curves": bands, "failures": failures,
              "findings": findings, **extra}
    out.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        table.to_csv(out / f"{name}.csv", index=False)
    figures = {
        "final_performance": plots.figure_grid(final, plots.plot_final_performance,
                                               "Final performance (IQM, 95 % bootstrap CI)",
                                               references=refs),
        "training_curves": plots.figure_grid(bands, plots.plot_training_curves,
                                             "Training return (IQM over seeds, 95 % band)",
                                             final=final, references=refs),
        "interventions": plots.figure_grid(tables["interventions"], plots.plot_interventions,
                                           "Interventions per evaluation episode"),
    }
    for name, fig in figures.items():
        fig.savefig(out / f"{name}.png", dpi=120)
        plt.close(fig)

    meta = json.loads((sweep_dir / SWEEP_FILE).read_text())
    prov_path = sweep_dir / "provenance.json"
    prov = json.loads(prov_path.read_text()) if prov_path.is_file() else {}
    md = stats.markdown_table
    drop = ["alpha"]  # the config label carries α
    lines = [
        f"# Report of sweep `{sweep_dir}`", "",
        f"Profile `{meta['profile']}`, overrides `{json.dumps(meta['overrides'])}`, filters "
        f"`{' '.join(meta['only']) or 'none'}`. Produced by `{prov.get('command')}` at commit "
        f"`{(prov.get('commit') or 'unknown')[:10]}`{' (dirty)' if prov.get('dirty') else ''} "
        f"on {prov.get('machine', {}).get('cpu_count')} cores; last invocation "
        f"{prov.get('wall_time_s')} s.", "",
        f"{len(runs)} finished runs, {len(failures)} failed. Constraint violations: "
        f"{int(runs['train_violations'].sum())} in {int(runs['steps'].sum()):,} training steps, "
        f"{int(runs['eval_violations'].sum())} in evaluation.", "", refs_line, "",
        "## Final performance", "",
        "Score of a run: mean evaluation return of its deterministic policy over "
        f"{meta['settings']['eval_episodes']} episodes. IQM over training seeds with a 95 % "
        f"stratified bootstrap CI (rliable, {reps} resamples)"
        + ("; `_norm` columns: the same on normalised scores." if refs else "."), "",
        md(final.drop(columns=drop)), "", "![final performance](final_performance.png)", "",
    ]
    if refs is not None:
        lines += [
            "### Normalised scores across tasks", "",
            "Normalised score = (score − zero action) / (reference controller − zero action). "
            "IQM over every run of a configuration on all tasks (same α everywhere), with "
            "rliable's stratified bootstrap CI (runs resampled within each task).", "",
            md(extra["references"]), "", md(extra["aggregate_normalised"].drop(columns=drop)),
            "",
        ]
    lines += [
        "## Training curves", "",
        "Returns of completed training episodes (moving average over 5), IQM over seeds with a "
        "95 % bootstrap band; vanilla variants and the best α of each mitigated one.", "",
        "![training curves](training_curves.png)", "",
        "## Interventions", "",
        "Safeguard interventions: total during training (mean over seeds), per training step, "
        "and per evaluation episode.", "",
        md(tables["interventions"].drop(columns=drop)), "",
        "![interventions](interventions.png)", "",
        "## Significance", "",
        f"Kruskal-Wallis across configurations per task × algorithm ({alphas} α per variant), "
        "then Dunn's test with Bonferroni-adjusted p-values.", "",
        md(kruskal), "", md(dunn), "",
        "## The paper's four findings", "",
        "Tests on per-seed scores (two-sided Mann-Whitney U, Cliff's δ; finding 3 also TOST "
        "equivalence within ±0.1 normalised), Holm-adjusted within each finding. "
        + ("Where a cell chooses among several α or variants, the choice uses this sweep's "
           f"seeds and the test the fresh seeds of the confirmation sweep `{confirmation}` "
           if confirmation is not None else
           "Where a cell chooses among several α or variants, the choice uses the first half "
           "of the seeds and the test the other half ")
        + "(column `seeds`); `tutorial_rl.experiments.findings` states the protocol.", "",
        md(findings[["finding", "env", "algo", "verdict", "status", "seeds", "n",
                     "cliffs_delta", "p", "p_holm", "p_equiv_holm"]]), "",
        "## Compute cost", "",
        "Wall time per run on one worker with one torch thread.", "",
        md(tables["compute_cost"]), "",
    ]
    if not failures.empty:
        lines += ["## Failed runs", "", md(failures), ""]
    report = out / "report.md"
    report.write_text("\n".join(lines))
    return report


REPORT_TABLES = ("runs", "final_performance", "interventions", "kruskal", "dunn",
                 "compute_cost", "curves", "failures")
#: Tables a report has only since findings and references were added, or only with references.
OPTIONAL_TABLES = ("findings", "references", "aggregate_normalised")


def _references_table(refs: dict[str, Any]) -> Any:
    import pandas as pd

    return pd.DataFrame([{"env": r.env, "zero": r.zero, "controller": r.controller,
                          "zero_episodes": len(r.zero_returns),
                          "controller_episodes": len(r.controller_returns)}
                         for r in refs.values()])


def read_report(sweep_dir: str | Path, folder: str = "report") -> dict[str, Any]:
    """The tables :func:`write_report` wrote, as DataFrames keyed by name (Chapter 8 reads the
    committed report instead of recomputing its bootstrap intervals in every book build);
    :data:`OPTIONAL_TABLES` are included where the report has them.

    :raises FileNotFoundError: naming the missing table and the command that writes it.
    """
    import pandas as pd

    out = Path(sweep_dir) / folder
    tables = {}
    for name in REPORT_TABLES:
        path = out / f"{name}.csv"
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: run `tutorial-rl report {sweep_dir}`")
        tables[name] = pd.read_csv(path)
    for name in OPTIONAL_TABLES:
        path = out / f"{name}.csv"
        if path.is_file():
            tables[name] = pd.read_csv(path)
    return tables


def main(argv: list[str] | None = None) -> int:
    """Standalone entry point (``python -m tutorial_rl.experiments.commands sweep ...``) until
    the subcommands are wired into ``tutorial-rl``."""
    parser = argparse.ArgumentParser(prog="tutorial-rl")
    sub = parser.add_subparsers(dest="command", required=True)
    add_sweep_parser(sub)
    add_report_parser(sub)
    args = parser.parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())

"""The report of a sweep: tables, figures and report.md (``tutorial-rl report``; Chapter 8,
chapters/08_experiments.py, reads the committed tables with :func:`read_report`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tutorial_rl.experiments.config import ProfileError
from tutorial_rl.experiments.sweep_folder import SWEEP_FILE

__all__ = ["OPTIONAL_TABLES", "REPORT_TABLES", "read_report", "resolve_references",
           "write_report"]


def resolve_references(sweep_dir: Path, references: str | Path | None
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

    from tutorial_rl.experiments import plots, stats
    from tutorial_rl.experiments.significance import significance

    sweep_dir = Path(sweep_dir)
    if not (sweep_dir / SWEEP_FILE).is_file():
        raise ProfileError(f"{sweep_dir} is not a sweep folder (no {SWEEP_FILE})")
    if isinstance(reps, bool) or not isinstance(reps, int) or reps < 1:
        raise ProfileError(f"reps must be an integer >= 1; got {reps!r}")
    out = Path(out) if out is not None else sweep_dir / "report"
    runs = stats.load_runs(sweep_dir)
    if runs.empty:
        raise ProfileError(f"{sweep_dir} holds no finished run (no runs/*/done.json)")
    refs, refs_line = resolve_references(sweep_dir, references)
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
    kruskal, dunn = significance(runs, alphas=alphas)  # type: ignore[arg-type]
    bands = stats.curve_bands(stats.load_curves(sweep_dir), seed=seed)
    from tutorial_rl.experiments.confirmation import sweep_findings

    if confirmation is not None and not (Path(confirmation) / SWEEP_FILE).is_file():
        raise ProfileError(f"--confirmation {confirmation}: not a sweep folder (no {SWEEP_FILE})")
    # per cell: the finished confirmation's seeds, the split elsewhere; each finding only where
    # the grid's runs it compares have all finished
    tested, findings = sweep_findings(sweep_dir, runs, refs, confirmation, seed=seed)
    confirmed, waiting = tested.selection, tested.waiting
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
        "then Dunn's test with Bonferroni-adjusted p-values. Configurations with the same score "
        "on every seed (identical by construction) are one sample, tested once.", "",
        md(kruskal), "", md(dunn), "",
        "## The paper's four findings", "",
        "Tests on per-seed scores (two-sided Mann-Whitney U, Cliff's δ; finding 3 also TOST "
        "equivalence within ±0.1 normalised), Holm-adjusted within each finding. "
        + "Where a cell chooses among several α or variants, the choice uses the first half "
        "of the seeds and the test the other half"
        + (f", except in the cells that the confirmation sweep `{confirmation}` has finished "
           f"({', '.join(f'{a}/{e}' for e, a in confirmed) or 'none yet'}): there the choice "
           "uses all of this sweep's seeds and the test the confirmation's fresh ones"
           + (f" (not finished yet: {', '.join(waiting)})" if waiting else "")
           if confirmation is not None else "")
        + " (column `seeds`); `tutorial_rl.experiments.findings` states the protocol.", "",
        md(findings[["finding", "env", "algo", "verdict", "status", "seeds", "n",
                     "cliffs_delta", "p", "p_holm", "p_equiv_holm"]]) if len(findings) else
        "No finding can be tested on this sweep alone: each compares variants of a task × "
        "algorithm cell that this sweep does not hold in full (a sweep of some variants only, or "
        "one still running). Pool it with the sweep that holds the others "
        "(`check_findings` on both runs tables, as chapter 9 does).", "",
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

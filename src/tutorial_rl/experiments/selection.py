"""Choosing α without biasing the test (Chapter 8, "The four findings"; used by
:mod:`tutorial_rl.experiments.findings`).

The paper reports each mitigated variant at its best α, chosen on the same seeds it is then
compared on. The maximum of several noisy IQMs is biased upwards (the winner's curse), so such a
comparison is optimistic for the variants with several α to choose from. Here a choice is made on
*selection seeds* and the comparison uses only the remaining *test seeds*, which played no part
in it (:func:`choose_configs`); :func:`chosen_configs` lists the α to run on fresh test seeds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import pandas as pd

from tutorial_rl.experiments.stats import CONFIG, iqm

__all__ = ["CellSelection", "Choice", "Selection", "cell_selection", "choose_configs",
           "chosen_configs", "seed_span", "split_seeds"]

Selection = Literal["split", "none"] | Sequence[int]
#: A selection per task × algorithm cell ((env, algo) -> Selection; cells not named: "split"),
#: e.g. where a confirmation sweep has finished some cells and not others.
CellSelection = Selection | Mapping[tuple[str, str], Selection]


def cell_selection(selection: CellSelection, env: str, algo: str) -> Selection:
    """The selection of one cell: ``selection`` itself, or its entry for (env, algo)."""
    if isinstance(selection, Mapping):
        return selection.get((env, algo), "split")
    return selection


def split_seeds(seeds: Sequence[int]) -> tuple[list[int], list[int]]:
    """(selection seeds, test seeds): the first ⌊n/2⌋ sorted seeds choose, the rest test."""
    ordered = sorted(set(int(s) for s in seeds))
    half = len(ordered) // 2
    return ordered[:half], ordered[half:]


@dataclass(frozen=True)
class Choice:
    """The configuration chosen for each role of a comparison, and the seeds to test on."""

    configs: dict[str, str]
    test_seeds: list[int]
    selection_seeds: list[int] = field(default_factory=list)
    note: str = ""

    def seeds_text(self) -> str:
        test = seed_span(self.test_seeds)
        return f"test {test}, chosen on {seed_span(self.selection_seeds)}" if self.selection_seeds \
            else test


def seed_span(seeds: Sequence[int]) -> str:
    """Seeds as text: "3-6" for a run of three or more, else "0,2"; "none" for none."""
    seeds = sorted(seeds)
    if seeds and seeds == list(range(seeds[0], seeds[-1] + 1)) and len(seeds) > 2:
        return f"{seeds[0]}-{seeds[-1]}"
    return ",".join(map(str, seeds)) or "none"


def _candidates(cell: pd.DataFrame, variants: Sequence[str]) -> list[str]:
    """Config labels of ``variants`` in ``cell``, in the order of ``variants`` then by α (which
    is also the order that breaks ties of the choice)."""
    rows = cell[cell["variant"].isin(variants)].drop_duplicates(CONFIG)
    rank = rows["variant"].map({v: i for i, v in enumerate(variants)})
    return list(rows.assign(_r=rank).sort_values(["_r", "alpha"], na_position="first")[CONFIG])


def choose_configs(cell: pd.DataFrame, roles: Mapping[str, Sequence[str]],
                   selection: Selection = "split") -> Choice | None:
    """Choose one configuration per role (a role is a set of variants, e.g. the SP-RL
    mitigations) of one task × algorithm table of runs, by the highest IQM of the scores.

    Where some role has several candidates (several α, or several variants), ``split`` chooses on
    the selection seeds and tests on the others (:func:`split_seeds`); ``none`` chooses on all
    seeds (the paper's best-of-α, optimistic); a list of seeds chooses on those seeds and tests
    on all others (for a design with extra test seeds run only at the chosen α). Returns None
    when a role has no run, or none on the selection seeds.
    """
    explicit = not isinstance(selection, str)
    if not explicit and selection not in ("split", "none"):
        raise ValueError(f"selection must be 'split', 'none' or a list of selection seeds; "
                         f"got {selection!r}")
    candidates = {role: _candidates(cell, variants) for role, variants in roles.items()}
    if any(not c for c in candidates.values()):
        return None
    seeds = sorted(set(int(s) for s in cell["seed"]))
    if all(len(c) == 1 for c in candidates.values()):
        return Choice({r: c[0] for r, c in candidates.items()}, seeds, note="nothing chosen")
    if selection == "none":
        choose_on, test, note = seeds, seeds, "chosen on the test seeds (optimistic)"
    elif explicit:
        chosen = {int(s) for s in selection}  # type: ignore[union-attr]
        choose_on = [s for s in seeds if s in chosen]
        test = [s for s in seeds if s not in chosen]
        note = "chosen on the selection seeds"
    else:
        choose_on, test = split_seeds(seeds)
        note = "chosen on the selection seeds"
    by_seed = cell[cell["seed"].isin(choose_on)]
    configs = {}
    for role, options in candidates.items():
        scores = {c: by_seed.loc[by_seed[CONFIG] == c, "score"] for c in options}
        scored = [c for c in options if len(scores[c])]
        if not scored:
            return None  # nothing to choose on
        configs[role] = max(scored, key=lambda c: iqm(scores[c]))  # ties: the first
    return Choice(configs, test, [] if selection == "none" else choose_on, note)


def chosen_configs(runs: pd.DataFrame, seeds: Sequence[int] | None = None) -> pd.DataFrame:
    """The α each variant would be tested at: per task × algorithm × variant, the configuration
    with the highest IQM on ``seeds`` (default: every seed of ``runs``), ties to the smallest α.
    Run these on fresh seeds and pass the old ones as ``selection`` to test without bias.

    Columns: env, algo, variant, alpha, config, n (seeds it was chosen on), iqm.
    """
    rows = []
    table = runs if seeds is None else runs[runs["seed"].isin(list(seeds))]
    for (env, algo, variant), cell in table.groupby(["env", "algo", "variant"], sort=True):
        options = _candidates(cell, [variant])
        best = max(options, key=lambda c: iqm(cell.loc[cell[CONFIG] == c, "score"]))
        chosen = cell[cell[CONFIG] == best]
        rows.append({"env": env, "algo": algo, "variant": variant,
                     "alpha": chosen["alpha"].iloc[0], CONFIG: best, "n": len(chosen),
                     "iqm": iqm(chosen["score"])})
    return pd.DataFrame(rows, columns=["env", "algo", "variant", "alpha", CONFIG, "n", "iqm"])

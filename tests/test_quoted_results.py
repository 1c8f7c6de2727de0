"""The statistics that the README, the introduction and chapter 9 quote in prose are those of the
committed report (results/paper/report): a new sweep or report that changes a verdict's numbers
fails here until the text is updated.

Chapter 8 prints its numbers from the report itself; these three texts are written by hand, so
each p-value ("p = 0.0012", "Holm 0.0024", "TOST p = 0.0012") and each Cliff's δ they quote must
be a value of ``findings.csv`` rounded to the digits shown, and each normalised score quoted as
"IQM a against b" or "a vs b" must be a normalised IQM of ``final_performance.csv`` or
``aggregate_normalised.csv``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "results" / "paper" / "report"
TEXTS = {
    "README.md": ("## What the experiments show so far", "\n## "),
    "chapters/intro.md": ("## What the paper found", "\n## "),
    "chapters/09_choosing.py": ("# ## Advice", "\n# %%"),
}
P_COLUMNS = ("p", "p_holm", "p_equiv", "p_equiv_holm", "p_noninf", "p_noninf_holm")
NUMBER = r"([−+-]?\d+\.\d+)"
P_QUOTE = re.compile(r"(?:\bp|\bHolm)\s*(?:p\s*)?=?\s*(\d\.\d+)")
DELTA_QUOTE = re.compile(r"δ\s*=\s*" + NUMBER)
PAIR_QUOTE = re.compile(r"(?<![\d.])(\d\.\d\d)(?:\s*\([^)]*\))?\s+(?:vs|against)\s+(\d\.\d\d)\b")


def _section(name: str) -> str:
    text = (ROOT / name).read_text(encoding="utf-8")
    start, end = TEXTS[name]
    if start not in text:
        raise AssertionError(f"{name} has no section {start!r}: update TEXTS in this test")
    body = text.split(start, 1)[1]
    return re.sub(r"\s+", " ", body.split(end, 1)[0].replace("\n# ", "\n"))


def _number(quoted: str) -> float:
    return float(quoted.replace("−", "-"))


def _decimals(quoted: str) -> int:
    return len(quoted.split(".")[1])


def _matches(quoted: str, values: pd.Series) -> bool:
    """Whether some value, rounded to the quoted digits, is the quoted number."""
    q, d = _number(quoted), _decimals(quoted)
    return bool((values.dropna().astype(float).round(d) == round(q, d)).any())


@pytest.fixture(scope="module")
def findings() -> pd.DataFrame:
    return pd.read_csv(REPORT / "findings.csv")


@pytest.fixture(scope="module")
def normalised_scores() -> pd.Series:
    final = pd.read_csv(REPORT / "final_performance.csv")
    scores = [final["iqm_norm"]]
    aggregate = REPORT / "aggregate_normalised.csv"
    if aggregate.exists():
        table = pd.read_csv(aggregate)
        scores += [table[c] for c in table.columns if c.startswith("iqm")]
    return pd.concat(scores, ignore_index=True)


@pytest.mark.parametrize("name", sorted(TEXTS))
def test_quoted_p_values_are_the_reports(name: str, findings: pd.DataFrame) -> None:
    values = pd.concat([findings[c] for c in P_COLUMNS if c in findings], ignore_index=True)
    quotes = P_QUOTE.findall(_section(name))
    assert quotes, f"{name} quotes no p-value: is the pattern still right?"
    stale = [q for q in quotes if not _matches(q, values)]
    assert not stale, (f"{name} quotes p-values that results/paper/report/findings.csv does not "
                       f"hold: {stale}; update the text from the report")


@pytest.mark.parametrize("name", sorted(TEXTS))
def test_quoted_effect_sizes_are_the_reports(name: str, findings: pd.DataFrame) -> None:
    stale = [q for q in DELTA_QUOTE.findall(_section(name))
             if not _matches(q, findings["cliffs_delta"])]
    assert not stale, (f"{name} quotes Cliff's δ values that findings.csv does not hold: "
                       f"{stale}; update the text from the report")


@pytest.mark.parametrize("name", sorted(TEXTS))
def test_quoted_score_pairs_are_the_reports(name: str, normalised_scores: pd.Series) -> None:
    pairs = PAIR_QUOTE.findall(_section(name))
    stale = [q for pair in pairs for q in pair if not _matches(q, normalised_scores)]
    assert not stale, (f"{name} compares normalised scores that the report does not hold: "
                       f"{stale}; update the text from the report")


def test_the_patterns_read_what_they_should() -> None:
    """The extraction itself, on sentences in the texts' style (so that a pattern that silently
    matches nothing cannot pass the tests above)."""
    text = ("exact Mann-Whitney p = 0.0012, Holm 0.0024, Cliff's δ = −0.31; TOST p = 0.31, "
            "Holm p = 0.055; normalised IQM 0.93 against 0.77 (0.63 vs 0.65)")
    assert P_QUOTE.findall(text) == ["0.0012", "0.0024", "0.31", "0.055"]
    assert DELTA_QUOTE.findall(text) == ["−0.31"]
    assert PAIR_QUOTE.findall(text) == [("0.93", "0.77"), ("0.63", "0.65")]
    values = pd.Series([0.00118, 0.3828])
    assert _matches("0.0012", values) and _matches("0.38", values)
    assert not _matches("0.0013", values)

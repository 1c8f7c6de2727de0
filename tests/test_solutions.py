"""The exercises' hidden solutions: every chapter has them, and their code can run.

A solution's code block is not executed by the book build (it sits in a markdown cell, hidden
in a dropdown), so a name it uses but never imports only fails when a reader pastes it. This
test parses each ``python`` block inside a ``{solution}`` directive and checks that every name it
reads is defined by the block itself, by the chapter's code cells (the reader runs the chapter
first), or by Python's builtins. It also checks that each exercise has a solution and each
chapter in ``_toc.yml`` that teaches (not the front and back matter) ends with exercises.
"""

from __future__ import annotations

import ast
import builtins
import re
from pathlib import Path

import jupytext
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
FRONT_AND_BACK_MATTER = {"chapters/intro", "chapters/notation", "chapters/bibliography"}


def toc_chapters() -> list[Path]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    return [ROOT / f"{f}.py" for f in files if f not in FRONT_AND_BACK_MATTER]


def defined_names(tree: ast.AST) -> set[str]:
    """Names a piece of code binds anywhere (imports, assignments, defs, loop and with targets)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
            names |= {a.arg for a in ast.walk(node.args) if isinstance(a, ast.arg)} \
                if not isinstance(node, ast.ClassDef) else set()
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
    return names


def read_names(tree: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def python_source(cell_source: str) -> str:
    """A code cell without IPython magics (``%matplotlib``, ``!pip``), which ast cannot parse."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line
                     for line in cell_source.splitlines())


SOLUTION = re.compile(r"^(`{3,})\{solution\}\s*(\S+)(.*?)^\1\s*$", re.M | re.S)
CODE = re.compile(r"^```python\n(.*?)^```\s*$", re.M | re.S)
EXERCISE = re.compile(r"^`{3,}\{exercise\}[^\n]*\n:label:\s*(\S+)", re.M)


@pytest.mark.parametrize("chapter", toc_chapters(), ids=lambda p: p.stem)
def test_every_chapter_ends_with_exercises_and_solutions(chapter: Path) -> None:
    notebook = jupytext.read(chapter)
    markdown = "\n".join(c.source for c in notebook.cells if c.cell_type == "markdown")
    exercises = EXERCISE.findall(markdown)
    solved = {m.group(2) for m in SOLUTION.finditer(markdown)}
    assert exercises, f"{chapter.name} has no exercises"
    assert set(exercises) <= solved, f"{chapter.name}: no solution for " \
                                     f"{sorted(set(exercises) - solved)}"
    assert solved <= set(exercises), f"{chapter.name}: solutions to unknown exercises " \
                                     f"{sorted(solved - set(exercises))}"


@pytest.mark.parametrize("chapter", toc_chapters(), ids=lambda p: p.stem)
def test_solution_code_uses_only_names_it_or_its_chapter_defines(chapter: Path) -> None:
    notebook = jupytext.read(chapter)
    chapter_names: set[str] = set()
    for cell in notebook.cells:
        if cell.cell_type == "code":
            chapter_names |= defined_names(ast.parse(python_source(cell.source)))
    markdown = "\n".join(c.source for c in notebook.cells if c.cell_type == "markdown")
    known = chapter_names | set(dir(builtins))
    for solution in SOLUTION.finditer(markdown):
        for block in CODE.findall(solution.group(3)):
            tree = ast.parse(block)  # a syntax error fails here, naming the chapter
            missing = read_names(tree) - defined_names(tree) - known
            assert not missing, (f"{chapter.name}, solution {solution.group(2)}: "
                                 f"{sorted(missing)} not defined in it or in the chapter")

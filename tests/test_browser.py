"""The built book, as a reader sees it: every page in headless Chromium with the network off.

The book is built once for the module (``jupyter-book build``, every chapter executed under the
short profile, into a temporary folder), unless ``_build/html`` from ``make book`` is newer than
every source of the book, in which case that build is checked. Each page must render every
formula with the MathJax that ships with the site, load every image, raise no JavaScript error,
request nothing from another site, caption every figure with a per-chapter number, and show
no noise (tracebacks, ANSI codes, temporary paths, internal notes, the build profile's name).

Chromium is Debian's ``chromium`` package (``.ci/run`` installs it). Without it the test cannot
run: it is skipped with a loud reason on a developer's machine and fails under CI.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from browser import Chromium, book_pages, check_page, find_chromium  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("chapters", "_config.yml", "_toc.yml", "_ext", "src/tutorial_rl", "results")

pytestmark = pytest.mark.slow


def _newest_source() -> float:
    newest = 0.0
    for name in SOURCES:
        path = ROOT / name
        files = [path] if path.is_file() else (p for p in path.rglob("*") if p.is_file())
        newest = max([newest, *(p.stat().st_mtime for p in files)])
    return newest


def _fresh_build() -> Path | None:
    html = ROOT / "_build" / "html"
    pages = list((html / "chapters").glob("*.html"))
    if pages and min(p.stat().st_mtime for p in pages) > _newest_source():
        return html
    return None


@pytest.fixture(scope="module")
def chromium() -> str:
    executable = find_chromium()
    if executable is None:
        message = ("NO BROWSER: the built book cannot be checked without Chromium "
                   "(apt-get install chromium; .ci/run installs it)")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return executable


@pytest.fixture(scope="module")
def book(chromium: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    existing = _fresh_build()
    if existing is not None:
        return existing
    out = tmp_path_factory.mktemp("book")
    # The kernels must draw inline PNGs as in `make book`: an inherited MPLBACKEND=Agg (as test
    # runs often set) would make every plt.show() in the chapters silently draw nothing.
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    env["TUTORIAL_RL_PROFILE"] = "ci"
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    result = subprocess.run(
        [str(jupyter_book), "build", str(ROOT), "--path-output", str(out), "-W", "-n",
         "--keep-going"], env=env, capture_output=True, text=True, timeout=1800, check=False)
    log = f"{result.stdout[-6000:]}\n{result.stderr[-3000:]}"
    assert result.returncode == 0, f"book build failed:\n{log}"
    return out / "_build" / "html"


@pytest.fixture(scope="module")
def reports(book: Path, chromium: str) -> dict[str, object]:
    with Chromium(chromium) as browser:
        return {page.name: check_page(browser, page, book) for page in book_pages(book)}


def test_mathjax_is_served_by_the_site(book: Path) -> None:
    bundle = book / "_static" / "mathjax" / "tex-chtml.js"
    assert bundle.is_file(), "MathJax was not copied into the site (see _ext/offline_site.py)"
    assert list((book / "_static" / "mathjax" / "output" / "chtml" / "fonts").rglob("*.woff"))
    page = (book / "chapters" / "01_projection.html").read_text()
    assert "_static/mathjax/tex-chtml.js" in page
    assert not re.search(r"<script[^>]+src=\"https?://", page), "a page loads a script from a CDN"


def test_every_page_reads_cleanly_offline(reports: dict) -> None:
    problems = {name: report.problems() for name, report in reports.items() if report.problems()}
    assert not problems, "\n".join(f"{name}:\n  " + "\n  ".join(p) for name, p in problems.items())


def test_maths_rendered_and_figures_numbered_per_chapter(reports: dict) -> None:
    chapters = {name: r for name, r in reports.items() if re.match(r"\d\d_", name)}
    assert len(chapters) >= 8
    for name, report in chapters.items():
        facts = report.facts
        number = int(name[:2])
        assert facts["mjx"] > 0 and facts["mjx"] >= facts["maths"], name
        assert facts["images"] > 0, f"{name}: no figure at all (were the kernels' plots dropped?)"
        assert facts["captions"], f"{name}: no figure captions"
        for caption in facts["captions"]:
            assert caption.startswith(f"Fig. {number}."), f"{name}: caption {caption[:40]!r}"
        assert "Run this chapter" in facts["text"], f"{name}: no 'Run this chapter' note"

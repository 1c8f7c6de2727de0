"""A Sphinx extension that makes the built book work with no network.

- **Maths.** MathJax 3 comes from the ``django-static-mathjax`` package (an unmodified copy of
  MathJax's ``es5`` distribution, installed from PyPI with the book's other dependencies). The
  CommonHTML bundle with its fonts and the TeX extensions it may load on demand are copied into
  ``_static/mathjax`` of the built site, and ``mathjax_path`` points there instead of a CDN.
- **A way to run each chapter.** The chapters' "Run this chapter" notes write
  ``{{ repository_link }}``, a MyST substitution made here from ``repository.url`` of
  ``_config.yml``, so the address lives in one place.
- **No dead scripts.** The book has no live-code (Thebe) button and its widgets need a kernel
  anyway, so the Thebe loader (which sphinx-thebe also inserts twice, a JavaScript error) and
  the ipywidgets loaders from CDNs are not put on the pages. Readers run chapters with
  ``make lab``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx
from sphinx.config import Config

MATHJAX_BUNDLE = "tex-chtml.js"
# What the CommonHTML bundle can load at run time: TeX extensions (autoloaded by macros such as
# \boldsymbol), the menu's accessibility components, and the web fonts. The other bundles, the
# SVG output and the TypeScript sources are not needed.
MATHJAX_PARTS = (MATHJAX_BUNDLE, "input/tex/extensions", "output/chtml", "a11y", "ui", "sre", "adaptors")


def mathjax_source() -> Path:
    """The ``es5`` folder of the installed MathJax 3 distribution."""
    try:
        import mathjax  # the django-static-mathjax package; pure data, Django is not imported
    except ImportError as error:
        raise RuntimeError(
            "the book needs MathJax files for offline maths: pip install django-static-mathjax "
            "(part of the [book] extra; run `make install`)"
        ) from error
    source = Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"
    if not (source / MATHJAX_BUNDLE).is_file():
        raise RuntimeError(f"the installed MathJax package has no {MATHJAX_BUNDLE} under {source}")
    return source


def _use_local_mathjax(app: Sphinx, config: Config) -> None:
    mathjax_source()  # fail early, before the chapters are executed, if it is missing
    config.mathjax_path = f"mathjax/{MATHJAX_BUNDLE}"  # relative paths are under _static/
    url = (config.html_theme_options or {}).get("repository_url") or ""
    if not url:
        raise RuntimeError("_config.yml needs repository.url for the chapters' 'Run this chapter' notes")
    config.myst_substitutions = {
        "repository_link": f"[the course repository]({url})", **(config.myst_substitutions or {}),
    }
    # pydata-sphinx-theme's layout reads a ``default_mode`` template variable that nothing sets;
    # empty, it logs "Got invalid theme mode" as a console error on a reader's first visit.
    config.html_context = {"default_mode": "auto", **(config.html_context or {})}


def _copy_mathjax(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    source, target = mathjax_source(), Path(app.outdir) / "_static" / "mathjax"
    for part in MATHJAX_PARTS:
        if (source / part).is_dir():
            shutil.copytree(source / part, target / part, dirs_exist_ok=True)
        elif (source / part).is_file():
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / part, target / part)


def _drop_dead_scripts(app: Sphinx, pagename: str, templatename: str, context: dict[str, Any],
                       doctree: Any) -> None:
    def dead(script: Any) -> bool:
        filename = str(getattr(script, "filename", script) or "")
        body = str(getattr(script, "attributes", {}).get("body", ""))
        return ("thebe" in filename or "THEBE_JS_URL" in body
                or "require.min.js" in filename or "@jupyter-widgets" in filename)

    if "script_files" in context:
        context["script_files"] = [s for s in context["script_files"] if not dead(s)]


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("config-inited", _use_local_mathjax)
    app.connect("html-page-context", _drop_dead_scripts)
    app.connect("build-finished", _copy_mathjax)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}

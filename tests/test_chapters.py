"""Every chapter of the book, executed top to bottom as a regression test.

A chapter is a jupytext percent-format ``.py`` file listed in ``_toc.yml``. It runs in a
fresh kernel under the short ``ci`` profile (see :mod:`tutorial_rl.profile`) with the inline
matplotlib backend, as in the book build; any cell error fails the test with the cell's
traceback, and every chapter must produce at least one figure.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from queue import Empty
from typing import Any

import jupytext
import nbclient
import pytest
import yaml
from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.channels import AsyncZMQSocketChannel
from jupyter_client.manager import AsyncKernelManager

ROOT = Path(__file__).resolve().parents[1]
POLL_SLICE_S = 1.0


class SlicedPollChannel(AsyncZMQSocketChannel):
    """A kernel channel that waits for a message in one-second polls.

    pyzmq's asyncio poll can miss the wake-up of a message that has already arrived and then
    returns it only when the poll's timeout expires (seen here: a chapter stalled for exactly
    the 900 s cell timeout, then finished normally). nbclient waits for a cell's reply with one
    poll over the whole cell timeout and for its output with no timeout at all; polling in short
    slices bounds the cost of a missed wake-up to one slice.
    """

    async def get_msg(self, timeout: float | None = None) -> dict[str, Any]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = POLL_SLICE_S if deadline is None else deadline - time.monotonic()
            try:
                return await super().get_msg(timeout=max(0.0, min(POLL_SLICE_S, left)))
            except Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    raise


class SlicedPollClient(AsyncKernelClient):
    shell_channel_class = SlicedPollChannel  # type: ignore[assignment]
    iopub_channel_class = SlicedPollChannel  # type: ignore[assignment]


class SlicedPollKernelManager(AsyncKernelManager):
    """nbclient's kernel manager, handing out :class:`SlicedPollClient` clients."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.client_factory = SlicedPollClient


def _toc_files() -> list[Path]:
    """The ``.py`` chapters named in ``_toc.yml``, in book order."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if "file" in node:
                files.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc)
    return [ROOT / f"{f}.py" for f in files if (ROOT / f"{f}.py").exists()]


CHAPTERS = _toc_files()


def test_every_chapter_file_is_in_the_toc() -> None:
    """A chapter that exists but is not in the table of contents would never be built or tested."""
    on_disk = {p.name for p in (ROOT / "chapters").glob("*.py")}
    in_toc = {p.name for p in CHAPTERS}
    assert on_disk == in_toc, f"chapters missing from _toc.yml: {sorted(on_disk - in_toc)}"


@pytest.mark.chapter
@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapter_executes(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUTORIAL_RL_PROFILE", os.environ.get("TUTORIAL_RL_PROFILE", "ci"))
    # The kernel draws figures as the book does (inline PNGs); Agg would silently drop them.
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    notebook = jupytext.read(path)
    client = nbclient.NotebookClient(
        notebook,
        kernel_manager_class=SlicedPollKernelManager,
        timeout=900,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()
    figures = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if "image/png" in output.get("data", {})
    ]
    assert figures, f"{path.name} produced no figure: is matplotlib's backend non-interactive?"

"""Load built book pages in headless Chromium, with the network off, and report what a reader sees.

The browser is driven through the Chrome DevTools Protocol over a pipe
(``--remote-debugging-pipe``: newline-free JSON messages separated by NUL bytes on file
descriptors 3 and 4), so no websocket client or browser-automation package is needed. The
network is cut twice: Chromium resolves every host name to nothing and sends any remaining
request to a closed local proxy, and the page itself runs under DevTools' offline emulation.
Any request that is not for a local file is recorded as a failure, so a page that *would* fetch
something from the internet is caught even on a machine that is online.

Run as a script to check a built book and print a page-by-page report::

    python tests/browser.py _build/html
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

# Text a reader must never see: tracebacks, raw ANSI colour codes, temporary paths, notes that
# only make sense inside the project, the short build profile's name, raw LaTeX left unrendered.
NOISE_PATTERNS: dict[str, re.Pattern[str]] = {
    "traceback": re.compile(r"Traceback \(most recent call last\)"),
    "ANSI escape": re.compile(r"\x1b\[|\[0;3\dm|\[0m"),
    "temporary path": re.compile(r"/tmp/|/var/folders/|/private/var/"),
    "local path": re.compile(r"/work/|/home/\w+/|site-packages"),
    "internal note": re.compile(r"DESIGN\.md|the review\b|the paper's review|TODO|FIXME|XXX"),
    "profile name": re.compile(r"\bprofile:? ['\"]?ci\b|\bshort ci profile\b", re.I),
    "warning output": re.compile(r"\b\w*Warning: "),
}

# Runs in the page once it has loaded: waits for MathJax to finish, then collects the facts.
PAGE_FACTS_JS = r"""
(async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await MathJax.startup.promise;
  }
  const maths = [...document.querySelectorAll('.math')];
  const unrendered = maths.filter(el => !el.querySelector('mjx-container'))
                          .map(el => el.textContent.slice(0, 60));
  const images = [...document.images];
  const broken = images.filter(img => !(img.complete && img.naturalWidth > 0))
                       .map(img => img.getAttribute('src'));
  const pathLike = /\.(png|svg|jpe?g)$|\/|^$/;
  const badAlt = images.filter(img => pathLike.test(img.getAttribute('alt') || ''))
                       .filter(img => !img.closest('.navbar-brand, .sidebar-brand'))
                       .map(img => img.getAttribute('src'));
  const main = document.querySelector('main') || document.body;
  return {
    title: document.title,
    mjx: document.querySelectorAll('mjx-container').length,
    mathErrors: document.querySelectorAll('mjx-merror').length,
    maths: maths.length,
    unrendered: unrendered,
    images: images.length,
    broken: broken,
    badAlt: badAlt,
    figures: document.querySelectorAll('figure').length,
    captions: [...document.querySelectorAll('figcaption')].map(c => c.innerText.trim()),
    uncaptionedImages: [...main.querySelectorAll('.cell_output img')]
        .filter(img => !img.closest('figure')).map(img => img.getAttribute('src')),
    stderr: document.querySelectorAll('.output.stderr, .cell_output .stderr').length,
    ansiSpans: document.querySelectorAll('[class*="ansi-"]').length,
    text: main.innerText,
  };
})()
"""


@dataclass
class PageReport:
    """What one page showed in the browser."""

    path: str
    facts: dict[str, Any]
    js_errors: list[str] = field(default_factory=list)
    external_requests: list[str] = field(default_factory=list)
    noise: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        """Everything on this page a reader should not meet, one line each (empty: a clean page)."""
        f = self.facts
        out = [f"JavaScript error: {e}" for e in self.js_errors]
        out += [f"request off the local site: {u}" for u in self.external_requests]
        if f["unrendered"]:
            first = f["unrendered"][0]
            out.append(f"{len(f['unrendered'])} formulas not rendered, first {first!r}")
        if f["mathErrors"]:
            out.append(f"{f['mathErrors']} MathJax errors")
        out += [f"image did not load: {s}" for s in f["broken"]]
        out += [f"alt text is a file path or empty: {s}" for s in f["badAlt"]]
        out += [f"figure without a caption: {s}" for s in f["uncaptionedImages"]]
        if f["stderr"]:
            out.append(f"{f['stderr']} stderr outputs shown")
        if f["ansiSpans"]:
            out.append(f"{f['ansiSpans']} ANSI-coloured spans shown")
        out += self.noise
        return out


class Chromium:
    """A headless Chromium process spoken to over the DevTools pipe."""

    def __init__(self, executable: str) -> None:
        self._profile = tempfile.TemporaryDirectory(prefix="book-browser-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # The browser expects its ends on descriptors 3 and 4; move them above 9 first so that
        # the dup2 calls in the child never overwrite a descriptor still to be moved.
        high_r = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 10)
        high_w = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 10)
        for fd in (to_browser_r, from_browser_w):
            os.close(fd)

        def place_pipes() -> None:
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        args = [
            executable, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
            "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--disable-extensions",
            "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=http://127.0.0.1:9",
            "--allow-file-access-from-files", "--window-size=1280,2000",
            f"--user-data-dir={self._profile.name}", "about:blank",
        ]
        self._process = subprocess.Popen(  # noqa: S603 - fixed argument list
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            close_fds=False, preexec_fn=place_pipes,  # noqa: PLW1509 - single-threaded caller
        )
        os.close(high_r)
        os.close(high_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except (OSError, RuntimeError, TimeoutError):
            pass
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        for fd in (self._to_browser, self._from_browser):
            try:
                os.close(fd)
            except OSError:
                pass
        self._profile.cleanup()

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read_message(self, deadline: float) -> dict[str, Any]:
        import select

        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer from Chromium in time")
            ready, _, _ = select.select([self._from_browser], [], [], left)
            if ready:
                chunk = os.read(self._from_browser, 1 << 20)
                if not chunk:
                    raise RuntimeError("Chromium closed the DevTools pipe (did it crash?)")
                self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
             timeout: float = 60.0) -> dict[str, Any]:
        """Send one command and wait for its answer; events that arrive meanwhile are kept."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            answer = self._read_message(deadline)
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer.get("result", {})
            self.events.append(answer)

    def wait_for(self, method: str, session: str, timeout: float = 60.0) -> None:
        """Wait until an event named ``method`` has arrived for ``session``."""
        deadline = time.monotonic() + timeout
        def arrived() -> bool:
            return any(e.get("method") == method and e.get("sessionId") == session
                       for e in self.events)

        while not arrived():
            self.events.append(self._read_message(deadline))


def find_chromium() -> str | None:
    """The first Chromium or Chrome executable on PATH, or None."""
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def _event_errors(events: list[dict[str, Any]], session: str) -> tuple[list[str], list[str]]:
    errors: list[str] = []
    external: list[str] = []
    for event in events:
        if event.get("sessionId") != session:
            continue
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            description = details.get("exception", {}).get("description") or details.get("text", "")
            errors.append(f"{description.splitlines()[0] if description else details}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            args = params["args"]
            errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in args))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            errors.append(params["entry"]["text"] + " " + params["entry"].get("url", ""))
        elif method == "Network.requestWillBeSent":
            url = params["request"]["url"]
            if not url.startswith(("file:", "data:", "blob:", "about:")):
                external.append(url)
    return errors, external


def check_page(browser: Chromium, page: Path, root: Path, timeout: float = 60.0) -> PageReport:
    """Open ``page`` in a fresh tab with the network off and collect what it showed."""
    target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    attached = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})
    session = attached["sessionId"]
    try:
        for domain in ("Page", "Runtime", "Log", "Network"):
            browser.send(f"{domain}.enable", session=session)
        browser.send("Network.emulateNetworkConditions", {
            "offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1,
        }, session=session)
        browser.events = [e for e in browser.events if e.get("sessionId") != session]
        browser.send("Page.navigate", {"url": page.resolve().as_uri()}, session=session)
        browser.wait_for("Page.loadEventFired", session, timeout=timeout)
        result = browser.send("Runtime.evaluate", {
            "expression": PAGE_FACTS_JS, "awaitPromise": True, "returnByValue": True,
        }, session=session, timeout=timeout)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page check script failed on {page}: {result['exceptionDetails']}")
        facts = result["result"]["value"]
        time.sleep(0.2)  # late console messages (e.g. a failed lazy load) arrive just after
        browser.send("Runtime.evaluate", {"expression": "1"}, session=session)
        errors, external = _event_errors(browser.events, session)
        text = facts["text"]
        noise = [f"{name} in the text: ...{text[max(0, m.start() - 60):m.end() + 40]!r}"
                 for name, pattern in NOISE_PATTERNS.items() if (m := pattern.search(text))]
        return PageReport(str(page.relative_to(root)), facts, errors, external, noise)
    finally:
        browser.send("Target.closeTarget", {"targetId": target})
        browser.events = [e for e in browser.events if e.get("sessionId") != session]


def book_pages(html_root: Path) -> list[Path]:
    """The content pages of a built book (not the search page, index, or redirect)."""
    pages = sorted(html_root.glob("chapters/*.html")) or sorted(html_root.glob("*.html"))
    return [p for p in pages if p.name not in {"genindex.html", "search.html"}]


def main(argv: list[str]) -> int:
    root = Path(argv[1] if len(argv) > 1 else "_build/html")
    executable = find_chromium()
    if executable is None:
        print("no Chromium found on PATH (apt-get install chromium)", file=sys.stderr)
        return 2
    failed = 0
    with Chromium(executable) as browser:
        for page in book_pages(root):
            report = check_page(browser, page, root)
            f = report.facts
            print(f"{report.path}: {f['mjx']} formulas rendered of {f['maths']}, "
                  f"{f['images']} images ({len(f['broken'])} broken), {f['figures']} figures, "
                  f"{len(f['captions'])} captions")
            for problem in report.problems():
                print(f"    {problem}")
            failed += bool(report.problems())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

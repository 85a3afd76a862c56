"""Opens the built site in headless Chromium and checks what a reader sees (``make docs-check``).

Usage: python docs/check_browser.py [docs/_build/html] [--screenshot PAGE.html OUT.png]

In a 1400 x 900 window, on every page of the site:

1. every image has loaded (``naturalWidth > 0``);
2. on pages with math, MathJax has finished, and no formula is an error (``merror``), shows
   raw LaTeX (a backslash in the rendered formula's text: an unknown macro, or a ``\\_`` inside
   ``\\text{}``), or is wider than the column that holds it (cut off, scrolled sideways); a
   display formula that ``_static/fit-math.js`` had to shrink below ``MIN_SCALE`` fails too;
3. no element of the article is wider than the content column (nothing scrolls sideways; the
   porting tables fit);
4. the page shows one search box, and no sidebar entry is cut off.

The source listings (``_modules/``) are left out: code blocks scroll by design.

Chromium is driven over its DevTools pipe (``--remote-debugging-pipe``: JSON messages on file
descriptors 3 and 4), so the check needs no Python package beyond the standard library. It fails,
never skips, when no Chromium is installed: ``make docs-check`` installs Debian's ``chromium``
package first (the one system dependency of the docs).

Exits 1 and lists the failures if anything is wrong.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
WIDTH, HEIGHT = 1400, 900
PAGE_TIMEOUT_S = 30.0
WORKERS = 2
# fit-math.js may shrink a display formula to its column; at 1400 px none should need to
# shrink below this (write the formula on more lines instead).
MIN_SCALE = 0.85
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")

# Runs in the page once it has loaded; returns the facts the checks read (a JSON-able dict).
PROBE = r"""
(async () => {
  const MIN_SCALE = @MIN_SCALE@;
  const out = {images: [], math: null, wide: [], column: null, tables: []};
  for (const img of document.images) {
    if (!(img.complete && img.naturalWidth > 0)) out.images.push(img.getAttribute('src'));
  }
  const hasMath = document.querySelector('.math, mjx-container') !== null;
  if (hasMath) {
    const m = {ready: false, containers: 0, errors: [], raw: [], cut: [], small: []};
    const wait = (p) => Promise.race([p, new Promise(r => setTimeout(r, 20000))]);
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
      await wait(MathJax.startup.promise);
      // fit-math.js scales wide display formulas once the page is typeset
      for (let i = 0; i < 100 && !document.documentElement.dataset.optxMathFitted; i++) {
        await new Promise(r => setTimeout(r, 50));
      }
      m.ready = !!MathJax.startup.document;
    }
    const containers = document.querySelectorAll('mjx-container');
    m.containers = containers.length;
    m.unrendered = document.querySelectorAll('.math').length > 0 && containers.length === 0;
    m.fitted = !!document.documentElement.dataset.optxMathFitted;
    for (const c of containers) {
      const mml = c.querySelector('mjx-assistive-mml');
      const text = (mml ? mml.textContent : c.textContent).replace(/\s+/g, ' ').trim();
      if (c.querySelector('mjx-merror, merror')) m.errors.push(text.slice(0, 120));
      else if (text.includes('\\')) m.raw.push(text.slice(0, 120));
      const box = c.parentElement.getBoundingClientRect();
      const inner = c.firstElementChild ? c.firstElementChild.getBoundingClientRect() : null;
      if (inner && inner.width > box.width + 1) {
        m.cut.push(`${Math.round(inner.width)}px in ${Math.round(box.width)}px: ` +
                   text.slice(0, 60));
      }
      const scale = parseFloat(c.dataset.optxScale || '1');
      if (scale < MIN_SCALE) {
        m.small.push(`scaled to ${Math.round(100 * scale)}%: ${text.slice(0, 60)}`);
      }
    }
    out.math = m;
  }
  const visible = (el) => {
    const r = el.getBoundingClientRect();
    return r.width > 0 && r.height > 0 && getComputedStyle(el).visibility !== 'hidden';
  };
  out.searchBoxes = [...document.querySelectorAll(
    '.search-button-field, .search-button, form.bd-search, input[type=search]')]
    .filter(el => visible(el) && !el.closest('#pst-search-dialog, .bd-search-container'))
    .length;
  out.sidebarCut = [...document.querySelectorAll('.bd-sidebar-primary a')]
    .filter(a => visible(a) && a.scrollWidth > a.clientWidth + 1)
    .map(a => a.textContent.trim());
  const article = document.querySelector('article.bd-article') || document.querySelector('main');
  if (article) {
    const col = article.getBoundingClientRect();
    out.column = Math.round(col.width);
    for (const el of article.querySelectorAll('*')) {
      // formulas are checked above; code blocks scroll by design
      if (el.closest('.math, mjx-container, .highlight')) continue;
      const r = el.getBoundingClientRect();
      const over = el.scrollWidth > el.clientWidth + 1 &&
                   getComputedStyle(el).overflowX !== 'visible';
      if (r.width > col.width + 1 || r.right > col.right + 1 || over) {
        out.wide.push(`<${el.tagName.toLowerCase()}${el.id ? ' id=' + el.id : ''}` +
                      `${el.className && typeof el.className === 'string' ?
                         ' class="' + el.className + '"' : ''}> ` +
                      `${Math.round(Math.max(r.width, el.scrollWidth))}px`);
        if (out.wide.length > 5) break;
      }
    }
    for (const t of article.querySelectorAll('table')) {
      out.tables.push(Math.round(t.getBoundingClientRect().width));
    }
  }
  return out;
})()
""".replace("@MIN_SCALE@", str(MIN_SCALE))


def _above_9(fd: int) -> int:
    """``fd`` moved above 9, so that bash's ``3<&N 4>&M`` cannot clobber one pipe end
    with the other (a pipe end may itself be fd 3 or 4)."""
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


class Browser:
    """A headless Chromium, one tab, spoken to over the DevTools pipe."""

    def __init__(self, executable: str) -> None:
        self._profile = tempfile.mkdtemp(prefix="optx-docs-check-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        to_browser_r, from_browser_w = _above_9(to_browser_r), _above_9(from_browser_w)
        args = [executable, "--headless", "--remote-debugging-pipe", "--no-sandbox",
                "--disable-gpu", "--no-first-run", "--no-default-browser-check",
                "--disable-extensions", "--hide-scrollbars", "--mute-audio",
                f"--user-data-dir={self._profile}", f"--window-size={WIDTH},{HEIGHT}",
                "about:blank"]
        # Chromium reads commands on fd 3 and writes answers on fd 4.
        cmd = f'exec "$@" 3<&{to_browser_r} 4>&{from_browser_w}'
        self._proc = subprocess.Popen(
            ["bash", "-c", cmd, "bash", *args], pass_fds=(to_browser_r, from_browser_w),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self._events: list[dict[str, Any]] = []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self._session = self.call("Target.attachToTarget", targetId=target,
                                  flatten=True)["sessionId"]
        self.call("Page.enable", session=True)
        self.call("Emulation.setDeviceMetricsOverride", session=True, width=WIDTH,
                  height=HEIGHT, deviceScaleFactor=1, mobile=False)

    def _read(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while b"\0" not in self._buffer:
            import select

            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_browser], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium exited")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return dict(json.loads(message))

    def call(self, method: str, session: bool = False, timeout: float = PAGE_TIMEOUT_S,
             **params: Any) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self._session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read(timeout)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return dict(reply.get("result", {}))
            self._events.append(reply)

    def open(self, url: str) -> None:
        self._events.clear()
        self.call("Page.navigate", session=True, url=url)
        deadline = time.monotonic() + PAGE_TIMEOUT_S
        while not any(e.get("method") == "Page.loadEventFired" for e in self._events):
            self._events.append(self._read(deadline - time.monotonic()))

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", session=True, expression=expression,
                           awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: Path) -> None:
        import base64

        data = self.call("Page.captureScreenshot", session=True, format="png")["data"]
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, TimeoutError, OSError):
            self.call("Browser.close", timeout=5)
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)
        shutil.rmtree(self._profile, ignore_errors=True)


def find_browser() -> str | None:
    for name in (os.environ.get("CHROMIUM", ""), *BROWSERS):
        path = shutil.which(name) if name else None
        if path:
            return path
    return None


def problems(page: str, facts: dict[str, Any]) -> list[str]:
    """The failures one page's probe reports."""
    out = [f"{page}: image does not load: {src}" for src in facts["images"]]
    math = facts.get("math")
    if math is not None:
        if not math["ready"]:
            out.append(f"{page}: MathJax did not finish (not loaded, or timed out)")
        if math.get("unrendered"):
            out.append(f"{page}: math on the page but MathJax rendered none of it")
        out += [f"{page}: MathJax error in {t!r}" for t in math["errors"]]
        out += [f"{page}: raw LaTeX shown in {t!r}" for t in math["raw"]]
        if not math.get("fitted"):
            out.append(f"{page}: fit-math.js did not run")
        out += [f"{page}: formula cut off, {t}" for t in math["cut"]]
        out += [f"{page}: formula too wide for the column, {t}" for t in math["small"]]
    out += [f"{page}: wider than the {facts['column']}px content column: {w}"
            for w in facts["wide"]]
    if page != "search.html" and facts.get("searchBoxes", 1) != 1:
        out.append(f"{page}: {facts['searchBoxes']} search boxes (one is wanted)")
    out += [f"{page}: sidebar entry cut off: {t}" for t in facts.get("sidebarCut", [])]
    return out


def check(root: Path, pages: list[Path] | None = None) -> tuple[list[str], dict[str, Any]]:
    """Probes ``pages`` (default: every page of the site); returns (failures, facts by page)."""
    executable = find_browser()
    if executable is None:
        return ([f"no Chromium found (tried {', '.join(BROWSERS)} and $CHROMIUM): install "
                 "Debian's chromium package (make docs-check does: apt-get install chromium)"],
                {})
    if pages is None:
        # _modules holds the source listings (code, which scrolls by design; no math, images)
        pages = sorted(p for p in root.rglob("*.html")
                       if not {"_static", "_modules"} & set(p.relative_to(root).parts))
    def probe(share: list[Path]) -> dict[str, Any]:
        browser = Browser(executable)
        try:
            out = {}
            for path in share:
                browser.open(path.resolve().as_uri())
                out[str(path.relative_to(root))] = browser.evaluate(PROBE)
            return out
        finally:
            browser.close()

    # Two browsers at once: a page's load is mostly waiting (scripts, fonts, MathJax).
    with ThreadPoolExecutor(WORKERS) as pool:
        shares = list(pool.map(probe, [pages[i::WORKERS] for i in range(WORKERS)]))
    facts = {name: f for share in shares for name, f in share.items()}
    errors = [e for name in sorted(facts) for e in problems(name, facts[name])]
    return errors, facts


def main(argv: list[str]) -> int:
    args = list(argv)
    shot: tuple[str, Path] | None = None
    if "--screenshot" in args:
        i = args.index("--screenshot")
        shot = (args[i + 1], Path(args[i + 2]))
        del args[i:i + 3]
    root = Path(args[0] if args else HERE / "_build" / "html").resolve()
    if not (root / "index.html").exists():
        print(f"check_browser: {root} has no index.html; build the site first (make docs)")
        return 1
    if shot is not None:
        executable = find_browser()
        if executable is None:
            print("check_browser: no Chromium found")
            return 1
        browser = Browser(executable)
        try:
            page, _, fragment = shot[0].partition("#")
            browser.open((root / page).as_uri() + (f"#{fragment}" if fragment else ""))
            browser.evaluate(PROBE)  # waits for MathJax
            browser.screenshot(shot[1])
        finally:
            browser.close()
        return 0
    start = time.monotonic()
    errors, facts = check(root)
    for e in errors:
        print("FAIL", e)
    math_pages = sum(f.get("math") is not None for f in facts.values())
    porting = facts.get("porting.html", {})
    print(f"check_browser: {len(facts)} pages in {time.monotonic() - start:.0f} s "
          f"({math_pages} with math); porting page: {porting.get('column')}px column, "
          f"tables {porting.get('tables')}px")
    if errors:
        print(f"check_browser: {len(errors)} failures")
        return 1
    print("check_browser: every image loads, every formula renders and fits, nothing is wider "
          "than the content column")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

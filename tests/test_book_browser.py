"""The built book in a real browser: every page of ``book/_build/html`` in headless Chromium.

For each page, with every request that leaves the machine blocked and recorded, the test checks
that the math is rendered (every ``.math`` element holds a MathJax node, no MathJax error node,
no raw TeX left in the text), that every image loads, that no JavaScript error is raised, and
that no request goes to the network.

It uses the system's Chromium (Debian: ``apt-get install chromium``; ``LRPBOOK_CHROMIUM`` may
name another binary) through playwright's Python package; nothing downloads a browser. It skips,
saying why, where no Chromium or no built book is found. Build the book first (``make book``),
then run ``make browser-test``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HTML = REPO / "book" / "_build" / "html"


def _chromium() -> str | None:
    env = os.environ.get("LRPBOOK_CHROMIUM")
    if env:
        return env if Path(env).exists() else None
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _pages() -> list[str]:
    if not (HTML / "index.html").exists():
        return []
    return sorted(
        p.relative_to(HTML).as_posix()
        for p in HTML.rglob("*.html")
        if not any(part.startswith("_") for part in p.relative_to(HTML).parts)
    )


PAGES = _pages()

# Everything the page itself can report, evaluated after load and after MathJax has finished.
_PROBE = r"""
async () => {
  if (window.MathJax && window.MathJax.startup && window.MathJax.startup.promise) {
    await window.MathJax.startup.promise;
  }
  const math = [...document.querySelectorAll('.math')];
  const unrendered = math.filter(e => !e.querySelector('mjx-container'))
                         .map(e => e.textContent.trim().slice(0, 80));
  const mathErrors = [...document.querySelectorAll('mjx-merror')]
                         .map(e => (e.getAttribute('data-mjx-error') || e.textContent).slice(0, 80));
  // raw TeX in the prose: text outside code, MathJax output and script/style elements
  const raw = [];
  const root = document.querySelector('main') || document.body;
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT, {
    acceptNode(n) {
      for (let e = n.parentElement; e && e !== root; e = e.parentElement) {
        if (['PRE', 'CODE', 'SCRIPT', 'STYLE', 'MJX-CONTAINER', 'TEXTAREA'].includes(e.tagName)
            || e.classList.contains('output') || e.classList.contains('highlight')) {
          return NodeFilter.FILTER_REJECT;
        }
      }
      return NodeFilter.FILTER_ACCEPT;
    }
  });
  const tex = /\$\$|\\\(|\\\[|\\begin\{|\\frac\{|\\mathrm\{/;
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    if (tex.test(n.textContent)) raw.push(n.textContent.trim().slice(0, 80));
  }
  const brokenImages = [...document.images]
      .filter(i => !i.complete || i.naturalWidth === 0).map(i => i.getAttribute('src'));
  return {nMath: math.length, nImages: document.images.length, unrendered, mathErrors, raw,
          brokenImages};
}
"""


@pytest.fixture(scope="module")
def browser():
    chromium = _chromium()
    if chromium is None:
        pytest.skip("no Chromium found (install it with `apt-get install chromium` or set "
                    "LRPBOOK_CHROMIUM); the browser test of the book is skipped")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright (Python package) is not installed")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=chromium,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--no-proxy-server",
                  "--host-resolver-rules=MAP * ~NOTFOUND", "--disable-background-networking",
                  "--allow-file-access-from-files"],
        )
        yield b
        b.close()


@pytest.mark.parametrize("page_path", PAGES or ["(no built book)"])
def test_page_renders_offline_in_chromium(browser, page_path):
    if not PAGES:
        pytest.skip(f"no built book at {HTML} (run `make book` first)")
    context = browser.new_context(offline=True, java_script_enabled=True)
    outside, js_errors = [], []

    def guard(route):
        url = route.request.url
        if url.startswith(("file:", "data:", "blob:", "about:")):
            route.continue_()
        else:
            outside.append(url)
            route.abort()

    context.route("**/*", guard)
    page = context.new_page()
    page.on("request", lambda r: None if r.url.startswith(("file:", "data:", "blob:", "about:"))
            else outside.append(r.url))
    page.on("pageerror", lambda e: js_errors.append(str(e)))
    page.on("console", lambda m: js_errors.append(m.text) if m.type == "error" else None)
    try:
        page.goto((HTML / page_path).as_uri(), wait_until="load", timeout=60_000)
        for attempt in range(3):  # index.html redirects to the first page
            try:
                page.wait_for_load_state("load")
                report = page.evaluate(_PROBE)
                break
            except Exception as exc:  # the page navigated while it was probed
                if "navigation" not in str(exc) or attempt == 2:
                    raise
                page.wait_for_timeout(500)
        page.wait_for_timeout(200)  # late errors of scripts started on load
    finally:
        context.close()
    problems = []
    if report["unrendered"]:
        problems.append(f"{len(report['unrendered'])} of {report['nMath']} math elements not "
                        f"rendered by MathJax, e.g. {report['unrendered'][:3]}")
    if report["mathErrors"]:
        problems.append(f"MathJax errors: {report['mathErrors'][:3]}")
    if report["raw"]:
        problems.append(f"raw TeX in the text: {report['raw'][:3]}")
    if report["brokenImages"]:
        problems.append(f"images that do not load: {report['brokenImages'][:5]}")
    if js_errors:
        problems.append(f"JavaScript errors: {js_errors[:5]}")
    if outside:
        problems.append(f"requests leaving the machine: {sorted(set(outside))[:5]}")
    assert not problems, f"{page_path}:\n  " + "\n  ".join(problems)

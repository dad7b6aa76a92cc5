"""The built site in a real browser (Playwright driving Debian's Chromium).

Serves `_build/html` on the loopback interface and checks what a reader
sees: typeset maths, the Chinese edition's fonts, numbered proof boxes and
the English toggle. Screenshots of every chapter land in
`_build/screenshots/` for review.
"""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from pathlib import Path

import pytest

from test_book import CHAPTERS, HTML

pytestmark = pytest.mark.book

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOTS = HTML.parent / "screenshots"
INSTALL_HINT = "install it with `apt-get install chromium fonts-noto-cjk` (`make test` does so when run as root)"


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass


@pytest.fixture(scope="module")
def site(build):
    handler = functools.partial(QuietHandler, directory=str(HTML))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.fail(f"Chromium is needed for the browser tests: {INSTALL_HINT}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        yield instance
        instance.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.errors = []
    tab.on("pageerror", lambda error: tab.errors.append(str(error)))
    tab.on("console", lambda message: message.type == "error" and tab.errors.append(message.text))
    tab.on("requestfailed", lambda request: tab.errors.append(f"failed request {request.url}"))
    yield tab
    context.close()


def open_page(page, url: str) -> None:
    page.goto(url, wait_until="networkidle")
    page.wait_for_function("() => !window.MathJax || (MathJax.startup && MathJax.startup.promise)")
    page.evaluate("() => window.MathJax ? MathJax.startup.promise : null")


@pytest.mark.parametrize("edition", ["", "zh/"], ids=["en", "zh"])
@pytest.mark.parametrize("file", CHAPTERS)
def test_chapter_renders_maths_without_errors(site, page, edition: str, file: str) -> None:
    open_page(page, f"{site}/{edition}{file}.html")
    assert page.locator("mjx-container").count() > 0, "MathJax typeset nothing"
    assert "$$" not in page.locator("article").inner_text()
    assert page.errors == []
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    name = f"{edition.strip('/') or 'en'}-{Path(file).name}.png"
    page.screenshot(path=str(SCREENSHOTS / name), full_page=False)


@pytest.mark.parametrize("file", CHAPTERS)
def test_chinese_page_fonts_proof_numbers_and_english_toggle(site, page, file: str) -> None:
    open_page(page, f"{site}/zh/{file}.html")
    font_stack = page.evaluate("() => getComputedStyle(document.body).fontFamily")
    assert "Noto Sans CJK SC" in font_stack and "Microsoft YaHei" in font_stack

    numbers = page.locator(".admonition-title .caption-number").all_inner_texts()
    assert numbers and all(not n.startswith(("Definition", "Theorem", "Algorithm")) for n in numbers), numbers

    english = page.locator("p.bilingual-en").first
    toggle = page.locator(".english-toggle")
    assert english.is_visible() and toggle.get_attribute("aria-pressed") == "true"
    toggle.click()
    assert english.is_hidden() and toggle.get_attribute("aria-pressed") == "false"
    page.reload()
    assert page.locator("p.bilingual-en").first.is_hidden(), "the choice was not remembered"
    page.locator(".english-toggle").click()
    assert page.locator("p.bilingual-en").first.is_visible()


def test_language_switch_leads_to_the_twin(site, page) -> None:
    chapter = CHAPTERS[0]
    open_page(page, f"{site}/zh/{chapter}.html")
    page.locator(".language-switch a", has_text="English").click()
    page.wait_for_load_state()
    assert page.url == f"{site}/{chapter}.html"
    page.locator(".language-switch a", has_text="中文").click()
    page.wait_for_load_state()
    assert page.url == f"{site}/zh/{chapter}.html"

"""The built site in a real browser (Playwright driving Debian's Chromium).

Serves `_build/html` on the loopback interface and checks what a reader
sees: typeset maths, the Chinese edition's fonts, numbered proof boxes and
the English toggle. Screenshots of every chapter land in
`_build/screenshots/` for review.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import sys
import threading
from pathlib import Path

import pytest

from test_book import CHAPTERS, HTML, ROOT, toc_entries

sys.path.insert(0, str(ROOT / "tools"))
from build_book import npm_package  # noqa: E402

pytestmark = pytest.mark.book

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOTS = HTML.parent / "screenshots"
PAGES = [file for _, file in toc_entries()]
AXE = HTML.parent / "test-tools" / "axe.min.js"
AXE_PACKAGE = ("axe-core@4.10.3", "0f2b4d7dcdf7d1219df8d1959ad68e565f51d14c3f0d88bb71cd59abeb956292")
# Missing alt text, links told apart by colour alone, and text too faint to read.
AXE_RULES = ["image-alt", "link-in-text-block", "color-contrast"]
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


@pytest.fixture(scope="module")
def axe_script() -> str:
    """axe-core, the accessibility engine, fetched once from the npm registry (pinned, checked)."""
    if not AXE.exists():
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            package = npm_package(*AXE_PACKAGE, tmp)
            AXE.parent.mkdir(parents=True, exist_ok=True)
            # Both xdist workers may fetch it at once: each writes its own copy, then renames it into place.
            partial = AXE.with_name(f"{AXE.name}.{os.getpid()}.partial")
            shutil.copy2(package / "axe.min.js", partial)
            partial.replace(AXE)
    return AXE.read_text(encoding="utf-8")


@pytest.fixture()
def page(browser):
    """A tab in the light theme; a test that needs the dark theme switches the colour scheme itself
    (the theme follows the reader's preference), which is cheaper than loading every page twice."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, color_scheme="light")
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


def axe_violations(page, axe_script: str) -> list[str]:
    if not page.evaluate("() => typeof axe !== 'undefined'"):
        page.add_script_tag(content=axe_script)
    return page.evaluate(
        "async rules => (await axe.run(document, {runOnly: {type: 'rule', values: rules}})).violations"
        ".map(v => v.id + ': ' + v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(', '))",
        AXE_RULES,
    )


@pytest.mark.parametrize("edition", ["", "zh/"], ids=["en", "zh"])
@pytest.mark.parametrize("file", PAGES)
def test_page_loads_cleanly_and_is_accessible(site, page, axe_script: str, edition: str, file: str) -> None:
    """Every page in both editions and both themes: no console error, maths typeset, images loaded, axe clean;
    a chapter also shows typeset maths, figures and numbered boxes, and is photographed for review.
    The page loads once in the light theme, then the reader's preference turns dark and the theme follows."""
    open_page(page, f"{site}/{edition}{file}.html")
    assert page.errors == [], "console errors or failed requests"
    assert "$$" not in page.locator("article").inner_text(), "maths left untypeset"
    broken = page.evaluate("() => [...document.images].filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src)")
    assert broken == [], broken
    if file in CHAPTERS:  # checked on the page already loaded: one page load per page and edition
        check_chapter(page, edition, file)
    assert axe_violations(page, axe_script) == [], "light theme"
    # Without transitions, axe measures the dark colours themselves, not a frame of the fade between themes.
    page.add_style_tag(content="*, *::before, *::after { transition: none !important; }")
    page.emulate_media(color_scheme="dark")
    page.wait_for_function("() => document.documentElement.dataset.theme === 'dark'")
    if file in CHAPTERS:
        photograph(page, edition, file)
    assert axe_violations(page, axe_script) == [], "dark theme"
    assert page.errors == [], "console errors after the theme changed"


def photograph(page, edition: str, file: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    theme = page.evaluate("document.documentElement.dataset.theme")
    page.screenshot(path=str(SCREENSHOTS / f"{edition.strip('/') or 'en'}-{Path(file).name}-{theme}.png"))


def check_chapter(page, edition: str, file: str) -> None:
    """A chapter shows typeset maths, a figure and numbered proof boxes, and its animations are not blank."""
    assert page.locator("mjx-container").count() > 0, "MathJax typeset nothing"
    assert page.locator("figure img").count() > 0, "no figure"
    numbers = page.locator(".admonition-title .caption-number").all_inner_texts()
    assert numbers and all(any(ch.isdigit() for ch in n) for n in numbers), numbers
    if page.locator("[id^=_anim_img]").count():
        assert page.locator("[id^=_anim_img]").first.evaluate("img => img.naturalWidth") > 0, "the animation is blank"
    photograph(page, edition, file)


def test_navigation_reaches_every_page(site, page) -> None:
    open_page(page, f"{site}/{PAGES[0]}.html")
    hrefs = page.eval_on_selector_all("nav.bd-links a.reference.internal", "links => links.map(a => a.href)")
    reached = {href.split("#")[0] for href in hrefs}
    for file in PAGES[1:]:
        assert f"{site}/{file}.html" in reached, f"the navigation does not reach {file}"


def test_search_finds_a_term_of_a_chapter(site, page) -> None:
    open_page(page, f"{site}/search.html?q=Ornstein")
    page.wait_for_selector("#search-results li", timeout=15000)
    results = page.locator("#search-results li a").all_inner_texts()
    assert any("Langevin" in title or "SDE" in title for title in results), results


def test_copy_button_copies_the_code(site, browser) -> None:
    context = browser.new_context(permissions=["clipboard-read", "clipboard-write"])
    tab = context.new_page()
    open_page(tab, f"{site}/{CHAPTERS[1]}.html")
    cell = tab.locator("div.cell_input").first
    cell.hover()
    cell.locator("button.copybtn").click()
    copied = tab.evaluate("navigator.clipboard.readText()")
    assert "import" in copied and copied.strip() == cell.locator("pre").inner_text().strip()
    context.close()


def test_download_menu_offers_the_notebook(site, page) -> None:
    open_page(page, f"{site}/{CHAPTERS[0]}.html")
    page.locator(".dropdown-download-buttons button").first.click()
    link = page.locator("a.btn-download-notebook-button")
    assert link.is_visible()
    with page.expect_download() as download:
        link.click()
    assert download.value.suggested_filename.endswith(".ipynb")


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

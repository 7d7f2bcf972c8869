"""The built course pages in a real browser (headless Chromium): math typeset, players play, no network.

Runs on the pages in the folder named by $COURSE_PAGES: `make test` builds them in quick mode with
`scripts/run_course.py --quick --out build/quick` and then runs this file on them. By hand:

    python scripts/run_course.py --quick --out /tmp/c && COURSE_PAGES=/tmp/c pytest tests/test_pages.py

Each page is opened from disk with every request that would leave the machine blocked and recorded.
A page fails when it asks the network for anything, throws a JavaScript error, shows fewer typeset
formulas (<math> elements) than its notebook's markdown has `$...$` / `$$...$$` spans, lays a fraction
out flat (no MathML layout), leaves raw LaTeX (`\\frac`, `$x_t$`) in its text, or has an animation
player without frames or that does not advance when Play is pressed. The index fails when it links a
missing file or a picture that does not load.

The browser: Debian's `chromium` (or $CHROMIUM), driven by playwright with no browser download.
Without it the tests skip and say how to install it; with CI=true they fail.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

PAGES = Path(os.environ["COURSE_PAGES"]).resolve() if os.environ.get("COURSE_PAGES") else None
PAGE_NAMES = sorted(p.stem for p in PAGES.glob("L*.html")) if PAGES and PAGES.is_dir() else []
BROWSERS = (
    "chromium",
    "chromium-browser",
    "google-chrome",
    "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome",
)
INSTALL = (
    "The browser test needs Chromium: `sudo apt-get install chromium` (Debian/Ubuntu; .ci/run does this), "
    "or set CHROMIUM=/path/to/chrome-or-chromium."
)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# written independently of the build's own parser: $$...$$ (any lines), then $...$ on one line
DISPLAY_MATH = re.compile(r"\$\$(.+?)\$\$", re.S)
INLINE_MATH = re.compile(r"\$[^$\s][^$\n]*?\$")
CODE = re.compile(r"```.*?```|`[^`\n]+`", re.S)
RAW_LATEX = re.compile(r"\\[A-Za-z]+|\$[^$\n]+\$|\$\$")
LOCAL_HOSTS = {"localhost", "127.0.0.1", "[::1]"}


def math_span_count(notebook: Path) -> int:
    """How many $...$ and $$...$$ spans the notebook's markdown cells hold (outside code)."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    count = 0
    for cell in cells:
        if cell["cell_type"] != "markdown":
            continue
        text = CODE.sub("", "".join(cell["source"]))
        count += len(DISPLAY_MATH.findall(text))
        count += len(INLINE_MATH.findall(DISPLAY_MATH.sub("", text)))
    return count


def player_count(notebook: Path) -> int:
    """How many matplotlib animation players (to_jshtml) the executed notebook's outputs hold."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    html_outputs = ["".join(o.get("data", {}).get("text/html", "")) for c in cells for o in c.get("outputs", [])]
    return sum(h.count('<div class="animation">') for h in html_outputs)


def find_chromium() -> str | None:
    if os.environ.get("CHROMIUM"):
        return os.environ["CHROMIUM"] if Path(os.environ["CHROMIUM"]).is_file() else None
    for name in BROWSERS:
        found = shutil.which(name) or (name if Path(name).is_file() else None)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def browser():
    if PAGES is None or not PAGES.is_dir():
        pytest.skip(
            f"no built pages (COURSE_PAGES={os.environ.get('COURSE_PAGES')!r}): `make test` builds them, or "
            "run scripts/run_course.py --quick --out DIR, then COURSE_PAGES=DIR pytest tests/test_pages.py"
        )
    executable = find_chromium()
    if executable is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and no Chromium found. {INSTALL}")
        pytest.skip(INSTALL)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # launch() starts Chromium with a fresh temporary profile (its own --user-data-dir)
        instance = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


class OpenPage:
    """A page opened from disk; `requests` lists what it asked of the network (blocked), `errors` its JS errors."""

    def __init__(self, browser, path: Path):
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.context = browser.new_context(viewport={"width": 1200, "height": 900})
        self.context.route("**/*", self.gate)
        self.page = self.context.new_page()
        self.page.on("pageerror", lambda err: self.errors.append(str(err)))
        self.page.goto(path.as_uri(), wait_until="load")

    def gate(self, route):
        url = urlparse(route.request.url)
        if url.scheme in ("file", "data", "blob", "about") or url.hostname in LOCAL_HOSTS:
            route.continue_()
        else:
            self.requests.append(route.request.url)
            route.abort()

    def close(self):
        self.context.close()


@pytest.fixture
def open_page(browser):
    opened = []

    def opener(path: Path) -> OpenPage:
        opened.append(OpenPage(browser, path))
        return opened[-1]

    yield opener
    for page in opened:
        page.close()


def network_problems(opened: OpenPage, label: str) -> list[str]:
    problems = []
    if opened.requests:
        asked = sorted(set(opened.requests))
        problems.append(f"{label} asked the network {len(opened.requests)} time(s), for: {asked[:6]}")
    if opened.errors:
        problems.append(f"{label} threw JavaScript errors: {opened.errors[:3]}")
    return problems


@pytest.mark.parametrize("name", PAGE_NAMES or ["(no pages)"])
def test_page_typesets_its_math_offline(open_page, name):
    notebook = PAGES / f"{name}.ipynb"
    assert notebook.exists(), f"{name}.html has no executed notebook {name}.ipynb beside it"
    expected = math_span_count(notebook)
    opened = open_page(PAGES / f"{name}.html")
    page = opened.page
    page.wait_for_timeout(500)  # time for a math script, if the page has one, to typeset
    formulas = page.evaluate(
        """() => [...document.querySelectorAll('math')].map(m => {
               const r = m.getBoundingClientRect(); return r.width > 0 && r.height > 0; })"""
    )
    flat_fractions = page.evaluate(
        """() => [...document.querySelectorAll('mfrac')].filter(f => {
               const [top, bottom] = f.children; if (!top || !bottom) return true;
               return top.getBoundingClientRect().bottom > bottom.getBoundingClientRect().top + 1; }).length"""
    )
    markdown_text = page.evaluate(
        "() => [...document.querySelectorAll('.jp-MarkdownCell')].map(c => c.innerText).join('\\n')"
    )
    raw = sorted(set(RAW_LATEX.findall(markdown_text)))
    problems = network_problems(opened, f"{name}.html")
    if len(formulas) < expected:
        problems.append(
            f"{name}.html shows {len(formulas)} typeset formulas (<math> elements) for {expected} "
            "$...$/$$...$$ spans in its notebook's markdown"
        )
    if not all(formulas):
        problems.append(f"{name}.html: {formulas.count(False)} of its {len(formulas)} formulas take no space")
    if flat_fractions:
        problems.append(f"{name}.html: {flat_fractions} fraction(s) not laid out as fractions (no MathML layout)")
    if raw:
        problems.append(f"{name}.html shows raw LaTeX in its text: {raw[:8]}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", PAGE_NAMES or ["(no pages)"])
def test_animation_players_have_frames_and_play(open_page, name):
    expected = player_count(PAGES / f"{name}.ipynb")
    opened = open_page(PAGES / f"{name}.html")
    page = opened.page
    players = page.locator("div.animation")
    assert players.count() == expected, (
        f"{name}.html shows {players.count()} animation players, its notebook made {expected}"
    )
    problems = network_problems(opened, f"{name}.html")
    for index in range(players.count()):
        player = players.nth(index)
        image, slider = player.locator("img"), player.locator("input.anim-slider")
        player_id = slider.get_attribute("id").removeprefix("_anim_slider")
        try:  # the player's script starts it from a setTimeout once the page has loaded
            page.wait_for_function("id => window['anim' + id] !== undefined", arg=player_id, timeout=5000)
        except Exception:
            problems.append(f"{name}.html player {index + 1}: its script never started")
            continue
        frames = page.evaluate("id => window['anim' + id].frames.length", player_id)
        first = image.evaluate("i => i.src")
        if frames < 2 or not first.startswith("data:image"):
            problems.append(f"{name}.html player {index + 1}: {frames} frame(s), first frame {first[:40]!r}")
            continue
        player.scroll_into_view_if_needed()
        player.get_by_role("button", name="Play", exact=True).click()
        try:
            page.wait_for_function(
                "([s, i, first]) => Number(s.value) > 0 && i.src !== first && i.complete && i.naturalWidth > 0",
                arg=[slider.element_handle(), image.element_handle(), first],
                timeout=5000,
            )
        except Exception:
            problems.append(f"{name}.html player {index + 1} ({frames} frames) did not advance within 5 s of Play")
        player.get_by_role("button", name="Pause", exact=True).click()
    assert not problems, "\n".join(problems)


def test_index_links_only_existing_files(open_page, browser):
    index = PAGES / "index.html"
    assert index.exists(), f"{PAGES} has no index.html (the course's front page that run_course.py writes)"
    opened = open_page(index)
    page = opened.page
    targets = page.evaluate(
        """() => [...document.querySelectorAll('a[href], img[src], link[href], script[src]')]
               .map(e => e.getAttribute('href') || e.getAttribute('src'))"""
    )
    missing = []
    for target in targets:
        url = urlparse(target)
        if url.scheme in ("http", "https", "mailto") or target.startswith("#"):
            continue  # a link the reader may click; requests the page itself makes are caught by the gate
        if not (PAGES / unquote(url.path)).exists():
            missing.append(target)
    page.wait_for_load_state("load")
    broken = page.evaluate(
        "() => [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)"
    )
    lessons = page.locator("section.lesson").count()
    without_picture = page.evaluate(
        "() => [...document.querySelectorAll('section.lesson')].filter(s => !s.querySelector('img'))"
        ".map(s => s.textContent.trim().split('\\n')[0])"
    )
    problems = network_problems(opened, "index.html")
    if missing:
        problems.append(f"index.html links {len(missing)} missing file(s): {missing[:6]}")
    if broken:
        problems.append(f"index.html shows {len(broken)} picture(s) that do not load: {broken[:4]}")
    if without_picture:
        problems.append(f"index.html shows {len(without_picture)} lesson(s) without their animation: {without_picture}")
    if lessons != 4:
        problems.append(f"index.html shows {lessons} lessons, expected 4")
    for name in PAGE_NAMES:
        if f"{name}.html" not in targets:
            problems.append(f"index.html does not link {name}.html")
    assert not problems, "\n".join(problems)

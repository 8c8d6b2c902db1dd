"""The book: it builds with zero warnings and a real browser shows its tables, figures and typeset math, offline.

The test builds the Jupyter Book from the executed notebooks in ``book/generated/`` (executing the report
notebooks first when some are missing) into a temporary ``--path-output``, serves the HTML from a local
http.server on a free loopback port and opens pages in headless Chromium (Debian's ``chromium``; ``make test``
installs it). It checks what a reader sees: each results page's tables and figures, MathJax output in place of
raw TeX, and no resource fetched from anywhere but the local server.

The server publishes the site under a sub-path (``/zegclip/``), as GitHub Pages does for a project site, and
answers 404 to anything outside it, so every browser check also proves that no link assumes the site root.
``$ZEGCLIP_BOOK_HTML`` names an already built ``_build/html`` to check instead of building one (the book
workflow checks the very site it deploys).

Screenshots of three pages are written to the test's temporary folder, or to ``$ZEGCLIP_BOOK_SCREENSHOTS`` when set.
"""
from __future__ import annotations

import functools
import html as html_lib
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit
from urllib.error import HTTPError
from urllib.request import urlopen

import pytest

pytestmark = pytest.mark.slow  # builds the book and drives headless Chromium

REPO = Path(__file__).resolve().parents[1]
GENERATED = REPO / "book" / "generated"
REPORTS = ("calibration", "table2", "table3", "table4", "table5", "table6", "table7", "figure1", "figure4", "figure5",
           "alignment")
PAGES = REPORTS + ("walkthrough",)
# The environment of the session, before any fixture changes it (the notebooks need the real mini-CLIP cache).
ENV = dict(os.environ)
SCREENSHOT_PAGES = ("book/method.html", "book/generated/table2.html", "book/generated/walkthrough.html",
                    "book/generated/runs.html", "book/generated/runs/mini-voc-dpt-nel-rd-inductive-s0.html")


# ---------------------------------------------------------------------------------------------------- helpers

def find_chromium() -> str | None:
    for candidate in (ENV.get("ZEGCLIP_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def jupyter_book() -> str:
    exe = Path(sys.executable).parent / "jupyter-book"
    return str(exe) if exe.is_file() else (shutil.which("jupyter-book") or "jupyter-book")


def reproduce_has_reports_only() -> bool:
    """Whether ``python -m zegclip reproduce`` exists and has the ``--reports-only`` flag."""
    proc = subprocess.run([sys.executable, "-m", "zegclip", "reproduce", "--help"], cwd=REPO, env=ENV,
                          capture_output=True, text=True, timeout=120)
    return proc.returncode == 0 and "--reports-only" in proc.stdout


def execute_reports(missing: list[str]) -> None:
    """Execute the report notebooks into book/generated/ (mini profile), as the main job does."""
    if reproduce_has_reports_only():
        # --quick: the walkthrough uses a random mini-CLIP (no 12-minute pretraining in CI); tables read results/
        cmd = [sys.executable, "-m", "zegclip", "reproduce", "--profile", "mini", "--reports-only", "--quick",
               "--results-dir", "results"]
        proc = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return
    import papermill  # fallback while the CLI flag is not there: the same execution, done here

    GENERATED.mkdir(parents=True, exist_ok=True)
    for name in missing:
        source = REPO / "notebooks" / f"{name}.ipynb"
        assert source.is_file(), f"{source} is missing: the book cannot show {name}"
        params = {"profile": "mini"}
        if name in REPORTS:
            params["results_dir"] = str(REPO / "results")
        papermill.execute_notebook(str(source), str(GENERATED / f"{name}.ipynb"), parameters=params,
                                   cwd=str(REPO), kernel_name="python3", progress_bar=False)


def notebook_expectations(path: Path) -> dict[str, int]:
    """How many tables, images and math expressions a reader must see for this executed notebook."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    tables = images = math = 0
    for cell in nb["cells"]:
        source = "".join(cell.get("source", ""))
        if cell["cell_type"] == "markdown":
            tables += len(re.findall(r"^\s*\|?\s*:?-{3,}:?\s*\|", source, flags=re.M))
            images += len(re.findall(r"!\[[^\]]*\]\([^)]+\)", source))
            prose = re.sub(r"```.*?```|`[^`\n]*`", " ", source, flags=re.S)  # code spans hold no math
            math += len(re.findall(r"\$\$.+?\$\$|(?<![\\$])\$[^$\n]+\$", prose, flags=re.S))
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if any(k.startswith("image/") for k in data):
                images += 1
            elif "text/html" in data:
                tables += "".join(data["text/html"]).count("<table")
            elif "text/markdown" in data:
                tables += len(re.findall(r"^\s*\|?\s*:?-{3,}:?\s*\|", "".join(data["text/markdown"]), flags=re.M))
            if "text/latex" in data and not any(k.startswith("image/") or k == "text/html" for k in data):
                math += 1
    return {"tables": tables, "images": images, "math": math}


def has_results(name: str, every: bool = False) -> bool:
    """Whether any run (``every``: every run) that this report reads has a result file for the profile it was
    executed with."""
    if name not in REPORTS:
        return False
    meta = json.loads((GENERATED / f"{name}.ipynb").read_text(encoding="utf-8"))["metadata"]
    params = (meta.get("papermill") or {}).get("parameters") or {}
    if "profile" not in params:
        return True  # not executed by papermill: hold the page to the full standard
    from zegclip.experiments.registry import runs_for
    from zegclip.experiments.runs import is_done

    results_dir = Path(params.get("results_dir") or "results")
    results_dir = results_dir if results_dir.is_absolute() else REPO / results_dir
    done = [is_done(entry, results_dir) for entry in runs_for(params["profile"], name)]
    return all(done) if every else any(done)


def visible_text(dom: str) -> str:
    """The page's text as a reader sees it (no scripts, styles or MathJax's hidden MathML copy)."""
    dom = re.sub(r"<(script|style|mjx-assistive-mml|noscript)\b.*?</\1>", " ", dom, flags=re.S | re.I)
    return html_lib.unescape(re.sub(r"<[^>]+>", " ", dom))


class Browser:
    """Headless Chromium, one process per page (``--dump-dom`` prints the DOM after scripts have run)."""

    def __init__(self, exe: str, profile_dir: Path):
        self.exe, self.profile_dir = exe, profile_dir

    def _run(self, *args: str, timeout: int = 90) -> subprocess.CompletedProcess:
        cmd = [self.exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-default-apps", "--disable-extensions", "--no-first-run", "--no-default-browser-check",
               "--hide-scrollbars", f"--user-data-dir={self.profile_dir}", "--virtual-time-budget=20000", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=ENV)

    def dom(self, url: str) -> str:
        proc = self._run("--dump-dom", url)
        assert proc.returncode == 0 and "</html>" in proc.stdout, f"chromium could not render {url}:\n{proc.stderr[-2000:]}"
        return proc.stdout

    def screenshot(self, url: str, path: Path) -> Path:
        proc = self._run("--window-size=1280,1800", f"--screenshot={path}", url)
        assert proc.returncode == 0 and path.is_file(), f"no screenshot of {url}:\n{proc.stderr[-2000:]}"
        return path


class QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):  # a browser that hung up early
            super().handle_error(request, client_address)


# A project Pages site lives at https://<user>.github.io/<repo>/: the test server publishes the book there too.
SUBPATH = "/zegclip/"


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep pytest's output clean
        pass


class SubPathHandler(QuietHandler):
    """Serves the site under SUBPATH only; any other path is a 404, as on a project Pages site."""

    def _strip(self) -> bool:
        if not self.path.startswith(SUBPATH):
            self.send_error(404, "outside the site's sub-path")
            return False
        self.path = "/" + self.path[len(SUBPATH):]
        return True

    def do_GET(self) -> None:
        if self._strip():
            super().do_GET()

    def do_HEAD(self) -> None:
        if self._strip():
            super().do_HEAD()


# ---------------------------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def chromium() -> str:
    exe = find_chromium()
    if exe is None:
        if ENV.get("CI"):
            pytest.fail("chromium is missing in CI: `make test` installs Debian's chromium (apt-get install chromium)")
        pytest.skip("headless Chromium is not installed (`make test` installs Debian's chromium when run as root)")
    return exe


@pytest.fixture(scope="module")
def book(tmp_path_factory) -> Path:
    """Build the book into a temporary --path-output (zero warnings allowed); returns the html folder
    (``$ZEGCLIP_BOOK_HTML``: that built folder, unchanged)."""
    if ENV.get("ZEGCLIP_BOOK_HTML"):
        html = Path(ENV["ZEGCLIP_BOOK_HTML"])
        html = html if html.is_absolute() else REPO / html
        assert (html / "index.html").is_file(), f"$ZEGCLIP_BOOK_HTML={html}: no index.html there"
        return html
    missing = [n for n in PAGES if not (GENERATED / f"{n}.ipynb").is_file()]
    if missing or not all((GENERATED / f).is_file() for f in ("runs.md", "claims.md", "summary.md")):  # written with the reports
        execute_reports(missing)
        still = [n for n in PAGES if not (GENERATED / f"{n}.ipynb").is_file()]
        assert not still, f"executed notebooks still missing from book/generated/: {still}"
    out = tmp_path_factory.mktemp("book")
    t0 = time.perf_counter()
    proc = subprocess.run([jupyter_book(), "build", str(REPO), "--warningiserror", "--path-output", str(out)],
                          cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"jupyter-book build failed ({time.perf_counter() - t0:.0f}s):\n{log[-6000:]}"
    assert not re.search(r"\bWARNING\b", log), f"the build printed warnings:\n{log[-6000:]}"
    html = out / "_build" / "html"
    assert (html / "index.html").is_file()
    return html


@pytest.fixture(scope="module")
def server(book):
    handler = functools.partial(SubPathHandler, directory=str(book))
    httpd = QuietServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}{SUBPATH}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def browser(chromium, tmp_path_factory) -> Browser:
    return Browser(chromium, tmp_path_factory.mktemp("chromium-profile"))


# ---------------------------------------------------------------------------------------------------- tests

def test_book_is_self_contained(book):
    """MathJax is served from the site itself, and no page loads anything from another host."""
    mathjax = book / "_static" / "mathjax"
    assert (mathjax / "tex-chtml.js").is_file()
    assert any((mathjax / "output" / "chtml" / "fonts" / "woff-v2").glob("*.woff")), "MathJax fonts missing"
    pages = sorted(book.rglob("*.html"))
    assert len(pages) >= len(PAGES) + 6
    for page in pages:
        text = page.read_text(encoding="utf-8")
        remote = re.findall(r"<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)=\"((?:https?:)?//[^\"]+)\"", text)
        assert not remote, f"{page.relative_to(book)} loads remote resources: {remote}"
        if "mathjax" in text.lower() and "<script" in text:
            srcs = re.findall(r"<script[^>]*src=\"([^\"]*mathjax[^\"]*)\"", text, flags=re.I)
            assert all(s.endswith("_static/mathjax/tex-chtml.js") for s in srcs), (page, srcs)


@pytest.mark.parametrize("name", PAGES)
def test_results_page_renders(name, book, server, browser):
    """Each results page shows its tables and figures, typeset math, and names its profile."""
    expected = notebook_expectations(GENERATED / f"{name}.ipynb")
    if has_results(name):  # without results a page says so instead of showing numbers (checked below)
        if name.startswith("table"):
            assert expected["tables"] >= 1, f"{name}.ipynb has results but no table output"
        if name.startswith("figure") and has_results(name, every=True):  # a figure of part of its runs is a note
            assert expected["images"] >= 1, f"{name}.ipynb has results but no figure output"
    url = urljoin(server, f"book/generated/{name}.html")
    dom = browser.dom(url)

    tables = re.findall(r"<table\b", dom)
    assert len(tables) >= expected["tables"], f"{name}: {len(tables)} tables rendered, {expected['tables']} expected"
    srcs = re.findall(r"<img\b[^>]*\bsrc=\"([^\"]*)\"", dom)
    figures = [s for s in srcs if s.strip() and "_static/" not in s]  # not the theme's logo or icons
    assert len(figures) >= expected["images"], f"{name}: {len(figures)} figures rendered, {expected['images']} expected"
    for src in figures:
        target = urljoin(url, src)
        assert urlsplit(target).netloc == urlsplit(server).netloc, f"{name}: image from another host: {src}"
        with urlopen(target, timeout=10) as resp:  # the image exists on the local server
            head = resp.read(8)
        assert head.startswith(b"\x89PNG") or head[:2] == b"\xff\xd8" or b"<svg" in head or head.startswith(b"<?xml"), src

    check_math(name, dom, expected["math"])
    text = visible_text(dom)
    assert re.search(r"\bprofile\b", text, flags=re.I), f"{name}: the page does not say which profile produced it"


def check_math(name: str, dom: str, expected: int) -> None:
    containers = len(re.findall(r"<mjx-container\b", dom))
    wrappers = len(re.findall(r"<(?:span|div)\b[^>]*class=\"(?:[^\"]*\s)?math(?:\s[^\"]*)?\"", dom))
    assert containers >= max(expected, wrappers), (
        f"{name}: {containers} typeset expressions, {wrappers} math elements, {expected} expected")
    text = visible_text(re.sub(r"<pre\b.*?</pre>", " ", dom, flags=re.S))  # code is not math
    raw = [m for m in ("\\(", "\\)", "\\[", "\\]", "$$") if m in text]
    assert not raw, f"{name}: raw TeX left in the page ({raw}): {text[text.find(raw[0]) - 80:][:200]!r}"


def test_text_pages_render(book, server, browser):
    """The method page's equations are typeset, and the results index names the profile of this build."""
    method = browser.dom(urljoin(server, "book/method.html"))
    check_math("method", method, expected=10)
    assert len(re.findall(r"<mjx-container\b[^>]*display=\"true\"", method)) >= 5, "display equations not typeset"

    front = visible_text(browser.dom(urljoin(server, "book/index.html")))
    assert "What the measured world says" in front and "The instrument." in front and "The main rows." in front, \
        "the front page lacks its three-line summary"

    results = visible_text(browser.dom(urljoin(server, "book/results.html")))
    assert "{{" not in results, "unresolved substitution on the results page"
    match = re.search(r"Profile of the numbers in this build:\s*([^.]+)\.", results)
    assert match, "the results page does not state the profile"
    profiles = {json.loads((GENERATED / f"{n}.ipynb").read_text(encoding="utf-8"))["metadata"]
                .get("papermill", {}).get("parameters", {}).get("profile") for n in PAGES}
    for profile in profiles - {None}:
        assert profile in match.group(1), (profile, match.group(1))


def test_internal_links_resolve(book):
    """Every internal link and resource of every page exists, and every #anchor has its target (no 404 in the book;
    the theme's own template fragments in _static/ are not pages)."""
    anchors: dict[Path, set[str]] = {}

    def targets(path: Path) -> set[str]:
        if path not in anchors:
            anchors[path] = set(re.findall(r'\b(?:id|name)="([^"]+)"', path.read_text(encoding="utf-8")))
        return anchors[path]

    broken, checked = [], 0
    for page in sorted(p for p in book.rglob("*.html") if "_static" not in p.relative_to(book).parts):
        text = page.read_text(encoding="utf-8")
        for url in re.findall(r'<(?:a|link|img|script|source)\b[^>]*?\b(?:href|src)="([^"]*)"', text):
            parts = urlsplit(html_lib.unescape(url))
            if parts.scheme or parts.netloc or not url:
                continue
            checked += 1
            target = page if not parts.path else (page.parent / unquote(parts.path)).resolve()
            target = target / "index.html" if target.is_dir() else target
            if not target.is_file():
                broken.append(f"{page.relative_to(book)}: {url} (no such file)")
            elif parts.fragment and target.suffix == ".html" and unquote(parts.fragment) not in targets(target):
                broken.append(f"{page.relative_to(book)}: {url} (no such anchor)")
    assert checked > 1000 and not broken, f"{len(broken)} broken of {checked} internal links:\n" + "\n".join(broken[:20])


def fetch(url: str) -> tuple[int, bytes]:
    try:
        with urlopen(url, timeout=10) as resp:
            return resp.status, resp.read()
    except HTTPError as err:
        return err.code, b""


def test_links_resolve_under_a_sub_path(book, server):
    """Served under a sub-path (a project Pages site), every page reachable from the front page is found by
    following links over HTTP, and every internal link, image, script, stylesheet and #anchor of each resolves
    there: the run pages, the report pages and MathJax's script included."""
    root = server + "index.html"
    status, _ = fetch(urljoin(server, "/index.html"))
    assert status == 404, "the test server must answer 404 outside the sub-path"
    pages: dict[str, str] = {}
    queue, seen, broken, checked = [root], {root}, [], 0
    anchors: list[tuple[str, str, str, str]] = []
    while queue:
        url = queue.pop()
        status, body = fetch(url)
        if status != 200:
            continue  # reported by the page that links to it
        pages[url] = body.decode("utf-8", errors="replace")
        links = re.findall(r'<(?:a|link|img|script|source)\b[^>]*?\b(?:href|src)="([^"]*)"', pages[url])
        links += re.findall(r'<meta http-equiv="Refresh" content="\d+;\s*url=([^"]+)"', pages[url], flags=re.I)
        for link in links:
            parts = urlsplit(html_lib.unescape(link))
            if parts.scheme or parts.netloc or not link or not parts.path:
                continue  # other hosts, and same-page anchors (checked on disk by test_internal_links_resolve)
            checked += 1
            target, _, fragment = urljoin(url, html_lib.unescape(link)).partition("#")
            if target not in seen:
                seen.add(target)
                if target.endswith(".html"):
                    queue.append(target)
                else:
                    code, _ = fetch(target)
                    if code != 200:
                        broken.append(f"{url}: {link} -> {code}")
            if fragment and target.endswith(".html"):
                anchors.append((url, link, target, unquote(fragment)))
    for url, link, target, fragment in anchors:
        if target in pages and not re.search(rf'\b(?:id|name)="{re.escape(fragment)}"', pages[target]):
            broken.append(f"{url}: {link} (no such anchor)")
    missing = sorted(u for u in seen if u.endswith(".html") and u not in pages)
    broken += [f"{u} -> not 200" for u in missing]
    served = {urlsplit(u).path[len(SUBPATH):] for u in pages}
    on_disk = {p.relative_to(book).as_posix() for p in book.rglob("*.html")
               if "_static" not in p.relative_to(book).parts}
    needed = {f"book/generated/{n}.html" for n in PAGES} | {p for p in on_disk if p.startswith("book/generated/runs/")}
    assert not broken, f"{len(broken)} broken of {checked} links under {SUBPATH}:\n" + "\n".join(broken[:20])
    assert checked > 1000 and needed <= served, f"pages not reachable from the front page: {sorted(needed - served)[:20]}"
    assert any(u.endswith("_static/mathjax/tex-chtml.js") for u in seen), "no page loads MathJax from the site"


@pytest.mark.parametrize("name", [n for n in REPORTS if n.startswith("table") and n != "table3"] + ["figure1"])
def test_results_cells_link_to_run_pages(name, book):
    """Each reproduced cell of a results table links to the page of its run (or of each seed's run)."""
    page = book / "book" / "generated" / f"{name}.html"
    tables = "".join(re.findall(r"<table\b.*?</table>", page.read_text(encoding="utf-8"), flags=re.S))
    links = re.findall(r'href="(runs/[^"#]+\.html)"', tables)
    if has_results(name):
        assert links, f"{name}: results but no cell links to a run page"
    for link in links:
        assert (page.parent / link).is_file(), f"{name}: {link} has no page"


def test_run_page_and_runs_index(book):
    """A run page shows its configuration (diff and full), per-class IoU, the rerun command and, when its result kept
    the training log, the loss curves; the runs index lists every run with its machine and time."""
    generated = book / "book" / "generated"
    index = generated / "runs.html"
    assert index.is_file(), "the runs index page is missing"
    text = visible_text(index.read_text(encoding="utf-8"))
    assert "Runs and their times" in text and re.search(r"\d+ of \d+ runs have a result", text)
    pages = sorted((generated / "runs").glob("*.html"))
    assert pages, "no run pages"
    for page in pages:
        if page.stem == "none":
            continue
        dom = page.read_text(encoding="utf-8")
        text = html_lib.unescape(re.sub(r"<[^>]+>", "", dom))  # highlighted code is split into spans
        for part in ("Metrics", "Configuration", "full resolved configuration", "Per-class IoU",
                     f"--only {page.stem.removesuffix('-quick')} --force"):
            assert part in text, f"{page.name}: no {part!r}"
        result = REPO / "results" / "mini" / "runs" / f"{page.stem}.json"
        if result.is_file() and (json.loads(result.read_text()).get("training") or {}).get("log"):
            assert f"{page.stem}-curves.png" in dom, f"{page.name}: its result kept a training log, but no curves"


def test_screenshots(book, server, browser, tmp_path):
    """Screenshots of three pages (for a person to look at); each must be a real, non-blank picture."""
    folder = Path(ENV["ZEGCLIP_BOOK_SCREENSHOTS"]) if ENV.get("ZEGCLIP_BOOK_SCREENSHOTS") else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    for page in SCREENSHOT_PAGES:
        png = browser.screenshot(urljoin(server, page), folder / (page.replace("/", "_").replace(".html", ".png")))
        data = png.read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 20_000, f"{png} looks blank ({len(data)} bytes)"

"""The board report in a real browser: headless Chromium (Debian's, driven by Playwright) opens the HTML from
``file://`` with the network blocked, and the printed PDF is checked for cut figures.

Chromium is found on PATH (``chromium``, ``chromium-browser``) or at ``$FLOWSIM_CHROMIUM``; Playwright's own
browser downloads are never used.  Without Chromium or Playwright the tests skip, except when the ``CI``
environment variable is set: then they fail, so CI can never pass without running them (``.ci/run``
installs Chromium first).

Every report kind is rendered (a run, a comparison, a sweep, a calibration).  Checks: no request leaves
``file:``/``data:``; no console error or page error; the headline table is shown; every ``<img>`` is decoded
(naturalWidth > 0) and has a non-empty box; a full-page screenshot; ``page.pdf()`` on A4 with a sensible page
count, every image drawn on exactly one page and wholly inside it (a figure taller than a page would be drawn on
two pages, cut); in print layout every figure fits a page and is never broken; and, as a reader sees the page,
no option is said to save money while its net-cost interval spans zero (issue 14).  The PDF check and the
savings check are each tested on a page built to fail them.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import PNG_MAGIC, flowsim

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "scenarios"
MINIMAL = SCENARIOS / "minimal.yaml"
# A4 at 96 CSS px per inch, less the report's @page margins (14 mm top, 16 mm bottom, 13 mm each side)
MM = 96 / 25.4
PAGE_CONTENT_W = (210 - 26) * MM
PAGE_CONTENT_H = (297 - 30) * MM


def _chromium() -> str | None:
    return os.environ.get("FLOWSIM_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def _unavailable(reason: str) -> None:
    if "CI" in os.environ:
        pytest.fail(f"{reason}; CI must run the browser tests (.ci/run installs Debian's chromium)", pytrace=False)
    pytest.skip(reason)


def run_ok(*args: str | Path) -> None:
    proc = flowsim(*args)
    assert proc.returncode == 0, f"flowsim {args[0]}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    path = _chromium()
    if path is None:
        _unavailable("Chromium not found (install Debian's chromium, or set FLOWSIM_CHROMIUM)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install -e '.[test]')")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory, winter_compare: tuple[Any, Path],
            small_calibration: Path) -> dict[str, Path]:
    """A short comparison (baseline and two options), a short run, a tiny sweep and a quick calibration, each
    with its report (the comparison and the calibration are the session's, shared with test_report)."""
    from flowsim.report.html import write_report

    tmp = tmp_path_factory.mktemp("browser")
    proc, comparison = winter_compare
    assert proc.returncode == 0, f"flowsim compare: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    dirs = {k: tmp / k for k in KINDS}
    dirs.update(comparison=comparison, calibration=small_calibration)
    sweep = tmp / "sweep.yaml"
    sweep.write_text(f"""name: tiny
base: {MINIMAL}
seed: 7
replications: 2
set: {{simulation.duration_days: 45, simulation.warmup_days: 15}}
parameters: [{{path: pathways.P1.services.reablement.capacity, label: Reablement places, values: [26, 32]}}]
kpis: [delayed_patients_per_day]
""", encoding="utf-8")
    run_ok("run", MINIMAL, "-n", "3", "--out", dirs["run"], "--set", "simulation.duration_days=60",
           "--set", "simulation.warmup_days=20")
    run_ok("sweep", sweep, "--out", dirs["sweep"], "--workers", "1")
    return {kind: write_report(d) for kind, d in dirs.items()}


KINDS = ["comparison", "run", "sweep", "calibration"]
MIN_IMAGES = {"comparison": 6, "run": 4, "sweep": 1, "calibration": 2}


class Visit:
    """One page load with every request, console message and page error recorded."""

    def __init__(self, browser: Any, path: Path, width: int = 1200):
        self.requests: list[str] = []
        self.blocked: list[str] = []
        self.console: list[tuple[str, str]] = []
        self.errors: list[str] = []
        self.context = browser.new_context(viewport={"width": width, "height": 900}, java_script_enabled=True)
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("console", lambda m: self.console.append((m.type, m.text)))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("requestfailed", lambda r: self.errors.append(f"request failed: {r.url}"))
        self.page.goto(path.resolve().as_uri(), wait_until="load")
        self.page.wait_for_function("Array.from(document.images).every(i => i.complete)")

    def _route(self, route: Any) -> None:
        url = route.request.url
        if url.startswith(("file:", "data:")):
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort()

    def close(self) -> None:
        self.context.close()


@pytest.fixture(params=KINDS)
def visit(request: pytest.FixtureRequest, browser: Any, reports: dict[str, Path]) -> Iterator[tuple[str, Visit]]:
    v = Visit(browser, reports[request.param])
    try:
        yield request.param, v
    finally:
        v.close()


IMAGES_JS = """() => Array.from(document.images).map(i => {
  const r = i.getBoundingClientRect();
  const fig = i.closest('figure');
  const f = fig ? fig.getBoundingClientRect() : r;
  return {src: i.getAttribute('src').slice(0, 22), complete: i.complete, nw: i.naturalWidth, nh: i.naturalHeight,
          w: r.width, h: r.height, fig_h: f.height,
          brk: fig ? getComputedStyle(fig).breakInside : 'none'};
})"""


def test_loads_offline_without_errors(visit: tuple[str, Visit]) -> None:
    _, v = visit
    assert v.requests, "the page itself must have been requested"
    assert all(u.startswith(("file:", "data:")) for u in v.requests), v.requests
    assert not v.blocked, f"the report tried to reach the network: {v.blocked}"
    assert not v.errors, v.errors
    assert not [m for m in v.console if m[0] in ("error", "warning")], v.console
    assert v.page.title() and v.page.locator("h1").inner_text().strip() in v.page.title(), v.page.title()


def test_headline_table_and_every_image_visible(visit: tuple[str, Visit], tmp_path: Path) -> None:
    kind, v = visit
    page = v.page
    headline = page.locator("table#headline")
    assert headline.count() == 1 and headline.is_visible()
    rows = page.locator("table#headline tbody tr")
    assert rows.count() >= {"sweep": 2}.get(kind, 5)   # the tiny sweep has two points
    box = headline.bounding_box()
    assert box is not None and box["width"] > 400 and box["height"] > 100
    assert page.locator("h1").inner_text().strip()
    html_imgs = len(re.findall(r"<img\b", Path(page.url.removeprefix("file://")).read_text(encoding="utf-8")))
    images = page.evaluate(IMAGES_JS)
    assert len(images) == html_imgs >= MIN_IMAGES[kind]
    for i, img in enumerate(images):
        assert img["src"] == "data:image/png;base64,", img
        assert img["complete"] and img["nw"] > 0 and img["nh"] > 0, f"image {i} not decoded: {img}"
        assert img["w"] > 100 and img["h"] > 50, f"image {i} has no box: {img}"
        assert page.locator("img").nth(i).is_visible()
    shot = tmp_path / f"{kind}.png"
    page.screenshot(path=str(shot), full_page=True)
    data = shot.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 200_000
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width == 1200 and height > 3000, (width, height)


def test_print_layout_keeps_figures_whole(browser: Any, reports: dict[str, Path]) -> None:
    for kind, path in reports.items():
        v = Visit(browser, path, width=int(PAGE_CONTENT_W))
        try:
            v.page.emulate_media(media="print")
            for img in v.page.evaluate(IMAGES_JS):
                assert img["brk"] == "avoid", f"{kind}: figure may break across pages"
                assert img["w"] <= PAGE_CONTENT_W + 1, f"{kind}: figure wider than A4: {img}"
                assert img["fig_h"] <= PAGE_CONTENT_H, f"{kind}: figure taller than an A4 page: {img}"
            assert v.page.locator("nav.toc").is_hidden()
            assert v.page.locator("table#headline").is_visible()
        finally:
            v.close()


# --------------------------------------------------------------------------------------------- the PDF

NUMBER = rb"[-+]?(?:\d+\.?\d*|\.\d+)"
TOKEN = re.compile(rb"<<|>>|<[0-9A-Fa-f\s]*>|\((?:\\.|[^\\)])*\)|/[^\s/\[\]()<>{}%]+|" + NUMBER
                   + rb"|[A-Za-z'\"*]+|\[|\]")
OBJECT = re.compile(rb"(\d+) 0 obj\s*(<<(?:(?!endobj).)*?>>)\s*(stream\r?\n|endobj)", re.S)


Image = tuple[int, float, float, float, float]


def _pdf_objects(pdf: bytes) -> tuple[dict[int, bytes], dict[int, bytes]]:
    """Every object's dictionary, and every stream's (inflated) content, by object number."""
    dicts: dict[int, bytes] = {}
    streams: dict[int, bytes] = {}
    for m in OBJECT.finditer(pdf):
        n, d = int(m.group(1)), m.group(2)
        dicts[n] = d
        if m.group(3).startswith(b"stream"):
            length = int(re.search(rb"/Length (\d+)", d).group(1))  # type: ignore[union-attr]
            raw = pdf[m.end():m.end() + length]
            streams[n] = zlib.decompress(raw) if b"/FlateDecode" in d else raw
    return dicts, streams


def _concat(a: list[float], ctm: list[float]) -> list[float]:
    """``a cm``: the matrix ``a`` times the current transformation matrix, PDF's row-vector convention."""
    return [a[0] * ctm[0] + a[1] * ctm[2], a[0] * ctm[1] + a[1] * ctm[3],
            a[2] * ctm[0] + a[3] * ctm[2], a[2] * ctm[1] + a[3] * ctm[3],
            a[4] * ctm[0] + a[5] * ctm[2] + ctm[4], a[4] * ctm[1] + a[5] * ctm[3] + ctm[5]]


def _images_drawn(content: bytes, names: dict[bytes, int], dicts: dict[int, bytes]) -> list[Image]:
    """The images one content stream draws (``cm ... Do`` inside ``q``/``Q``), each with its bounding box."""
    drawn: list[Image] = []
    ctm, stack, nums, name = [1.0, 0.0, 0.0, 1.0, 0.0, 0.0], [], [], b""
    for t in TOKEN.findall(content):
        if re.fullmatch(NUMBER, t):
            nums.append(float(t))
            continue
        if t.startswith(b"/"):
            name = t[1:]
        elif t == b"q":
            stack.append(ctm)
        elif t == b"Q" and stack:
            ctm = stack.pop()
        elif t == b"cm" and len(nums) >= 6:
            ctm = _concat(nums[-6:], ctm)
        elif t == b"Do" and name in names and b"/Subtype /Image" in dicts.get(names[name], b""):
            xs = [ctm[4], ctm[4] + ctm[0], ctm[4] + ctm[2], ctm[4] + ctm[0] + ctm[2]]
            ys = [ctm[5], ctm[5] + ctm[1], ctm[5] + ctm[3], ctm[5] + ctm[1] + ctm[3]]
            drawn.append((names[name], min(xs), min(ys), max(xs), max(ys)))
        nums = []
    return drawn


def pdf_images_by_page(pdf: bytes) -> list[tuple[list[float], list[Image]]]:
    """For each page: its MediaBox and every image drawn on it as (object, x0, y0, x1, y1) in points.

    Enough of PDF for what Chromium (Skia) writes: uncompressed object dictionaries, Flate content streams,
    images as XObjects named in the page's resources and drawn by ``cm ... Do`` inside ``q``/``Q``."""
    dicts, streams = _pdf_objects(pdf)
    pages = []
    for d in dicts.values():  # page objects in object order, which is page order in Skia's PDFs
        if not re.search(rb"/Type\s*/Page\b", d):
            continue
        box = [float(x) for x in re.search(rb"/MediaBox\s*\[([^\]]*)\]", d).group(1).split()]  # type: ignore[union-attr]
        xo = re.search(rb"/XObject\s*<<(.*?)>>", d, re.S)
        names = {k: int(v) for k, v in re.findall(rb"/(\S+?)\s+(\d+) 0 R", xo.group(1))} if xo else {}
        contents = [int(c) for c in re.findall(rb"(\d+) 0 R", re.search(rb"/Contents\s*(\[[^\]]*\]|\d+ 0 R)",
                                                                           d).group(1))]  # type: ignore[union-attr]
        pages.append((box, [img for c in contents for img in _images_drawn(streams.get(c, b""), names, dicts)]))
    return pages


def cut_images(pdf: bytes) -> list[str]:
    """Why any image is cut: drawn on more than one page, or drawn beyond its page."""
    problems = []
    where: dict[int, int] = {}
    for i, (box, drawn) in enumerate(pdf_images_by_page(pdf), start=1):
        for obj, x0, y0, x1, y1 in drawn:
            if obj in where and where[obj] != i:
                problems.append(f"image {obj} on pages {where[obj]} and {i}")
            where[obj] = i
            if x0 < box[0] - 1 or y0 < box[1] - 1 or x1 > box[2] + 1 or y1 > box[3] + 1:
                problems.append(f"image {obj} on page {i} runs off the page: {(x0, y0, x1, y1)} vs {box}")
    return problems


def test_pdf_check_catches_a_cut_figure(browser: Any, tmp_path: Path, reports: dict[str, Path]) -> None:
    """The PDF check must see a figure that runs over a page break (a control for the test below)."""
    png = next((reports["run"].parent / "figures").glob("*.png")).read_bytes()
    data = base64.b64encode(png).decode()
    page_html = tmp_path / "cut.html"
    page_html.write_text(f'<!DOCTYPE html><div style="height:600px"></div><img style="width:600px;height:1400px" '
                         f'src="data:image/png;base64,{data}"><p>after</p>', encoding="utf-8")
    page = browser.new_page()
    try:
        page.goto(page_html.as_uri())
        pdf = page.pdf(format="A4")
    finally:
        page.close()
    assert cut_images(pdf), "a 1400px image over a page break was not detected"


def test_prints_to_a4_pdf_without_cut_figures(browser: Any, reports: dict[str, Path], tmp_path: Path) -> None:
    for kind, path in reports.items():
        v = Visit(browser, path)
        try:
            n_imgs = v.page.locator("img").count()
            pdf = v.page.pdf(format="A4", print_background=True)
        finally:
            v.close()
        (tmp_path / f"{kind}.pdf").write_bytes(pdf)
        assert pdf.startswith(b"%PDF-") and len(pdf) > 100_000, f"{kind}: {len(pdf)} bytes"
        pages = pdf_images_by_page(pdf)
        assert {"comparison": 8, "run": 6, "sweep": 3, "calibration": 3}[kind] <= len(pages) <= 40, \
            f"{kind}: {len(pages)} pages"
        for box, _ in pages:  # A4 in points
            assert box[2] == pytest.approx(595.3, abs=1.5) and box[3] == pytest.approx(841.9, abs=1.5)
        drawn = {obj for _, d in pages for obj, *_ in d}
        assert len(drawn) == n_imgs, f"{kind}: {len(drawn)} images in the PDF, {n_imgs} in the page"
        assert not cut_images(pdf), f"{kind}: {cut_images(pdf)}"


# --------------------------------------------------------------------------------------------- words follow intervals

ECONOMICS_JS = """() => Array.from(document.querySelectorAll('#economics-table tr[data-option]')).map(r => ({
  option: r.dataset.option, verdict: r.dataset.costVerdict, low: parseFloat(r.dataset.netLow),
  high: parseFloat(r.dataset.netHigh), shown: r.innerText}))"""


def false_savings(page: Any) -> list[str]:
    """Every place the page, as a reader sees it, says an option saves money while its net-cost interval (in the
    value-for-money table) is not wholly below zero."""
    rows = page.evaluate(ECONOMICS_JS)
    text = page.inner_text("body")
    problems = []
    for r in rows:
        wholly_below = r["high"] < 0
        claims = [m.group(0) for m in re.finditer(re.escape(r["option"]) + r"\s*:\s*saves[^.;]*", text)]
        claims += ["the table's verdict"] if r["verdict"] == "saves" or "\nsaves" in r["shown"] else []
        if claims and not wholly_below:
            problems.append(f"{r['option']} (net cost {r['low']:.0f} to {r['high']:.0f}): {claims}")
    return problems


def test_no_option_is_said_to_save_money_while_its_interval_spans_zero(browser: Any, reports: dict[str, Path],
                                                                        tmp_path: Path) -> None:
    v = Visit(browser, reports["comparison"])
    try:
        rows = v.page.evaluate(ECONOMICS_JS)
        assert len(rows) == 2 and all(r["verdict"] in ("saves", "costs more", "too close to call") for r in rows)
        assert not false_savings(v.page), false_savings(v.page)
        # every verdict shown is the rule applied to the interval shown
        for r in rows:
            word = "saves" if r["high"] < 0 else "costs more" if r["low"] > 0 else "too close to call"
            assert r["verdict"] == word and word in r["shown"], r
    finally:
        v.close()
    # the control: the same page, with one option claimed to save money although its interval is not below zero
    html = reports["comparison"].read_text(encoding="utf-8")
    spanning = [r["option"] for r in rows if r["high"] >= 0]
    assert spanning, "both options save money: the control needs one that does not"
    doctored = tmp_path / "doctored.html"
    doctored.write_text(html.replace('<ul class="key">', f'<ul class="key"><li>{spanning[0]}: saves £1.00k net.</li>',
                                     1), encoding="utf-8")
    v = Visit(browser, doctored)
    try:
        assert false_savings(v.page), "a false saving in the key messages was not detected"
    finally:
        v.close()

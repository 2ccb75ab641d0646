"""The web app in a real browser (issue 17): ``flowsim app`` serves it, headless Chromium drives it with Playwright.

One walk through what a planner does: choose a shipped scenario (the minimal one, on a 20-day window with 3
replications, set with the page's own controls so the test is quick), run it, move a lever (acute beds 130 ->
120), run again as an option, compare with the baseline (a paired difference row with its 95% CI appears),
download the changed scenario (it loads with flowsim, the lever's value is in it and ``extends:`` names the base)
and the workbook (its sheets, and a KPI equal to the run's summary.json), with screenshots along the way in the
test's directory.  The server is started on a free port by a fixture and always stopped (SIGTERM to ``flowsim
app``, which stops Streamlit's whole process group).

Chromium is found as in the report's browser test (``chromium`` on PATH or ``$FLOWSIM_CHROMIUM``, else
Playwright's own browser if ``python -m playwright install chromium`` fetched one); without a browser the test
skips locally and *fails* under CI, so CI can never pass without running it.

``python -m tests.test_app_browser docs/app.png`` regenerates the README's screenshot.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from cli_helpers import cli_env  # noqa: E402

MINIMAL = ROOT / "scenarios" / "minimal.yaml"
TIMEOUT_MS = 120_000


def _chromium() -> str | None:
    return os.environ.get("FLOWSIM_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def _unavailable(reason: str) -> None:
    if "CI" in os.environ:
        pytest.fail(f"{reason}; CI must run the browser tests (.ci/run installs a Chromium)", pytrace=False)
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def app_server(outputs: Path) -> Iterator[str]:
    """``flowsim app`` on a free port until the block ends (then SIGTERM; killed if it does not stop)."""
    port = _free_port()
    outputs.mkdir(parents=True, exist_ok=True)
    log = outputs.parent / "app.log"
    with open(log, "wb") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "flowsim", "app", "--port", str(port), "--host", "127.0.0.1",
                                 "--outputs", str(outputs)], cwd=ROOT, env=cli_env(), stdout=sink,
                                stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"flowsim app did not start (exit {proc.poll()}): {log.read_text(errors='replace')}")
            time.sleep(0.5)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, f"flowsim app ended with {proc.returncode} on SIGTERM"


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install -e '.[test]')")
    path = _chromium()
    with sync_playwright() as p:
        try:
            browser = p.chromium.launch(executable_path=path, headless=True) if path else p.chromium.launch()
        except Exception as exc:  # no system Chromium and none installed by Playwright
            _unavailable(f"no Chromium to drive ({str(exc).splitlines()[0]})")
        try:
            yield browser
        finally:
            browser.close()


def _number(page: Any, label: str, value: str) -> None:
    box = page.get_by_label(label, exact=True).last
    box.fill(value)
    box.press("Enter")
    page.wait_for_timeout(600)


def _run(page: Any, expected_runs: int) -> None:
    page.get_by_role("tab", name="Run").click()
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_role("heading", name=f"Minimal teaching example - run {expected_runs}").wait_for(timeout=TIMEOUT_MS)
    page.get_by_text("Headline measures").first.wait_for(timeout=TIMEOUT_MS)


def choose_minimal(page: Any, url: str) -> None:
    """Open the app, wait for the default scenario's levers (the page has settled), and choose minimal.yaml."""
    page.goto(url)
    page.get_by_text("Acute (G&A) beds").first.wait_for(timeout=TIMEOUT_MS)
    page.get_by_label("Scenario file").click(timeout=TIMEOUT_MS)
    page.keyboard.type("minimal")
    page.keyboard.press("Enter")
    page.get_by_text("Minimal teaching example").first.wait_for(timeout=TIMEOUT_MS)


def walk(page: Any, url: str, shots: Path) -> dict[str, Any]:
    """The planner's walk; returns the downloads' paths and what the page showed."""
    choose_minimal(page, url)
    _number(page, "Days reported", "20")
    _number(page, "Warm-up days", "5")
    page.get_by_role("tab", name="Run").click()
    _number(page, "Replications", "3")
    _run(page, 1)
    page.screenshot(path=str(shots / "1-baseline.png"), full_page=True)
    page.get_by_role("tab", name="Scenario").click()
    _number(page, "Acute (G&A) beds (beds)", "120")
    page.screenshot(path=str(shots / "2-lever.png"), full_page=True)
    _run(page, 2)
    page.get_by_role("tab", name="Compare").click()
    page.get_by_role("button", name="Compare with the baseline").click()
    page.get_by_text("Paired differences").wait_for(timeout=TIMEOUT_MS)
    table = page.locator("table").filter(has_text="Distinguishable from zero").first
    text = table.locator("tr").filter(has_text="Delayed patients per day (DTOC)").first.inner_text()
    page.screenshot(path=str(shots / "3-compare.png"), full_page=True)
    page.get_by_role("tab", name="Downloads").click()
    with page.expect_download() as dl:
        page.get_by_role("button", name="Changed scenario (YAML, extends the base)").click()
    yaml_path = shots / "option.yaml"
    dl.value.save_as(yaml_path)
    with page.expect_download() as dl:
        page.get_by_role("button", name="Excel workbook (run)").click()
    xlsx_path = shots / "option.xlsx"
    dl.value.save_as(xlsx_path)
    page.screenshot(path=str(shots / "4-downloads.png"), full_page=True)
    return {"yaml": yaml_path, "xlsx": xlsx_path, "differences": text}


def test_a_planner_runs_compares_and_downloads(tmp_path: Path) -> None:
    import openpyxl

    from flowsim.scenario import load_scenario
    from flowsim.scenario.loader import load_raw

    outputs = tmp_path / "outputs"
    with chromium() as browser, app_server(outputs) as url:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        got = walk(page, url, tmp_path)
    assert not errors, f"errors in the page: {errors}"
    # a paired difference row (the option against the baseline) with its 95% interval ("a to b")
    row = " ".join(got["differences"].split())
    assert "Minimal teaching example - run 2" in row and re.search(r"-?[\d.,]+ to -?[\d.,]+", row), row
    # the changed scenario: extends the base, holds the lever's value, and loads as what was run
    assert "acute" in load_raw(got["yaml"])[0]
    text = got["yaml"].read_text(encoding="utf-8")
    assert f"extends: {MINIMAL.resolve()}" in text and "acute:\n  beds: 120" in text
    sc = load_scenario(got["yaml"])
    assert sc.acute is not None and sc.acute.beds == 120 and sc.simulation.duration_days == 20
    # the workbook: its sheets, and a KPI equal to the run's summary.json
    runs = sorted((outputs / "runs").iterdir())
    assert len(runs) == 2
    summary = json.loads((runs[-1] / "summary.json").read_text(encoding="utf-8"))
    wb = openpyxl.load_workbook(got["xlsx"], read_only=True)
    assert wb.sheetnames == ["README", "KPIs", "Quarters", "Months", "Daily"]
    kpis = {r[1]: r for r in list(wb["KPIs"].values)[1:]}
    assert kpis["delayed_patients_per_day"][4] == pytest.approx(summary["kpis"]["delayed_patients_per_day"]["mean"])
    assert kpis["acute_beds_mean"][4] == pytest.approx(120)
    for shot in ("1-baseline.png", "2-lever.png", "3-compare.png", "4-downloads.png"):
        assert (tmp_path / shot).stat().st_size > 10_000


def screenshot(out: Path) -> None:
    """The README's screenshot: one run of the minimal scenario at the page's default replications and seed (20,
    12345: every figure the README shows rests on at least 20), its results on the Run tab (small PNG)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp, chromium() as browser, app_server(Path(tmp)) as url:
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        choose_minimal(page, url)
        _number(page, "Days reported", "60")
        page.get_by_role("tab", name="Run").click()
        _run(page, 1)
        page.wait_for_timeout(1500)
        page.screenshot(path=str(out), full_page=False)


if __name__ == "__main__":
    screenshot(Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "docs" / "app.png"))

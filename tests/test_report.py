"""``flowsim report DIR``: one self-contained, board-ready HTML file for a run, a comparison, a sweep or a
calibration.

No browser here (see test_report_browser.py): the HTML is parsed with the standard library and checked
against the files it was made from.  Directories are made once per module by the real CLI with short
horizons (60 days, 3 replications), so the module takes about 40 s on 2 cores.  Issue 14's findings each have
a test here: names, overrides, assumptions as run, mode-aware judgements, intervals in range, the decision
rule's words.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from cli_helpers import PNG_MAGIC, flowsim
from markupsafe import escape
from PIL import Image

from flowsim.appraisal import COSTS_MORE, DECISION_RULE, SAVES, TOO_CLOSE
from flowsim.errors import FlowsimError
from flowsim.report.format import fmt, fmt_ci, money, verdict
from flowsim.report.html import detect_kind, write_report

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "scenarios"
MINIMAL = SCENARIOS / "minimal.yaml"
WINTER = [SCENARIOS / "rotherham_winter_2016.yaml", SCENARIOS / "rotherham_winter_2017_reablement.yaml",
          SCENARIOS / "rotherham_winter_2017_trusted_assessor.yaml"]
SHORT = ["--set", "simulation.duration_days=60", "--set", "simulation.warmup_days=30"]
NASTY_NAME = 'Minimal <script>alert("x")</script> & "friends"'
NASTY_ASSUMPTION = "Escaping: <b>not bold</b> & <img src=x onerror=alert(1)> stay text"
QUOTING = "Reablement places as run: {pathways.P1.services.reablement.capacity} (quoted, not restated)"




def spawn(*args: str | Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "MPLBACKEND": "Agg", "PYTHONWARNINGS": "default"}
    return subprocess.Popen([sys.executable, "-m", "flowsim", *map(str, args), "--workers", "1"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


# --------------------------------------------------------------------------------------------- a tiny HTML model


class Node:
    def __init__(self, tag: str, attrs: dict[str, str], parent: Node | None):
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list[Node | str] = []

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def iter(self, tag: str | None = None) -> list[Node]:
        out = []
        for c in self.children:
            if isinstance(c, Node):
                if tag is None or c.tag == tag:
                    out.append(c)
                out.extend(c.iter(tag))
        return out

    def find(self, tag: str, **attrs: str) -> Node | None:
        for n in self.iter(tag):
            if all(n.attrs.get(k.rstrip("_")) == v for k, v in attrs.items()):
                return n
        return None

    def by_class(self, cls: str) -> list[Node]:
        return [n for n in self.iter() if cls in n.classes()]


VOID = {"meta", "img", "br", "hr", "link", "input", "col", "source"}


class Tree(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#root", {}, None)
        self.cur = self.root
        self.tags: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.tags.append((tag, a))
        node = Node(tag, a, self.cur)
        self.cur.children.append(node)
        if tag not in VOID:
            self.cur = node

    def handle_endtag(self, tag: str) -> None:
        n: Node | None = self.cur
        while n is not None and n.tag != tag:
            n = n.parent
        if n is not None and n.parent is not None:
            self.cur = n.parent

    def handle_data(self, data: str) -> None:
        self.cur.children.append(data)


def parse(text: str) -> Tree:
    t = Tree()
    t.feed(text)
    t.close()
    return t


def section(tree: Tree, sid: str) -> Node:
    node = tree.root.find("section", id=sid)
    assert node is not None, f"no section #{sid}"
    return node


def cell_value(td: Node) -> tuple[str, str]:
    """(mean text, CI text) of a results cell."""
    v = td.by_class("v")
    ci = td.by_class("ci")
    return (v[0].text() if v else td.text()).strip(), (ci[0].text() if ci else "").strip()


def number(text: str) -> float:
    return float(text.replace("£", "").replace(",", ""))


# --------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory, winter_compare: tuple[subprocess.CompletedProcess[str], Path],
         small_calibration: Path) -> dict[str, Path]:
    """A run, a sweep and a pathway-only run made here; the winter comparison and the small calibration are the
    session's (conftest), shared with the appraisal and browser tests."""
    tmp = tmp_path_factory.mktemp("report")
    data = yaml.safe_load(MINIMAL.read_text(encoding="utf-8"))
    data["name"] = NASTY_NAME
    data["assumptions"] = [*data.get("assumptions", []), NASTY_ASSUMPTION, QUOTING]
    data.setdefault("costs", {}).update({"acute_delay_per_day": 150,
                                         "notes": {"acute_delay_per_day": "ASSUMPTION: <one> bed-day & more"}})
    scenario = tmp / "nasty.yaml"
    scenario.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    sweep = tmp / "tiny_sweep.yaml"
    sweep.write_text(yaml.safe_dump({
        "name": "tiny", "description": "Reablement places against delays", "base": str(MINIMAL), "seed": 7,
        "replications": 3, "set": {"simulation.duration_days": 60, "simulation.warmup_days": 20},
        "parameters": [{"path": "pathways.P1.services.reablement.capacity", "label": "Reablement places",
                        "values": [26, 32]}],
        "kpis": ["delayed_patients_per_day", "occupancy_mean_pct"],
        "target": {"parameter": "pathways.P1.services.reablement.capacity", "kpi": "delayed_patients_per_day",
                   "at_most": 30, "low": 10, "high": 40}}), encoding="utf-8")
    proc, comparison = winter_compare
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    out = {k: tmp / k for k in ("run", "sweep", "pathway")}
    out.update(comparison=comparison, calibration=small_calibration)
    jobs = [("run", scenario, "-n", "3", "--seed", "11", "--out", out["run"], "--set", "simulation.duration_days=60",
             "--set", "simulation.warmup_days=20", "--set", "pathways.P1.services.reablement.capacity=26"),
            ("sweep", sweep, "--out", out["sweep"]),
            ("run", SCENARIOS / "rotherham_pathway_only.yaml", "-n", "3", "--out", out["pathway"], *SHORT)]
    procs = [spawn(*args) for args in jobs]  # side by side: much of each is start-up and drawing, one core each
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"{proc.args}: exit {proc.returncode}\n{stdout}\n{stderr}"
    return out


@pytest.fixture(scope="module")
def reports(dirs: dict[str, Path]) -> dict[str, str]:
    return {kind: write_report(d).read_text(encoding="utf-8") for kind, d in dirs.items()}


KINDS = ["run", "sweep", "comparison", "calibration"]


def entries(d: Path) -> list[dict[str, Any]]:
    meta = json.loads((d / "comparison.json").read_text())
    return [meta["baseline"], *meta["options"]]


# --------------------------------------------------------------------------------------------- every kind


@pytest.mark.parametrize("kind", KINDS)
def test_kind_detected_and_one_file_written(dirs: dict[str, Path], reports: dict[str, str], kind: str) -> None:
    assert detect_kind(dirs[kind]) == kind
    assert (dirs[kind] / "report.html").is_file()
    tree = parse(reports[kind])
    assert tree.root.find("div", class_="page") is not None
    assert [t for t, _ in tree.tags].count("html") == 1
    assert reports[kind].startswith("<!DOCTYPE html>")


@pytest.mark.parametrize("kind", KINDS)
def test_self_contained_no_external_references(reports: dict[str, str], kind: str) -> None:
    text = reports[kind]
    tree = parse(text)
    for tag, attrs in tree.tags:
        assert tag not in ("script", "link", "iframe", "object", "embed", "base"), f"<{tag}> in the report"
        for name, value in attrs.items():
            assert not name.startswith("on"), f"event handler {name} on <{tag}>"
            if name == "src":
                assert value.startswith("data:image/png;base64,"), f"<{tag} src={value[:40]}>"
            elif name == "href":
                assert value.startswith("#"), f"link to {value}"
            else:
                assert "//" not in value and "http:" not in value and "https:" not in value, (tag, name, value)
    without_images = re.sub(r'src="data:image/png;base64,[A-Za-z0-9+/=]+"', 'src=""', text)
    for bad in ("http:", "https:", "//", "url(", "@import", "@font-face"):
        assert bad not in without_images, f"{bad!r} in the report"
    assert "data:" not in without_images.replace('src=""', "")


@pytest.mark.parametrize("kind", KINDS)
def test_ids_unique_and_contents_links_resolve(reports: dict[str, str], kind: str) -> None:
    tags = parse(reports[kind]).tags
    ids = [a["id"] for _, a in tags if "id" in a]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    links = [a["href"][1:] for t, a in tags if t == "a"]
    assert len(links) >= 6 and set(links) <= set(ids)


@pytest.mark.parametrize("kind", KINDS)
def test_images_embedded_and_decodable(reports: dict[str, str], kind: str) -> None:
    imgs = [a for t, a in parse(reports[kind]).tags if t == "img"]
    assert len(imgs) >= {"run": 4, "sweep": 2, "comparison": 6, "calibration": 2}[kind]
    for a in imgs:
        assert a.get("alt"), "every image needs alt text"
        data = base64.b64decode(a["src"].removeprefix("data:image/png;base64,"), validate=True)
        assert data.startswith(PNG_MAGIC)
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            assert im.width >= 400 and im.height >= 200


@pytest.mark.parametrize("kind", KINDS)
def test_print_styles(reports: dict[str, str], kind: str) -> None:
    css = parse(reports[kind]).root.find("style")
    assert css is not None
    text = css.text()
    for needle in ("@page", "size: A4", "@media print", "break-inside: avoid", "table-header-group",
                   "print-color-adjust: exact", "#005EB8", "#003087"):
        assert needle in text, needle


@pytest.mark.parametrize("kind", KINDS)
def test_confidence_interval_note_and_checklist(reports: dict[str, str], kind: str) -> None:
    tree = parse(reports[kind])
    text = tree.root.text()
    assert "How to read this report" in text and "95% confidence interval" in text
    stress = section(tree, "stress-des")
    items = [tr for tr in stress.iter("tr") if "data-status" in tr.attrs]
    numbers = [tr.iter("td")[0].text().split()[0] for tr in items]
    assert numbers == ["1.1", "1.2", "1.3", "2.1", "2.2", "2.3", "2.4", "2.5.1", "2.5.2", "2.5.3", "2.5.4", "2.5.5",
                       "3.1", "3.2", "3.3", "3.4", "4.1", "4.2", "4.3", "5.1", "5.2", "5.3", "5.4", "6.1"]
    statuses = {tr.attrs["data-status"] for tr in items}
    assert statuses <= {"auto", "partial", "analyst"} and {"auto", "analyst"} <= statuses
    for tr in items:  # whatever the analyst must add is marked where it goes
        if tr.attrs["data-status"] != "auto":
            assert tr.by_class("todo"), tr.text()
    by_item = {tr.iter("td")[0].text().split()[0]: tr.iter("td")[1].text() for tr in items}
    assert "warm-up" in by_item["4.1"] and "days" in by_item["4.2"] and "replications" in by_item["4.3"]
    assert "SimPy" in by_item["5.1"] and "common random numbers" in by_item["5.2"]


# --------------------------------------------------------------------------------------------- run


def test_run_headline_equals_summary_json(dirs: dict[str, Path], reports: dict[str, str]) -> None:
    summary = json.loads((dirs["run"] / "summary.json").read_text())
    table = parse(reports["run"]).root.find("table", id="headline")
    assert table is not None
    rows = [tr for tr in table.iter("tr") if "data-kpi" in tr.attrs]
    assert 5 <= len(rows) <= 10, "the headline stays short; everything else is in the appendix"
    seen = []
    for tr in rows:
        k = tr.attrs["data-kpi"]
        info = summary["kpis"][k]
        mean = tr.by_class("mean")[0].text().strip()
        ci = tr.by_class("ci")[0].text().strip()
        assert mean == fmt(info["mean"], info["unit"]), k
        assert ci == fmt_ci(info["ci_low"], info["ci_high"], info["unit"]), k
        if info["unit"] != "GBP":
            assert number(mean) == pytest.approx(info["mean"], rel=0.01, abs=0.006), k
        assert info["label"] in tr.text()
        seen.append(k)
    assert seen[:2] == ["delayed_patients_per_day", "delayed_per_100k"]
    assert "occupancy_mean_pct" in seen


def test_run_intervals_stay_in_range(dirs: dict[str, Path]) -> None:
    """Issue 14: 'Days at OPEL 4 0.80 [-0.03, 1.63]', occupancy '[42.8, 118.8]%'.  Three replications of a
    60-day run give skewed counts near zero: every interval in summary.json stays at or above 0, and every share
    at or below 100, and each still holds its mean."""
    summary = json.loads((dirs["run"] / "summary.json").read_text())
    checked = 0
    for k, info in summary["kpis"].items():
        if info["ci_low"] is None:
            continue
        assert info["ci_low"] >= 0.0, (k, info)
        if info["unit"].startswith("%"):
            assert info["ci_high"] <= 100.0, (k, info)
        assert info["ci_low"] <= info["mean"] <= info["ci_high"], (k, info)
        checked += 1
    assert checked > 40
    near_zero = [k for k, i in summary["kpis"].items() if i["ci_low"] is not None and 0 < i["mean"] < i["sd"]]
    assert near_zero, "no skewed measure near zero in this run: the check above has no power"
    for q in summary["quarters"] + summary["months"]:
        assert q["ci_low"] is None or q["ci_low"] >= 0.0, q


def test_run_standards_verdicts(dirs: dict[str, Path], reports: dict[str, str]) -> None:
    summary = json.loads((dirs["run"] / "summary.json").read_text())
    sc = yaml.safe_load((dirs["run"] / "scenario.yaml").read_text())
    table = parse(reports["run"]).root.find("table", id="headline")
    assert table is not None
    row = next(tr for tr in table.iter("tr") if tr.attrs.get("data-kpi") == "delayed_patients_per_day")
    target = sc["targets"]["delayed_per_100k"] * sc["population_18plus"] / 1e5
    k = summary["kpis"]["delayed_patients_per_day"]
    expected = verdict(k["ci_low"], k["ci_high"], target, "at most")
    assert f"at most {target:.1f}" in row.text()
    assert row.by_class("badge")[0].classes() & {"met", "missed", "uncertain"} == {expected}


def test_run_all_kpis_grouped_in_appendix(dirs: dict[str, Path], reports: dict[str, str]) -> None:
    summary = json.loads((dirs["run"] / "summary.json").read_text())
    tree = parse(reports["run"])
    table = tree.root.find("table", id="all-kpis")
    assert table is not None
    kpis = [tr.attrs["data-kpi"] for tr in table.iter("tr") if "data-kpi" in tr.attrs]
    # every KPI the scenario models; minimal has no electives or escalation, so those are not listed
    not_modelled = {k for k in summary["kpis"] if k.startswith(("electives_", "opel_", "escalation_"))}
    assert not_modelled and sorted(kpis) == sorted(set(summary["kpis"]) - not_modelled)
    groups = [tr.text() for tr in table.iter("tr") if "group" in tr.classes()]
    assert {"Delayed transfers of care", "Hospital beds and admissions", "Costs"} <= set(groups)
    appendix = section(tree, "all-measures")
    assert "Appendix A" in appendix.iter("h2")[0].text()
    assert "appendix-start" in appendix.classes()


def test_run_figures(reports: dict[str, str]) -> None:
    tree = parse(reports["run"])
    dtoc = section(tree, "dtoc")
    assert len(dtoc.iter("img")) == 1 and "Better Care Fund" in dtoc.text()
    assert len(section(tree, "occupancy").iter("img")) == 1
    captions = [c.text() for c in tree.root.iter("figcaption")]
    assert [c.split(".")[0] for c in captions] == [f"Figure {i}" for i in range(1, len(captions) + 1)]


def test_run_reproducibility(dirs: dict[str, Path], reports: dict[str, str]) -> None:
    summary = json.loads((dirs["run"] / "summary.json").read_text())
    tree = parse(reports["run"])
    repro = section(tree, "reproducibility").text()
    stress = section(tree, "stress-des").text()
    assert str(summary["seed"]) == "11"
    for text in (repro, stress):
        assert str(summary["seed"]) in text and summary["scenario_hash"] in text
    for pkg, version in summary["versions"].items():
        assert f"{pkg} {version}" in repro
    assert shlex.join(summary["command"]) in repro
    assert "--seed 11" in repro
    assert "Results created" in repro and "Report made" in repro
    assert str(dirs["run"].resolve()) in repro


def test_run_assumptions_are_the_scenario_as_run(dirs: dict[str, Path], reports: dict[str, str]) -> None:
    """Issue 14: a run with --set said 'P1 capacity 45' in its assumptions and 55 in its checklist.  An
    assumption that quotes a field shows the value as run, and the starting conditions come from the run's own
    settings (the winter report used to say 'Empty system at 2015-10-04' for a run that started in 2016)."""
    sc = yaml.safe_load((dirs["run"] / "scenario.yaml").read_text())
    assert sc["pathways"]["P1"]["services"]["reablement"]["capacity"] == 26
    tree = parse(reports["run"])
    assumptions = section(tree, "assumptions")
    ol = assumptions.find("ol", class_="assumptions")
    assert ol is not None
    items = [li.text() for li in ol.iter("li")]
    quoted = "Reablement places as run: 26 (quoted, not restated)"
    assert items == [*sc["assumptions"][:-1], quoted] and NASTY_ASSUMPTION in items
    assert "ASSUMPTION: <one> bed-day & more" in assumptions.text()
    start = assumptions.find("p", class_="start")
    empty = dt.date.fromisoformat(str(sc["simulation"]["start_date"])) - dt.timedelta(days=20)
    assert start is not None and f"empty system on {empty.day} {empty:%B %Y}" in start.text()
    assert "20-day warm-up" in start.text()  # --set simulation.warmup_days=20
    stress = {tr.iter("td")[0].text().split()[0]: tr.iter("td")[1].text()
              for tr in section(tree, "stress-des").iter("tr") if "data-status" in tr.attrs}
    assert "reablement (26)" in stress["2.5.3"] and "20-day warm-up" in stress["4.1"]


def test_run_overrides_are_visible(dirs: dict[str, Path], reports: dict[str, str]) -> None:
    """Issue 14: a run with --set looked like the unmodified scenario.  The header, a key message, the
    assumptions and the checklist all list each change with the file's value; figure titles say so too."""
    change = "pathways.P1.services.reablement.capacity = 26 (scenario file: 30; --set)"
    tree = parse(reports["run"])
    header = tree.root.find("div", id="changes-for-this-run")
    assert header is not None and change in header.text() and "simulation.duration_days = 60" in header.text()
    assert "This run changed 3 settings of the scenario file" in section(tree, "summary").text()
    assert change in section(tree, "assumptions").find("div", class_="callout changes keep").text()  # type: ignore[union-attr]
    stress = section(tree, "stress-des").text()
    assert "Changed for this run from the scenario file" in stress and change in stress
    summary = json.loads((dirs["run"] / "summary.json").read_text())
    assert change in summary["overrides"]


def test_html_is_escaped(reports: dict[str, str]) -> None:
    text = reports["run"]
    assert "<script" not in text and "<b>not bold</b>" not in text and "onerror=alert" not in text.replace(
        "onerror=alert(1)&gt;", "")
    assert str(escape(NASTY_NAME)) in text  # escaped by the templates' autoescape
    assert str(escape(NASTY_ASSUMPTION)) in text
    tree = parse(text)
    assert tree.root.find("title").text() == f"{NASTY_NAME}: simulation report"  # type: ignore[union-attr]
    assert tree.root.find("h1").text() == NASTY_NAME  # type: ignore[union-attr]
    assert not [t for t, _ in tree.tags if t == "script"]
    assert not [b for b in tree.root.iter("b") if "not bold" in b.text()]
    assert not [a for t, a in tree.tags if t == "img" and not a["src"].startswith("data:image/png;base64,")]


def test_run_without_figures_is_drawn_from_daily_csv(dirs: dict[str, Path], tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    shutil.copytree(dirs["run"], bare, ignore=shutil.ignore_patterns("figures", "report.html", "patients.parquet"))
    text = write_report(bare).read_text(encoding="utf-8")
    assert len([t for t, _ in parse(text).tags if t == "img"]) >= 4
    assert not (bare / "figures").exists(), "the report must not write into the run directory"


# --------------------------------------------------------------------------------------------- pathway-only


def test_pathway_only_report_judges_only_what_it_models(dirs: dict[str, Path], reports: dict[str, str]) -> None:
    """Issue 14: a pathway-only report said '0.00% waited >4 h: Met' and 'G&A occupancy: too close to call'
    with no value, and drew an acute occupancy chart of 0-16 beds.  A pathway-only scenario has no front door
    and unlimited 'acute beds' (only where a medically fit patient waits): none of that may appear."""
    summary = json.loads((dirs["pathway"] / "summary.json").read_text())
    assert "occupancy_mean_pct" in summary["kpis"] and "ed_4h_breach_pct" in summary["kpis"], "the model has them"
    tree = parse(reports["pathway"])
    headline = tree.root.find("table", id="headline")
    assert headline is not None
    kpis = {tr.attrs["data-kpi"] for tr in headline.iter("tr") if "data-kpi" in tr.attrs}
    assert "delayed_patients_per_day" in kpis and not kpis & {"occupancy_mean_pct", "days_over_92_pct",
                                                              "ed_4h_breach_pct", "ed_12h_breaches"}
    appendix = tree.root.find("table", id="all-kpis")
    assert appendix is not None
    listed = {tr.attrs["data-kpi"] for tr in appendix.iter("tr") if "data-kpi" in tr.attrs}
    assert not listed & {"occupancy_mean_pct", "ed_wait_mean_hours", "acute_beds_mean", "dtoc_pct",
                         "admissions_per_day"}
    assert {"service_reablement_north_utilisation_pct", "cost_service_care"} <= listed
    summary_text = section(tree, "summary").text()
    for phrase in ("4 hours", "G&A", "occupancy"):
        assert phrase not in summary_text, phrase
    assert tree.root.find("section", id="occupancy") is None
    assert all("occupied" not in (img.attrs.get("alt") or "") for img in tree.root.iter("img"))
    months = section(tree, "months").text()
    assert "Occupancy" not in months


# --------------------------------------------------------------------------------------------- comparison


def test_comparison_headline_equals_side_by_side(dirs: dict[str, Path], reports: dict[str, str]) -> None:
    side = pd.read_csv(dirs["comparison"] / "side_by_side.csv")
    names = [e["name"] for e in entries(dirs["comparison"])]
    table = parse(reports["comparison"]).root.find("table", id="headline")
    assert table is not None
    rows = [tr for tr in table.iter("tr") if "data-kpi" in tr.attrs]
    assert 5 <= len(rows) <= 10
    for tr in rows:
        k = tr.attrs["data-kpi"]
        r = side[side["kpi"] == k].iloc[0]
        cells = [td for td in tr.iter("td") if "data-scenario" in td.attrs]
        assert [td.attrs["data-scenario"] for td in cells] == names
        for td in cells:
            n = td.attrs["data-scenario"]
            mean, ci = cell_value(td)
            assert mean == fmt(r[f"{n}:mean"], r["unit"]), (k, n)
            assert ci == fmt_ci(r[f"{n}:ci_low"], r[f"{n}:ci_high"], r["unit"]), (k, n)
            assert r[f"{n}:ci_low"] >= 0.0, (k, n)  # kept inside the measure's range
    headers = table.iter("th")
    assert [h.text() for h in headers[2:]] == [names[0] + "baseline", *names[1:]]
    rest = parse(reports["comparison"]).root.find("table", id="all-kpis")
    assert rest is not None
    shown = {tr.attrs["data-kpi"] for tr in [*rows, *rest.iter("tr")] if "data-kpi" in tr.attrs}
    assert shown == set(side["kpi"])


def test_comparison_one_name_per_option_everywhere(dirs: dict[str, Path], reports: dict[str, str]) -> None:
    """Issue 14: 'Option A (Winter option B: ...)', 'Option B: Winter option D: ...' and cut file names in the
    charts.  Each scenario has one name, its own, in every table, CSV and sentence."""
    d = dirs["comparison"]
    names = [e["name"] for e in entries(d)]
    files = [yaml.safe_load(f.read_text())["name"] for f in WINTER]
    assert names == files
    text = parse(reports["comparison"]).root.text()
    assert not re.search(r"Option [A-Z]\b", text), "letters are a second naming scheme"
    for stem in ("rotherham_winter_2017_reablement", "rotherham winter 2017 reablement"):
        assert stem not in text.replace("scenarios/rotherham_winter_2017_reablement.yaml", "")
    for csv_name, col in (("economics.csv", "option"), ("differences.csv", "option"), ("targets.csv", "scenario"),
                          ("kpis.csv", "scenario")):
        assert set(pd.read_csv(d / csv_name)[col]) <= set(names), csv_name
    side = pd.read_csv(d / "side_by_side.csv")
    assert {c.rsplit(":", 1)[0] for c in side.columns if c.endswith(":mean")} == set(names)
    for n in names:
        assert f"{n}:" in text or n in text


def test_comparison_economics_follow_the_decision_rule(dirs: dict[str, Path], reports: dict[str, str]) -> None:
    """Issue 14: 'Option A saves £9,860 net' while its own table gave -£241k to +£222k.  Every verdict word in
    the report equals the rule's word in economics.csv, and 'saves' appears only with a wholly negative interval."""
    econ = pd.read_csv(dirs["comparison"] / "economics.csv", keep_default_na=False)
    tree = parse(reports["comparison"])
    sec = section(tree, "economics")
    assert " ".join(DECISION_RULE.split()) in " ".join(sec.text().split())
    table = sec.find("table", id="economics-table")
    assert table is not None
    rows = [tr for tr in table.iter("tr") if "data-option" in tr.attrs]
    assert [tr.attrs["data-option"] for tr in rows] == list(econ["option"])
    for tr, (_, r) in zip(rows, econ.iterrows(), strict=True):
        low, high = float(r["net_cost_ci_low"]), float(r["net_cost_ci_high"])
        word = SAVES if high < 0 else COSTS_MORE if low > 0 else TOO_CLOSE
        assert r["cost_verdict"] == tr.attrs["data-cost-verdict"] == word
        cells = tr.iter("td")
        assert cell_value(cells[1]) == (money(r["net_cost"]), fmt_ci(low, high, "GBP"))
        assert ("dominated" in tr.classes()) == bool(r["dominated_by"])
        assert r["frontier"] in tr.text().lower()
    summary = section(tree, "summary").text()
    for _, r in econ.iterrows():
        saves = f"{r['option']}: saves"
        assert (saves in summary) == (r["cost_verdict"] == SAVES), r["option"]


def test_comparison_standards_and_differences(dirs: dict[str, Path], reports: dict[str, str]) -> None:
    tree = parse(reports["comparison"])
    targets = pd.read_csv(dirs["comparison"] / "targets.csv")
    table = tree.root.find("table", id="standards-table")
    assert table is not None
    badges = {(tr.attrs["data-kpi"], td.attrs["data-scenario"]): (td.by_class("badge")[0].classes() - {"badge"})
              for tr in table.iter("tr") if "data-kpi" in tr.attrs for td in tr.iter("td")
              if "data-scenario" in td.attrs}
    assert len(badges) == len(targets)
    for _, r in targets.iterrows():
        assert badges[(r["kpi"], r["scenario"])] == {r["verdict"]}
    diffs = pd.read_csv(dirs["comparison"] / "differences.csv")
    for o in entries(dirs["comparison"])[1:]:
        t = tree.root.find("table", id=f"differences-{o['key']}")
        assert t is not None
        for tr in (tr for tr in t.iter("tr") if "data-kpi" in tr.attrs):
            r = diffs[(diffs["option"] == o["name"]) & (diffs["kpi"] == tr.attrs["data-kpi"])].iloc[0]
            cells = tr.iter("td")
            assert cells[3].text() == fmt(r["diff_mean"], r["unit"])
            assert cells[4].text() == fmt_ci(r["ci_low"], r["ci_high"], r["unit"])
            assert (cells[5].text() == "Yes") == bool(r["distinguishable"])


def test_comparison_figures_assumptions_and_costs(dirs: dict[str, Path], reports: dict[str, str]) -> None:
    tree = parse(reports["comparison"])
    charts = section(tree, "charts")
    alts = " ".join(i.attrs["alt"] for i in charts.iter("img"))
    assert len(charts.iter("img")) == 3 and "Better Care Fund" in alts and "92%" in alts
    assumptions = section(tree, "assumptions").text()
    for e in entries(dirs["comparison"]):
        sc = yaml.safe_load((dirs["comparison"] / e["dir"] / "scenario.yaml").read_text())
        for a in sc["assumptions"]:
            if "{" not in a:
                assert a in assumptions
        for note in sc["costs"]["notes"].values():
            assert note in assumptions
    assert "ASSUMPTION: 2 posts" in assumptions  # the trusted assessor's own investment note
    assert "{electives.rate_per_weekday}" not in assumptions and "Electives: 14 inpatient admissions" in assumptions
    changes = section(tree, "changes").text()
    assert "assessment.duration.mean" in changes and "independent_reablement" in changes


def test_comparison_reproducibility(dirs: dict[str, Path], reports: dict[str, str]) -> None:
    meta = json.loads((dirs["comparison"] / "comparison.json").read_text())
    tree = parse(reports["comparison"])
    repro = section(tree, "reproducibility").text()
    for e in [meta["baseline"], *meta["options"]]:
        assert e["scenario_id"] in repro and e["file"] in repro
    assert str(meta["seed"]) in repro and shlex.join(meta["command"]) in repro
    for pkg, version in meta["versions"].items():
        assert f"{pkg} {version}" in repro
    assert meta["baseline"]["scenario_id"] in section(tree, "stress-des").text()


def test_comparison_tolerates_new_columns(dirs: dict[str, Path], tmp_path: Path) -> None:
    copy = tmp_path / "cmp"
    shutil.copytree(dirs["comparison"], copy, ignore=shutil.ignore_patterns("report.html", "patients.parquet"))
    for name in ("side_by_side.csv", "differences.csv", "economics.csv", "targets.csv"):
        df = pd.read_csv(copy / name)
        df.insert(1, "a_new_column", "x")
        df["another"] = 1.5
        df.to_csv(copy / name, index=False)
    original = parse(write_report(dirs["comparison"]).read_text()).root.find("table", id="headline")
    again = parse(write_report(copy).read_text()).root.find("table", id="headline")
    assert original is not None and again is not None and original.text() == again.text()


def test_comparison_written_before_the_rule_is_not_judged(dirs: dict[str, Path], tmp_path: Path) -> None:
    """An economics.csv without the rule's words (an older flowsim) is not reinterpreted: the report says so."""
    copy = tmp_path / "old"
    shutil.copytree(dirs["comparison"], copy, ignore=shutil.ignore_patterns("report.html", "patients.parquet"))
    econ = pd.read_csv(copy / "economics.csv")
    econ.drop(columns=["cost_verdict", "delay_verdict", "frontier"]).to_csv(copy / "economics.csv", index=False)
    text = section(parse(write_report(copy).read_text(encoding="utf-8")), "economics").text()
    assert "written by an older flowsim, before the decision rule" in text and "saves" not in text


# --------------------------------------------------------------------------------------------- sweep


def test_sweep_headline_equals_summary_csv(dirs: dict[str, Path], reports: dict[str, str]) -> None:
    summary = pd.read_csv(dirs["sweep"] / "summary.csv")
    meta = json.loads((dirs["sweep"] / "sweep.json").read_text())
    tree = parse(reports["sweep"])
    table = tree.root.find("table", id="headline")
    assert table is not None
    rows = [tr for tr in table.iter("tr") if "data-point" in tr.attrs]
    assert len(rows) == summary["point_id"].nunique() == 2
    assert "Reablement places" in table.iter("th")[0].text()
    for tr in rows:
        sub = summary[summary["point_id"] == tr.attrs["data-point"]]
        assert tr.iter("td")[0].text() == str(sub["pathways.P1.services.reablement.capacity"].iloc[0])
        for td in (td for td in tr.iter("td") if "data-kpi" in td.attrs):
            r = sub[sub["kpi"] == td.attrs["data-kpi"]].iloc[0]
            assert cell_value(td) == (fmt(r["mean"]), fmt_ci(r["ci_low"], r["ci_high"]))
            assert r["ci_low"] >= 0.0
    text = tree.root.text()
    assert "Target finder" in text
    repro = section(tree, "reproducibility").text()
    assert meta["base_scenario_id"] in repro and str(meta["seed"]) in repro and shlex.join(meta["command"]) in repro
    assert "Every figure is illustrative" in section(tree, "assumptions").text()


# --------------------------------------------------------------------------------------------- calibration


def test_calibration_report(dirs: dict[str, Path], reports: dict[str, str]) -> None:
    """The fit target by target (fitted and held out apart), fitted values with their sets, intervals in range."""
    fit = pd.read_csv(dirs["calibration"] / "fit_report.csv")
    meta = json.loads((dirs["calibration"] / "calibration.json").read_text())
    tree = parse(reports["calibration"])
    table = tree.root.find("table", id="headline")
    assert table is not None
    rows = {tr.attrs["data-target"]: tr for tr in table.iter("tr") if "data-target" in tr.attrs}
    assert list(rows) == list(fit["target"])
    for _, r in fit.iterrows():
        assert rows[r["target"]].attrs["data-role"] == r["role"]
        assert cell_value(rows[r["target"]].iter("td")[3]) == (fmt(r["simulated"]), fmt_ci(r["ci_low"], r["ci_high"]))
        assert r["ci_low"] >= 0.0, r["target"]   # simulated counts and percentages: never a negative bound
    params = tree.root.find("table", id="parameters-table")
    assert params is not None
    shown = {tr.attrs["data-parameter"] for tr in params.iter("tr") if "data-parameter" in tr.attrs}
    assert shown == set(meta["fitted"])
    assert "IC beds" in params.text()  # the calibration file's label
    assert f"{meta['out_of_sample_mean_abs_error_pct']:.1f}%" in section(tree, "summary").text()


# --------------------------------------------------------------------------------------------- CLI, errors, atomicity


def test_cli_default_and_out(dirs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (dirs["sweep"] / "report.html").unlink(missing_ok=True)
    proc = ok(flowsim("report", dirs["sweep"]))
    assert (dirs["sweep"] / "report.html").is_file() and str(dirs["sweep"] / "report.html") in proc.stdout
    from flowsim.cli import main

    out = tmp_path / "papers" / "board paper.html"
    assert main(["report", str(dirs["sweep"]), "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


@pytest.mark.parametrize("case", ["empty", "missing", "file", "broken_json"])
def test_bad_directory_is_a_user_error(tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Exit 2, ``flowsim: error:`` naming the path and what was expected, no traceback (the first case through a
    real process, the others through ``main`` to save interpreter start-ups)."""
    target = tmp_path / case
    if case == "empty":
        target.mkdir()
        (target / "notes.txt").write_text("not a run")
    elif case == "file":
        target.write_text("x")
    elif case == "broken_json":  # a complete flowsim directory whose summary was damaged afterwards
        from flowsim.rundir import claim_output, finish_output

        claimed = claim_output(target, "run")
        (target / "summary.json").write_text("{ not json")
        finish_output(claimed)
    if case == "empty":
        proc = flowsim("report", target)
        code, stderr = proc.returncode, proc.stderr
    else:
        from flowsim.cli import main

        code = main(["report", str(target)])
        stderr = capsys.readouterr().err
    assert code == 2, stderr
    assert "Traceback" not in stderr
    errors = [ln for ln in stderr.splitlines() if ln.startswith("flowsim: error: ")]
    assert errors and str(target) in errors[0], stderr
    expected = {"empty": ("summary.json", "sweep.json", "comparison.json"), "missing": ("no such directory",),
                "file": ("not a directory",), "broken_json": ("JSON",)}[case]
    for word in expected:
        assert word in errors[0], errors
    assert not list(tmp_path.rglob("report.html"))


def test_incomplete_comparison_names_the_missing_file(dirs: dict[str, Path], tmp_path: Path) -> None:
    copy = tmp_path / "cmp"
    copy.mkdir()
    shutil.copy(dirs["comparison"] / "comparison.json", copy)
    with pytest.raises(FlowsimError, match=r"side_by_side\.csv"):
        write_report(copy)


def test_write_is_atomic(dirs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "report.html"
    write_report(dirs["sweep"], out)
    before = out.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]

    real = Path.write_text

    def half_then_fail(self: Path, text: str, *args: Any, **kwargs: Any) -> int:
        real(self, text[: len(text) // 2], *args, **kwargs)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", half_then_fail)
    with pytest.raises(FlowsimError, match="cannot write the report"):
        write_report(dirs["sweep"], out)
    monkeypatch.undo()
    assert out.read_bytes() == before, "a failed write must leave the old report intact"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"], "no temporary files left behind"
    for d in dirs.values():
        assert not [p for p in d.iterdir() if p.name.endswith(".tmp")]


def test_formatting() -> None:
    assert fmt(22.313) == "22.3" and fmt(2.345) == "2.35" and fmt(1234.5) == "1,234" and fmt(-0.001) == "0.00"
    # money for a board (issue 14: a £28M total printed to the penny)
    assert fmt(28447012.4, "GBP") == "£28.4m" and fmt(-60327.7, "GBP") == "-£60.3k"
    assert money(9860) == "£9.86k" and money(-241480) == "-£241k" and money(221761) == "£222k"
    assert money(999_999) == "£1.00m" and money(512.4) == "£512" and money(5.123) == "£5.12" and money(0) == "£0"
    assert fmt(float("nan")) == "–" and fmt(None) == "–" and fmt(float("inf")) == "unlimited"
    assert fmt_ci(12.13, 32.49) == "12.1 to 32.5" and fmt_ci(float("nan"), 1.0) == ""
    assert verdict(1, 2, 3, "at most") == "met" and verdict(4, 5, 3, "at most") == "missed"
    assert verdict(2, 4, 3, "at most") == "uncertain" and verdict(4, 5, 3, "at least") == "met"

"""``flowsim report DIR``: one self-contained, board-ready HTML file for a run, a sweep or a comparison.

No browser here (see test_report_browser.py): the HTML is parsed with the standard library and checked
against the files it was made from.  Directories are made once per module by the real CLI with short
horizons (60 days, 3 replications), so the module takes about 20 s on 2 cores.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from html import escape
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from cli_helpers import PNG_MAGIC, flowsim
from PIL import Image

from flowsim.errors import FlowsimError
from flowsim.report import html as report
from flowsim.report.html import detect_kind, fmt, fmt_ci, write_report

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "scenarios"
MINIMAL = SCENARIOS / "minimal.yaml"
WINTER = [SCENARIOS / "rotherham_winter_2016.yaml", SCENARIOS / "rotherham_winter_2017_reablement.yaml",
          SCENARIOS / "rotherham_winter_2017_trusted_assessor.yaml"]
SHORT = ["--set", "simulation.duration_days=60", "--set", "simulation.warmup_days=30"]
NASTY_NAME = 'Minimal <script>alert("x")</script> & "friends"'
NASTY_ASSUMPTION = "Escaping: <b>not bold</b> & <img src=x onerror=alert(1)> stay text"




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
def dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("report")
    data = yaml.safe_load(MINIMAL.read_text(encoding="utf-8"))
    data["name"] = NASTY_NAME
    data["assumptions"] = [*data.get("assumptions", []), NASTY_ASSUMPTION]
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
    out = {"run": tmp / "run", "sweep": tmp / "sweep", "comparison": tmp / "comparison"}
    jobs = [("run", scenario, "-n", "3", "--seed", "11", "--out", out["run"], "--set", "simulation.duration_days=60",
             "--set", "simulation.warmup_days=20"),
            ("sweep", sweep, "--out", out["sweep"]),
            ("compare", *WINTER, "-n", "3", "--out", out["comparison"], *SHORT)]
    procs = [spawn(*args) for args in jobs]  # side by side: much of each is start-up and drawing, one core each
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"{proc.args}: exit {proc.returncode}\n{stdout}\n{stderr}"
    return out


@pytest.fixture(scope="module")
def reports(dirs: dict[str, Path]) -> dict[str, str]:
    return {kind: write_report(d).read_text(encoding="utf-8") for kind, d in dirs.items()}


KINDS = ["run", "sweep", "comparison"]


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
    assert len(imgs) >= {"run": 4, "sweep": 2, "comparison": 6}[kind]
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
        assert number(mean) == pytest.approx(info["mean"], rel=0.01, abs=0.006), k
        assert info["label"] in tr.text()
        seen.append(k)
    assert seen[:2] == ["delayed_patients_per_day", "delayed_per_100k"]
    assert "occupancy_mean_pct" in seen


def test_run_standards_verdicts(dirs: dict[str, Path], reports: dict[str, str]) -> None:
    summary = json.loads((dirs["run"] / "summary.json").read_text())
    sc = yaml.safe_load((dirs["run"] / "scenario.yaml").read_text())
    table = parse(reports["run"]).root.find("table", id="headline")
    assert table is not None
    row = next(tr for tr in table.iter("tr") if tr.attrs.get("data-kpi") == "delayed_patients_per_day")
    target = sc["targets"]["delayed_per_100k"] * sc["population_18plus"] / 1e5
    k = summary["kpis"]["delayed_patients_per_day"]
    expected = report.verdict(k["ci_low"], k["ci_high"], target, "at most")
    assert f"at most {target:.1f}" in row.text()
    assert row.by_class("badge")[0].classes() & {"met", "missed", "uncertain"} == {expected}


def test_run_all_kpis_grouped_in_appendix(dirs: dict[str, Path], reports: dict[str, str]) -> None:
    summary = json.loads((dirs["run"] / "summary.json").read_text())
    tree = parse(reports["run"])
    table = tree.root.find("table", id="all-kpis")
    assert table is not None
    kpis = [tr.attrs["data-kpi"] for tr in table.iter("tr") if "data-kpi" in tr.attrs]
    assert sorted(kpis) == sorted(summary["kpis"])
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


def test_run_assumptions_and_cost_notes(dirs: dict[str, Path], reports: dict[str, str]) -> None:
    sc = yaml.safe_load((dirs["run"] / "scenario.yaml").read_text())
    assumptions = section(parse(reports["run"]), "assumptions")
    items = [li.text() for li in assumptions.iter("li")]
    assert items == sc["assumptions"] and NASTY_ASSUMPTION in items
    assert "ASSUMPTION: <one> bed-day & more" in assumptions.text()


def test_html_is_escaped(reports: dict[str, str]) -> None:
    text = reports["run"]
    assert "<script" not in text and "<b>not bold</b>" not in text and "onerror=alert" not in text.replace(
        "onerror=alert(1)&gt;", "")
    assert escape(NASTY_NAME) in text
    assert escape(NASTY_ASSUMPTION) in text
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


# --------------------------------------------------------------------------------------------- comparison


def test_comparison_headline_equals_side_by_side(dirs: dict[str, Path], reports: dict[str, str]) -> None:
    side = pd.read_csv(dirs["comparison"] / "side_by_side.csv")
    meta = json.loads((dirs["comparison"] / "comparison.json").read_text())
    names = [meta["baseline"]["name"], *[o["name"] for o in meta["options"]]]
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
            assert number(mean) == pytest.approx(r[f"{n}:mean"], rel=0.01, abs=0.006)
    headers = table.iter("th")
    assert [h.text() for h in headers[2:]] == ["Baseline" + names[0].replace("_", " "),
                                               *[f"Option {c}" + n.replace("_", " ") for c, n in
                                                 zip("ABCDEFG", names[1:], strict=False)]]
    rest = parse(reports["comparison"]).root.find("table", id="all-kpis")
    assert rest is not None
    shown = {tr.attrs["data-kpi"] for tr in [*rows, *rest.iter("tr")] if "data-kpi" in tr.attrs}
    assert shown == set(side["kpi"])


def test_comparison_economics_ranked_with_dominance(dirs: dict[str, Path], reports: dict[str, str]) -> None:
    econ = pd.read_csv(dirs["comparison"] / "economics.csv", keep_default_na=False)
    table = parse(reports["comparison"]).root.find("table", id="economics-table")
    assert table is not None
    rows = [tr for tr in table.iter("tr") if "data-option" in tr.attrs]
    ranked = econ.sort_values("rank")
    assert [tr.attrs["data-option"] for tr in rows] == list(ranked["option"])
    for tr, (_, r) in zip(rows, ranked.iterrows(), strict=True):
        cells = tr.iter("td")
        assert cells[0].text() == str(r["rank"])
        assert cell_value(cells[2]) == (fmt(r["net_cost"], "GBP"), fmt_ci(r["net_cost_ci_low"],
                                                                          r["net_cost_ci_high"], "GBP"))
        assert ("Dominated by" in tr.text()) == bool(r["dominated_by"])
        assert ("dominated" in tr.classes()) == bool(r["dominated_by"])


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
    meta = json.loads((dirs["comparison"] / "comparison.json").read_text())
    for o in meta["options"]:
        t = tree.root.find("table", id=f"differences-{o['name']}")
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
    meta = json.loads((dirs["comparison"] / "comparison.json").read_text())
    names = [meta["baseline"]["name"], *[o["name"] for o in meta["options"]]]
    for n in names:
        sc = yaml.safe_load((dirs["comparison"] / "runs" / n / "scenario.yaml").read_text())
        for a in sc["assumptions"]:
            assert a in assumptions
        for note in sc["costs"]["notes"].values():
            assert note in assumptions
    assert "ASSUMPTION: 2 posts" in assumptions  # the trusted assessor's own investment note
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
    text = tree.root.text()
    assert "Target finder" in text
    repro = section(tree, "reproducibility").text()
    assert meta["base_scenario_id"] in repro and str(meta["seed"]) in repro and shlex.join(meta["command"]) in repro
    assert "Every figure is illustrative" in section(tree, "assumptions").text()


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
    assert fmt(28447012.4, "GBP") == "£28,447,012" and fmt(-60327.7, "GBP") == "-£60,328"
    assert fmt(float("nan")) == "–" and fmt(None) == "–" and fmt(float("inf")) == "unlimited"
    assert fmt_ci(12.13, 32.49) == "12.1 to 32.5" and fmt_ci(float("nan"), 1.0) == ""
    assert report.verdict(1, 2, 3, "at most") == "met" and report.verdict(4, 5, 3, "at most") == "missed"
    assert report.verdict(2, 4, 3, "at most") == "uncertain" and report.verdict(4, 5, 3, "at least") == "met"

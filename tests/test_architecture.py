"""The package's import structure: no import circles, and none of the arrows the architecture forbids.

The import graph of ``flowsim`` is built from the source with ``ast`` (nothing is imported, so an import inside a
function or under ``TYPE_CHECKING`` counts as much as one at the top: a type-only import is still a dependency a
reader has to follow).  The layers and the "never" arrows are copied from the project's architecture notes
(DESIGN.md section 1 and its architecture.json), so the test does not depend on files outside the repository.

Issue 14 found five circles (appraisal <-> appraisal_figures, calibrate <-> calibration_figures, sweep <->
sweep_figures, fitdata/synthetic <-> cli, model <-> escalation) and domain modules drawing their own figures;
each test below fails on that code.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "flowsim"

#: Layers: the files and folders each is made of (copied from architecture.json's "parts").
LAYERS: dict[str, tuple[str, ...]] = {
    "Scenario": ("flowsim/scenario/", "flowsim/errors.py", "flowsim/rng.py"),
    "Model": ("flowsim/model/",),
    "Results": ("flowsim/results/",),
    "Experiment": ("flowsim/experiment/", "flowsim/sweep.py", "flowsim/calibration/", "flowsim/appraisal.py",
                   "flowsim/rundir.py"),
    "Presentation": ("flowsim/report/",),
    "Face": ("flowsim/cli.py", "flowsim/__main__.py"),
    "App": ("flowsim/app/",),
}
#: Arrows that must never exist, with the reason (copied from architecture.json's "never").
NEVER: tuple[tuple[str, str, str], ...] = (
    ("Scenario", "Model", "the scenario knows no engine"),
    ("Model", "Results", "the model stamps times; KPIs come after"),
    ("Model", "Experiment", "a replication knows nothing of how many run"),
    ("Results", "Experiment", "KPIs are per replication"),
    ("Experiment", "Presentation", "the domain draws nothing: callers hand results to figures"),
    ("Experiment", "Face", "no CLI inside the domain"),
    ("Results", "Presentation", "KPIs draw nothing"),
    ("Model", "Presentation", "the model draws nothing"),
    ("Presentation", "Face", "reports know no CLI"),
    # the web app (issue 17) is presentation: it calls the API and the report, and nothing calls it back
    ("App", "Face", "the app calls the API, never the CLI"),
    *((layer, "App", "nothing in the domain or the reports knows the app")
      for layer in ("Scenario", "Model", "Results", "Experiment", "Presentation")),
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The flowsim modules ``path`` imports (``from a.b import c`` is a.b.c when that is a module, else a.b)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            found |= {f"{name}.{a.name}" if f"{name}.{a.name}" in known else name for a in node.names}
    return {m for m in found if m in known and m != me}


@functools.cache
def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {m: imports_of(p, known) for m, p in mods.items()}


def _component(stack: list[str], on: set[str], root: str) -> list[str]:
    """Pop one strongly connected component (ending at ``root``) off Tarjan's stack."""
    comp = []
    while True:
        w = stack.pop()
        on.discard(w)
        comp.append(w)
        if w == root:
            return sorted(comp)


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), or a module importing itself."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = _component(stack, on, v)
            if len(comp) > 1 or v in edges.get(v, ()):
                found.append(comp)

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def layer_of(module: str) -> str | None:
    path = module.replace(".", "/")
    for layer, members in LAYERS.items():
        for m in members:
            if (m.endswith("/") and (path + "/").startswith(m)) or path + ".py" == m:
                return layer
    return None


def test_the_graph_sees_imports_of_every_kind() -> None:
    """A control: the walker finds top-level, function-level and TYPE_CHECKING imports (else the tests below
    could pass on a graph with no arrows)."""
    edges = graph()
    assert "flowsim.experiment.runner" in edges["flowsim.appraisal"]                 # top level
    assert "flowsim.report.figures" in edges["flowsim.cli"]                          # inside a function
    assert "flowsim.experiment.runner" in edges["flowsim.report.figures"]            # under TYPE_CHECKING
    assert sum(len(v) for v in edges.values()) > 100
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"a"}}) == [["a"]]


def test_no_import_circles() -> None:
    found = cycles(graph())
    assert not found, "import circles (break each by moving the shared part down a layer, or by passing a " \
                      f"callable in from above): {found}"


def test_every_module_is_in_a_layer() -> None:
    """So a new module cannot escape the rules by accident (the package root is the public API facade)."""
    loose = [m for m in modules() if layer_of(m) is None and m != "flowsim"]
    assert not loose, f"modules in no layer of LAYERS: {loose}"


@pytest.mark.parametrize(("source", "target", "why"), NEVER, ids=[f"{a}->{b}" for a, b, _ in NEVER])
def test_no_forbidden_arrow(source: str, target: str, why: str) -> None:
    bad = sorted(f"{m} -> {d}" for m, deps in graph().items() if layer_of(m) == source
                 for d in deps if layer_of(d) == target)
    assert not bad, f"{source} must never import {target} ({why}): {bad}"


def test_the_app_is_built_on_the_api_and_the_report() -> None:
    """A control for the App rows above: the app's modules exist and do import the domain and the report."""
    edges = graph()
    app = {d for m, deps in edges.items() if layer_of(m) == "App" for d in deps}
    assert {"flowsim.appraisal", "flowsim.experiment.runner", "flowsim.report.run_report"} <= app
    assert layer_of("flowsim.app.main") == "App"


def test_domain_modules_draw_nothing() -> None:
    """The domain hands results to callers; it does not use matplotlib itself (fit-data's goodness-of-fit plots
    live in ``flowsim.report.fitdata_figures``)."""
    mods = modules()
    drawing = [m for m, p in mods.items() if layer_of(m) in ("Scenario", "Model", "Results", "Experiment")
               and ("import matplotlib" in p.read_text(encoding="utf-8")
                    or "from matplotlib" in p.read_text(encoding="utf-8"))]
    assert not drawing, f"domain modules that draw: {drawing}"

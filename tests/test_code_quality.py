"""The house rules, enforced by the test command itself (issue 18).

ruff (style, imports, complexity and size gates) and mypy (types) run here, so the one command the
README gives and ``.ci/run`` calls fails on a lint or type error as it does on a wrong number.  Two
ratchets keep the allow-lists of today's oversized functions from growing: each may only shrink, and an
entry that no longer needs its exemption must be removed.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "flowsim"

#: Functions longer than MAX_CODE_LINES today (qualified name -> why it is allowed for now).  Only shrinks.
LONG_FUNCTIONS: dict[str, str] = {
}
MAX_CODE_LINES = 80
#: noqa comments exempting a function from the complexity and size rules (C901, PLR09xx) in flowsim/, benchmarks/
#: and tests/.  Only shrinks: 48 when the gate went in; 40 after calibration/fitdata.py and
#: experiment/replications.py were split (issue 18); 35 after the model core, the KPI analysis, the
#: checks and the table builders were split (issue 11); then the report builders became templates and the
#: queues figure, the CLI parser and the commands were split (issue 14), and the snapshot reader (issue 15);
#: 24 after the sweep runner and target finder were split and the trajectory figures took keyword arguments;
#: 10 after run options became one typed value (issue 18); 0 after the calendar's samplers, the visits pool
#: and the KPI analysis took their trailing settings by keyword (issue 16 phase B) and the scenario's cross-field
#: validators, the per-replication invariant checks and visit_load were split along their seams.
MAX_COMPLEXITY_EXEMPTIONS = 0

_EXEMPTION = re.compile(r"#\s*noqa:[^#\n]*\b(C901|PLR09\d\d)\b")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          check=False)


def test_ruff_finds_nothing() -> None:
    res = _run("ruff", "check", ".", "--output-format", "concise")
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.slow
def test_mypy_finds_nothing() -> None:
    """Strictness is set in pyproject.toml ([tool.mypy]): untyped or incomplete definitions are errors."""
    res = _run("mypy")
    assert res.returncode == 0, res.stdout + res.stderr
    assert (PACKAGE / "py.typed").is_file(), "flowsim ships py.typed so callers' type checkers read its hints"


def _code_lines(fn: ast.FunctionDef | ast.AsyncFunctionDef, lines: list[str]) -> int:
    """Lines of code in a function's body: no docstring, blank or comment-only lines."""
    body = fn.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        body = body[1:]
    if not body:
        return 0
    span = lines[body[0].lineno - 1:fn.end_lineno]
    return sum(1 for line in span if line.strip() and not line.strip().startswith("#"))


def _long_functions() -> dict[str, int]:
    out: dict[str, int] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        rel = path.relative_to(ROOT).as_posix()

        def visit(node: ast.AST, prefix: str, rel: str = rel, lines: list[str] = lines) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.ClassDef):
                    visit(child, f"{prefix}{child.name}.")
                elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                    n = _code_lines(child, lines)
                    if n > MAX_CODE_LINES:
                        out[f"{rel}:{prefix}{child.name}"] = n
                    visit(child, f"{prefix}{child.name}.")

        visit(ast.parse(text), "")
    return out


def test_no_new_function_over_80_code_lines() -> None:
    found = _long_functions()
    new = {k: v for k, v in found.items() if k not in LONG_FUNCTIONS}
    assert not new, f"functions over {MAX_CODE_LINES} code lines (split them along their seams): {new}"


def test_long_function_allow_list_only_shrinks() -> None:
    stale = sorted(set(LONG_FUNCTIONS) - set(_long_functions()))
    assert not stale, f"now within {MAX_CODE_LINES} lines or gone: remove from LONG_FUNCTIONS: {stale}"


def test_complexity_exemptions_only_shrink() -> None:
    count = sum(len(_EXEMPTION.findall(p.read_text(encoding="utf-8")))
                for folder in ("flowsim", "benchmarks", "tests") for p in (ROOT / folder).rglob("*.py")
                if p != Path(__file__).resolve())
    assert count <= MAX_COMPLEXITY_EXEMPTIONS, (
        f"{count} `# noqa` complexity/size exemptions, more than the {MAX_COMPLEXITY_EXEMPTIONS} allowed: "
        "split the new function instead")


def test_exemption_pattern_sees_ruffs_directives() -> None:
    """The ratchet above counts what `ruff --add-noqa` writes (so it cannot silently count nothing)."""
    assert _EXEMPTION.search("def f():  # noqa: C901, PLR0912")
    assert _EXEMPTION.search("def g(a, b):  # noqa: PLR0917")
    assert not _EXEMPTION.search("x = 1  # noqa: E501")


def test_ci_runs_exactly_the_readme_test_command() -> None:
    """``.ci/run`` calls the test command the README gives (after installing), and what that command needs is
    declared: pytest-xdist in the test extra when it distributes, and ``-p no:benchmark`` in addopts so a
    globally installed pytest-benchmark cannot abort it (its xdist warning is an error under our filterwarnings)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```bash\n(python -m pytest[^\n]*)\n```\n\nruns the tests", readme)
    assert block, "the README's set-up section gives the test command in a bash block followed by 'runs the tests'"
    command = block.group(1)
    ci = [line for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
          if line.startswith("python -m pytest")]
    assert ci == [command]
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    if " -n " in f"{command} ":
        assert re.search(r'test = \[[^\]]*"pytest-xdist', pyproject)
    assert re.search(r'addopts = "[^"]*-p no:benchmark', pyproject)

"""Mutation testing of the critical modules (issue 19): run mutmut over them and report the kill rate per module.

Usage (from the repository root, mutmut installed: ``python -m pip install -e '.[mutation]'``)::

    python tools/mutation.py            # run the scoped mutants, then print the table
    python tools/mutation.py --report   # only print the table of the last run (mutants/ must exist)
    python tools/mutation.py --module flowsim/model/capacity.py   # one module (repeatable)

Why a script and not a bare ``mutmut run``: mutmut mutates whole files, and two of the critical files also hold
code that is not a measure or a decision (``results/kpi.py``: the catalogue of KPI labels and the per-service,
escalation and cost tables; ``appraisal.py``: running a comparison and writing its directory).  ``SCOPE`` names
the functions that *define* the critical numbers; mutmut's test selection (``[tool.mutmut]`` in
``pyproject.toml``) is the fast tests that exercise them.  The run is CPU-heavy: it runs under ``nice`` with one
child, as the shared development machine asks.  Surviving mutants that cannot change behaviour are listed with
their reasons in ``docs/mutation.md`` (``EQUIVALENT`` below reads them from there), so the table separates them
from survivors still to kill.
"""

from __future__ import annotations

import argparse
import fnmatch
import functools
import json
import math
import random
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: module -> the mangled mutmut names of the functions mutated there ("*": every function of the module)
SCOPE: dict[str, list[str]] = {
    "flowsim/rng.py": ["*"],
    "flowsim/model/capacity.py": ["*"],
    "flowsim/model/escalation.py": ["*"],
    "flowsim/model/residual.py": ["*"],
    "flowsim/experiment/replications.py": ["*"],
    "flowsim/experiment/warmup.py": ["*"],
    # the measures of the headline table: front door (ED waits), 2016/17 DTOC, G&A occupancy, NCTR, DRD, stranded
    "flowsim/results/kpi.py": ["x__front_door", "x__dtoc", "x__occupancy", "x__nctr", "x__drd", "x__stranded",
                               "xǁ_Runǁcensus", "xǁ_Runǁmidnights", "x__pct", "x__open_end"],
    # how stamps become delay segments, reasons and responsible organisations
    "flowsim/results/delays.py": ["*"],
    # the decision rule and its paired statistics
    "flowsim/appraisal.py": ["x__side", "x_cost_verdict", "x_delay_verdict", "x__better", "x__dominator",
                             "x__frontier", "x__nmb", "x_decide", "x_paired_difference", "x_ratio_ci"],
}

#: modules whose mutants are too many to run whole on a shared 2-core machine in one sitting (every survivor
#: re-runs each simulation test that touches the function, about a minute): a seeded random sample of this many
#: of their scoped mutants is run, and the kill rate is reported with its 95% (Wilson) interval
SAMPLE: dict[str, int] = {"flowsim/results/kpi.py": 40, "flowsim/results/delays.py": 30,
                          "flowsim/experiment/replications.py": 30, "flowsim/experiment/warmup.py": 40}
SAMPLE_SEED = 19

#: mutmut exit codes (mutmut.stats.status_by_exit_code) grouped as this report counts them
STATUS = {1: "killed", 3: "killed", 0: "survived", 36: "timeout", 24: "timeout", -24: "timeout", 152: "timeout",
          255: "timeout", 33: "survived", 5: "survived", 37: "killed"}  # no test touching the mutant: it survives


def module_name(path: str) -> str:
    return path.removesuffix(".py").replace("/", ".")


def globs(modules: list[str]) -> list[str]:
    """mutmut name patterns for the scoped functions of ``modules``."""
    return [f"{module_name(m)}.{f}__mutmut_*" for m in modules for f in SCOPE[m]]


def in_scope(key: str, module: str) -> bool:
    return any(fnmatch.fnmatchcase(key, g) for g in globs([module]))


@functools.cache
def meta(module: str) -> dict[str, int | None]:
    """mutmut's verdicts for one module: mutant name -> exit code (None: not run yet)."""
    path = ROOT / "mutants" / (module + ".meta")
    if not path.exists():
        raise SystemExit(f"mutation: error: {path} missing: run 'python tools/mutation.py' first")
    verdicts: dict[str, int | None] = json.loads(path.read_text(encoding="utf-8"))["exit_code_by_key"]
    return verdicts


def chosen(module: str) -> list[str]:
    """The mutants of ``module`` this run covers: every scoped one, or the seeded sample of them."""
    keys = sorted(k for k in meta(module) if in_scope(k, module))
    if module in SAMPLE:
        keys = sorted(random.Random(f"{SAMPLE_SEED}:{module}").sample(keys, min(SAMPLE[module], len(keys))))
    return keys


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a proportion k/n (in %)."""
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return 100.0 * (centre - half), 100.0 * (centre + half)


def equivalent() -> set[str]:
    """Mutant names listed as equivalent in docs/mutation.md (lines starting with '- `name`')."""
    doc = ROOT / "docs" / "mutation.md"
    if not doc.exists():
        return set()
    return set(re.findall(r"^- `(flowsim\.[^`]+__mutmut_\d+)`", doc.read_text(encoding="utf-8"), re.MULTILINE))


def tally(modules: list[str]) -> tuple[dict[str, Counter[str]], list[str]]:
    """Per module: counts by status (equivalent survivors counted apart); and the survivors not listed."""
    eq = equivalent()
    counts: dict[str, Counter[str]] = {}
    open_survivors: list[str] = []
    for m in modules:
        results = meta(m)
        c: Counter[str] = Counter()
        for key in chosen(m):
            code = results[key]
            status = "not run" if code is None else STATUS.get(code, "suspicious")
            if status == "survived" and key in eq:
                status = "equivalent"
            elif status == "survived":
                open_survivors.append(key)
            c[status] += 1
        counts[m] = c
    return counts, open_survivors


def report(modules: list[str]) -> str:
    """A markdown table per module.

    ``kill rate`` = killed / (run - equivalent): a mutant counts as killed only when a test failed on it.  A
    timeout (mutmut stops a mutant past its CPU-time budget) is shown apart and not counted: it is a genuine hang
    (an endless loop) or a survivor whose tests ran slowly on the loaded machine, which only a re-run with a
    larger budget tells apart.  ``mutmut score`` is mutmut's own figure, (killed + timeout) / run.  Sampled
    modules show the 95% (Wilson) interval of their kill rate."""
    counts, survivors = tally(modules)
    lines = ["| module | scoped | chosen | killed | timeout | equivalent | survived | not run | kill rate "
             "| mutmut score |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    total: Counter[str] = Counter()
    weighted, scoped_all = 0.0, 0
    for m, c in counts.items():
        total.update(c)
        scoped = sum(1 for k in meta(m) if in_scope(k, m))
        lines.append(row(m, scoped, c))
        live = sum(c.values()) - c["equivalent"] - c["not run"]
        if live:  # a module with nothing run yet says nothing either way
            weighted += scoped * c["killed"] / live
            scoped_all += scoped
    lines.append(row("all (pooled)", sum(1 for m in modules for k in meta(m) if in_scope(k, m)), total))
    if scoped_all:
        lines.append(f"| all (each module run weighted by its scoped mutants) | {scoped_all} | | | | | | | "
                     f"{100.0 * weighted / scoped_all:.1f}% | |")
    if survivors:
        lines += ["", f"{len(survivors)} survivors not listed as equivalent (`mutmut show NAME` shows each):",
                  *(f"    {s}" for s in survivors)]
    return "\n".join(lines)


def row(name: str, scoped: int, c: Counter[str]) -> str:
    n = sum(c.values())
    ran = n - c["not run"]
    live = ran - c["equivalent"]
    rate = f"{100.0 * c['killed'] / live:.1f}%" if live else "-"
    if name in SAMPLE and live:
        lo, hi = wilson(c["killed"], live)
        rate += f" ({lo:.0f}-{hi:.0f}%)"
    score = f"{100.0 * (c['killed'] + c['timeout']) / ran:.1f}%" if ran else "-"
    return (f"| {name} | {scoped} | {n} | {c['killed']} | {c['timeout']} | {c['equivalent']} | {c['survived']} | "
            f"{c['not run']} | {rate} | {score} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--report", action="store_true", help="only report the last run")
    ap.add_argument("--survivors", action="store_true",
                    help="run again only the mutants that survived (or were not run) last time, e.g. after new tests")
    ap.add_argument("--module", action="append", choices=sorted(SCOPE), help="only this module (repeatable)")
    args = ap.parse_args(argv)
    modules = args.module or list(SCOPE)
    if not args.report:
        if args.survivors:
            eq = equivalent()
            names = [k for m in modules for k in chosen(m)
                     if STATUS.get(meta(m)[k] or 0) == "survived" and k not in eq]
        elif (ROOT / "mutants").exists():
            names = [g for m in modules if m not in SAMPLE for g in globs([m])]
            names += [k for m in modules if m in SAMPLE for k in chosen(m)]
        else:  # the first run: mutmut must generate the mutants before a sample can be drawn from them
            names = globs([m for m in modules if m not in SAMPLE]) or globs(modules)
        if not names:
            sys.stdout.write("mutation: nothing to run\n")
        else:
            cmd = ["nice", "-n", "10", "mutmut", "run", "--max-children", "1", *names]
            done = subprocess.run(cmd, cwd=ROOT, check=False)
            if done.returncode != 0:
                return done.returncode
    sys.stdout.write(report(modules) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

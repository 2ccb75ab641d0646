"""Golden outputs: committed KPI tables for the shipped scenarios, and the one command that regenerates them.

Why: the rest of the suite checks that a run equals itself within one session and that results agree with
theory, so a change that shifts every result a little (a new random stream consumed in the wrong place, a
changed default, a different tie-break) passes unnoticed.  These files pin the exact numbers of five shipped
scenarios at a fixed seed and a short horizon; ``tests/test_golden.py`` recomputes them and fails, naming every
KPI or daily series that moved and by how much, when they differ.

When a change is *meant* to move results, regenerate and commit the files with the change, so the diff shows
in review what moved::

    python -m tests.golden --regenerate      # rewrite tests/golden/*.csv (about 15 s, deterministic)
    python -m tests.golden                   # compare only, print what moved (exit 1 if anything did)

Files (``tests/golden/``), CSV so a diff reads as a table:

- ``<case>.kpis.csv``: one row per KPI, one column per replication (``rep_0``, ...): the values
  ``RunResult.kpi_frame()`` gives, which every summary, CI and report is computed from.
- ``<case>.daily.csv``: one row per replication x day, a few daily series (``DAILY_SERIES``: midnight
  occupancy and delayed census, ED boarding, queues, OPEL level) from ``RunResult.daily()``.
- ``MANIFEST.json``: how each case was run (scenario, overrides, seed, replications), the scenario hash and
  the versions of flowsim, Python, numpy and scipy that wrote the files.  Informational: a mismatch
  message quotes it (a changed scenario hash says the scenario itself changed), but only numbers fail.

Tolerance: ``RTOL = 1e-9`` relative plus ``ATOL = 1e-9`` absolute.  Every value is computed in double
precision from the same random numbers, so on one platform a rerun gives identical bits; the tolerance only
absorbs summation-order differences (~1e-15 relative) from another numpy/BLAS build, and any real change to
the model moves values by far more.  NaN equals NaN (a KPI with nothing to measure).  A discrete-event run
is chaotic, though: a last-bit difference in a transcendental function can swap two events and move
results for real.  If the test fails after nothing but a numpy or scipy upgrade, regenerate and say so in
the commit message.

Values are written with Python's shortest round-trip repr and read back by pandas' Python parser (Python's
own ``float``), so a file holds exactly the doubles that were computed, whatever the pandas version.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import platform
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import scipy

import flowsim
from flowsim import load_scenario, simulate
from flowsim.scenario.loader import scenario_hash

ROOT = Path(__file__).resolve().parents[1]
GOLDEN_DIR = Path(__file__).resolve().parent / "golden"
REGENERATE = "python -m tests.golden --regenerate"
RTOL = 1e-9
ATOL = 1e-9
SEED = 2024
#: Daily series pinned per case (those a scenario does not produce are left out of its file).
DAILY_SERIES = ("acute_beds", "acute_occupied_midnight", "occupancy_pct", "ed_boarding_mean", "delayed_midnight",
                "delayed_acute_midnight", "queue_P1", "queue_P2", "queue_P3", "opel_level")
MAX_LINES = 25  # per table in a mismatch message: enough to see the pattern, short enough to read

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Case:
    """One shipped scenario, shortened: ``warmup_days`` then ``duration_days`` reported, ``replications``."""

    name: str
    scenario: str  # path relative to the repository root
    warmup_days: int
    duration_days: int
    replications: int = 3

    @property
    def overrides(self) -> list[str]:
        return [f"simulation.warmup_days={self.warmup_days}", f"simulation.duration_days={self.duration_days}"]


CASES = (
    Case("minimal", "scenarios/minimal.yaml", 30, 91),
    Case("rotherham_2016", "scenarios/rotherham_2016.yaml", 90, 91),
    # long enough into the winter for OPEL 4, escalation beds and cancelled electives to appear
    Case("rotherham_winter_2016", "scenarios/rotherham_winter_2016.yaml", 120, 120),
    Case("rotherham_pathway_only", "scenarios/rotherham_pathway_only.yaml", 60, 91),
    Case("rotherham_from_today", "scenarios/rotherham_from_today.yaml", 0, 91),  # the snapshot replaces warm-up
)


@dataclass(frozen=True)
class Tables:
    """What one case pins: KPIs (index kpi, columns rep_i) and daily series (replication, day, series...)."""

    kpis: pd.DataFrame
    daily: pd.DataFrame
    scenario_hash: str


@cache
def compute(case: Case) -> Tables:
    """Run ``case`` serially and shape its tables as the files hold them (cached: one run per session)."""
    sc = load_scenario(ROOT / case.scenario, overrides=case.overrides)
    res = simulate(sc, replications=case.replications, seed=SEED, workers=1, progress=False, keep_patients=False)
    kpis = res.kpi_frame().astype(float).T
    kpis.columns = [f"rep_{r}" for r in kpis.columns]
    kpis.index.name = "kpi"
    daily = res.daily()
    series = [c for c in DAILY_SERIES if c in daily.columns]
    daily = daily[["replication", "day", *series]].reset_index(drop=True)
    daily[series] = daily[series].astype(float)
    return Tables(kpis, daily, scenario_hash(sc))


def _paths(case: Case, folder: Path) -> tuple[Path, Path]:
    return folder / f"{case.name}.kpis.csv", folder / f"{case.name}.daily.csv"


def read(case: Case, folder: Path = GOLDEN_DIR) -> Tables:
    kp, dp = _paths(case, folder)
    kpis = pd.read_csv(kp, index_col="kpi", engine="python")
    daily = pd.read_csv(dp, engine="python")
    return Tables(kpis.astype(float), daily, manifest(folder).get(case.name, {}).get("scenario_hash", "?"))


def manifest(folder: Path = GOLDEN_DIR) -> dict[str, dict[str, object]]:
    path = folder / "MANIFEST.json"
    if not path.is_file():
        return {}
    cases: dict[str, dict[str, object]] = json.loads(path.read_text(encoding="utf-8"))["cases"]
    return cases


def write(folder: Path = GOLDEN_DIR, cases: tuple[Case, ...] = CASES) -> list[Path]:
    """Compute every case and write its files and the manifest; returns the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    entries: dict[str, dict[str, object]] = {}
    for case in cases:
        t = compute(case)
        kp, dp = _paths(case, folder)
        t.kpis.to_csv(kp, lineterminator="\n")
        t.daily.to_csv(dp, index=False, lineterminator="\n")
        written += [kp, dp]
        entries[case.name] = {"scenario": case.scenario, "overrides": case.overrides, "seed": SEED,
                              "replications": case.replications, "scenario_hash": t.scenario_hash}
    info = {"regenerate": REGENERATE, "rtol": RTOL, "atol": ATOL,
            "written_by": {"flowsim": flowsim.__version__, "python": platform.python_version(),
                           "numpy": np.__version__, "scipy": scipy.__version__},
            "cases": entries}
    path = folder / "MANIFEST.json"
    path.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return [*written, path]


def _fmt(x: float) -> str:
    return "NaN" if math.isnan(x) else f"{x:.10g}"


def _moved(label: str, e: float, a: float) -> str:
    """One line: which value moved, from what to what, by how much."""
    diff = a - e
    rel = f", {100 * diff / abs(e):+.3g}%" if e and not math.isnan(diff) else ""
    return f"  {label}: {_fmt(e)} -> {_fmt(a)} ({diff:+.3g}{rel})"


def _close(expected: np.ndarray, actual: np.ndarray) -> np.ndarray:
    return np.isclose(actual, expected, rtol=RTOL, atol=ATOL, equal_nan=True)


def compare_kpis(expected: pd.DataFrame, actual: pd.DataFrame) -> list[str]:
    """Lines naming every KPI x replication outside tolerance, and KPIs or replications gone or new."""
    lines = [f"  KPI no longer produced: {k}" for k in expected.index.difference(actual.index)]
    lines += [f"  new KPI (not in the golden file): {k}" for k in actual.index.difference(expected.index)]
    if list(expected.columns) != list(actual.columns):
        return [*lines, f"  replications differ: {list(expected.columns)} -> {list(actual.columns)}"]
    common = expected.index.intersection(actual.index, sort=False)
    e, a = expected.loc[common].to_numpy(), actual.loc[common].to_numpy()
    bad = np.argwhere(~_close(e, a))
    if not len(bad):
        return lines
    with np.errstate(divide="ignore", invalid="ignore"):
        size = np.abs(a - e) / np.abs(e)
    size = np.where(np.isfinite(size), size, np.inf)  # from or to zero or NaN: list first
    bad = bad[np.argsort(-size[bad[:, 0], bad[:, 1]], kind="stable")]
    lines.append(f"  {len(bad)} of {e.size} KPI values moved (largest relative change first):")
    lines += [_moved(f"{common[i]} [{expected.columns[j]}]", float(e[i, j]), float(a[i, j]))
              for i, j in bad[:MAX_LINES]]
    if len(bad) > MAX_LINES:
        lines.append(f"  ... and {len(bad) - MAX_LINES} more KPI values")
    return lines


def compare_daily(expected: pd.DataFrame, actual: pd.DataFrame) -> list[str]:
    """Lines naming every daily series that moved: on how many days, from which day, the largest change."""
    lines = [f"  daily series no longer produced: {c}" for c in expected.columns.difference(actual.columns)]
    lines += [f"  new daily series (not in the golden file): {c}"
              for c in actual.columns.difference(expected.columns)]
    keys = ["replication", "day"]
    e_days, a_days = expected[keys].to_numpy(), actual[keys].to_numpy()
    same_days = e_days.shape == a_days.shape and bool((e_days == a_days).all())
    if not same_days:
        return [*lines, f"  days differ: {len(expected)} golden rows (replication x day) -> {len(actual)}"]
    for col in [c for c in expected.columns if c in actual.columns and c not in keys]:
        e, a = expected[col].to_numpy(float), actual[col].to_numpy(float)
        bad = np.flatnonzero(~_close(e, a))
        if bad.size:
            first = bad[0]
            worst = bad[np.nanargmax(np.abs(a[bad] - e[bad]))] if np.isfinite(a[bad] - e[bad]).any() else first
            lines.append(f"  {col}: moved on {bad.size} of {len(e)} replication-days, first replication "
                         f"{expected['replication'].iat[first]} day {expected['day'].iat[first]} "
                         f"({_fmt(e[first])} -> {_fmt(a[first])}), largest change {a[worst] - e[worst]:+.3g} "
                         f"on replication {expected['replication'].iat[worst]} day {expected['day'].iat[worst]}")
    return lines


def differences(case: Case, folder: Path = GOLDEN_DIR) -> str:
    """Everything that moved in ``case`` against its golden files, as a message ('' when nothing did)."""
    kp, dp = _paths(case, folder)
    if not kp.is_file() or not dp.is_file():
        return f"{case.name}: no golden files in {folder}; create them with `{REGENERATE}`"
    golden, now = read(case, folder), compute(case)
    lines = [f"{case.name} ({case.scenario}, seed {SEED}, {case.replications} replications, "
             f"warm-up {case.warmup_days} + {case.duration_days} days), beyond rtol {RTOL:g} / atol {ATOL:g}:"]
    kpis, daily = compare_kpis(golden.kpis, now.kpis), compare_daily(golden.daily, now.daily)
    if not kpis and not daily:
        return ""
    if golden.scenario_hash != now.scenario_hash:
        lines.append(f"  (the resolved scenario itself changed: hash {golden.scenario_hash} -> {now.scenario_hash})")
    if kpis:
        lines += [f" KPIs ({kp.name}):", *kpis]
    if daily:
        lines += [f" daily series ({dp.name}):", *daily]
    lines.append(f"If this change is meant to move results, run `{REGENERATE}` and commit tests/golden/ with it.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.golden", description=__doc__.split("\n\n")[0])
    parser.add_argument("--regenerate", action="store_true", help="rewrite the golden files from a fresh run")
    parser.add_argument("--dir", type=Path, default=GOLDEN_DIR, help="folder of golden files (default: %(default)s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.regenerate:
        for path in write(args.dir):
            log.info("wrote %s", path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
        return 0
    problems = [m for m in (differences(c, args.dir) for c in CASES) if m]
    for m in problems:
        log.info("%s\n", m)
    log.info("%d of %d golden cases moved", len(problems), len(CASES))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

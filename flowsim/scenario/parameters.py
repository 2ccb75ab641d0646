"""Parameter sets a run draws from: a calibration's accepted set, so intervals carry parameter uncertainty.

Why: a calibrated value is known only to within its approximate 95% set, and an interval computed at the single
best value understates how unsure a forecast is.  ``parameters_from:`` in a scenario names a calibration output
directory (or its ``evaluations.csv``); the sets read here are every candidate the calibration evaluated whose
objective lies within chi2(k, 0.95) of the best (the same likelihood-ratio set ``calibration.json`` reports as
``intervals_95``), each once.  Replication r then runs with the set drawn on its own named stream
(``parameter_draw``) from (seed, r): options compared on the same seed draw the same sets by replication index,
so common random numbers hold across options.  The sets are equally likely: a profile set over the candidates
evaluated, not a posterior.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
from scipy import stats

from flowsim.errors import ScenarioError

PARAMETER_STREAM = "parameter_draw"
METHOD = ("each replication draws one parameter set, equally likely, from the calibration's approximate 95% "
          "likelihood-ratio set (candidates within chi2(k, 0.95) of the best objective), on the named stream "
          f"'{PARAMETER_STREAM}'")


def _files(source: Path) -> tuple[Path, Path]:
    evaluations = source / "evaluations.csv" if source.is_dir() else source
    return evaluations, evaluations.parent / "calibration.json"


def accepted_sets(source: Path, where: str) -> list[dict[str, Any]]:
    """The calibration's accepted parameter sets (dotted path -> value), best first, without repeats."""
    evaluations, meta_path = _files(source)
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        table = pd.read_csv(evaluations)
    except (OSError, ValueError) as exc:
        raise ScenarioError([f"{where}: parameters_from: {source}: needs a calibration directory (evaluations.csv "
                             f"and calibration.json written by flowsim calibrate): {type(exc).__name__}"]) from None
    paths = list((meta.get("fitted") or {}).keys())
    missing = [c for c in [*paths, "objective"] if c not in table.columns]
    if not paths or missing:
        raise ScenarioError([f"{where}: parameters_from: {evaluations} is not a calibration's evaluations "
                             f"(missing {', '.join(missing) or 'fitted parameters in calibration.json'})"])
    threshold = float(table["objective"].min()) + float(stats.chi2.ppf(0.95, len(paths)))
    inside = table[table["objective"] <= threshold].sort_values("objective", kind="stable")
    inside = inside.drop_duplicates(subset=paths)
    integer = {p: isinstance((meta.get("fitted") or {}).get(p), int) for p in paths}
    out = []
    for _, row in inside.iterrows():
        values = {p: (int(round(row[p])) if integer[p] else float(row[p])) for p in paths}
        if all(math.isfinite(float(v)) for v in values.values()):
            out.append(values)
    return out

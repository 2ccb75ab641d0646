"""Who is where at a moment of a run: a start-from-today snapshot read off the patient records.

Why: a back-test forecasts from dated snapshots, and the only way to know the truth a back-test should
recover is to make the snapshots, and the history that follows them, with the model itself.  The rows
are those of ``initial_state.snapshot_file`` (node, cohort, pathway, days already spent there), so a
snapshot written here is read back by the scenario loader like one from a bed state.

A patient present at time ``t`` (days from the run's start) is placed at the first stage not yet done:
boarding in ED (no bed yet), in the acute stay (not yet declared medically fit), medically fit and
waiting for or in assessment (pathways that assess), medically fit and waiting in an acute bed for
their pathway, or in a downstream service.  ``days`` is the time spent in that stage, from which the
model draws the rest of the stay conditional on it.  What a snapshot cannot say is lost, as it is for a
real bed state: an assessment under way restarts, a place granted but not yet taken is queued for again,
and readmissions of patients discharged before ``t`` do not happen.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

SNAPSHOT_HEADER = ("node", "cohort", "pathway", "days")


def _before(x: float, t: float) -> bool:
    return math.isfinite(x) and x <= t


def _node(r: pd.Series, t: float, needs_assessment: dict[str, bool]) -> tuple[str, float] | None:
    """(node, days there) of one patient record at ``t``, or None if not in the system then."""
    pathway = str(r["pathway"] or "")
    service = str(r["service"] or "")
    # the stages in order: (still there if this stamp is not yet reached, node, when the stage began)
    stages = [("bed_start", "ed", "arrival"), ("mffd", "acute", "bed_start")]
    if needs_assessment.get(pathway, False):
        stages.append(("assess_end", "assessment", "mffd"))
    stages.append(("acute_end", pathway, "mffd"))
    if service:
        stages.append(("ds_end", service, "acute_end"))
    if not _before(r["arrival"], t):
        return None
    for end, node, began in stages:
        if not _before(r[end], t):
            return node, t - r[began]
    return None


def snapshot_at(patients: pd.DataFrame, t: float, needs_assessment: dict[str, bool]) -> pd.DataFrame:
    """The snapshot rows (node, cohort, pathway, days) of everyone in the system at ``t``, longest there first.

    ``needs_assessment``: pathway -> whether it assesses before discharge (from the scenario).  Electives and
    patients whose records show no stage at ``t`` are left out."""
    rows = []
    for _, r in patients.iterrows():
        if str(r.get("kind", "non_elective")) != "non_elective":
            continue
        found = _node(r, t, needs_assessment)
        if found is None:
            continue
        node, days = found
        pathway = str(r["pathway"] or "")
        rows.append({"node": node, "cohort": str(r["cohort"]),
                     "pathway": pathway if node not in ("ed",) and pathway else "",
                     "days": round(max(float(days), 0.0), 6)})
    out = pd.DataFrame(rows, columns=list(SNAPSHOT_HEADER))
    if out.empty:
        return out
    order = np.argsort(-out["days"].to_numpy(), kind="stable")
    return out.iloc[order].reset_index(drop=True)

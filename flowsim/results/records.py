"""Per-stay records: the model's patient stamps as one immutable table.

Times are float days from ``simulation.start_date`` 00:00 (negative during
warm-up); NaN means the stay had not reached that point when the run ended.
Beside the stamps, each stay carries what the delay measures need, worked out
once from the stamps and the scenario (``flowsim.results.delays``): its delay
segments with their SitRep reason, responsible organisation and whether the
bed they happen in reports, so any measure can be recomputed from the table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from flowsim.model.codes import ACUTE_EXIT_LABELS, CANCELLED_LABELS, OUTCOME_LABELS
from flowsim.model.model import RawRun

TIME_FIELDS: tuple[str, ...] = (
    "arrival", "bed_start", "clinically_fit", "mffd", "rft", "assess_start", "assess_end", "slot_granted",
    "acute_end", "stay_end", "onward_granted", "ds_end", "gave_up",
)

#: Derived per-stay columns (see ``flowsim.results.delays.add_delay_columns``), written to ``patients.parquet``.
DELAY_FIELDS: tuple[str, ...] = (
    "dtoc_start", "wait_start", "wait_reason", "assess_org", "wait_org",
    "onward_start", "onward_reason", "onward_org", "onward_in_bed", "onward_reports",
    "drd_delay_days",
)


@dataclass(frozen=True)
class Records:
    """Column arrays of one replication's stays (numpy, for fast KPI arithmetic)."""

    cols: dict[str, np.ndarray]
    cohort_names: list[str]
    service_names: list[str]
    service_pathway: list[str]

    def __len__(self) -> int:
        return len(self.cols["id"])

    def __getitem__(self, key: str) -> np.ndarray:
        return self.cols[key]

    def frame(self, replication: int, seed: int, scenario_id: str) -> pd.DataFrame:
        """The per-stay table written to ``patients.parquet``."""
        c = self.cols
        svc = np.array(self.service_names + [""], dtype=object)
        df = pd.DataFrame({
            "scenario_id": scenario_id,
            "seed": seed,
            "replication": replication,
            "stay_id": c["id"],
            "person_id": c["person"],
            "readmission_of": c["readmission_of"],
            "cohort": pd.Categorical.from_codes(c["cohort"], self.cohort_names),
            # a death in hospital takes no pathway (empty in the model, missing here)
            "pathway": pd.Categorical([x or None for x in c["pathway"]], categories=["P0", "P1", "P2", "P3"]),
            "service": svc[c["service"]],
            **{f: c[f] for f in TIME_FIELDS},
            "outcome": np.array([*OUTCOME_LABELS, ""], dtype=object)[c["outcome"]],
            "kind": np.where(c["elective"], "elective", np.where(c["step_up"] >= 0, "step_up", "non_elective")),
            "acute_exit": np.array(ACUTE_EXIT_LABELS, dtype=object)[c["exit"]],
            "diverted_from": c["diverted_from"],
            "cancelled": np.array(CANCELLED_LABELS, dtype=object)[c["cancelled"]],
            "initial": c["initial"],
            "initial_stage": c["initial_stage"],
            "package_len": c["package_len"],
            **{f: c[f] for f in DELAY_FIELDS if f in c},
        })
        return df


def build_records(raw: RawRun) -> Records:
    """One replication's patient stamps as column arrays.  Delay columns are added by
    ``flowsim.results.delays.add_delay_columns``."""
    pts = raw.patients
    n = len(pts)
    cols: dict[str, np.ndarray] = {
        "id": np.fromiter((p.id for p in pts), dtype=np.int64, count=n),
        "person": np.fromiter((p.person for p in pts), dtype=np.int64, count=n),
        "readmission_of": np.fromiter((p.readmission_of for p in pts), dtype=np.int64, count=n),
        "cohort": np.fromiter((p.cohort for p in pts), dtype=np.int64, count=n),
        "service": np.fromiter((p.service for p in pts), dtype=np.int64, count=n),
        "outcome": np.fromiter((p.outcome for p in pts), dtype=np.int64, count=n),
        "pathway": np.array([p.pathway for p in pts], dtype=object),
        "elective": np.fromiter((p.elective for p in pts), dtype=bool, count=n),
        "cancelled": np.fromiter((p.cancelled for p in pts), dtype=np.int64, count=n),
        "initial": np.fromiter((p.initial for p in pts), dtype=bool, count=n),
        "initial_stage": np.fromiter((p.initial_stage for p in pts), dtype=np.int64, count=n),
        "package_len": np.fromiter((p.package_len for p in pts), dtype=float, count=n),
        "u_org": np.fromiter((p.u_org for p in pts), dtype=float, count=n),
        "exit": np.fromiter((p.exit for p in pts), dtype=np.int64, count=n),
        "step_up": np.fromiter((p.step_up for p in pts), dtype=np.int64, count=n),
        "diverted_from": np.fromiter((p.diverted_from for p in pts), dtype=np.int64, count=n),
    }
    for f in TIME_FIELDS:
        cols[f] = np.fromiter((getattr(p, f) for p in pts), dtype=float, count=n)
    return Records(cols, raw.cohort_names, raw.service_names, raw.service_pathway)

"""Per-stay records: the model's patient stamps as one immutable table.

Times are float days from ``simulation.start_date`` 00:00 (negative during
warm-up); NaN means the stay had not reached that point when the run ended.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from flowsim.model.model import OUTCOMES, RawRun

TIME_FIELDS: tuple[str, ...] = (
    "arrival", "bed_start", "mffd", "assess_start", "assess_end", "slot_granted",
    "acute_end", "stay_end", "ltc_granted", "ds_end",
)

#: What a delayed patient waits for (NHS DTOC reason groups used by flowsim).
REASONS: tuple[str, ...] = ("assessment", "P1", "P2", "P3", "care_home")


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
            "pathway": pd.Categorical(c["pathway"], categories=["P0", "P1", "P2", "P3"]),
            "service": svc[c["service"]],
            **{f: c[f] for f in TIME_FIELDS},
            "outcome": np.array([*OUTCOMES, ""], dtype=object)[c["outcome"]],
            "kind": np.where(c["elective"], "elective", "non_elective"),
            "cancelled": np.array(["", "no_bed", "escalation"], dtype=object)[c["cancelled"]],
            "initial": c["initial"],
            "initial_stage": c["initial_stage"],
            "package_len": c["package_len"],
        })
        return df


def build_records(raw: RawRun) -> Records:
    """One replication's patient stamps as column arrays."""
    pts = raw.patients
    cols: dict[str, np.ndarray] = {
        "id": np.fromiter((p.id for p in pts), dtype=np.int64, count=len(pts)),
        "person": np.fromiter((p.person for p in pts), dtype=np.int64, count=len(pts)),
        "readmission_of": np.fromiter((p.readmission_of for p in pts), dtype=np.int64, count=len(pts)),
        "cohort": np.fromiter((p.cohort for p in pts), dtype=np.int64, count=len(pts)),
        "service": np.fromiter((p.service for p in pts), dtype=np.int64, count=len(pts)),
        "outcome": np.fromiter((p.outcome for p in pts), dtype=np.int64, count=len(pts)),
        "pathway": np.array([p.pathway for p in pts], dtype=object),
        "elective": np.fromiter((p.elective for p in pts), dtype=bool, count=len(pts)),
        "cancelled": np.fromiter((p.cancelled for p in pts), dtype=np.int64, count=len(pts)),
        "initial": np.fromiter((p.initial for p in pts), dtype=bool, count=len(pts)),
        "initial_stage": np.fromiter((p.initial_stage for p in pts), dtype=np.int64, count=len(pts)),
        "package_len": np.fromiter((p.package_len for p in pts), dtype=float, count=len(pts)),
    }
    for f in TIME_FIELDS:
        cols[f] = np.fromiter((getattr(p, f) for p in pts), dtype=float, count=len(pts))
    return Records(cols, raw.cohort_names, raw.service_names, raw.service_pathway)

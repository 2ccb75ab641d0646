"""Per-stay records: the model's patient stamps as one immutable table.

Times are float days from ``simulation.start_date`` 00:00 (negative during
warm-up); NaN means the stay had not reached that point when the run ended.
Beside the stamps, each stay carries what the delay measures need, worked out
once from the stamps and the scenario (``flowsim.results.delays``): its delay
segments with their SitRep reason, responsible organisation and whether the
bed they happen in reports, so any measure can be recomputed from the table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import chain, repeat
from operator import attrgetter
from typing import Any

import numpy as np
import pandas as pd

from flowsim.model.codes import ACUTE_EXIT_LABELS, CANCELLED_LABELS, OUTCOME_LABELS
from flowsim.model.model import RawRun
from flowsim.results.series import Level

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


#: Pathway codes of the ``pathway_code`` column: the index in this tuple, -1 for none.
PATHWAY_CODES: tuple[str, ...] = ("P0", "P1", "P2", "P3")


def _labels(labels: np.ndarray, codes: np.ndarray) -> Any:
    """``labels[codes]`` as the column pandas would make of it: the few labels are converted to pandas' string type
    once and then taken by code (converting every stay's label costs ~10x more)."""
    return pd.Series(labels).array.take(codes)


def pathway_codes(pathway: np.ndarray) -> np.ndarray:
    """Codes of the pathways (``PATHWAY_CODES`` index, -1 for none or any other value)."""
    code = {p: i for i, p in enumerate(PATHWAY_CODES)}
    # ``code.get`` called straight from C with the default beside each value (a lambda per stay cost ~3x more)
    return np.fromiter(map(code.get, pathway, repeat(-1, len(pathway))), dtype=np.int64, count=len(pathway))


@dataclass(frozen=True)
class Records:
    """Column arrays of one replication's stays (numpy, for fast KPI arithmetic)."""

    cols: dict[str, np.ndarray]
    cohort_names: list[str]
    service_names: list[str]
    service_pathway: list[str]
    #: levels built by ``level``, by their arguments (a fresh, empty cache for every ``Records``, replaced ones too)
    _levels: dict[tuple[str, str, float, int | None], Level] = field(init=False, default_factory=dict, repr=False,
                                                                      compare=False)

    def __len__(self) -> int:
        return len(self.cols["id"])

    def __getitem__(self, key: str) -> np.ndarray:
        return self.cols[key]

    def level(self, start: str, end: str, t_end: float, service: int | None = None) -> Level:
        """The level of the stays' intervals ``[start, end)`` up to ``t_end`` (only stays at ``service`` when given),
        built once per replication: the KPIs, the node tables and the invariant checks all read the acute
        occupancy and each service's, and each build sorts every stamp of the column (the acute one ~90,000)."""
        key = (start, end, t_end, service)
        lev = self._levels.get(key)
        if lev is None:
            starts = self.cols[start]
            if service is not None:
                starts = np.where(self.cols["service"] == service, starts, np.nan)
            lev = self._levels[key] = Level.from_intervals(starts, self.cols[end], t_end)
        return lev

    def on_pathway(self, name: str) -> np.ndarray:
        """Which stays took pathway ``name``: the same mask as ``self["pathway"] == name``, compared by pathway code
        (an integer comparison; comparing every stay's string cost ~50x more, ~1 ms a call on a Rotherham year)."""
        if name in PATHWAY_CODES:
            return self.cols["pathway_code"] == PATHWAY_CODES.index(name)
        return self.cols["pathway"] == name

    def by_pathway(self, values: Mapping[str, Any], default: Any, dtype: Any = object) -> np.ndarray:
        """Each stay's ``values[pathway]`` (``default`` for a pathway not in ``values`` or none): a lookup in a table
        of five entries by the stay's pathway code, instead of a Python loop over the stays."""
        table = np.array([values.get(p, default) for p in PATHWAY_CODES] + [default], dtype=dtype)
        return table[self.cols["pathway_code"]]

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
            # a death in hospital takes no pathway (code -1: missing here)
            "pathway": pd.Categorical.from_codes(c["pathway_code"], categories=list(PATHWAY_CODES)),
            "service": _labels(svc, c["service"]),
            **{f: c[f] for f in TIME_FIELDS},
            "outcome": _labels(np.array([*OUTCOME_LABELS, ""], dtype=object), c["outcome"]),
            "kind": _labels(np.array(["non_elective", "elective", "step_up"], dtype=object),
                            np.where(c["elective"], 1, np.where(c["step_up"] >= 0, 2, 0))),
            "acute_exit": _labels(np.array(ACUTE_EXIT_LABELS, dtype=object), c["exit"]),
            "diverted_from": c["diverted_from"],
            "cancelled": _labels(np.array(CANCELLED_LABELS, dtype=object), c["cancelled"]),
            "initial": c["initial"],
            "initial_stage": c["initial_stage"],
            "package_len": c["package_len"],
            **{f: c[f] for f in DELAY_FIELDS if f in c},
        })
        return df


#: Per-stay fields copied from the model's patients, by the dtype of their column.
INT_FIELDS: tuple[str, ...] = ("id", "person", "readmission_of", "cohort", "service", "outcome", "cancelled",
                               "initial_stage", "exit", "step_up", "diverted_from")
BOOL_FIELDS: tuple[str, ...] = ("elective", "initial")
FLOAT_FIELDS: tuple[str, ...] = ("package_len", "u_org", *TIME_FIELDS)


def _block(pts: list[Any], fields: tuple[str, ...], dtype: type) -> dict[str, np.ndarray]:
    """Columns ``fields`` of every patient: one C-level ``attrgetter`` call per patient reads them all into a row,
    the rows are streamed flat into one array (``np.fromiter`` of their chain: ~2.5x faster than ``np.array`` of
    the list of rows, which inspects every row for its shape first; a generator per field cost ~10x more), and the
    2-D block's transpose gives the columns.  Each value is converted by the same rule either way."""
    n, k = len(pts), len(fields)
    rows = chain.from_iterable(map(attrgetter(*fields), pts)) if k > 1 else map(attrgetter(*fields), pts)
    block: np.ndarray = np.fromiter(rows, dtype=dtype, count=n * k).reshape(n, k)
    return dict(zip(fields, np.ascontiguousarray(block.T), strict=True))


def build_records(raw: RawRun) -> Records:
    """One replication's patient stamps as column arrays.  Delay columns are added by
    ``flowsim.results.delays.add_delay_columns``."""
    pts = raw.patients
    cols = {**_block(pts, INT_FIELDS, np.int64), **_block(pts, BOOL_FIELDS, bool),
            "pathway": np.array([p.pathway for p in pts], dtype=object)}
    cols["pathway_code"] = pathway_codes(cols["pathway"])
    floats = _block(pts, FLOAT_FIELDS, float)
    cols.update({f: floats[f] for f in ("package_len", "u_org", *TIME_FIELDS)})
    return Records(cols, raw.cohort_names, raw.service_names, raw.service_pathway)

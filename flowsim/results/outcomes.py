"""Outcome measures that follow a person after the acute stay: ASCOF 2B(1), still at home 91 days later.

Why a module of its own: the measure needs a person's *later* stays (a readmission, a death in hospital,
a care-home placement after another stay), not one stay's stamps, so it is worked out from the whole
record table by person, as a pure function of arrays that a hand-made table can check.

Definition (Adult Social Care Outcomes Framework 2B(1), the BCF 2017-19 metric, F3:3735 and F3:4889-4891):
of older people (65+) discharged from hospital into reablement or rehabilitation services, the share
still at home 91 days after the discharge.  In the model: acute stays of a cohort aged 65+ (its
``age_band`` 65-84 or 85+), not living in a care home before (``from_care_home``: they return to it,
with no intention of a move home), discharged on P1 (reablement at home) or P2 (intermediate care,
rehabilitation beds).  A person is *not* at home at the 91st day if, at that moment, they are in hospital
(admitted again and not yet left the acute bed, or waiting in ED), have died (downstream or in hospital),
have moved into permanent residential or nursing care, or are in a P2 or P3 bed.  Reablement at home
(P1) and long-term home care count as home.  Only discharges whose 91st day falls inside the run are
counted (the others' outcome is not yet known), so the last 91 days of a run have none.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from flowsim.model.codes import AcuteExit, Outcome

AT_HOME_DAYS = 91.0
OLDER_BANDS = ("65-84", "85+")
REHAB_PATHWAYS = ("P1", "P2")
BED_PATHWAYS = ("P2", "P3")


class Columns(Protocol):
    """Per-stay columns by name (``flowsim.results.records.Records``, or a dict of arrays in a test)."""

    def __getitem__(self, key: str) -> np.ndarray: ...


def _not_home(c: Columns, j: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Whether stay ``j`` puts its person somewhere other than home at time ``s`` (elementwise)."""
    arrival, acute_end, ds_end = c["arrival"][j], c["acute_end"][j], c["ds_end"][j]
    started = arrival <= s
    in_hospital = started & (np.isnan(acute_end) | (s < acute_end))
    died_in_hospital = (c["exit"][j] == AcuteExit.DIED) & (acute_end <= s)
    granted = c["slot_granted"][j]
    in_bed = (np.isin(c["pathway"][j], BED_PATHWAYS) & (granted <= s)
              & (np.isnan(ds_end) | (s < ds_end)))
    gone = np.isin(c["outcome"][j], (Outcome.DEATH, Outcome.LONG_TERM_CARE)) & (ds_end <= s)
    return in_hospital | died_in_hospital | in_bed | gone


def rehab_cohort(c: Columns, older: np.ndarray, t_end: float) -> np.ndarray:
    """Stays in the measure's denominator: 65+ (``older``, per stay) discharged from an acute bed on P1 or P2,
    in the window, with their 91st day inside it."""
    end = c["acute_end"]
    return (older & np.isin(c["pathway"], REHAB_PATHWAYS) & (c["exit"] == AcuteExit.PATHWAY)
            & ~c["elective"] & (c["step_up"] < 0) & ~c["initial"]
            & (end >= 0) & (end + AT_HOME_DAYS <= t_end))


def at_home_after(c: Columns, cohort: np.ndarray) -> np.ndarray:
    """For each stay in ``cohort`` (a boolean mask), whether its person is at home 91 days after the acute
    discharge: none of their stays from this one on places them elsewhere at that moment."""
    idx = np.flatnonzero(cohort)
    s = c["acute_end"][idx] + AT_HOME_DAYS
    away = _not_home(c, idx, s)
    later = c["person"][idx]
    # the person's other stays that began after this one (readmissions and what followed them)
    others = np.flatnonzero(np.isin(c["person"], later))
    if len(others):
        pos = {int(i): k for k, i in enumerate(idx)}
        by_person: dict[int, list[int]] = {}
        for k, i in enumerate(idx):
            by_person.setdefault(int(later[k]), []).append(int(i))
        pairs = [(pos[i], int(j)) for j in others for i in by_person.get(int(c["person"][j]), [])
                 if int(j) != i and c["arrival"][j] > c["arrival"][i]]
        if pairs:
            k_of, j_of = np.array(pairs, dtype=int).T
            hit = _not_home(c, j_of, s[k_of])
            away[np.unique(k_of[hit])] = True
    return ~away


def at_home_daily(c: Columns, older: np.ndarray, t_end: float, days: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Per day of acute discharge: the measure's denominator (discharges) and numerator (at home 91 days on)."""
    cohort = rehab_cohort(c, older, t_end)
    home = at_home_after(c, cohort)
    day = np.floor(c["acute_end"][cohort]).astype(int)
    return (np.bincount(day, minlength=days)[:days].astype(float),
            np.bincount(day[home], minlength=days)[:days].astype(float))

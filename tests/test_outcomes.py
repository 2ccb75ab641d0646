"""The outcome measures issue 13 point 7 fits and scores against the seeds: 65+ emergency admissions by month
(F3:2849), and ASCOF 2B(1), 65+ still at home 91 days after discharge into reablement or rehabilitation
(F3:4889-4891), each checked on a table whose answer is worked out by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from flowsim import load_scenario, simulate
from flowsim.model.codes import AcuteExit, Outcome
from flowsim.results.outcomes import at_home_after, at_home_daily, rehab_cohort

SMALL = Path(__file__).resolve().parent / "scenarios" / "small.yaml"
NAN = float("nan")
H, D, L, R, N = Outcome.HOME, Outcome.DEATH, Outcome.LONG_TERM_CARE, Outcome.READMITTED, Outcome.NONE
P, DIED = AcuteExit.PATHWAY, AcuteExit.DIED

# One row per stay: person, 65+?, pathway, arrival, acute end, place granted, downstream end, outcome, acute exit.
# Discharges on day 10 (the 91st day is day 101); the run ends on day 200.
STAYS = [
    (0, True, "P1", 0, 10, 10, 40, H, P),        # 0  reablement, home on day 40: AT HOME
    (1, True, "P1", 0, 10, 10, 50, D, P),        # 1  died in reablement on day 50: not
    (2, True, "P2", 0, 10, 10, NAN, N, P),       # 2  still in an intermediate care bed: not
    (3, True, "P1", 0, 10, 10, 30, H, P),        # 3  home, then readmitted on day 95, still in on 101: not
    (4, True, "P1", 0, 10, 10, 30, H, P),        # 4  home, readmitted day 40, home again day 45: AT HOME
    (5, True, "P2", 0, 10, 10, 31, L, P),        # 5  into a care home on day 31: not
    (6, False, "P1", 0, 10, 10, 30, H, P),       # 6  aged 18-64: not in the measure
    (7, True, "P1", 0, 150, 150, 170, H, P),     # 7  91st day after the run's end: not in the measure
    (8, True, "P0", 0, 10, NAN, NAN, N, P),      # 8  home without reablement: not in the measure
    (3, True, "P0", 95, 120, NAN, NAN, N, P),    # 9  person 3's readmission
    (4, True, "P0", 40, 45, NAN, NAN, N, P),     # 10 person 4's readmission
    (11, True, "P1", 0, 10, 10, 30, H, P),       # 11 home, readmitted day 50 and died in hospital day 60: not
    (11, True, "", 50, 60, NAN, NAN, N, DIED),   # 12 person 11's readmission
    (13, True, "P2", 0, 10.5, 10.5, 20, R, P),   # 13 readmitted from the bed on day 20, then a P3 bed: not
    (13, True, "P3", 20, 30, 30, NAN, N, P),     # 14 person 13's readmission, in a nursing bed at the end
    (15, True, "P1", -30, 10, 10, 300, H, P),    # 15 admitted in the warm-up, reablement past day 101: AT HOME
    (16, True, "P1", 100, 100, 100, 110, H, P),  # 16 person 17's second stay, home by its day 191: AT HOME
    (16, True, "P1", 0, 10, 10, 30, H, P),       # 17 home again before day 101 after that stay: AT HOME
]
IN_MEASURE = [0, 1, 2, 3, 4, 5, 11, 13, 15, 16, 17]
AT_HOME = {0, 4, 15, 16, 17}


def table() -> dict[str, np.ndarray]:
    person, older, pathway, arrival, end, granted, ds_end, outcome, exit_ = zip(*STAYS, strict=True)
    n = len(STAYS)
    return {"person": np.array(person), "older": np.array(older), "pathway": np.array(pathway, dtype=object),
            "arrival": np.array(arrival, float), "acute_end": np.array(end, float),
            "slot_granted": np.array(granted, float), "ds_end": np.array(ds_end, float),
            "outcome": np.array(outcome, dtype=np.int64), "exit": np.array(exit_, dtype=np.int64),
            "elective": np.zeros(n, bool), "step_up": np.full(n, -1), "initial": np.zeros(n, bool)}


def test_who_is_in_the_measure() -> None:
    c = table()
    assert np.flatnonzero(rehab_cohort(c, c["older"], 200.0)).tolist() == IN_MEASURE


def test_at_home_91_days_by_hand() -> None:
    c = table()
    cohort = rehab_cohort(c, c["older"], 200.0)
    home = at_home_after(c, cohort)
    assert dict(zip(IN_MEASURE, home.tolist(), strict=True)) == {i: i in AT_HOME for i in IN_MEASURE}
    den, num = at_home_daily(c, c["older"], 200.0, 200)
    assert den[10] == 10 and num[10] == 4      # discharged on day 10 (and 10.5): 0-5, 11, 13, 15, 17
    assert den[100] == 1 and num[100] == 1     # stay 16
    assert den.sum() == len(IN_MEASURE) and num.sum() == len(AT_HOME)


def test_65plus_admissions_and_the_measure_on_a_run() -> None:
    """In a run, admissions_65plus counts the arrivals of cohorts whose age band is 65+ (care-home residents too),
    and the ASCOF 2B(1) columns leave care-home residents out (they return to their home, a care home)."""
    sc = load_scenario(SMALL, ["cohorts.adults.age_band=18-64", "simulation.duration_days=150"])
    res = simulate(sc, replications=1, seed=7)
    pts, daily = res.patients(), res.daily()
    arrivals = pts[(pts["kind"] == "non_elective") & (pts["arrival"] >= 0) & (pts["arrival"] < 150)]
    frail = arrivals[arrivals["cohort"] == "frail"]
    expected = np.bincount(np.floor(frail["arrival"]).astype(int), minlength=150)
    assert len(frail) > 50 and len(frail) < len(arrivals)
    np.testing.assert_array_equal(daily["admissions_65plus"].to_numpy(), expected)
    # the only 65+ cohort lives in care homes: nobody is in the 91-day measure
    assert daily["rehab_65plus_discharges"].sum() == 0


def test_measure_counts_65plus_rehab_discharges_on_a_run() -> None:
    sc = load_scenario(SMALL, ["simulation.duration_days=150"])
    res = simulate(sc, replications=1, seed=7)
    pts, daily = res.patients(), res.daily()
    left = pts[(pts["cohort"] == "adults") & pts["pathway"].isin(["P1", "P2"]) & (pts["kind"] == "non_elective")
               & (pts["acute_end"] >= 0) & (pts["acute_end"] + 91 <= 150) & (pts["acute_exit"] == "")]
    assert len(left) > 5
    expected = np.bincount(np.floor(left["acute_end"]).astype(int), minlength=150)
    np.testing.assert_array_equal(daily["rehab_65plus_discharges"].to_numpy(), expected)
    assert (daily["rehab_65plus_at_home_91"] <= daily["rehab_65plus_discharges"]).all()
    assert daily.loc[daily["day"] > 150 - 91, "rehab_65plus_discharges"].sum() == 0

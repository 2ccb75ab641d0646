"""Issue 12: the journey mechanisms planners expect, each on a tiny scenario with an answer from theory or by hand.

- step-up referrals into a service fed by nothing else: an M/M/c queue with exponential patience is
  Erlang-A (M/M/c+M); its abandonment share and mean number waiting come from the birth-death chain;
- priority between step-up and step-down: an ordering rule checked on every grant;
- deaths in hospital and same-day stays: M/G/inf occupancy is lambda x E[stay] (the mixture by hand),
  and the shares are binomial;
- readmissions timed from acute discharge: with a fixed 20-day stay and a uniform 30-day window,
  2/3 of readmissions come from inside the stay, each freeing the place at the readmission instant;
- community discharge hours and weekends: every departure falls inside the rule;
- bank holidays: the England calendar and a day with nobody discharged;
- growth by cohort: the year-on-year ratio of a cohort's arrivals is its growth factor exactly (in
  expectation), while another cohort's arrivals do not move at all (common random numbers);
- home care in hours: fixed 10-hour packages in 20 hours a week behave exactly as 2 packages.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from queueing import t_interval

from flowsim import simulate
from flowsim.errors import ScenarioError
from flowsim.model.calendar import bank_holidays
from flowsim.model.model import Model
from flowsim.results.kpi import analyse
from flowsim.rng import Streams
from flowsim.scenario import validate_dict
from flowsim.scenario.schema import CalendarRules

LEVEL_Z = 2.576  # 99% normal quantile for binomial and Poisson checks


def _in_ci(x: Any, theory: float, what: str, max_rel_half: float) -> None:
    m, lo, hi = t_interval(x)
    assert lo <= theory <= hi, f"{what}: theory {theory:.5g} outside 99% CI [{lo:.5g}, {hi:.5g}] (mean {m:.5g})"
    assert (hi - lo) / 2 <= max_rel_half * theory, f"{what}: CI too wide to test anything"


# --------------------------------------------------------------------------- step-up: Erlang-A
def erlang_a(c: int, lam: float, mu: float, theta: float, n_max: int = 400) -> tuple[float, float]:
    """M/M/c+M: (probability a referral abandons, mean number waiting), from the birth-death chain.

    Birth rate lam; death rate min(n, c) mu + max(n - c, 0) theta.  Abandonment rate is theta E[Q],
    so P(abandon) = theta E[Q] / lam (rate conservation).
    """
    logp = [0.0]
    for n in range(1, n_max + 1):
        logp.append(logp[-1] + math.log(lam) - math.log(min(n, c) * mu + max(n - c, 0) * theta))
    p = np.exp(np.array(logp) - max(logp))
    p /= p.sum()
    q = float(sum(max(n - c, 0) * p[n] for n in range(n_max + 1)))
    return theta * q / lam, q


SU_C, SU_LAM, SU_MU, SU_THETA = 4, 3.5, 1.0, 2.0
SU_DAYS, SU_REPS = 800, 20


def _step_up_only(builder: Any, **step: Any) -> dict[str, Any]:
    """One P1 service fed only by step-up referrals (hospital patients all go home on P0)."""
    return builder(
        rate=0.5, beds="unlimited", duration_days=SU_DAYS, warmup_days=20,
        pathway_mix={"P0": 1.0},
        pathways={"P0": {}, "P1": {"services": {"rapid": {
            "capacity": SU_C, "los": {"dist": "exponential", "mean": 1.0 / SU_MU}}}}},
        step_up=[{"name": "gp", "target": "P1", "cohort": "everyone", "rate_per_day": SU_LAM, **step}])


@pytest.fixture(scope="module")
def erlang_a_run(scenario_builder):
    sc = validate_dict(_step_up_only(scenario_builder, patience={"dist": "exponential", "mean": 1.0 / SU_THETA}))
    res = simulate(sc, replications=SU_REPS, seed=120, workers=2)
    assert res.checks == []
    return res


def test_step_up_abandonment_matches_erlang_a(erlang_a_run) -> None:
    p_ab, q = erlang_a(SU_C, SU_LAM, SU_MU, SU_THETA)
    k = erlang_a_run.kpi_frame()
    _in_ci(k["step_up_not_placed_pct"] / 100.0, p_ab, "Erlang-A P(abandon)", 0.08)
    _in_ci(k["step_up_waiting_mean"], q, "Erlang-A mean number waiting at home", 0.10)
    # power: one place more or less is clearly rejected
    _, lo, hi = t_interval(k["step_up_not_placed_pct"] / 100.0)
    for c in (SU_C - 1, SU_C + 1):
        assert not lo <= erlang_a(c, SU_LAM, SU_MU, SU_THETA)[0] <= hi
    # refused, not admitted: nobody was sent to hospital, and nobody waiting at home is a delay
    assert (k["step_up_admitted"] == 0).all() and (k["step_up_refused"] > 0).all()
    assert (k["delayed_patients_per_day"] == 0).all()


def test_step_up_referrals_are_poisson_and_occupy_the_service(erlang_a_run) -> None:
    k = erlang_a_run.kpi_frame()
    _in_ci(k["step_up_referrals"], SU_LAM * SU_DAYS, "referrals in the window", 0.02)
    # carried load: occupied places = (1 - P(abandon)) lambda / mu (Little's law on the service)
    p_ab, _ = erlang_a(SU_C, SU_LAM, SU_MU, SU_THETA)
    _in_ci(k["service_rapid_occupied_mean"], (1 - p_ab) * SU_LAM / SU_MU, "carried load", 0.03)


def test_step_up_admitted_when_patience_runs_out(scenario_builder) -> None:
    """With 'admitted', each referral that gives up is a non-elective arrival at that instant, linked to it."""
    sc = validate_dict(_step_up_only(scenario_builder, patience={"dist": "fixed", "value": 0.1},
                                     when_not_placed="admitted") | {
        "simulation": {"start_date": "2024-01-01", "duration_days": 120, "warmup_days": 0}})
    pts = simulate(sc, replications=1, seed=3).patients()
    gave_up = pts[pts["cancelled"] == "admitted"]
    assert len(gave_up) > 20
    assert np.allclose(gave_up["gave_up"] - gave_up["arrival"], 0.1)
    admitted = pts[pts["diverted_from"] >= 0].set_index("diverted_from")
    assert sorted(admitted.index) == sorted(gave_up["stay_id"])
    assert np.allclose(admitted.loc[gave_up["stay_id"], "arrival"].to_numpy(), gave_up["gave_up"].to_numpy())
    assert (admitted["kind"] == "non_elective").all() and admitted["bed_start"].notna().all()


@pytest.mark.parametrize("priority", ["after_step_down", "before_step_down"])
def test_step_up_priority_against_step_down(scenario_builder, priority: str) -> None:
    """No step-up grant while a step-down patient waits (after_step_down), and the converse."""
    sc = validate_dict(scenario_builder(
        rate=3.0, beds="unlimited", duration_days=200, warmup_days=10, pathway_mix={"P0": 0.5, "P2": 0.5},
        pathways={"P0": {}, "P2": {"services": {"beds": {"capacity": 3, "los": {"dist": "exponential", "mean": 1.5}}}}},
        step_up=[{"name": "gp", "target": "beds", "cohort": "everyone", "rate_per_day": 1.2, "priority": priority}]))
    res = simulate(sc, replications=1, seed=5)
    assert res.checks == []
    pts = res.patients()
    up, down = pts[pts["kind"] == "step_up"], pts[(pts["kind"] == "non_elective") & (pts["pathway"] == "P2")]
    waits_up = (up["slot_granted"] - up["arrival"]).dropna()
    waits_down = (down["slot_granted"] - down["wait_start"]).dropna()
    assert (waits_up > 1e-9).sum() > 10 and (waits_down > 1e-9).sum() > 10  # both queues were used
    first, second = (down, up) if priority == "after_step_down" else (up, down)
    first_start = first["wait_start"] if first is down else first["arrival"]
    for t in second["slot_granted"].dropna():
        waiting = ((first_start < t - 1e-9) & ~(first["slot_granted"] <= t + 1e-9)).sum()
        assert waiting == 0, f"a lower-priority grant at {t} while {waiting} higher-priority patients waited"


def test_step_up_validation_names_the_field(scenario_builder) -> None:
    bad = _step_up_only(scenario_builder)
    bad["step_up"][0]["target"] = "nowhere"
    with pytest.raises(ScenarioError, match=r"step_up\.0\.target: 'nowhere' is neither a defined P1-P3 pathway"):
        validate_dict(bad)


# --------------------------------------------------------------------------- deaths in hospital and same-day stays
EX_LAM, EX_DAYS = 20.0, 300
EX_DIED, EX_SAME = 0.1, 0.3


@pytest.fixture(scope="module")
def exits_run(scenario_builder):
    sc = validate_dict(scenario_builder(
        rate=EX_LAM, beds="unlimited", duration_days=EX_DAYS, warmup_days=30,
        acute_los={"dist": "fixed", "value": 2.0}, pathway_mix={"P0": 1.0}))
    data = sc.model_dump(mode="json")
    data["cohorts"]["everyone"]["died_in_hospital"] = {"probability": EX_DIED, "los": {"dist": "fixed", "value": 5.0}}
    data["cohorts"]["everyone"]["same_day"] = {"probability": EX_SAME, "los": {"dist": "fixed", "value": 0.25}}
    res = simulate(validate_dict(data), replications=20, seed=11, workers=2)
    assert res.checks == []
    return res


def test_exits_have_their_own_stays_and_shares(exits_run) -> None:
    pts = exits_run.patients()
    adm = pts[(pts["arrival"] >= 0) & (pts["acute_end"] < EX_DAYS) & (pts["kind"] == "non_elective")]
    died, same = adm[adm["acute_exit"] == "died"], adm[adm["acute_exit"] == "same_day"]
    assert np.allclose(died["acute_end"] - died["bed_start"], 5.0)
    assert np.allclose(same["acute_end"] - same["bed_start"], 0.25)
    assert died["mffd"].isna().all() and died["pathway"].isna().all() and (died["outcome"] == "death").all()
    assert (same["pathway"] == "P0").all() and (same["mffd"] == same["acute_end"]).all()
    n = len(adm)
    for got, p in ((len(died), EX_DIED), (len(same), EX_SAME)):
        assert abs(got / n - p) <= LEVEL_Z * math.sqrt(p * (1 - p) / n)
    k = exits_run.kpi_frame()
    assert (k["deaths_in_hospital"] > 0).all() and (k["same_day_discharges"] > 0).all()


def test_exits_change_occupancy_as_mg_infinity_says(exits_run) -> None:
    """Unlimited beds: mean occupied = lambda x E[stay], E[stay] = 0.1 x 5 + 0.3 x 0.25 + 0.6 x 2 = 1.775."""
    mean_stay = EX_DIED * 5.0 + EX_SAME * 0.25 + (1 - EX_DIED - EX_SAME) * 2.0
    _in_ci(exits_run.kpi_frame()["acute_occupied_mean"], EX_LAM * mean_stay, "M/G/inf occupancy", 0.02)


def test_deaths_are_not_discharges_in_the_drd_measures(exits_run) -> None:
    """The DRD discharges are the stays that left in the window after one night or more, deaths excepted."""
    pts = exits_run.patients()
    left = pts[(pts["acute_end"] >= 0) & (pts["acute_end"] < EX_DAYS)
               & (np.floor(pts["acute_end"]) > np.floor(pts["bed_start"]))]
    died = int((left["acute_exit"] == "died").sum())
    assert died > 100  # so counting them would show
    assert exits_run.kpi_frame()["drd_discharges"].sum() == len(left) - died


# --------------------------------------------------------------------------- readmissions timed from acute discharge
def test_readmission_from_inside_an_intermediate_care_stay(scenario_builder) -> None:
    """Stay 20 days, readmission uniform within 30 days of acute discharge: 2/3 come back from the stay."""
    sc = validate_dict(scenario_builder(
        rate=4.0, beds="unlimited", duration_days=400, warmup_days=0, pathway_mix={"P2": 1.0},
        pathways={"P2": {"services": {"ic": {"capacity": "unlimited", "los": {"dist": "fixed", "value": 20.0}}},
                         "readmission": {"probability": 0.5, "within_days": 30, "timed_from": "acute_discharge"}}}))
    res = simulate(sc, replications=1, seed=8)
    assert res.checks == []
    pts = res.patients().set_index("stay_id")
    re = pts[pts["readmission_of"] >= 0]
    prev = pts.loc[re["readmission_of"]]
    gap = re["arrival"].to_numpy() - prev["acute_end"].to_numpy()
    assert (gap >= 0).all() and (gap <= 30 + 1e-9).all()
    from_stay = prev["outcome"].to_numpy() == "readmitted"
    # a readmission from inside the stay frees the place at that instant; the others follow the 20-day stay
    assert np.allclose(prev["ds_end"].to_numpy()[from_stay], re["arrival"].to_numpy()[from_stay])
    assert (gap[from_stay] < 20 + 1e-9).all() and (gap[~from_stay] >= 20 - 1e-9).all()
    n, p = len(re), 20 / 30
    assert n > 300 and abs(from_stay.mean() - p) <= LEVEL_Z * math.sqrt(p * (1 - p) / n)


# ------------------------------------------------------------- community discharge rules and bank holidays
def test_community_discharges_follow_hours_and_weekends(scenario_builder) -> None:
    sc = validate_dict(scenario_builder(
        rate=5.0, beds="unlimited", duration_days=120, warmup_days=0, pathway_mix={"P2": 1.0},
        pathways={"P2": {"services": {"ic": {
            "capacity": "unlimited", "los": {"dist": "exponential", "mean": 3.0},
            "outcomes": {"home": 0.9, "death": 0.1},
            "discharge": {"hours": {"start": 10, "end": 16}, "weekend_rate": 0.0}}}}}))
    res = simulate(sc, replications=1, seed=4)
    assert res.checks == []
    pts = res.patients()
    done = pts[pts["ds_end"].notna()]
    home, died = done[done["outcome"] == "home"], done[done["outcome"] == "death"]
    hour = (home["ds_end"] % 1.0) * 24
    weekday = (pd.Timestamp("2024-01-01") + pd.to_timedelta(np.floor(home["ds_end"]), unit="D")).dt.day_of_week
    assert ((hour >= 10 - 1e-6) & (hour < 16 + 1e-6)).all() and (weekday < 5).all()
    assert (home["ds_end"] >= home["stay_end"]).all() and (home["ds_end"] > home["stay_end"] + 1e-9).any()
    assert np.allclose(died["ds_end"], died["stay_end"])  # deaths are not held
    hour_died = (died["ds_end"] % 1.0) * 24
    assert ((hour_died < 10) | (hour_died >= 16)).any()


def test_england_bank_holidays_from_the_holidays_package() -> None:
    import datetime as dt
    start = dt.date(2016, 4, 1)
    days = bank_holidays(CalendarRules(bank_holidays="england"), start, 0.0, 365.0)
    dates = {start + dt.timedelta(days=d) for d in days}
    # 2016/17: Christmas Day on a Sunday gives Tuesday 27 December; Good Friday 14 April 2017
    for d in ("2016-05-02", "2016-05-30", "2016-08-29", "2016-12-26", "2016-12-27", "2017-01-02", "2017-04-14"):
        assert dt.date.fromisoformat(d) in dates
    assert dt.date(2016, 12, 25) not in dates  # a Sunday is already off
    assert bank_holidays(CalendarRules(), start, 0.0, 365.0) == frozenset()


def test_bank_holidays_are_weekend_days_for_discharges_and_electives(scenario_builder) -> None:
    base = scenario_builder(rate=30.0, beds="unlimited", duration_days=21, warmup_days=0, start_date="2016-12-19",
                            discharge={"hours": {"start": 8, "end": 20}, "weekend_rate": 0.0},
                            electives={"rate_per_weekday": 5.0, "los": {"dist": "fixed", "value": 0.5}})
    weekends = {5, 6, 12, 13, 19, 20}  # model days from Monday 19 December 2016
    holidays = {7, 8, 14}  # Boxing Day, Tuesday 27 December (for Christmas Day on a Sunday), Monday 2 January
    for calendar, closed in ((None, weekends), ("england", weekends | holidays)):
        data = dict(base)
        if calendar:
            data["calendar"] = {"bank_holidays": calendar}
        res = simulate(validate_dict(data), replications=1, seed=1)
        pts = res.patients()
        daily = res.daily()
        # the figures shade the days flagged in the daily table, which has the flag only when a calendar is asked for
        assert ("bank_holiday" in daily) == bool(calendar)
        if calendar:
            assert set(daily.loc[daily["bank_holiday"] > 0, "day"]) == holidays
        left_days = set(np.floor(pts["acute_end"].dropna()).astype(int))
        elective_days = set(np.floor(pts.loc[pts["kind"] == "elective", "arrival"]).astype(int))
        shut = {d for d in range(21) if d not in left_days}
        assert shut == closed, (calendar, sorted(shut))
        assert not elective_days & closed


# --------------------------------------------------------------------------- growth and seasonality by cohort
def _two_cohorts(builder: Any, growth: float) -> Any:
    data = builder(rate=40.0, beds="unlimited", duration_days=730, warmup_days=0)
    one = data["cohorts"].pop("everyone")
    data["cohorts"] = {"young": {**one, "share": 0.6, "age_band": "18-64"},
                       "old": {**one, "share": 0.4, "age_band": "85+", "annual_growth": growth}}
    return validate_dict(data)


def test_cohort_growth_moves_only_its_own_arrivals() -> None:
    from conftest import base_scenario_dict
    runs = {}
    for g in (0.5, 0.0):
        m = Model(_two_cohorts(base_scenario_dict, g), Streams(7, 0))
        runs[g] = (m.arrivals, np.array(m.arrival_cohort))
    t5, c5 = runs[0.5]
    t0, c0 = runs[0.0]
    # the young cohort's arrivals are the same instants in both options (common random numbers)
    assert np.array_equal(t5[c5 == 0], t0[c0 == 0])
    old = t5[c5 == 1]
    y1, y2 = np.sum(old < 365.25), np.sum((old >= 365.25) & (old < 730.5))
    # E[y2] / E[y1] = 1.5 exactly; E[y1] = 16 x 365.25 x 0.5 / ln 1.5
    e1 = 16 * 365.25 * 0.5 / math.log(1.5)
    assert abs(y1 - e1) <= LEVEL_Z * math.sqrt(e1)
    assert abs(y2 - 1.5 * e1) <= LEVEL_Z * math.sqrt(1.5 * e1)
    young = t0[c0 == 0]
    assert abs(np.sum(young < 730.5) - 24 * 730.5) <= LEVEL_Z * math.sqrt(24 * 730.5)


def test_cohort_volume_seasonality_is_normalised(scenario_builder) -> None:
    data = scenario_builder(rate=50.0, beds="unlimited", duration_days=366, warmup_days=0)
    data["cohorts"]["everyone"]["volume_month_factors"] = {"jan": 3.0}
    m = Model(validate_dict(data), Streams(2, 0))
    jan = np.sum(m.arrivals < 31)
    # factors normalised to mean 1: January 3 / (14/12), other months 1 / (14/12)
    e_jan = 50 * 31 * 3 * 12 / 14
    assert abs(jan - e_jan) <= LEVEL_Z * math.sqrt(e_jan)
    e_rest = 50 * (366 - 31) * 12 / 14
    assert abs(len(m.arrivals) - jan - e_rest) <= LEVEL_Z * math.sqrt(e_rest)
    assert not abs(jan - 50 * 31) <= LEVEL_Z * math.sqrt(50 * 31)  # power: a flat January is rejected


def test_cohort_share_and_volume_seasons_cannot_be_mixed(scenario_builder) -> None:
    data = scenario_builder()
    data["cohorts"]["everyone"]["month_factors"] = {"jan": 2.0}
    data["cohorts"]["everyone"]["annual_growth"] = 0.1
    with pytest.raises(ScenarioError, match="cannot be combined"):
        validate_dict(data)


# --------------------------------------------------------------------------- home care in hours a week
def _home_care(builder: Any, home_care: dict[str, Any]) -> Any:
    return validate_dict(builder(
        rate=3.0, beds="unlimited", duration_days=150, warmup_days=10, pathway_mix={"P2": 1.0},
        pathways={"P2": {"services": {"ic": {"capacity": 12, "los": {"dist": "exponential", "mean": 3.0},
                                             "outcomes": {"home": 0.5, "home_with_care": 0.5}}}}},
        home_care={"stay": {"dist": "exponential", "mean": 3.0}, **home_care}))


def test_home_care_in_hours_with_fixed_packages_equals_packages(scenario_builder) -> None:
    """20 hours a week of 10-hour packages is 2 packages: the same journeys, stamp for stamp."""
    a = _home_care(scenario_builder, {"capacity": 2})
    b = _home_care(scenario_builder, {"capacity": 20, "unit": "hours_per_week",
                                      "hours_per_package": {"dist": "fixed", "value": 10.0}})
    ra, rb = (analyse(Model(s, Streams(9, 0)).run(), s, 0, 9, "x") for s in (a, b))
    pa, pb = ra.patients, rb.patients
    assert pa is not None and pb is not None
    cols = ["arrival", "slot_granted", "stay_end", "onward_granted", "ds_end"]
    pd.testing.assert_frame_equal(pa[cols], pb[cols])
    waits = (pa["onward_granted"] - pa["stay_end"]).dropna()
    assert (waits > 1e-9).sum() > 10  # the hand-over queue was used: reablement and beds silt up
    assert ra.kpis["delayed_per_day_home_care"] > 0  # waiting in an NHS community bed is a reason-E delay


def test_home_care_hours_never_overcommitted(scenario_builder) -> None:
    """Packages of 4-16 hours in 30 hours a week: never more than 7 at once (7 x 4 < 30 < 8 x 4) and, with
    community demand and a starting caseload, the queue is used."""
    s = _home_care(scenario_builder, {"capacity": 30, "unit": "hours_per_week", "initial_clients": 3,
                                      "community_starts_per_day": 0.5,
                                      "hours_per_package": {"dist": "uniform", "low": 4.0, "high": 16.0}})
    m = Model(s, Streams(4, 0))
    pool = m.home_care.pool
    assert pool is not None
    peaks = []

    def watch():
        while True:
            peaks.append((pool.hours, pool.busy))
            yield m.env.timeout(0.05)

    m.env.process(watch())
    raw = m.run()
    assert max(h for h, _ in peaks) <= 30 + 1e-9 and max(b for _, b in peaks) <= 7
    assert max(h for h, _ in peaks) > 20
    assert any(not math.isnan(p.onward_granted) and p.onward_granted > p.stay_end + 1e-9 for p in raw.patients)


# ------------------------------------------------- bank holidays over Christmas 2016, by hand
# Model day 0 is Monday 19 December 2016.  Friday 23 (day 4), Saturday 24 and Sunday 25 (days 5-6),
# Boxing Day Monday 26 (day 7), Tuesday 27 (day 8, the substitute for Christmas Day on a Sunday),
# Wednesday 28 (day 9), the first working day after Christmas; Monday 2 January 2017 (day 14) is the
# substitute for New Year's Day on a Sunday.
XMAS_START = "2016-12-19"


def _first_open(t: float, closed: set[int], h0: float, h1: float) -> float:
    """The first instant >= t within [h0, h1) hours of a day not in ``closed`` (the rule written out by hand)."""
    day = math.floor(t)
    while day in closed or t >= day + h1 / 24.0:
        day += 1
    return max(t, day + h0 / 24.0)


@pytest.mark.parametrize("calendar", [None, "england"])
def test_community_discharges_wait_for_the_first_working_day_after_christmas(scenario_builder, calendar) -> None:
    """An intermediate-care stay that ends after 16:00 on Friday 23 December leaves at 10:00 on Wednesday 28
    with the England calendar (Boxing Day and Tuesday 27 are holidays), on Monday 26 without it."""
    data = scenario_builder(
        rate=6.0, beds="unlimited", duration_days=16, warmup_days=0, start_date=XMAS_START, pathway_mix={"P2": 1.0},
        pathways={"P2": {"services": {"ic": {
            "capacity": "unlimited", "los": {"dist": "exponential", "mean": 2.0}, "outcomes": {"home": 1.0},
            "discharge": {"hours": {"start": 10, "end": 16}, "weekend_rate": 0.0}}}}})
    if calendar:
        data["calendar"] = {"bank_holidays": calendar}
    res = simulate(validate_dict(data), replications=1, seed=12)
    assert res.checks == []
    done = res.patients().dropna(subset=["ds_end"])
    closed = {5, 6, 12, 13} | ({7, 8, 14} if calendar else set())
    want = np.array([_first_open(t, closed, 10, 16) for t in done["stay_end"]])
    assert np.allclose(done["ds_end"].to_numpy(), want, rtol=0, atol=1e-9)
    # power: stays ending over the long weekend exist and all leave on the first working day, at opening time
    xmas = done[(done["stay_end"] >= 4 + 16 / 24) & (done["stay_end"] < 7 + 10 / 24)]
    assert len(xmas) >= 5
    first_working = 9 if calendar else 7
    assert np.allclose(xmas["ds_end"], first_working + 10 / 24)
    assert not np.isin(np.floor(done["ds_end"]), list(closed)).any()


@pytest.mark.parametrize("extended", [False, True])
def test_escalation_weekend_discharges_cover_bank_holidays(scenario_builder, extended) -> None:
    """Acute discharges 08:00-20:00 on working days only; an escalation action that discharges at weekends
    (weekend_rate 1, always in force) opens Boxing Day and Tuesday 27 as it opens Saturdays and Sundays."""
    data = scenario_builder(
        rate=20.0, beds="unlimited", duration_days=16, warmup_days=0, start_date=XMAS_START,
        acute_los={"dist": "exponential", "mean": 1.5}, calendar={"bank_holidays": "england"},
        discharge={"hours": {"start": 8, "end": 20}, "weekend_rate": 0.0})
    if extended:
        # unlimited beds read as infinitely occupied once anyone is in: the action is on from the first hours
        data["escalation"] = {"evaluate_at_hours": [0.0, 6.0, 12.0, 18.0], "actions": [{
            "kind": "extend_discharge", "weekend_rate": 1.0,
            "when": {"any": [{"metric": "acute_occupancy_pct", "above": 0}]}}]}
    res = simulate(validate_dict(data), replications=1, seed=13)
    assert res.checks == []
    pts = res.patients().dropna(subset=["acute_end"])
    if extended:
        log = res.escalation()
        acts = log[log["record"] == "action"]
        assert acts["event"].tolist() == ["started"] and float(acts["time"].iloc[0]) < 1.0
    pts = pts[pts["rft"] >= 1.0]  # ready once the action is in force
    closed = set() if extended else {5, 6, 7, 8, 12, 13, 14}
    want = np.array([_first_open(t, closed, 8, 20) for t in pts["rft"]])
    assert np.allclose(pts["acute_end"].to_numpy(), want, rtol=0, atol=1e-9)
    left_on_holidays = np.isin(np.floor(pts["acute_end"]), [7, 8, 14]).sum()
    assert (left_on_holidays > 20) if extended else left_on_holidays == 0

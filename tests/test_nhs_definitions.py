"""Delays counted the way the NHS counts them: every counting rule on a tiny scenario with a hand-computed answer.

Each scenario is deterministic: no arrivals (a rate of 1e-9 a day), patients placed by a start-from-today
snapshot, fixed stays and times, so each expected number is worked out by hand in the test's comment.
Model day 0 is Friday 5 January 2024 00:00, so day 1 is a Saturday, day 3 a Monday.  A midnight census
counts patients just before each midnight t = 1, 2, ... that ends a reporting day.

These tests were run against the code before this change (issue 11): every one fails there, either on its
number (P1 clients at home counted as delayed bed-days; granted-but-not-moved counted nowhere; occupancy
against beds opened by escalation) or because the rule did not exist (the field or measure is unknown).
"""

from __future__ import annotations

import copy
import math
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pytest

from flowsim import simulate
from flowsim.experiment.runner import RunResult
from flowsim.scenario import validate_dict
from flowsim.scenario.schema import Scenario

FRIDAY = "2024-01-05"
FIXED = {"dist": "fixed"}


def fixed(value: float) -> dict[str, Any]:
    return {**FIXED, "value": value}


def tiny(days: int = 7, **top: Any) -> dict[str, Any]:
    """No arrivals, one P2 cohort, 50 acute beds; tests add pathways, services and a snapshot."""
    data: dict[str, Any] = {
        "name": "tiny",
        "simulation": {"start_date": FRIDAY, "duration_days": days, "warmup_days": 0},
        "population_18plus": 100_000,
        "arrivals": {"rate_per_day": 1e-9},
        "cohorts": {"c": {"share": 1.0, "acute_los": fixed(1.0), "pathway_mix": {"P2": 1.0}}},
        "acute": {"beds": 50},
        "pathways": {"P0": {}, "P2": {"services": {"ic": {"capacity": 5, "los": fixed(30.0)}}}},
    }
    data.update(copy.deepcopy(top))
    return data


def run(data: dict[str, Any], seed: int = 1) -> tuple[Scenario, RunResult, dict[str, float], pd.DataFrame]:
    sc = validate_dict(data)
    res = simulate(sc, replications=1, seed=seed)
    assert res.checks == []
    return sc, res, res.replications[0].kpis, res.daily()


def snapshot(*rows: dict[str, Any]) -> dict[str, Any]:
    return {"patients": list(rows)}


# --------------------------------------------------------------------------- nobody outside a bed is a delayed bed-day
def test_p1_client_at_home_waiting_for_a_care_home_is_no_delayed_bed_day() -> None:
    """Three reablement clients at home end their 2-day package wanting a care home that takes 5 days to arrange.

    They wait at home, keeping their P1 place, from t = 2 to 7: 5 days each, 15 in all, at midnights 3-7.
    That is nobody's bed: 0 delayed days, 0 delayed bed-days, and the 15 days are reported as waits at home.
    (Before: 15 delayed days, counted as care-home delays in a bed.)
    """
    data = tiny(days=10, cohorts={"c": {"share": 1.0, "acute_los": fixed(1.0), "pathway_mix": {"P1": 1.0}}},
                pathways={"P0": {}, "P1": {"services": {"reablement": {
                    "capacity": 10, "los": fixed(2.0), "outcomes": {"home": 0.0, "long_term_care": 1.0}}}}},
                long_term_care={"placement_time": fixed(5.0)},
                initial_state=snapshot(*[{"node": "reablement", "days": 0.0}] * 3))
    _, res, k, daily = run(data)
    assert daily["delayed_midnight"].sum() == 0
    assert k["delayed_bed_days"] == 0 and k["delayed_per_day_care_home"] == 0
    assert k["waiting_at_home_days"] == pytest.approx(15.0)
    p = res.patients()
    assert (p["onward_granted"] == 7.0).all() and (~p["onward_in_bed"]).all() and (~p["onward_reports"]).all()


# --------------------------------------------------------------------------- granted but not moved
def test_place_granted_but_not_taken_is_a_delay_under_the_pathways_reason() -> None:
    """A P2 patient ready at t = 0 (Friday 00:00) is granted a free place at once, but transfer takes 18 hours
    (ready to go Friday 18:00), discharges happen 08:00-17:00 and never at weekends for P2: they leave Monday
    08:00, t = 3 1/3.  They hold the acute bed and the place meanwhile: delayed at midnights 1, 2 and 3 (3
    delayed days in 7), 3 1/3 delayed bed-days, reason "further non-acute NHS care", attributed to the
    service's funder (NHS by default).  (Before: 0; the delay stopped at the grant.)
    """
    data = tiny(pathways={"P0": {}, "P2": {"transfer_time": fixed(0.75),
                                           "services": {"ic": {"capacity": 5, "los": fixed(30.0)}}}},
                discharge={"hours": {"start": 8, "end": 17}, "weekend_rate": {"P2": 0.0}},
                initial_state=snapshot({"node": "P2", "days": 0.0}))
    _, res, k, daily = run(data)
    p = res.patients().iloc[0]
    assert p["slot_granted"] == 0.0 and p["acute_end"] == pytest.approx(3 + 8 / 24)
    assert daily["delayed_midnight"].tolist() == [1, 1, 1, 0, 0, 0, 0]
    assert daily["delayed_acute_midnight"].tolist() == [1, 1, 1, 0, 0, 0, 0]
    assert k["delayed_bed_days"] == pytest.approx(3 + 8 / 24)
    assert k["delayed_per_day_non_acute_nhs"] == pytest.approx(3 / 7)
    assert k["delayed_per_day_nhs"] == pytest.approx(3 / 7)
    assert k["delayed_per_day_P2"] == pytest.approx(3 / 7)
    assert k["dtoc_pct"] == pytest.approx(100.0)  # the only occupied acute bed-days are delayed ones


# --------------------------------------------------------------------------- reporting community beds
def reporting_data(**independent: Any) -> dict[str, Any]:
    """P3 beds at an NHS unit and at an independent nursing home, two patients in each, each ending their
    1-day stay wanting a care home that takes 3 days to arrange: waits [1, 4), midnights 2, 3 and 4."""
    outcomes = {"home": 0.0, "long_term_care": 1.0}
    return tiny(cohorts={"c": {"share": 1.0, "acute_los": fixed(1.0), "pathway_mix": {"P3": 1.0}}},
                pathways={"P0": {}, "P3": {"services": {
                    "nhs_unit": {"capacity": 5, "los": fixed(1.0), "outcomes": outcomes, "provider": "nhs"},
                    "independent_home": {"capacity": 5, "los": fixed(1.0), "outcomes": outcomes,
                                         "provider": "independent", **independent}}}},
                long_term_care={"placement_time": fixed(3.0)},
                initial_state=snapshot(*[{"node": "nhs_unit", "days": 0.0}] * 2,
                                       *[{"node": "independent_home", "days": 0.0}] * 2))


def test_community_bed_delays_count_only_where_the_provider_reports() -> None:
    """NHS unit: 2 patients x 3 midnights = 6 delayed days (reason D, care home), in non-acute beds, so not in
    the acute trust's DTOC %.  Independent home: its 6 days are not in the SitRep (reported as unreported
    delay bed-days instead).  (Before: 12, every community bed counted.)"""
    _, _, k, daily = run(reporting_data())
    assert daily["delayed_midnight"].tolist() == [0, 2, 2, 2, 0, 0, 0]
    assert daily["delayed_nonacute_midnight"].tolist() == [0, 2, 2, 2, 0, 0, 0]
    assert daily["delayed_acute_midnight"].sum() == 0 and k["dtoc_pct"] == 0
    assert k["delayed_per_day_care_home"] == pytest.approx(6 / 7)
    assert k["delay_unreported_bed_days"] == pytest.approx(6.0)
    assert k["delayed_per_day_social_care"] == pytest.approx(6 / 7)  # long_term_care.responsible default


def test_a_service_flagged_as_reporting_counts() -> None:
    """The same scenario with the independent home flagged ``reports_dtoc: true``: 12 delayed days."""
    _, _, k, daily = run(reporting_data(reports_dtoc=True))
    assert daily["delayed_midnight"].tolist() == [0, 4, 4, 4, 0, 0, 0]
    assert k["delay_unreported_bed_days"] == 0


# --------------------------------------------------------------------------- waiting for home care
def test_community_bed_patients_can_wait_for_home_care() -> None:
    """Two intermediate-care patients end their 1-day stay at t = 1 going home with a care package; one package
    is available (capacity 1, lasting 5 days, starting at once).  The first starts at t = 1; the second waits in
    the bed until it ends at t = 6: delayed at midnights 2-6, 5 delayed days in 10, reason E (care package in
    own home), attributed to social care (home_care.responsible).  (Before: no such outcome.)"""
    data = tiny(days=10, pathways={"P0": {}, "P2": {"services": {"ic": {
        "capacity": 5, "los": fixed(1.0), "outcomes": {"home": 0.0, "home_with_care": 1.0}}}}},
        home_care={"capacity": 1, "stay": fixed(5.0), "start_time": fixed(0.0)},
        initial_state=snapshot(*[{"node": "ic", "days": 0.0}] * 2))
    _, res, k, daily = run(data)
    assert daily["delayed_home_care"].tolist() == [0, 1, 1, 1, 1, 1, 0, 0, 0, 0]
    assert k["delayed_per_day_home_care"] == pytest.approx(0.5)
    assert k["delayed_per_day_social_care"] == pytest.approx(0.5)
    assert k["home_care_starts"] == 2
    p = res.patients().sort_values("onward_granted")
    assert p["onward_granted"].tolist() == [1.0, 6.0]
    assert (p["outcome"] == "home_with_care").all() and (p["onward_reason"] == "home_care").all()


# --------------------------------------------------------------------------- responsible organisation
def test_responsible_organisation_by_funder_and_by_who_runs_the_assessment() -> None:
    """Two P2 patients granted places at t = 0, one at a council-funded unit (listed first, 1 place) and one at
    an NHS-funded unit, each leaving after a 1.5-day transfer: at midnight 1 one delay is social care's and one
    the NHS's.  A P1 patient waits for an assessment that takes 1.5 days, by a team the NHS runs: at midnight 1
    an NHS delay, reason A.  Over 3 days: social care 1/3, NHS 2/3, assessment 1/3.  (Before: every P2 delay
    was the pathway's one organisation.)"""
    team = {"staff": 3, "weekend_staff": 3, "hours": {"start": 0, "end": 24}, "weekend_hours": {"start": 0, "end": 24},
            "duration": fixed(1.5), "responsible": "nhs"}
    data = tiny(days=3, cohorts={"c": {"share": 1.0, "acute_los": fixed(1.0), "pathway_mix": {"P1": 0.5, "P2": 0.5}}},
                assessment=team,
                pathways={"P0": {},
                          "P1": {"needs_assessment": True, "services": {"reablement": {"capacity": "unlimited",
                                                                                       "los": fixed(30.0)}}},
                          "P2": {"transfer_time": fixed(1.5), "services": {
                              "council_unit": {"capacity": 1, "los": fixed(30.0), "funder": "social_care",
                                               "provider": "council"},
                              "nhs_unit": {"capacity": 1, "los": fixed(30.0), "funder": "nhs"}}}},
                initial_state=snapshot({"node": "P2", "days": 0.0}, {"node": "P2", "days": 0.0},
                                       {"node": "assessment", "pathway": "P1", "days": 0.0}))
    _, res, k, daily = run(data)
    assert daily["delayed_midnight"].tolist() == [3, 0, 0]
    assert k["delayed_per_day_social_care"] == pytest.approx(1 / 3)
    assert k["delayed_per_day_nhs"] == pytest.approx(2 / 3)
    assert k["delayed_per_day_both"] == 0
    assert k["delayed_per_day_assessment"] == pytest.approx(1 / 3)
    p = res.patients().set_index("service")
    assert p.loc["council_unit", "wait_org"] == "social_care" and p.loc["nhs_unit", "wait_org"] == "nhs"
    assert p.loc["reablement", "assess_org"] == "nhs"


def test_responsible_organisation_by_shares_drawn_per_patient() -> None:
    """600 patients wait in NHS community beds for care homes (each delayed at midnight 2) with delays attributed
    NHS 20% / social care 50% / both 30%, drawn once per patient.  Counts are multinomial: each is within 4.5
    standard deviations of 600 p (false alarm < 1e-5 per organisation); attributing all to social care (600
    against 300 +- 12.2) or ignoring the shares fails by more than 20 sd."""
    n, shares = 600, {"nhs": 0.2, "social_care": 0.5, "both": 0.3}
    data = tiny(days=3, pathways={"P0": {}, "P2": {"services": {"ic": {
        "capacity": n, "los": fixed(1.0), "outcomes": {"home": 0.0, "long_term_care": 1.0}}}}},
        long_term_care={"placement_time": fixed(1.5), "responsible": shares},
        initial_state=snapshot(*[{"node": "ic", "days": 0.0}] * n))
    _, res, _, daily = run(data, seed=3)
    assert daily["delayed_midnight"].tolist() == [0, n, 0]
    p = res.patients()
    for org, share in shares.items():
        count = int(daily[f"delayed_{org}"].iloc[1])
        assert count == int((p["onward_org"] == org).sum())
        assert abs(count - n * share) < 4.5 * math.sqrt(n * share * (1 - share)), (org, count)


# --------------------------------------------------------------------------- two clocks
CLOCKS = {"share": 1.0, "acute_los": fixed(0.5), "pathway_mix": {"P1": 1.0}}


def clocks_data(timing: str, gap: float, assess: float) -> dict[str, Any]:
    """A P1 patient clinically (and, without ward rounds, medically) fit at t = 0.5; an assessment team always open."""
    team = {"staff": 3, "weekend_staff": 3, "hours": {"start": 0, "end": 24}, "weekend_hours": {"start": 0, "end": 24},
            "duration": fixed(assess)}
    return tiny(days=4, cohorts={"c": CLOCKS}, assessment=team,
                pathways={"P0": {}, "P1": {"needs_assessment": True, "assessment_timing": timing,
                                           "ready_after_fit": fixed(gap),
                                           "services": {"reablement": {"capacity": "unlimited", "los": fixed(30.0)}}}},
                initial_state=snapshot({"node": "acute", "days": 0.0}))


class Clocks(NamedTuple):
    timing: str
    gap: float
    assess: float
    rft: float
    assess_at: float
    nctr: list[int]
    delayed: list[int]
    reason_a: float
    dtoc_days: float


@pytest.mark.parametrize("case", [
    # assessment after readiness: ready at 0.5 + 1.25 = 1.75, assessed [1.75, 2.25) (a DTOC, reason A), leaves 2.25;
    # medically fit at midnights 1 and 2, delayed (assessment) at midnight 2; 0.5 DTOC bed-days
    Clocks("after_ready", 1.25, 0.5, 1.75, 1.75, [1, 1, 0, 0], [0, 1, 0, 0], 0.25, 0.5),
    # assessment before readiness: assessed [0.5, 1.0) while not yet ready, ready at 1.75, leaves at once:
    # medically fit at midnight 1, no DTOC at all
    Clocks("before_ready", 1.25, 0.5, 1.75, 0.5, [1, 0, 0, 0], [0, 0, 0, 0], 0.0, 0.0),
    # before readiness, readiness waits for a long assessment: assessed [0.5, 2.5), ready 2.5: still no DTOC
    Clocks("before_ready", 0.25, 2.0, 2.5, 0.5, [1, 1, 0, 0], [0, 0, 0, 0], 0.0, 0.0),
    # the default (both clocks at the same instant, assessment after): delayed from medically fit, as before
    Clocks("after_ready", 0.0, 1.0, 0.5, 0.5, [1, 0, 0, 0], [1, 0, 0, 0], 0.25, 1.0),
], ids=lambda c: f"{c.timing}-gap{c.gap}-assess{c.assess}")
def test_two_clocks(case: Clocks) -> None:
    _, res, k, daily = run(clocks_data(case.timing, case.gap, case.assess))
    p = res.patients().iloc[0]
    assert p["mffd"] == 0.5 and p["rft"] == pytest.approx(case.rft)
    assert p["assess_start"] == pytest.approx(case.assess_at)
    assert daily["nctr_midnight"].tolist() == case.nctr
    assert daily["delayed_midnight"].tolist() == case.delayed
    assert k["delayed_per_day_assessment"] == pytest.approx(case.reason_a)
    assert k["delayed_bed_days"] == pytest.approx(case.dtoc_days)
    assert k["mffd_bed_days"] == pytest.approx(case.rft - 0.5)


# --------------------------------------------------------------------------- ward rounds
def test_fitness_is_declared_on_the_next_ward_round() -> None:
    """Rounds at 09:00 and 16:00 on weekdays, 11:00 at weekends, every fit patient picked up.  Clinically fit:
    Fri 12:00 -> declared Fri 16:00 (t = 2/3); Fri 18:00 -> Sat 11:00 (1 + 11/24); Mon 07:12 -> Mon 09:00 (3.375);
    Fri 09:00 exactly -> Fri 09:00 (a round at the moment of fitness sees the patient)."""
    cohorts = {f"c{i}": {"share": 0.25, "acute_los": fixed(los), "pathway_mix": {"P0": 1.0}}
               for i, los in enumerate((0.5, 0.75, 3.3, 0.375))}
    data = tiny(cohorts=cohorts, acute={"beds": 50, "ward_rounds": {"weekday_hours": [9, 16], "weekend_hours": [11]}},
                pathways={"P0": {}},
                initial_state=snapshot(*[{"node": "acute", "cohort": c, "days": 0.0} for c in cohorts]))
    _, res, _, _ = run(data)
    p = res.patients().sort_values("clinically_fit")
    assert p["clinically_fit"].tolist() == pytest.approx([0.375, 0.5, 0.75, 3.3])
    assert p["mffd"].tolist() == pytest.approx([0.375, 2 / 3, 1 + 11 / 24, 3.375])


def test_weekend_rounds_pick_up_a_share_of_fit_patients() -> None:
    """400 patients clinically fit Saturday 06:00, one weekend round a day at 10:00 picking up each with
    probability 0.4, weekday rounds at 09:00 picking up everyone: declared Saturday 10:00 with probability 0.4,
    Sunday 10:00 with 0.24, Monday 09:00 with 0.36.  Counts are multinomial (4.5 sd bounds); a model that
    ignored the weekend pickup (0.4 -> 1) would put all 400 on Saturday."""
    n = 400
    data = tiny(cohorts={"c": {"share": 1.0, "acute_los": fixed(1.25), "pathway_mix": {"P0": 1.0}}},
                acute={"beds": n, "ward_rounds": {"weekday_hours": [9], "weekend_hours": [10], "weekend_pickup": 0.4}},
                pathways={"P0": {}}, initial_state=snapshot(*[{"node": "acute", "days": 0.0}] * n))
    _, res, _, _ = run(data, seed=5)
    mffd = res.patients()["mffd"].to_numpy()
    assert set(np.round(mffd, 6)) <= {round(1 + 10 / 24, 6), round(2 + 10 / 24, 6), round(3 + 9 / 24, 6)}
    for t, prob in ((1 + 10 / 24, 0.4), (2 + 10 / 24, 0.24), (3 + 9 / 24, 0.36)):
        count = int(np.isclose(mffd, t).sum())
        assert abs(count - n * prob) < 4.5 * math.sqrt(n * prob * (1 - prob)), (t, count)


# --------------------------------------------------------------------------- today's national measures
def national_data() -> dict[str, Any]:
    """P0 patients only, discharges 08:00-17:00 on weekdays.  In their acute stay on the snapshot (days already
    spent -> stay so far; fixed stays, so the rest is the stay minus that):
      A: 8 days in, stay 10    -> fit Sun 00:00 (t = 2), leaves Mon 08:00 (t = 3 1/3): DRD delay 1
      C: 20.5 days in, stay 22.5 -> fit t = 2, leaves t = 3 1/3: DRD delay 1
      D: 1 day in, stay 1.25   -> fit Fri 06:00, leaves Fri 08:00: DRD delay 0
      E: 3 days in, stay 3.8   -> fit Fri 19:12, leaves Mon 08:00: DRD delay 3
      B: 0 days in, stay 0.25  -> fit Fri 06:00, leaves Fri 08:00: a same-day stay, no DRD recorded
    """
    stays = {"a": 10.0, "c": 22.5, "d": 1.25, "e": 3.8, "b": 0.25}
    spent = {"a": 8.0, "c": 20.5, "d": 1.0, "e": 3.0, "b": 0.0}
    cohorts = {k: {"share": 0.2, "acute_los": fixed(v), "pathway_mix": {"P0": 1.0}} for k, v in stays.items()}
    return tiny(cohorts=cohorts,
                pathways={"P0": {}}, discharge={"hours": {"start": 8, "end": 17}, "weekend_rate": 0.0},
                initial_state=snapshot(*[{"node": "acute", "cohort": k, "days": d} for k, d in spent.items()]))


def test_nctr_drd_bands_and_stranded_by_hand() -> None:
    """NCTR at midnights: t=1 E; t=2 E (A and C become fit exactly at midnight, after it); t=3 A, C, E: 5 in 7
    days.  DRD (stays of one night or more, 4): band 0 D, band 1 A and C, band 2-3 E; 5 delay days, average
    excluding 0-day delays 5/3.  Stranded (length of stay 7+ at midnight): A (9, 10, 11 days) and C at
    midnights 1-3 = 6; 14+: C only = 3; 21+: C (21.5 days at midnight 1) = 3.  P0 waits are NCTR and DRD delay
    but no DTOC: 0 delayed days."""
    _, _, k, daily = run(national_data())
    assert daily["nctr_midnight"].tolist() == [1, 1, 3, 0, 0, 0, 0]
    assert daily["nctr_P0"].tolist() == [1, 1, 3, 0, 0, 0, 0]
    assert k["nctr_per_day"] == pytest.approx(5 / 7)
    assert k["drd_discharges"] == 4
    assert [k[f"drd_discharges_{b}"] for b in ("0", "1", "2_3", "4_6", "7_13", "14_20", "21plus")] == [1, 2, 1, 0, 0,
                                                                                                       0, 0]
    assert k["drd_pct_1"] == pytest.approx(50.0) and k["drd_delay_days_2_3"] == 3
    assert k["drd_delay_days"] == 5 and k["drd_avg_delay_days"] == pytest.approx(5 / 3)
    assert daily["stranded_7"].tolist() == [2, 2, 2, 0, 0, 0, 0]
    assert daily["stranded_14"].tolist() == [1, 1, 1, 0, 0, 0, 0]
    assert daily["stranded_21"].tolist() == [1, 1, 1, 0, 0, 0, 0]
    assert k["delayed_patients_per_day"] == 0 and k["delayed_bed_days"] == 0


def test_period_tables_carry_the_new_measures() -> None:
    """The month table has the NCTR census, stranded patients and the DRD average; the band table the counts."""
    _, res, _, _ = run(national_data())
    month = res.periods("M").iloc[0]
    assert month["nctr_per_day"] == pytest.approx(5 / 7)
    assert month["drd_discharges"] == 4 and month["drd_avg_delay_days"] == pytest.approx(5 / 3)
    bands = res.drd_bands("M").set_index("band")
    assert bands.loc["1", "discharges"] == 2 and bands.loc["2-3", "delay_days"] == 3
    assert bands["pct_of_discharges"].sum() == pytest.approx(100.0)


# --------------------------------------------------------------------------- escalation as a command centre
def escalation_data(action: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """4 acute beds full with long stays, nobody else arriving; OPEL 3 above 95% occupancy, evaluated every 6
    hours and held at least 6 hours; at OPEL 3, 2 escalation beds."""
    return tiny(days=5, cohorts={"c": {"share": 1.0, "acute_los": fixed(40.0), "pathway_mix": {"P0": 1.0}}},
                acute={"beds": 4}, pathways={"P0": {}},
                escalation={"evaluate_at_hours": [0, 6, 12, 18], "hold_days": 0.25,
                            "levels": {3: {"any": [{"metric": "acute_occupancy_pct", "above": 95}]}},
                            "actions": [action]},
                initial_state=snapshot(*[{"node": "acute", "days": 0.0}] * 4), **extra)


def test_occupancy_trigger_reads_core_beds_so_escalation_beds_do_not_flap() -> None:
    """4 of 4 core beds occupied is 100% whether or not 2 escalation beds are open: OPEL 3 from t = 0 to the end,
    the beds opened once.  (Before: 4 of 6 = 67% after opening, so OPEL 3 dropped after the 6-hour hold and the
    beds closed, reopening 6 hours later: 10 openings in 5 days.)"""
    _, res, k, _ = run(escalation_data({"level": 3, "kind": "add_capacity", "target": "acute", "amount": 2}))
    log = res.escalation()
    assert log[log["record"] == "level"]["level"].tolist() == [1, 3]
    assert k["escalation_bed_openings"] == 1 and k["opel_days_level_3"] == pytest.approx(5.0)


def community_data(action: dict[str, Any], los: float) -> dict[str, Any]:
    """Three P1 patients ready in acute beds at t = 0, no P1 capacity of its own; rule: spot-purchase 2 packages
    (GBP 100 a package-day) while anyone waits for P1, evaluated at noon each day."""
    return tiny(days=8, cohorts={"c": {"share": 1.0, "acute_los": fixed(1.0), "pathway_mix": {"P1": 1.0}}},
                pathways={"P0": {}, "P1": {"services": {"spot": {"capacity": 0, "los": fixed(los)}}}},
                escalation={"evaluate_at_hours": [12],
                            "actions": [{"when": {"any": [{"metric": "queue_P1", "above": 0}]},
                                         "kind": "add_capacity", "target": "spot", "amount": 2,
                                         "cost_per_place_day": 100, **action}]},
                initial_state=snapshot(*[{"node": "P1", "days": 0.0}] * 3))


def events(res: RunResult) -> list[tuple[float, str]]:
    log = res.escalation()
    a = log[log["record"] == "action"]
    return list(zip(np.round(a["time"].to_numpy(dtype=float), 9).tolist(), a["event"].tolist(), strict=True))


@pytest.mark.parametrize(("action", "los", "want", "cost"), [
    # 2 packages from noon day 0; two patients take them until t = 1.25, the third then until 2.0; at noon on
    # day 1 nobody waits (queue 0): stop at once, places withdrawn at 1.5 (the third keeps theirs): 2 x 1.0 days
    ({}, 0.75, [(0.5, "started"), (1.5, "stopped")], 2 * 1.0 * 100),
    # stay on at least 72 hours and stand down only after 24 hours not called for: stops at 0.5 + 3 = 3.5
    ({"min_duration_hours": 72, "stand_down_hours": 24}, 0.75,
     [(0.5, "started"), (1.5, "standing_down"), (3.5, "stopped")], 2 * 3.0 * 100),
    # close when empty: packages of 2.8 days; two from 0.5 to 3.3, the third from 3.3 to 6.1; at noon on day 3
    # (3.5) nobody waits, the places close to new patients but the third is still in one: closed at 6.1
    ({"close_when_empty": True}, 2.8, [(0.5, "started"), (3.5, "closing"), (6.1, "stopped")], 2 * 5.6 * 100),
])
def test_community_escalation_with_minimum_duration_stand_down_and_close_when_empty(
        action: dict[str, Any], los: float, want: list[tuple[float, str]], cost: float) -> None:
    _, res, k, _ = run(community_data(action, los))
    assert events(res) == want
    assert k["escalation_cost"] == pytest.approx(cost)
    granted = sorted(res.patients()["slot_granted"].tolist())
    assert granted == pytest.approx([0.5, 0.5, 0.5 + los])


# --------------------------------------------------------------------------- the new invariant has teeth
def test_bed_census_invariant_flags_a_delay_counted_outside_a_bed() -> None:
    """Mark the P1 clients of the first test as waiting in reporting beds: the check names the problem."""
    data = tiny(days=10, cohorts={"c": {"share": 1.0, "acute_los": fixed(1.0), "pathway_mix": {"P1": 1.0}}},
                pathways={"P0": {}, "P1": {"services": {"reablement": {
                    "capacity": 10, "los": fixed(2.0), "outcomes": {"home": 0.0, "long_term_care": 1.0}}}}},
                long_term_care={"placement_time": fixed(5.0)},
                initial_state=snapshot(*[{"node": "reablement", "days": 0.0}] * 3))
    from flowsim.model.codes import Outcome  # local: the module's other tests run on any version of flowsim
    from flowsim.model.model import run_model
    from flowsim.results.checks import check_records
    from flowsim.results.delays import add_delay_columns
    from flowsim.results.records import build_records

    sc = validate_dict(data)
    raw = run_model(sc, 1, 0)
    rec = add_delay_columns(build_records(raw), sc)
    assert check_records(rec, raw, sc) == []
    assert (rec["outcome"] == Outcome.LONG_TERM_CARE).all()
    rec.cols["onward_reports"] = np.ones(len(rec), dtype=bool)  # the old rule: every downstream place counted
    problems = check_records(rec, raw, sc)
    assert any("not in a bed" in p for p in problems), problems

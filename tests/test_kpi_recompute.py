"""Every measure on the headline table, recomputed from the per-stay records by an independent implementation.

Why: the KPIs are the numbers a board reads, and most tests of them only check that they are zero, positive,
finite or higher in winter.  Here each one is worked out again from ``res.patients()`` (the stamps each stay
carries) and the scenario, with a few lines of pandas written from the measure's documented definition
(``flowsim.results.kpi`` and ``flowsim.results.delays`` docstrings, README "KPIs"), not with the library's
functions (no ``Level``, no ``segments``, no derived delay columns except the per-stay organisation a delay is
attributed to, which is a per-patient draw the records carry).

Definitions used, as the NHS counts (window ``[0, T)`` in model days, day ``d`` is ``[d, d+1)``):

- *midnight census* of a state held over ``[start, end)``: on day ``d``, stays with ``start < d+1 <= end`` (in the
  state just before the midnight that ends the day; an open ``end`` means still in it);
- *DTOC* (SitRep 2016/17): a non-elective P1-P3 stay is delayed in its acute bed from ready for transfer until it
  leaves the bed; while it is being assessed after readiness the reason is "assessment" (attributed to who runs
  the assessment), then the pathway's reason (P1 home care, else further non-acute NHS care, unless the pathway
  names one).  At the end of a downstream stay, a patient waiting for a care home or home care is delayed from the
  stay's end until the onward place is granted, counted only in a bed-based service whose provider reports (an
  NHS provider unless ``reports_dtoc`` says otherwise; P1 is at home unless ``bed_based``);
- *delayed days per quarter*: the census summed x 91.3125 / T; per 100,000 aged 18+ as the BCF does;
- *continuous measures* (bed-days, DTOC %): the time each interval spends inside the window;
- *G&A occupancy* (KH03): midnight census of patients in acute beds / beds available;
- *ED*: arrivals in the window (not snapshot patients), wait from decision to admit to bed (censored at T);
- *NCTR*: census from medically fit until leaving the acute bed; *stranded*: census of stays in an acute bed
  whose length of stay is d days or more;
- *Discharge Ready Date*: acute discharges in the window of stays spanning a midnight; delay = discharge date minus
  the date declared medically fit; average delay excludes 0-day delays.

The scenarios make the census non-trivial: Rotherham 2016/17 with tight community capacity (a queue at every
pathway, ED waits over 12 hours, days at 100% occupancy), its warm-up stays crossing day 0, fitness declared on ward
rounds, places granted but not taken (transfer times and discharge hours), reporting and non-reporting community
beds with care-home and home-care waits, an assessment attributed by shares; and Rotherham from a start-from-today
snapshot (patients joining in ED, acute, assessment, waiting and already in a service).

Planted bugs these tests caught (each tried locally, never committed): the midnight census read at the previous
midnight (``_Run.midnights`` from 0: every census measure fails); a place granted but not taken ending the delay
(the pathway segment ending at ``slot_granted``); stranded patients counted a day early; the Discharge Ready Date
delay rounded up from the exact time; every bed-based provider taken to report to the SitRep.  Not caught here: ED
waits not censored at the window's end, because nobody is still boarding at the end of these runs
(``test_mutation_kpi.py`` catches it on a run built for it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from flowsim import load_scenario, simulate
from flowsim.experiment.runner import RunResult
from flowsim.scenario.schema import Scenario, Schedule

SCENARIOS_DIR = Path(__file__).resolve().parents[1] / "scenarios"

QUARTER = 365.25 / 4
PATHWAYS = ("P0", "P1", "P2", "P3")
DOWNSTREAM = ("P1", "P2", "P3")

#: name -> (scenario file, overrides, replications, seed)
CASES: dict[str, tuple[str, list[str], int, int]] = {
    "tight": ("rotherham_2016.yaml", [
        "simulation.duration_days=120", "simulation.warmup_days=60",   # April-July: no winter beds
        "pathways.P1.services.irr_reablement.capacity=38", "pathways.P2.services.intermediate_care.capacity=44",
        "pathways.P3.services.oakwood.capacity=8",
        "assessment.responsible={nhs: 0.3, social_care: 0.5, both: 0.2}"], 2, 11),
    "today": ("rotherham_from_today.yaml", ["simulation.duration_days=28",   # November: no winter beds
                                           "pathways.P2.services.intermediate_care.capacity=40",
                                           # the rebuilt baseline fills ~425 of its 555 beds in November: fewer
                                           # beds so that ED waits are part of the census
                                           "acute.beds.base=445"], 2, 5),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request: pytest.FixtureRequest) -> tuple[Scenario, RunResult]:
    path, overrides, reps, seed = CASES[request.param]
    sc = load_scenario(SCENARIOS_DIR / path, overrides=overrides)
    res = simulate(sc, replications=reps, seed=seed, workers=1)
    assert res.checks == []
    return sc, res


# ------------------------------------------------------------------------------------------ independent arithmetic
def census(start: pd.Series, end: pd.Series, days: int) -> np.ndarray:
    """Midnight census per day: intervals with ``start < midnight <= end`` (NaN start: never; NaN end: open)."""
    s = start.to_numpy(dtype=float)[:, None]
    e = end.fillna(np.inf).to_numpy(dtype=float)[:, None]
    midnight = np.arange(1, days + 1, dtype=float)[None, :]
    return ((s < midnight) & (midnight <= e)).sum(axis=0).astype(float)  # NaN < x is False: never counted


def inside(start: pd.Series, end: pd.Series, T: float) -> float:
    """Total time the intervals ``[start, end)`` spend inside ``[0, T)``."""
    lo = start.clip(lower=0.0)
    hi = end.fillna(T).clip(upper=T)
    return float((hi - lo).clip(lower=0.0)[start.notna()].sum())


def in_window(t: pd.Series, T: float) -> pd.Series:
    return (t >= 0) & (t < T)


def delay_intervals(p: pd.DataFrame, sc: Scenario) -> pd.DataFrame:
    """Every DTOC interval of the stays, from their stamps and the scenario: start, end, reason, org, acute,
    and whether the SitRep counts it."""
    downstream = p["pathway"].isin(DOWNSTREAM) & (p["kind"] == "non_elective")
    pw = {name: sc.pathways[name] for name in DOWNSTREAM if name in sc.pathways}
    assessed_after = p["pathway"].map(
        lambda x: x in pw and pw[x].needs_assessment and pw[x].assessment_timing == "after_ready").astype(bool)
    reason = p["pathway"].map(
        lambda x: (pw[x].dtoc_reason or ("home_care" if x == "P1" else "non_acute_nhs")) if x in pw else "")
    first = downstream & assessed_after
    parts = [
        pd.DataFrame({"start": p["rft"].where(first), "end": p["assess_end"], "reason": "assessment",
                      "org": p["assess_org"], "acute": True, "counted": True, "pathway": p["pathway"], "wait": False,
                      "row": p.index}),
        pd.DataFrame({"start": p["assess_end"].where(first & p["rft"].notna(), p["rft"]).where(downstream),
                      "end": p["acute_end"], "reason": reason, "org": p["wait_org"], "acute": True, "counted": True,
                      "pathway": p["pathway"], "wait": True, "row": p.index}),
    ]
    # onward care at the end of a downstream stay, in the place
    spec = {name: (pname, svc) for pname, pathway in sc.pathways.items() for name, svc in pathway.services.items()}

    def bed_and_reports(service: str) -> tuple[bool, bool]:
        if service not in spec:
            return False, False
        pname, svc = spec[service]
        bed = svc.bed_based if svc.bed_based is not None else pname != "P1"
        return bed, (svc.reports_dtoc if svc.reports_dtoc is not None else bed and svc.provider == "nhs")

    flags = p["service"].map(bed_and_reports)
    onward = p["outcome"].isin(["long_term_care", "home_with_care"])
    parts.append(pd.DataFrame({
        "start": p["stay_end"].where(onward), "end": p["onward_granted"],
        "reason": p["outcome"].map({"long_term_care": "care_home", "home_with_care": "home_care"}).fillna(""),
        "org": p["onward_org"], "acute": False, "counted": flags.map(lambda f: f[1]).astype(bool),
        "in_bed": flags.map(lambda f: f[0]).astype(bool), "pathway": p["pathway"], "wait": False, "row": p.index}))
    out = pd.concat(parts, ignore_index=True)
    out["in_bed"] = out["in_bed"].fillna(True).astype(bool)
    return out[out["start"].notna()].reset_index(drop=True)


def acute_beds(sc: Scenario) -> float:
    """The scenario's base G&A beds: these cases' windows avoid its winter beds (checked in the test)."""
    beds = sc.acute.beds
    return float(beds.base if isinstance(beds, Schedule) else beds)


def recompute(p: pd.DataFrame, sc: Scenario) -> dict[str, Any]:
    """The headline measures of one replication, from its stays (``daily:<column>`` keys: a daily census)."""
    T = float(sc.simulation.duration_days)
    k: dict[str, Any] = {}
    iv = delay_intervals(p, sc)
    dtoc(k, p, iv, sc)
    beds_and_front_door(k, p, sc)
    todays_measures(k, p, T)
    leaving(k, p, iv, T)
    return k


def dtoc(k: dict[str, Any], p: pd.DataFrame, iv: pd.DataFrame, sc: Scenario) -> None:
    """2016/17 delayed transfers of care: census, delayed days, BCF rates, DTOC %, by reason, org and pathway."""
    T = float(sc.simulation.duration_days)
    D = int(T)
    pop = sc.population_18plus
    counted = iv[iv["counted"]]
    mid = census(counted["start"], counted["end"], D)
    acute_mid = census(counted["start"].where(counted["acute"]), counted["end"], D)
    k["daily:delayed_midnight"] = mid
    k["daily:delayed_acute_midnight"] = acute_mid
    k["delayed_patients_per_day"] = mid.mean()
    k["delayed_acute_per_day"] = acute_mid.mean()
    k["delayed_nonacute_per_day"] = (mid - acute_mid).mean()
    k["delayed_per_100k"] = mid.mean() / pop * 1e5
    k["dtoc_delayed_days_per_quarter"] = mid.sum() * QUARTER / T
    k["dtoc_rate_per_100k"] = k["dtoc_delayed_days_per_quarter"] / pop * 1e5
    k["delayed_bed_days"] = inside(counted["start"], counted["end"], T)
    occupied_bed_days = inside(p["bed_start"], p["acute_end"], T)
    acute_iv = counted[counted["acute"]]
    k["dtoc_pct"] = 100.0 * inside(acute_iv["start"], acute_iv["end"], T) / occupied_bed_days
    for reason in ("assessment", "non_acute_nhs", "home_care", "care_home"):
        m = counted["reason"] == reason
        k[f"delayed_per_day_{reason}"] = census(counted["start"].where(m), counted["end"], D).mean()
    for org in ("nhs", "social_care", "both"):
        m = counted["org"] == org
        k[f"delayed_per_day_{org}"] = census(counted["start"].where(m), counted["end"], D).mean()
    for pw in DOWNSTREAM:
        m = counted["wait"] & (counted["pathway"] == pw)
        k[f"delayed_per_day_{pw}"] = census(counted["start"].where(m), counted["end"], D).mean()
    unreported = iv[iv["in_bed"] & ~iv["counted"]]
    k["delay_unreported_bed_days"] = inside(unreported["start"], unreported["end"], T)
    home = iv[~iv["in_bed"]]
    k["waiting_at_home_days"] = inside(home["start"], home["end"], T)


def beds_and_front_door(k: dict[str, Any], p: pd.DataFrame, sc: Scenario) -> None:
    """G&A occupancy at midnight (KH03) and the ED's waits for a bed."""
    T = float(sc.simulation.duration_days)
    D = int(T)
    beds = acute_beds(sc)
    occ_mid = census(p["bed_start"], p["acute_end"], D)
    pct = pd.Series(100.0 * occ_mid / beds)
    k["daily:acute_occupied_midnight"] = occ_mid
    k["acute_occupied_mean"] = inside(p["bed_start"], p["acute_end"], T) / T
    k["occupancy_mean_pct"] = pct.mean()
    k["occupancy_p95_pct"] = pct.quantile(0.95)
    k["days_over_92_pct"] = 100.0 * (pct > 92).mean()
    k["days_over_95_pct"] = 100.0 * (pct > 95).mean()
    k["days_at_100_pct"] = 100.0 * (occ_mid >= beds).mean()
    # ---- front door
    nonel = p["kind"] == "non_elective"
    adm = p[nonel & ~p["initial"] & in_window(p["arrival"], T)]
    wait_h = 24.0 * (adm["bed_start"].fillna(T) - adm["arrival"])
    k["admissions_per_day"] = len(adm) / T
    k["ed_boarding_mean"] = inside(p["arrival"].where(nonel), p["bed_start"], T) / T
    k["ed_wait_mean_hours"] = wait_h.mean()
    k["ed_4h_breach_pct"] = 100.0 * (wait_h > 4).mean()
    k["ed_12h_breaches"] = float((wait_h > 12).sum())


def todays_measures(k: dict[str, Any], p: pd.DataFrame, T: float) -> None:
    """Not meeting the criteria to reside, stranded patients and Discharge Ready Date delays."""
    D = int(T)
    nonel = p["kind"] == "non_elective"
    nctr = census(p["mffd"], p["acute_end"], D)
    k["daily:nctr_midnight"] = nctr
    k["nctr_per_day"] = nctr.mean()
    k["nctr_bed_days"] = inside(p["mffd"], p["acute_end"], T)
    for pw in PATHWAYS:
        k[f"nctr_per_day_{pw}"] = census(p["mffd"].where(p["pathway"] == pw), p["acute_end"], D).mean()
    not_dtoc_end = p["rft"].where(p["pathway"].isin(DOWNSTREAM) & nonel, p["acute_end"])
    k["mffd_bed_days"] = inside(p["mffd"], not_dtoc_end, T)
    for d in (7, 14, 21):
        los_d = p["bed_start"] + d
        still = p["acute_end"].isna() | (p["acute_end"] > los_d)
        k[f"daily:stranded_{d}"] = s = census(los_d.where(still), p["acute_end"], D)
        k[f"stranded_{d}_per_day"] = s.mean()
    left = in_window(p["acute_end"], T) & (p["acute_end"] > p["bed_start"])   # left an acute bed in the window
    drd = p[left & (np.floor(p["acute_end"]) > np.floor(p["bed_start"])) & p["mffd"].notna()]
    delay = np.floor(drd["acute_end"]) - np.floor(drd["mffd"])
    k["drd_discharges"] = float(len(drd))
    k["drd_delay_days"] = float(delay.sum())
    k["drd_avg_delay_days"] = delay.sum() / (delay >= 1).sum()
    for key, lo, hi in (("0", 0, 0), ("1", 1, 1), ("2_3", 2, 3), ("4_6", 4, 6), ("7_13", 7, 13),
                        ("14_20", 14, 20), ("21plus", 21, 10**9)):
        band = delay.between(lo, hi)
        k[f"drd_discharges_{key}"] = float(band.sum())
        k[f"drd_pct_{key}"] = 100.0 * band.mean()
        k[f"drd_delay_days_{key}"] = float(delay[band].sum())


def leaving(k: dict[str, Any], p: pd.DataFrame, iv: pd.DataFrame, T: float) -> None:
    """Discharges by pathway, queues and waits for a place, and how downstream stays end."""
    left = in_window(p["acute_end"], T) & (p["acute_end"] > p["bed_start"])
    for pw in PATHWAYS:
        k[f"discharges_{pw}"] = float((left & (p["pathway"] == pw)).sum())
    waits = iv[iv["wait"]]
    for pw in DOWNSTREAM:
        mine = waits[waits["pathway"] == pw]
        granted = p["slot_granted"].to_numpy()[mine["row"]]
        start = mine["start"].to_numpy()
        k[f"queue_mean_{pw}"] = inside(pd.Series(start), pd.Series(granted), T) / T
        fresh = (start >= 0) & (start < T) & ~p["initial"].to_numpy()[mine["row"]]
        w = np.where(np.isnan(granted[fresh]), T, granted[fresh]) - start[fresh]
        k[f"wait_mean_days_{pw}"] = float(w.mean()) if len(w) else 0.0
    ended = in_window(p["ds_end"], T)
    k["deaths"] = float((ended & (p["outcome"] == "death")).sum())
    k["long_term_care_placements"] = float((ended & (p["outcome"] == "long_term_care")).sum())
    k["home_care_starts"] = float((ended & (p["outcome"] == "home_with_care")).sum())


# ------------------------------------------------------------------------------------------ the comparisons
def test_every_headline_measure_recomputed_from_the_stays(case: tuple[Scenario, RunResult]) -> None:
    sc, res = case
    patients, daily = res.patients(), res.daily()
    for rep in res.replications:
        p = patients[patients["replication"] == rep.replication].reset_index(drop=True)
        day = daily[daily["replication"] == rep.replication].reset_index(drop=True)
        mine = recompute(p, sc)
        wrong = []
        for name, value in mine.items():
            if name.startswith("daily:"):
                got = day[name.removeprefix("daily:")].to_numpy(dtype=float)
                if not np.array_equal(got, value):
                    bad = np.flatnonzero(got != value)[:3]
                    wrong.append(f"{name}: days {bad.tolist()} library {got[bad].tolist()} vs {value[bad].tolist()}")
            elif rep.kpis[name] != pytest.approx(value, rel=1e-9, abs=1e-9):
                wrong.append(f"{name}: library {rep.kpis[name]!r} vs recomputed {value!r}")
        assert not wrong, f"replication {rep.replication}:\n" + "\n".join(wrong)


def test_the_census_is_non_trivial(case: tuple[Scenario, RunResult]) -> None:
    """Without queues, midnight-crossing delays and warm-up stays, a wrong census could agree by accident."""
    sc, res = case
    k = res.kpi_frame().mean()
    p = res.patients()
    for pw in DOWNSTREAM:
        assert k[f"delayed_per_day_{pw}"] > 0.5 and k[f"queue_mean_{pw}"] > 0.0, pw
    for name in ("delayed_per_day_assessment", "delayed_nonacute_per_day", "stranded_21_per_day",
                 "ed_4h_breach_pct", "delayed_per_day_care_home", "delayed_per_day_home_care"):
        assert k[name] > 0, name
    # places granted but not yet taken, delays that cross midnights, stays from before day 0
    granted_not_moved = (p["acute_end"] - p["slot_granted"]) > 0.1
    assert granted_not_moved.sum() > 50
    assert (np.floor(p["acute_end"]) > np.floor(p["rft"]))[p["pathway"] != "P0"].sum() > 100
    assert (res.daily()["acute_beds"] == float(sc.acute.beds.base)).all()  # the base beds the test divides by
    if sc.initial_state is None:
        assert p["warmup"].sum() > 1000
        assert ((p["bed_start"] < 0) & ((p["acute_end"] > 0) | p["acute_end"].isna())).sum() > 100
        assert sc.acute.ward_rounds is not None
        assert k["days_at_100_pct"] > 0 and k["ed_12h_breaches"] > 0
    else:
        assert set(p.loc[p["initial"], "initial_stage"]) == {0, 1, 2, 3, 4}


def test_monthly_delayed_days_and_rates_recomputed(case: tuple[Scenario, RunResult]) -> None:
    """``periods('M')``: each calendar month's delayed days (the census summed over its days), the BCF rates,
    and the month's Discharge Ready Date average delay, from the stays, averaged over replications."""
    sc, res = case
    T = float(sc.simulation.duration_days)
    dates = pd.date_range(sc.simulation.start_date, periods=int(T), freq="D")
    month = dates.to_period("M")
    patients = res.patients()
    per_rep = []
    for rep in res.replications:
        p = patients[patients["replication"] == rep.replication].reset_index(drop=True)
        iv = delay_intervals(p, sc)
        counted = iv[iv["counted"]]
        days = pd.Series(census(counted["start"], counted["end"], int(T)), index=month)
        drd = p[in_window(p["acute_end"], T) & (np.floor(p["acute_end"]) > np.floor(p["bed_start"]))
                & p["mffd"].notna() & (p["acute_end"] > p["bed_start"])]
        delay = pd.Series((np.floor(drd["acute_end"]) - np.floor(drd["mffd"])).to_numpy(),
                          index=month[np.floor(drd["acute_end"]).astype(int)])
        avg = delay.groupby(level=0).sum() / (delay >= 1).groupby(level=0).sum()
        per_rep.append(pd.DataFrame({"delayed_days": days.groupby(level=0).sum(), "n": days.groupby(level=0).size(),
                                     "drd_avg": avg}))
    mine = pd.concat(per_rep).groupby(level=0).mean()
    got = res.periods("M")
    assert len(got) == len(mine) >= 1
    pop = sc.population_18plus
    np.testing.assert_array_equal(got["days"].to_numpy(), mine["n"].to_numpy())
    np.testing.assert_allclose(got["delayed_days"], mine["delayed_days"], rtol=1e-12)
    np.testing.assert_allclose(got["rate_per_100k"], mine["delayed_days"] / pop * 1e5, rtol=1e-12)
    np.testing.assert_allclose(got["delayed_per_day_per_100k"], mine["delayed_days"] / mine["n"] / pop * 1e5,
                               rtol=1e-12)
    np.testing.assert_allclose(got["drd_avg_delay_days"], mine["drd_avg"], rtol=1e-12)


def test_delays_attributed_by_the_documented_rules(case: tuple[Scenario, RunResult]) -> None:
    """Who a delay belongs to: waiting for a place, the funder of the service granted (these pathways name no
    'responsible'); an assessment drawn by the scenario's shares (within sampling error); a care home or home
    care, the organisation the scenario names."""
    sc, res = case
    p = res.patients()
    funder = {name: svc.funder for pw in sc.pathways.values() for name, svc in pw.services.items()}
    granted = p[p["pathway"].isin(DOWNSTREAM) & (p["service"] != "") & (p["kind"] == "non_elective")]
    assert all(sc.pathways[pw].responsible is None for pw in DOWNSTREAM)
    assert (granted["wait_org"] == granted["service"].map(funder)).all()
    ltc = p[p["outcome"] == "long_term_care"]
    assert len(ltc) > 10 and (ltc["onward_org"] == sc.long_term_care.responsible).all()
    hwc = p[p["outcome"] == "home_with_care"]
    assert len(hwc) > 10 and (hwc["onward_org"] == sc.home_care.responsible).all()
    assessed = p.loc[p["assess_org"] != "", "assess_org"]
    shares = sc.assessment.responsible
    if isinstance(shares, str):
        assert (assessed == shares).all()
        return
    n = len(assessed)
    for org in ("nhs", "social_care", "both"):
        expected = getattr(shares, org)
        # binomial 99.9% band (3.29 sd): a share off by 0.1 is outside it for n > 200
        assert abs((assessed == org).mean() - expected) < 3.29 * np.sqrt(expected * (1 - expected) / n), org
    assert n > 200

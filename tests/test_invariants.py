"""Invariants on every shipped scenario (short horizons) and on hand-built edge cases.

The checks here recompute things from the per-stay table independently of
``flowsim.results.checks``, so a bug shared by the model and its own checks
is still caught.
"""

from __future__ import annotations

import datetime as dt
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flowsim import load_scenario, simulate
from flowsim.model.calendar import capacity_steps, disrupted
from flowsim.scenario import load_raw, validate_dict
from flowsim.scenario.pathway_only import compile_scenario

SCENARIOS_DIR = Path(__file__).resolve().parents[1] / "scenarios"
SHIPPED = sorted(SCENARIOS_DIR.glob("*.yaml"))
#: every issue 12 journey at rates a 60-day run sees many times (step-up, deaths, same-day stays,
#: readmissions from inside a stay, home-care hand-over keeping the place, bank holidays)
JOURNEYS = Path(__file__).resolve().parent / "scenarios" / "journeys.yaml"
CHECKED = [*SHIPPED, JOURNEYS]
SHORT = ["simulation.duration_days=60", "simulation.warmup_days=20"]
T_SHORT = 60.0
TOL = 1e-9



def test_shipped_scenarios_found() -> None:
    assert SCENARIOS_DIR / "minimal.yaml" in SHIPPED


# --------------------------------------------------------------------------- helpers
def departure(p: pd.DataFrame) -> np.ndarray:
    """When a stay leaves the system: acute_end for P0 (same-day stays included) and deaths in hospital, the end
    of the downstream stay otherwise (step-up stays too), and for a step-up referral that gave up waiting at home
    (refused, or sent to hospital as a new stay), the moment it gave up."""
    acute_only = (p["pathway"].astype(str) == "P0").to_numpy() | (p["acute_exit"] == "died").to_numpy()
    gave_up = ((p["kind"] == "step_up") & (p["cancelled"] != "")).to_numpy()
    return np.where(gave_up, p["gave_up"], np.where(acute_only, p["acute_end"], p["ds_end"]))


def max_overlap_at_grants(starts: np.ndarray, ends: np.ndarray, t_end: float) -> tuple[np.ndarray, np.ndarray]:
    """Occupancy just after each grant of intervals [start, end), releases at a tie counted first.

    Returns (grant times, occupancy after each grant).  Counting releases before grants at
    the same instant is the lenient order (a slot freed at t can be granted at t).
    """
    ok = ~np.isnan(starts)
    s = starts[ok]
    e = np.where(np.isnan(ends[ok]), np.inf, ends[ok])
    times = np.concatenate((s, e))
    delta = np.concatenate((np.ones(len(s)), -np.ones(len(e))))
    order = np.lexsort((delta, times))  # by time, then -1 before +1
    times, delta = times[order], delta[order]
    occ = np.cumsum(delta)
    grant = (delta > 0) & (times <= t_end)
    return times[grant], occ[grant]


def capacity_at(steps: tuple[np.ndarray, np.ndarray], t: np.ndarray) -> np.ndarray:
    times, values = steps
    i = np.searchsorted(times, np.asarray(t) + TOL, side="right") - 1
    return values[np.maximum(i, 0)]


# --------------------------------------------------------------------------- shipped scenarios
def short_overrides(path: Path) -> list[str]:
    """60 days; a 20-day warm-up unless the scenario starts from a snapshot (which forbids one)."""
    raw, _ = load_raw(path)
    return ["simulation.duration_days=60", "simulation.warmup_days=0" if raw.get("initial_state") else SHORT[1]]


@pytest.fixture(scope="module", params=CHECKED, ids=lambda p: p.name)
def short_run(request):
    sc = load_scenario(request.param, overrides=short_overrides(request.param))
    assert sc.simulation.duration_days == 60
    assert sc.simulation.warmup_days == (0 if sc.initial_state else 20)
    return request.param, sc, simulate(sc, replications=2, seed=11)


def test_shipped_scenario_runs_clean(short_run) -> None:
    _, sc, result = short_run
    assert result.checks == []
    kpis = result.kpi_frame()
    assert len(kpis) == 2
    for col in ("admissions_per_day", "acute_occupied_mean", "delayed_patients_per_day", "ed_wait_mean_hours",
                "dtoc_rate_per_100k"):
        assert np.isfinite(kpis[col]).all(), col
    assert (kpis["admissions_per_day"] > 0).all()
    daily = result.daily()
    assert len(daily) == 2 * 60
    assert daily.groupby("replication")["day"].apply(list).map(lambda d: d == list(range(60))).all()
    assert daily["date"].min() == pd.Timestamp(sc.simulation.start_date)


def test_conservation_from_patient_table(short_run) -> None:
    """Per replication: in system at 0 + admitted = departed + in system at T, stage by stage.

    "In the system" counts hospital stays from arrival and step-up referrals from the referral (waiting at home
    for a place, then in the place), so a referral sent to hospital leaves as it becomes a new stay.
    """
    _, sc, result = short_run
    pts = result.patients()
    kpis = result.kpi_frame()
    daily = result.daily()
    T = T_SHORT
    for rep, stays in pts.groupby("replication"):
        step_up_all = stays["kind"] == "step_up"
        # a cancelled elective never enters the hospital: it is recorded, but not a stay
        assert stays.loc[(stays["cancelled"] != "") & ~step_up_all, "bed_start"].isna().all()
        p = stays[(stays["cancelled"] == "") | step_up_all]
        arrival = p["arrival"].to_numpy()
        dep = departure(p)
        stamps = p[["arrival", "bed_start", "mffd", "slot_granted", "acute_end", "ds_end", "gave_up"]].to_numpy()
        assert np.nanmax(stamps) <= T and np.nanmin(stamps) >= -20.0

        in_at_0 = np.sum((arrival < 0) & (np.isnan(dep) | (dep >= 0)))
        admitted = np.sum((arrival >= 0) & (arrival < T))
        departed = np.sum(~np.isnan(dep) & (dep >= 0))
        in_at_T = np.sum(np.isnan(dep))
        assert in_at_0 + admitted == departed + in_at_T

        in_acute = check_stages(p, dep, in_at_T)
        check_readmissions(sc, p, dep)
        # a referral sent to hospital is a new stay arriving as it gives up
        div = p[p["diverted_from"] >= 0]
        origin = pd.Series(dep, index=p["stay_id"].to_numpy()).reindex(div["diverted_from"]).to_numpy()
        assert np.allclose(div["arrival"].to_numpy(), origin, rtol=0, atol=TOL)

        # the KPI layer counts the same things (admissions KPIs are non-elective)
        d = daily[daily["replication"] == rep]
        # snapshot patients (start from today) were already in, so they are not admissions
        emergency = np.sum((arrival >= 0) & (arrival < T) & (p["kind"] == "non_elective").to_numpy()
                           & ~p["initial"].to_numpy())
        assert d["admissions"].sum() == emergency
        assert kpis.loc[rep, "admissions_per_day"] == pytest.approx(emergency / T)
        acute_end = p["acute_end"].to_numpy()
        pathway = p["pathway"].astype(str).to_numpy()
        for pw in ("P0", "P1", "P2", "P3"):
            # snapshot patients already in a service (stage 4) never left an acute bed during the run
            left = np.sum((pathway == pw) & (acute_end >= 0) & (acute_end < T) & (p["initial_stage"] != 4).to_numpy())
            assert kpis.loc[rep, f"discharges_{pw}"] == left
        # midnight census at the end of the last day = patients in acute beds at T
        assert d["acute_occupied_midnight"].iloc[-1] == in_acute.sum()


def check_stages(p: pd.DataFrame, dep: np.ndarray, in_at_T: int) -> np.ndarray:
    """Everyone still in the system is in exactly one stage (at home waiting for a step-up place, ED, acute bed,
    downstream place), and a finished stay has every stamp of its journey.  Returns who is in an acute bed at T."""
    pathway = p["pathway"].astype(str).to_numpy()
    step_up = (p["kind"] == "step_up").to_numpy()
    died = (p["acute_exit"] == "died").to_numpy()
    granted = ~np.isnan(p["slot_granted"].to_numpy())
    at_home = step_up & ~granted & np.isnan(dep)
    in_ed = ~step_up & np.isnan(p["bed_start"].to_numpy())
    in_acute = ~in_ed & ~step_up & np.isnan(p["acute_end"].to_numpy())
    downstream = np.isnan(dep) & (~np.isnan(p["acute_end"].to_numpy()) | (step_up & granted))
    assert not np.any(downstream & ((pathway == "P0") | died))
    assert not np.any(step_up & ~np.isnan(p["bed_start"].to_numpy()))  # a step-up stay never has a bed
    assert at_home.sum() + in_ed.sum() + in_acute.sum() + downstream.sum() == in_at_T
    # a finished stay has every stamp of its journey (a death in hospital never becomes medically fit)
    done = ~np.isnan(dep) & (p["cancelled"] == "").to_numpy()
    hospital = done & ~step_up
    for col in ("bed_start", "acute_end"):
        assert p.loc[hospital, col].notna().all(), col
    assert p.loc[hospital & ~died, "mffd"].notna().all()
    assert p.loc[died, ["mffd", "rft", "slot_granted"]].isna().all().all()
    assert (p.loc[died & done, "outcome"] == "death").all()
    done_ds = done & (pathway != "P0") & ~died
    for col in ("slot_granted", "stay_end"):
        assert p.loc[done_ds, col].notna().all(), col
    assert (p.loc[done_ds, "service"] != "").all()
    # a referral gave up only while still waiting at home
    gave_up = step_up & (p["cancelled"] != "").to_numpy()
    assert not np.any(gave_up & granted) and not np.isnan(p.loc[gave_up, "gave_up"].to_numpy()).any()
    return in_acute


def check_readmissions(sc, p: pd.DataFrame, dep: np.ndarray) -> None:
    """A readmission follows the stay it repeats: after its acute discharge when the pathway times readmissions
    from there (possibly from inside the downstream stay, which ends at that instant), else after it has left."""
    by_id = p.set_index("stay_id")
    assert by_id.index.is_unique
    re = p[p["readmission_of"] >= 0]
    prev = by_id.loc[re["readmission_of"]]
    prev_dep = pd.Series(dep, index=p["stay_id"].to_numpy()).reindex(re["readmission_of"]).to_numpy()
    from_acute = np.array([pw in sc.pathways and sc.pathways[pw].readmission.timed_from == "acute_discharge"
                           for pw in prev["pathway"].astype(str)], dtype=bool)
    bound = np.where(from_acute, prev["acute_end"].to_numpy(), prev_dep)
    assert not np.isnan(bound).any()
    assert np.all(re["arrival"].to_numpy() >= bound - TOL)
    inside = (prev["outcome"] == "readmitted").to_numpy()
    assert np.all(from_acute[inside])  # only readmissions timed from acute discharge cut a stay short
    assert np.allclose(prev["ds_end"].to_numpy()[inside], re["arrival"].to_numpy()[inside], rtol=0, atol=TOL)
    # nobody is readmitted from a care home or after dying
    assert prev["outcome"].isin(["home", "home_with_care", "readmitted"]).all()


def test_journeys_scenario_has_every_journey(short_run) -> None:
    """Power for the checks above: the journeys scenario's short run shows each issue 12 journey many times."""
    path, _, result = short_run
    if path != JOURNEYS:
        pytest.skip("the power check is for the journeys scenario")
    pts = result.patients()
    step_up = pts[pts["kind"] == "step_up"]
    counts = {
        "step-up starts": step_up["slot_granted"].notna().sum(),
        "step-up refused": (step_up["cancelled"] == "refused").sum(),
        "step-up sent to hospital": (pts["diverted_from"] >= 0).sum(),
        "deaths in hospital": (pts["acute_exit"] == "died").sum(),
        "same-day stays": (pts["acute_exit"] == "same_day").sum(),
        "readmitted from a community stay": (pts["outcome"] == "readmitted").sum(),
        "home-care hand-overs waiting in place": ((pts["onward_granted"] - pts["stay_end"]) > 1e-6).sum(),
    }
    assert all(n >= 10 for n in counts.values()), counts


def capacity_in_force(sc, target: str, cap, log: pd.DataFrame, t0: float, T: float):
    """The scheduled capacity with disruptions, plus escalation actions from the run's action log."""
    start = sc.simulation.start_date
    steps = disrupted(capacity_steps(cap, start, t0, T),
                      [d for d in sc.disruptions if d.target == target and d.kind != "demand_surge"], start, t0, T)
    if log.empty:
        return steps
    acts = log[(log["record"] == "action") & (log["target"] == target) & log["event"].isin(["started", "stopped"])]
    if acts.empty:
        return steps
    sign = np.where(acts["event"] == "started", 1.0, -1.0) * acts["amount"].to_numpy()
    times = np.unique(np.concatenate((steps[0], acts["time"].to_numpy())))
    extra = np.array([sign[acts["time"].to_numpy() <= t + TOL].sum() for t in times])
    return times, capacity_at(steps, times) + extra


def test_fitness_declared_on_ward_rounds(short_run) -> None:
    """Where a shipped scenario has ward rounds, every non-elective patient admitted in the run is declared
    medically fit at a round time of their day (weekday or weekend hours) and is ready for transfer no sooner;
    the Rotherham scenarios use a profile (power: at least one shipped scenario is checked)."""
    _, sc, result = short_run
    pts = result.patients()
    ok = pts.dropna(subset=["mffd"])
    # a same-day stay leaves on its own clock (criteria-led), not on a ward round
    ok = ok[(ok["kind"] == "non_elective") & ~ok["initial"] & (ok["acute_exit"] != "same_day")]
    assert (ok["rft"].dropna() >= ok.loc[ok["rft"].notna(), "mffd"] - TOL).all()
    rounds = sc.acute.ward_rounds if sc.acute is not None else None  # pathway-only: no acute stay
    if rounds is None:
        assert np.allclose(ok["mffd"], ok["clinically_fit"], rtol=0, atol=TOL)
        return
    mffd = ok["mffd"].to_numpy(dtype=float)
    assert len(mffd) > 0 and (mffd >= ok["clinically_fit"].to_numpy(dtype=float) - TOL).all()
    day = np.floor(mffd).astype(int)
    weekend = ((sc.simulation.start_date.weekday() + day) % 7 >= 5) | np.isin(day, list(holidays_of(sc)))
    hour = np.round((mffd - np.floor(mffd)) * 24.0, 6)
    on_round = np.where(weekend, np.isin(hour, np.round(rounds.weekend_hours, 6)),
                        np.isin(hour, np.round(rounds.weekday_hours, 6)))
    assert on_round.all(), "a patient declared fit outside the ward rounds"


def holidays_of(sc) -> set[int]:
    """Model days that are England bank holidays on weekdays when the scenario asks for them, from the
    ``holidays`` package directly (not the model's calendar code)."""
    if sc.calendar.bank_holidays is None:
        return set()
    import holidays

    start = sc.simulation.start_date
    cal = holidays.country_holidays("GB", subdiv="ENG", years=range(start.year - 1, start.year + 3))
    return {(d - start).days for d in cal if d.weekday() < 5}


def test_shipped_rotherham_uses_ward_rounds() -> None:
    sc = load_scenario(SCENARIOS_DIR / "rotherham_2016.yaml")
    assert sc.acute is not None and sc.acute.ward_rounds is not None


def test_no_grant_above_capacity(short_run) -> None:
    """Occupancy recomputed from stay intervals never exceeds the capacity in force at a grant."""
    _, sc, result = short_run
    sc = compile_scenario(sc)  # a pathway-only scenario runs as its full-model equivalent
    t0, T = -float(sc.simulation.warmup_days), T_SHORT
    # visit-based P1 capacity counts visits, not packages: checked in test_pathway_only.py
    services = {name: svc for pw in sc.pathways.values() for name, svc in pw.services.items()
                if svc.capacity_unit == "places"}
    log = result.escalation()
    for rep, p in result.patients().groupby("replication"):
        rep_log = log[log["replication"] == rep] if not log.empty else log
        acute_steps = capacity_in_force(sc, "acute", sc.acute.beds, rep_log, t0, T)
        t, occ = max_overlap_at_grants(p["bed_start"].to_numpy(), p["acute_end"].to_numpy(), T)
        assert len(t) > 0
        assert np.all(occ <= capacity_at(acute_steps, t)), "acute grant above capacity"
        for name, svc in services.items():
            m = (p["service"] == name).to_numpy()
            if not m.any():
                continue
            t, occ = max_overlap_at_grants(p["slot_granted"].to_numpy()[m], p["ds_end"].to_numpy()[m], T)
            steps = capacity_in_force(sc, name, svc.capacity, rep_log, t0, T)
            assert np.all(occ <= capacity_at(steps, t)), f"grant above capacity at service {name}"


def unlimited_downstream_overrides(path: Path) -> list[str]:
    """--set overrides that remove every downstream constraint of a scenario file.

    A place granted but not yet taken is a delay (transfer time, discharge hours, weekends), so
    those waits go too; what is left between ready for transfer and leaving is nothing.
    """
    raw, _ = load_raw(path)
    out = short_overrides(path)
    for pname, pw in raw.get("pathways", {}).items():
        out.append(f"pathways.{pname}.needs_assessment=false")
        out.append(f"pathways.{pname}.transfer_time={{dist: fixed, value: 0}}")
        for sname in (pw or {}).get("services", {}) or {}:
            out.append(f"pathways.{pname}.services.{sname}.capacity=unlimited")
    out += ["long_term_care.capacity=unlimited", "long_term_care.placement_time={dist: fixed, value: 0}",
            "home_care.capacity=unlimited", "home_care.start_time={dist: fixed, value: 0}",
            "discharge.hours=~", "discharge.weekend_rate=1"]
    if (raw.get("initial_state") or {}).get("snapshot_file"):
        out.append("initial_state.snapshot_file=~")  # its rows wait for assessments this test removes
    return out


@pytest.mark.parametrize("path", CHECKED, ids=lambda p: p.name)
def test_infinite_downstream_capacity_gives_zero_dtoc(path: Path) -> None:
    sc = load_scenario(path, overrides=unlimited_downstream_overrides(path))
    assert all(svc.capacity == "unlimited" for pw in sc.pathways.values() for svc in pw.services.values())
    assert not any(pw.needs_assessment for pw in sc.pathways.values())
    result = simulate(sc, replications=2, seed=5)
    assert result.checks == []
    kpis = result.kpi_frame()
    assert (kpis["delayed_patients_per_day"] == 0).all()
    assert (kpis["delayed_bed_days"] == 0).all()
    assert (kpis["dtoc_delayed_days_per_quarter"] == 0).all()
    pts = result.patients()
    # patients already waiting on a start-from-today snapshot waited before day 0: that is history
    ready = pts[(pts["pathway"].astype(str) != "P0") & ~pts["initial"]].dropna(subset=["rft", "acute_end"])
    assert len(ready) > 0
    assert np.allclose(ready["slot_granted"], ready["rft"], rtol=0, atol=TOL)
    assert np.allclose(ready["acute_end"], ready["rft"], rtol=0, atol=TOL)
    # step-up referrals are placed at once and nobody waits for care after a stay (home care at its start)
    up = pts[pts["kind"] == "step_up"]
    assert (up["cancelled"] == "").all()
    assert np.allclose(up["slot_granted"], up["arrival"], rtol=0, atol=TOL)
    onward = pts.dropna(subset=["onward_granted"])
    assert np.allclose(onward["onward_granted"], onward["stay_end"], rtol=0, atol=TOL)
    if path == JOURNEYS:  # power: the new journeys are there to be checked
        assert len(up) > 20 and len(onward) > 20 and (pts["acute_exit"] == "died").sum() > 20


def test_minimal_has_delays_without_the_overrides() -> None:
    """The zero-DTOC test above has power: the same scenario with its real capacities has delays."""
    result = simulate(load_scenario(SCENARIOS_DIR / "minimal.yaml", overrides=SHORT), replications=2, seed=5)
    assert (result.kpi_frame()["delayed_patients_per_day"] > 0).all()


def test_unlimited_capacity_is_reported_as_infinite(scenario_builder) -> None:
    """Unlimited beds and places are inf in the capacity columns (not NaN), without numpy warnings."""
    sc = validate_dict(scenario_builder(
        beds="unlimited", duration_days=10, warmup_days=0, pathway_mix={"P0": 0.5, "P2": 0.5},
        pathways={"P0": {}, "P2": {"services": {"ic": {"capacity": "unlimited",
                                                        "los": {"dist": "fixed", "value": 2.0}}}}}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = simulate(sc, replications=1, seed=1)
    kpis, daily = result.kpi_frame(), result.daily()
    assert np.isinf(kpis["acute_beds_mean"]).all()
    assert np.isinf(daily["acute_beds"]).all()
    assert np.isinf(daily["service_ic_capacity"]).all()
    assert np.isfinite(kpis["acute_occupied_mean"]).all() and (kpis["acute_occupied_mean"] > 0).all()
    assert np.isfinite(kpis["service_ic_occupied_mean"]).all()


# --------------------------------------------------------------------------- capacity schedule
CLOSE_FROM, CLOSE_TO = 20, 29  # days after start_date, both included
BASE_BEDS, CLOSED_BEDS = 30, 18


def expected_beds(t: np.ndarray) -> np.ndarray:
    t = np.asarray(t, dtype=float)
    return np.where((t >= CLOSE_FROM) & (t < CLOSE_TO + 1), CLOSED_BEDS, BASE_BEDS)


@pytest.fixture(scope="module")
def closure_run(scenario_builder):
    start = dt.date(2024, 1, 1)
    beds = {"base": BASE_BEDS, "periods": [{
        "start": (start + dt.timedelta(days=CLOSE_FROM)).isoformat(),
        "end": (start + dt.timedelta(days=CLOSE_TO)).isoformat(),
        "set": CLOSED_BEDS, "note": "ward closed",
    }]}
    # 25 a day, mean stay 1 day: 83% busy with 30 beds, overloaded with 18
    sc = validate_dict(scenario_builder(rate=25.0, beds=beds, start_date=start.isoformat(),
                                        duration_days=60, warmup_days=10))
    return sc, simulate(sc, replications=3, seed=99)


def test_capacity_schedule_is_a_step_function(closure_run) -> None:
    sc, result = closure_run
    times, values = capacity_steps(sc.acute.beds, sc.simulation.start_date, -10.0, 60.0)
    assert times.tolist() == [-10.0, float(CLOSE_FROM), float(CLOSE_TO + 1)]
    assert values.tolist() == [BASE_BEDS, CLOSED_BEDS, BASE_BEDS]
    daily = result.daily()
    for _, d in daily.groupby("replication"):
        assert d["acute_beds"].tolist() == expected_beds(d["day"].to_numpy()).tolist()
    mean_beds = (BASE_BEDS * (60 - (CLOSE_TO + 1 - CLOSE_FROM)) + CLOSED_BEDS * (CLOSE_TO + 1 - CLOSE_FROM)) / 60
    assert result.kpi_frame()["acute_beds_mean"].tolist() == pytest.approx([mean_beds] * 3)


def test_no_grant_above_capacity_during_closure(closure_run) -> None:
    _, result = closure_run
    assert result.checks == []
    for _, p in result.patients().groupby("replication"):
        bed_start, acute_end = p["bed_start"].to_numpy(), p["acute_end"].to_numpy()
        t, occ = max_overlap_at_grants(bed_start, acute_end, 60.0)
        assert np.all(occ <= expected_beds(t + TOL))
        # the closure binds: beds are occupied above the new limit when it starts (nobody is
        # evicted), patients queue in ED during it, and the queue is admitted when beds reopen
        in_bed_at_close = np.sum((bed_start < CLOSE_FROM) & (np.isnan(acute_end) | (acute_end > CLOSE_FROM)))
        assert in_bed_at_close > CLOSED_BEDS
        closed = (t >= CLOSE_FROM) & (t < CLOSE_TO + 1)
        assert closed.any() and occ[closed].max() <= CLOSED_BEDS
        reopen = CLOSE_TO + 1.0
        before = reopen - TOL
        waiting = np.sum((p["arrival"].to_numpy() < before) & ~(bed_start < before))
        in_bed = np.sum((bed_start < before) & (np.isnan(acute_end) | (acute_end > before)))
        assert waiting > 0
        # at the instant capacity rises, the head of the queue takes every new bed at once
        granted_at_reopen = np.sum(np.abs(bed_start - reopen) < TOL)
        assert granted_at_reopen == min(waiting, BASE_BEDS - in_bed)

"""Winter mechanisms: OPEL escalation, actions, electives, disruptions and discharge hours.

Every check recomputes what the model should have done from the per-stay table and the
escalation log, independently of ``flowsim.results.checks`` and the KPI layer: levels are
replayed from metrics rebuilt out of patient intervals, action events from the level path,
capacity in force from the action log.  Each test also asserts that the situation it is about
actually occurred (power), so a model that never escalates or never closes a bed cannot pass.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from flowsim import load_scenario, simulate
from flowsim.scenario import validate_dict
from flowsim.scenario.schema import Scenario

SCENARIOS_DIR = Path(__file__).resolve().parents[1] / "scenarios"
START = dt.date(2024, 1, 1)  # a Monday: model day d has weekday d % 7
TOL = 1e-9


# --------------------------------------------------------------------------- helpers
def hour_of_day(t: np.ndarray) -> np.ndarray:
    return (t - np.floor(t)) * 24.0


def weekday(t: np.ndarray, start: dt.date = START) -> np.ndarray:
    return (start.weekday() + np.floor(t).astype(int)) % 7


def count_just_before(starts: np.ndarray, ends: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Intervals [start, end) covering the instant just before each t (NaN start: none, NaN end: open)."""
    ok = ~np.isnan(starts)
    s = np.sort(starts[ok])
    e = np.sort(np.where(np.isnan(ends[ok]), np.inf, ends[ok]))
    # every interval with end < t also has start < t, so the difference counts start < t <= end
    return np.searchsorted(s, t, side="left") - np.searchsorted(e, t, side="left")


def occupancy_at_grants(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Occupancy just after each grant; at a tie, releases count before grants (the lenient order)."""
    ok = ~np.isnan(starts)
    s = starts[ok]
    e = np.where(np.isnan(ends[ok]), np.inf, ends[ok])
    times = np.concatenate((s, e))
    delta = np.concatenate((np.ones(len(s)), -np.ones(len(e))))
    order = np.lexsort((delta, times))
    times, delta = times[order], delta[order]
    occ = np.cumsum(delta)
    grant = delta > 0
    return times[grant], occ[grant]


def occupancy_at_events(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Occupancy just after every grant and release (all changes at one instant applied)."""
    ok = ~np.isnan(starts)
    s = starts[ok]
    e = ends[ok]
    e = e[~np.isnan(e)]
    times = np.concatenate((s, e))
    delta = np.concatenate((np.ones(len(s)), -np.ones(len(e))))
    order = np.argsort(times, kind="stable")
    times, delta = times[order], delta[order]
    occ = np.cumsum(delta)
    last = np.concatenate((times[1:] != times[:-1], [True]))
    return times[last], occ[last]


def escalation_of(result, rep: int) -> pd.DataFrame:
    log = result.escalation()
    return log[log["replication"] == rep].reset_index(drop=True)


def level_path(log: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    lv = log[log["record"] == "level"]
    return lv["time"].to_numpy(dtype=float), lv["level"].to_numpy(dtype=int)


def action_events(log: pd.DataFrame, i: int) -> list[tuple[float, str]]:
    a = log[(log["record"] == "action") & (log["action"] == i)]
    return list(zip(a["time"].to_numpy(dtype=float).tolist(), a["event"].tolist(), strict=True))


def active_intervals(log: pd.DataFrame, i: int, t_end: float) -> list[tuple[float, float]]:
    """[started, stopped) intervals of action ``i`` (open ones end at ``t_end``)."""
    out: list[tuple[float, float]] = []
    on: float | None = None
    for t, event in action_events(log, i):
        if event == "started":
            assert on is None, f"action {i} started twice without a stop"
            on = t
        elif event == "stopped":
            assert on is not None, f"action {i} stopped while not active"
            out.append((on, t))
            on = None
    if on is not None:
        out.append((on, t_end))
    return out


def active_at(intervals: list[tuple[float, float]], t: np.ndarray) -> np.ndarray:
    t = np.asarray(t, dtype=float)
    on = np.zeros(len(t), dtype=bool)
    for a, b in intervals:
        on |= (t >= a) & (t < b)
    return on


def extra_capacity(log: pd.DataFrame, target: str, t: np.ndarray, left: bool = False) -> np.ndarray:
    """Places added by add_capacity actions on ``target`` in force at t (or just before t with ``left``)."""
    a = log[(log["record"] == "action") & (log["target"] == target) & log["event"].isin(["started", "stopped"])]
    times = a["time"].to_numpy(dtype=float)
    sign = np.where(a["event"] == "started", 1.0, -1.0) * a["amount"].to_numpy(dtype=float)
    order = np.argsort(times, kind="stable")
    times, cum = times[order], np.cumsum(sign[order])
    t = np.asarray(t, dtype=float)
    i = np.searchsorted(times, t - TOL if left else t + TOL, side="left" if left else "right") - 1
    return np.where(i >= 0, cum[np.maximum(i, 0)], 0.0)


def evaluation_times(sc: Scenario) -> np.ndarray:
    assert sc.escalation is not None
    t0, t1 = -float(sc.simulation.warmup_days), float(sc.simulation.duration_days)
    hours = sorted(set(sc.escalation.evaluate_at_hours))
    times = [d + h / 24.0 for d in range(math.floor(t0), math.ceil(t1) + 1) for h in hours]
    return np.array([t for t in times if t0 <= t < t1])


def metrics_from_table(p: pd.DataFrame, t: np.ndarray, core_beds: np.ndarray | float,
                       sc: Scenario | None = None) -> dict[str, np.ndarray]:
    """The OPEL metrics at each evaluation instant, rebuilt from stay intervals alone.

    State "just before t": anything stamped exactly at t was caused by the evaluation itself
    (e.g. beds granted when an action opens them).  Occupancy is read against the core beds (those
    in use without escalation beds), so opening beds does not lower the reading that opened them.
    """
    elective = (p["kind"] == "elective").to_numpy()
    arrival, bed_start, acute_end = (p[c].to_numpy(dtype=float) for c in ("arrival", "bed_start", "acute_end"))
    busy = count_just_before(bed_start, acute_end, t)
    ne_arrival = np.where(elective, np.nan, arrival)
    boarding = count_just_before(ne_arrival, bed_start, t)
    longest = np.zeros(len(t))
    waiting_end = np.where(np.isnan(bed_start), np.inf, bed_start)
    for k, tk in enumerate(t):
        w = ~np.isnan(ne_arrival) & (ne_arrival < tk) & (waiting_end >= tk)
        if w.any():
            longest[k] = 24.0 * (tk - ne_arrival[w].min())
    core = np.broadcast_to(np.asarray(core_beds, dtype=float), t.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        occ = np.where((core > 0) & np.isfinite(core), 100.0 * busy / core, np.where(busy > 0, np.inf, 0.0))
    # delayed (2016/17 DTOC): P1-P3 from ready for transfer until they leave the acute bed, and waits for onward
    # care in community beds whose provider reports
    pathway = p["pathway"].astype(str).to_numpy()
    rft = np.where((pathway == "P0") | elective, np.nan, p["rft"].to_numpy(dtype=float))
    delayed = count_just_before(rft, acute_end, t)
    reporting: set[str] = set()
    if sc is not None:
        reporting = {n for pw_name, pw in sc.pathways.items() for n, s in pw.services.items() if s.reporting(pw_name)}
    onward = (p["outcome"].isin(["long_term_care", "home_with_care"]).to_numpy()
              & p["service"].isin(reporting).to_numpy())
    delayed += count_just_before(np.where(onward, p["stay_end"].to_numpy(dtype=float), np.nan),
                                 p["onward_granted"].to_numpy(dtype=float), t)
    return {"acute_occupancy_pct": occ, "ed_boarding": boarding.astype(float),
            "ed_longest_wait_hours": longest, "delayed_patients": delayed.astype(float)}


def replay_levels(sc: Scenario, times: np.ndarray, metrics: dict[str, np.ndarray]):
    """The OPEL rules applied to independently computed metrics: (path, targets, held evaluations)."""
    esc = sc.escalation
    assert esc is not None
    rules = sorted(esc.levels.items(), reverse=True)
    t0 = -float(sc.simulation.warmup_days)
    level, since = 1, t0
    path = [(t0, 1)]
    targets = np.ones(len(times), dtype=int)
    held = 0
    for k, t in enumerate(times):
        target = 1
        for lv, rule in rules:
            if rule.any is not None and any(metrics[r.metric][k] > r.above for r in rule.any):
                target = lv
                break
            if rule.all is not None and all(metrics[r.metric][k] > r.above for r in rule.all):
                target = lv
                break
        targets[k] = target
        if target > level or (target < level and t - since >= esc.hold_days - 1e-12):
            level, since = target, t
            path.append((t, level))
        elif target < level:
            held += 1
    return path, targets, held


def expected_action_events(times: np.ndarray, levels: np.ndarray, level: int, delay_days: float,
                           t_end: float) -> list[tuple[float, str]]:
    """What an action at ``level`` should log given the level path (requests, starts, stops, cancels)."""
    out: list[tuple[float, str]] = []
    pending: float | None = None
    active = False
    for k in range(1, len(times)):
        t, old, new = times[k], levels[k - 1], levels[k]
        if pending is not None and pending < t:
            out.append((pending, "started"))
            pending, active = None, True
        if old < level <= new:
            if delay_days > 0:
                out.append((t, "requested"))
                pending = t + delay_days
            else:
                out.append((t, "started"))
                active = True
        elif new < level <= old:
            if pending is not None:
                out.append((t, "cancelled"))
                pending = None
            elif active:
                out.append((t, "stopped"))
                active = False
    if pending is not None and pending < t_end:
        out.append((pending, "started"))
    return out


def assert_same_events(got: list[tuple[float, str]], want: list[tuple[float, str]], what: str) -> None:
    assert [e for _, e in got] == [e for _, e in want], what
    assert np.allclose([t for t, _ in got], [t for t, _ in want], rtol=0, atol=TOL), what


def daily_mean_of_steps(base: float, log: pd.DataFrame, target: str, n_days: int) -> np.ndarray:
    """Exact daily means of base + escalation extra, from the action log."""
    a = log[(log["record"] == "action") & (log["target"] == target) & log["event"].isin(["started", "stopped"])]
    out = np.full(n_days, float(base))
    for t, event, amount in zip(a["time"], a["event"], a["amount"], strict=True):
        sign = 1.0 if event == "started" else -1.0
        # +amount from t onwards: whole days after t, and the part of t's own day after t
        d = math.floor(t)
        if t < 0:
            out += sign * amount
            continue
        if d < n_days:
            out[d] += sign * amount * (d + 1 - t)
            out[d + 1:] += sign * amount
    return out


# --------------------------------------------------------------------------- 1-3: OPEL levels and actions
OPEL_HOLD = 0.5
OPEL_T = 120.0
ACUTE_BASE = 10


def opel_scenario_dict(builder) -> dict:
    # M/M/10 at 95% load: ED boarding comes and goes, so levels rise and fall many times
    return builder(
        rate=9.5, beds=ACUTE_BASE, start_date=START.isoformat(), duration_days=int(OPEL_T), warmup_days=10,
        escalation={
            "evaluate_at_hours": [0, 4, 8, 12, 16, 20],  # every 4 hours; hold 12 hours > spacing
            "hold_days": OPEL_HOLD,
            "levels": {
                2: {"any": [{"metric": "acute_occupancy_pct", "above": 85}]},
                3: {"all": [{"metric": "ed_boarding", "above": 1}, {"metric": "ed_longest_wait_hours", "above": 3}]},
                4: {"any": [{"metric": "ed_boarding", "above": 6}]},
            },
            "actions": [
                # 5 hours: never on an evaluation instant (those are 4 hours apart from a multiple of 4)
                {"level": 3, "kind": "add_capacity", "target": "acute", "amount": 3, "delay_hours": 5,
                 "cost_one_off": 1000, "cost_per_place_day": 250},
                # 14 hours > hold: level 4 can be left before the beds open, so requests get cancelled
                {"level": 4, "kind": "add_capacity", "target": "acute", "amount": 2, "delay_hours": 14,
                 "cost_per_day": 100, "cost_per_place_day": 50},
            ],
        },
    )


@pytest.fixture(scope="module")
def opel_run(scenario_builder):
    sc = validate_dict(opel_scenario_dict(scenario_builder))
    return sc, simulate(sc, replications=2, seed=2024)


def test_opel_level_path_replays_from_independent_metrics(opel_run) -> None:
    sc, result = opel_run
    assert result.checks == []
    times = evaluation_times(sc)
    pts = result.patients()
    total_held = 0
    for rep, p in pts.groupby("replication"):
        log = escalation_of(result, rep)
        lt, lv = level_path(log)
        assert lt[0] == -float(sc.simulation.warmup_days) and lv[0] == 1
        # every change after the initial level is at an evaluation instant
        assert np.all(np.min(np.abs(lt[1:, None] - times[None, :]), axis=1) < TOL)
        assert np.all(lv[1:] != lv[:-1]), "a logged level change that does not change the level"
        metrics = metrics_from_table(p, times, ACUTE_BASE, sc)
        path, targets, held = replay_levels(sc, times, metrics)
        assert [lvl for _, lvl in path] == lv.tolist()
        assert np.allclose([t for t, _ in path], lt, rtol=0, atol=TOL)
        # the first time the level reaches k is the first evaluation at which a rule for k or above holds
        for k in (2, 3, 4):
            first_target = times[np.argmax(targets >= k)]
            assert (targets >= k).any() and (lv >= k).any(), f"level {k} never reached (no power)"
            assert lt[np.argmax(lv >= k)] == pytest.approx(first_target, abs=TOL)
        assert np.sum(np.diff(lv) < 0) >= 5 and np.sum(np.diff(lv) > 0) >= 5
        total_held += held
    assert total_held > 0, "no evaluation wanted a lower level during a hold: hysteresis untested"


def test_opel_level_not_lowered_before_hold(opel_run) -> None:
    _, result = opel_run
    n_down = n_fast_raise = 0
    for rep in range(2):
        lt, lv = level_path(escalation_of(result, rep))
        down = np.flatnonzero(np.diff(lv) < 0) + 1
        n_down += len(down)
        assert np.all(lt[down] - lt[down - 1] >= OPEL_HOLD - TOL)
        # raises are not held back: some follow the previous change sooner than the hold time
        n_fast_raise += int(np.sum((np.diff(lv) > 0) & (np.diff(lt) < OPEL_HOLD - TOL)))
    assert n_down > 0 and n_fast_raise > 0


def test_acute_escalation_beds_follow_the_level(opel_run) -> None:
    sc, result = opel_run
    assert sc.escalation is not None
    actions = sc.escalation.actions
    T = float(sc.simulation.duration_days)
    counts = {"started": 0, "stopped": 0, "cancelled": 0}
    used_escalation_bed = removed_while_occupied = 0
    for rep, p in result.patients().groupby("replication"):
        log = escalation_of(result, rep)
        lt, lv = level_path(log)
        for i, a in enumerate(actions):
            got = action_events(log, i)
            want = expected_action_events(lt, lv, a.level, a.delay_hours / 24.0, T)
            assert_same_events(got, want, f"action {i} in replication {rep}")
            for _, e in got:
                if e in counts:
                    counts[e] += 1
        # beds in force: base plus the actions active at the instant of each grant
        bed_start, acute_end = p["bed_start"].to_numpy(dtype=float), p["acute_end"].to_numpy(dtype=float)
        t, occ = occupancy_at_grants(bed_start, acute_end)
        cap = ACUTE_BASE + extra_capacity(log, "acute", t)
        assert np.all(occ <= cap), "a bed granted beyond the base plus active escalation beds"
        used_escalation_bed += int(np.sum(occ > ACUTE_BASE))
        # escalation beds close to new patients at once, without evicting anyone
        stops = np.array([t for t, e in action_events(log, 0) if e == "stopped"])
        in_bed = count_just_before(bed_start, acute_end, stops)
        removed_while_occupied += int(np.sum(in_bed > ACUTE_BASE))
        # the daily capacity table agrees with the action log
        d = result.daily()
        d = d[d["replication"] == rep]
        want_beds = daily_mean_of_steps(ACUTE_BASE, log, "acute", len(d))
        assert np.allclose(d["acute_beds"].to_numpy(), want_beds, rtol=0, atol=1e-9)
    assert counts["started"] > 0 and counts["stopped"] > 0 and counts["cancelled"] > 0, counts
    assert used_escalation_bed > 0, "no grant used an escalation bed: capacity added is untested"
    assert removed_while_occupied > 0, "escalation beds were never removed while in use"


def step_integral(times: np.ndarray, values: np.ndarray, a: float, b: float) -> float:
    """Integral over [a, b] of a right-continuous step function given at sorted breakpoints."""
    edges = np.clip(np.append(times, b), a, b)
    return float(np.sum(values * np.diff(edges)))


def test_escalation_kpis_from_the_logs(opel_run) -> None:
    """OPEL days, escalation bed-days opened and used, and action costs, recomputed from the logs."""
    sc, result = opel_run
    assert sc.escalation is not None
    actions = sc.escalation.actions
    T = float(sc.simulation.duration_days)
    kpis, daily = result.kpi_frame(), result.daily()
    for rep, p in result.patients().groupby("replication"):
        k = kpis.loc[rep]
        log = escalation_of(result, rep)
        lt, lv = level_path(log)
        for level in (1, 2, 3, 4):
            assert k[f"opel_days_level_{level}"] == pytest.approx(
                step_integral(lt, (lv == level).astype(float), 0.0, T), abs=1e-6)
        d = daily[daily["replication"] == rep]
        want_day_max = [max(lv[(lt < day + 1) & (lt >= day)].tolist() + [lv[lt <= day][-1]]) for day in d["day"]]
        assert d["opel_level"].tolist() == want_day_max
        cost = 0.0
        opened = 0.0
        for i, a in enumerate(actions):
            for on, off in active_intervals(log, i, T):
                span = max(0.0, min(off, T) - max(on, 0.0))
                cost += span * (a.cost_per_day + a.cost_per_place_day * (a.amount or 0))
                cost += a.cost_one_off if 0.0 <= on < T else 0.0
                opened += span * (a.amount or 0) if a.target == "acute" else 0.0
        assert k["escalation_cost"] == pytest.approx(cost, rel=1e-9)
        assert k["escalation_bed_days_opened"] == pytest.approx(opened, rel=1e-9)
        # used: occupied beds above the base, up to the escalation beds open
        bed_start, acute_end = p["bed_start"].to_numpy(dtype=float), p["acute_end"].to_numpy(dtype=float)
        grid = np.unique(np.concatenate(([0.0], bed_start[~np.isnan(bed_start)], acute_end[~np.isnan(acute_end)],
                                         log["time"].to_numpy(dtype=float))))
        grid = grid[(grid >= 0.0) & (grid < T)]
        s = np.sort(bed_start[~np.isnan(bed_start)])
        e = np.sort(np.where(np.isnan(acute_end), np.inf, acute_end)[~np.isnan(bed_start)])
        occ = np.searchsorted(s, grid, side="right") - np.searchsorted(e, grid, side="right")
        extra = extra_capacity(log, "acute", grid)
        used = step_integral(grid, np.clip(occ - ACUTE_BASE, 0.0, extra), 0.0, T)
        assert used > 0
        assert k["escalation_bed_days_used"] == pytest.approx(used, rel=1e-9)
        assert k["escalation_actions_started"] == sum(
            1 for i in range(len(actions)) for on, _ in active_intervals(log, i, T) if 0.0 <= on < T)


def test_spot_purchased_service_places_follow_the_level(scenario_builder) -> None:
    base = 3
    sc = validate_dict(scenario_builder(
        rate=8.0, beds="unlimited", start_date=START.isoformat(), duration_days=120, warmup_days=10,
        pathway_mix={"P0": 0.5, "P2": 0.5},
        pathways={"P0": {}, "P2": {"services": {"ic": {"capacity": base,
                                                        "los": {"dist": "exponential", "mean": 0.7}}}}},
        escalation={"evaluate_at_hours": [8, 20], "hold_days": 1.0,
                    "levels": {2: {"any": [{"metric": "delayed_patients", "above": 3}]}},
                    "actions": [{"level": 2, "kind": "add_capacity", "target": "ic", "amount": 2,
                                 "delay_hours": 6}]}))
    result = simulate(sc, replications=2, seed=7)
    assert result.checks == []
    times = evaluation_times(sc)
    used = 0
    for rep, p in result.patients().groupby("replication"):
        log = escalation_of(result, rep)
        lt, lv = level_path(log)
        metrics = metrics_from_table(p, times, np.inf, sc)
        path, _, _ = replay_levels(sc, times, metrics)
        assert [lvl for _, lvl in path] == lv.tolist()
        got = action_events(log, 0)
        assert_same_events(got, expected_action_events(lt, lv, 2, 0.25, 120.0), f"replication {rep}")
        assert any(e == "started" for _, e in got) and any(e == "stopped" for _, e in got)
        m = (p["service"] == "ic").to_numpy()
        t, occ = occupancy_at_grants(p["slot_granted"].to_numpy(dtype=float)[m], p["ds_end"].to_numpy(dtype=float)[m])
        assert np.all(occ <= base + extra_capacity(log, "ic", t))
        used += int(np.sum(occ > base))
    assert used > 0, "no patient used a spot-purchased place"


def test_extra_assessors_work_only_within_team_hours(scenario_builder) -> None:
    """add_capacity on the assessment team: more concurrent assessments, but a closed team stays closed."""
    staff = 2
    sc = validate_dict(scenario_builder(
        rate=8.0, beds="unlimited", start_date=START.isoformat(), duration_days=90, warmup_days=10,
        pathway_mix={"P0": 0.5, "P1": 0.5},
        pathways={"P0": {}, "P1": {"needs_assessment": True,
                                   "services": {"reablement": {"capacity": "unlimited",
                                                               "los": {"dist": "fixed", "value": 3.0}}}}},
        assessment={"staff": staff, "weekend_staff": 0, "hours": {"start": 9, "end": 17},
                    "duration": {"dist": "exponential", "mean": 0.15}},
        escalation={"evaluate_at_hours": [8, 12, 16, 20], "hold_days": 1.0,
                    "levels": {2: {"any": [{"metric": "delayed_patients", "above": 6}]}},
                    "actions": [{"level": 2, "kind": "add_capacity", "target": "assessment", "amount": 2,
                                 "delay_hours": 2}]}))
    result = simulate(sc, replications=2, seed=21)
    assert result.checks == []
    T = float(sc.simulation.duration_days)
    times = evaluation_times(sc)
    extra_used = 0
    for rep, p in result.patients().groupby("replication"):
        log = escalation_of(result, rep)
        lt, lv = level_path(log)
        path, _, _ = replay_levels(sc, times, metrics_from_table(p, times, np.inf, sc))
        assert [lvl for _, lvl in path] == lv.tolist()
        assert_same_events(action_events(log, 0), expected_action_events(lt, lv, 2, 2 / 24, T), f"rep {rep}")
        start = p["assess_start"].to_numpy(dtype=float)
        t, occ = occupancy_at_grants(start, p["assess_end"].to_numpy(dtype=float))
        h = hour_of_day(t)
        assert np.all((weekday(t) < 5) & (h >= 9 - 24 * TOL) & (h < 17 + 24 * TOL)), "assessment out of hours"
        assert np.all(occ <= staff + extra_capacity(log, "assessment", t))
        extra_used += int(np.sum(occ > staff))
        # power: the extra assessors were in force out of hours too, and nobody started then
        on = active_intervals(log, 0, T)
        assert any(hour_of_day(np.array([a]))[0] >= 17 or b - a > 1 for a, b in on)
    assert extra_used > 0, "the extra assessors were never used"


# --------------------------------------------------------------------------- 4: disruptions
CLOSE_FROM, CLOSE_TO, CLOSE_BEDS, WARD_BEDS = 10, 20, 5, 12


def test_no_patient_occupies_a_closed_acute_bed(scenario_builder) -> None:
    open_beds = WARD_BEDS - CLOSE_BEDS
    sc = validate_dict(scenario_builder(
        rate=11.0, beds=WARD_BEDS, start_date=START.isoformat(), duration_days=40, warmup_days=5,
        disruptions=[{"kind": "ward_closure", "target": "acute", "beds": CLOSE_BEDS,
                      "start": (START + dt.timedelta(days=CLOSE_FROM)).isoformat(),
                      "end": (START + dt.timedelta(days=CLOSE_TO)).isoformat()}]))
    result = simulate(sc, replications=2, seed=31)
    assert result.checks == []
    a, b = float(CLOSE_FROM), float(CLOSE_TO + 1)  # the end date is included
    for rep, p in result.patients().groupby("replication"):
        bed_start, acute_end = p["bed_start"].to_numpy(dtype=float), p["acute_end"].to_numpy(dtype=float)
        t, occ = occupancy_at_grants(bed_start, acute_end)
        closed = (t >= a) & (t < b)
        assert closed.sum() > 10
        assert np.all(occ[closed] <= open_beds), "a bed granted during the closure beyond the open beds"
        assert np.all(occ[~closed] <= WARD_BEDS)
        assert np.any(occ[~closed] > open_beds), "outside the closure the closed beds are used (power)"
        # at every instant of the closure: occupied <= max(open beds, patients already in bed at its start)
        te, occ_e = occupancy_at_events(bed_start, acute_end)
        inside = (te >= a) & (te < b)
        old = (bed_start < a) & (np.isnan(acute_end) | (acute_end > a))
        assert old.sum() > open_beds, "closure starts with fewer patients than open beds (no power)"
        old_left = count_just_before(np.where(old, bed_start, np.nan), acute_end, te[inside] + TOL)
        assert np.all(occ_e[inside] <= np.maximum(open_beds, old_left))
        assert np.all(occ_e[inside] <= open_beds + old_left)
        # nobody was moved out: every stay ends exactly at its medically fit time (P0, no transfer, no hours)
        done = ~np.isnan(acute_end)
        assert np.allclose(acute_end[done], p["mffd"].to_numpy(dtype=float)[done], rtol=0, atol=TOL)
        # ED boarding builds up during the closure
        arr = p["arrival"].to_numpy(dtype=float)
        boarding = count_just_before(arr, bed_start, np.array([a + 5.0]))
        assert boarding[0] > 0
        d = result.daily()
        d = d[d["replication"] == rep]
        want = np.where((d["day"] >= CLOSE_FROM) & (d["day"] <= CLOSE_TO), open_beds, WARD_BEDS)
        assert d["acute_beds"].tolist() == want.tolist()


@pytest.mark.parametrize("disruption", [{"kind": "staff_absence", "percent": 25.0},  # floor(7.5) = 7, not 8
                                        {"kind": "ward_closure", "beds": 3}], ids=lambda d: d["kind"])
def test_service_disruption_limits_grants(scenario_builder, disruption) -> None:
    cap, reduced = 10, 7
    sc = validate_dict(scenario_builder(
        rate=10.0, beds="unlimited", start_date=START.isoformat(), duration_days=60, warmup_days=10,
        pathway_mix={"P0": 0.55, "P2": 0.45},
        pathways={"P0": {}, "P2": {"services": {"ic": {"capacity": cap,
                                                        "los": {"dist": "exponential", "mean": 2.0}}}}},
        disruptions=[{**disruption, "target": "ic",
                      "start": (START + dt.timedelta(days=20)).isoformat(),
                      "end": (START + dt.timedelta(days=34)).isoformat()}]))
    result = simulate(sc, replications=2, seed=5)
    assert result.checks == []
    a, b = 20.0, 35.0
    for rep, p in result.patients().groupby("replication"):
        m = (p["service"] == "ic").to_numpy()
        granted, ds_end = p["slot_granted"].to_numpy(dtype=float)[m], p["ds_end"].to_numpy(dtype=float)[m]
        t, occ = occupancy_at_grants(granted, ds_end)
        inside = (t >= a) & (t < b)
        assert inside.sum() > 5
        assert np.all(occ[inside] <= reduced)
        assert np.any(occ[inside] == reduced)
        assert np.all(occ[~inside] <= cap) and np.any(occ[~inside] > reduced)
        # places in use when the disruption starts are not taken from their patients
        assert count_just_before(granted, ds_end, np.array([a]))[0] > reduced
        d = result.daily()
        d = d[d["replication"] == rep]
        want = np.where((d["day"] >= a) & (d["day"] < b), reduced, cap)
        assert d["service_ic_capacity"].tolist() == want.tolist()


# --------------------------------------------------------------------------- 5: electives
def test_cancelled_electives_never_occupy_a_bed(scenario_builder) -> None:
    beds = 10
    sc = validate_dict(scenario_builder(
        rate=7.0, beds=beds, start_date=START.isoformat(), duration_days=90, warmup_days=10,
        electives={"rate_per_weekday": 3.0, "admission_hours": {"start": 7, "end": 11},
                   "los": {"dist": "exponential", "mean": 1.0}},
        escalation={"evaluate_at_hours": [0, 9, 15], "hold_days": 0.5,
                    "levels": {2: {"any": [{"metric": "ed_boarding", "above": 0}]}},
                    # 8 hours: a raise at 00:00 cancels from 08:00, in the middle of the admission hours
                    "actions": [{"level": 2, "kind": "cancel_electives", "delay_hours": 8}]}))
    result = simulate(sc, replications=2, seed=17)
    assert result.checks == []
    n = {"no_bed": 0, "escalation": 0, "": 0}
    for rep, p in result.patients().groupby("replication"):
        log = escalation_of(result, rep)
        el = p[p["kind"] == "elective"]
        ne = p[p["kind"] == "non_elective"]
        assert (ne["cancelled"] == "").all()
        arr = el["arrival"].to_numpy(dtype=float)
        # weekdays only, within the admission hours
        assert np.all(weekday(arr) < 5)
        h = hour_of_day(arr)
        assert np.all((h >= 7 - 24 * TOL) & (h <= 11 + 24 * TOL))
        cancelled = el["cancelled"].to_numpy()
        for c in n:
            n[c] += int(np.sum(cancelled == c))
        gone = cancelled != ""
        for col in ("bed_start", "mffd", "acute_end"):
            assert el.loc[gone, col].isna().all(), col
        # admitted electives get their bed on arrival
        assert np.allclose(el.loc[~gone, "bed_start"], el.loc[~gone, "arrival"], rtol=0, atol=TOL)
        # cancelled by escalation exactly while cancel_electives is in force
        on = active_at(active_intervals(log, 0, float(sc.simulation.duration_days)), arr)
        assert np.all((cancelled == "escalation") == on)
        # otherwise turned away exactly when every bed is taken (cancelled electives take none)
        busy = count_just_before(p["bed_start"].to_numpy(dtype=float), p["acute_end"].to_numpy(dtype=float), arr)
        assert np.all((cancelled == "no_bed") == (~on & (busy >= beds)))
        k = result.kpi_frame().loc[rep]
        due = (arr >= 0) & (arr < sc.simulation.duration_days)
        assert k["electives_cancelled_escalation"] == np.sum(due & (cancelled == "escalation"))
        assert k["electives_cancelled_no_bed"] == np.sum(due & (cancelled == "no_bed"))
        assert k["electives_admitted"] == np.sum(due & (cancelled == ""))
    assert min(n.values()) > 0, n


# --------------------------------------------------------------------------- 6: discharge hours
DISCHARGE = {"hours": {"start": 9, "end": 17}, "weekend_rate": {"P0": 0.0}}
ELECTIVES = {"rate_per_weekday": 2.0, "admission_hours": {"start": 7, "end": 11},
             "los": {"dist": "exponential", "mean": 1.5}}


def outside_base_hours(t: np.ndarray) -> np.ndarray:
    h = hour_of_day(t)
    return (h < 9 - 24 * TOL) | (h > 17 + 24 * TOL) | (weekday(t) >= 5)


def test_no_discharge_outside_discharge_hours(scenario_builder) -> None:
    sc = validate_dict(scenario_builder(rate=8.0, beds=40, start_date=START.isoformat(), duration_days=60,
                                        warmup_days=10, discharge=DISCHARGE, electives=ELECTIVES))
    result = simulate(sc, replications=2, seed=3)
    assert result.checks == []
    p = result.patients()
    end = p["acute_end"].to_numpy(dtype=float)
    done = ~np.isnan(end)
    assert done.sum() > 500
    assert not np.any(outside_base_hours(end[done]))
    # power: many were fit outside the hours (held in bed), some of them over a weekend
    mffd = p["mffd"].to_numpy(dtype=float)[done]
    held = end[done] - mffd > TOL
    assert np.sum(held & outside_base_hours(mffd)) > 50
    assert np.sum(held & (weekday(mffd) >= 5)) > 10
    assert np.any(held & (p["kind"].to_numpy()[done] == "elective"))
    # and nobody was kept who could leave: fit within the hours on a weekday means leaving at once
    ok = ~outside_base_hours(mffd) & (hour_of_day(mffd) < 17)
    assert np.allclose(end[done][ok], mffd[ok], rtol=0, atol=TOL)


def extend_discharge_scenario(builder) -> Scenario:
    return validate_dict(builder(
        rate=8.0, beds=16, start_date=START.isoformat(), duration_days=120, warmup_days=10,
        discharge=DISCHARGE, electives=ELECTIVES,
        # an evaluation at 02:00 can stop the extension between a late-evening readiness and 06:00
        escalation={"evaluate_at_hours": [2, 8, 14, 20], "hold_days": 1.0,
                    "levels": {2: {"any": [{"metric": "ed_boarding", "above": 0}]}},
                    "actions": [{"level": 2, "kind": "extend_discharge", "hours": {"start": 6, "end": 22},
                                 "weekend_rate": 0.5}]}))


@pytest.fixture(scope="module")
def extend_run(scenario_builder):
    sc = extend_discharge_scenario(scenario_builder)
    return sc, simulate(sc, replications=3, seed=8)


def discharges_outside_base(sc, result):
    """(rep, acute_end, active at that time, within extended hours) for discharges outside base hours."""
    T = float(sc.simulation.duration_days)
    out = []
    for rep, p in result.patients().groupby("replication"):
        log = escalation_of(result, rep)
        end = p["acute_end"].to_numpy(dtype=float)
        end = end[~np.isnan(end)]
        x = end[outside_base_hours(end)]
        h = hour_of_day(x)
        out.append((rep, x, active_at(active_intervals(log, 0, T), x),
                    (h >= 6 - 24 * TOL) & (h <= 22 + 24 * TOL)))
    return out


def test_extended_discharge_hours_used_while_active(extend_run) -> None:
    """Discharges outside the base hours happen, and always within the extended hours."""
    sc, result = extend_run
    assert result.checks == []
    n_outside = n_active = 0
    for _, x, on, in_ext in discharges_outside_base(sc, result):
        assert np.all(in_ext), "a discharge outside even the extended hours"
        n_outside += len(x)
        n_active += int(on.sum())
    assert n_active > 20, "the extension was never used (no power)"


def test_no_discharge_outside_base_hours_while_extension_inactive(extend_run) -> None:
    """Once an extension stops, patients already waiting are held to the base hours again."""
    sc, result = extend_run
    bad = [(rep, x[~on]) for rep, x, on, _ in discharges_outside_base(sc, result)]
    assert all(len(x) == 0 for _, x in bad), bad


def test_waiting_patients_released_when_extension_starts(extend_run) -> None:
    """Discharge rules are 'in force while active': nobody stays in bed past a weekday start of the extension."""
    sc, result = extend_run
    T = float(sc.simulation.duration_days)
    held = 0
    for rep, p in result.patients().groupby("replication"):
        log = escalation_of(result, rep)
        starts = np.array([t for t, e in action_events(log, 0) if e == "started"])
        # weekday starts at 08:00, 14:00 or 20:00: inside the extended hours, so a fit P0 patient may leave
        starts = starts[(weekday(starts) < 5) & (hour_of_day(starts) >= 6) & (hour_of_day(starts) < 22)]
        assert len(starts) > 5
        mffd = p["mffd"].to_numpy(dtype=float)
        end = p["acute_end"].to_numpy(dtype=float)
        end = np.where(np.isnan(end), T, end)
        held += int(np.sum((mffd[:, None] < starts[None, :]) & (end[:, None] > starts[None, :] + TOL)))
    assert held == 0, f"{held} patient-starts with a fit patient kept in bed while the extension allowed leaving"


# --------------------------------------------------------------------------- 7: demand surge
def test_demand_surge_multiplies_non_elective_arrivals(scenario_builder) -> None:
    rate, factor, reps = 8.0, 2.0, 4
    surge_from, surge_to, T = 20, 39, 60  # 20 surge days
    kw = {"rate": rate, "beds": "unlimited", "start_date": START.isoformat(), "duration_days": T,
          "warmup_days": 0, "electives": ELECTIVES}
    surge = [{"kind": "demand_surge", "factor": factor,
              "start": (START + dt.timedelta(days=surge_from)).isoformat(),
              "end": (START + dt.timedelta(days=surge_to)).isoformat()}]
    with_surge = simulate(validate_dict(scenario_builder(**kw, disruptions=surge)), replications=reps, seed=4)
    without = simulate(validate_dict(scenario_builder(**kw)), replications=reps, seed=4)
    p, q = with_surge.patients(), without.patients()
    ne = p[p["kind"] == "non_elective"]
    arr = ne["arrival"].to_numpy(dtype=float)
    a, b = float(surge_from), float(surge_to + 1)
    in_win = np.sum((arr >= a) & (arr < b))
    out_win = np.sum(((arr >= 0) & (arr < a)) | ((arr >= b) & (arr < T)))
    surge_days, other_days = b - a, T - (b - a)

    def interval(mean: float) -> tuple[float, float]:
        return stats.poisson.ppf(0.0005, mean), stats.poisson.ppf(0.9995, mean)

    lo, hi = interval(reps * factor * rate * surge_days)
    assert lo <= in_win <= hi
    lo, hi = interval(reps * rate * other_days)
    assert lo <= out_win <= hi
    # power: the surge count is not consistent with the base rate
    assert in_win > interval(reps * rate * surge_days)[1]
    # common random numbers: arrivals before the surge are unchanged, electives are not surged at all
    for rep in range(reps):
        x = p[(p["replication"] == rep)]
        y = q[(q["replication"] == rep)]
        before_x = np.sort(x.loc[(x["kind"] == "non_elective") & (x["arrival"] < a), "arrival"].to_numpy())
        before_y = np.sort(y.loc[(y["kind"] == "non_elective") & (y["arrival"] < a), "arrival"].to_numpy())
        assert np.array_equal(before_x, before_y)
        el_x = np.sort(x.loc[x["kind"] == "elective", "arrival"].to_numpy())
        el_y = np.sort(y.loc[y["kind"] == "elective", "arrival"].to_numpy())
        assert len(el_x) > 0 and np.array_equal(el_x, el_y)


# --------------------------------------------------------------------------- 8: the winter scenarios
@pytest.fixture(scope="module")
def winter_run():
    sc = load_scenario(SCENARIOS_DIR / "rotherham_winter_2016.yaml")
    # the Jan-Mar minus Oct-Dec difference has a between-replication SD about equal to its mean
    # (~10 delayed patients a day), so 4 replications detect it only about half the time
    return sc, simulate(sc, replications=16, seed=2016, workers=2)


def test_winter_rise_in_delays(winter_run) -> None:
    _, result = winter_run
    assert result.checks == []
    daily = result.daily()
    month = pd.to_datetime(daily["date"]).dt.month
    late = daily[month.isin([1, 2, 3])].groupby("replication")["delayed_midnight"].mean()
    early = daily[month.isin([10, 11, 12])].groupby("replication")["delayed_midnight"].mean()
    diff = (late - early).to_numpy()
    n = len(diff)
    half = stats.t.ppf(0.975, n - 1) * diff.std(ddof=1) / math.sqrt(n)
    assert diff.mean() - half > 0, f"Jan-Mar minus Oct-Dec delayed per day: {diff}"


def test_winter_escalation_mechanisms_act(winter_run) -> None:
    _, result = winter_run
    kpis = result.kpi_frame()
    log = result.escalation()
    levels = log[log["record"] == "level"]
    for rep, lv in levels.groupby("replication"):
        reached = set(lv["level"].tolist())
        assert {2, 3} <= reached, f"replication {rep} reached only {sorted(reached)}"
    assert (kpis["escalation_cost"] > 0).all()
    assert (kpis["opel_days_level_2"] + kpis["opel_days_level_3"] > 0).all()
    # a mild replication may cancel nothing; over the replications both kinds of cancellation occur
    assert kpis["electives_cancelled_no_bed"].sum() > 0
    assert kpis["electives_cancelled_escalation"].sum() > 0
    assert (kpis["escalation_actions_started"] > 0).all()
    pts = result.patients()
    el = pts[pts["kind"] == "elective"]
    assert el.loc[el["cancelled"] != "", "bed_start"].isna().all()
    # the norovirus closure takes 28 beds on 9-22 January 2017: compare capacity net of escalation beds
    daily = result.daily()
    jan = pd.to_datetime(daily["date"])
    closed = (jan >= "2017-01-09") & (jan <= "2017-01-22")
    cap_wo_extra = daily["acute_beds"] - daily["escalation_beds_open"]
    assert np.allclose(cap_wo_extra[closed], 590 - 28)
    assert np.allclose(cap_wo_extra[~closed], 590)


def test_winter_escalation_beds_do_not_flap(winter_run) -> None:
    """Escalation beds stay open at least their minimum duration and close only when their patients have gone.

    From the escalation log and the stay records alone: every spell of the acute-bed action that ended in the
    window lasted at least min_duration_hours; at the moment it ended, the patients in acute beds fitted in the
    beds without it (the beds were empty); and after standing down the beds closed no sooner than the
    stand-down delay.  Power: the action ran in every replication and spells ended in the window.
    (Draining, closing to new patients until empty, is tested exactly in test_nhs_definitions.py.)
    """
    sc, result = winter_run
    assert sc.escalation is not None
    i, action = next((i, a) for i, a in enumerate(sc.escalation.actions)
                     if a.kind == "add_capacity" and a.target == "acute")
    assert action.close_when_empty and action.min_duration_hours >= 24
    T = float(sc.simulation.duration_days)
    pts = result.patients()
    ended = 0
    for rep, p in pts.groupby("replication"):
        log = escalation_of(result, rep)
        events = action_events(log, i)
        assert any(e == "started" for _, e in events), f"replication {rep}: the beds never opened"
        bed_start, acute_end = p["bed_start"].to_numpy(dtype=float), p["acute_end"].to_numpy(dtype=float)
        on = down = None
        for t, e in events:
            if e == "started":
                on, down = t, None
            elif e == "standing_down":
                down = t
            elif e == "resumed":
                down = None
            elif e == "stopped":
                assert on is not None and down is not None
                assert t - on >= action.min_duration_hours / 24 - TOL
                assert t - down >= action.stand_down_hours / 24 - TOL
                # core beds: 590, less 28 closed for norovirus on 9-22 January 2017 (model days 100-113)
                core = 590 - (28 if 100 <= t < 114 else 0)
                assert count_just_before(bed_start, acute_end, np.array([t + 1e-9]))[0] <= core
                ended += t < T
                on = None
    assert ended > 0


WINTER_OPTIONS = {
    "rotherham_winter_2017_contingency_beds.yaml": ("contingency_spot_beds", 30 * 121 * 110),
    "rotherham_winter_2017_reablement.yaml": ("independent_reablement", 27 * 182 * 85),
}


@pytest.mark.parametrize("name", sorted(WINTER_OPTIONS))
def test_winter_funded_option_costs(name: str) -> None:
    service, cost = WINTER_OPTIONS[name]
    sc = load_scenario(SCENARIOS_DIR / name)
    assert sc.simulation.duration_days == 182
    result = simulate(sc, replications=1, seed=1)
    assert result.checks == []
    k = result.kpi_frame().iloc[0]
    assert k["service_capacity_cost"] == pytest.approx(cost, abs=1e-6)
    for suffix in ("occupied_mean", "utilisation_pct", "admissions"):
        assert np.isfinite(k[f"service_{service}_{suffix}"])
    d = result.daily()
    assert d[f"service_{service}_capacity"].max() == (30 if "contingency" in name else 27)


@pytest.fixture(scope="module")
def process_options() -> dict[str, tuple[Any, Any]]:
    """The two process options (no new places), 60 days after a 60-day warm-up, one replication each."""
    out = {}
    for key in ("seven_day_assessment", "trusted_assessor"):
        sc = load_scenario(SCENARIOS_DIR / f"rotherham_winter_2017_{key}.yaml",
                           overrides=["simulation.duration_days=60", "simulation.warmup_days=60"])
        result = simulate(sc, replications=1, seed=1)
        assert result.checks == []
        out[key] = (sc, result)
    return out


def _assessments(result: Any) -> pd.DataFrame:
    p = result.patients()
    return p[p["assess_start"].notna() & (p["assess_start"] >= 0)]


def test_seven_day_assessment_assesses_at_weekends_in_weekday_hours(process_options) -> None:
    """Option C staffs weekends as weekdays, 09:00-17:00 (the baseline: 2 assessors, 10:00-16:00).  Weekend
    assessments start only within 09:00-17:00 and some start in the hours the baseline's weekend team does not
    work; the option's running cost is its fixed cost per day (GBP 1,029) over the 60 days, and it buys no places."""
    sc, result = process_options["seven_day_assessment"]
    base = load_scenario(SCENARIOS_DIR / "rotherham_winter_2016.yaml")
    assert base.assessment is not None and sc.assessment is not None
    assert (base.assessment.weekend_hours.start, base.assessment.weekend_hours.end) == (10, 16)
    start = _assessments(result)["assess_start_datetime"]
    weekend = start[start.dt.day_of_week >= 5]
    hour = weekend.dt.hour + weekend.dt.minute / 60
    assert len(weekend) > 20 and hour.between(9, 17, inclusive="left").all()
    assert ((hour < 10) | (hour >= 16)).sum() > 0, "no weekend assessment outside the baseline's weekend hours"
    k = result.kpi_frame().iloc[0]
    assert k["cost_fixed"] == pytest.approx(1029 * 60) and k["service_capacity_cost"] == 0.0


def test_trusted_assessor_halves_the_assessment(process_options) -> None:
    """Option D: assessments take gamma(mean 0.3, sd 0.2) days instead of 0.6.  Over n assessments the mean is
    within 3.29 sd / sqrt(n) of 0.3 (99.9%); with n > 300 that band (+-0.04) is far from the baseline's 0.6.
    Its cost is the one-off investment (GBP 45,000); it buys no places."""
    _, result = process_options["trusted_assessor"]
    a = _assessments(result)
    duration = (a["assess_end"] - a["assess_start"]).dropna().to_numpy()
    band = 3.29 * 0.2 / math.sqrt(len(duration))
    assert len(duration) > 300 and abs(duration.mean() - 0.3) < band, (duration.mean(), band)
    assert abs(0.6 - 0.3) > 5 * band
    k = result.kpi_frame().iloc[0]
    assert k["cost_investment"] == 45000.0 and k["service_capacity_cost"] == 0.0

"""Invariants checked on every run: conservation, ordering, capacity, Little's law.

A violation means a bug in flowsim, not a user mistake; runs log them as
errors and tests assert there are none.
"""

from __future__ import annotations

import numpy as np

from flowsim.model.codes import Cancelled, Stage
from flowsim.model.model import RawRun
from flowsim.results.delays import Segment, segments
from flowsim.results.records import Records
from flowsim.results.series import Level, visit_load
from flowsim.scenario.schema import Scenario

_ORDER = ("arrival", "bed_start", "clinically_fit", "mffd", "assess_start", "assess_end", "slot_granted",
          "acute_end", "stay_end", "onward_granted", "ds_end")
_TOL = 1e-9
IN_ACUTE, IN_SERVICE = Stage.IN_ACUTE, Stage.IN_SERVICE


def _little(starts: np.ndarray, ends: np.ndarray, T: float, lev: Level) -> tuple[float, float]:
    """Little's law over [0, T]: area under the level (``lev``, of these intervals) vs sum of sojourns clipped to
    the window."""
    area = float(np.diff(lev.integral(np.array([0.0, T])))[0])
    ok = ~np.isnan(starts)
    s = np.clip(starts[ok], 0.0, T)
    e = np.clip(np.where(np.isnan(ends[ok]), T, ends[ok]), 0.0, T)
    return area, float(np.sum(e - s))


def _order_checks(rec: Records, sc: Scenario) -> list[str]:
    """Stamps in journey order; ready for transfer after medically fit, before a place, on the assessment's side."""
    problems = []
    prev = rec["arrival"]
    for f in _ORDER[1:]:
        cur = rec[f]
        both = ~np.isnan(prev) & ~np.isnan(cur)
        bad = int(np.sum(cur[both] < prev[both] - _TOL))
        if bad:
            problems.append(f"{bad} stays have {f} before an earlier stage")
        prev = np.where(np.isnan(cur), prev, cur)
    before = rec.by_pathway({p: pw.assessment_timing == "before_ready" for p, pw in sc.pathways.items()}, False, bool)
    for earlier, later, mask, what in (
            ("mffd", "rft", None, "ready for transfer before medically fit"),
            ("rft", "slot_granted", None, "a place granted before ready for transfer"),
            ("rft", "assess_start", ~before, "an assessment after readiness starting before it"),
            ("assess_end", "rft", before, "ready for transfer before an assessment that precedes it")):
        a, b = rec[earlier], rec[later]
        ok = ~np.isnan(a) & ~np.isnan(b) & (True if mask is None else mask)
        bad = int(np.sum(b[ok] < a[ok] - _TOL))
        if bad:
            problems.append(f"{bad} stays have {what}")
    return problems


def _bed_census_checks(rec: Records, segs: list[Segment], T: float) -> list[str]:
    """Nobody outside a bed is in a bed census: every counted delay, and every NCTR day, is spent in a bed.

    Per stay: a counted acute delay lies inside the acute stay; a counted non-acute delay lies inside a
    bed-based downstream stay (after leaving the acute bed, before leaving the service).  In total: at
    every midnight the delayed census in acute beds is at most the acute occupancy.
    """
    problems = []
    bed_start, acute_end, ds_end = rec["bed_start"], rec["acute_end"], rec["ds_end"]
    for seg in segs:
        has = ~np.isnan(seg.start) & seg.counted
        if seg.acute:
            lo, hi = bed_start, acute_end
        else:  # a downstream place: from leaving the acute bed, or from the grant for a step-up referral
            lo, hi = np.where(rec["step_up"] >= 0, rec["slot_granted"], acute_end), ds_end
            bad = int(np.sum(has & ~seg.in_bed))
            if bad:
                problems.append(f"{bad} delays counted in a bed census for patients who are not in a bed ({seg.name})")
        inside = (~np.isnan(lo) & (seg.start >= lo - _TOL)
                  & (np.isnan(seg.end) | np.isnan(hi) | (seg.end <= hi + _TOL))
                  & ~(np.isnan(seg.end) & ~np.isnan(hi)))
        bad = int(np.sum(has & ~inside))
        if bad:
            problems.append(f"{bad} {seg.name} delays fall outside the bed they are counted in")
    nctr = ~np.isnan(rec["mffd"]) & ~np.isnan(rec["bed_start"])
    bad = int(np.sum(~np.isnan(rec["mffd"]) & np.isnan(rec["bed_start"])))
    if bad:
        problems.append(f"{bad} patients medically fit without ever having an acute bed")
    midnights = np.arange(int(round(T)), dtype=float) + 1.0
    occ = rec.level("bed_start", "acute_end", T).at(midnights, left=True)
    acute_segs = [seg for seg in segs if seg.acute]
    starts = np.concatenate([np.where(seg.counted, seg.start, np.nan) for seg in acute_segs])
    ends = np.concatenate([seg.end for seg in acute_segs])
    delayed = Level.from_intervals(starts, ends, T).at(midnights, left=True)
    nctr_mid = Level.from_intervals(np.where(nctr, rec["mffd"], np.nan), acute_end, T).at(midnights, left=True)
    if np.any(delayed > occ + _TOL) or np.any(nctr_mid > occ + _TOL):
        problems.append("the delayed or NCTR census exceeds the patients in acute beds on some midnight")
    return problems


def _not_through_ed(rec: Records) -> np.ndarray:
    """Stays that never pass the front door: electives and step-up referrals from the community."""
    return rec["elective"] | (rec["step_up"] >= 0)


def check_records(rec: Records, raw: RawRun, sc: Scenario, segs: list[Segment] | None = None) -> list[str]:
    """Invariant violations of one replication (empty when sound): stage order, conservation, Little's law, capacity in
    force, work conservation and the bed census.  ``segs``: the records' delay segments when the caller has them
    (``flowsim.results.delays.segments``; worked out here otherwise)."""
    problems: list[str] = []
    T = raw.t1
    # 0. a cancelled elective never gets a bed
    bad = int(np.sum((rec["cancelled"] != Cancelled.NOT) & ~np.isnan(rec["bed_start"])))
    if bad:
        problems.append(f"{bad} cancelled electives occupied a bed")
    # 1. stamps are in journey order; nobody outside a bed is in a bed census
    problems.extend(_order_checks(rec, sc))
    if "dtoc_start" in rec.cols:
        problems.extend(_bed_census_checks(rec, segments(rec) if segs is None else segs, T))
    emergency_arrival = np.where(_not_through_ed(rec), np.nan, rec["arrival"])
    problems.extend(_conservation_checks(rec, emergency_arrival, T))
    # 3. no grant beyond the capacity in force at the moment of the grant
    cap = Level.from_steps(*raw.capacity["acute"])
    occ = rec.level("bed_start", "acute_end", T)
    # grants only: snapshot patients already in a bed or place were placed there, not granted
    t = rec["bed_start"][~np.isnan(rec["bed_start"]) & ~(rec["initial_stage"] >= IN_ACUTE)]
    over = int(np.sum(occ.at(t) > cap.at(t) + _TOL))
    if over:
        problems.append(f"{over} acute bed grants exceeded the capacity in force")
    problems.extend(_service_grant_checks(rec, raw, sc, T))
    # 4. work conservation: nobody starts waiting while a slot they may use is free
    waiting = rec["bed_start"] - emergency_arrival > _TOL
    t_wait = emergency_arrival[waiting]
    idle = int(np.sum(occ.at(t_wait) < cap.at(t_wait) - _TOL))
    if idle:
        problems.append(f"{idle} patients boarded in ED while an acute bed was free")
    problems.extend(_idle_service_checks(rec, raw, sc, T))
    problems.extend(_start_capacity_checks(rec, raw, sc))
    return problems


def _conservation_checks(rec: Records, emergency_arrival: np.ndarray, T: float) -> list[str]:
    """2. Conservation per node (entered = left + still there at the end) and Little's law's identity."""
    problems = []
    ed = (emergency_arrival, np.where(_not_through_ed(rec), np.nan, rec["bed_start"]))
    nodes = {
        "ED": (*ed, Level.from_intervals(*ed, T)),
        "acute": (rec["bed_start"], rec["acute_end"], rec.level("bed_start", "acute_end", T)),
        "downstream": (rec["slot_granted"], rec["ds_end"], rec.level("slot_granted", "ds_end", T)),
    }
    for name, (s, e, lev) in nodes.items():
        entered = int(np.sum(~np.isnan(s)))
        left = int(np.sum(~np.isnan(e)))
        inside = int(lev.at(T))
        if entered != left + inside:
            problems.append(f"conservation fails at {name}: entered {entered} != left {left} + inside {inside}")
        a, b = _little(s, e, T, lev)
        if abs(a - b) > 1e-6 * max(1.0, abs(b)):
            problems.append(f"Little's law identity fails at {name}: area {a:.6f} != sojourn sum {b:.6f}")
    return problems


def _service_grant_checks(rec: Records, raw: RawRun, sc: Scenario, T: float) -> list[str]:
    """3. No downstream place granted beyond the places (or visits a day) in force at the moment of the grant."""
    problems = []
    placed_service = rec["initial_stage"] == IN_SERVICE
    svc = rec["service"]
    services = {n: v for pw in sc.pathways.values() for n, v in pw.services.items()}
    for i, name in enumerate(raw.service_names):
        m = svc == i
        capl = Level.from_steps(*raw.capacity[name])
        tg = rec["slot_granted"][m & ~placed_service]
        visits = services[name].visits if services[name].capacity_unit == "visits" else None
        if visits is not None:
            load = visit_load(np.where(m, rec["slot_granted"], np.nan), rec["ds_end"], rec["package_len"],
                              visits.start, visits.end, at=tg)
            over = int(np.sum(load > capl.at(tg) + 1e-6))
            if over:
                problems.append(f"{over} packages at service {name} were taken beyond its visits a day")
            continue
        lev = rec.level("slot_granted", "ds_end", T, service=i)
        over = int(np.sum(lev.at(tg) > capl.at(tg) + _TOL))
        if over:
            problems.append(f"{over} grants at service {name} exceeded the capacity in force")
    return problems


def _start_capacity_checks(rec: Records, raw: RawRun, sc: Scenario) -> list[str]:
    """Start-from-today patients fit the capacity in force at time 0 (unless the scenario allows an overflow).

    They are placed, not granted, so the grant check above does not see them; validation refuses a
    snapshot above capacity, and this confirms the model placed no more than validation counted.
    A visits-a-day service counts each package at its smallest daily visits, as validation does.
    """
    if sc.initial_state is None or sc.initial_state.allow_over_capacity:
        return []
    problems = []
    initial = rec["initial"]
    in_acute = initial & (rec["bed_start"] <= 0.0) & ~(rec["acute_end"] <= 0.0)
    cap0 = Level.from_steps(*raw.capacity["acute"]).at(np.array([0.0]))[0]
    n_acute = int(in_acute.sum())
    if n_acute > cap0 + _TOL:
        problems.append(f"{n_acute} snapshot patients in acute beds at the start, above the {cap0:g} in force")
    services = {n: v for pw in sc.pathways.values() for n, v in pw.services.items()}
    for i, name in enumerate(raw.service_names):
        placed = initial & (rec["service"] == i) & (rec["slot_granted"] <= 0.0) & ~(rec["ds_end"] <= 0.0)
        n = int(placed.sum())
        svc = services[name]
        need = n * min(svc.visits.start, svc.visits.end) if svc.capacity_unit == "visits" and svc.visits else n
        cap = Level.from_steps(*raw.capacity[name]).at(np.array([0.0]))[0]
        if need > cap + 1e-6:
            problems.append(f"{n} snapshot patients at service {name} at the start, above the {cap:g} in force")
    return problems


def _idle_service_checks(rec: Records, raw: RawRun, sc: Scenario, T: float) -> list[str]:
    """For each pathway: at the moment a patient starts waiting, every slot they could use is taken."""
    problems = []
    cohort_names = raw.cohort_names
    levels = {}
    for i, name in enumerate(raw.service_names):
        levels[name] = (rec.level("slot_granted", "ds_end", T, service=i), Level.from_steps(*raw.capacity[name]))
    needs = rec.by_pathway({p: pw.needs_assessment for p, pw in sc.pathways.items()}, False, bool)
    # a patient starts waiting for a place once ready for transfer and (if needed) assessed
    wait_start = np.where(needs, np.maximum(rec["assess_end"], rec["rft"]), rec["rft"])
    granted = np.where(np.isnan(rec["slot_granted"]), np.inf, rec["slot_granted"])
    waited = granted - wait_start > _TOL
    for pname, pw in sc.pathways.items():
        if not pw.services:
            continue
        waited_for = waited & rec.on_pathway(pname)
        for c, cname in enumerate(cohort_names):
            m = waited_for & (rec["cohort"] == c)
            if not m.any():
                continue
            t = wait_start[m]
            free = np.zeros(len(t))
            for sname, service in pw.services.items():
                if service.cohorts is None or cname in service.cohorts:
                    occ, cap = levels[sname]
                    if service.capacity_unit == "visits" and service.visits is not None:
                        k = raw.service_names.index(sname)
                        m = rec["service"] == k
                        load = visit_load(np.where(m, rec["slot_granted"], np.nan), rec["ds_end"],
                                          rec["package_len"], service.visits.start, service.visits.end, at=t)
                        free += (cap.at(t) - load - service.visits.start >= 1e-6).astype(float)
                    else:
                        free += np.maximum(cap.at(t) - occ.at(t), 0.0)
            idle = int(np.sum(free > _TOL))
            if idle:
                problems.append(f"{idle} {cname} patients waited for {pname} while an eligible slot was free")
    return problems

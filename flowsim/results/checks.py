"""Invariants checked on every run: conservation, ordering, capacity, Little's law.

A violation means a bug in flowsim, not a user mistake; runs log them as
errors and tests assert there are none.
"""

from __future__ import annotations

import numpy as np

from flowsim.model.model import IN_ACUTE, IN_SERVICE, RawRun
from flowsim.results.records import Records
from flowsim.results.series import Level, visit_load
from flowsim.scenario.schema import Scenario

_ORDER = ("arrival", "bed_start", "mffd", "assess_start", "assess_end", "slot_granted",
          "acute_end", "stay_end", "ltc_granted", "ds_end")
_TOL = 1e-9


def _little(starts: np.ndarray, ends: np.ndarray, T: float) -> tuple[float, float]:
    """Little's law over [0, T]: area under the level vs sum of sojourns clipped to the window."""
    lev = Level.from_intervals(starts, ends, T)
    area = float(np.diff(lev.integral(np.array([0.0, T])))[0])
    ok = ~np.isnan(starts)
    s = np.clip(starts[ok], 0.0, T)
    e = np.clip(np.where(np.isnan(ends[ok]), T, ends[ok]), 0.0, T)
    return area, float(np.sum(e - s))


def check_records(rec: Records, raw: RawRun, sc: Scenario) -> list[str]:  # noqa: C901, PLR0915
    problems: list[str] = []
    T = raw.t1
    # 0. a cancelled elective never gets a bed
    bad = int(np.sum((rec["cancelled"] > 0) & ~np.isnan(rec["bed_start"])))
    if bad:
        problems.append(f"{bad} cancelled electives occupied a bed")
    # 1. stamps are in journey order
    prev = rec["arrival"]
    for f in _ORDER[1:]:
        cur = rec[f]
        both = ~np.isnan(prev) & ~np.isnan(cur)
        bad = int(np.sum(cur[both] < prev[both] - _TOL))
        if bad:
            problems.append(f"{bad} stays have {f} before an earlier stage")
        prev = np.where(np.isnan(cur), prev, cur)

    # 2. conservation per node: entered = left + still there at the end
    emergency_arrival = np.where(rec["elective"], np.nan, rec["arrival"])
    nodes = {
        "ED": (emergency_arrival, np.where(rec["elective"], np.nan, rec["bed_start"])),
        "acute": (rec["bed_start"], rec["acute_end"]),
        "downstream": (rec["slot_granted"], rec["ds_end"]),
    }
    for name, (s, e) in nodes.items():
        entered = int(np.sum(~np.isnan(s)))
        left = int(np.sum(~np.isnan(e)))
        inside = int(Level.from_intervals(s, e, T).at(T))
        if entered != left + inside:
            problems.append(f"conservation fails at {name}: entered {entered} != left {left} + inside {inside}")
        a, b = _little(s, e, T)
        if abs(a - b) > 1e-6 * max(1.0, abs(b)):
            problems.append(f"Little's law identity fails at {name}: area {a:.6f} != sojourn sum {b:.6f}")

    # 3. no grant beyond the capacity in force at the moment of the grant
    cap = Level.from_steps(*raw.capacity["acute"])
    occ = Level.from_intervals(rec["bed_start"], rec["acute_end"], T)
    # grants only: snapshot patients already in a bed or place were placed there, not granted
    placed_acute = rec["initial_stage"] >= IN_ACUTE
    placed_service = rec["initial_stage"] == IN_SERVICE
    t = rec["bed_start"][~np.isnan(rec["bed_start"]) & ~placed_acute]
    over = int(np.sum(occ.at(t) > cap.at(t) + _TOL))
    if over:
        problems.append(f"{over} acute bed grants exceeded the capacity in force")
    svc = rec["service"]
    services = {n: v for pw in sc.pathways.values() for n, v in pw.services.items()}
    for i, name in enumerate(raw.service_names):
        m = svc == i
        capl = Level.from_steps(*raw.capacity[name])
        tg = rec["slot_granted"][m & ~placed_service]
        visits = services[name].visits if services[name].capacity_unit == "visits" else None
        if visits is not None:
            load = visit_load(np.where(m, rec["slot_granted"], np.nan), rec["ds_end"], rec["package_len"],
                              visits.start, visits.end, tg)
            over = int(np.sum(load > capl.at(tg) + 1e-6))
            if over:
                problems.append(f"{over} packages at service {name} were taken beyond its visits a day")
            continue
        lev = Level.from_intervals(np.where(m, rec["slot_granted"], np.nan), rec["ds_end"], T)
        over = int(np.sum(lev.at(tg) > capl.at(tg) + _TOL))
        if over:
            problems.append(f"{over} grants at service {name} exceeded the capacity in force")

    # 4. work conservation: nobody starts waiting while a slot they may use is free
    waiting = rec["bed_start"] - emergency_arrival > _TOL
    t_wait = emergency_arrival[waiting]
    idle = int(np.sum(occ.at(t_wait) < cap.at(t_wait) - _TOL))
    if idle:
        problems.append(f"{idle} patients boarded in ED while an acute bed was free")
    problems.extend(_idle_service_checks(rec, raw, sc, T))
    problems.extend(_start_capacity_checks(rec, raw, sc))
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
    svc = rec["service"]
    levels = {}
    for i, name in enumerate(raw.service_names):
        m = svc == i
        levels[name] = (Level.from_intervals(np.where(m, rec["slot_granted"], np.nan), rec["ds_end"], T),
                        Level.from_steps(*raw.capacity[name]))
    needs = np.array([sc.pathways[p].needs_assessment if p in sc.pathways else False for p in rec["pathway"]])
    wait_start = np.where(needs, rec["assess_end"], rec["mffd"])
    granted = np.where(np.isnan(rec["slot_granted"]), np.inf, rec["slot_granted"])
    for pname, pw in sc.pathways.items():
        if not pw.services:
            continue
        for c, cname in enumerate(cohort_names):
            m = (rec["pathway"] == pname) & (rec["cohort"] == c) & (granted - wait_start > _TOL)
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
                                          rec["package_len"], service.visits.start, service.visits.end, t)
                        free += (cap.at(t) - load - service.visits.start >= 1e-6).astype(float)
                    else:
                        free += np.maximum(cap.at(t) - occ.at(t), 0.0)
            idle = int(np.sum(free > _TOL))
            if idle:
                problems.append(f"{idle} {cname} patients waited for {pname} while an eligible slot was free")
    return problems

"""The patient-flow model: SimPy processes for one replication of one scenario.

The model holds no statistics: it stamps times on each patient (a slotted
object, cheap to write) and the results layer turns those stamps into
tables and KPIs after the run.  That keeps the per-event path to a few
attribute writes and lets every KPI be defined once, from the records.

Journey (DESIGN.md section 2):
arrival -> ED boarding until an acute bed is free -> acute stay -> medically
fit (MFFD) -> pathway P0-P3 -> [assessment, when the pathway needs one] ->
[wait for a downstream slot, keeping the acute bed: blocking after service]
-> transfer time -> leave within discharge hours -> downstream stay ->
outcome (home, long-term care, death) -> possible readmission.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import simpy

from flowsim.model.calendar import Steps, arrival_times, capacity_steps, disrupted, team_steps, weekday_times
from flowsim.model.capacity import Group, Pool, VisitPool
from flowsim.model.escalation import EscalationController
from flowsim.model.residual import conditional_residual, equilibrium_residual
from flowsim.rng import Streams
from flowsim.scenario.distributions import _Dist
from flowsim.scenario.schema import MONTHS, PATHWAYS, Scenario, Surge

NAN = math.nan
#: Journey stages a patient can join at (see ``Model._journey``).
ED, IN_ACUTE, ASSESSMENT, WAITING, IN_SERVICE = 0, 1, 2, 3, 4
OUTCOMES: tuple[str, ...] = ("home", "long_term_care", "death")


class Buffered:
    """Draws from one distribution on one named stream, a chunk at a time.

    Vectorised ``ppf`` over 1024 uniforms is ~100x cheaper per value than a
    scalar call, and the sequence a stream yields does not depend on when
    values are consumed, so chunking keeps runs reproducible.
    """

    __slots__ = ("dist", "rng", "buf", "i", "n")

    def __init__(self, dist: _Dist | None, rng: np.random.Generator, chunk: int = 1024):
        self.dist = dist
        self.rng = rng
        self.n = chunk
        self.buf: list[float] = []
        self.i = chunk

    def __call__(self) -> float:
        i = self.i
        if i >= self.n:
            u = self.rng.random(self.n)
            self.buf = (u if self.dist is None else self.dist.ppf(u)).tolist()
            i = 0
        self.i = i + 1
        return self.buf[i]


class Patient:
    """One stay (spell). A readmission is a new Patient with ``readmission_of`` set."""

    __slots__ = (
        "id", "person", "readmission_of", "cohort", "pathway", "acute_los", "assess_dur",
        "transfer", "u_los", "u_outcome", "u_readmit", "u_readmit_time", "u_weekend", "pool",
        "arrival", "bed_start", "mffd", "assess_start", "assess_end", "slot_granted",
        "acute_end", "service", "stay_end", "outcome", "ltc_granted", "ds_end", "elective", "cancelled",
        "initial", "initial_stage", "remaining", "package_len",
    )

    # filled by ``_Sampler.fill`` (or the elective and snapshot set-up) before the journey starts
    cohort: int
    pathway: str
    acute_los: float
    assess_dur: float
    transfer: float
    u_los: float
    u_outcome: float
    u_readmit: float
    u_readmit_time: float
    u_weekend: float

    def __init__(self, pid: int, person: int, readmission_of: int, arrival: float):
        self.id = pid
        self.person = person
        self.readmission_of = readmission_of
        self.arrival = arrival
        self.bed_start = self.mffd = self.assess_start = self.assess_end = NAN
        self.slot_granted = self.acute_end = self.stay_end = self.ltc_granted = self.ds_end = NAN
        self.service = -1
        self.outcome = -1
        self.elective = False
        self.initial = False  # already in the system on the start-from-today snapshot
        self.initial_stage = -1  # the journey stage a snapshot patient joined at
        self.remaining = NAN
        self.package_len = NAN  # visit-based P1: the package's planned length (its visits taper over it)
        self.cancelled = 0  # electives: 1 no bed free, 2 cancelled under escalation
        self.pool: Pool | None = None


@dataclass(frozen=True)
class RawRun:
    """What one replication produces before any statistics: patients and capacity plans."""

    patients: list[Patient]
    capacity: dict[str, Steps]
    service_names: list[str]
    service_pathway: list[str]
    cohort_names: list[str]
    t0: float
    t1: float
    kernel_events: int
    opel_log: list[tuple[float, int]] = field(default_factory=list)
    action_log: list[tuple[float, int, str]] = field(default_factory=list)
    extra_capacity: dict[str, Steps] = field(default_factory=dict)


class _Sampler:
    """The named streams a group of patients (first admissions or readmissions) draws from."""

    def __init__(self, sc: Scenario, streams: Streams, prefix: str):
        self.cohort = Buffered(None, streams[prefix + "cohort"])
        # cumulative cohort shares for each calendar month (0 = January)
        shares = np.array([[c.share * c.month_factors.get(m, 1.0) for c in sc.cohorts.values()]  # type: ignore[call-overload]
                           for m in MONTHS])
        cum = np.cumsum(shares / shares.sum(axis=1, keepdims=True), axis=1)
        cum[:, -1] = 1.0
        self.cum_share = [row.tolist() for row in cum]
        start = sc.simulation.start_date
        first = start - dt.timedelta(days=sc.simulation.warmup_days + 1)
        n = sc.simulation.warmup_days + sc.simulation.duration_days + 2
        self.day0 = -sc.simulation.warmup_days - 1
        self.month_of_day = [(first + dt.timedelta(days=i)).month - 1 for i in range(n)]
        self.acute_los = [Buffered(c.acute_los, streams[f"{prefix}acute_los.{n}"]) for n, c in sc.cohorts.items()]
        self.pathway = Buffered(None, streams[prefix + "pathway_choice"])
        self.cum_mix = []
        for c in sc.cohorts.values():
            probs = np.array([c.pathway_mix.get(p, 0.0) for p in PATHWAYS])  # type: ignore[call-overload]
            cum = np.cumsum(probs)
            cum[-1] = 1.0
            self.cum_mix.append(cum.tolist())
        assess = sc.assessment.duration if sc.assessment is not None else None
        self.assess = Buffered(assess, streams[prefix + "assessment_time"])
        self.transfer: dict[str, Buffered] = {p: Buffered(pw.transfer_time, streams[f"{prefix}transfer_time.{p}"])
                         for p, pw in sc.pathways.items()}
        self.u = Buffered(None, streams[prefix + "patient_uniforms"])

    def fill(self, p: Patient, cohort: int | None = None) -> None:
        if cohort is None:
            u = self.cohort()
            cohort = 0
            day = min(max(math.floor(p.arrival) - self.day0, 0), len(self.month_of_day) - 1)
            cum = self.cum_share[self.month_of_day[day]]
            while u >= cum[cohort]:
                cohort += 1
        p.cohort = cohort
        p.acute_los = self.acute_los[cohort]()
        u = self.pathway()
        cum_mix = self.cum_mix[cohort]
        k = 0
        while u >= cum_mix[k]:
            k += 1
        pw = PATHWAYS[k]
        p.pathway = pw
        p.assess_dur = self.assess()
        p.transfer = self.transfer[pw]()
        uu = self.u
        p.u_los, p.u_outcome, p.u_readmit, p.u_readmit_time, p.u_weekend = uu(), uu(), uu(), uu(), uu()


class Model:
    """One replication: build with a scenario and its streams, then ``run()``."""

    def __init__(self, scenario: Scenario, streams: Streams, env_factory: type[simpy.Environment] = simpy.Environment):  # noqa: PLR0915
        sc = scenario
        self.sc = sc
        sim = sc.simulation
        self.start = sim.start_date
        self.t0 = -float(sim.warmup_days)
        self.t1 = float(sim.duration_days)
        self.env = env_factory(initial_time=self.t0)
        self.streams = streams
        self.patients: list[Patient] = []
        self._next_id = 0
        self.first = _Sampler(sc, streams, "")
        self.readmit = _Sampler(sc, streams, "readmit.")
        self.start_weekday = self.start.weekday()
        # capacity in force = scheduled (after disruptions) + escalation extra; every change is logged
        self._pools: dict[str, tuple[Group, Pool]] = {}
        self._scheduled: dict[str, float] = {}
        self._extra: dict[str, float] = {}
        self._cap_log: dict[str, list[tuple[float, float]]] = {}
        self._extra_log: dict[str, list[tuple[float, float]]] = {}
        self.n_delayed = 0  # patients delayed right now (read by escalation rules)
        self.cancel_electives = 0
        self._discharge_overrides: list[Any] = []
        # patients waiting for the discharge window, re-timed when an escalation action changes the rules
        self._leaving: dict[int, tuple[Patient, float, float, simpy.Process]] = {}
        self._track_leaving = sc.escalation is not None and any(
            a.kind == "extend_discharge" for a in sc.escalation.actions)
        env = self.env

        # acute beds
        assert sc.acute is not None and sc.arrivals is not None  # full mode (pathway-only scenarios are compiled)
        self.acute_pool, self.acute = self._group("acute", sc.acute.beds)

        # assessment team
        self.assess_pool: Pool | None = None
        self.assess: Group | None = None
        if sc.assessment is not None:
            a = sc.assessment
            staff = capacity_steps(a.staff, self.start, self.t0, self.t1)
            wk = capacity_steps(a.weekend_staff, self.start, self.t0, self.t1)
            steps = self._disrupt("assessment",
                                  team_steps(staff, wk, a.hours, a.weekend_hours, self.start, self.t0, self.t1))
            self.assess_pool = Pool("assessment", steps[1][0])
            self.assess = Group(env, "assessment", [self.assess_pool])
            self._register(self.assess, self.assess_pool, steps)

        # downstream services, grouped by pathway
        cohort_index = {name: i for i, name in enumerate(sc.cohorts)}
        self.service_names: list[str] = []
        self.service_pathway: list[str] = []
        self.service_los: list[_Dist] = []
        self.service_outcomes: list[tuple[float, float]] = []
        self.groups: dict[str, Group] = {}
        for pname, pw in sc.pathways.items():
            pools = []
            for sname, svc in pw.services.items():
                steps = self._disrupt(sname, capacity_steps(svc.capacity, self.start, self.t0, self.t1))
                accepts = None if svc.cohorts is None else frozenset(cohort_index[c] for c in svc.cohorts)
                home = (frozenset(i for i, c in enumerate(sc.cohorts.values()) if c.locality == svc.locality)
                        if svc.locality is not None else None)
                pool: Pool
                if svc.capacity_unit == "visits":
                    assert svc.visits is not None
                    pool = VisitPool(sname, float(steps[1][0]), accepts, len(self.service_names), home,
                                     svc.visits.start, svc.visits.end, svc.los)
                else:
                    pool = Pool(sname, float(steps[1][0]), accepts, len(self.service_names), home)
                self.service_names.append(sname)
                self.service_pathway.append(pname)
                self.service_los.append(svc.los)
                o = svc.outcomes
                self.service_outcomes.append((o.home, o.home + o.long_term_care))
                pools.append((pool, steps))
            if pools:
                group = Group(env, pname, [p for p, _ in pools])
                self.groups[pname] = group
                for pool, steps in pools:
                    self._register(group, pool, steps)

        # long-term care (care homes)
        ltc = sc.long_term_care
        self.ltc_pool: Pool | None = None
        self.ltc: Group | None = None
        if ltc.capacity != "unlimited":
            self.ltc_pool, self.ltc = self._group("long_term_care", ltc.capacity)
        self.ltc_stay = Buffered(ltc.stay, streams["long_term_care.stay"]) if ltc.stay else None
        self.ltc_place = Buffered(ltc.placement_time, streams["long_term_care.placement"])

        # discharge timing
        d = sc.discharge
        self._base_hours = (d.hours.start / 24.0, d.hours.end / 24.0) if d.hours is not None else None
        self._base_weekend = {p: d.weekend_rate_for(p) for p in PATHWAYS}
        self.dis_hours = self._base_hours
        self.weekend_rate = dict(self._base_weekend)
        self.readmission: dict[str, tuple[float, float]] = {p: (pw.readmission.probability, pw.readmission.within_days)
                            for p, pw in sc.pathways.items()}
        self.needs_assessment: dict[str, bool] = {p: pw.needs_assessment for p, pw in sc.pathways.items()}

        surges = tuple(Surge(start=x.start, end=x.end, factor=x.factor or 1.0, note=x.note)
                       for x in sc.disruptions if x.kind == "demand_surge")
        self.arrivals = arrival_times(sc.arrivals, self.start, self.t0, self.t1, streams["arrivals"], surges)
        env.process(self._arrivals())

        # electives
        if sc.electives is not None:
            e = sc.electives
            self.elective_times = weekday_times(e.rate_per_weekday, e.admission_hours, self.start,
                                                self.t0, self.t1, streams["electives"])
            self.elective_los = Buffered(e.los, streams["elective_los"])
            self.elective_u = Buffered(None, streams["elective_uniforms"])
            env.process(self._electives())

        self.escalation = EscalationController(self, sc.escalation) if sc.escalation is not None else None
        if sc.initial_state is not None:
            self._start_from_snapshot()

    # ------------------------------------------------------------------ set-up helpers
    def _group(self, name: str, cap: Any) -> tuple[Pool, Group]:
        steps = self._disrupt(name, capacity_steps(cap, self.start, self.t0, self.t1))
        pool = Pool(name, float(steps[1][0]))
        group = Group(self.env, name, [pool])
        self._register(group, pool, steps)
        return pool, group

    def _disrupt(self, name: str, steps: Steps) -> Steps:
        mine = [d for d in self.sc.disruptions if d.target == name and d.kind != "demand_surge"]
        return disrupted(steps, mine, self.start, self.t0, self.t1)

    def _register(self, group: Group, pool: Pool, steps: Steps) -> None:
        name = pool.name
        self._pools[name] = (group, pool)
        self._scheduled[name] = float(steps[1][0])
        self._extra[name] = 0.0
        self._cap_log[name] = [(self.t0, float(steps[1][0]))]
        self._extra_log[name] = [(self.t0, 0.0)]
        pool.capacity = float(steps[1][0])
        if len(steps[0]) > 1:
            self.env.process(self._capacity_changes(name, steps))

    def _capacity_changes(self, name: str, steps: Steps) -> Generator[simpy.Event, Any, None]:
        env = self.env
        for t, v in zip(steps[0][1:].tolist(), steps[1][1:].tolist(), strict=True):
            yield env.timeout(t - env.now)
            self._scheduled[name] = v
            self._apply(name)

    def _apply(self, name: str) -> None:
        """Put the capacity in force: scheduled plus escalation extra (a closed team stays closed)."""
        group, pool = self._pools[name]
        sched = self._scheduled[name]
        cap = sched + self._extra[name] if (name != "assessment" or sched > 0) else 0.0
        if cap != pool.capacity:
            self._cap_log[name].append((self.env.now, cap))
            group.set_capacity(pool, cap)

    # ------------------------------------------------------------------ escalation actions
    def start_action(self, action: Any) -> None:
        """Put an escalation action into force (called by the escalation controller)."""
        self._toggle(action, +1)

    def stop_action(self, action: Any) -> None:
        """Take an escalation action out of force (called by the escalation controller)."""
        self._toggle(action, -1)

    def _toggle(self, action: Any, sign: int) -> None:
        if action.kind == "add_capacity":
            name = action.target
            self._extra[name] += sign * action.amount
            self._extra_log[name].append((self.env.now, self._extra[name]))
            self._apply(name)
        elif action.kind == "cancel_electives":
            self.cancel_electives += sign
        else:
            if sign > 0:
                self._discharge_overrides.append(action)
            else:
                self._discharge_overrides.remove(action)
            self._refresh_discharge()

    def _refresh_discharge(self) -> None:
        """Discharge rules in force: the most generous of the base rules and active extensions."""
        hours = self._base_hours
        weekend = dict(self._base_weekend)
        for a in self._discharge_overrides:
            if a.hours is not None:
                h = (a.hours.start / 24.0, a.hours.end / 24.0)
                hours = h if hours is None else (min(hours[0], h[0]), max(hours[1], h[1]))
            if a.weekend_rate is not None:
                weekend = {p: max(r, a.weekend_rate) for p, r in weekend.items()}
        self.dis_hours = hours
        self.weekend_rate = weekend
        now = self.env.now
        for p, ready, leave, proc in list(self._leaving.values()):
            if self._leave_time(max(now, ready), p.pathway, p.u_weekend) != leave:
                proc.interrupt("discharge rules changed")

    def _leave(self, p: Patient, ready: float) -> Generator[simpy.Event, Any, None]:
        """Wait until ``ready`` and then until the discharge rules in force let the patient go."""
        env = self.env
        leave = self._leave_time(ready, p.pathway, p.u_weekend)
        if not self._track_leaving:
            yield env.timeout(leave - env.now)
            return
        while leave > env.now:
            self._leaving[p.id] = (p, ready, leave, env.active_process)  # type: ignore[assignment]
            try:
                yield env.timeout(leave - env.now)
            except simpy.Interrupt:
                leave = self._leave_time(max(env.now, ready), p.pathway, p.u_weekend)
            finally:
                self._leaving.pop(p.id, None)

    # ------------------------------------------------------------------ processes
    def _new_patient(self, t: float, person: int = -1, readmission_of: int = -1) -> Patient:
        p = Patient(self._next_id, self._next_id if person < 0 else person, readmission_of, t)
        self._next_id += 1
        self.patients.append(p)
        return p

    def _arrivals(self) -> Generator[simpy.Event, Any, None]:
        env = self.env
        fill = self.first.fill
        journey = self._journey
        for t in self.arrivals.tolist():
            yield env.timeout(t - env.now)
            p = self._new_patient(env.now)
            fill(p)
            env.process(journey(p))

    # ------------------------------------------------------------------ start from today
    def _start_from_snapshot(self) -> None:  # noqa: C901, PLR0912, PLR0915
        """Put the snapshot's patients in their places at t = 0; waiting patients queue longest-first."""
        init = self.sc.initial_state
        assert init is not None
        sampler = _Sampler(self.sc, self.streams, "initial.")
        u = Buffered(None, self.streams["initial.residual"])
        cohort_index = {name: i for i, name in enumerate(self.sc.cohorts)}
        cohorts = list(self.sc.cohorts.values())
        service_index = {name: i for i, name in enumerate(self.service_names)}
        Row = tuple[str, str | None, str | None, float | None]
        ed_row: Row = ("ed", None, None, None)
        acute_row: Row = ("acute", None, None, None)
        rows: list[Row] = [ed_row] * init.ed_boarding + [acute_row] * init.acute_occupied
        for key, node in (("waiting_for_assessment", "assessment"), ("waiting", None)):
            for pw, n in getattr(init, key).items():
                rows += [(node or pw, None, pw, None)] * n
        for name, n in init.services.items():
            rows += [(name, None, None, None)] * n
        rows += [(r.node, r.cohort, r.pathway, r.days) for r in init.patients]
        # longest time already spent first, so queues are served in order of waiting
        rows.sort(key=lambda r: -(r[3] or 0.0))
        starts: list[tuple[Patient, int]] = []
        pick = Buffered(None, self.streams["initial.cohort"])
        for node, cohort, pathway, days in rows:
            elapsed = 0.0 if days is None else days
            p = self._new_patient(-elapsed)
            p.initial = True
            if node in service_index:
                pathway = self.service_pathway[service_index[node]]
            elif node in ("P1", "P2", "P3"):
                pathway = node
            c = cohort_index[cohort] if cohort is not None else self._snapshot_cohort(node, pathway, pick())
            sampler.fill(p, c)
            if pathway is not None and pathway != p.pathway:
                p.pathway = pathway
                p.transfer = sampler.transfer[pathway]()
            if node == "ed":
                starts.append((p, ED))
                continue
            p.bed_start = -elapsed
            if node in service_index:
                k = service_index[node]
                pool = self._pools[node][1]
                pool.busy += 1
                p.pool = pool
                p.service = k
                p.mffd = p.slot_granted = p.acute_end = -elapsed
                if self.needs_assessment[p.pathway]:
                    p.assess_start = p.assess_end = -elapsed
                p.remaining = _residual(self.service_los[k], days, u())
                if isinstance(pool, VisitPool):  # a package under way: its visits taper from when it began
                    p.package_len = elapsed + p.remaining
                    pool.add(p.id, -elapsed, p.package_len)
                starts.append((p, IN_SERVICE))
                continue
            self.acute_pool.busy += 1
            if node == "acute":
                p.acute_los = _residual(cohorts[p.cohort].acute_los, days, u())
                starts.append((p, IN_ACUTE))
            else:
                p.mffd = -elapsed
                self.n_delayed += 1
                if node != "assessment" and self.needs_assessment[p.pathway]:
                    p.assess_start = p.assess_end = -elapsed
                starts.append((p, ASSESSMENT if node == "assessment" else WAITING))
        for p, stage in starts:
            p.initial_stage = stage
            self.env.process(self._journey(p, stage))

    def _snapshot_cohort(self, node: str, pathway: str | None, u: float) -> int:
        """The cohort of a counted snapshot patient, in proportion to who would be found there.

        In a snapshot, cohorts appear in proportion to how often they enter a place times how long
        they stay (the inspection paradox again): share x P(pathway) for patients bound for or in a
        downstream pathway, share x mean acute stay for patients in their acute stay; only cohorts
        the pathway's services (or the named service) accept.  If no cohort's mix sends patients
        there (a snapshot of a pathway being wound down), eligibility and share decide.
        """
        cohorts = list(self.sc.cohorts.values())
        names = list(self.sc.cohorts)
        w = np.array([c.share for c in cohorts])
        if node == "acute":
            w = w * np.array([c.acute_los.mean for c in cohorts])
        if pathway is not None:
            services = self.sc.pathways[pathway].services  # type: ignore[index]
            allowed = [services[node]] if node in services else list(services.values())
            ok = np.array([any(s.cohorts is None or n in s.cohorts for s in allowed) for n in names], dtype=float)
            mix = np.array([c.pathway_mix.get(pathway, 0.0) for c in cohorts])  # type: ignore[call-overload]
            # observed state can include a pathway future demand no longer uses: then eligibility alone
            for weights in (w * mix * ok, w * ok, w):
                if weights.sum() > 0:
                    w = weights
                    break
        cum = np.cumsum(w / w.sum())
        return min(int(np.searchsorted(cum, u, side="right")), len(cum) - 1)

    def _electives(self) -> Generator[simpy.Event, Any, None]:
        env = self.env
        for t in self.elective_times.tolist():
            yield env.timeout(t - env.now)
            p = self._new_patient(env.now)
            p.elective = True
            p.cohort = len(self.sc.cohorts)  # the "elective" category in the records
            p.pathway = "P0"
            p.acute_los = self.elective_los()
            p.transfer = 0.0
            p.u_weekend = self.elective_u()
            if self.cancel_electives:
                p.cancelled = 2
            elif not self.acute.try_acquire(p):
                p.cancelled = 1
            else:
                env.process(self._elective_stay(p))

    def _elective_stay(self, p: Patient) -> Generator[simpy.Event, Any, None]:
        env = self.env
        p.bed_start = env.now
        yield env.timeout(p.acute_los)
        p.mffd = env.now
        yield from self._leave(p, env.now)
        p.acute_end = env.now
        p.outcome = 0
        self.acute.release(self.acute_pool)

    def _readmission(self, prev: Patient, delay: float) -> Generator[simpy.Event, Any, None]:
        yield self.env.timeout(delay)
        p = self._new_patient(self.env.now, prev.person, prev.id)
        self.readmit.fill(p, prev.cohort)
        yield from self._journey(p)

    def _leave_time(self, t: float, pathway: str, u_weekend: float) -> float:
        """Earliest time >= t at which a patient may physically leave (discharge hours, weekends)."""
        hours = self.dis_hours
        rate = self.weekend_rate[pathway]
        if hours is None and rate >= 1.0:
            return t
        h0, h1 = hours if hours is not None else (0.0, 1.0)
        day = math.floor(t)
        for _ in range(14):
            wd = (self.start_weekday + day) % 7
            if wd < 5 or u_weekend < rate:
                open_, close = day + h0, day + h1
                if t < close:
                    return max(t, open_)
            day += 1
        return t  # unreachable with a valid scenario; never block forever

    def _journey(self, p: Patient, stage: int = 0) -> Generator[simpy.Event, Any, None]:  # noqa: C901, PLR0912, PLR0915
        """A stay from the ED onwards; ``stage`` > 0 joins part-way (patients already in the
        system on a start-from-today snapshot, who carry the stamps and places of earlier stages)."""
        env = self.env
        pw = p.pathway
        if stage == ED:
            ev = self.acute.request(p)
            if ev is not None:
                yield ev
            p.bed_start = env.now
        if stage <= IN_ACUTE:
            yield env.timeout(p.acute_los)
            p.mffd = env.now
            if pw != "P0":
                self.n_delayed += 1
        if stage <= WAITING:
            if pw != "P0":
                if stage <= ASSESSMENT and self.needs_assessment[pw]:
                    assert self.assess is not None and self.assess_pool is not None
                    ev = self.assess.request(p)
                    if ev is not None:
                        yield ev
                    p.assess_start = env.now
                    yield env.timeout(p.assess_dur)
                    p.assess_end = env.now
                    self.assess.release(self.assess_pool)
                ev = self.groups[pw].request(p)
                if ev is not None:
                    yield ev
                p.slot_granted = env.now
                self.n_delayed -= 1
                p.service = p.pool.index  # type: ignore[union-attr]
            yield from self._leave(p, env.now + p.transfer)
            p.acute_end = env.now
            self.acute.release(self.acute_pool)
            if pw == "P0":
                p.outcome = 0
                self._maybe_readmit(p, pw)
                return
        pool = p.pool
        assert pool is not None
        k = pool.index
        # a snapshot patient's rest of stay, or a visit-based package's length fixed when it was taken
        los = p.remaining if p.remaining == p.remaining else float(self.service_los[k].ppf(np.array([p.u_los]))[0])
        yield env.timeout(los)
        p.stay_end = env.now
        home, ltc = self.service_outcomes[k]
        u = p.u_outcome
        if u < home:
            p.outcome = 0
        elif u < ltc:
            p.outcome = 1
            self.n_delayed += 1
            place = self.ltc_place()
            if place > 0:
                yield env.timeout(place)
            if self.ltc is not None:
                ev = self.ltc.request(p)
                if ev is not None:
                    yield ev
                env.process(self._ltc_stay())
            p.ltc_granted = env.now
            self.n_delayed -= 1
        else:
            p.outcome = 2
        p.ds_end = env.now
        self.groups[pw].release(pool, p)
        if p.outcome == 0:
            self._maybe_readmit(p, pw)

    def _ltc_stay(self) -> Generator[simpy.Event, Any, None]:
        assert self.ltc_stay is not None and self.ltc is not None and self.ltc_pool is not None
        yield self.env.timeout(self.ltc_stay())
        self.ltc.release(self.ltc_pool)

    def _maybe_readmit(self, p: Patient, pw: str) -> None:
        prob, within = self.readmission.get(pw, (0.0, 30.0))
        if prob > 0 and p.u_readmit < prob:
            self.env.process(self._readmission(p, p.u_readmit_time * within))

    # ------------------------------------------------------------------ run
    def run(self) -> RawRun:
        """Run the replication to its end and return the raw stamps and logs."""
        self.env.run(until=self.t1)
        eid = getattr(self.env, "_eid", None)
        kernel_events = int(next(eid)) if eid is not None else -1
        return RawRun(
            patients=self.patients,
            capacity={name: _log_steps(log) for name, log in self._cap_log.items()},
            service_names=self.service_names,
            service_pathway=self.service_pathway,
            cohort_names=[*self.sc.cohorts, "elective"],
            t0=self.t0,
            t1=self.t1,
            kernel_events=kernel_events,
            opel_log=self.escalation.level_log if self.escalation else [],
            action_log=self.escalation.action_log if self.escalation else [],
            extra_capacity={name: _log_steps(log) for name, log in self._extra_log.items() if len(log) > 1},
        )


def _residual(dist: _Dist, days: float | None, u: float) -> float:
    """The rest of a stay under way: conditional on ``days`` spent, or equilibrium if unknown."""
    if days is None:
        return float(equilibrium_residual(dist, np.array([u]))[0])
    return float(conditional_residual(dist, np.array([days]), np.array([u]))[0])


def _log_steps(log: list[tuple[float, float]]) -> Steps:
    """A change log as a step function (the last value set at each instant wins)."""
    times = np.array([t for t, _ in log], dtype=float)
    values = np.array([v for _, v in log], dtype=float)
    last = np.concatenate((times[1:] != times[:-1], [True]))
    return times[last], values[last]


def run_model(scenario: Scenario, seed: int, replication: int) -> RawRun:
    """Run one replication: a pure function of (scenario, seed, replication)."""
    return Model(scenario, Streams(seed, replication)).run()

"""The patient-flow model: SimPy processes for one replication of one scenario.

The model holds no statistics: it stamps times on each patient (a slotted
object, cheap to write) and the results layer turns those stamps into
tables and KPIs after the run.  That keeps the per-event path to a few
attribute writes and lets every KPI be defined once, from the records.

Journey (DESIGN.md section 2):
arrival -> ED boarding until an acute bed is free -> acute stay (to clinically
fit) -> declared medically fit on a ward round (``mffd``: no longer meets the
criteria to reside) -> pathway P0-P3 -> ready for transfer (``rft``: the
multidisciplinary team's decision, where a 2016/17 DTOC starts), with the
discharge assessment before or after it -> [wait for a downstream place,
keeping the acute bed: blocking after service] -> transfer time -> leave
within discharge hours -> downstream stay -> outcome (home, home with a care
package, long-term care, death; the last waits happen in the downstream place)
-> possible readmission.
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import simpy

from flowsim.model.calendar import (
    Steps,
    arrival_times,
    bank_holidays,
    capacity_steps,
    disrupted,
    placed_in_days,
    replayed_capacity,
    replayed_days,
    team_steps,
    weekday_times,
    with_replayed,
)
from flowsim.model.capacity import Group, HoursPool, Pool, VisitPool
from flowsim.model.codes import AcuteExit, Cancelled, Outcome, Stage
from flowsim.model.escalation import EscalationController
from flowsim.model.kernel import Kernel, Task, gc_paused, urgent
from flowsim.model.residual import conditional_residual, equilibrium_residual
from flowsim.rng import Streams
from flowsim.scenario.distributions import _Dist
from flowsim.scenario.schema import (
    MONTHS,
    PATHWAYS,
    Action,
    Arrivals,
    Capacity,
    HomeCare,
    Hours,
    Scenario,
    StepUp,
    Surge,
    WardRounds,
)

NAN = math.nan
# journey stages as plain ints on the per-event path (``Stage`` names them)
ED, IN_ACUTE, ASSESSMENT, WAITING, IN_SERVICE = (int(s) for s in Stage)
HOME, LONG_TERM_CARE, DEATH, HOME_WITH_CARE, READMITTED = (int(o) for o in (
    Outcome.HOME, Outcome.LONG_TERM_CARE, Outcome.DEATH, Outcome.HOME_WITH_CARE, Outcome.READMITTED))
DIED, SAME_DAY = int(AcuteExit.DIED), int(AcuteExit.SAME_DAY)
#: queue rank of a step-up referral against step-down patients (rank 0)
STEP_UP_RANK = {"before_step_down": -1, "equal": 0, "after_step_down": 1}


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
            self._refill()
            i = 0
        self.i = i + 1
        return self.buf[i]

    def _refill(self) -> None:
        u = self.rng.random(self.n)
        self.buf = (u if self.dist is None else self.dist.ppf(u)).tolist()
        self.i = 0

    def take(self, n: int) -> np.ndarray:
        """The next ``n`` values at once, exactly as ``n`` calls would give them (the same chunks, drawn and
        transformed alike): draws made ahead in bulk leave the stream where one-at-a-time draws would.

        Whole chunks stay numpy arrays (only a chunk left part-used becomes the list ``__call__`` reads): a
        Rotherham run takes ~400,000 values ahead, and a list of each chunk turned back into an array cost ~10x
        more than the draws themselves."""
        parts: list[np.ndarray] = []
        need = n
        if self.i < self.n:  # the rest of the chunk under way
            k = min(need, self.n - self.i)
            parts.append(np.array(self.buf[self.i:self.i + k], dtype=float))
            self.i += k
            need -= k
        while need > 0:
            u = self.rng.random(self.n)
            chunk = u if self.dist is None else self.dist.ppf(u)
            k = min(need, self.n)
            parts.append(chunk[:k])
            self.buf = chunk.tolist() if k < self.n else []  # a used-up chunk is never read again
            self.i = k
            need -= k
        return np.concatenate(parts) if parts else np.zeros(0)


class Patient:
    """One stay (spell). A readmission is a new Patient with ``readmission_of`` set."""

    __slots__ = (
        "id", "person", "readmission_of", "cohort", "pathway", "acute_los", "assess_dur",
        "transfer", "ready_gap", "u_los", "u_outcome", "u_readmit", "u_readmit_time", "u_weekend", "u_org", "pool",
        "arrival", "bed_start", "clinically_fit", "mffd", "rft", "assess_start", "assess_end", "slot_granted",
        "acute_end", "service", "stay_end", "outcome", "onward_granted", "ds_end", "elective", "cancelled",
        "initial", "initial_stage", "remaining", "package_len",
        "exit", "step_up", "gave_up", "prio", "only", "care_hours", "diverted_from",
    )

    # filled by ``_Sampler.fill`` (or the elective and snapshot set-up) before the journey starts
    cohort: int
    pathway: str
    acute_los: float
    assess_dur: float
    transfer: float
    ready_gap: float
    u_los: float
    u_outcome: float
    u_readmit: float
    u_readmit_time: float
    u_weekend: float
    u_org: float

    def __init__(self, pid: int, person: int, readmission_of: int, arrival: float):
        self.id = pid
        self.person = person
        self.readmission_of = readmission_of
        self.arrival = arrival
        self.bed_start = self.clinically_fit = self.mffd = self.rft = self.assess_start = self.assess_end = NAN
        self.slot_granted = self.acute_end = self.stay_end = self.onward_granted = self.ds_end = NAN
        self.service = -1
        self.outcome = int(Outcome.NONE)
        self.elective = False
        self.initial = False  # already in the system on the start-from-today snapshot
        self.initial_stage = -1  # the journey stage a snapshot patient joined at
        self.remaining = NAN
        self.package_len = NAN  # visit-based P1: the package's planned length (its visits taper over it)
        self.cancelled = int(Cancelled.NOT)
        self.pool: Pool | None = None
        self.u_org = NAN
        self.exit = 0  # ``AcuteExit``: 0 through a pathway, else died in hospital or same-day discharge
        self.step_up = -1  # index of the step-up stream of a community referral (-1: a hospital stay)
        self.gave_up = NAN  # a step-up referral's patience ran out (refused, or admitted instead)
        self.prio = 0  # rank in a pathway's queue (step-up referrals may rank before or after step-down)
        self.only = -1  # index of the one service a step-up referral is for (-1: any of the pathway's)
        self.care_hours = 0.0  # hours a week of a long-term home-care package (home care counted in hours)
        self.diverted_from = -1  # the step-up referral this admission replaced


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
        # streams added with the two clocks (issue 11): new names, so every older stream is unchanged
        self.ready_gap: dict[str, Buffered] = {
            p: Buffered(pw.ready_after_fit, streams[f"{prefix}ready_after_fit.{p}"]) for p, pw in sc.pathways.items()}
        self.org = Buffered(None, streams[prefix + "responsible_org"])
        self.u = Buffered(None, streams[prefix + "patient_uniforms"])
        # issue 12: deaths in hospital and same-day stays, on streams of their own (cohorts without them draw none)
        self.exit_cut: list[tuple[float, float] | None] = []
        self.exit_los: list[tuple[Buffered | None, Buffered | None]] = []
        for name, c in sc.cohorts.items():
            died, same = c.died_in_hospital, c.same_day
            pd_ = died.probability if died is not None else 0.0
            ps = same.probability if same is not None else 0.0
            self.exit_cut.append((pd_, pd_ + ps) if pd_ + ps > 0 else None)
            self.exit_los.append((
                Buffered(died.los, streams[f"{prefix}died_los.{name}"]) if died is not None else None,
                Buffered(same.los, streams[f"{prefix}same_day_los.{name}"]) if same is not None else None))
        self.exit_u = Buffered(None, streams[prefix + "acute_exit"])

    def predraw(self, arrival: list[float], cohorts: list[int] | None) -> _Drawn:
        """Everything ``fill`` draws for a run's first admissions, in bulk: each stream yields the values, in
        patient order, that ``fill`` would have taken from it one patient at a time (``Buffered.take``)."""
        n = len(arrival)
        coh = np.full(n, -1, dtype=np.int64) if cohorts is None else np.array(cohorts, dtype=np.int64)
        free = coh < 0
        if free.any():  # a cohort by the month's case mix (as in ``fill``: the first cumulative share above u)
            day = np.clip(np.floor(np.array(arrival)[free]).astype(np.int64) - self.day0, 0, len(self.month_of_day) - 1)
            cum = np.array(self.cum_share)[np.array(self.month_of_day)[day]]
            coh[free] = (self.cohort.take(int(free.sum()))[:, None] >= cum).sum(axis=1)
        los = _per_group(coh, range(len(self.acute_los)), self.acute_los)
        k = (self.pathway.take(n)[:, None] >= np.array(self.cum_mix)[coh]).sum(axis=1)
        assess = self.assess.take(n)
        transfer = _per_group(k, range(len(PATHWAYS)), [self.transfer.get(pw) for pw in PATHWAYS])
        ready_gap = _per_group(k, range(len(PATHWAYS)), [self.ready_gap.get(pw) for pw in PATHWAYS])
        org = self.org.take(n)
        u = self.u.take(5 * n).reshape(n, 5)
        pathway = np.array(PATHWAYS, dtype=object)[k]
        exit_ = np.zeros(n, dtype=np.int64)
        cuts = np.array([c if c is not None else (-1.0, -1.0) for c in self.exit_cut])
        has = np.array([c is not None for c in self.exit_cut])[coh]
        if has.any():
            eu = np.full(n, 2.0)
            eu[has] = self.exit_u.take(int(has.sum()))
            died, same = eu < cuts[coh, 0], (eu >= cuts[coh, 0]) & (eu < cuts[coh, 1])
            exit_[died], exit_[same] = DIED, SAME_DAY
            pathway[died], pathway[same] = "", "P0"
            for j, pair in ((0, died), (1, same)):
                by_cohort = np.where(pair, coh, -1)
                los = np.where(pair, _per_group(by_cohort, range(len(self.exit_los)),
                                                [e[j] for e in self.exit_los]), los)
        return _Drawn(coh.tolist(), los.tolist(), pathway.tolist(), assess.tolist(), transfer.tolist(),
                      ready_gap.tolist(), org.tolist(), tuple(u[:, j].tolist() for j in range(5)), exit_.tolist())

    def fill(self, p: Patient, cohort: int | None = None, exits: bool = True) -> None:
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
        p.ready_gap = self.ready_gap[pw]()
        p.u_org = self.org()
        uu = self.u
        p.u_los, p.u_outcome, p.u_readmit, p.u_readmit_time, p.u_weekend = uu(), uu(), uu(), uu(), uu()
        cut = self.exit_cut[cohort]
        if cut is not None and exits:  # every other draw is made first, so a stay that ends here changes no one else's
            self._exit(p, cohort, cut)

    def _exit(self, p: Patient, cohort: int, cut: tuple[float, float]) -> None:
        """Death in hospital or a same-day discharge, with the stay's own length; else nothing."""
        u = self.exit_u()
        if u < cut[0]:
            p.exit = DIED
            p.pathway = ""  # never takes a pathway
            los = self.exit_los[cohort][0]
        elif u < cut[1]:
            p.exit = SAME_DAY
            p.pathway = "P0"
            los = self.exit_los[cohort][1]
        else:
            return
        assert los is not None
        p.acute_los = los()

    def set_pathway(self, p: Patient, pathway: str) -> None:
        """Send a patient to a given pathway (snapshot rows name it), redrawing what depends on it."""
        if pathway != p.pathway:
            p.pathway = pathway
            p.transfer = self.transfer[pathway]()
            p.ready_gap = self.ready_gap[pathway]()


@dataclass(frozen=True)
class _Drawn:
    """What ``_Sampler.predraw`` drew for each first admission, by arrival (plain lists: read once per patient)."""

    cohort: list[int]
    acute_los: list[float]
    pathway: list[str]
    assess: list[float]
    transfer: list[float]
    ready_gap: list[float]
    org: list[float]
    u: tuple[list[float], ...]  # u_los, u_outcome, u_readmit, u_readmit_time, u_weekend: flat lists of floats,
    exit: list[int]  # which the garbage collector need not walk (a list per patient would be 34,000 containers)

    def apply(self, p: Patient, i: int) -> None:
        """Give arrival ``i``'s draws to its patient, as ``_Sampler.fill`` would have."""
        p.cohort = self.cohort[i]
        p.acute_los = self.acute_los[i]
        p.pathway = self.pathway[i]
        p.assess_dur = self.assess[i]
        p.transfer = self.transfer[i]
        p.ready_gap = self.ready_gap[i]
        p.u_org = self.org[i]
        u = self.u
        p.u_los, p.u_outcome, p.u_readmit, p.u_readmit_time, p.u_weekend = u[0][i], u[1][i], u[2][i], u[3][i], u[4][i]
        p.exit = self.exit[i]


def _per_group(group: np.ndarray, groups: range, streams: Sequence[Buffered | None]) -> np.ndarray:
    """One value per row from its group's stream, taken in row order (rows of group -1 or with no stream get NaN)."""
    out = np.full(len(group), NAN)
    for g in groups:
        rows = np.flatnonzero(group == g)
        stream = streams[g]
        if len(rows) and stream is not None:
            out[rows] = stream.take(len(rows))
    return out


class _Rounds:
    """When a clinically fit patient is declared medically fit: the next ward round that picks them up."""

    def __init__(self, spec: WardRounds, start_weekday: int, t0: float, t1: float, rng: np.random.Generator, *,
                 holidays: frozenset[int] = frozenset()):
        times: list[float] = []
        probs: list[float] = []
        # rounds beyond the run's end too, so a patient fit near the end still gets a (late) time
        for day in range(math.floor(t0), math.ceil(t1) + 15):
            weekend = (start_weekday + day) % 7 >= 5 or day in holidays
            hours, p = ((spec.weekend_hours, spec.weekend_pickup) if weekend
                        else (spec.weekday_hours, spec.weekday_pickup))
            for h in sorted(set(hours)):
                times.append(day + h / 24.0)
                probs.append(p)
        self.times = times
        self.probs = probs
        self.u = Buffered(None, rng)
        self.never = math.ceil(t1) + 15.0

    def declared(self, t: float) -> float:
        """The first round at or after ``t`` at which the patient is picked up."""
        i = bisect.bisect_left(self.times, t)
        times, probs, u = self.times, self.probs, self.u
        while i < len(times):
            if u() < probs[i]:
                return times[i]
            i += 1
        return self.never


@dataclass
class _Onward:
    """Care a downstream stay can end in (care home, home care): arranging time, then a place."""

    arrange: Buffered
    group: Group | None = None
    pool: Pool | None = None
    stay: Buffered | None = None


class Model:
    """One replication: build with a scenario and its streams, then ``run()``."""

    def __init__(self, scenario: Scenario, streams: Streams, env_factory: type[simpy.Environment] = Kernel):
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
        # bank holidays (model days) treated like a weekend; empty unless the scenario asks for a calendar
        self.holidays = bank_holidays(sc.calendar, self.start, self.t0, self.t1)
        # capacity in force = scheduled (after disruptions) + escalation extra; every change is logged
        self._pools: dict[str, tuple[Group, Pool]] = {}
        self._scheduled: dict[str, float] = {}
        self._extra: dict[str, float] = {}
        self._cap_log: dict[str, list[tuple[float, float]]] = {}
        self._extra_log: dict[str, list[tuple[float, float]]] = {}
        # live counts the escalation rules read: DTOC patients (acute and reporting non-acute beds) and
        # acute patients no longer meeting the criteria to reside
        self.n_dtoc = 0
        self.n_nctr = 0
        self.cancel_electives = 0
        self._watchers: dict[str, list[Callable[[], bool]]] = {}
        assert sc.acute is not None and sc.arrivals is not None  # full mode (pathway-only scenarios are compiled)
        self.acute_pool, self.acute = self._group("acute", sc.acute.beds)
        self.rounds = (_Rounds(sc.acute.ward_rounds, self.start_weekday, self.t0, self.t1,
                               streams["fitness_declaration"], holidays=self.holidays)
                       if sc.acute.ward_rounds is not None else None)
        self._build_assessment()
        self._build_services()
        self._build_onward()
        self._build_discharge()
        self._build_demand()
        self._build_step_up()
        self.escalation = EscalationController(self, sc.escalation) if sc.escalation is not None else None
        if sc.initial_state is not None:
            self._start_from_snapshot()

    # ------------------------------------------------------------------ set-up
    def _build_assessment(self) -> None:
        """The discharge assessment team: staff by weekday and weekend, within working hours."""
        self.assess_pool: Pool | None = None
        self.assess: Group | None = None
        a = self.sc.assessment
        if a is None:
            return
        staff = capacity_steps(a.staff, self.start, self.t0, self.t1)
        wk = capacity_steps(a.weekend_staff, self.start, self.t0, self.t1)
        steps = self._disrupt("assessment", team_steps(staff, wk, a.hours, a.weekend_hours, start=self.start,
                                                       t0=self.t0, t1=self.t1, holidays=self.holidays))
        self.assess_pool = Pool("assessment", steps[1][0])
        self.assess = Group(self.env, "assessment", [self.assess_pool])
        self._register(self.assess, self.assess_pool, steps)

    def _build_services(self) -> None:
        """Downstream services, one queue per pathway in front of its services (tried in listed order)."""
        sc = self.sc
        cohort_index = {name: i for i, name in enumerate(sc.cohorts)}
        self.service_names: list[str] = []
        self.service_pathway: list[str] = []
        self.service_los: list[_Dist] = []
        self.service_outcomes: list[tuple[float, float, float]] = []
        self.service_reports: list[bool] = []
        # leaving a service: (hours as fractions of a day or None, weekend rate), or None for any time
        self.service_leave: list[tuple[tuple[float, float] | None, float] | None] = []
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
                    pool = VisitPool(sname, float(steps[1][0]), accepts, len(self.service_names), home=home,
                                     start=svc.visits.start, end=svc.visits.end, los=svc.los)
                else:
                    pool = Pool(sname, float(steps[1][0]), accepts, len(self.service_names), home)
                self.service_names.append(sname)
                self.service_pathway.append(pname)
                self.service_los.append(svc.los)
                o = svc.outcomes
                # cumulative thresholds in the order home, long-term care, death (home with care last),
                # so scenarios without home_with_care draw exactly the outcomes they always did
                self.service_outcomes.append((o.home, o.home + o.long_term_care,
                                              o.home + o.long_term_care + o.death))
                self.service_reports.append(svc.reporting(pname))
                dis = svc.discharge
                self.service_leave.append(None if dis is None or (dis.hours is None and dis.weekend_rate >= 1.0)
                                          else (_day_fraction(dis.hours), dis.weekend_rate))
                pools.append((pool, steps))
            if pools:
                group = Group(self.env, pname, [p for p, _ in pools])
                self.groups[pname] = group
                for pool, steps in pools:
                    self._register(group, pool, steps)
        self._service_index = {name: i for i, name in enumerate(self.service_names)}
        self.service_leave_u = Buffered(None, self.streams["service_discharge_weekend"])

    def _onward(self, name: str, capacity: Capacity, stay: _Dist | None, arrange: _Dist, prefix: str) -> _Onward:
        out = _Onward(Buffered(arrange, self.streams[prefix + "placement" if name == "long_term_care"
                                                     else prefix + "start"]))
        if capacity != "unlimited":
            hours = name == "home_care" and self.sc.home_care.unit == "hours_per_week"
            out.pool, out.group = self._group(name, capacity, hours)
        if stay is not None:
            out.stay = Buffered(stay, self.streams[prefix + "stay"])
        return out

    def _build_onward(self) -> None:
        """Care homes and long-term home care, where downstream stays can end (after a wait in place)."""
        ltc, hc = self.sc.long_term_care, self.sc.home_care
        self.ltc = self._onward("long_term_care", ltc.capacity, ltc.stay, ltc.placement_time, "long_term_care.")
        self.home_care = self._onward("home_care", hc.capacity, hc.stay, hc.start_time, "home_care.")
        self._n_clients = 0
        self.care_hours = (Buffered(hc.hours_per_package, self.streams["home_care.hours"])
                           if hc.hours_per_package is not None else None)
        if self.home_care.group is not None and (hc.initial_clients or hc.community_starts_per_day):
            self._home_care_caseload(hc)  # other clients matter only where they compete for limited capacity

    def _home_care_caseload(self, hc: HomeCare) -> None:
        """Packages already running at the start, and packages asked for from the community, competing first come,
        first served with hospital and intermediate-care hand-overs for the same home-care capacity."""
        assert hc.stay is not None
        u = Buffered(None, self.streams["home_care.initial"])
        # every client's residual from one interpolation of the same uniforms, drawn in the same order
        rests = equilibrium_residual(hc.stay, np.array([u() for _ in range(hc.initial_clients)])).tolist()
        for rest in rests:  # in place first; any beyond the capacity at the start queue
            Task(self.env, self._community_package(self._client(self.t0), rest), soon=True)
        if hc.community_starts_per_day:
            arr = Arrivals(rate_per_day=hc.community_starts_per_day)
            times = arrival_times(arr, self.start, self.t0, self.t1, rng=self.streams["home_care.community"])
            Task(self.env, self._community_packages(times), soon=True)

    def _client(self, t: float) -> Patient:
        """A home-care client who is not a hospital patient (not in the stay records; negative ids)."""
        self._n_clients += 1
        c = Patient(-self._n_clients, -1, -1, t)
        c.cohort = -1
        if self.care_hours is not None:
            c.care_hours = self.care_hours()
        return c

    def _community_packages(self, times: np.ndarray) -> Generator[simpy.Event, Any, None]:
        env = self.env
        ts = times.tolist()
        if not ts:
            return
        nxt = env.timeout(ts[0] - env.now)
        for t in [*ts[1:], None]:
            yield nxt
            client = self._client(env.now)
            if t is not None:  # the next one queued before this one starts, as SimPy ordered a process started here
                nxt = env.timeout(t - env.now)
            Task(env, self._community_package(client))

    def _community_package(self, client: Patient, length: float | None = None) -> Generator[simpy.Event, Any, None]:
        onward = self.home_care
        if onward.group is not None:
            ev = onward.group.request(client)
            if ev is not None:
                yield ev
        yield from self._onward_stay(onward, client, length)

    def _build_discharge(self) -> None:
        """Discharge hours and weekend rules, per-pathway readmission and assessment settings."""
        sc = self.sc
        d = sc.discharge
        self._discharge_overrides: list[Action] = []
        # patients waiting for the discharge window, re-timed when an escalation action changes the rules
        self._leaving: dict[int, tuple[Patient, float, float, simpy.Process]] = {}
        self._track_leaving = sc.escalation is not None and any(
            a.kind == "extend_discharge" for a in sc.escalation.actions)
        self._base_hours = (d.hours.start / 24.0, d.hours.end / 24.0) if d.hours is not None else None
        self._base_weekend = {p: d.weekend_rate_for(p) for p in PATHWAYS}
        self.dis_hours = self._base_hours
        self.weekend_rate = dict(self._base_weekend)
        self.readmission: dict[str, tuple[float, float]] = {p: (pw.readmission.probability, pw.readmission.within_days)
                                                            for p, pw in sc.pathways.items()}
        # readmissions timed from acute discharge (P1-P3 only: a P0 stay has no downstream stay to differ by)
        self.readmit_from_acute: dict[str, bool] = {p: False for p in ("", *PATHWAYS)}
        for p, pw in sc.pathways.items():
            self.readmit_from_acute[p] = (p != "P0" and pw.readmission.probability > 0
                                          and pw.readmission.timed_from == "acute_discharge")
        self._in_service: dict[int, simpy.Process] = {}
        self.needs_assessment: dict[str, bool] = {p: pw.needs_assessment for p, pw in sc.pathways.items()}
        self.assess_first: dict[str, bool] = {p: pw.assessment_timing == "before_ready"
                                              for p, pw in sc.pathways.items()}

    def _build_demand(self) -> None:
        """Non-elective arrivals (with surges) and scheduled electives."""
        sc = self.sc
        assert sc.arrivals is not None
        surges = tuple(Surge(start=x.start, end=x.end, factor=x.factor or 1.0, note=x.note)
                       for x in sc.disruptions if x.kind == "demand_surge")
        self.arrival_cohort: list[int] | None = None
        if any(c.own_volume for c in sc.cohorts.values()):
            self.arrivals, self.arrival_cohort = self._cohort_arrivals(surges)
        else:
            self.arrivals = arrival_times(sc.arrivals, self.start, self.t0, self.t1, rng=self.streams["arrivals"],
                                          extra_surges=surges)
        if sc.replay is not None and any(s.column.startswith("admissions") for s in sc.replay.demand):
            self.arrivals, self.arrival_cohort = self._replayed_arrivals()
        times = self.arrivals.tolist()
        # the arrival instants as the kernel will reach them (each timeout adds a delay to the time before)
        now, arrived = self.t0, []
        for t in times:
            now = now + (t - now)
            arrived.append(now)
        self.drawn = self.first.predraw(arrived, self.arrival_cohort)
        self._stays = self._first_stays()
        self._timed(times, self._arrive)
        if sc.electives is not None:
            e = sc.electives
            self.elective_times = weekday_times(e.rate_per_weekday, e.admission_hours, self.start,
                                                self.t0, self.t1, rng=self.streams["electives"],
                                                holidays=self.holidays)
            self.elective_los = Buffered(e.los, self.streams["elective_los"])
            self.elective_u = Buffered(None, self.streams["elective_uniforms"])
            self._timed(self.elective_times.tolist(), self._elective)

    def _first_stays(self) -> list[dict[float, float]]:
        """Each service's stay for the uniform of every first admission drawn to the service's pathway, by uniform.

        In bulk, as a scalar inverse transform per stay cost a tenth of a reference replication; the same values,
        as the transforms are elementwise.  Only the admissions drawn to a service's pathway can stay there, so
        each service transforms those alone (a Rotherham run's ~40,000 admissions are ~4,000 per pathway); any
        other uniform (a readmission, a step-up referral) is transformed when its stay starts (``_service_stay``).
        """
        u_los = np.array(self.drawn.u[0])
        drawn_to = np.array(self.drawn.pathway, dtype=object)
        u_of = {pw: u_los[drawn_to == pw] for pw in set(self.service_pathway)}
        return [dict(zip(u_of[pw].tolist(), dist.ppf(u_of[pw]).tolist(), strict=True))
                for pw, dist in zip(self.service_pathway, self.service_los, strict=True)]

    def _cohort_arrivals(self, surges: tuple[Surge, ...]) -> tuple[np.ndarray, list[int]]:
        """Arrivals cohort by cohort, each with its own growth and seasonality, merged in time order.

        Each cohort inverts its own cumulative intensity on its own stream (``arrivals.<cohort>``), so an
        option that changes one cohort's volume moves only that cohort's arrivals: common random numbers
        across options, cohort by cohort.  The cohort is then known at arrival (no cohort draw).
        """
        sc = self.sc
        base = sc.arrivals
        assert base is not None
        times, labels = [], []
        for i, (name, c) in enumerate(sc.cohorts.items()):
            arr = base.model_copy(update={
                "rate_per_day": base.rate_per_day * c.share,
                "annual_growth": base.annual_growth if c.annual_growth is None else c.annual_growth,
                "month_factors": c.volume_month_factors or base.month_factors})
            t = arrival_times(arr, self.start, self.t0, self.t1, rng=self.streams[f"arrivals.{name}"],
                              extra_surges=surges)
            times.append(t)
            labels.append(np.full(len(t), i))
        all_t = np.concatenate(times)
        order = np.argsort(all_t, kind="stable")
        return all_t[order], np.concatenate(labels)[order].tolist()

    def _replayed_arrivals(self) -> tuple[np.ndarray, list[int]]:
        """Admissions on the replayed days exactly as the demand file counts them (see ``Replay``).

        Each column's admissions are placed within their days by the arrivals' hour-of-day profile on a stream
        of their own (``replay.admissions``, ``replay.admissions.<cohort>``); the model's own arrivals on those
        days are dropped and every other day's are kept as they were.  A cohort of -1 is drawn from the case
        mix at arrival, as the model's own arrivals are without per-cohort volumes.
        """
        sc = self.sc
        assert sc.replay is not None and sc.arrivals is not None
        cohort_index = {name: i for i, name in enumerate(sc.cohorts)}
        columns = [s for s in sc.replay.demand if s.column.startswith("admissions")]
        counts = [replayed_days(s, self.start, self.t0, self.t1) for s in columns]
        days = set().union(*counts)
        own = self.arrival_cohort if self.arrival_cohort is not None else [-1] * len(self.arrivals)
        kept = ~np.isin(np.floor(self.arrivals).astype(int), sorted(days))
        times = [self.arrivals[kept]]
        labels = [np.asarray(own, dtype=int)[kept]]
        for s, c in zip(columns, counts, strict=True):
            t = placed_in_days(c, sc.arrivals.hour_profile, self.streams[f"replay.{s.column}"])
            times.append(t)
            labels.append(np.full(len(t), cohort_index.get(s.column.partition(".")[2], -1)))
        all_t = np.concatenate(times)
        order = np.argsort(all_t, kind="stable")
        return all_t[order], np.concatenate(labels)[order].tolist()

    def _build_step_up(self) -> None:
        """Step-up referral streams from the community into P1-P3 places (each on streams of its own)."""
        sc = self.sc
        if not sc.step_up:
            return
        self.diverted = _Sampler(sc, self.streams, "step_up_admitted.")
        cohort_index = {name: i for i, name in enumerate(sc.cohorts)}
        pathway_of = sc.service_pathway()
        for i, su in enumerate(sc.step_up):
            pathway = su.target if su.target in self.groups else pathway_of[su.target]
            only = self._service_index.get(su.target, -1)
            if only >= 0:
                self.groups[pathway].target()
            arr = Arrivals(rate_per_day=su.rate_per_day, month_factors=su.month_factors,
                           weekday_factors=su.weekday_factors, hour_profile=su.hour_profile)
            times = arrival_times(arr, self.start, self.t0, self.t1, rng=self.streams[f"step_up.{su.name}.referrals"])
            dated = [s for s in (sc.replay.demand if sc.replay else []) if s.column == f"step_up.{su.name}"]
            if dated:  # the replayed days' referrals exactly as counted, placed by the stream's hour profile
                counts = replayed_days(dated[0], self.start, self.t0, self.t1)
                times, _ = with_replayed(times, set(counts), placed_in_days(
                    counts, su.hour_profile, self.streams[f"replay.step_up.{su.name}"]))
            Task(self.env, self._referrals(i, su, times, (cohort_index[su.cohort], pathway, only)), soon=True)

    def _referrals(self, i: int, su: StepUp, times: np.ndarray,
                   where: tuple[int, str, int]) -> Generator[simpy.Event, Any, None]:
        env = self.env
        cohort, pathway, only = where
        u = Buffered(None, self.streams[f"step_up.{su.name}.uniforms"])
        los = Buffered(su.los, self.streams[f"step_up.{su.name}.los"]) if su.los is not None else None
        patience = (Buffered(su.patience, self.streams[f"step_up.{su.name}.patience"])
                    if su.patience is not None else None)
        rank = STEP_UP_RANK[su.priority]
        for t in times.tolist():
            yield env.timeout(t - env.now)
            p = self._new_patient(env.now)
            p.step_up, p.cohort, p.pathway, p.only, p.prio = i, cohort, pathway, only, rank
            p.u_los, p.u_outcome, p.u_weekend, p.u_org = u(), u(), u(), u()
            p.u_readmit = 1.0  # never readmitted: a step-up stay did not follow an admission
            if los is not None:
                p.remaining = los()
            env.process(self._step_up(p, patience() if patience is not None else math.inf,
                                      su.when_not_placed == "admitted"))

    def _step_up(self, p: Patient, patience: float, admit: bool) -> Generator[simpy.Event, Any, None]:
        """A referral waits at home for a place (no bed, no delay) up to its patience; then refused or admitted."""
        env = self.env
        group = self.groups[p.pathway]
        ev = group.request(p)
        if ev is not None:
            if patience == math.inf:
                yield ev
            else:
                yield ev | env.timeout(patience)
                if not ev.triggered:
                    group.withdraw(p, ev)
                    p.gave_up = env.now
                    p.cancelled = int(Cancelled.ADMITTED if admit else Cancelled.REFUSED)
                    if admit:
                        q = self._new_patient(env.now, p.person)
                        q.diverted_from = p.id
                        self.diverted.fill(q, p.cohort)
                        yield from self._journey(q)
                    return
        p.slot_granted = env.now
        assert p.pool is not None
        p.service = p.pool.index
        yield from self._downstream(p)

    def _group(self, name: str, cap: Any, hours: bool = False) -> tuple[Pool, Group]:
        steps = self._disrupt(name, capacity_steps(cap, self.start, self.t0, self.t1))
        pool = HoursPool(name, float(steps[1][0])) if hours else Pool(name, float(steps[1][0]))
        group = Group(self.env, name, [pool])
        self._register(group, pool, steps)
        return pool, group

    def _disrupt(self, name: str, steps: Steps) -> Steps:
        """A place's capacity as the scenario schedules it, with replayed dated places on top (history replay),
        then ward closures and staff absence."""
        dated = [c for c in self.sc.replay.capacity if c.target == name] if self.sc.replay is not None else []
        if dated:
            steps = replayed_capacity(steps, dated[0], self.start, self.t0, self.t1)
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
            Task(self.env, self._capacity_changes(name, steps), soon=True)

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

    # ------------------------------------------------------------------ escalation host (see EscalationHost)
    def escalation_metrics(self) -> dict[str, float]:
        """The live state the OPEL rules read (the same names as the triggers' ``metric``)."""
        pool = self.acute_pool
        core = pool.capacity - self._extra["acute"]  # beds in use without those opened by escalation
        occ = 100.0 * pool.busy / core if 0 < core < math.inf else (math.inf if pool.busy else 0.0)
        queue = self.acute.queue
        longest = 24.0 * (self.env.now - queue[0][0].arrival) if queue else 0.0
        values = {"acute_occupancy_pct": occ, "ed_boarding": float(len(queue)),
                  "ed_longest_wait_hours": longest, "delayed_patients": float(self.n_dtoc),
                  "nctr_patients": float(self.n_nctr),
                  "waiting_for_assessment": float(len(self.assess.queue)) if self.assess is not None else 0.0}
        for p in ("P1", "P2", "P3"):
            values[f"queue_{p}"] = float(len(self.groups[p].queue)) if p in self.groups else 0.0
        return values

    def start_action(self, action: Action) -> None:
        """Put an escalation action into force (called by the escalation controller)."""
        self._toggle(action, +1)

    def stop_action(self, action: Action) -> None:
        """Take an escalation action out of force (called by the escalation controller)."""
        self._toggle(action, -1)

    def places_in_use(self, action: Action) -> bool:
        """Are patients still in places above the capacity in force at the action's target?"""
        assert action.target is not None
        _, pool = self._pools[action.target]
        return pool.busy > pool.capacity + 1e-9

    def watch_release(self, target: str, callback: Callable[[], bool]) -> None:
        """Call ``callback`` after each release of a place at ``target`` until it returns True (close-when-empty
        escalation actions end when the last patient in the places they added has left)."""
        group, _ = self._pools[target]
        self._watchers.setdefault(target, []).append(callback)
        group.on_release = self._released

    def _released(self, name: str) -> None:
        watchers = self._watchers.get(name)
        if watchers:
            self._watchers[name] = [w for w in watchers if not w()]

    def _toggle(self, action: Action, sign: int) -> None:
        if action.kind == "add_capacity":
            name = action.target
            assert name is not None and action.amount is not None
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
            # an extension only widens the hours: with no base hours (discharges at any time) it has none to widen
            if a.hours is not None and hours is not None:
                h = (a.hours.start / 24.0, a.hours.end / 24.0)
                hours = (min(hours[0], h[0]), max(hours[1], h[1]))
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

    def _leave_time(self, t: float, pathway: str, u_weekend: float) -> float:
        """Earliest time >= t at which a patient may physically leave an acute bed (discharge hours, weekends)."""
        return self._open_time(t, self.dis_hours, self.weekend_rate[pathway], u_weekend)

    def _open_time(self, t: float, hours: tuple[float, float] | None, rate: float, u_weekend: float) -> float:
        """Earliest time >= t within ``hours`` on a working day, or on a weekend day or bank holiday when
        ``u_weekend`` < ``rate`` (the patient is one of those discharged that day)."""
        if hours is None and rate >= 1.0:
            return t
        h0, h1 = hours if hours is not None else (0.0, 1.0)
        day = math.floor(t)
        hol = self.holidays
        for _ in range(14):
            wd = (self.start_weekday + day) % 7
            if (wd < 5 and day not in hol) or u_weekend < rate:
                open_, close = day + h0, day + h1
                if t < close:
                    return max(t, open_)
            day += 1
        return t  # unreachable with a valid scenario; never block forever

    # ------------------------------------------------------------------ demand
    def _new_patient(self, t: float, person: int = -1, readmission_of: int = -1) -> Patient:
        p = Patient(self._next_id, self._next_id if person < 0 else person, readmission_of, t)
        self._next_id += 1
        self.patients.append(p)
        return p

    def _timed(self, times: list[float], at: Callable[[int], None]) -> None:
        """Call ``at(i)`` at each of the sorted ``times``, on a chain of timeouts with callbacks (no process:
        nothing waits on them).

        Each call queues the next timeout before ``at`` runs, the order SimPy gave a process started by ``at``
        from a generator loop (its ``Initialize`` ran after the loop had queued the next timeout), and the
        first timeout is queued on an urgent event at the start, as the loop's own process queued it: every
        event keeps its place among equal times.
        """
        env = self.env
        n = len(times)
        i = 0

        def fire(_ev: simpy.Event) -> None:
            nonlocal i
            k = i
            i += 1
            if i < n:
                env.timeout(times[i] - env.now).callbacks.append(fire)
            at(k)

        def first(_ev: simpy.Event) -> None:
            if n:
                env.timeout(times[0] - env.now).callbacks.append(fire)

        urgent(env, first)

    def _arrive(self, i: int) -> None:
        """A non-elective arrival: a new patient, their draws (made in bulk at the start), and their journey."""
        p = self._new_patient(self.env.now)
        self.drawn.apply(p, i)
        Task(self.env, self._journey(p))

    def _elective(self, _i: int) -> None:
        """A scheduled elective admission: a bed now, or cancelled."""
        p = self._new_patient(self.env.now)
        p.elective = True
        p.cohort = len(self.sc.cohorts)  # the "elective" category in the records
        p.pathway = "P0"
        p.acute_los = self.elective_los()
        p.transfer = 0.0
        p.ready_gap = 0.0
        p.u_weekend = self.elective_u()
        if self.cancel_electives:
            p.cancelled = int(Cancelled.ESCALATION)
        elif not self.acute.try_acquire(p):
            p.cancelled = int(Cancelled.NO_BED)
        else:
            Task(self.env, self._elective_stay(p))

    def _elective_stay(self, p: Patient) -> Generator[simpy.Event, Any, None]:
        """A planned stay: criteria-led discharge when it ends (no ward-round declaration)."""
        env = self.env
        p.bed_start = env.now
        yield env.timeout(p.acute_los)
        p.clinically_fit = p.mffd = p.rft = env.now
        self.n_nctr += 1
        yield from self._leave(p, env.now)
        p.acute_end = env.now
        p.outcome = HOME
        self.n_nctr -= 1
        self.acute.release(self.acute_pool)

    def _readmission(self, prev: Patient, delay: float) -> Generator[simpy.Event, Any, None]:
        yield self.env.timeout(delay)
        if self.readmit_from_acute.get(prev.pathway):
            proc = self._in_service.get(prev.id)
            if proc is not None:  # still in an intermediate-care stay: back to hospital from it
                proc.interrupt("readmitted")
            elif prev.outcome not in (HOME, HOME_WITH_CARE):
                return  # died, or in a care home: not readmitted (as when timed from the downstream stay's end)
        p = self._new_patient(self.env.now, prev.person, prev.id)
        self.readmit.fill(p, prev.cohort)
        yield from self._journey(p)

    # ------------------------------------------------------------------ the journey
    def _journey(self, p: Patient, stage: int = ED) -> Generator[simpy.Event, Any, None]:
        """A stay from the ED onwards; ``stage`` > ED joins part-way (patients already in the
        system on a start-from-today snapshot, who carry the stamps and places of earlier stages).

        The ED wait and the acute stay are written out here rather than in helpers: every patient
        passes through them, and a delegating generator frame per step costs time on the event path.
        """
        env = self.env
        if stage == ED:  # wait in ED for an acute bed (first come, first served)
            ev = self.acute.request(p)
            if ev is not None:
                yield ev
            p.bed_start = env.now
        if p.exit:  # died in hospital, or a same-day discharge: no pathway
            yield from self._acute_exit(p)
            return
        if stage <= IN_ACUTE:  # the clinical stay, then declared fit on the next round that picks the patient up
            yield env.timeout(p.acute_los)
            p.clinically_fit = env.now
            if self.rounds is not None:
                t = self.rounds.declared(env.now)
                if t > env.now:
                    yield env.timeout(t - env.now)
            p.mffd = env.now
            self.n_nctr += 1
        if stage <= WAITING:
            if p.pathway == "P0":
                yield from self._home(p)
                return
            yield from self._get_ready(p, stage)
            yield from self._get_place(p)
            yield from self._leave_acute(p)
        yield from self._downstream(p)

    def _acute_exit(self, p: Patient) -> Generator[simpy.Event, Any, None]:
        """A stay that ends without a pathway: a death, or a same-day discharge home (P0).

        A same-day stay leaves when its own length ends (criteria-led, no ward round or discharge window):
        medically fit, ready and discharged at the same instant, so it adds no NCTR or DTOC time.
        """
        env = self.env
        yield env.timeout(p.acute_los)
        p.acute_end = env.now
        self.acute.release(self.acute_pool)
        if p.exit == DIED:
            p.outcome = DEATH
            return
        p.clinically_fit = p.mffd = p.rft = env.now
        p.outcome = HOME
        self._maybe_readmit(p, "P0")

    def _ready(self, p: Patient) -> Generator[simpy.Event, Any, None]:
        """Ready for transfer: the MDT's decision, ``ready_gap`` after medically fit (and not before now)."""
        env = self.env
        t = p.mffd + p.ready_gap
        if t > env.now:
            yield env.timeout(t - env.now)
        p.rft = env.now
        if p.pathway != "P0":
            self.n_dtoc += 1

    def _home(self, p: Patient) -> Generator[simpy.Event, Any, None]:
        """P0: ready, then transport and medicines (transfer time), then out within discharge hours."""
        env = self.env
        t = p.mffd + p.ready_gap
        if t > env.now:
            yield env.timeout(t - env.now)
        p.rft = env.now
        yield from self._leave(p, env.now + p.transfer)
        p.acute_end = env.now
        self.n_nctr -= 1
        self.acute.release(self.acute_pool)
        p.outcome = HOME
        self._maybe_readmit(p, p.pathway)

    def _get_ready(self, p: Patient, stage: int) -> Generator[simpy.Event, Any, None]:
        """Readiness and the discharge assessment, in the pathway's order."""
        pw = p.pathway
        before = self.assess_first[pw]
        if stage <= IN_ACUTE and not before:
            yield from self._ready(p)
        if stage <= ASSESSMENT and self.needs_assessment[pw]:
            yield from self._assess(p)
        if before and stage <= ASSESSMENT:
            yield from self._ready(p)

    def _assess(self, p: Patient) -> Generator[simpy.Event, Any, None]:
        assert self.assess is not None and self.assess_pool is not None
        env = self.env
        ev = self.assess.request(p)
        if ev is not None:
            yield ev
        p.assess_start = env.now
        yield env.timeout(p.assess_dur)
        p.assess_end = env.now
        self.assess.release(self.assess_pool)

    def _get_place(self, p: Patient) -> Generator[simpy.Event, Any, None]:
        """Wait in the acute bed for a place on the pathway (the place is held from the grant)."""
        ev = self.groups[p.pathway].request(p)
        if ev is not None:
            yield ev
        p.slot_granted = self.env.now
        assert p.pool is not None
        p.service = p.pool.index

    def _leave_acute(self, p: Patient) -> Generator[simpy.Event, Any, None]:
        """Transfer, then out within discharge hours: delayed (under the pathway's reason) until then."""
        yield from self._leave(p, self.env.now + p.transfer)
        p.acute_end = self.env.now
        self.n_nctr -= 1
        self.n_dtoc -= 1
        self.acute.release(self.acute_pool)
        if self.readmit_from_acute[p.pathway]:
            self._maybe_readmit(p, p.pathway)

    def _downstream(self, p: Patient) -> Generator[simpy.Event, Any, None]:
        """The downstream stay and its outcome; onward care is waited for in the place.

        With readmissions timed from acute discharge, a readmission can cut the stay short (an interrupt):
        the patient leaves the place for hospital (outcome ``readmitted``) and the place is freed.
        """
        env = self.env
        pool = p.pool
        assert pool is not None
        k = pool.index
        tracked = self.readmit_from_acute[p.pathway]
        if tracked:
            self._in_service[p.id] = env.active_process  # type: ignore[assignment]
        try:
            yield from self._stay(p, k)
        except simpy.Interrupt:
            p.outcome = READMITTED
            if p.stay_end != p.stay_end:
                p.stay_end = env.now
        if tracked:
            self._in_service.pop(p.id, None)
        p.ds_end = env.now
        self.groups[p.pathway].release(pool, p)
        if p.outcome in (HOME, HOME_WITH_CARE) and not tracked and p.step_up < 0:
            self._maybe_readmit(p, p.pathway)

    def _stay(self, p: Patient, k: int) -> Generator[simpy.Event, Any, None]:
        """The stay in service ``k``, its outcome, any wait for onward care, and the service's discharge rules."""
        env = self.env
        # a snapshot patient's rest of stay, a visit-based package's length fixed when it was taken, a step-up stay
        los = p.remaining if p.remaining == p.remaining else self._service_stay(k, p.u_los)
        yield env.timeout(los)
        p.stay_end = env.now
        home, ltc, death = self.service_outcomes[k]
        u = p.u_outcome
        if u < home:
            p.outcome = HOME
        elif u < ltc:
            p.outcome = LONG_TERM_CARE
            yield from self._wait_onward(p, self.ltc, self.service_reports[k])
        elif u < death:
            p.outcome = DEATH
            return
        else:
            p.outcome = HOME_WITH_CARE
            yield from self._wait_onward(p, self.home_care, self.service_reports[k])
        rule = self.service_leave[k]
        if rule is not None:  # the service's discharge hours and weekend rule (deaths are not held)
            t = self._open_time(env.now, rule[0], rule[1], self.service_leave_u())
            if t > env.now:
                yield env.timeout(t - env.now)

    def _service_stay(self, k: int, u: float) -> float:
        """Length of a stay in service ``k`` for the patient's uniform ``u`` (worked out ahead for first admissions)."""
        los = self._stays[k].get(u)
        return float(self.service_los[k].ppf(np.array([u]))[0]) if los is None else los

    def _wait_onward(self, p: Patient, onward: _Onward, reporting: bool) -> Generator[simpy.Event, Any, None]:
        """Arrange onward care and wait for a place, keeping the downstream place meanwhile."""
        env = self.env
        if reporting:
            self.n_dtoc += 1
        ev = None
        try:
            t = onward.arrange()
            if t > 0:
                yield env.timeout(t)
            if onward.group is not None:
                if self.care_hours is not None and onward is self.home_care:
                    p.care_hours = self.care_hours()
                ev = onward.group.request(p)
                if ev is not None:
                    yield ev
                Task(env, self._onward_stay(onward, p), soon=True)
            p.onward_granted = env.now
        except simpy.Interrupt:  # readmitted while waiting: out of the queue (a place granted this instant runs)
            if ev is not None and onward.group is not None:
                if ev.triggered:
                    Task(env, self._onward_stay(onward, p), soon=True)
                else:
                    onward.group.withdraw(p, ev)
            raise
        finally:
            if reporting:
                self.n_dtoc -= 1

    def _onward_stay(self, onward: _Onward, client: Patient, length: float | None = None,
                     ) -> Generator[simpy.Event, Any, None]:
        assert onward.stay is not None and onward.group is not None and onward.pool is not None
        yield self.env.timeout(onward.stay() if length is None else length)
        onward.group.release(onward.pool, client)

    def _maybe_readmit(self, p: Patient, pw: str) -> None:
        prob, within = self.readmission.get(pw, (0.0, 30.0))
        if prob > 0 and p.u_readmit < prob:
            Task(self.env, self._readmission(p, p.u_readmit_time * within))

    # ------------------------------------------------------------------ start from today
    def _snapshot_rows(self) -> list[tuple[str, str | None, str | None, float | None]]:
        """Every snapshot patient as (node, cohort, pathway, days already there), longest there first."""
        init = self.sc.initial_state
        assert init is not None
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
        return rows

    def _start_from_snapshot(self) -> None:
        """Put the snapshot's patients in their places at t = 0; waiting patients queue longest-first."""
        sampler = _Sampler(self.sc, self.streams, "initial.")
        u = Buffered(None, self.streams["initial.residual"])
        pick = Buffered(None, self.streams["initial.cohort"])
        cohort_index = {name: i for i, name in enumerate(self.sc.cohorts)}
        service_index = self._service_index
        starts: list[tuple[Patient, int]] = []
        for node, cohort, pathway, days in self._snapshot_rows():
            elapsed = 0.0 if days is None else days
            p = self._new_patient(-elapsed)
            p.initial = True
            if node in service_index:
                pathway = self.service_pathway[service_index[node]]
            elif node in ("P0", "P1", "P2", "P3"):
                pathway = node
            c = cohort_index[cohort] if cohort is not None else self._snapshot_cohort(node, pathway, pick())
            sampler.fill(p, c, exits=node == "ed")  # a patient past the front door is on a pathway already
            if pathway is not None:
                sampler.set_pathway(p, pathway)
            starts.append((p, self._place_snapshot_patient(p, node, days, u)))
        for p, stage in starts:
            p.initial_stage = stage
            Task(self.env, self._journey(p, stage), soon=True)

    def _place_snapshot_patient(self, p: Patient, node: str, days: float | None, u: Buffered) -> int:
        """Stamp what a snapshot patient has already done, take their place, and return their stage.

        ``u`` (the residual-stay stream) is drawn only for patients part-way through a stay.
        """
        elapsed = -p.arrival
        if node == "ed":
            return ED
        p.bed_start = -elapsed
        if node in self._service_index:  # in a downstream service
            pool = self._pools[node][1]
            pool.busy += 1
            p.pool = pool
            p.service = k = pool.index
            p.clinically_fit = p.mffd = p.rft = p.slot_granted = p.acute_end = -elapsed
            if self.needs_assessment[p.pathway]:
                p.assess_start = p.assess_end = -elapsed
            p.remaining = _residual(self.service_los[k], days, u())
            if isinstance(pool, VisitPool):  # a package under way: its visits taper from when it began
                p.package_len = elapsed + p.remaining
                pool.add(p.id, -elapsed, p.package_len)
            return IN_SERVICE
        self.acute_pool.busy += 1
        if node == "acute":
            p.acute_los = _residual(list(self.sc.cohorts.values())[p.cohort].acute_los, days, u())
            return IN_ACUTE
        # medically fit and waiting: for assessment (ready unless the pathway assesses first), or assessed and ready
        p.clinically_fit = p.mffd = -elapsed
        self.n_nctr += 1
        if node != "assessment" or not self.assess_first[p.pathway]:
            p.rft = -elapsed
            if p.pathway != "P0":  # going home: never a delayed transfer (see _ready)
                self.n_dtoc += 1
        if node != "assessment" and self.needs_assessment[p.pathway]:
            p.assess_start = p.assess_end = -elapsed
        return ASSESSMENT if node == "assessment" else WAITING

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

    # ------------------------------------------------------------------ run
    def run(self) -> RawRun:
        """Run the replication to its end and return the raw stamps and logs.

        The cyclic garbage collector is paused for the run (and restored after): the model's objects (patients,
        events, tasks) form no reference cycles and go by reference counting, while each collection would walk
        the patients created so far again.  Measured on one pinned core (6 interleaved replications each), a
        reference-network replication took 1.65 s with the pause against 1.86 s without; a Rotherham year the
        same either way (2.01 s).  What cycles a run does leave (an interrupt's traceback) are a few thousand
        objects, collected as usual once the collector is back on.
        """
        with gc_paused():
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


def _day_fraction(hours: Hours | None) -> tuple[float, float] | None:
    """Opening hours as fractions of a day."""
    return (hours.start / 24.0, hours.end / 24.0) if hours is not None else None


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

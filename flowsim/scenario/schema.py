"""The scenario schema: a local health and care system described as frozen, typed data.

Why pydantic with ``extra="forbid"`` and ``frozen=True``: a misspelt field in a
planner's YAML must fail loudly rather than silently fall back to a default,
and the model must never mutate the scenario it was given (options are diffs
of a baseline, so a shared object must stay what it was).

Time unit is days; hours of the day appear only where a field's name says so.
"""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from flowsim.scenario.distributions import Distribution, Fixed
from flowsim.scenario.provenance import placeholder_problems
from flowsim.scenario.types import (
    MAX_DATE,
    MAX_RATE,
    MAX_THRESHOLD,
    MIN_DATE,
    Change,
    Count,
    Date,
    DelayHours,
    Factor,
    Growth,
    HourEnd,
    HourOfDay,
    Money,
    Percent,
    Population,
    PositiveCount,
    PositiveDays,
    Range,
    Rate,
    Share,
    Text,
    Threshold,
)
from flowsim.scenario.types import Probability as Probability

#: Validation problems: (field path, what is wrong and what is allowed), reported together by ``FieldProblems``.
Problems = list[tuple[tuple[str | int, ...], str]]

PathwayName = Literal["P0", "P1", "P2", "P3"]
PATHWAYS: tuple[str, ...] = ("P0", "P1", "P2", "P3")
Org = Literal["nhs", "social_care", "both"]
#: SitRep reason groups a delay can have (2016/17 monthly DTOC SitRep, reasons A, C, D and E).
DelayReason = Literal["assessment", "non_acute_nhs", "care_home", "home_care"]
AgeBand = Literal["18-64", "65-84", "85+"]
Month = Literal["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
MONTHS: tuple[str, ...] = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")

# Kept for fields without a more specific kind in flowsim.scenario.types (prefer those: they state a range).
PositiveFloat = Annotated[float, Range(0, 1e6, low_open=True)]
NonNegInt = Count
Name = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$", max_length=64)]

_SUM_TOL = 1e-6


class FieldProblems(ValueError):
    """Cross-field problems found by a model-level validator, each tied to the field it concerns.

    pydantic would report a model validator's error at the model itself ("top
    level"); carrying the path lets the loader point at the offending line.
    """

    def __init__(self, items: list[tuple[tuple[str | int, ...], str]]):
        self.items = items
        super().__init__("; ".join(msg for _, msg in items))


class Frozen(BaseModel):
    """Base of every scenario part: unknown fields are errors, and nothing changes after validation."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class OrgShares(Frozen):
    """Shares of delays attributed to each organisation, drawn once per delayed patient.

    For when attribution is not one fixed value: e.g. waits for care-home places where some
    residents are funded by NHS continuing healthcare and most by the council.
    """

    nhs: Probability = 0.0
    social_care: Probability = 0.0
    both: Probability = 0.0

    @model_validator(mode="after")
    def _sums_to_one(self) -> OrgShares:
        total = self.nhs + self.social_care + self.both
        if abs(total - 1.0) > _SUM_TOL:
            raise ValueError(f"responsible shares must sum to 1, they sum to {total:.6g}")
        return self


#: Who a delay is attributed to: one organisation, or shares sampled per delayed patient.
Responsible = Union[Org, OrgShares]


# --------------------------------------------------------------------------- capacity
class Period(Frozen):
    """A dated change to a capacity: ``set`` replaces the base, ``add`` adds to it.

    ``end`` is the last day *included*; omitted means "until the end of the run".
    ``annual: true`` repeats the same calendar window every year (winter wards).
    """

    start: Date
    end: Date | None = None
    set: Count | None = None
    add: Change | None = None
    annual: bool = False
    note: Text | None = None

    @model_validator(mode="after")
    def _one_of(self) -> Period:
        if (self.set is None) == (self.add is None):
            raise ValueError("a capacity period needs exactly one of 'set' or 'add'")
        if self.end is not None and self.end < self.start:
            raise ValueError(f"period end {self.end} is before its start {self.start}")
        if self.annual and self.end is not None and (self.end - self.start).days >= 365:
            raise ValueError("an annual period must be shorter than a year")
        return self


class Schedule(Frozen):
    """Capacity that changes on dated steps (winter wards, closures, new contracts)."""

    base: NonNegInt
    periods: list[Period] = Field(default_factory=list)

    @model_validator(mode="after")
    def _never_below_zero(self) -> Schedule:
        # the model would clamp a negative capacity to 0 without a word; a planner meant something else
        bad: list[tuple[tuple[str | int, ...], str]] = [
            (("periods", i, "add"), f"base {self.base} + add {p.add} takes capacity below zero; allowed: add from "
                                    f"{-self.base} (use 'set: 0' to close it)")
            for i, p in enumerate(self.periods) if p.add is not None and self.base + p.add < 0]
        if bad:
            raise FieldProblems(bad)
        return self

    def value_on(self, day: dt.date) -> int:
        """Capacity on ``day`` (periods never overlap, so at most one applies)."""
        for p in self.periods:
            if _covers(p, day):
                return p.set if p.set is not None else self.base + (p.add or 0)
        return self.base


def _shift_year(d: dt.date, years: int) -> dt.date:
    try:
        return d.replace(year=d.year + years)
    except ValueError:  # 29 February in a non-leap year
        return d.replace(year=d.year + years, day=28)


def period_windows(p: Period, first: dt.date, last: dt.date) -> list[tuple[dt.date, dt.date]]:
    """The days ``p`` covers within ``[first, last]`` as inclusive (start, end) pairs; annual periods
    repeat every year, as the model applies them (``flowsim.model.calendar.capacity_steps``)."""
    shifts = range(first.year - p.start.year - 1, last.year - p.start.year + 2) if p.annual else range(1)
    out = []
    for k in shifts:
        try:
            s = _shift_year(p.start, k)
            e = MAX_DATE if p.end is None else _shift_year(p.end, k)
        except (ValueError, OverflowError):
            continue
        if e >= first and s <= last:
            out.append((max(s, first), min(e, last)))
    return out


def _covers(p: Period, day: dt.date) -> bool:
    return bool(period_windows(p, day, day))


#: A capacity is a whole number, a dated schedule, or ``unlimited``.
Capacity = Union[NonNegInt, Literal["unlimited"], Schedule]


# --------------------------------------------------------------------------- demand
class Surge(Frozen):
    """A dated multiplier on arrivals (cold snap, flu, a local incident)."""

    start: Date
    end: Date
    factor: Factor
    note: Text | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Surge:
        if self.end < self.start:
            raise ValueError(f"surge end {self.end} is before its start {self.start}")
        return self


class Arrivals(Frozen):
    """Non-elective admission demand (decisions to admit from ED and direct GP admissions).

    rate(t) = rate_per_day x (1+annual_growth)^years x month x weekday x hour x surge.
    Month, weekday and hour factors are *relative*: each set is normalised to
    average 1, so ``rate_per_day`` stays the annual average daily rate.
    """

    rate_per_day: Rate
    annual_growth: Growth = 0.0
    growth_from: Date | None = None
    month_factors: dict[Month, Factor] = Field(default_factory=dict)
    weekday_factors: Annotated[list[Factor], Field(min_length=7, max_length=7)] = Field(
        default_factory=lambda: [1.0] * 7
    )
    hour_profile: Annotated[list[Factor], Field(min_length=24, max_length=24)] = Field(
        default_factory=lambda: [1.0] * 24
    )
    surges: list[Surge] = Field(default_factory=list)


class StayExit(Frozen):
    """An acute stay that ends without a discharge pathway: death in hospital, or a same-day discharge.

    Drawn per admission with ``probability``; the stay lasts ``los`` days (its own distribution, e.g.
    hours for a same-day stay) and never passes a ward round, a medically fit declaration or a pathway.
    """

    probability: Probability
    los: Distribution


class Cohort(Frozen):
    """A slice of the case mix with its own stay and discharge needs."""

    label: Text | None = None
    share: Share
    age_band: AgeBand | None = None
    from_care_home: bool = False
    locality: Name | None = Field(default=None, description="Home locality (served first by its own services).")
    month_factors: dict[Month, Factor] = Field(
        default_factory=dict,
        description="Seasonal weight on this cohort's share (e.g. more frail elderly admissions in winter); "
                    "shares are re-normalised each month, so total demand still follows arrivals.month_factors.")
    acute_los: Distribution
    pathway_mix: dict[PathwayName, Probability]
    died_in_hospital: StayExit | None = Field(
        default=None, description="Share of admissions that die in hospital, and how long they stay: never medically "
                                  "fit, never a discharge (not in the Discharge Ready Date measures).")
    same_day: StayExit | None = Field(
        default=None, description="Share of admissions discharged home the same day (ambulatory and assessment-unit "
                                  "stays), with their own length of stay: P0 discharges that skip the ward round.")
    annual_growth: Growth | None = Field(
        default=None, description="This cohort's own annual growth in admissions (e.g. 85+ faster than all "
                                  "admissions). Setting it (or volume_month_factors) on any cohort generates "
                                  "arrivals cohort by cohort: share x arrivals.rate_per_day is the cohort's "
                                  "average daily rate at the growth origin, and the total is their sum.")
    volume_month_factors: dict[Month, PositiveFloat] = Field(
        default_factory=dict,
        description="Seasonality of this cohort's admissions (relative, normalised to average 1); default: "
                    "arrivals.month_factors. Unlike month_factors it moves volumes, not shares.")

    @model_validator(mode="after")
    def _exits(self) -> Cohort:
        total = sum(x.probability for x in (self.died_in_hospital, self.same_day) if x is not None)
        if total > 1.0 + _SUM_TOL:
            raise ValueError(f"died_in_hospital and same_day probabilities sum to {total:.6g}, more than 1")
        if self.month_factors and (self.annual_growth is not None or self.volume_month_factors):
            raise ValueError("month_factors (seasonal shares) cannot be combined with per-cohort volumes "
                             "(annual_growth, volume_month_factors): give the season as volume_month_factors")
        return self

    @property
    def own_volume(self) -> bool:
        """Does this cohort ask for arrivals of its own (growth or seasonality on volumes)?"""
        return self.annual_growth is not None or bool(self.volume_month_factors)

    @field_validator("pathway_mix")
    @classmethod
    def _sums_to_one(cls, v: dict[str, float]) -> dict[str, float]:
        total = sum(v.values())
        if abs(total - 1.0) > _SUM_TOL:
            raise ValueError(f"pathway_mix probabilities must sum to 1, they sum to {total:.6g}")
        return v


# --------------------------------------------------------------------------- services
class Hours(Frozen):
    """Daily opening window, in hours after midnight (e.g. start 8, end 20)."""

    start: HourOfDay
    end: HourEnd

    @model_validator(mode="after")
    def _ordered(self) -> Hours:
        if self.end <= self.start:
            raise ValueError(f"hours end ({self.end}) must be after start ({self.start})")
        return self


class Outcomes(Frozen):
    """Where patients go when a downstream stay ends.

    ``home_with_care``: home, but only once a long-term home-care package starts (``home_care``);
    the patient keeps the place until then (a bed-based service: a delay in a non-acute bed,
    SitRep reason E "awaiting care package in own home").
    """

    home: Probability = 1.0
    long_term_care: Probability = 0.0
    death: Probability = 0.0
    home_with_care: Probability = 0.0

    @model_validator(mode="after")
    def _sums_to_one(self) -> Outcomes:
        total = self.home + self.long_term_care + self.death + self.home_with_care
        if abs(total - 1.0) > _SUM_TOL:
            raise ValueError(f"outcome probabilities must sum to 1, they sum to {total:.6g}")
        return self


class Readmission(Frozen):
    """Chance that a patient discharged home re-enters as a new non-elective arrival.

    ``timed_from: acute_discharge`` times the readmission (uniform within ``within_days``) from leaving
    the acute bed, as the NHS's 30-day emergency readmission measure does; a patient still in an
    intermediate-care stay then goes back to hospital from it and frees the place.  The default
    (``downstream_end``) times it from the end of the downstream stay, for patients who went home.
    """

    probability: Probability = 0.0
    within_days: PositiveDays = 30.0
    timed_from: Literal["downstream_end", "acute_discharge"] = "downstream_end"


class ServiceDischarge(Frozen):
    """When patients can leave a community service (default: at any time, every day).

    ``weekend_rate``: probability that a patient due to leave on a Saturday, Sunday (or bank holiday
    with ``calendar.bank_holidays``) leaves that day rather than on the next working day.
    Deaths are not held.
    """

    hours: Hours | None = None
    weekend_rate: Probability = 1.0


class VisitProfile(Frozen):
    """Visits a day a P1 package needs: ``start`` on its first day, tapering linearly to ``end``."""

    start: Annotated[float, Range(0, 100, "visits a day", low_open=True)]
    end: Annotated[float, Range(0, 100, "visits a day")]


class Service(Frozen):
    """A downstream service with its own capacity (beds, or concurrent P1 packages)."""

    label: Text | None = None
    capacity: Capacity
    los: Distribution
    cohorts: list[Name] | None = Field(
        default=None, description="Cohorts eligible for this service; omitted means all."
    )
    outcomes: Outcomes = Field(default_factory=Outcomes)
    unit_cost_per_day: Money = Field(
        default=0.0, description="Cost of one available place for one day (GBP), e.g. a spot-purchased bed.")
    cost_per_occupied_day: Money = Field(
        default=0.0, description="Cost of one patient-day of care in this service (GBP).")
    cost_note: Text | None = Field(default=None, description="Source of this service's costs (document and line), "
                                                            "or 'ASSUMPTION: ...'; shown in reports.")
    locality: Name | None = Field(default=None, description="Locality this service belongs to.")
    capacity_unit: Literal["places", "visits"] = Field(
        default="places", description="'places': beds or concurrent packages; 'visits': home visits per day "
                                      "(P1), each package needing a visit rate that tapers over its stay.")
    visits: VisitProfile | None = None
    bed_based: bool | None = Field(
        default=None, description="Patients stay in a bed (P2/P3 units) rather than at home (P1). Default: false "
                                  "for P1 services, true otherwise. Only bed-based services hold delayed bed-days.")
    provider: Literal["nhs", "council", "independent"] = Field(
        default="nhs", description="Who runs the service (NHS trust, council, independent sector).")
    funder: Org = Field(default="nhs", description="Who funds the service: the organisation a delay waiting for "
                                                   "it is attributed to, unless the pathway's 'responsible' says so.")
    reports_dtoc: bool | None = Field(
        default=None, description="Delays in this service's beds are returned in the DTOC SitRep. Default: bed-based "
                                  "services run by an NHS provider (council and independent beds do not report).")
    discharge: ServiceDischarge | None = Field(
        default=None, description="Discharge hours and weekend rule for leaving this service; omitted: any time.")

    @model_validator(mode="after")
    def _visits_need_profile(self) -> Service:
        if self.capacity_unit == "visits" and self.visits is None:
            raise ValueError("a service with capacity_unit 'visits' needs 'visits: {start, end}' per package")
        if self.reports_dtoc and self.bed_based is False:
            raise ValueError("reports_dtoc needs a bed-based service: a patient at home is never a delayed bed-day")
        return self

    def in_beds(self, pathway: str) -> bool:
        """Do patients of this service (on ``pathway``) occupy beds?"""
        return self.bed_based if self.bed_based is not None else pathway != "P1"

    def reporting(self, pathway: str) -> bool:
        """Do delays in this service's beds count in the DTOC SitRep?"""
        if self.reports_dtoc is not None:
            return self.reports_dtoc
        return self.in_beds(pathway) and self.provider == "nhs"


class Pathway(Frozen):
    """A discharge pathway (P0 home, P1 home with support, P2 intermediate care bed, P3 D2A bed).

    Patients waiting for a slot keep their acute bed; services are tried in
    the order listed (a preference order), and the first with a free,
    eligible slot takes the patient at the head of the queue.
    """

    label: Text | None = None
    needs_assessment: bool = False
    responsible: Responsible | None = Field(
        default=None, description="Who a delay waiting for this pathway is attributed to (one organisation or shares "
                                  "drawn per delayed patient); default: the funder of the service awaited.")
    transfer_time: Distribution = Field(default_factory=lambda: Fixed(dist="fixed", value=0.0))
    services: dict[Name, Service] = Field(default_factory=dict)
    readmission: Readmission = Field(default_factory=Readmission)
    ready_after_fit: Distribution = Field(
        default_factory=lambda: Fixed(dist="fixed", value=0.0),
        description="Days from medically fit (no longer meets the criteria to reside) to ready for transfer (the "
                    "multidisciplinary team's decision: where a 2016/17 DTOC starts). Default 0: the same instant.")
    assessment_timing: Literal["after_ready", "before_ready"] = Field(
        default="after_ready",
        description="'after_ready': the discharge assessment follows readiness and its wait is a DTOC (SitRep reason "
                    "A, completion of assessment); 'before_ready': it is done while the patient is medically fit "
                    "but not yet ready for transfer (not a DTOC), and readiness waits for it.")
    dtoc_reason: DelayReason | None = Field(
        default=None, description="SitRep reason of a delay waiting for this pathway. Default: P1 'home_care' "
                                  "(care package in own home), P2/P3 'non_acute_nhs' (further non-acute NHS care).")

    def reason(self, name: str) -> str:
        """The SitRep reason group of a delay waiting for this pathway."""
        if self.dtoc_reason is not None:
            return self.dtoc_reason
        return "home_care" if name == "P1" else "non_acute_nhs"


class Assessment(Frozen):
    """The discharge assessment team: concurrent assessments it can run, and when.

    Outside ``hours`` (and at weekends when ``weekend_staff`` is 0) no new
    assessment starts; one already under way runs to completion.
    """

    staff: Capacity
    weekend_staff: Capacity = 0
    hours: Hours = Field(default_factory=lambda: Hours(start=9, end=17))
    weekend_hours: Hours | None = None
    duration: Distribution
    responsible: Responsible = Field(
        default="social_care", description="Who runs the assessment: the organisation its waits are attributed to.")


class Discharge(Frozen):
    """When patients can physically leave an acute bed.

    ``weekend_rate``: probability that a patient ready to leave on a Saturday
    or Sunday is discharged that day rather than held to Monday (per pathway,
    or one number for all).
    """

    hours: Hours | None = None
    weekend_rate: Probability | dict[PathwayName, Probability] = 1.0

    def weekend_rate_for(self, pathway: str) -> float:
        """The weekend discharge rate of ``pathway`` (1 when not given)."""
        if isinstance(self.weekend_rate, dict):
            return float(self.weekend_rate.get(pathway, 1.0))  # type: ignore[call-overload]
        return float(self.weekend_rate)


class LongTermCare(Frozen):
    """Permanent residential or nursing care after a P2/P3 stay.

    The patient keeps the community bed while a home is chosen
    (``placement_time``) and, when capacity is limited, until a place is free:
    a delayed transfer from a non-acute bed.
    """

    capacity: Capacity = "unlimited"
    stay: Distribution | None = None
    placement_time: Distribution = Field(default_factory=lambda: Fixed(dist="fixed", value=0.0))
    responsible: Responsible = "social_care"

    @model_validator(mode="after")
    def _stay_if_limited(self) -> LongTermCare:
        if self.capacity != "unlimited" and self.stay is None:
            raise ValueError("long_term_care with limited capacity needs a 'stay' distribution")
        return self


class HomeCare(Frozen):
    """Long-term home care (domiciliary care packages) that a downstream stay can end in.

    A patient whose stay ends ``home_with_care`` keeps their place while the package is
    arranged (``start_time``) and, when ``capacity`` is limited (packages in progress), until
    one is free: in a bed-based service, a delay in a non-acute bed (SitRep reason E).
    Kept in the same shape as ``long_term_care`` so that home care can grow into a capacity
    in hours with a reablement hand-over.
    """

    capacity: Capacity = "unlimited"
    unit: Literal["packages", "hours_per_week"] = Field(
        default="packages", description="'packages': capacity counts packages in progress; 'hours_per_week': "
                                        "capacity is care hours a week, each package taking its own hours "
                                        "(hours_per_package), granted first come, first served while they fit.")
    hours_per_package: Distribution | None = Field(
        default=None, description="Hours a week of one package (needed with unit 'hours_per_week').")
    stay: Distribution | None = Field(default=None, description="How long a package lasts (needed when capacity "
                                                                "is limited).")
    start_time: Distribution = Field(default_factory=lambda: Fixed(dist="fixed", value=0.0),
                                     description="Days to arrange a package before it can start.")
    responsible: Responsible = "social_care"
    community_starts_per_day: Annotated[float, Range(0, MAX_RATE, "packages a day")] = Field(
        default=0.0, description="Packages a day asked for from the community (not after a hospital or "
                                 "intermediate-care stay): Poisson, in the same first-come queue; with "
                                 "unlimited capacity they compete for nothing and are not simulated.")
    initial_clients: NonNegInt = Field(
        default=0, description="Packages already running when the run starts (their remaining length drawn from "
                               "the equilibrium residual of 'stay'), so a long-lived caseload needs no long warm-up.")

    @model_validator(mode="after")
    def _stay_if_limited(self) -> HomeCare:
        if self.capacity != "unlimited" and self.stay is None:
            raise ValueError("home_care with limited capacity needs a 'stay' distribution")
        if self.unit == "hours_per_week" and self.hours_per_package is None:
            raise ValueError("home_care with unit 'hours_per_week' needs 'hours_per_package'")
        if (self.community_starts_per_day or self.initial_clients) and self.stay is None:
            raise ValueError("community_starts_per_day and initial_clients need a 'stay' distribution")
        return self


class WardRounds(Frozen):
    """When medical fitness is declared: ward and board rounds, by time of day and weekday.

    A non-elective patient's acute stay (``acute_los``) ends when they are clinically fit; they
    are *declared* medically fit (no longer meeting the criteria to reside) at the next round at
    which they are picked up.  At each round a clinically fit patient is picked up with the
    round's probability (weekend rounds are fewer and see fewer patients).  The declaration lag
    adds acute bed-days.
    """

    weekday_hours: Annotated[list[HourOfDay], Field(min_length=1, max_length=24)]
    weekend_hours: Annotated[list[HourOfDay], Field(max_length=24)] = Field(default_factory=list)
    weekday_pickup: Share = 1.0
    weekend_pickup: Share = 1.0


class Acute(Frozen):
    """General and acute (G&A) beds available to non-elective patients."""

    beds: Capacity
    ward_rounds: WardRounds | None = Field(
        default=None, description="Fitness declared on ward rounds; omitted: declared the moment the acute stay ends.")


class Electives(Frozen):
    """Scheduled elective admissions on weekdays: they take acute beds and can be cancelled.

    An elective patient who finds no free bed on arrival is cancelled ("no bed"),
    and while an escalation action ``cancel_electives`` is in force every elective
    is cancelled ("escalation"); a cancelled elective never occupies a bed.
    """

    rate_per_weekday: Rate
    admission_hours: Hours = Field(default_factory=lambda: Hours(start=7, end=11))
    los: Distribution


class Disruption(Frozen):
    """A dated event that takes capacity away or adds demand.

    - ``ward_closure``: ``beds`` out of use at ``target`` (``acute`` or a service name), e.g. norovirus.
      Beds close to new patients at once; patients already in them stay until they leave.
    - ``staff_absence``: ``percent`` of ``target`` capacity (``assessment`` or a service, e.g. P1 packages) lost.
    - ``demand_surge``: non-elective arrivals multiplied by ``factor`` (cold weather, flu).
    """

    kind: Literal["ward_closure", "staff_absence", "demand_surge"]
    start: Date
    end: Date
    target: str | None = None
    beds: PositiveCount | None = None
    percent: Percent | None = None
    factor: Factor | None = None
    note: Text | None = None

    @model_validator(mode="after")
    def _fields_for_kind(self) -> Disruption:
        if self.end < self.start:
            raise ValueError(f"disruption end {self.end} is before its start {self.start}")
        need = {"ward_closure": ("target", "beds"), "staff_absence": ("target", "percent"),
                "demand_surge": ("factor",)}[self.kind]
        missing = [f for f in need if getattr(self, f) is None]
        if missing:
            raise ValueError(f"a {self.kind} needs {' and '.join(missing)}")
        return self


OpelMetric = Literal["acute_occupancy_pct", "ed_boarding", "ed_longest_wait_hours", "delayed_patients",
                     "nctr_patients", "waiting_for_assessment", "queue_P1", "queue_P2", "queue_P3"]


class Trigger(Frozen):
    """One condition on system state, e.g. ``{metric: acute_occupancy_pct, above: 95}``.

    Metrics: ``acute_occupancy_pct`` (occupied acute beds / core beds x 100, where core beds are the
    beds in use without those opened by escalation, so opening beds does not lower the reading that
    opened them), ``ed_boarding``, ``ed_longest_wait_hours``, ``delayed_patients`` (DTOC patients in
    acute and reporting non-acute beds), ``nctr_patients`` (acute patients no longer meeting the
    criteria to reside), ``waiting_for_assessment``, and ``queue_P1``..``queue_P3`` (patients waiting
    in acute beds for a place on that pathway).
    """

    metric: OpelMetric
    above: Threshold


class LevelRule(Frozen):
    """A level holds when ``any`` of its triggers hold (or ``all``, when given instead)."""

    any: list[Trigger] | None = None
    all: list[Trigger] | None = None

    @model_validator(mode="after")
    def _one_of(self) -> LevelRule:
        if (self.any is None) == (self.all is None) or not (self.any or self.all):
            raise ValueError("a level rule needs a non-empty 'any' or 'all' list of triggers")
        return self

    def holds(self, values: dict[str, float]) -> bool:
        """Does the rule hold for these metric values?"""
        if self.any is not None:
            return any(values[t.metric] > t.above for t in self.any)
        return all(values[t.metric] > t.above for t in self.all or [])


class Action(Frozen):
    """What an organisation does under pressure, with its delay, minimum duration and cost.

    Kinds: ``add_capacity`` (``target``: ``acute`` escalation beds, ``assessment`` staff, or a
    service name for spot-purchased P2/P3 beds or P1 packages; ``amount`` places),
    ``extend_discharge`` (``hours`` and/or ``weekend_rate`` in force while active),
    ``cancel_electives``.

    An action is called for while the OPEL level is at least ``level``, or (community
    escalation) while its own rule ``when`` holds, e.g. ``{any: [{metric: queue_P1, above: 15}]}``.
    It starts ``delay_hours`` after it is called for (if it still is).  Once started it stays on
    for at least ``min_duration_hours``; when no longer called for it stands down after
    ``stand_down_hours`` (called for again in the meantime: it carries on).  Capacity taken away
    closes to new patients at once, without moving anyone; with ``close_when_empty`` the action
    stays in force (and is paid for) until the places it added are empty.
    """

    level: Annotated[int, Range(2, 4, "an OPEL level", integer=True)] | None = None
    when: LevelRule | None = None
    kind: Literal["add_capacity", "extend_discharge", "cancel_electives"]
    target: str | None = None
    amount: PositiveCount | None = None
    hours: Hours | None = None
    weekend_rate: Probability | None = None
    delay_hours: DelayHours = 0.0
    min_duration_hours: DelayHours = Field(
        default=0.0, description="Once started, the action stays on at least this long (rostered staff, opened wards).")
    stand_down_hours: DelayHours = Field(
        default=0.0, description="The action stops only after it has not been called for this long.")
    close_when_empty: bool = Field(
        default=False, description="add_capacity: when standing down, the places close to new patients and the "
                                   "action ends when the last patient in them has left.")
    cost_one_off: Money = 0.0
    cost_per_day: Money = 0.0
    cost_per_place_day: Money = 0.0
    label: Text | None = None

    @model_validator(mode="after")
    def _fields_for_kind(self) -> Action:
        if (self.level is None) == (self.when is None):
            raise ValueError("an action needs exactly one of 'level' (an OPEL level) or 'when' (its own rule)")
        if self.kind == "add_capacity" and (self.target is None or self.amount is None):
            raise ValueError("an add_capacity action needs 'target' and 'amount'")
        if self.kind == "extend_discharge" and self.hours is None and self.weekend_rate is None:
            raise ValueError("an extend_discharge action needs 'hours' or 'weekend_rate'")
        if self.close_when_empty and self.kind != "add_capacity":
            raise ValueError("close_when_empty is for add_capacity actions")
        return self


class Escalation(Frozen):
    """OPEL levels 1-4 computed from system state at set times of day, with hysteresis, and actions.

    At each evaluation the target level is the highest whose rule holds (1 if none).
    A higher target is adopted at once; a lower one only once the current level has
    been held for ``hold_days``.  Actions follow a level or their own rule (see ``Action``).
    """

    evaluate_at_hours: Annotated[list[HourOfDay], Field(min_length=1, max_length=24)] = Field(
        default_factory=lambda: [8.0, 14.0, 20.0])
    hold_days: Annotated[float, Range(0, 366, "days")] = 1.0
    levels: dict[Literal[2, 3, 4], LevelRule] = Field(default_factory=dict)
    actions: list[Action] = Field(default_factory=list)

    @model_validator(mode="after")
    def _reachable(self) -> Escalation:
        # level L is reached only when the rule of L or of a higher level holds; an action at a level no
        # rule reaches would sit in the scenario (and its costs in a reader's mind) without ever starting
        ruled = sorted(self.levels)
        bad: list[tuple[tuple[str | int, ...], str]] = []
        if not self.levels and not self.actions:
            bad.append((("levels",), "escalation needs OPEL 'levels' or actions with their own 'when' rule"))
        bad += [(("actions", i, "level"), f"no rule in escalation.levels reaches OPEL {a.level} or above (rules: "
                                          f"{', '.join(map(str, ruled)) or 'none'}), so this action can never start; "
                                          "add a level rule or remove the action")
                for i, a in enumerate(self.actions) if a.level is not None and not any(lv >= a.level for lv in ruled)]
        if bad:
            raise FieldProblems(bad)
        return self


class SnapshotPatient(Frozen):
    """One patient on the snapshot day, and how long they have already been where they are.

    ``node``: ``ed`` (boarding), ``acute`` (in their acute stay, not yet medically fit),
    ``assessment`` (fit, waiting for or in assessment), ``P1``/``P2``/``P3`` (fit and assessed,
    waiting in an acute bed for that pathway), ``P0`` (fit, going home without new support at the
    next discharge hours: a bed state at midnight has them), or a service name (in a downstream stay).
    """

    node: Name
    cohort: Name | None = None
    pathway: PathwayName | None = None
    days: Annotated[float, Range(0, 36_500, "days already spent there")] = 0.0


class InitialState(Frozen):
    """The system on ``start_date``: start from today instead of an empty system plus warm-up.

    Counts say how many patients are where, with the rest of their stays drawn from the
    equilibrium residual distribution; ``patients`` (or a ``snapshot_file`` CSV with columns
    node, cohort, pathway, days) gives each patient's time already spent, and the rest of the
    stay is drawn conditional on it (see ``flowsim/model/residual.py``).  Patients already
    waiting are served first, longest wait first.  Cohorts not given are drawn by share.
    """

    snapshot_file: Text | None = None
    ed_boarding: Count = 0
    acute_occupied: Count = 0
    waiting_for_assessment: dict[PathwayName, Count] = Field(default_factory=dict)
    waiting: dict[PathwayName, Count] = Field(default_factory=dict)
    services: dict[Name, Count] = Field(default_factory=dict)
    patients: list[SnapshotPatient] = Field(default_factory=list)
    allow_over_capacity: bool = Field(
        default=False, description="Accept more patients in a place at the start than its capacity in force (an "
                                   "overflow: trolleys, escalation areas); nobody new is admitted there until "
                                   "occupancy falls below capacity, and the excess is reported with the results.")


class StepUp(Frozen):
    """Step-up referrals: people sent from the community straight into a P1-P3 service to prevent an admission.

    They compete with hospital discharges (step-down) for the same places.  ``priority`` orders a
    referral in the pathway's queue against step-down patients (``equal``: first come, first served).
    A referral with no place waits at home (no bed-day, never a delayed transfer) for up to
    ``patience`` days; then it is ``refused`` or ``admitted`` (becomes a non-elective arrival).
    """

    name: Name
    label: Text | None = None
    target: Name = Field(description="A pathway (P1, P2, P3) or one of its services.")
    cohort: Name = Field(description="The cohort the referred people belong to (service eligibility, and the "
                                     "admission's case mix if they are sent to hospital).")
    rate_per_day: PositiveFloat
    month_factors: dict[Month, PositiveFloat] = Field(default_factory=dict)
    weekday_factors: Annotated[list[PositiveFloat], Field(min_length=7, max_length=7)] = Field(
        default_factory=lambda: [1.0] * 7)
    hour_profile: Annotated[list[PositiveFloat], Field(min_length=24, max_length=24)] = Field(
        default_factory=lambda: [1.0] * 24)
    priority: Literal["after_step_down", "equal", "before_step_down"] = "equal"
    patience: Distribution | None = Field(
        default=None, description="Days a referral waits for a place before giving up; omitted: as long as it takes.")
    when_not_placed: Literal["refused", "admitted"] = Field(
        default="refused", description="What happens when patience runs out: the referral is refused (the person "
                                       "stays at home), or the person is admitted to hospital.")
    los: Distribution | None = Field(default=None, description="Length of a step-up stay; default: the service's.")
    note: Text | None = None


#: Daily series of the model a replay's observed file may give (each a column of ``daily.csv``).
OBSERVABLE = ("admissions", "readmissions", "acute_occupied_midnight", "occupancy_pct", "delayed_midnight",
              "delayed_acute_midnight", "delayed_nonacute_midnight", "nctr_midnight", "ed_4h_breaches",
              "ed_12h_breaches", "step_up_referrals")
Observable = Literal["admissions", "readmissions", "acute_occupied_midnight", "occupancy_pct", "delayed_midnight",
                     "delayed_acute_midnight", "delayed_nonacute_midnight", "nctr_midnight", "ed_4h_breaches",
                     "ed_12h_breaches", "step_up_referrals"]
#: Count per day of a replayed series (admissions or referrals).
DayCount = Annotated[int, Range(0, MAX_RATE, "admissions or referrals that day", integer=True)]
ObservedValue = Annotated[float, Range(0, MAX_THRESHOLD, "an observed daily value")]


class ReplaySeries(Frozen):
    """One column of ``replay.demand_file``: counts for consecutive days from ``start``.

    ``admissions``: non-elective admissions of all cohorts (each admission's cohort drawn from the case mix);
    ``admissions.<cohort>``: that cohort's admissions; ``step_up.<stream>``: referrals of that step-up stream.
    Counts are of admissions the model does not make itself: readmissions and step-up referrals sent to
    hospital are modelled on top, as on any other day.
    """

    column: Annotated[str, Field(pattern=r"^(admissions|(admissions|step_up)\.[A-Za-z][A-Za-z0-9_]*)$",
                                 max_length=80)]
    start: Date
    counts: list[DayCount]


class CapacityStep(Frozen):
    """A dated capacity from ``replay.capacity_file``: ``places`` from ``date`` until the next date given for
    the same place (to the end of the run after the last)."""

    date: Date
    places: Count


class ReplayCapacity(Frozen):
    """One column of ``replay.capacity_file``: the dated places (or beds) of one service, ``acute``,
    ``long_term_care`` or ``home_care``, in date order."""

    target: Name
    steps: list[CapacityStep] = Field(min_length=1)


class ObservedSeries(Frozen):
    """One column of ``replay.observed_file``: what happened each day from ``start`` (null: not observed)."""

    column: Observable
    start: Date
    values: list[ObservedValue | None]


class Replay(Frozen):
    """History replay: a past period as it happened.  File names are relative to the scenario file that gives
    them; flowsim reads each into the field beside it (``demand``, ``capacity``, ``observed``).

    Dated demand replaces the model's arrival rates on the days the demand file covers (every day from its first
    to its last row; days of the run outside it, the warm-up included, keep the model's rates): that day's
    admissions (and step-up referrals) are exactly the file's counts, placed within the day by the scenario's
    hour-of-day profile on streams of their own.  Dated capacity goes through the scenario's capacity schedule:
    each value holds from its date until the next one given for that place; before the first, the scenario's
    own capacity.  The observed series are laid against the simulated ones in ``replay.csv``, a figure and the
    run report; they do not change the simulation (nor the scenario's id).
    """

    demand_file: Text | None = None
    capacity_file: Text | None = None
    observed_file: Text | None = None
    demand: list[ReplaySeries] = Field(default_factory=list, description="filled by flowsim from demand_file")
    capacity: list[ReplayCapacity] = Field(default_factory=list, description="filled by flowsim from capacity_file")
    observed: list[ObservedSeries] = Field(default_factory=list, description="filled by flowsim from observed_file")

    def demand_days(self) -> tuple[dt.date, dt.date] | None:
        """First and last day of the replayed demand (None without dated demand)."""
        if not self.demand:
            return None
        first = min(s.start for s in self.demand)
        last = max(s.start + dt.timedelta(days=len(s.counts) - 1) for s in self.demand)
        return first, last


class CalendarRules(Frozen):
    """Days that count as weekends for discharges, assessment, ward rounds and electives."""

    bank_holidays: Literal["england"] | None = Field(
        default=None, description="'england': England and Wales bank holidays (the 'holidays' package) are treated "
                                  "like a weekend day; omitted: weekdays are working days.")


class ParameterDraws(Frozen):
    """Parameter uncertainty carried into a run (see ``flowsim/scenario/parameters.py``): ``source`` names a
    calibration directory; ``sets`` (filled when the scenario is loaded) are its accepted parameter sets, one
    drawn per replication."""

    source: Text
    sets: list[dict[Text, float]] = Field(default_factory=list, description="filled by flowsim from source")
    method: Text = ""


class Locality(Frozen):
    """A locality (e.g. one of Rotherham's partnership areas) with its own services and demand."""

    label: Text | None = None
    neighbours: list[Name] = Field(
        default_factory=list, description="Localities whose spare capacity this locality's patients may use.")


class DemandStream(Frozen):
    """Pathway-only mode: medically fit patients ready to leave hospital, per day, for one pathway."""

    pathway: Literal["P1", "P2", "P3"]
    locality: Name | None = None
    rate_per_day: Rate
    month_factors: dict[Month, Factor] = Field(default_factory=dict)
    label: Text | None = None


class DemandProfile(Frozen):
    """Pathway-only mode: calendar shape shared by every demand stream (relative, normalised to 1)."""

    annual_growth: Growth = 0.0
    weekday_factors: Annotated[list[Factor], Field(min_length=7, max_length=7)] = Field(
        default_factory=lambda: [1.0] * 7)
    hour_profile: Annotated[list[Factor], Field(min_length=24, max_length=24)] = Field(
        default_factory=lambda: [1.0] * 24)
    surges: list[Surge] = Field(default_factory=list)


COST_FIELDS = ("acute_delay_per_day", "acute_occupied_bed_day", "acute_available_bed_day", "non_elective_admission",
               "fixed_per_day", "investment_one_off")
#: Fields of ``costs`` a note may explain: the prices above and the value the appraisal puts on a delayed bed-day.
NOTED_COST_FIELDS = (*COST_FIELDS, "value_per_delayed_bed_day")


class Costs(Frozen):
    """System-level unit costs (GBP); service costs live on each service.

    Every figure a board sees should say where it came from: ``notes`` maps a
    cost field to its source (a document and line) or to "ASSUMPTION: ...".
    Choose fields that do not count the same money twice: a non-elective
    tariff per admission already pays for the spell's bed-days.
    """

    acute_delay_per_day: Money = Field(
        default=0.0, description="Cost of one DTOC day in an acute bed (ready for transfer and still there).")
    acute_occupied_bed_day: Money = Field(
        default=0.0, description="Variable cost of an occupied G&A bed-day.")
    acute_available_bed_day: Money = Field(
        default=0.0, description="Fixed cost of an open (staffed) G&A bed per day, occupied or not; escalation "
                                 "beds are priced by their action instead.")
    non_elective_admission: Money = Field(
        default=0.0, description="Cost per non-elective admission (e.g. the average tariff).")
    fixed_per_day: Money = Field(
        default=0.0, description="Running cost per day of provision priced nowhere else (e.g. extra weekend "
                                 "assessment staff), for every day reported.")
    investment_one_off: Money = Field(
        default=0.0, description="One-off investment this scenario needs (set-up, recruitment, equipment).")
    value_per_delayed_bed_day: Money | None = Field(
        default=None, description="What the board is willing to pay to avoid one delayed bed-day, over and above "
                                  "the cash the costs above already count (patients' deconditioning and harm). Not a "
                                  "cost: the option appraisal uses it for net monetary benefit and the probability "
                                  "each option is best; unset, it reports neither.")
    notes: dict[str, str] = Field(default_factory=dict,
                                  description="Source or 'ASSUMPTION: ...' for each cost field, by field name.")

    @model_validator(mode="after")
    def _known_notes(self) -> Costs:
        unknown = [k for k in self.notes if k not in NOTED_COST_FIELDS]
        if unknown:
            raise FieldProblems([(("notes", k), f"not a cost field; allowed: {', '.join(NOTED_COST_FIELDS)}")
                                 for k in unknown])
        return self


class Targets(Frozen):
    """National standards the results are read against (defaults from the seeds)."""

    delayed_per_100k: Annotated[float, Range(0, 100_000, "per 100,000 adults", low_open=True)] = Field(
        default=9.4, description="Delayed people per day per 100,000 adults aged 18+ (BCF, F3:3756-3761).")
    occupancy_pct: Percent = Field(
        default=92.0, description="G&A bed occupancy at most this (F2:736).")
    ed_within_4h_pct: Percent = Field(
        default=76.0, description="Share of ED patients within 4 hours, at least (F2:734, the 2024 standard); the "
                                  "model measures admitted patients' wait for a bed.")


class Simulation(Frozen):
    """Calendar window. The run starts ``warmup_days`` before ``start_date`` from an
    empty system; results cover ``start_date`` to ``start_date + duration_days``."""

    start_date: Date
    duration_days: Annotated[int, Range(1, 3660, "days, up to ten years", integer=True)]
    warmup_days: Annotated[int, Range(0, 3660, "days, up to ten years", integer=True)] = 0

    @model_validator(mode="after")
    def _in_calendar(self) -> Simulation:
        # dates outside this window overflow the calendar arithmetic inside a worker, hours into a sweep
        first = self.start_date - dt.timedelta(days=self.warmup_days)
        last = self.start_date + dt.timedelta(days=self.duration_days)
        if first < MIN_DATE:
            raise FieldProblems([(("warmup_days",), f"the warm-up would start on {first}; allowed: a run that "
                                                    f"starts on or after {MIN_DATE}")])
        if last > MAX_DATE:
            raise FieldProblems([(("duration_days",), f"the run would end on {last}; allowed: a run that ends "
                                                      f"by {MAX_DATE}")])
        return self

    @property
    def end_date(self) -> dt.date:
        """The day after the last reported day (the results window is ``[start_date, end_date)``)."""
        return self.start_date + dt.timedelta(days=self.duration_days)

    @property
    def first_date(self) -> dt.date:
        """The first day simulated (the start of the warm-up)."""
        return self.start_date - dt.timedelta(days=self.warmup_days)


class Override(Frozen):
    """One change made for a run on top of the scenario file (``--set``, ``--warmup``).

    Kept in the resolved scenario so that every output generated from it (terminal, figure titles, report
    header, assumptions, checklist) can say that the run is not the file as written, and what changed."""

    path: str = Field(min_length=1, description="Dotted field path, as given to --set.")
    value: Any = Field(default=None, description="The value used in this run (null: unset by the change).")
    was: Any = Field(default=None, description="The value the scenario file gave (null: not set there).")
    source: str = Field(default="--set", description="Where the change came from (--set, --warmup).")


class Scenario(Frozen):
    """A whole local system. Options are small ``extends:`` diffs of a baseline."""

    name: Annotated[Text, Field(max_length=200)]
    description: Annotated[str, Field(max_length=20_000)] = ""
    assumptions: list[str] = Field(default_factory=list)
    mode: Literal["full", "pathway_only"] = Field(
        default="full", description="'pathway_only' models only the community side: demand streams of medically "
                                    "fit patients go straight to P1-P3, waiting in acute beds (at a cost).")
    simulation: Simulation
    population_18plus: Population
    arrivals: Arrivals | None = None
    cohorts: dict[Name, Cohort] = Field(default_factory=dict)
    acute: Acute | None = None
    demand: list[DemandStream] = Field(default_factory=list)
    demand_profile: DemandProfile = Field(default_factory=DemandProfile)
    localities: dict[Name, Locality] = Field(default_factory=dict)
    costs: Costs = Field(default_factory=Costs)
    targets: Targets = Field(default_factory=Targets)
    pathways: dict[PathwayName, Pathway]
    assessment: Assessment | None = None
    discharge: Discharge = Field(default_factory=Discharge)
    long_term_care: LongTermCare = Field(default_factory=LongTermCare)
    home_care: HomeCare = Field(default_factory=HomeCare)
    step_up: list[StepUp] = Field(default_factory=list)
    calendar: CalendarRules = Field(default_factory=CalendarRules)
    electives: Electives | None = None
    disruptions: list[Disruption] = Field(default_factory=list)
    escalation: Escalation | None = None
    initial_state: InitialState | None = None
    replay: Replay | None = Field(
        default=None, description="History replay: dated demand and capacity from CSV files, observed series to "
                                  "lay the simulated ones against.")
    parameters_from: ParameterDraws | None = Field(
        default=None, description="A calibration directory whose accepted parameter sets replications draw from, "
                                  "so intervals include parameter uncertainty.")
    overrides: list[Override] = Field(
        default_factory=list, description="Written by flowsim, not by hand: the changes a run made to the file "
                                          "(--set, --warmup), so outputs can show them.")

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        """Cross-field rules no single field can check; all problems are reported together, mode problems first
        (the rest would only repeat them)."""
        problems: Problems = self._mode_problems()
        if problems:
            raise FieldProblems(problems)
        services = set(self.service_pathway())
        problems = [*self._share_and_cost_problems(), *self._pathway_problems(), *self._cohort_route_problems(),
                    *self._disruption_problems(services), *self._escalation_problems(services),
                    *self._capacity_problems(services)]
        if problems:
            raise FieldProblems(problems)
        return self

    def _share_and_cost_problems(self) -> Problems:
        out: Problems = []
        total = sum(c.share for c in self.cohorts.values())
        if self.cohorts and abs(total - 1.0) > _SUM_TOL:  # pathway-only cohorts are derived, not given
            out.append((("cohorts",), f"cohort shares must sum to 1, they sum to {total:.6g} "
                        f"({', '.join(f'{n}: {c.share:g}' for n, c in self.cohorts.items())})"))
        if self.mode == "pathway_only":
            out.extend((("costs", f), "a pathway-only scenario has no acute beds to price; "
                                      "use acute_delay_per_day for the days patients wait in them")
                       for f in ("acute_available_bed_day", "acute_occupied_bed_day") if getattr(self.costs, f))
        if self.costs.acute_available_bed_day and self.acute is not None and self.acute.beds == "unlimited":
            out.append((("costs", "acute_available_bed_day"),
                        "cannot price open beds when acute.beds is 'unlimited' (the cost would be infinite)"))
        return out

    def _pathway_problems(self) -> Problems:
        """P0 has no services, P1-P3 at least one; a service lives under one pathway and names defined cohorts."""
        out: Problems = []
        seen: dict[str, str] = {}
        for pname, pathway in self.pathways.items():
            where: tuple[str | int, ...] = ("pathways", pname)
            if pname == "P0" and pathway.services:
                out.append(((*where, "services"), "P0 (home, no new support) cannot have services"))
            if pname != "P0" and not pathway.services:
                out.append(((*where, "services"), f"pathway {pname} needs at least one service"))
            if pathway.needs_assessment and self.assessment is None:
                out.append(((*where, "needs_assessment"),
                            f"pathway {pname} needs assessment but no 'assessment' team is defined"))
            for sname, svc in pathway.services.items():
                if sname in seen:
                    out.append(((*where, "services", sname),
                                f"service '{sname}' is defined under both {seen[sname]} and {pname}"))
                seen[sname] = pname
                out.extend(((*where, "services", sname, "cohorts"),
                             f"cohort '{c}' is not defined (defined: {', '.join(self.cohorts)})")
                            for c in svc.cohorts or [] if c not in self.cohorts)
        return out

    def _cohort_route_problems(self) -> Problems:
        """Every pathway a cohort is sent to exists and has a service that accepts the cohort."""
        out: Problems = []
        for cname, cohort in self.cohorts.items():
            for p, prob in cohort.pathway_mix.items():
                if prob <= 0 or (p == "P0" and p in self.pathways):
                    continue
                where = ("cohorts", cname, "pathway_mix", p)
                if p not in self.pathways:
                    out.append((where, f"cohort '{cname}' sends patients to {p}, which is not defined under "
                                       f"'pathways' (defined: {', '.join(self.pathways) or 'none'})"))
                elif p != "P0" and self.pathways[p].services and not any(
                        s.cohorts is None or cname in s.cohorts for s in self.pathways[p].services.values()):
                    out.append((where, f"cohort '{cname}' is sent to {p} but no {p} service accepts it"))
        return out

    def _disruption_problems(self, services: set[str]) -> Problems:
        out: Problems = []
        for i, d in enumerate(self.disruptions):
            where: tuple[str | int, ...] = ("disruptions", i, "target")
            if d.kind == "ward_closure" and d.target not in services | {"acute"}:
                out.append((where, f"ward_closure target must be 'acute' or a service "
                                   f"({', '.join(sorted(services))}), got {d.target!r}"))
            if d.kind == "staff_absence" and d.target not in services | {"assessment"}:
                out.append((where, f"staff_absence target must be 'assessment' or a "
                                   f"service ({', '.join(sorted(services))}), got {d.target!r}"))
            if d.target == "assessment" and self.assessment is None:
                out.append((where, "there is no assessment team to be absent from"))
        return out

    def _escalation_problems(self, services: set[str]) -> Problems:
        out: Problems = []
        if self.escalation is None:
            return out
        allowed = services | {"acute", "assessment"}
        for i, a in enumerate(self.escalation.actions):
            where: tuple[str | int, ...] = ("escalation", "actions", i)
            if a.kind == "add_capacity" and a.target not in allowed:
                out.append(((*where, "target"), f"add_capacity target must be 'acute', 'assessment' or a service "
                                                f"({', '.join(sorted(services))}), got {a.target!r}"))
            if a.kind == "add_capacity" and a.target == "assessment" and self.assessment is None:
                out.append(((*where, "target"), "there is no assessment team"))
            if a.kind == "cancel_electives" and self.electives is None:
                out.append(((*where, "kind"), "cancel_electives needs an 'electives' section"))
        return out

    @model_validator(mode="after")
    def _step_up_consistent(self) -> Scenario:
        """Each step-up stream names a defined cohort and a P1-P3 pathway or service that accepts it."""
        problems: Problems = []
        pathway_of = self.service_pathway()
        names: set[str] = set()
        for i, su in enumerate(self.step_up):
            where: tuple[str | int, ...] = ("step_up", i)
            if su.name in names:
                problems.append(((*where, "name"), f"a second step-up stream named {su.name!r}"))
            names.add(su.name)
            known = list(self.cohorts)
            if su.cohort not in self.cohorts:
                problems.append(((*where, "cohort"), f"cohort {su.cohort!r} is not defined (defined: "
                                                     f"{', '.join(known) or 'none'})"))
            pathway = su.target if su.target in ("P1", "P2", "P3") else pathway_of.get(su.target)
            if pathway is None or pathway not in self.pathways:
                problems.append(((*where, "target"), f"{su.target!r} is neither a defined P1-P3 pathway nor one of its "
                                                     f"services ({', '.join(sorted(pathway_of)) or 'none'})"))
                continue
            services = self.pathways[pathway].services
            allowed = [services[su.target]] if su.target in services else list(services.values())
            if su.cohort in self.cohorts and not any(s.cohorts is None or su.cohort in s.cohorts for s in allowed):
                problems.append(((*where, "cohort"), f"no service of {su.target} accepts cohort {su.cohort!r}"))
        if any(c.own_volume for c in self.cohorts.values()):
            problems.extend((("cohorts", n, "month_factors"), "seasonal shares cannot be mixed with per-cohort volumes "
                                                              "(another cohort sets annual_growth or "
                                                              "volume_month_factors): use volume_month_factors")
                            for n, c in self.cohorts.items() if c.month_factors)
        if problems:
            raise FieldProblems(problems)
        return self

    @model_validator(mode="after")
    def _replay_consistent(self) -> Scenario:
        """Replayed columns name this scenario's cohorts, step-up streams and places (see ``Replay``)."""
        rp = self.replay
        if rp is None:
            return self
        problems = [*self._replay_demand_problems(rp), *self._replay_capacity_problems(rp)]
        if problems:
            raise FieldProblems(problems)
        return self

    def _replay_demand_problems(self, rp: Replay) -> Problems:
        out: Problems = []
        if rp.demand and self.mode == "pathway_only":
            return [(("replay", "demand_file"), "dated demand replays admissions and step-up referrals of a full "
                                                "scenario; a pathway-only scenario has neither")]
        columns = [s.column for s in rp.demand]
        step_ups = {su.name for su in self.step_up}
        for i, col in enumerate(columns):
            kind, _, name = col.partition(".")
            if kind == "admissions" and name and name not in self.cohorts:
                out.append((("replay", "demand", i, "column"), f"{col!r}: no cohort {name!r} (defined: "
                                                               f"{', '.join(self.cohorts)})"))
            elif kind == "step_up" and name not in step_ups:
                out.append((("replay", "demand", i, "column"), f"{col!r}: no step-up stream {name!r} (defined: "
                                                               f"{', '.join(sorted(step_ups)) or 'none'})"))
        by_cohort = [c for c in columns if c.startswith("admissions.")]
        if by_cohort and "admissions" in columns:
            out.append((("replay", "demand"), "give either an 'admissions' column (all cohorts) or one "
                                              "'admissions.<cohort>' column per cohort, not both"))
        elif by_cohort and len(set(by_cohort)) < len(self.cohorts):
            missing = [c for c in self.cohorts if f"admissions.{c}" not in by_cohort]
            out.append((("replay", "demand"), f"admissions by cohort need a column for every cohort; missing: "
                                              f"{', '.join('admissions.' + m for m in missing)}"))
        if sum(sum(s.counts) for s in rp.demand) > MAX_STAYS:
            out.append((("replay", "demand"), f"more than {MAX_STAYS:,} replayed admissions and referrals; "
                                              "allowed: at most that many a run (replay a shorter period)"))
        return out

    def _replay_capacity_problems(self, rp: Replay) -> Problems:
        out: Problems = []
        places: dict[str, Capacity] = {s: svc.capacity for pw in self.pathways.values()
                                       for s, svc in pw.services.items()}
        if self.acute is not None:
            places["acute"] = self.acute.beds
        places["long_term_care"] = self.long_term_care.capacity
        places["home_care"] = self.home_care.capacity
        for i, rc in enumerate(rp.capacity):
            where: tuple[str | int, ...] = ("replay", "capacity", i, "target")
            if rc.target not in places:
                out.append((where, f"{rc.target!r} is not a place of this scenario (allowed: "
                                   f"{', '.join(sorted(places))})"))
            elif places[rc.target] == "unlimited":
                out.append((where, f"{rc.target!r} is unlimited in the scenario; give it a capacity to replay"))
            dates = [st.date for st in rc.steps]
            if any(b <= a for a, b in itertools.pairwise(dates)):
                out.append((("replay", "capacity", i, "steps"), "dates must increase"))
        return out

    @model_validator(mode="after")
    def _assumption_fields(self) -> Scenario:
        """Every ``{field}`` an assumption quotes must be a field of the scenario (see ``provenance``)."""
        problems = placeholder_problems(self.assumptions, lambda: self.model_dump(mode="json", by_alias=True))
        if problems:
            raise FieldProblems(problems)
        return self

    def _mode_problems(self) -> Problems:
        """What each mode requires and refuses, localities that exist, visits only for P1."""
        out = self._full_mode_problems() if self.mode == "full" else self._pathway_only_problems()
        return [*out, *self._locality_problems(), *self._visit_unit_problems()]

    def _full_mode_problems(self) -> Problems:
        out: Problems = [((f,), "required field is missing") for f in ("arrivals", "acute") if getattr(self, f) is None]
        if not self.cohorts:
            out.append((("cohorts",), "required field is missing (at least one cohort)"))
        if self.demand:
            out.append((("demand",), "demand streams are for mode: pathway_only (full mode uses arrivals)"))
        return out

    def _pathway_only_problems(self) -> Problems:
        out: Problems = [((f,), "not used in mode: pathway_only (demand streams replace it)")
                         for f in ("arrivals", "acute", "cohorts") if getattr(self, f)]
        if not self.demand:
            out.append((("demand",), "mode: pathway_only needs at least one demand stream"))
        seen: set[tuple[str | None, str]] = set()
        for i, d in enumerate(self.demand):
            key = (d.locality, d.pathway)
            if key in seen:
                out.append((("demand", i), f"a second stream for {d.pathway} in locality {d.locality}"))
            seen.add(key)
            if d.pathway not in self.pathways:
                out.append((("demand", i, "pathway"), f"{d.pathway} is not defined under 'pathways'"))
                continue
            # a locality's services take its own streams and those of localities naming it a neighbour
            reach = {d.locality, *(self.localities[d.locality].neighbours if d.locality in self.localities else [])}
            svcs = self.pathways[d.pathway].services.values()
            if svcs and not any(sv.locality is None or sv.locality in reach for sv in svcs):
                out.append((("demand", i), f"no {d.pathway} service serves locality {d.locality!r} "
                                           "(give it a service or a neighbour that has one)"))
        return out

    def _locality_problems(self) -> Problems:
        known = set(self.localities)
        out: Problems = [(("localities", name, "neighbours"), f"{n!r} is not another defined locality")
                         for name, loc in self.localities.items() for n in loc.neighbours
                         if n not in known or n == name]
        where_loc: list[tuple[tuple[str | int, ...], str | None]] = [
            (("demand", i, "locality"), d.locality) for i, d in enumerate(self.demand)]
        where_loc += [(("cohorts", c, "locality"), co.locality) for c, co in self.cohorts.items()]
        where_loc += [(("pathways", p, "services", s, "locality"), sv.locality)
                      for p, pw in self.pathways.items() for s, sv in pw.services.items()]
        out.extend((where, f"unknown locality {loc_name!r} (defined: {', '.join(sorted(known)) or 'none'})")
                   for where, loc_name in where_loc if loc_name is not None and loc_name not in known)
        return out

    def _visit_unit_problems(self) -> Problems:
        return [(("pathways", p, "services", s, "capacity_unit"), "visits are for P1 services")
                for p, pw in self.pathways.items() for s, sv in pw.services.items()
                if sv.capacity_unit == "visits" and p != "P1"]

    def _initial_state_problems(self, services: set[str]) -> Problems:
        init = self.initial_state
        assert init is not None
        out: Problems = []
        if self.simulation.warmup_days:
            out.append((("simulation", "warmup_days"), "must be 0 when initial_state gives the starting state"))
        for key in ("waiting_for_assessment", "waiting"):
            for p in getattr(init, key):
                if p == "P0" or p not in self.pathways:
                    out.append((("initial_state", key, p), f"{p} is not a downstream pathway of this scenario"))
                elif key == "waiting_for_assessment" and not self.pathways[p].needs_assessment:
                    out.append((("initial_state", key, p), f"{p} does not need assessment"))
        out.extend((("initial_state", "services", name), f"unknown service (defined: {', '.join(sorted(services))})")
                   for name in init.services if name not in services)
        for i, row in enumerate(init.patients):
            out.extend(self._initial_patient_problems(("initial_state", "patients", i), row, services))
        return out

    def _initial_patient_problems(self, where: tuple[str | int, ...], row: SnapshotPatient,
                                  services: set[str]) -> Problems:
        """One row of patients already in the system: a known place, cohort and a pathway consistent with both."""
        out: Problems = []
        nodes = {"ed", "acute", "assessment", "P0", "P1", "P2", "P3"} | services
        service_pathway = self.service_pathway()
        if row.node not in nodes:
            out.append(((*where, "node"), f"node must be one of {', '.join(sorted(nodes))}, got {row.node!r}"))
        # pathway-only scenarios name their cohorts after their demand streams, e.g. north_P1
        known = list(self.cohorts) or [d.pathway if d.locality is None else f"{d.locality}_{d.pathway}"
                                       for d in self.demand]
        if row.cohort is not None and row.cohort not in known:
            out.append(((*where, "cohort"), f"unknown cohort (defined: {', '.join(known)})"))
        if row.node == "assessment":
            out.extend(self._assessment_row_problems(where, row.pathway))
        implied = row.node if row.node in ("P0", "P1", "P2", "P3") else service_pathway.get(row.node, row.pathway)
        if implied is not None and implied not in self.pathways:
            out.append(((*where, "node" if implied == row.node else "pathway"),
                        f"{implied} is not defined under 'pathways' (defined: {', '.join(self.pathways)})"))
        if row.cohort is not None and row.cohort in self.cohorts and implied in self.pathways:
            svc_map = self.pathways[implied].services
            allowed = [svc_map[row.node]] if row.node in svc_map else list(svc_map.values())
            if allowed and not any(sv.cohorts is None or row.cohort in sv.cohorts for sv in allowed):
                out.append(((*where, "cohort"), f"cohort {row.cohort!r} is not accepted by "
                                                f"{row.node if row.node in svc_map else implied}"))
        if row.pathway is not None and row.node in services and row.pathway != service_pathway[row.node]:
            out.append(((*where, "pathway"), f"service {row.node} belongs to {service_pathway[row.node]}"))
        return out

    def _assessment_row_problems(self, where: tuple[str | int, ...], pathway: str | None) -> Problems:
        if pathway is None or pathway == "P0":
            return [((*where, "pathway"), "a patient waiting for assessment needs pathway P1, P2 or P3")]
        if pathway in self.pathways and not self.pathways[pathway].needs_assessment:
            return [((*where, "pathway"), f"{pathway} does not need assessment")]
        return []

    def service_pathway(self) -> dict[str, str]:
        """Map each service name to its pathway."""
        return {s: p for p, pw in self.pathways.items() for s in pw.services}

    def _capacity_problems(self, services: set[str]) -> Problems:
        """Overlapping schedule periods, demand beyond what a worker can hold, the start-from-today state."""
        out = _overlapping_periods(self) + _volume_problems(self)
        if self.initial_state is not None:
            out += self._initial_state_problems(services)
        if self.initial_state is not None and not self.initial_state.allow_over_capacity:
            out += [(where, f"{n:,} patients at the start, more than the {cap:,} {unit} in force on "
                            f"{self.simulation.start_date}; allowed: at most the capacity in force (or set "
                            "initial_state.allow_over_capacity: true to model an overflow)")
                    for where, n, cap, unit in self.start_overflow()]
        return out

    def start_overflow(self) -> list[tuple[tuple[str | int, ...], int, int, str]]:
        """Places holding more start-from-today patients than the capacity in force on ``start_date``.

        Each item is (field path, patients there, capacity, unit).  Acute beds hold the patients in
        their stay and those medically fit but waiting (for assessment or a pathway); a service holds
        its own.  A visits-a-day service counts each package at its smallest daily visits (a package
        under way needs at least that), so only a certain overflow is reported.
        """
        init = self.initial_state
        if init is None:
            return []
        start = self.simulation.start_date
        out: list[tuple[tuple[str | int, ...], int, int, str]] = []
        rows = [r.node for r in init.patients]
        in_acute = (init.acute_occupied + sum(init.waiting_for_assessment.values()) + sum(init.waiting.values())
                    + sum(1 for n in rows if n in ("acute", "assessment", "P0", "P1", "P2", "P3")))
        if self.acute is not None:
            cap = _capacity_at(self.acute.beds, self, "acute", start)
            if cap is not None and in_acute > cap:
                out.append((("initial_state", "acute_occupied"), in_acute, cap, "acute beds"))
        for pw in self.pathways.values():
            for name, svc in pw.services.items():
                n = init.services.get(name, 0) + rows.count(name)
                cap = _capacity_at(svc.capacity, self, name, start)
                if cap is None or not n:
                    continue
                if svc.capacity_unit == "visits" and svc.visits is not None:
                    need = n * min(svc.visits.start, svc.visits.end)
                    if need > cap + 1e-9:
                        out.append((("initial_state", "services", name), n, cap, "visits a day"))
                elif n > cap:
                    out.append((("initial_state", "services", name), n, cap, "places"))
        return out


def _capacity_at(cap: Capacity, sc: Scenario, target: str, day: dt.date) -> int | None:
    """Capacity of ``target`` in force on ``day`` (disruptions applied as the model applies them);
    None when unlimited."""
    if cap == "unlimited":
        return None
    value = cap.value_on(day) if isinstance(cap, Schedule) else int(cap)
    for d in sc.disruptions:
        if d.target == target and d.start <= day <= d.end:
            if d.kind == "ward_closure":
                value = max(0, value - (d.beds or 0))
            elif d.kind == "staff_absence":
                value = int(value * (1.0 - (d.percent or 0) / 100.0) + 1e-9)
    return value


def _schedules(node: object, path: tuple[str | int, ...]) -> list[tuple[tuple[str | int, ...], Schedule]]:
    """Every capacity schedule in a scenario with its field path, found by walking the model, so a
    schedule in a field added later is checked without being listed here."""
    if isinstance(node, Schedule):
        return [(path, node)]
    out: list[tuple[tuple[str | int, ...], Schedule]] = []
    if isinstance(node, BaseModel):
        for name, info in type(node).model_fields.items():
            out += _schedules(getattr(node, name), (*path, info.alias or name))
    elif isinstance(node, dict):
        for key, value in node.items():
            out += _schedules(value, (*path, key))
    elif isinstance(node, list | tuple) and node and isinstance(node[0], BaseModel):
        for i, value in enumerate(node):
            out += _schedules(value, (*path, i))
    return out


def _overlapping_periods(sc: Scenario) -> Problems:
    """Periods of one schedule that cover the same day of the run: their combined effect would depend
    on the order they are listed in, which no reader of the scenario can see."""
    first, last = sc.simulation.first_date, sc.simulation.end_date
    out: Problems = []
    for path, schedule in _schedules(sc, ()):
        spans = sorted((s, e, i) for i, p in enumerate(schedule.periods) for s, e in period_windows(p, first, last))
        reported: set[int] = set()
        for (_, e1, i), (s2, _, j) in itertools.pairwise(spans):
            if s2 <= e1 and i != j and max(i, j) not in reported:
                reported.add(max(i, j))
                out.append(((*path, "periods", max(i, j)),
                            f"overlaps period {min(i, j)} from {s2} to {e1}; allowed: periods of one capacity that "
                            "do not overlap (split them, or give the combined value as 'set')"))
    return out


#: Most stays one replication may simulate (warm-up included): about 1.5 KB each in the model.
MAX_STAYS = 1_000_000


def _volume_problems(sc: Scenario) -> Problems:
    """Demand too large to simulate: caught here rather than as a worker killed for memory hours later."""
    days = sc.simulation.warmup_days + sc.simulation.duration_days
    years = days / 365.25
    if sc.arrivals is not None:
        where: tuple[str | int, ...] = ("arrivals", "rate_per_day")
        growth = max(1.0, (1.0 + sc.arrivals.annual_growth) ** years)
        rate = sc.arrivals.rate_per_day * growth
    else:
        where = ("demand",)
        growth = max(1.0, (1.0 + sc.demand_profile.annual_growth) ** years)
        total = sum(d.rate_per_day for d in sc.demand)
        if total > MAX_RATE:  # the streams become one arrival process in the model
            return [(where, f"the demand streams add up to {total:,.6g} patients a day; allowed: at most "
                            f"{MAX_RATE:,.0f} a day in all")]
        rate = total * growth
    if sc.electives is not None:
        rate += sc.electives.rate_per_weekday * 5 / 7
    surge = max([1.0, *(s.factor for s in (sc.arrivals.surges if sc.arrivals else [])),
                 *(d.factor or 1.0 for d in sc.disruptions if d.kind == "demand_surge")])
    stays = rate * surge * days
    if stays <= MAX_STAYS:
        return []
    return [(where, f"about {stays:,.0f} stays a replication over {days:,} days (warm-up included); allowed: at "
                    f"most {MAX_STAYS:,} (each takes memory in a worker): model a shorter window or a smaller area")]

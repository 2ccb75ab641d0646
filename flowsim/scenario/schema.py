"""The scenario schema: a local health and care system described as frozen, typed data.

Why pydantic with ``extra="forbid"`` and ``frozen=True``: a misspelt field in a
planner's YAML must fail loudly rather than silently fall back to a default,
and the model must never mutate the scenario it was given (options are diffs
of a baseline, so a shared object must stay what it was).

Time unit is days; hours of the day appear only where a field's name says so.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from flowsim.scenario.distributions import Distribution, Fixed

PathwayName = Literal["P0", "P1", "P2", "P3"]
PATHWAYS: tuple[str, ...] = ("P0", "P1", "P2", "P3")
Org = Literal["nhs", "social_care", "both"]
AgeBand = Literal["18-64", "65-84", "85+"]
Month = Literal["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
MONTHS: tuple[str, ...] = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")

Probability = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegInt = Annotated[int, Field(ge=0)]
Name = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$", max_length=64)]

_SUM_TOL = 1e-6


class FieldProblems(ValueError):
    """Cross-field problems found by a model-level validator, each tied to the field it concerns.

    pydantic would report a model validator's error at the model itself ("top
    level"); carrying the path lets the loader point at the offending line.
    """

    def __init__(self, items: list[tuple[tuple[str, ...], str]]):
        self.items = items
        super().__init__("; ".join(msg for _, msg in items))


class Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- capacity
class Period(Frozen):
    """A dated change to a capacity: ``set`` replaces the base, ``add`` adds to it.

    ``end`` is the last day *included*; omitted means "until the end of the run".
    ``annual: true`` repeats the same calendar window every year (winter wards).
    """

    start: dt.date
    end: dt.date | None = None
    set: NonNegInt | None = None
    add: int | None = None
    annual: bool = False
    note: str | None = None

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


#: A capacity is a whole number, a dated schedule, or ``unlimited``.
Capacity = Union[NonNegInt, Literal["unlimited"], Schedule]


# --------------------------------------------------------------------------- demand
class Surge(Frozen):
    """A dated multiplier on arrivals (cold snap, flu, a local incident)."""

    start: dt.date
    end: dt.date
    factor: PositiveFloat
    note: str | None = None

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

    rate_per_day: PositiveFloat
    annual_growth: Annotated[float, Field(ge=-0.5, le=1.0)] = 0.0
    growth_from: dt.date | None = None
    month_factors: dict[Month, PositiveFloat] = Field(default_factory=dict)
    weekday_factors: Annotated[list[PositiveFloat], Field(min_length=7, max_length=7)] = Field(
        default_factory=lambda: [1.0] * 7
    )
    hour_profile: Annotated[list[PositiveFloat], Field(min_length=24, max_length=24)] = Field(
        default_factory=lambda: [1.0] * 24
    )
    surges: list[Surge] = Field(default_factory=list)


class Cohort(Frozen):
    """A slice of the case mix with its own stay and discharge needs."""

    label: str | None = None
    share: Annotated[float, Field(gt=0, le=1)]
    age_band: AgeBand
    from_care_home: bool = False
    month_factors: dict[Month, PositiveFloat] = Field(
        default_factory=dict,
        description="Seasonal weight on this cohort's share (e.g. more frail elderly admissions in winter); "
                    "shares are re-normalised each month, so total demand still follows arrivals.month_factors.")
    acute_los: Distribution
    pathway_mix: dict[PathwayName, Probability]

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

    start: Annotated[float, Field(ge=0, lt=24)]
    end: Annotated[float, Field(gt=0, le=24)]

    @model_validator(mode="after")
    def _ordered(self) -> Hours:
        if self.end <= self.start:
            raise ValueError(f"hours end ({self.end}) must be after start ({self.start})")
        return self


class Outcomes(Frozen):
    """Where patients go when a downstream stay ends."""

    home: Probability = 1.0
    long_term_care: Probability = 0.0
    death: Probability = 0.0

    @model_validator(mode="after")
    def _sums_to_one(self) -> Outcomes:
        total = self.home + self.long_term_care + self.death
        if abs(total - 1.0) > _SUM_TOL:
            raise ValueError(f"outcome probabilities must sum to 1, they sum to {total:.6g}")
        return self


class Readmission(Frozen):
    """Chance that a patient discharged home re-enters as a new non-elective arrival."""

    probability: Probability = 0.0
    within_days: PositiveFloat = 30.0


class Service(Frozen):
    """A downstream service with its own capacity (beds, or concurrent P1 packages)."""

    label: str | None = None
    capacity: Capacity
    los: Distribution
    cohorts: list[Name] | None = Field(
        default=None, description="Cohorts eligible for this service; omitted means all."
    )
    outcomes: Outcomes = Field(default_factory=Outcomes)


class Pathway(Frozen):
    """A discharge pathway (P0 home, P1 home with support, P2 intermediate care bed, P3 D2A bed).

    Patients waiting for a slot keep their acute bed; services are tried in
    the order listed (a preference order), and the first with a free,
    eligible slot takes the patient at the head of the queue.
    """

    label: str | None = None
    needs_assessment: bool = False
    responsible: Org = "nhs"
    transfer_time: Distribution = Field(default_factory=lambda: Fixed(dist="fixed", value=0.0))
    services: dict[Name, Service] = Field(default_factory=dict)
    readmission: Readmission = Field(default_factory=Readmission)


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
    responsible: Org = "social_care"


class Discharge(Frozen):
    """When patients can physically leave an acute bed.

    ``weekend_rate``: probability that a patient ready to leave on a Saturday
    or Sunday is discharged that day rather than held to Monday (per pathway,
    or one number for all).
    """

    hours: Hours | None = None
    weekend_rate: Probability | dict[PathwayName, Probability] = 1.0

    def weekend_rate_for(self, pathway: str) -> float:
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
    responsible: Org = "social_care"

    @model_validator(mode="after")
    def _stay_if_limited(self) -> LongTermCare:
        if self.capacity != "unlimited" and self.stay is None:
            raise ValueError("long_term_care with limited capacity needs a 'stay' distribution")
        return self


class Acute(Frozen):
    """General and acute (G&A) beds available to non-elective patients."""

    beds: Capacity


class Simulation(Frozen):
    """Calendar window. The run starts ``warmup_days`` before ``start_date`` from an
    empty system; results cover ``start_date`` to ``start_date + duration_days``."""

    start_date: dt.date
    duration_days: Annotated[int, Field(gt=0, le=3660)]
    warmup_days: Annotated[int, Field(ge=0, le=3660)] = 0

    @property
    def end_date(self) -> dt.date:
        return self.start_date + dt.timedelta(days=self.duration_days)


class Scenario(Frozen):
    """A whole local system. Options are small ``extends:`` diffs of a baseline."""

    name: str
    description: str = ""
    assumptions: list[str] = Field(default_factory=list)
    simulation: Simulation
    population_18plus: Annotated[int, Field(gt=0)]
    arrivals: Arrivals
    cohorts: dict[Name, Cohort] = Field(min_length=1)
    acute: Acute
    pathways: dict[PathwayName, Pathway]
    assessment: Assessment | None = None
    discharge: Discharge = Field(default_factory=Discharge)
    long_term_care: LongTermCare = Field(default_factory=LongTermCare)

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        problems: list[tuple[tuple[str, ...], str]] = []
        total = sum(c.share for c in self.cohorts.values())
        if abs(total - 1.0) > _SUM_TOL:
            problems.append((("cohorts",), f"cohort shares must sum to 1, they sum to {total:.6g} "
                             f"({', '.join(f'{n}: {c.share:g}' for n, c in self.cohorts.items())})"))
        seen: dict[str, str] = {}
        for pname, pathway in self.pathways.items():
            where = ("pathways", pname)
            if pname == "P0" and pathway.services:
                problems.append(((*where, "services"), "P0 (home, no new support) cannot have services"))
            if pname != "P0" and not pathway.services:
                problems.append(((*where, "services"), f"pathway {pname} needs at least one service"))
            if pathway.needs_assessment and self.assessment is None:
                problems.append(((*where, "needs_assessment"),
                                 f"pathway {pname} needs assessment but no 'assessment' team is defined"))
            for sname, svc in pathway.services.items():
                if sname in seen:
                    problems.append(((*where, "services", sname),
                                     f"service '{sname}' is defined under both {seen[sname]} and {pname}"))
                seen[sname] = pname
                for c in svc.cohorts or []:
                    if c not in self.cohorts:
                        problems.append(((*where, "services", sname, "cohorts"),
                                         f"cohort '{c}' is not defined (defined: {', '.join(self.cohorts)})"))
        for cname, cohort in self.cohorts.items():
            for p, prob in cohort.pathway_mix.items():
                if prob <= 0 or (p == "P0" and p in self.pathways):
                    continue
                where = ("cohorts", cname, "pathway_mix", p)
                if p not in self.pathways:
                    problems.append((where, f"cohort '{cname}' sends patients to {p}, which is not defined under "
                                            f"'pathways' (defined: {', '.join(self.pathways) or 'none'})"))
                elif p != "P0" and self.pathways[p].services and not any(
                        s.cohorts is None or cname in s.cohorts for s in self.pathways[p].services.values()):
                    problems.append((where, f"cohort '{cname}' is sent to {p} but no {p} service accepts it"))
        if problems:
            raise FieldProblems(problems)
        return self

    def service_pathway(self) -> dict[str, str]:
        """Map each service name to its pathway."""
        return {s: p for p, pw in self.pathways.items() for s in pw.services}

"""Pathway-only scenarios, expressed in the terms of the full model.

Many Better Care Fund capacity-and-demand plans model only the community
side: medically fit patients arrive from hospital into P1-P3 each day and,
when there is no capacity, wait in an acute bed (at a cost).  Rather than a
second simulator, we compile such a scenario into the full model: every
demand stream (locality x pathway) becomes a cohort that goes straight to its
pathway (acute stay of zero, unlimited acute beds, so the "acute bed" is only
where the wait happens), and each locality's services accept the cohorts of
that locality and of the localities allowed to use them as a neighbour.  One
engine, one set of KPIs, one set of tests.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from flowsim.scenario.schema import MONTHS, Scenario


def stream_name(locality: str | None, pathway: str) -> str:
    """The cohort a demand stream becomes, e.g. ``north_P1`` (or ``P1`` without localities)."""
    return pathway if locality is None else f"{locality}_{pathway}"


def compile_scenario(sc: Scenario) -> Scenario:
    """The full-model scenario a pathway-only scenario stands for (a full scenario is returned as is)."""
    if sc.mode == "full":
        return sc
    data: dict[str, Any] = sc.model_dump(by_alias=True, exclude_none=True)
    rates = np.array([d.rate_per_day for d in sc.demand])
    total = float(rates.sum())
    # each stream's month factors are relative (mean 1); the total's follow from the mix
    shapes = []
    for d in sc.demand:
        f = np.array([d.month_factors.get(m, 1.0) for m in MONTHS])  # type: ignore[call-overload]
        shapes.append(f / f.mean())
    month_total = (rates[:, None] * np.array(shapes)).sum(axis=0) / total
    cohorts = {}
    for d, shape in zip(sc.demand, shapes, strict=True):
        cohorts[stream_name(d.locality, d.pathway)] = {
            "label": d.label or f"{d.pathway} demand" + (f", {d.locality}" if d.locality else ""),
            "share": d.rate_per_day / total,
            "locality": d.locality,
            "acute_los": {"dist": "fixed", "value": 0.0},
            "pathway_mix": {d.pathway: 1.0},
            # relative factors, normalised like the total's, so streams split each month's arrivals right
            "month_factors": dict(zip(MONTHS, shape.tolist(), strict=True)),
        }
    # who may use a service: its own locality's streams, and those of localities naming it a neighbour
    users: dict[str | None, set[str | None]] = {}
    for loc_name, loc in sc.localities.items():
        users.setdefault(loc_name, set()).add(loc_name)
        for n in loc.neighbours:
            users.setdefault(n, set()).add(loc_name)
    for pname, pw in data["pathways"].items():
        for svc in pw.get("services", {}).values():
            if svc.get("locality") is not None and "cohorts" not in svc:
                allowed = users.get(svc["locality"], {svc["locality"]})
                svc["cohorts"] = [stream_name(d.locality, d.pathway) for d in sc.demand
                                  if d.pathway == pname and d.locality in allowed]
    prof = sc.demand_profile
    data.update(
        mode="full",
        demand=[],
        cohorts=cohorts,
        acute={"beds": "unlimited"},
        arrivals={
            "rate_per_day": total,
            "annual_growth": prof.annual_growth,
            "month_factors": dict(zip(MONTHS, month_total.tolist(), strict=True)),
            "weekday_factors": list(prof.weekday_factors),
            "hour_profile": list(prof.hour_profile),
            "surges": [s.model_dump() for s in prof.surges],
        },
    )
    data.pop("demand_profile", None)
    return Scenario.model_validate(data)

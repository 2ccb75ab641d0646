"""A synthetic, clearly labelled patient-level extract with known generating parameters (``flowsim synth-extract``).

Why: ``flowsim fit-data`` must be shown to recover what generated the data
before anyone trusts what it fits from a real extract, and a real extract
cannot be shipped with the code.  Every row carries a ``source`` column
valued ``SYNTHETIC - not real patient data`` (a comment line above the header
is not valid CSV for many readers), the default file name says so, and a
sidecar ``.json`` beside the CSV records every generating parameter.

The generating process is the model's own demand process and case mix:

- admissions: a non-homogeneous Poisson process with rate
  ``rate_per_day x month x weekday x hour`` (each factor set normalised to mean 1),
  exactly as :func:`flowsim.model.calendar.hourly_rates` builds it; with
  ``spells=N`` the count is fixed at N and the times are the N order statistics
  of the same intensity (the Poisson process conditioned on its count);
- cohort by age band with known shares; acute length of stay to medically fit
  from a known distribution per cohort (lognormal, gamma, Weibull);
- discharge pathway P0-P3 from a known mix per cohort; delay from medically fit
  to discharge exponential with a known mean per pathway.

Times are written to the minute (truncated), as hospital systems record them.
Everything is drawn from one ``numpy.random.Generator`` seeded by ``seed``, in a
fixed order, so the same arguments always give the same file.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from flowsim.errors import FlowsimError
from flowsim.model.calendar import hourly_rates
from flowsim.scenario.distributions import REGISTRY
from flowsim.scenario.schema import MONTHS, PATHWAYS, Arrivals

SYNTHETIC_LABEL = "SYNTHETIC - not real patient data"
DEFAULT_OUT = Path("synthetic_extract.csv")
COLUMNS = ("spell_id", "source", "admission_time", "medically_fit_time", "discharge_time", "pathway", "age_band")


def _normalised(values: list[float]) -> list[float]:
    arr = np.asarray(values, dtype=float)
    return [float(v) for v in arr / arr.mean()]


@dataclass(frozen=True)
class SynthCohort:
    """One age band: its share of admissions, its acute LOS (flowsim syntax) and its pathway mix."""

    age_band: str
    share: float
    acute_los: dict[str, Any]
    pathway_mix: dict[str, float]


def _default_cohorts() -> dict[str, SynthCohort]:
    # Families chosen so that the AIC can tell them apart at a few thousand spells each
    # (see tests/test_fitdata.py): a lognormal with CV > 1, a gamma with shape 4 and a
    # Weibull with shape 2 are each far (in Kullback-Leibler terms) from the best fit of
    # the other candidate families.
    return {
        "age_18_64": SynthCohort("18-64", 0.40, {"dist": "lognormal", "mean": 3.5, "sd": 4.0},
                                 {"P0": 0.93, "P1": 0.04, "P2": 0.02, "P3": 0.01}),
        "age_65_84": SynthCohort("65-84", 0.33, {"dist": "gamma", "mean": 7.0, "sd": 3.5},
                                 {"P0": 0.80, "P1": 0.10, "P2": 0.06, "P3": 0.04}),
        "age_85_plus": SynthCohort("85+", 0.27, {"dist": "weibull", "shape": 2.0, "scale": 10.0},
                                   {"P0": 0.62, "P1": 0.18, "P2": 0.12, "P3": 0.08}),
    }


@dataclass(frozen=True)
class SynthParams:
    """Every generating parameter of a synthetic extract (factors are normalised to mean 1 on construction)."""

    rate_per_day: float = 41.0
    month_factors: dict[str, float] = field(default_factory=lambda: dict(zip(MONTHS, [
        1.15, 1.10, 1.05, 0.98, 0.95, 0.92, 0.92, 0.90, 0.95, 1.00, 1.03, 1.05], strict=True)))
    weekday_factors: list[float] = field(default_factory=lambda: [1.15, 1.05, 1.00, 1.00, 1.00, 0.88, 0.92])
    hour_profile: list[float] = field(default_factory=lambda: [
        0.55, 0.45, 0.40, 0.35, 0.35, 0.35, 0.45, 0.65, 0.95, 1.25, 1.45, 1.55,
        1.55, 1.50, 1.45, 1.40, 1.40, 1.40, 1.35, 1.25, 1.10, 0.95, 0.80, 0.65])
    cohorts: dict[str, SynthCohort] = field(default_factory=_default_cohorts)
    delay_to_discharge: dict[str, dict[str, Any]] = field(default_factory=lambda: {
        "P0": {"dist": "exponential", "mean": 0.3}, "P1": {"dist": "exponential", "mean": 2.5},
        "P2": {"dist": "exponential", "mean": 4.0}, "P3": {"dist": "exponential", "mean": 6.0}})

    def __post_init__(self) -> None:
        problems = []
        if sorted(self.month_factors) != sorted(MONTHS):
            problems.append(f"month_factors needs all 12 months ({', '.join(MONTHS)})")
        if len(self.weekday_factors) != 7 or len(self.hour_profile) != 24:
            problems.append("weekday_factors needs 7 values (Monday first) and hour_profile 24")
        if abs(sum(c.share for c in self.cohorts.values()) - 1.0) > 1e-9:
            problems.append("cohort shares must sum to 1")
        for name, c in self.cohorts.items():
            if abs(sum(c.pathway_mix.values()) - 1.0) > 1e-9 or set(c.pathway_mix) - set(PATHWAYS):
                problems.append(f"cohort {name}: pathway_mix must be over {', '.join(PATHWAYS)} and sum to 1")
        if problems:
            raise FlowsimError("; ".join(problems))
        object.__setattr__(self, "month_factors",
                           dict(zip(MONTHS, _normalised([self.month_factors[m] for m in MONTHS]), strict=True)))
        object.__setattr__(self, "weekday_factors", _normalised(self.weekday_factors))
        object.__setattr__(self, "hour_profile", _normalised(self.hour_profile))

    def arrivals(self, rate_per_day: float | None = None) -> Arrivals:
        """The generating arrivals profile as a scenario ``Arrivals`` (validated like any scenario)."""
        return Arrivals(rate_per_day=rate_per_day or self.rate_per_day,
                        month_factors=self.month_factors,  # type: ignore[arg-type]
                        weekday_factors=self.weekday_factors, hour_profile=self.hour_profile)

    def as_dict(self) -> dict[str, Any]:
        """The generating parameters as plain data, for the sidecar JSON."""
        return asdict(self)


def _dist(spec: dict[str, Any]) -> Any:
    return REGISTRY[spec["dist"]].model_validate(spec)


def _minutes(start: dt.date, days: np.ndarray) -> np.ndarray:
    """Model-style float days after ``start`` midnight as datetime64 truncated to the minute."""
    base = np.datetime64(start.isoformat(), "m")
    return base + np.floor(days * 1440.0 + 1e-9).astype("int64").astype("timedelta64[m]")


def generate(params: SynthParams | None = None, *, spells: int | None = None, days: int | None = None,
             seed: int = 12345, start: dt.date = dt.date(2023, 4, 1)) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The synthetic extract as a frame, and its metadata (every generating parameter).

    ``spells``: exactly this many spells over ``days`` (default 365); otherwise a Poisson
    number at ``params.rate_per_day`` over ``days`` (default 365).
    """
    params = params or SynthParams()
    n_days = 365 if days is None else int(days)
    if n_days < 1 or (spells is not None and spells < 1):
        raise FlowsimError("synth-extract needs at least 1 day and 1 spell")
    rng = np.random.default_rng(seed)
    hour_t, unit_rate = hourly_rates(params.arrivals(1.0), start, 0.0, float(n_days))
    cum = np.concatenate(([0.0], np.cumsum(unit_rate / 24.0)))  # expected admissions at rate 1/day
    edges = np.concatenate((hour_t, [float(n_days)]))
    if spells is None:
        rate = params.rate_per_day
        n = int(rng.poisson(rate * cum[-1]))
    else:
        n, rate = int(spells), spells / cum[-1]
    u = np.sort(rng.random(n)) * cum[-1]
    t_adm = np.interp(u, cum, edges)  # inverse of the cumulative intensity: uniform within each hour

    names = list(params.cohorts)
    cohorts = [params.cohorts[c] for c in names]
    which = rng.choice(len(names), size=n, p=[c.share for c in cohorts])
    los = np.empty(n)
    pathway = np.empty(n, dtype=object)
    for i, c in enumerate(cohorts):
        idx = np.flatnonzero(which == i)
        los[idx] = _dist(c.acute_los).sample(rng, len(idx))
        mix = [c.pathway_mix.get(p, 0.0) for p in PATHWAYS]
        pathway[idx] = np.asarray(PATHWAYS, dtype=object)[rng.choice(len(PATHWAYS), size=len(idx), p=mix)]
    delay = np.zeros(n)
    for p in PATHWAYS:
        idx = np.flatnonzero(pathway == p)
        delay[idx] = _dist(params.delay_to_discharge[p]).sample(rng, len(idx))

    adm = _minutes(start, t_adm)
    fit = _minutes(start, t_adm + los)
    dis = _minutes(start, t_adm + los + delay)

    def text(x: np.ndarray) -> np.ndarray:
        return np.char.replace(np.datetime_as_string(x, unit="m"), "T", " ")

    frame = pd.DataFrame({
        "spell_id": [f"S{i + 1:07d}" for i in range(n)],
        "source": SYNTHETIC_LABEL,
        "admission_time": text(adm),
        "medically_fit_time": text(fit),
        "discharge_time": text(dis),
        "pathway": pathway.astype(str),
        "age_band": np.asarray([c.age_band for c in cohorts], dtype=object)[which].astype(str),
    }, columns=list(COLUMNS))
    from flowsim import __version__

    meta = {
        "label": SYNTHETIC_LABEL,
        "generator": "flowsim synth-extract",
        "flowsim_version": __version__,
        "seed": seed,
        "start_date": start.isoformat(),
        "days": n_days,
        "spells": n,
        "count": "fixed by --spells" if spells is not None else "Poisson at rate_per_day",
        "process": ("non-homogeneous Poisson admissions, rate = rate_per_day x month x weekday x hour factor "
                    "(each normalised to mean 1, as flowsim's arrivals); cohort by share; acute LOS to medically "
                    "fit per cohort; pathway by the cohort's mix; medically fit to discharge delay per pathway; "
                    "times truncated to the minute"),
        "columns": list(COLUMNS),
        "parameters": {**params.as_dict(), "rate_per_day": rate},
    }
    return frame, meta


def write_extract(out: Path, *, spells: int | None = None, days: int | None = None, seed: int = 12345,
                  start: dt.date = dt.date(2023, 4, 1), params: SynthParams | None = None) -> tuple[Path, Path]:
    """Write the synthetic extract CSV and its sidecar JSON (``out`` with suffix ``.json``), atomically."""
    from flowsim.rundir import atomic_text, atomic_write

    frame, meta = generate(params, spells=spells, days=days, seed=seed, start=start)
    csv_path = atomic_write(out, lambda p: frame.to_csv(p, index=False, lineterminator="\n"))
    json_path = atomic_text(out.with_suffix(".json"), json.dumps(meta, indent=2) + "\n")
    return csv_path, json_path

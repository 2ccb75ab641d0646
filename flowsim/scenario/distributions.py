"""Distribution specs: small typed leaves of a scenario, built by one registry.

Every distribution is sampled by *inverse transform* (``ppf`` applied to
uniforms from a named stream).  That choice is deliberate: two scenarios that
differ only in a distribution's parameters still consume the same uniforms,
so a longer length of stay in an option is the *same* patient staying longer
(common random numbers at the level of the individual draw).

Units are days unless a field says otherwise.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy import special, stats

from flowsim.scenario.types import MAX_DAYS, Range


class _Dist(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @property
    def mean(self) -> float:  # pragma: no cover - every subclass overrides
        """The distribution's mean (days)."""
        raise NotImplementedError

    def ppf(self, u: np.ndarray) -> np.ndarray:  # pragma: no cover
        """Inverse cdf: the quantiles of ``u`` in [0, 1)."""
        raise NotImplementedError

    def cdf(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover
        """P(X <= x): needed to sample the rest of a stay already under way."""
        raise NotImplementedError

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """Draw ``size`` values using ``size`` uniforms from ``rng``."""
        return self.ppf(rng.random(size))


#: Times in days: stays, transfers, assessments (the longest, long-term care, run to years).
PositiveFloat = Annotated[float, Range(0, MAX_DAYS, "days", low_open=True)]
NonNegFloat = Annotated[float, Range(0, MAX_DAYS, "days")]
#: Largest coefficient of variation (sd / mean) a mean-and-sd distribution may have: beyond it the
#: parameters overflow (lognormal sigma, gamma shape) and the distribution is nothing like a stay.
MAX_CV = 100.0
MIN_CV = 1e-3


def _finite_moments(mean: float, log_var: float) -> None:
    """Refuse parameters whose mean or variance is beyond what a time in days can be."""
    if not (math.isfinite(mean) and mean <= MAX_DAYS):
        raise ValueError(f"these parameters give a mean of {mean:.3g} days; allowed: a mean up to {MAX_DAYS:,.0f} days")
    if not log_var <= 2 * math.log(MAX_DAYS * MAX_CV):
        raise ValueError("these parameters give a variance too large to sample (the spread is beyond "
                         f"{MAX_CV:g} times a mean of up to {MAX_DAYS:,.0f} days)")


class Exponential(_Dist):
    """Memoryless time; the M in M/M/c theory tests."""

    dist: Literal["exponential"]
    mean_: PositiveFloat = Field(alias="mean")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @property
    def mean(self) -> float:
        """The distribution's mean (days)."""
        return self.mean_

    def ppf(self, u: np.ndarray) -> np.ndarray:
        """Inverse cdf: the quantiles of ``u`` in [0, 1)."""
        return -self.mean_ * np.log1p(-u)

    def cdf(self, x: np.ndarray) -> np.ndarray:
        """Cumulative distribution at ``x``."""
        return -np.expm1(-np.maximum(x, 0.0) / self.mean_)


class _MeanSd(_Dist):
    """Parameterised by arithmetic mean and sd, as length-of-stay reports give them."""

    mean_: PositiveFloat = Field(alias="mean")
    sd: PositiveFloat

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @property
    def mean(self) -> float:
        """The distribution's mean (days)."""
        return self.mean_

    @model_validator(mode="after")
    def _spread(self) -> _MeanSd:
        cv = self.sd / self.mean_
        if not MIN_CV <= cv <= MAX_CV:
            raise ValueError(f"sd / mean is {cv:.3g}; allowed: from {MIN_CV:g} to {MAX_CV:g} (an sd between a "
                             f"thousandth and {MAX_CV:g} times the mean)")
        return self


class Lognormal(_MeanSd):
    """Right-skewed stay, given by its arithmetic mean and sd."""

    dist: Literal["lognormal"]

    @property
    def sigma(self) -> float:
        """The log-scale sd that gives this mean and sd."""
        return math.sqrt(math.log1p((self.sd / self.mean_) ** 2))

    @property
    def mu(self) -> float:
        """The log-scale mean that gives this mean and sd."""
        return math.log(self.mean_) - 0.5 * self.sigma**2

    def ppf(self, u: np.ndarray) -> np.ndarray:
        """Inverse cdf: the quantiles of ``u`` in [0, 1)."""
        return np.exp(self.mu + self.sigma * special.ndtri(u))

    def cdf(self, x: np.ndarray) -> np.ndarray:
        """Cumulative distribution at ``x``."""
        with np.errstate(divide="ignore"):
            return special.ndtr((np.log(np.maximum(x, 0.0)) - self.mu) / self.sigma)


class Gamma(_MeanSd):
    """Gamma by mean and sd (shape = (mean/sd)^2): lighter tail than the lognormal."""

    dist: Literal["gamma"]

    def ppf(self, u: np.ndarray) -> np.ndarray:
        """Inverse cdf: the quantiles of ``u`` in [0, 1)."""
        shape = (self.mean_ / self.sd) ** 2
        scale = self.sd**2 / self.mean_
        return special.gammaincinv(shape, u) * scale

    def cdf(self, x: np.ndarray) -> np.ndarray:
        """Cumulative distribution at ``x``."""
        shape = (self.mean_ / self.sd) ** 2
        scale = self.sd**2 / self.mean_
        return special.gammainc(shape, np.maximum(x, 0.0) / scale)


class Weibull(_Dist):
    """Weibull by shape k and scale lambda."""

    dist: Literal["weibull"]
    shape: Annotated[float, Range(0.05, 100, "the Weibull shape k")]
    scale: PositiveFloat

    @model_validator(mode="after")
    def _moments(self) -> Weibull:
        # mean = scale G(1 + 1/k), variance = scale^2 (G(1 + 2/k) - G(1 + 1/k)^2): in logs, as G overflows first
        log_mean = math.log(self.scale) + math.lgamma(1.0 + 1.0 / self.shape)
        _finite_moments(math.exp(min(log_mean, 700.0)), 2 * math.log(self.scale) + math.lgamma(1.0 + 2.0 / self.shape))
        return self

    @property
    def mean(self) -> float:
        """The distribution's mean (days)."""
        return self.scale * math.gamma(1.0 + 1.0 / self.shape)

    def ppf(self, u: np.ndarray) -> np.ndarray:
        """Inverse cdf: the quantiles of ``u`` in [0, 1)."""
        return self.scale * (-np.log1p(-u)) ** (1.0 / self.shape)

    def cdf(self, x: np.ndarray) -> np.ndarray:
        """Cumulative distribution at ``x``."""
        return -np.expm1(-((np.maximum(x, 0.0) / self.scale) ** self.shape))


class Triangular(_Dist):
    """Expert-judgement range: low, most likely, high."""

    dist: Literal["triangular"]
    low: NonNegFloat
    mode: NonNegFloat
    high: PositiveFloat

    @model_validator(mode="after")
    def _ordered(self) -> Triangular:
        if not (self.low <= self.mode <= self.high) or self.low == self.high:
            raise ValueError("triangular needs low <= mode <= high and low < high")
        return self

    @property
    def mean(self) -> float:
        """The distribution's mean (days)."""
        return (self.low + self.mode + self.high) / 3.0

    def ppf(self, u: np.ndarray) -> np.ndarray:
        """Inverse cdf: the quantiles of ``u`` in [0, 1)."""
        c = (self.mode - self.low) / (self.high - self.low)
        return stats.triang.ppf(u, c, loc=self.low, scale=self.high - self.low)

    def cdf(self, x: np.ndarray) -> np.ndarray:
        """Cumulative distribution at ``x``."""
        c = (self.mode - self.low) / (self.high - self.low)
        return stats.triang.cdf(x, c, loc=self.low, scale=self.high - self.low)


class Uniform(_Dist):
    """Flat between low and high."""

    dist: Literal["uniform"]
    low: NonNegFloat
    high: PositiveFloat

    @model_validator(mode="after")
    def _ordered(self) -> Uniform:
        if self.low >= self.high:
            raise ValueError("uniform needs low < high")
        return self

    @property
    def mean(self) -> float:
        """The distribution's mean (days)."""
        return 0.5 * (self.low + self.high)

    def ppf(self, u: np.ndarray) -> np.ndarray:
        """Inverse cdf: the quantiles of ``u`` in [0, 1)."""
        return self.low + (self.high - self.low) * u

    def cdf(self, x: np.ndarray) -> np.ndarray:
        """Cumulative distribution at ``x``."""
        return np.clip((np.asarray(x, dtype=float) - self.low) / (self.high - self.low), 0.0, 1.0)


class Fixed(_Dist):
    """A deterministic time: for exact-arithmetic verification tests and fixed delays."""

    dist: Literal["fixed"]
    value: NonNegFloat

    @property
    def mean(self) -> float:
        """The distribution's mean (days)."""
        return self.value

    def ppf(self, u: np.ndarray) -> np.ndarray:
        """Inverse cdf: the quantiles of ``u`` in [0, 1)."""
        return np.full(np.shape(u), self.value, dtype=float)

    def cdf(self, x: np.ndarray) -> np.ndarray:
        """Cumulative distribution at ``x``."""
        return (np.asarray(x, dtype=float) >= self.value).astype(float)


class Empirical(_Dist):
    """Resample observed values (e.g. an extract's LOS), optionally weighted."""

    dist: Literal["empirical"]
    values: list[NonNegFloat] = Field(min_length=1)
    weights: list[Annotated[float, Range(0, 1e12, "a relative weight", low_open=True)]] | None = None

    @model_validator(mode="after")
    def _weights_match(self) -> Empirical:
        if self.weights is not None and len(self.weights) != len(self.values):
            raise ValueError(
                f"empirical weights has {len(self.weights)} entries but values has {len(self.values)}"
            )
        return self

    def _cdf(self) -> tuple[np.ndarray, np.ndarray]:
        order = np.argsort(self.values, kind="stable")
        vals = np.asarray(self.values, dtype=float)[order]
        w = np.ones(len(vals)) if self.weights is None else np.asarray(self.weights)[order]
        cdf = np.cumsum(w) / w.sum()
        return vals, cdf

    @property
    def mean(self) -> float:
        """The distribution's mean (days)."""
        w = np.ones(len(self.values)) if self.weights is None else np.asarray(self.weights)
        return float(np.dot(self.values, w) / w.sum())

    def ppf(self, u: np.ndarray) -> np.ndarray:
        """Inverse cdf: the quantiles of ``u`` in [0, 1)."""
        vals, cdf = self._cdf()
        idx = np.searchsorted(cdf, u, side="right")
        return vals[np.minimum(idx, len(vals) - 1)]

    def cdf(self, x: np.ndarray) -> np.ndarray:
        """Cumulative distribution at ``x``."""
        vals, cdf = self._cdf()
        idx = np.searchsorted(vals, x, side="right")
        return np.where(idx > 0, cdf[np.maximum(idx - 1, 0)], 0.0)


Distribution = Annotated[
    Union[Exponential, Lognormal, Gamma, Weibull, Triangular, Uniform, Fixed, Empirical],
    Field(discriminator="dist"),
]

#: Registry of distribution names, for error messages and documentation.
REGISTRY: dict[str, type[_Dist]] = {
    "exponential": Exponential,
    "lognormal": Lognormal,
    "gamma": Gamma,
    "weibull": Weibull,
    "triangular": Triangular,
    "uniform": Uniform,
    "fixed": Fixed,
    "empirical": Empirical,
}

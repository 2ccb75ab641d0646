"""The rest of a stay already under way when a run starts ("start from today").

A patient found in a bed on the snapshot day has been there ``a`` days; what
remains of their stay is not a fresh length of stay.  Two cases:

- **Elapsed time known** (a patient-level snapshot): the stay X is drawn from
  its distribution *conditional on X > a*, by inverse transform,
  ``X = F^-1(F(a) + U (1 - F(a)))``, and the residual is ``X - a``.  Exact for
  any distribution with a cdf; if ``a`` is beyond the distribution's support
  (F(a) = 1: the patient has outstayed every modelled stay) the residual is 0
  and they leave at once.
- **Only counts known**: a system observed at an arbitrary moment holds
  patients whose residual stays follow the *equilibrium (stationary excess)
  distribution*, density ``(1 - F(r)) / E[X]`` (renewal theory; exact for an
  M/G/inf stage in steady state, a good approximation near it).  We sample it
  by numerically inverting its cdf on a fine grid.

Rejected alternatives: a fresh stay drawn from F ignores the inspection
paradox (long stays are over-represented in a snapshot, so for a lognormal
LOS with sd > mean the mean residual E[X^2]/(2E[X]) exceeds E[X]); a uniform
fraction of a fresh stay (U X) halves the mean regardless of shape; a fixed
half of the mean is deterministic and understates spread.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from flowsim.scenario.distributions import _Dist

_GRID = 4096


def conditional_residual(dist: _Dist, elapsed: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Residual stays given ``elapsed`` days already spent, using uniforms ``u``."""
    a = np.asarray(elapsed, dtype=float)
    fa = np.clip(dist.cdf(a), 0.0, 1.0)
    target = fa + np.asarray(u, dtype=float) * (1.0 - fa)
    with np.errstate(invalid="ignore"):
        x = dist.ppf(np.minimum(target, np.nextafter(1.0, 0.0)))
    x = np.where(fa >= 1.0, a, x)
    return np.maximum(x - a, 0.0)


def equilibrium_residual(dist: _Dist, u: np.ndarray) -> np.ndarray:
    """Residual stays of patients found in service at a random moment (density (1-F(r))/E[X])."""
    u = np.asarray(u, dtype=float)
    table = _equilibrium_table(dist)
    if table is None:
        return np.zeros_like(u)
    cdf, x = table
    return np.interp(u, cdf, x)


def _equilibrium_table(dist: _Dist) -> tuple[np.ndarray, np.ndarray] | None:
    """The equilibrium residual's cdf on its grid and the grid (``None``: every residual is 0), built once per
    distribution (distributions are frozen, so equal ones share a table; an empirical one, holding lists, is not
    hashable and builds its table each time).  Why: a run starts with one residual per initial client or snapshot
    patient, and the grid (a ppf, 4,096 cdf values, an integral) cost ~30x the interpolation of one uniform."""
    try:
        hash(dist)
    except TypeError:
        return _grid_table(dist)
    return _cached_table(dist)


def _grid_table(dist: _Dist) -> tuple[np.ndarray, np.ndarray] | None:
    """``_equilibrium_table`` computed afresh."""
    top = float(dist.ppf(np.array([1.0 - 1e-7]))[0])
    if not np.isfinite(top) or top <= 0.0:
        return None
    x = np.linspace(0.0, top, _GRID)
    survival = 1.0 - np.clip(dist.cdf(x), 0.0, 1.0)
    # exact integral of the piecewise-linear survival curve, then normalised to a cdf
    area = np.concatenate(([0.0], np.cumsum(0.5 * (survival[1:] + survival[:-1]) * np.diff(x))))
    if area[-1] <= 0.0:
        return None
    cdf = area / area[-1]
    keep = np.concatenate(([True], np.diff(cdf) > 0))
    cdf, x = cdf[keep], x[keep]
    cdf.flags.writeable = x.flags.writeable = False  # shared by every later call
    return cdf, x


_cached_table = lru_cache(maxsize=32)(_grid_table)

"""The residual-stay samplers (``flowsim.model.residual``) against closed forms, quantile by quantile.

Why: ``test_initial_state.py`` checks the samplers' means by quadrature and the model's use of them; a sampler
can have the right mean and the wrong shape, or be right in the middle and wrong at the edges (the mutation run,
``docs/mutation.md``, found both loose).  Here each quantile is compared with the inverse of a distribution
worked out by hand:

- *conditional* (elapsed ``a`` known): ``X | X > a`` by inverse transform.  Exponential: memoryless, the residual
  is ``-m ln(1 - u)`` whatever ``a``; uniform(0, 20): ``X = F^-1(F(a) + u (1 - F(a)))``; a fixed stay of 5 days:
  ``5 - a`` before 5 and 0 once outstayed.
- *equilibrium* (only counts known), density ``(1 - F(r)) / E[X]``.  Exponential with mean ``m``: itself (again
  ``-m ln(1 - u)``); uniform(0, 20): ``G(r) = (r - r^2/40) / 10``, so ``r = 20 (1 - sqrt(1 - u))``; fixed at
  ``v``: uniform on ``[0, v]``; fixed at 0: nobody has any stay left.

Tolerances: the equilibrium sampler inverts a trapezoid cdf on a 4,096-point grid over ``[0, F^-1(1 - 1e-7)]``,
so its error is a few grid steps at most (0.002 of the range here); the conditional sampler is exact to rounding
(relative 1e-6: at 30 days, 1 - F(a) ~ 3e-7 of an exponential costs digits).
"""

from __future__ import annotations

import numpy as np
import pytest

from flowsim.model.residual import conditional_residual, equilibrium_residual
from flowsim.scenario.distributions import Empirical, Exponential, Fixed, Uniform

U = np.array([0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99])
EXP2 = Exponential(dist="exponential", mean=2.0)
UNI = Uniform(dist="uniform", low=0.0, high=20.0)


def test_conditional_residual_of_an_exponential_stay_is_memoryless() -> None:
    for a in (0.0, 1.0, 5.0, 30.0):
        got = conditional_residual(EXP2, np.full(len(U), a), U)
        assert got == pytest.approx(-2.0 * np.log1p(-U), rel=1e-6, abs=1e-9), a  # 1 - F(30) ~ 3e-7 costs digits


def test_conditional_residual_of_a_uniform_stay_by_hand() -> None:
    a = np.array([5.0, 5.0, 0.0, 10.0, 19.0])
    u = np.array([0.0, 0.5, 0.5, 0.5, 0.5])
    # F(5) = 0.25: X = 20 (0.25 + u 0.75); F(10) = 0.5: X = 20 (0.5 + u 0.5); F(19) = 0.95: X = 20 (0.95 + 0.025)
    expected = np.array([0.0, 12.5 - 5.0, 10.0, 15.0 - 10.0, 19.5 - 19.0])
    assert conditional_residual(UNI, a, u) == pytest.approx(expected, abs=1e-9)


def test_conditional_residual_of_an_outstayed_patient_is_zero() -> None:
    five = Fixed(dist="fixed", value=5.0)
    assert conditional_residual(five, np.array([3.0, 5.0, 7.0]), np.array([0.5, 0.5, 0.5])) == pytest.approx(
        [2.0, 0.0, 0.0])
    assert conditional_residual(UNI, np.array([20.0, 25.0]), np.array([0.3, 0.9])) == pytest.approx([0.0, 0.0])
    # a u of 1 (never drawn, but the top of the range) still gives a finite residual
    assert np.isfinite(conditional_residual(EXP2, np.array([1.0]), np.array([1.0]))).all()


def test_equilibrium_residual_of_an_exponential_stay_is_the_same_exponential() -> None:
    got = equilibrium_residual(EXP2, U)
    assert got == pytest.approx(-2.0 * np.log1p(-U), abs=0.002 * 32.0)
    assert got[0] == 0.0


def test_equilibrium_residual_of_a_uniform_stay_by_hand() -> None:
    got = equilibrium_residual(UNI, U)
    assert got == pytest.approx(20.0 * (1.0 - np.sqrt(1.0 - U)), abs=0.002 * 20.0)
    assert equilibrium_residual(UNI, np.array([1.0]))[0] == pytest.approx(20.0, abs=0.01)


def test_equilibrium_residual_of_a_fixed_stay_is_uniform_and_of_a_zero_stay_nothing() -> None:
    got = equilibrium_residual(Fixed(dist="fixed", value=10.0), U)
    assert got == pytest.approx(10.0 * U, abs=0.002 * 10.0)
    assert equilibrium_residual(Fixed(dist="fixed", value=0.0), U) == pytest.approx(np.zeros(len(U)))


def test_equilibrium_residual_of_a_stay_shorter_than_a_day() -> None:
    """Half a day, fixed: uniform on [0, 0.5] (a short stay is still a stay)."""
    got = equilibrium_residual(Fixed(dist="fixed", value=0.5), U)
    assert got == pytest.approx(0.5 * U, abs=0.002 * 0.5)


def test_equilibrium_residual_reaches_the_top_of_its_grid_exactly() -> None:
    """At u = 1 the inverted cdf must end at the grid's top (the stay itself for a fixed stay, the upper end for a
    uniform one): a cdf normalised by anything but its last value stops short of it."""
    assert equilibrium_residual(Fixed(dist="fixed", value=10.0), np.array([1.0]))[0] == 10.0
    # the uniform grid's top is F^-1(1 - 1e-7) = 20 (1 - 1e-7)
    assert equilibrium_residual(UNI, np.array([1.0]))[0] == pytest.approx(20.0 * (1.0 - 1e-7), rel=1e-12)


def test_equilibrium_residual_of_an_empirical_stay_by_hand() -> None:
    """An empirical distribution holds lists, so it cannot key the grid cache and builds its grid each time.
    Stays of 2 or 6 days, equally likely (mean 4): the residual's cdf is r/4 below 2 (reaching 1/2) and
    1/2 + (r - 2)/8 from 2 to 6, so its quantile is 4u below u = 1/2 and 2 + 8(u - 1/2) above."""
    two_or_six = Empirical(dist="empirical", values=[2.0, 6.0])
    with pytest.raises(TypeError):
        hash(two_or_six)
    expected = np.where(U < 0.5, 4.0 * U, 2.0 + 8.0 * (U - 0.5))
    assert equilibrium_residual(two_or_six, U) == pytest.approx(expected, abs=0.01)


def test_cached_residual_tables_are_read_only() -> None:
    """Equal distributions share one cached table, so nobody may change it in place."""
    from flowsim.model.residual import _equilibrium_table

    table = _equilibrium_table(EXP2)
    assert table is not None and _equilibrium_table(Exponential(dist="exponential", mean=2.0)) is table
    cdf, x = table
    assert not cdf.flags.writeable and not x.flags.writeable

"""The lean engine's shortcuts give exactly what the one-at-a-time path gives (issue 16).

Why: speed-ups on the per-event path must not move a single result (issue 16, point 6).  Draws made ahead in bulk
(``Buffered.take``, ``_Sampler.predraw``) must leave every patient with the values, and every stream at the place,
that one-patient-at-a-time draws (``_Sampler.fill``) would; these tests compare the two paths value for value on
scenarios with several cohorts, monthly case mixes, deaths in hospital and same-day stays.  The model as a whole is
held to SimPy's order of events by tests/test_kernel.py and to its committed numbers by tests/test_golden.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flowsim import load_scenario
from flowsim.model.model import Buffered, Patient, _Sampler
from flowsim.rng import Streams
from flowsim.scenario.distributions import Exponential

ROOT = Path(__file__).resolve().parents[1]
DRAWN = ("cohort", "acute_los", "pathway", "assess_dur", "transfer", "ready_gap", "u_org", "u_los", "u_outcome",
         "u_readmit", "u_readmit_time", "u_weekend", "exit")


@pytest.mark.parametrize("n", [0, 1, 1023, 1024, 1025, 3000])
def test_take_gives_what_calls_give(n: int) -> None:
    """``take(n)`` after a few single draws: the same values as calls, and the stream left where calls leave it."""
    dist = Exponential(dist="exponential", mean=3.0)
    one, bulk = (Buffered(dist, np.random.default_rng(7), chunk=1024) for _ in range(2))
    head = [one() for _ in range(5)]
    assert [bulk() for _ in range(5)] == head
    expected = [one() for _ in range(n)]
    got = bulk.take(n)
    assert got.tolist() == expected
    assert [bulk() for _ in range(1500)] == [one() for _ in range(1500)]  # both streams still in step


@pytest.mark.parametrize(("scenario", "own_cohorts"), [
    ("tests/scenarios/journeys.yaml", False),  # two cohorts, same-day stays and deaths in hospital
    ("tests/scenarios/journeys.yaml", True),  # cohorts known at arrival for some patients (per-cohort volumes)
    ("scenarios/rotherham_2016.yaml", False),  # monthly case mix, several cohorts, same-day stays
])
def test_predraw_gives_each_patient_what_fill_gives(scenario: str, own_cohorts: bool) -> None:
    sc = load_scenario(ROOT / scenario)
    rng = np.random.default_rng(11)
    t0, t1 = -float(sc.simulation.warmup_days), float(sc.simulation.duration_days)
    arrival = np.sort(rng.uniform(t0, t1, 5000)).tolist()
    cohorts = rng.integers(-1, len(sc.cohorts), 5000).tolist() if own_cohorts else None
    bulk = _Sampler(sc, Streams(3, 2), "").predraw(arrival, cohorts)
    single = _Sampler(sc, Streams(3, 2), "")
    exits = 0
    for i, t in enumerate(arrival):
        p, q = Patient(i, i, -1, t), Patient(i, i, -1, t)
        single.fill(p, None if cohorts is None or cohorts[i] < 0 else cohorts[i])
        bulk.apply(q, i)
        assert [getattr(q, a) for a in DRAWN] == [getattr(p, a) for a in DRAWN], f"patient {i}"
        exits += p.exit != 0
    assert exits > 50  # the exit branches were exercised
    assert len(set(bulk.cohort)) == len(sc.cohorts)


def test_stays_worked_out_ahead_equal_the_one_at_a_time_transform() -> None:
    """``Model._service_stay``: for a first admission's uniform (looked up, computed in bulk at the start for the
    admissions drawn to the service's pathway) and for any other (a readmission's: transformed there and then), the
    same length as the scalar inverse transform, in every service."""
    from flowsim.model.model import Model

    sc = load_scenario(ROOT / "scenarios/rotherham_2016.yaml", ["simulation.duration_days=60",
                                                                "simulation.warmup_days=10"])
    m = Model(sc, Streams(4, 0))
    firsts = m.drawn.u[0][:300]
    others = np.random.default_rng(5).random(300).tolist()
    assert len(m.service_los) > 3
    for k, dist in enumerate(m.service_los):
        for u in firsts + others:
            assert m._service_stay(k, u) == float(dist.ppf(np.array([u]))[0]), (m.service_names[k], u)
    drawn_to = m.drawn.pathway[:300]
    for k, pathway in enumerate(m.service_pathway):
        ahead = [u for u, pw in zip(firsts, drawn_to, strict=True) if pw == pathway]
        assert ahead and all(u in m._stays[k] for u in ahead)
        assert not any(u in m._stays[k] for u in others)

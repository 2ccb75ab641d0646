"""Reproducibility: a run is a pure function of (scenario, seed, replication)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flowsim import load_scenario, run_replication, simulate
from flowsim.rng import Streams, make_stream, stream_key

MINIMAL = Path(__file__).resolve().parents[1] / "scenarios" / "minimal.yaml"
SHORT = ["simulation.duration_days=60", "simulation.warmup_days=20"]


@pytest.fixture(scope="module")
def minimal_short():
    return load_scenario(MINIMAL, overrides=SHORT)


@pytest.fixture(scope="module")
def run_a(minimal_short):
    return simulate(minimal_short, replications=2, seed=42)


def assert_same_run(a, b) -> None:
    pd.testing.assert_frame_equal(a.kpi_frame(), b.kpi_frame())
    pd.testing.assert_frame_equal(a.daily(), b.daily())
    pd.testing.assert_frame_equal(a.patients(), b.patients())
    assert a.scenario_id == b.scenario_id


def test_same_seed_same_results(minimal_short, run_a) -> None:
    run_b = simulate(minimal_short, replications=2, seed=42)
    assert_same_run(run_a, run_b)


def test_different_seed_different_results(minimal_short, run_a) -> None:
    other = simulate(minimal_short, replications=2, seed=43)
    assert not run_a.kpi_frame().equals(other.kpi_frame())
    a, b = run_a.patients(), other.patients()
    n = min(len(a), len(b))
    assert not np.array_equal(a["arrival"].to_numpy()[:n], b["arrival"].to_numpy()[:n])


def test_replications_differ_from_each_other(run_a) -> None:
    kpis = run_a.kpi_frame()
    assert not kpis.loc[0].equals(kpis.loc[1])


def test_process_pool_equals_serial(minimal_short, run_a) -> None:
    pooled = simulate(minimal_short, replications=2, seed=42, workers=2)
    assert_same_run(run_a, pooled)


def test_replication_is_independent_of_how_many_are_run(minimal_short, run_a) -> None:
    """Replication 1 alone gives what it gave as the second of two."""
    single = run_replication(minimal_short, seed=42, replication=1)
    assert single.kpis == run_a.replications[1].kpis
    assert single.patients is not None
    together = run_a.patients().query("replication == 1").reset_index(drop=True)
    pd.testing.assert_frame_equal(single.patients.reset_index(drop=True), together[list(single.patients.columns)])


def test_named_stream_unaffected_by_other_streams() -> None:
    alone = make_stream(7, 3, "a").random(1000)
    streams = Streams(7, 3)
    for name in ("b", "arrivals", "acute_los.x", "zzz"):
        streams[name].random(500)  # other streams created and consumed first
    np.testing.assert_array_equal(streams["a"].random(1000), alone)
    # and the same stream object is returned on every lookup, continuing where it was
    np.testing.assert_array_equal(streams["a"].random(10), make_stream(7, 3, "a").random(1010)[1000:])


def test_streams_differ_by_name_replication_and_seed() -> None:
    base = make_stream(7, 3, "a").random(100)
    for other in (make_stream(7, 3, "b"), make_stream(7, 4, "a"), make_stream(8, 3, "a")):
        assert not np.array_equal(other.random(100), base)
    assert stream_key("arrivals") == stream_key("arrivals")  # stable, not Python's salted hash
    for seed, rep in ((-1, 0), (0, -1)):  # either negative is refused, with the reason
        with pytest.raises(ValueError, match=r"^seed and replication must be non-negative integers$"):
            make_stream(seed, rep, "a")


def _fingerprint(seed: int, replication: int, name: str) -> tuple[int, int]:
    """The first two 64-bit words of a stream: two streams that share them are the same stream."""
    a, b = make_stream(seed, replication, name).integers(0, 2**63, size=2)
    return int(a), int(b)


def test_no_two_seed_replication_pairs_share_a_stream() -> None:
    """Every (seed, replication, name) on a grid gives its own stream, including the pairs a derived seed would
    alias: (7, 4) and (8, 3) (seed + replication), (12345, r + 1) and (12346, r) (seed 12346 replaying 9 of seed
    12345's 10 replications), (0, 1000) and (1, 0) (seed x 1000 + replication), (2, 3) and (3, 2) (a symmetric
    mix), and a name's key added to the seed.  A collision of two of these ~6,000 independent 128-bit fingerprints
    by chance has probability below 1e-30, so the check fails only on a real aliasing."""
    keys = [(s, r) for s in range(30) for r in range(30)]
    keys += [(s, r) for s in (12345, 12346, 2024, 2**32 - 1, 2**32, 2**62) for r in range(12)]
    keys += [(s, r) for s in (0, 1) for r in range(1001)]
    keys += [(1000, 0), (1000, 1), (1001, 0)]
    keys = sorted(set(keys))
    seen: dict[tuple[int, int], tuple[int, int, str]] = {}
    for seed, rep in keys:
        for name in ("arrivals", "acute_los"):
            fp = _fingerprint(seed, rep, name)
            assert fp not in seen, f"({seed}, {rep}, {name}) replays {seen[fp]}"
            seen[fp] = (seed, rep, name)
    # the pairs named above, spelled out
    for a, b in (((7, 4), (8, 3)), ((12345, 1), (12346, 0)), ((0, 1000), (1, 0)), ((2, 3), (3, 2))):
        assert _fingerprint(*a, "arrivals") != _fingerprint(*b, "arrivals")


def test_a_neighbouring_seed_replays_no_replication() -> None:
    """End to end: the patients of seed 12346's replication 0 are not those of seed 12345's replication 1."""
    sc = load_scenario(MINIMAL, overrides=SHORT)
    a = run_replication(sc, seed=12345, replication=1).patients
    b = run_replication(sc, seed=12346, replication=0).patients
    assert a is not None and b is not None
    n = min(len(a), len(b))
    assert n > 500
    assert (a["arrival"].to_numpy()[:n] == b["arrival"].to_numpy()[:n]).mean() < 0.01  # 1.0 if replayed


def test_common_random_numbers_across_downstream_options() -> None:
    """Two options differing only in a downstream capacity see the same first admissions."""
    base = load_scenario(MINIMAL, overrides=SHORT)
    option = load_scenario(MINIMAL, overrides=[*SHORT, "pathways.P1.services.reablement.capacity=60"])
    a = simulate(base, replications=2, seed=8)
    b = simulate(option, replications=2, seed=8)
    # the option really changes the system downstream...
    assert not a.kpi_frame()["delayed_per_day_P1"].equals(b.kpi_frame()["delayed_per_day_P1"])
    pa, pb = a.patients(), b.patients()
    for rep in (0, 1):
        fa = pa[(pa["replication"] == rep) & (pa["readmission_of"] < 0)]
        fb = pb[(pb["replication"] == rep) & (pb["readmission_of"] < 0)]
        # ...but the arrivals, case mix and acute stays are the same patients
        np.testing.assert_array_equal(fa["arrival"].to_numpy(), fb["arrival"].to_numpy())
        np.testing.assert_array_equal(fa["cohort"].astype(str).to_numpy(), fb["cohort"].astype(str).to_numpy())
        np.testing.assert_array_equal(fa["pathway"].astype(str).to_numpy(), fb["pathway"].astype(str).to_numpy())
        los_a = (fa["mffd"] - fa["bed_start"]).to_numpy()
        los_b = (fb["mffd"] - fb["bed_start"]).to_numpy()
        both = ~np.isnan(los_a) & ~np.isnan(los_b)
        assert both.sum() > 100
        np.testing.assert_allclose(los_a[both], los_b[both], rtol=1e-9, atol=1e-9)


def test_common_random_numbers_across_demand_options() -> None:
    """A higher arrival rate maps the same unit-rate process onto a faster clock (inversion)."""
    flat = ["arrivals.weekday_factors=[1, 1, 1, 1, 1, 1, 1]", "arrivals.hour_profile=" + str([1] * 24)]
    base = load_scenario(MINIMAL, overrides=[*SHORT, *flat])
    double = load_scenario(MINIMAL, overrides=[*SHORT, *flat, "arrivals.rate_per_day=40"])
    ra = run_replication(base, seed=3, replication=0).patients
    rb = run_replication(double, seed=3, replication=0).patients
    ta = ra.loc[ra["readmission_of"] < 0, "arrival"].to_numpy()
    tb = rb.loc[rb["readmission_of"] < 0, "arrival"].to_numpy()
    # flat rate r from t0 = -20: unit-rate epochs E_k give t_k = t0 + E_k / r, so
    # (t_k - t0) at rate 20 is exactly twice (t_k - t0) at rate 40, for every k
    n = min(len(ta), len(tb) // 2) - 1
    assert n > 500
    np.testing.assert_allclose(ta[:n] + 20.0, 2.0 * (tb[:n] + 20.0), rtol=1e-9)

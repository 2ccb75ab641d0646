"""The engine benchmark (issue 16) runs and reports every figure, and its denominator is the network it claims.

Speed is never asserted here (timings vary by machine and load); ``benchmarks/bench_engine.py`` measures it.  These
tests check that the benchmark prints each of its lines in a ``--quick`` smoke run, that the heapq loop it divides by
simulates the same network as ``benchmarks/reference_network.yaml`` (otherwise the ratio compares two different
systems), and that a replication comes back from a worker with its tables already encoded.
"""

from __future__ import annotations

import importlib.util
import math
import pickle
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest

from flowsim import load_scenario
from flowsim.experiment.parts import PartStore, encode
from flowsim.experiment.runner import PackedResult, _task, run_replication
from flowsim.scenario.distributions import Exponential, Lognormal

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"


def _module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[f"_bench_{name}"] = mod  # a dataclass looks its module up while it is being defined
    sys.path.insert(0, str(BENCH))
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(BENCH))
    return mod


@pytest.mark.slow
def test_quick_run_prints_every_line() -> None:
    """Every labelled line of the benchmark appears once in a --quick run (its figures are not checked)."""
    res = subprocess.run([sys.executable, str(BENCH / "bench_engine.py"), "--quick"], cwd=ROOT, capture_output=True,
                         text=True, timeout=900, check=False)
    assert res.returncode == 0, res.stderr
    labels = [line[2:46].strip() for line in res.stdout.splitlines() if line.startswith("  ")]
    assert labels == list(_module("bench_engine").LINES), res.stdout


def test_heapq_reference_simulates_the_reference_scenario() -> None:
    """The loop's constants are the scenario's: rate, beds, stay, pathway mix, places and stays, horizon."""
    ref = _module("heapq_reference")
    sc = load_scenario(BENCH / "reference_network.yaml")
    assert (sc.simulation.warmup_days, sc.simulation.duration_days) == (ref.WARM, ref.RUN)
    assert sc.arrivals is not None and sc.arrivals.rate_per_day == ref.RATE
    assert sc.acute is not None and sc.acute.beds == ref.BEDS
    (cohort,) = sc.cohorts.values()
    assert isinstance(cohort.acute_los, Lognormal)
    assert (cohort.acute_los.mean, cohort.acute_los.sd) == (ref.LOS_MEAN, ref.LOS_SD)
    assert tuple(cohort.pathway_mix.get(p, 0.0) for p in ("P0", "P1", "P2", "P3")) == ref.P
    for k, p in enumerate(("P1", "P2", "P3"), start=1):
        (svc,) = sc.pathways[p].services.values()  # type: ignore[index]
        assert svc.capacity == ref.CAP[k]
        assert isinstance(svc.los, Exponential) and math.isclose(svc.los.mean, ref.STAY[k])
    # nothing else on the journey takes time: no assessment, transfer, discharge hours or readmissions
    assert sc.assessment is None and sc.discharge.hours is None


def test_a_worker_sends_back_encoded_tables_that_read_back_as_written(tmp_path: Path) -> None:
    """What travels from a pool worker is the KPIs and Parquet bytes, several times smaller than the frames, and a
    store fed those bytes gives back exactly the tables the replication made (datetime units included)."""
    sc = load_scenario(ROOT / "scenarios" / "minimal.yaml", ["simulation.duration_days=60"])
    packed = _task((sc, 3, 1, "sid", True))
    assert isinstance(packed, PackedResult)
    full = run_replication(sc, 3, 1, "sid")
    pd.testing.assert_series_equal(pd.Series(packed.kpis), pd.Series(full.kpis), check_exact=True)
    assert all(enc is None or isinstance(enc.data, bytes) for enc in packed.tables.values())
    assert len(pickle.dumps(packed)) * 2 < len(pickle.dumps(full))
    store = PartStore(tmp_path)
    for table, enc in packed.tables.items():
        store.write_encoded(table, 1, enc)
    assert full.patients is not None
    pd.testing.assert_frame_equal(store.read_one("patients", 1), full.patients, check_exact=True)
    pd.testing.assert_frame_equal(store.read_one("daily", 1), full.daily, check_exact=True)
    assert store.read_one("daily", 1)["date"].dtype == full.daily["date"].dtype
    assert encode(None) is None

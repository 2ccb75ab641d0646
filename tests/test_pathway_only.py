"""Pathway-only mode: demand streams straight into P1-P3, localities, visit-based P1, costs.

Every expectation here is computed independently of the library, from the scenario and
the per-stay records (``slot_granted``, ``ds_end``, ``mffd``): Poisson intervals for the
demand streams, Erlang C for a pathway-only M/M/c node, the visits load of P1 packages
recomputed at every grant, locality priority checked at every grant, and every cost
rebuilt by hand.  Statistical checks compare a theoretical value with a t interval over
independent replications (as in ``tests/test_theory.py``) and also check the interval is
narrow enough to be a real test.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from queueing import erlang_c, t_interval
from scipy import stats

from flowsim import ScenarioError, load_scenario, simulate
from flowsim.experiment.runner import RunResult
from flowsim.scenario import apply_overrides, load_raw, validate_dict
from flowsim.scenario.pathway_only import compile_scenario
from flowsim.scenario.schema import MONTHS, Scenario

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LOCALITIES_YAML = HERE / "scenarios" / "pathway_only_localities.yaml"
ROTHERHAM_PATHWAY_ONLY = ROOT / "scenarios" / "rotherham_pathway_only.yaml"

LEVEL = 0.99
TOL = 1e-9  # days: stamps and the simulation clock may differ by a rounding error


# --------------------------------------------------------------------------- helpers
def po_dict(*, demand: list[dict[str, Any]] | None = None, pathways: dict[str, Any] | None = None,
            duration_days: int = 365, warmup_days: int = 30, **top: Any) -> dict[str, Any]:
    """A valid pathway-only scenario dict: one P2 stream (2/day) into one 10-bed P2 service."""
    data: dict[str, Any] = {
        "name": "pathway-only test",
        "mode": "pathway_only",
        "simulation": {"start_date": "2024-01-01", "duration_days": duration_days, "warmup_days": warmup_days},
        "population_18plus": 100_000,
        "demand": demand if demand is not None else [{"pathway": "P2", "rate_per_day": 2.0}],
        "pathways": pathways if pathways is not None else {
            "P2": {"services": {"ic": {"capacity": 10, "los": {"dist": "exponential", "mean": 4.0}}}}},
    }
    data.update(top)
    return copy.deepcopy(data)


def two_locality_dict() -> dict[str, Any]:
    return po_dict(
        localities={"north": {"neighbours": ["south"]}, "south": {}},
        demand=[{"pathway": "P2", "locality": "north", "rate_per_day": 2.0},
                {"pathway": "P2", "locality": "south", "rate_per_day": 1.5}],
        pathways={"P2": {"services": {
            "n_beds": {"locality": "north", "capacity": 8, "los": {"dist": "exponential", "mean": 4.0}},
            "s_beds": {"locality": "south", "capacity": 6, "los": {"dist": "exponential", "mean": 4.0}},
        }}},
    )


def problems_of(exc_info: pytest.ExceptionInfo[ScenarioError]) -> list[str]:
    problems = exc_info.value.problems
    assert problems, "a ScenarioError must carry at least one problem"
    return problems


def names_path(problems: list[str], path: str) -> bool:
    """True if some problem is reported at exactly the dotted ``path`` (``<source>: path: message``)."""
    return any(f": {path}: " in p for p in problems)





def assert_theory_in_ci(x: Any, theory: float, what: str, max_rel_half: float) -> None:
    m, lo, hi = t_interval(x)
    assert lo <= theory <= hi, (f"{what}: theory {theory:.6g} outside the {LEVEL:.0%} CI [{lo:.6g}, {hi:.6g}] "
                                f"(mean {m:.6g} over {len(x)} replications)")
    assert (hi - lo) / 2 <= max_rel_half * abs(theory), f"{what}: CI [{lo:.4g}, {hi:.4g}] too wide to test anything"


def assert_poisson(count: int, mu: float, what: str, level: float = 0.999) -> None:
    lo, hi = stats.poisson.interval(level, mu)
    assert lo <= count <= hi, (f"{what}: {count} outside the Poisson {level:.1%} interval "
                               f"[{lo:g}, {hi:g}] of mean {mu:g}")


def run(sc: Scenario, replications: int, seed: int, workers: int = 1) -> RunResult:
    result = simulate(sc, replications=replications, seed=seed, workers=workers, progress=False)
    assert result.checks == [], result.checks  # 7. invariants hold on every run
    return result


def clipped(start: np.ndarray, end: np.ndarray, T: float) -> np.ndarray:
    """Length of each [start, end) inside [0, T] (end NaN = still open at T; start NaN = never)."""
    s = np.clip(start, 0.0, T)
    e = np.clip(np.where(np.isnan(end), T, end), 0.0, T)
    return np.where(np.isnan(start), 0.0, np.maximum(e - s, 0.0))


def waiting_at(mffd: np.ndarray, granted: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Matrix [len(t), len(mffd)]: patient j is waiting for a slot at instant t_i."""
    g = np.where(np.isnan(granted), np.inf, granted)
    return (mffd[None, :] < t[:, None] - TOL) & (g[None, :] > t[:, None] + TOL)


def occupancy_at(granted: np.ndarray, ends: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Places occupied at each instant t by stays [granted, ends)."""
    e = np.where(np.isnan(ends), np.inf, ends)
    ok = ~np.isnan(granted)
    return ((granted[ok][None, :] <= t[:, None] + TOL) & (e[ok][None, :] > t[:, None] + TOL)).sum(axis=1)


# =========================================================================== 1. validation
@pytest.mark.parametrize(("field", "value"), [
    ("arrivals", {"rate_per_day": 5.0}),
    ("acute", {"beds": 100}),
    ("cohorts", {"older": {"share": 1.0, "acute_los": {"dist": "fixed", "value": 1.0},
                           "pathway_mix": {"P2": 1.0}}}),
])
def test_full_mode_fields_are_rejected_in_pathway_only(field: str, value: Any) -> None:
    data = po_dict(**{field: value})
    with pytest.raises(ScenarioError) as exc_info:
        validate_dict(data)
    problems = problems_of(exc_info)
    assert names_path(problems, field), problems
    assert any("pathway_only" in p for p in problems if f": {field}: " in p), problems


@pytest.mark.parametrize("demand", [None, []], ids=["missing", "empty"])
def test_pathway_only_needs_demand(demand: list[Any] | None) -> None:
    data = po_dict()
    if demand is None:
        del data["demand"]
    else:
        data["demand"] = demand
    with pytest.raises(ScenarioError) as exc_info:
        validate_dict(data)
    assert names_path(problems_of(exc_info), "demand"), exc_info.value.problems


def test_valid_pathway_only_scenarios_pass() -> None:
    validate_dict(po_dict())
    validate_dict(two_locality_dict())
    sc = load_scenario(LOCALITIES_YAML)
    assert sc.mode == "pathway_only" and sc.arrivals is None and sc.acute is None and not sc.cohorts


def test_unknown_locality_of_a_service_is_named_by_path() -> None:
    data = two_locality_dict()
    data["pathways"]["P2"]["services"]["s_beds"]["locality"] = "west"
    with pytest.raises(ScenarioError) as exc_info:
        validate_dict(data)
    problems = problems_of(exc_info)
    assert names_path(problems, "pathways.P2.services.s_beds.locality"), problems
    assert any("west" in p for p in problems)


def test_unknown_locality_of_a_demand_stream_is_named_by_path() -> None:
    data = two_locality_dict()
    data["demand"][1]["locality"] = "west"
    with pytest.raises(ScenarioError) as exc_info:
        validate_dict(data)
    problems = problems_of(exc_info)
    assert names_path(problems, "demand.1.locality"), problems
    assert not names_path(problems, "demand.0.locality"), problems


def test_unknown_locality_in_yaml_names_file_and_line(tmp_path: Path) -> None:
    text = LOCALITIES_YAML.read_text(encoding="utf-8").replace("locality: B, rate_per_day", "locality: C, rate_per_day")
    bad = tmp_path / "pathway_only_bad.yaml"
    bad.write_text(text, encoding="utf-8")
    line = next(i for i, s in enumerate(text.splitlines(), start=1) if "locality: C" in s)
    with pytest.raises(ScenarioError) as exc_info:
        load_scenario(bad)
    problems = problems_of(exc_info)
    assert any(f"{bad}:{line}: demand.1.locality" in p for p in problems), problems


def test_visits_unit_needs_a_visit_profile() -> None:
    data = po_dict(demand=[{"pathway": "P1", "rate_per_day": 2.0}],
                   pathways={"P1": {"services": {"homecare": {
                       "capacity": 40, "capacity_unit": "visits", "los": {"dist": "fixed", "value": 10.0}}}}})
    with pytest.raises(ScenarioError) as exc_info:
        validate_dict(data)
    problems = problems_of(exc_info)
    assert any("pathways.P1.services.homecare" in p and "visits" in p for p in problems), problems
    data["pathways"]["P1"]["services"]["homecare"]["visits"] = {"start": 2.0, "end": 0.5}
    validate_dict(data)


def test_visits_are_rejected_on_a_p2_service() -> None:
    data = po_dict()
    data["pathways"]["P2"]["services"]["ic"].update(capacity_unit="visits", visits={"start": 2.0, "end": 1.0})
    with pytest.raises(ScenarioError) as exc_info:
        validate_dict(data)
    problems = problems_of(exc_info)
    assert names_path(problems, "pathways.P2.services.ic.capacity_unit"), problems


def test_duplicate_stream_is_rejected() -> None:
    data = two_locality_dict()
    data["demand"].append({"pathway": "P2", "locality": "north", "rate_per_day": 0.5})
    with pytest.raises(ScenarioError) as exc_info:
        validate_dict(data)
    problems = problems_of(exc_info)
    assert names_path(problems, "demand.2"), problems
    # the same pathway in another locality, or another pathway in the same locality, is fine
    ok = two_locality_dict()
    ok["pathways"]["P3"] = {"services": {"d2a": {"capacity": 5, "los": {"dist": "fixed", "value": 2.0}}}}
    ok["demand"].append({"pathway": "P3", "locality": "north", "rate_per_day": 0.5})
    validate_dict(ok)


def test_unknown_neighbour_is_rejected() -> None:
    data = two_locality_dict()
    data["localities"]["north"]["neighbours"] = ["west"]
    with pytest.raises(ScenarioError) as exc_info:
        validate_dict(data)
    assert names_path(problems_of(exc_info), "localities.north.neighbours"), exc_info.value.problems


def test_stream_that_no_service_accepts_is_rejected_at_validation() -> None:
    """Regression: a stream no service can take (locality 'east': no P2 service, no neighbours) once
    validated and then crashed simulate() with a raw pydantic error about compiled cohort 'east_P2'."""
    data = two_locality_dict()
    data["localities"]["east"] = {}
    data["demand"].append({"pathway": "P2", "locality": "east", "rate_per_day": 1.0})
    with pytest.raises(ScenarioError) as exc_info:
        validate_dict(data)
    assert any("demand.2" in p for p in problems_of(exc_info)), exc_info.value.problems


def test_compiled_scenario_shape() -> None:
    sc = validate_dict(two_locality_dict())
    full = compile_scenario(sc)
    assert full.mode == "full" and full.demand == []
    assert list(full.cohorts) == ["north_P2", "south_P2"]
    assert full.cohorts["north_P2"].locality == "north"
    assert full.cohorts["north_P2"].pathway_mix == {"P2": 1.0}
    assert full.cohorts["north_P2"].acute_los.mean == 0.0
    assert full.acute is not None and full.acute.beds == "unlimited"
    assert full.arrivals is not None and full.arrivals.rate_per_day == pytest.approx(3.5)
    assert full.cohorts["north_P2"].share == pytest.approx(2.0 / 3.5)
    # north lists south as a neighbour: south's beds take both, north's beds only north
    services = full.pathways["P2"].services
    assert services["n_beds"].cohorts == ["north_P2"]
    assert sorted(services["s_beds"].cohorts or []) == ["north_P2", "south_P2"]


# =========================================================================== 2. demand streams
ARR_DAYS = 1461  # four years, so each calendar month is seen four times
ARR_START = "2023-01-01"


def _monthly_counts(result: RunResult) -> pd.DataFrame:
    """Arrivals in the window by calendar month (rows) and cohort (columns), one replication."""
    p = result.patients()
    p = p[(p["arrival"] >= 0) & (p["arrival"] < ARR_DAYS)]
    month = (pd.Timestamp(ARR_START) + pd.to_timedelta(np.floor(p["arrival"]), unit="D")).dt.month
    return pd.crosstab(month.to_numpy(), p["cohort"].astype(str).to_numpy())


def _days_in_month() -> pd.Series:
    return pd.Series(pd.date_range(ARR_START, periods=ARR_DAYS, freq="D").month).value_counts().sort_index()


STREAMS = [
    {"pathway": "P1", "locality": "north", "rate_per_day": 3.0},
    {"pathway": "P2", "locality": "north", "rate_per_day": 1.5},
    {"pathway": "P2", "locality": "south", "rate_per_day": 0.7},
    {"pathway": "P3", "rate_per_day": 0.4},  # a stream without locality, served by a county-wide service
]


@pytest.fixture(scope="module")
def streams_run() -> RunResult:
    unlimited = {"capacity": "unlimited", "los": {"dist": "fixed", "value": 1.0}}
    sc = validate_dict(po_dict(
        duration_days=ARR_DAYS, warmup_days=0, simulation={"start_date": ARR_START, "duration_days": ARR_DAYS},
        localities={"north": {}, "south": {}}, demand=STREAMS,
        pathways={"P1": {"services": {"n_p1": {**unlimited, "locality": "north"}}},
                  "P2": {"services": {"n_p2": {**unlimited, "locality": "north"},
                                      "s_p2": {**unlimited, "locality": "south"}}},
                  "P3": {"services": {"county_p3": unlimited}}}))
    return run(sc, replications=1, seed=424242)


def test_stream_counts_follow_their_rates(streams_run: RunResult) -> None:
    p = streams_run.patients()
    p = p[(p["arrival"] >= 0) & (p["arrival"] < ARR_DAYS)]
    counts = p["cohort"].astype(str).value_counts()
    expected = {"north_P1": 3.0, "north_P2": 1.5, "south_P2": 0.7, "P3": 0.4}
    assert set(counts.index) == set(expected), counts
    for cohort, rate in expected.items():
        assert_poisson(int(counts[cohort]), rate * ARR_DAYS, f"arrivals of stream {cohort}")
    # each stream goes straight to its own pathway, with no acute stay, and never waits (unlimited places)
    for cohort, g in p.groupby(p["cohort"].astype(str)):
        want = cohort.split("_")[-1]
        assert (g["pathway"].astype(str) == want).all(), cohort
    assert np.allclose(p["mffd"], p["arrival"]) and np.allclose(p["bed_start"], p["arrival"])
    assert np.allclose(p["slot_granted"], p["mffd"])
    served = p[["cohort", "service"]].astype(str).drop_duplicates().set_index("cohort")["service"].to_dict()
    assert served == {"north_P1": "n_p1", "north_P2": "n_p2", "south_P2": "s_p2", "P3": "county_p3"}


def _month_factor_run(factors: dict[str, float]) -> RunResult:
    sc = validate_dict(po_dict(
        duration_days=ARR_DAYS, warmup_days=0, simulation={"start_date": ARR_START, "duration_days": ARR_DAYS},
        localities={"north": {}, "south": {}},
        demand=[{"pathway": "P2", "locality": "north", "rate_per_day": 5.0, "month_factors": factors},
                {"pathway": "P2", "locality": "south", "rate_per_day": 5.0}],
        pathways={"P2": {"services": {
            "n_p2": {"locality": "north", "capacity": "unlimited", "los": {"dist": "fixed", "value": 1.0}},
            "s_p2": {"locality": "south", "capacity": "unlimited", "los": {"dist": "fixed", "value": 1.0}}}}}))
    return run(sc, replications=1, seed=99)


def _check_month_factors(result: RunResult, factors: dict[str, float]) -> None:
    """north follows rate x f(m) / mean(f); south (no factors) stays flat; the total is their sum."""
    f = np.array([factors.get(m, 1.0) for m in MONTHS])
    shape = f / f.mean()
    counts = _monthly_counts(result)
    days = _days_in_month()
    # south has no month factors: its count is rate x days, whatever north does
    assert_poisson(int(counts["south_P2"].sum()), 5.0 * ARR_DAYS, "south (flat stream), whole run")
    for m in range(1, 13):
        assert_poisson(int(counts.loc[m, "south_P2"]), 5.0 * days[m], f"south (flat stream), month {m}")
        assert_poisson(int(counts.loc[m, "north_P2"]), 5.0 * shape[m - 1] * days[m], f"north, month {m}")
        total = int(counts.loc[m].sum())
        assert_poisson(total, (5.0 * shape[m - 1] + 5.0) * days[m], f"total (weighted mix), month {m}")


def test_month_factors_shift_one_stream_only() -> None:
    """Factors that already average 1: January up 60%, July down 60% for north only."""
    factors = {"jan": 1.6, "jul": 0.4}
    result = _month_factor_run(factors)
    _check_month_factors(result, factors)
    counts = _monthly_counts(result)
    # power: north's January is clearly above its flat rate and July clearly below
    assert counts.loc[1, "north_P2"] > stats.poisson.ppf(0.9999, 5.0 * _days_in_month()[1])
    assert counts.loc[7, "north_P2"] < stats.poisson.ppf(0.0001, 5.0 * _days_in_month()[7])


def test_month_factors_that_do_not_average_one() -> None:
    """Regression: compile_scenario once passed raw (unnormalised) month factors to the cohort split
    while normalising them for the total, so a flat stream got 4.2-4.5/day instead of 5/day."""
    factors = {"jan": 4.0}  # mean 1.25: north is 16/day in January and 4/day otherwise
    _check_month_factors(_month_factor_run(factors), factors)


# =========================================================================== 3. Erlang C on a node
MMC_C, MMC_LAMBDA, MMC_LOS = 5, 4.0, 1.0
MMC_DAYS, MMC_WARMUP, MMC_REPS = 3600, 50, 12


@pytest.fixture(scope="module")
def mmc_node() -> RunResult:
    sc = validate_dict(po_dict(
        demand=[{"pathway": "P2", "rate_per_day": MMC_LAMBDA}],
        pathways={"P2": {"services": {"ic": {"capacity": MMC_C, "los": {"dist": "exponential", "mean": MMC_LOS}}}}},
        duration_days=MMC_DAYS, warmup_days=MMC_WARMUP))
    return run(sc, replications=MMC_REPS, seed=20240607, workers=2)


def _node_waits(g: pd.DataFrame) -> np.ndarray:
    # ready in the window, leaving 20 days at the end so no wait is censored (P(W > 20) ~ 1e-9)
    r = g[(g["mffd"] >= 0) & (g["mffd"] < MMC_DAYS - 20)]
    assert r["slot_granted"].notna().all()
    return (r["slot_granted"] - r["mffd"]).to_numpy()


def test_pathway_only_node_mean_wait_is_erlang_c(mmc_node: RunResult) -> None:
    a, mu = MMC_LAMBDA * MMC_LOS, 1.0 / MMC_LOS
    wq = erlang_c(MMC_C, a) / (MMC_C * mu - MMC_LAMBDA)
    waits = [float(_node_waits(g).mean()) for _, g in mmc_node.patients().groupby("replication")]
    assert_theory_in_ci(waits, wq, "pathway-only M/M/c mean wait for a P2 slot", max_rel_half=0.15)
    assert_theory_in_ci(mmc_node.kpi_frame()["wait_mean_days_P2"], wq, "wait_mean_days_P2", max_rel_half=0.15)
    # power: a bed more or fewer is clearly rejected
    _, lo, hi = t_interval(waits)
    assert not lo <= erlang_c(MMC_C + 1, a) / ((MMC_C + 1) * mu - MMC_LAMBDA) <= hi
    # the wait is a delay in an acute bed: Little's law for the queue, L_q = lambda W_q
    assert_theory_in_ci(mmc_node.kpi_frame()["queue_mean_P2"], MMC_LAMBDA * wq, "queue_mean_P2", 0.2)


def test_pathway_only_node_probability_of_waiting(mmc_node: RunResult) -> None:
    p_wait = [float(np.mean(_node_waits(g) > TOL)) for _, g in mmc_node.patients().groupby("replication")]
    assert_theory_in_ci(p_wait, erlang_c(MMC_C, MMC_LAMBDA * MMC_LOS), "P(wait > 0)", max_rel_half=0.08)
    occ = mmc_node.kpi_frame()["service_ic_occupied_mean"]
    assert_theory_in_ci(occ, MMC_LAMBDA * MMC_LOS, "mean occupied beds", max_rel_half=0.03)


# =========================================================================== 4. localities
@pytest.fixture(scope="module")
def locality_runs() -> tuple[Scenario, RunResult, Scenario, RunResult]:
    with_nb = load_scenario(LOCALITIES_YAML)
    without = load_scenario(LOCALITIES_YAML, overrides=["localities.B.neighbours=[]"])
    assert with_nb.localities["B"].neighbours == ["A"] and without.localities["B"].neighbours == []
    r1 = run(with_nb, replications=10, seed=31337, workers=2)
    r2 = run(without, replications=10, seed=31337, workers=2)
    return with_nb, r1, without, r2


def _cap(sc: Scenario, name: str) -> int:
    cap = sc.pathways["P2"].services[name].capacity
    assert isinstance(cap, int)
    return cap


def test_a_patients_never_use_b_beds(locality_runs) -> None:
    _, r1, _, r2 = locality_runs
    for result in (r1, r2):
        p = result.patients()
        a = p[(p["cohort"].astype(str) == "A_P2") & p["slot_granted"].notna()]
        assert len(a) > 1000
        assert set(a["service"]) == {"a_beds"}


def test_b_patients_use_a_beds_only_when_b_beds_are_full(locality_runs) -> None:
    sc, r1, _, _ = locality_runs
    cap_b = _cap(sc, "b_beds")
    n_overflow = 0
    for _, g in r1.patients().groupby("replication"):
        in_b = (g["service"] == "b_beds").to_numpy()
        granted, ends = g["slot_granted"].to_numpy(), g["ds_end"].to_numpy()
        b_to_a = ((g["cohort"].astype(str) == "B_P2") & (g["service"] == "a_beds")).to_numpy()
        t = granted[b_to_a]
        occ_b = occupancy_at(np.where(in_b, granted, np.nan), ends, t)
        assert (occ_b == cap_b).all(), f"B patients sent to A's beds while B's had {occ_b.min()} < {cap_b} occupied"
        n_overflow += len(t)
    assert n_overflow > 200, "the scenario should make B overflow to A often"


def test_freed_a_bed_goes_to_a_patient_first_and_fifo_within_locality(locality_runs) -> None:
    _, r1, _, _ = locality_runs
    contested = 0
    for _, g in r1.patients().groupby("replication"):
        cohort = g["cohort"].astype(str).to_numpy()
        mffd, granted, service = g["mffd"].to_numpy(), g["slot_granted"].to_numpy(), g["service"].to_numpy()
        is_a, is_b = cohort == "A_P2", cohort == "B_P2"
        ok = ~np.isnan(granted)
        # every grant of an A bed to a B patient: no A patient was waiting at that instant
        sel = ok & is_b & (service == "a_beds")
        wait_a = waiting_at(mffd[is_a], granted[is_a], granted[sel])
        assert not wait_a.any(), f"{int(wait_a.any(axis=1).sum())} A beds went to B patients while A patients waited"
        # every grant after waiting goes to the longest-waiting patient of its locality (FIFO within locality)
        for loc_mask in (is_a, is_b):
            sel = ok & loc_mask & (granted - mffd > TOL)
            w = waiting_at(mffd[loc_mask], granted[loc_mask], granted[sel])
            earlier = mffd[loc_mask][None, :] < mffd[sel][:, None] - TOL
            assert not (w & earlier).any(), "a later patient of the same locality was served first"
        # the priority rule is exercised: A beds granted to waiting A patients while B patients also waited
        sel = ok & is_a & (service == "a_beds") & (granted - mffd > TOL)
        contested += int(waiting_at(mffd[is_b], granted[is_b], granted[sel]).any(axis=1).sum())
    assert contested > 20, "no freed A bed was contested by both localities: the priority rule was not tested"


def test_without_neighbours_b_stays_home_and_waits_longer(locality_runs) -> None:
    _, r1, _, r2 = locality_runs
    p2 = r2.patients()
    b2 = p2[(p2["cohort"].astype(str) == "B_P2") & p2["slot_granted"].notna()]
    assert set(b2["service"]) == {"b_beds"}

    def b_wait(result: RunResult) -> pd.Series:
        p = result.patients()
        b = p[(p["cohort"].astype(str) == "B_P2") & (p["mffd"] >= 0)]
        return b.assign(w=b["slot_granted"].fillna(1500.0) - b["mffd"]).groupby("replication")["w"].mean()

    diff = b_wait(r2) - b_wait(r1)  # paired over common seeds (same replication index)
    assert len(diff) == 10
    m, lo, _ = t_interval(diff)
    assert lo > 0, f"B's mean wait did not rise without neighbours: mean difference {m:.3g}, CI low {lo:.3g}"
    # and A's patients are better off without B's competition for their beds
    def a_wait(result: RunResult) -> pd.Series:
        p = result.patients()
        a = p[(p["cohort"].astype(str) == "A_P2") & (p["mffd"] >= 0)]
        return a.assign(w=a["slot_granted"].fillna(1500.0) - a["mffd"]).groupby("replication")["w"].mean()

    assert t_interval(a_wait(r1) - a_wait(r2))[1] > 0


def test_node_table_per_locality(locality_runs) -> None:
    sc, r1, _, _ = locality_runs
    T = sc.simulation.duration_days
    nodes = r1.nodes()
    assert set(nodes["node"]) == {"P2 A", "P2 B"}
    assert len(nodes) == 10 * T * 2  # one row per replication x day x node
    assert not nodes.duplicated(["replication", "day", "node"]).any()
    for col in ("occupied", "capacity", "queue", "admissions", "mean_wait_days", "cost"):
        assert col in nodes.columns
    daily = r1.daily()
    pts = r1.patients()
    for rep, g in nodes.groupby("replication"):
        d = daily[daily["replication"] == rep].set_index("day")
        p = pts[pts["replication"] == rep]
        for loc, svc in (("A", "a_beds"), ("B", "b_beds")):
            n = g[g["node"] == f"P2 {loc}"].set_index("day").sort_index()
            assert np.allclose(n["occupied"], d[f"service_{svc}_occupied"])
            assert np.allclose(n["capacity"], _cap(sc, svc))
            # admissions and waits: this locality's patients granted a slot that day (in any service)
            mine = p[(p["cohort"].astype(str) == f"{loc}_P2") & (p["slot_granted"] >= 0) & (p["slot_granted"] < T)]
            day = np.floor(mine["slot_granted"]).astype(int)
            adm = np.bincount(day, minlength=T)
            assert (n["admissions"].to_numpy() == adm).all()
            w = (mine["slot_granted"] - mine["mffd"]).groupby(day.to_numpy()).mean()
            assert np.allclose(n.loc[w.index, "mean_wait_days"], w.to_numpy())
            assert n["mean_wait_days"].isna().to_numpy().tolist() == (adm == 0).tolist()
            # queue: daily mean number of this locality's patients waiting
            mine_all = p[p["cohort"].astype(str) == f"{loc}_P2"]
            total_wait = clipped(mine_all["mffd"].to_numpy(), mine_all["slot_granted"].to_numpy(), T).sum()
            assert n["queue"].sum() == pytest.approx(total_wait, rel=1e-9)
    summary = r1.node_summary()
    assert len(summary) == 2 * T
    for measure in ("occupied", "capacity", "queue", "mean_wait_days", "cost"):
        for s in ("mean", "p5", "p50", "p95"):
            assert f"{measure}_{s}" in summary.columns
    by = nodes.groupby(["node", "day"])
    s = summary.set_index(["node", "day"]).sort_index()
    assert np.allclose(s["occupied_mean"], by["occupied"].mean().sort_index())
    assert np.allclose(s["queue_p95"], by["queue"].quantile(0.95).sort_index())
    assert (s["cost_p5"] <= s["cost_p50"] + 1e-9).all() and (s["cost_p50"] <= s["cost_p95"] + 1e-9).all()


# =========================================================================== 5. visits-per-day P1
V, S, E, L, LAM = 30, 2.0, 0.5, 10.0, 2.0
VIS_DAYS, VIS_WARMUP, VIS_REPS = 1500, 100, 8


@pytest.fixture(scope="module")
def visits_run() -> RunResult:
    sc = validate_dict(po_dict(
        demand=[{"pathway": "P1", "rate_per_day": LAM}],
        pathways={"P1": {"services": {"homecare": {
            "capacity": V, "capacity_unit": "visits", "visits": {"start": S, "end": E},
            "los": {"dist": "fixed", "value": L}}}}},
        duration_days=VIS_DAYS, warmup_days=VIS_WARMUP))
    return run(sc, replications=VIS_REPS, seed=8080, workers=2)


def _load(granted: np.ndarray, ends: np.ndarray, t: np.ndarray, strict: bool,
          lengths: np.ndarray | float = L, s: float = S, e: float = E) -> np.ndarray:
    """Visits a day committed at each t by packages [granted, ends) of the given lengths: a package
    of age x needs s + (e - s) x / length visits a day.  ``strict``: count only packages granted
    before t (not at t)."""
    n = np.broadcast_to(np.asarray(lengths, dtype=float), granted.shape)
    ends = np.where(np.isnan(ends), np.inf, ends)
    out = np.zeros(len(t))
    for i in range(0, len(t), 400):
        tt = t[i:i + 400, None]
        started = granted[None, :] < tt - TOL if strict else granted[None, :] <= tt + TOL
        active = started & (ends[None, :] > tt + TOL)
        frac = np.clip((tt - granted[None, :]) / n[None, :], 0.0, 1.0)
        out[i:i + 400] = np.where(active, s + (e - s) * frac, 0.0).sum(axis=1)
    return out


def test_visit_capacity_is_never_exceeded_and_wakeup_is_exact(visits_run: RunResult) -> None:
    by_departure = by_decay = waited_total = 0
    for _, g in visits_run.patients().groupby("replication"):
        g = g[g["slot_granted"].notna()].sort_values(["slot_granted", "mffd"])
        granted, ends, mffd = g["slot_granted"].to_numpy(), g["ds_end"].to_numpy(), g["mffd"].to_numpy()
        ends = np.where(np.isnan(ends), np.inf, ends)
        assert np.allclose(ends[np.isfinite(ends)] - granted[np.isfinite(ends)], L)  # transfer 0: stay = package
        # load just before each grant: earlier packages, plus packages granted earlier at the same instant
        same_before = pd.Series(granted).groupby(granted).cumcount().to_numpy()
        before = _load(granted, ends, granted, strict=True) + S * same_before
        over = before + S > V + 1e-9
        assert not over.any(), f"{over.sum()} packages taken beyond {V} visits a day (max {np.max(before + S):.6g})"
        # work conservation: a patient starts waiting only if their package does not fit at that instant
        waited = granted - mffd > TOL
        t_wait = mffd[waited]
        load_w = _load(granted, ends, t_wait, strict=False)
        idle = load_w + S <= V - 1e-6
        assert not idle.any(), f"{idle.sum()} patients waited while {V - load_w[idle].max():.3g} visits were free"
        # exact wake-up: a waiting patient is granted when a package leaves or when tapering
        # visits have made exactly enough room (load = V - s), never later
        t_g = granted[waited]
        departed = np.isin(np.round(t_g, 9), np.round(ends[np.isfinite(ends)], 9))
        decayed = np.abs(before[waited] + S - V) <= 1e-6
        late = ~(departed | decayed)
        assert not late.any(), (f"{late.sum()} grants after waiting happened with neither a departure nor load "
                                f"= V - s (load gaps: {(V - S - before[waited][late])[:5]})")
        by_departure += int(departed.sum())
        by_decay += int((decayed & ~departed).sum())
        waited_total += int(waited.sum())
    assert waited_total > 1000, "patients should often wait for a visits slot"
    assert by_departure > 50 and by_decay > 50, (by_departure, by_decay)


def test_visits_package_count_obeys_littles_law(visits_run: RunResult) -> None:
    kpis = visits_run.kpi_frame()
    T = float(VIS_DAYS)
    for rep, g in visits_run.patients().groupby("replication"):
        in_svc = clipped(g["slot_granted"].to_numpy(), g["ds_end"].to_numpy(), T).sum() / T
        assert kpis.loc[rep, "service_homecare_occupied_mean"] == pytest.approx(in_svc, rel=1e-9)
    assert_theory_in_ci(kpis["service_homecare_occupied_mean"], LAM * L, "mean packages in service (lambda L)", 0.05)
    assert_theory_in_ci(kpis["service_homecare_admissions"] / T, LAM, "package admissions per day", 0.05)
    # L = lambda W with the measured admission rate
    lam_hat = kpis["service_homecare_admissions"] / T
    assert np.allclose(kpis["service_homecare_occupied_mean"], lam_hat * L, rtol=0.02)


VL_CAP = {"n_home": 25, "s_home": 18}
VL_START, VL_END = 3.0, 1.0


@pytest.fixture(scope="module")
def visits_localities_run() -> RunResult:
    """Two visit-based P1 services that are each other's neighbours; south's is listed first."""
    svc = {"capacity_unit": "visits", "visits": {"start": VL_START, "end": VL_END},
           "los": {"dist": "gamma", "mean": 8.0, "sd": 3.0}}
    sc = validate_dict(po_dict(
        localities={"north": {"neighbours": ["south"]}, "south": {"neighbours": ["north"]}},
        demand=[{"pathway": "P1", "locality": "north", "rate_per_day": 1.4},
                {"pathway": "P1", "locality": "south", "rate_per_day": 0.9}],
        pathways={"P1": {"services": {"s_home": {**svc, "locality": "south", "capacity": VL_CAP["s_home"]},
                                      "n_home": {**svc, "locality": "north", "capacity": VL_CAP["n_home"]}}}},
        duration_days=800, warmup_days=100))
    return run(sc, replications=3, seed=2718, workers=2)


def test_visit_pools_with_localities(visits_localities_run: RunResult) -> None:
    """Each visit pool stays within its visits a day; a patient uses the other locality's pool only
    when their own has no room, and a pool serves its own locality's waiting patients first."""
    own = {"north_P1": "n_home", "south_P1": "s_home"}
    other = {"north_P1": "s_home", "south_P1": "n_home"}
    used_other = 0
    for _, g in visits_localities_run.patients().groupby("replication"):
        g = g[g["slot_granted"].notna()].sort_values(["slot_granted", "mffd"])
        granted, ends, mffd = g["slot_granted"].to_numpy(), g["ds_end"].to_numpy(), g["mffd"].to_numpy()
        lengths = g["package_len"].to_numpy()
        done = ~np.isnan(ends)
        assert np.allclose(ends[done] - granted[done], lengths[done])  # the planned length is the stay
        cohort, service = g["cohort"].astype(str).to_numpy(), g["service"].to_numpy()
        for name, cap in VL_CAP.items():
            m = service == name
            t = granted[m]
            same_before = pd.Series(t).groupby(t).cumcount().to_numpy()
            before = _load(granted[m], ends[m], t, True, lengths[m], VL_START, VL_END) + VL_START * same_before
            assert not (before + VL_START > cap + 1e-9).any(), f"{name} took packages beyond {cap} visits a day"

        def room(name: str, t: np.ndarray, g: pd.DataFrame = g) -> np.ndarray:
            """The pool ``name`` clearly had room for one more package at each instant t (1e-6 visits to spare)."""
            m = (g["service"] == name).to_numpy()
            load = _load(g["slot_granted"].to_numpy()[m], g["ds_end"].to_numpy()[m], t, True,
                         g["package_len"].to_numpy()[m], VL_START, VL_END)
            return load + VL_START <= VL_CAP[name] - 1e-6

        for c in own:
            mine = cohort == c
            # granted the other locality's pool: their own had no room at that instant
            away = mine & (service == other[c])
            assert not room(own[c], granted[away]).any(), f"{c} sent to {other[c]} while {own[c]} had room"
            used_other += int(away.sum())
            # a pool serves its own waiting patients first: no own patient was waiting when a neighbour got in
            owner = np.array([k for k, v in own.items() if v == other[c]])
            is_owner = np.isin(cohort, owner)
            w = waiting_at(mffd[is_owner], granted[is_owner], granted[away])
            assert not w.any(), f"{other[c]} went to a {c} patient while its own locality's patients waited"
            # nobody starts waiting while a pool they may use has room
            waited = mine & (granted - mffd > TOL)
            t_wait = mffd[waited]
            free = room(own[c], t_wait) | room(other[c], t_wait)
            assert not free.any(), f"{int(free.sum())} {c} patients waited while a visits slot was free"
    assert used_other > 100


# =========================================================================== 6. costs
DELAY_COST = 300.0
EXP5 = {"dist": "exponential", "mean": 5.0}


def cost_scenarios() -> dict[str, dict[str, Any]]:
    blocked = po_dict(
        duration_days=100, warmup_days=20, costs={"acute_delay_per_day": DELAY_COST},
        demand=[{"pathway": "P2", "rate_per_day": 2.0}],
        pathways={"P2": {"services": {"ic": {"capacity": 0, "los": {"dist": "fixed", "value": 3.0},
                                             "unit_cost_per_day": 50.0, "cost_per_occupied_day": 80.0}}}})
    schedule = po_dict(
        duration_days=100, warmup_days=20, costs={"acute_delay_per_day": DELAY_COST},
        demand=[{"pathway": "P2", "rate_per_day": 1.5}],
        pathways={"P2": {"services": {"ic": {
            "capacity": {"base": 4, "periods": [{"start": "2024-01-11", "end": "2024-01-20", "set": 6}]},
            "los": {"dist": "fixed", "value": 3.0}, "unit_cost_per_day": 50.0, "cost_per_occupied_day": 80.0}}}})
    mixed = po_dict(
        duration_days=150, warmup_days=20, costs={"acute_delay_per_day": DELAY_COST},
        localities={"north": {"neighbours": ["south"]}, "south": {}},
        demand=[{"pathway": "P1", "locality": "north", "rate_per_day": 1.0},
                {"pathway": "P2", "locality": "north", "rate_per_day": 1.2},
                {"pathway": "P2", "locality": "south", "rate_per_day": 0.8},
                {"pathway": "P3", "locality": "south", "rate_per_day": 0.3}],
        pathways={
            "P1": {"services": {"n_home": {"locality": "north", "capacity": 14, "capacity_unit": "visits",
                                           "visits": {"start": 2.0, "end": 0.5},
                                           "los": {"dist": "gamma", "mean": 10.0, "sd": 4.0},
                                           "unit_cost_per_day": 25.0, "cost_per_occupied_day": 40.0}}},
            "P2": {"services": {"n_ic": {"locality": "north", "capacity": 5, "los": EXP5,
                                         "cost_per_occupied_day": 150.0, "unit_cost_per_day": 20.0},
                                "s_ic": {"locality": "south", "capacity": 3, "los": EXP5,
                                         "cost_per_occupied_day": 170.0}}},
            "P3": {"services": {"s_d2a": {"locality": "south", "capacity": "unlimited",
                                          "los": {"dist": "lognormal", "mean": 20.0, "sd": 10.0},
                                          "cost_per_occupied_day": 90.0,
                                          "outcomes": {"home": 0.5, "long_term_care": 0.3, "death": 0.2}}}},
        },
        long_term_care={"capacity": 4, "stay": {"dist": "exponential", "mean": 60.0},
                        "placement_time": {"dist": "fixed", "value": 2.0}})
    escalation = po_dict(
        duration_days=150, warmup_days=20, costs={"acute_delay_per_day": DELAY_COST},
        demand=[{"pathway": "P2", "rate_per_day": 1.8}],
        pathways={"P2": {"services": {"ic": {"capacity": 8, "los": {"dist": "exponential", "mean": 5.0},
                                             "cost_per_occupied_day": 100.0}}}},
        escalation={"hold_days": 2.0, "levels": {2: {"any": [{"metric": "delayed_patients", "above": 3}]}},
                    "actions": [{"level": 2, "kind": "add_capacity", "target": "ic", "amount": 2,
                                 "cost_one_off": 500.0, "cost_per_day": 100.0, "cost_per_place_day": 20.0}]})
    return {"blocked": blocked, "schedule": schedule, "mixed": mixed, "escalation": escalation}


def _rotherham() -> Scenario:
    sc = load_scenario(ROTHERHAM_PATHWAY_ONLY)
    assert sc.mode == "pathway_only" and sc.simulation.duration_days == 365
    return sc


COST_CASES = [*cost_scenarios(), "rotherham_pathway_only"]


@pytest.fixture(scope="module", params=COST_CASES)
def cost_run(request) -> tuple[str, Scenario, RunResult]:
    name = request.param
    sc = _rotherham() if name == "rotherham_pathway_only" else validate_dict(cost_scenarios()[name])
    return name, sc, run(sc, replications=3, seed=555)


def _escalation_cost(sc: Scenario, result: RunResult, rep: int, T: float) -> float:
    if sc.escalation is None:
        return 0.0
    log = result.escalation()
    log = log[(log["replication"] == rep) & (log["record"] == "action")]
    total = 0.0
    for i, action in enumerate(sc.escalation.actions):
        ev = log[(log["action"] == i) & log["event"].isin(["started", "stopped"])].sort_values("time", kind="stable")
        on = None
        for t, e in [*zip(ev["time"], ev["event"], strict=True), (T, "stopped")]:
            if e == "started":
                on = t
                total += action.cost_one_off if 0 <= t < T else 0.0
            elif on is not None:
                days = max(0.0, min(t, T) - max(on, 0.0))
                total += days * (action.cost_per_day + action.cost_per_place_day * (action.amount or 0))
                on = None
    return total


def test_total_cost_is_the_sum_of_its_parts(cost_run) -> None:
    _, _, result = cost_run
    k = result.kpi_frame()
    for rep, row in k.iterrows():
        parts = (row["cost_acute_delay"] + row["cost_service_care"] + row["service_capacity_cost"]
                 + row["escalation_cost"])
        assert row["total_cost"] == pytest.approx(parts, rel=1e-12), f"replication {rep}"
        assert np.isfinite(row["total_cost"]) and row["total_cost"] >= 0


def test_each_cost_part_by_hand(cost_run) -> None:
    name, sc, result = cost_run
    T = float(sc.simulation.duration_days)
    full = compile_scenario(sc)
    services = {s: svc for pw in full.pathways.values() for s, svc in pw.services.items()}
    k = result.kpi_frame()
    pts, daily = result.patients(), result.daily()
    for rep, row in k.iterrows():
        p = pts[pts["replication"] == rep]
        d = daily[daily["replication"] == rep]
        # delayed acute bed-days: from medically fit to slot granted (or the run's end), clipped to [0, T]
        downstream = p["pathway"].astype(str) != "P0"
        delay = clipped(p["mffd"].to_numpy(), p["slot_granted"].to_numpy(), T)[downstream.to_numpy()].sum()
        assert row["cost_acute_delay"] == pytest.approx(delay * sc.costs.acute_delay_per_day, rel=1e-9, abs=1e-6)
        care = 0.0
        capacity = 0.0
        for sname, svc in services.items():
            m = (p["service"] == sname).to_numpy()
            occupied = clipped(p["slot_granted"].to_numpy()[m], p["ds_end"].to_numpy()[m], T).sum()
            care += occupied * svc.cost_per_occupied_day
            if svc.unit_cost_per_day > 0:
                capacity += d[f"service_{sname}_capacity"].sum() * svc.unit_cost_per_day
        assert row["cost_service_care"] == pytest.approx(care, rel=1e-9, abs=1e-6)
        assert row["service_capacity_cost"] == pytest.approx(capacity, rel=1e-9, abs=1e-6)
        assert row["escalation_cost"] == pytest.approx(_escalation_cost(sc, result, int(rep), T), rel=1e-9, abs=1e-6)
        if name == "blocked":  # nobody is ever granted a place: only acute delay costs, all patients waiting
            assert row["cost_service_care"] == 0 and row["service_capacity_cost"] == 0
            assert p["slot_granted"].isna().all()
            m = p["mffd"].to_numpy()
            assert row["cost_acute_delay"] == pytest.approx(DELAY_COST * np.sum(T - np.maximum(m[m < T], 0.0)))
        if name == "schedule":  # 4 places, 6 on 11-20 January (10 days): 4 x 100 + 2 x 10 place-days at 50
            assert row["service_capacity_cost"] == pytest.approx(50.0 * (4 * 100 + 2 * 10), rel=1e-12)
        if name == "escalation":
            assert row["escalation_cost"] > 0, "the escalation scenario should escalate"


@pytest.fixture(scope="module")
def blocked_run() -> RunResult:
    return run(validate_dict(cost_scenarios()["blocked"]), replications=3, seed=555)


def _blocked_check(days: np.ndarray, mean: float, sd: float) -> bool:
    """The mean over replications within 3.89 standard errors of theory (two-sided 1e-4: a seeded false alarm
    is all but impossible, and the band is still narrow enough to have power; see the test)."""
    return bool(abs(float(np.mean(days)) - mean) <= 3.89 * sd / math.sqrt(len(days)))


def test_blocked_service_delay_matches_its_expectation(blocked_run: RunResult) -> None:
    """Capacity 0 throughout: every patient medically fit at s in [-W, T) waits to the end, T - max(s, 0) days
    inside the window.  For Poisson demand (Campbell's theorem) the delayed bed-days have mean
    lambda (W T + T^2 / 2) = 14,000 and variance lambda (W T^2 + T^3 / 3): sd 1,033 per replication.

    Power: a model that drops the warm-up's arrivals has mean lambda T^2 / 2 = 10,000 (sd 816); with 3
    replications the band is +-2,320 around 14,000, which such a model misses by 1,680 = 3.6 of its standard
    errors (power 0.9998, where the old 4-sd-per-replication check let it through 56% of the time per
    replication).  Shown on the run itself: the same check on the delays of the patients fit from day 0 only
    (what that model would report) fails."""
    result = blocked_run
    lam, W, T = 2.0, 20.0, 100.0
    mean = lam * (W * T + T * T / 2)
    sd = math.sqrt(lam * (W * T * T + T ** 3 / 3))
    days = (result.kpi_frame()["cost_acute_delay"] / DELAY_COST).to_numpy()
    assert _blocked_check(days, mean, sd), (days.tolist(), mean, sd)
    assert np.allclose(result.kpi_frame()["delayed_bed_days"], days)
    p = result.patients()
    fit = p["mffd"].to_numpy()
    in_window = [float(np.sum(T - g.loc[(g["mffd"] >= 0) & (g["mffd"] < T), "mffd"]))
                 for _, g in p.groupby("replication", sort=True)]
    everyone = [float(np.sum(T - np.maximum(g.loc[g["mffd"] < T, "mffd"], 0.0)))
                for _, g in p.groupby("replication", sort=True)]
    np.testing.assert_allclose(everyone, days, rtol=1e-9)   # the KPI is the sum over all stays, warm-up included
    assert (fit < 0).sum() > 50
    assert not _blocked_check(np.array(in_window), mean, sd), "no power against dropping warm-up arrivals"
    drop_mean, drop_sd = lam * T * T / 2, math.sqrt(lam * T ** 3 / 3)
    assert (mean - 3.89 * sd / math.sqrt(3)) - drop_mean > 3.29 * drop_sd / math.sqrt(3)


def test_node_costs_add_up_to_the_cost_kpis(cost_run) -> None:
    name, sc, result = cost_run
    T = sc.simulation.duration_days
    nodes = result.nodes()
    assert not nodes.empty
    n_nodes = nodes["node"].nunique()
    assert len(nodes) == len(result.replications) * T * n_nodes
    k = result.kpi_frame()
    node_cost = nodes.groupby("replication")["cost"].sum()
    for rep, row in k.iterrows():
        want = row["cost_acute_delay"] + row["cost_service_care"] + row["service_capacity_cost"]
        assert node_cost[rep] == pytest.approx(want, rel=1e-6, abs=1e-6), f"{name}, replication {rep}"


def test_node_costs_include_localities_without_their_own_service() -> None:
    """Regression: node_daily once built nodes only from services' localities, so the delays of a
    locality with demand but no own service (here 'east', using north's beds) were in no node."""
    data = two_locality_dict()
    data["costs"] = {"acute_delay_per_day": DELAY_COST}
    data["localities"]["east"] = {"neighbours": ["north"]}
    data["demand"].append({"pathway": "P2", "locality": "east", "rate_per_day": 1.0})
    data["simulation"]["duration_days"] = 200
    result = run(validate_dict(data), replications=1, seed=7)
    k = result.kpi_frame().iloc[0]
    assert k["cost_acute_delay"] > 0
    assert result.nodes()["cost"].sum() == pytest.approx(
        k["cost_acute_delay"] + k["cost_service_care"] + k["service_capacity_cost"], rel=1e-6)


def test_node_costs_with_a_county_wide_service_are_not_double_counted() -> None:
    """Regression: node_daily once gave a locality-less service a node holding ALL the pathway's
    patients, so localised patients' waits (queue, admissions, delay cost) were counted twice."""
    data = two_locality_dict()
    data["costs"] = {"acute_delay_per_day": DELAY_COST}
    data["pathways"]["P2"]["services"]["county_spot"] = {"capacity": 1, "los": {"dist": "fixed", "value": 1.0}}
    data["simulation"]["duration_days"] = 200
    result = run(validate_dict(data), replications=1, seed=7)
    k = result.kpi_frame().iloc[0]
    nodes = result.nodes()
    assert k["cost_acute_delay"] > 0
    assert nodes.groupby("day")["admissions"].sum().sum() == k["service_n_beds_admissions"] + \
        k["service_s_beds_admissions"] + k["service_county_spot_admissions"]
    assert nodes["cost"].sum() == pytest.approx(
        k["cost_acute_delay"] + k["cost_service_care"] + k["service_capacity_cost"], rel=1e-6)


def test_mffd_bed_days_exclude_patients_still_delayed(blocked_run: RunResult) -> None:
    """Regression: mffd_bed_days once counted patients still waiting at the run's end (slot_granted
    NaN) from mffd, so their whole delay was also 'fit but not delayed' (here it equalled the delay)."""
    kpis = blocked_run.kpi_frame()
    assert (kpis["delayed_bed_days"] > 0).all()
    assert (kpis["mffd_bed_days"] == 0).all()


def test_shipped_fixture_loads_through_extends_and_set(tmp_path: Path) -> None:
    """A pathway-only option as an ``extends:`` diff, and ``--set`` on a locality's neighbours."""
    child = tmp_path / "pathway_only_option.yaml"
    child.write_text(f"extends: {LOCALITIES_YAML}\nname: more A beds\npathways:\n  P2:\n    services:\n"
                     "      a_beds: {capacity: 10}\n", encoding="utf-8")
    data, lines = load_raw(child)
    assert data["pathways"]["P2"]["services"]["a_beds"]["capacity"] == 10
    assert data["pathways"]["P2"]["services"]["a_beds"]["locality"] == "A"
    data = apply_overrides(data, ["localities.A.neighbours=[B]"], lines)
    sc = validate_dict(data)
    assert sc.localities["A"].neighbours == ["B"]
    services = compile_scenario(sc).pathways["P2"].services
    assert sorted(services["b_beds"].cohorts or []) == ["A_P2", "B_P2"]

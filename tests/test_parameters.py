"""Parameter uncertainty carried through a run (``parameters_from:``): replication r runs with one of the
calibration's accepted parameter sets, drawn on the named stream 'parameter_draw' from (seed, r).

Proven here: the accepted sets are exactly the candidates within chi2(k, 0.95) of the best objective; a degenerate
accepted set (the scenario's own values) gives the plain run exactly; with two distinct sets each replication is
exactly the plain run of the set it drew (common random numbers hold), and the between-replication variance grows
as the law of total variance predicts; summary.json says which intervals include what; bad sources are one error.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

from flowsim import ScenarioError, load_scenario, simulate
from flowsim.report.html import write_report
from flowsim.rng import make_stream
from flowsim.rundir import summary_dict, write_run_dir
from flowsim.scenario.parameters import PARAMETER_STREAM

HERE = Path(__file__).resolve().parent / "calibration"
IC = "pathways.P2.services.intermediate_care.capacity"
KPI = "delayed_patients_per_day"


def calibration_dir(path: Path, rows: list[tuple[int, float]], fitted: int = 22) -> Path:
    """A calibration directory as flowsim calibrate writes it, with one free parameter (IC beds)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "calibration.json").write_text(json.dumps({"fitted": {IC: fitted}}), encoding="utf-8")
    pd.DataFrame(rows, columns=[IC, "objective"]).to_csv(path / "evaluations.csv", index=False)
    return path


def scenario_with(tmp_path: Path, source: Path) -> Path:
    path = tmp_path / "with_draws.yaml"
    path.write_text(yaml.safe_dump({"extends": str(HERE / "two_month.yaml"), "parameters_from": str(source)}),
                    encoding="utf-8")
    return path


def test_accepted_sets_are_the_likelihood_ratio_set(tmp_path: Path) -> None:
    """k = 1: chi2(1, 0.95) = 3.84 above the best (2.0): objectives up to 5.84 are in, repeats once."""
    src = calibration_dir(tmp_path / "cal", [(20, 9.0), (22, 2.0), (24, 5.8), (26, 5.9), (22, 2.0), (18, 3.0)])
    sc = load_scenario(scenario_with(tmp_path, src))
    assert sc.parameters_from is not None
    assert sc.parameters_from.sets == [{IC: 22}, {IC: 18}, {IC: 24}]
    assert stats.chi2.ppf(0.95, 1) == pytest.approx(3.8415, abs=1e-4)


def test_degenerate_accepted_set_equals_the_plain_run(tmp_path: Path) -> None:
    src = calibration_dir(tmp_path / "cal", [(22, 1.0), (40, 50.0)])
    drawn = simulate(load_scenario(scenario_with(tmp_path, src)), 4, seed=3, progress=False, keep_patients=False)
    plain = simulate(load_scenario(HERE / "two_month.yaml"), 4, seed=3, progress=False, keep_patients=False)
    pd.testing.assert_frame_equal(drawn.kpi_frame().drop(columns="scenario_id", errors="ignore"),
                                  plain.kpi_frame().drop(columns="scenario_id", errors="ignore"), check_exact=True)
    info = summary_dict(drawn)["intervals_include"]
    assert info["parameter_uncertainty"] is True and info["parameter_sets"] == 1
    assert summary_dict(plain)["intervals_include"]["parameter_uncertainty"] is False
    # the run report says which intervals include what
    pages = {}
    for name, run in (("drawn", drawn), ("plain", plain)):
        write_run_dir(run, tmp_path / name)
        pages[name] = " ".join(write_report(tmp_path / name).read_text(encoding="utf-8").split())
    assert "includes <b>parameter uncertainty</b>" in pages["drawn"] and "1 accepted parameter sets" in pages["drawn"]
    assert "reflects only the model's own randomness" in pages["plain"]
    assert "parameter uncertainty" not in pages["plain"]


@pytest.fixture(scope="module")
def two_sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pd.DataFrame]:
    tmp = tmp_path_factory.mktemp("two")
    src = calibration_dir(tmp / "cal", [(14, 1.0), (34, 1.5)])
    n, seed = 40, 11
    runs = {"mixed": load_scenario(scenario_with(tmp, src)),
            "a": load_scenario(HERE / "two_month.yaml", [f"{IC}=14"]),
            "b": load_scenario(HERE / "two_month.yaml", [f"{IC}=34"])}
    return {k: simulate(sc, n, seed=seed, progress=False, keep_patients=False, workers=2).kpi_frame()
            for k, sc in runs.items()}


def by_rep(frame: pd.DataFrame) -> pd.Series:
    return frame.set_index("replication")[KPI] if "replication" in frame.columns else frame[KPI]


def test_each_replication_is_the_plain_run_of_the_set_it_drew(two_sets) -> None:
    """Common random numbers: replication r with set k is replication r of the plain run with that set's value."""
    mixed = by_rep(two_sets["mixed"])
    picks = [int(make_stream(11, r, PARAMETER_STREAM).integers(2)) for r in mixed.index]
    assert 0 < sum(picks) < len(picks), "both sets drawn"
    for r, k in zip(mixed.index, picks, strict=True):
        plain = by_rep(two_sets["a" if k == 0 else "b"])
        assert mixed[r] == plain[r], (r, k)


def test_variance_grows_as_the_law_of_total_variance_predicts(two_sets) -> None:
    """Var(Y) = E[Var(Y | set)] + Var(E[Y | set]) = (v_a + v_b) / 2 + (m_a - m_b)^2 / 4 for two equally likely
    sets.  The mixed run's sample variance over 40 replications lies within the central 99.9% of
    chi2(39) / 39 times the prediction (a bimodal mixture has lighter tails than a normal, so this is
    conservative), and is well above the within-set variance alone (the power: a run ignoring parameter
    uncertainty would fail)."""
    a, b, mixed = (two_sets[k][KPI].to_numpy() for k in ("a", "b", "mixed"))
    within = (a.var(ddof=1) + b.var(ddof=1)) / 2
    predicted = within + (a.mean() - b.mean()) ** 2 / 4
    observed = mixed.var(ddof=1)
    lo, hi = stats.chi2.ppf([0.0005, 0.9995], 39) / 39
    assert lo * predicted <= observed <= hi * predicted, (observed, predicted)
    assert observed > 3 * within, (observed, within)


def test_bad_parameters_source_is_one_error(tmp_path: Path) -> None:
    path = scenario_with(tmp_path, tmp_path / "nowhere")
    with pytest.raises(ScenarioError, match=r"with_draws\.yaml:\d+: parameters_from: .*nowhere.*needs a calibration"):
        load_scenario(path)
    bad = calibration_dir(tmp_path / "bad", [(22, 1.0)])
    (bad / "calibration.json").write_text(json.dumps({"fitted": {"acute.bedz": 3}}), encoding="utf-8")
    with pytest.raises(ScenarioError, match=r"missing acute\.bedz"):
        load_scenario(scenario_with(tmp_path, bad))


def test_a_set_that_breaks_the_scenario_is_named(tmp_path: Path) -> None:
    src = calibration_dir(tmp_path / "cal", [(-5, 1.0)])
    with pytest.raises(ScenarioError, match=r"parameters_from: set 0 .*capacity"):
        load_scenario(scenario_with(tmp_path, src))


def test_draws_do_not_move_other_streams() -> None:
    """The parameter stream is its own: adding it changes no other stream's numbers."""
    a = make_stream(11, 3, "arrivals").random(5)
    make_stream(11, 3, PARAMETER_STREAM).integers(2)
    assert np.array_equal(a, make_stream(11, 3, "arrivals").random(5))

"""Back-testing (``flowsim backtest``): the naive baselines by hand, the snapshot round trip (horizon 0: the
snapshot is the observed state), recovery of a truth the model made itself (coverage of the 90% prediction
interval within a binomial tolerance), the files and figure written, and bad input.

Contract (flowsim/experiment/backtest.py): horizon h is the midnight census h days after the origin's 00:00
snapshot (the daily row of date origin + h - 1); naive 'last' = observed on origin - 1, naive 'mean' = mean of
the ``window_days`` days before the origin, both normal with that window's SD.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from cli_helpers import PNG_MAGIC
from scipy import stats

from flowsim import ScenarioError
from flowsim.cli import main
from flowsim.experiment.backtest import BacktestResult, by_horizon, forecast_rows, load_backtest, run_backtest
from flowsim.experiment.backtest_synthetic import SyntheticPlan, write_example
from flowsim.experiment.executors import ProcessExecutor
from flowsim.experiment.scores import crps_ensemble, crps_normal
from flowsim.report.backtest_figures import draw_backtest

ROOT = Path(__file__).resolve().parents[1]
MINIMAL = ROOT / "scenarios" / "minimal.yaml"
SHIPPED = ROOT / "backtest" / "synthetic" / "backtest.yaml"

# ================================================================================== naive baselines by hand


def test_naive_baselines_and_scores_by_hand() -> None:
    """Observed 1..10 on 1-10 June; origin 11 June, window 4: last = 10 (10 June), mean = (7+8+9+10)/4 = 8.5,
    SD of 7..10 = sqrt(5/3); horizon 2 is 12 June (observed 30)."""
    days = [dt.date(2024, 6, d) for d in range(1, 13)]
    observed = pd.Series([*range(1, 11), 20.0, 30.0], index=days, dtype=float)
    ensemble = np.array([[18.0, 28.0], [22.0, 31.0], [20.0, 33.0], [19.0, 25.0]])  # replications x days
    rows = forecast_rows(ensemble, observed, dt.date(2024, 6, 11), [1, 2], window=4)
    r1, r2 = rows
    sd = math.sqrt(5 / 3)
    assert (r1["date"], r1["observed"], r2["date"], r2["observed"]) == ("2024-06-11", 20.0, "2024-06-12", 30.0)
    for r in rows:
        assert r["naive_last"] == 10.0 and r["naive_mean"] == pytest.approx(8.5)
        assert r["naive_sd"] == pytest.approx(sd)
    assert r1["mean"] == pytest.approx(79 / 4) and r2["mean"] == pytest.approx(117 / 4)
    assert r2["crps"] == pytest.approx(crps_ensemble([28, 31, 33, 25], 30.0))
    assert r2["naive_mean_crps"] == pytest.approx(crps_normal(8.5, sd, 30.0))
    assert r2["naive_last_in_pi90"] is False
    table = by_horizon(pd.DataFrame(rows)).set_index("horizon")
    assert table.loc[2, "mae"] == pytest.approx(abs(117 / 4 - 30))
    assert table.loc[2, "naive_last_mae"] == 20.0 and table.loc[1, "naive_mean_bias"] == pytest.approx(-11.5)
    assert table.loc[2, "skill_vs_last"] == pytest.approx(1 - abs(117 / 4 - 30) / 20)


def test_naive_mean_uses_only_days_observed() -> None:
    days = [dt.date(2024, 6, d) for d in (1, 3, 4)]  # 2 June missing
    observed = pd.Series([2.0, 4.0, 6.0], index=days)
    [row] = forecast_rows(np.ones((2, 1)), observed, dt.date(2024, 6, 5), [1], window=4)
    assert row["naive_mean"] == pytest.approx(4.0) and row["naive_last"] == 6.0 and math.isnan(row["observed"])


# ============================================================ recovery of a truth the model made itself

PLAN = SyntheticPlan(base=MINIMAL, first_origin=dt.date(2024, 6, 3), origins=12, spacing_days=7, history_days=14,
                     warmup_days=40, seed=77, replications=20)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, BacktestResult]:
    case = tmp_path_factory.mktemp("synthetic")
    files = write_example(PLAN, case / "example")
    with ProcessExecutor(2) as ex:
        result = run_backtest(files["config"], case / "out", executor=ex, draw=draw_backtest, command=["test"])
    return case, result


def test_horizon_zero_the_snapshot_is_the_observed_state(synthetic) -> None:
    """At each origin the snapshot holds exactly the patients the observed midnight census counts (the day before
    the origin): acute beds occupied and medically fit patients still in them."""
    case, _ = synthetic
    observed = pd.read_csv(case / "example" / "observed.csv", parse_dates=["date"]).set_index("date")
    for path in sorted((case / "example" / "snapshots").glob("*.csv")):
        snap = pd.read_csv(path)
        eve = pd.Timestamp(path.stem) - pd.Timedelta(days=1)
        in_acute = snap["node"].isin(["acute", "assessment", "P0", "P1", "P2", "P3"]).sum()
        fit = snap["node"].isin(["assessment", "P0", "P1", "P2", "P3"]).sum()
        assert in_acute == observed.loc[eve, "acute_occupied_midnight"], path.name
        assert fit == observed.loc[eve, "nctr_midnight"], path.name


def test_backtest_recovers_a_known_truth(synthetic) -> None:
    """The observed series after each origin is one draw of what the back-test simulates from that snapshot, so
    the prediction intervals cover what they claim, less the finite-ensemble shortfall: the linear-interpolated
    5-95% quantiles of m = 20 draws cover a new draw with probability 0.9 (m - 1) / (m + 1) = 0.814.  Each
    horizon's coverage over 12 independent origins must lie in the central 99.9% of Binomial(12, 0.814), i.e. 5
    to 12 (seven horizons: a false alarm under 1%); pooled over horizons, the average of 12 independent origin
    means varies less, so the same range applies.  Power is modest with 12 origins: a forecast covering 40% fails
    a given horizon with probability 0.67 and at least one of seven almost surely; the 50% intervals are checked
    loosely too."""
    _, res = synthetic
    h = res.horizons
    assert len(h) == PLAN.spacing_days and (h["origins"] == PLAN.origins).all()
    lo, hi = stats.binom.interval(0.999, PLAN.origins, 0.9 * 19 / 21)
    for _, r in h.iterrows():
        assert lo <= r["coverage_90"] * PLAN.origins <= hi, r
    pooled = res.forecasts["in_pi90"].astype(float).mean()
    assert lo / PLAN.origins <= pooled <= hi / PLAN.origins, pooled
    assert res.forecasts["in_pi50"].astype(float).mean() == pytest.approx(0.5, abs=0.2)
    # the forecast's spread grows with the horizon, from a state known at the origin
    width = (res.forecasts["pi90_high"] - res.forecasts["pi90_low"]).groupby(res.forecasts["horizon"]).mean()
    assert width.iloc[0] < width.iloc[-1]


def test_backtest_files_and_figure(synthetic) -> None:
    case, res = synthetic
    out = case / "out"
    fc = pd.read_csv(out / "forecasts.csv")
    assert len(fc) == PLAN.origins * PLAN.spacing_days
    table = pd.read_csv(out / "by_horizon.csv")
    for col in ("mae", "bias", "coverage_50", "coverage_90", "crps", "naive_last_mae", "naive_mean_mae",
                "skill_vs_last", "skill_vs_mean"):
        assert col in table.columns, col
    meta = json.loads((out / "backtest.json").read_text(encoding="utf-8"))
    assert meta["seed"] == PLAN.seed + 1 and meta["replications"] == PLAN.replications
    assert len(meta["verdicts"]) == PLAN.spacing_days
    assert (out / "figures" / "backtest.png").read_bytes()[:8] == PNG_MAGIC
    assert res.files["figure_backtest"] == out / "figures" / "backtest.png"


def test_forecasts_are_reproducible_and_seeded(synthetic, tmp_path: Path) -> None:
    """Serial and pooled runs agree exactly; the config's seed differs from the truth's, so forecasts are not
    the truth replayed."""
    case, res = synthetic
    cfg = yaml.safe_load((case / "example" / "backtest.yaml").read_text(encoding="utf-8"))
    cfg["origins"] = cfg["origins"][:2]
    cfg["scenario"] = str(case / "example" / "scenario.yaml")
    cfg["observed"] = str(case / "example" / "observed.csv")
    for o in cfg["origins"]:
        o["snapshot"] = str(case / "example" / o["snapshot"])
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    serial = run_backtest(path, tmp_path / "serial")
    head = res.forecasts[res.forecasts["origin"].isin([o["date"] for o in cfg["origins"]])].reset_index(drop=True)
    pd.testing.assert_frame_equal(serial.forecasts, head, check_exact=True)
    assert (serial.forecasts["mean"] != serial.forecasts["observed"]).any()


# =============================================================================================== bad input


def write_config(tmp_path: Path, **changes: object) -> Path:
    obs = tmp_path / "obs.csv"
    obs.write_text("date,delayed_midnight\n2024-06-01,3\n2024-06-02,4\n", encoding="utf-8")
    snap = tmp_path / "snap.csv"
    snap.write_text("node,cohort,pathway,days\nacute,adults,P1,1.5\n", encoding="utf-8")
    cfg = {"name": "bad", "scenario": str(MINIMAL), "observed": "obs.csv",
           "origins": [{"date": "2024-06-03", "snapshot": "snap.csv"}], "horizons": [1, 2], "replications": 2,
           "seed": 1, **changes}
    path = tmp_path / "bt.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path


def test_small_config_runs_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(tmp_path)
    assert main(["backtest", str(path), "--out", str(tmp_path / "o"), "--workers", "1", "--no-figures"]) == 0
    text = capsys.readouterr().out
    assert "Back-test 'bad' of delayed_midnight: 1 origins x 2 replications (seed 1)" in text
    assert (tmp_path / "o" / "by_horizon.csv").is_file()


@pytest.mark.parametrize(("changes", "words"), [
    ({"origins": [{"date": "2024-06-03", "snapshot": "nope.csv"}]}, ["origins.0.snapshot", "no such file nope.csv"]),
    ({"horizons": [0]}, ["horizons.0"]),
    ({"replications": 1}, ["replications"]),
    ({"series": "no_such"}, ["missing column(s) no_such"]),
    ({"origins": [{"date": "2024-06-03", "snapshot": "snap.csv"}, {"date": "2024-06-03", "snapshot": "snap.csv"}]},
     ["each origin date may appear once"]),
], ids=["snapshot", "horizon", "replications", "series", "duplicate_origin"])
def test_bad_backtest_config(tmp_path: Path, capsys: pytest.CaptureFixture[str], changes: dict[str, object],
                             words: list[str]) -> None:
    path = write_config(tmp_path, **changes)
    with pytest.raises(ScenarioError) as info:
        load_backtest(path)
    assert all(w in str(info.value) for w in words), str(info.value)
    assert main(["backtest", str(path), "--out", str(tmp_path / "o"), "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("flowsim: error: ") and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_bad_observed_row_is_named(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    (tmp_path / "obs.csv").write_text("date,delayed_midnight\n2024-06-01,3\n2024-06-02,lots\n", encoding="utf-8")
    with pytest.raises(ScenarioError, match=r"obs\.csv:3: delayed_midnight: expected a number, got 'lots'"):
        load_backtest(path)


def test_shipped_synthetic_example_loads() -> None:
    """The shipped example (regenerate: flowsim synth-backtest --out backtest/synthetic --overwrite) loads, every
    origin has its snapshot, and the observed series covers every forecast date and the naive window."""
    bt = load_backtest(SHIPPED)
    cfg = bt.config
    assert cfg.seed != 20240603, "the forecasts use another seed than the truth"
    dates = set(bt.observed.index)
    for i, o in enumerate(cfg.origins):
        bt.scenario(o, i)
        need = [o.date + dt.timedelta(days=k) for k in range(-cfg.naive.window_days, max(cfg.horizons))]
        assert set(need) <= dates, o.date

"""History replay (issue 13 point 4): dated demand and capacity from CSV files, observed series laid against the
simulated ones.

Contract (flowsim/scenario/schema.py ``Replay``): on the days the demand file covers, each column's admissions (or
step-up referrals) are exactly its counts, placed within the day by the hour-of-day profile on a stream of their
own; other days keep the model's own arrivals, unchanged; each dated capacity holds from its date until the next
one given for that place (to the end after the last), through the scenario's capacity schedule (disruptions act
on top); bad rows are ``file:line: column: problem``, exit 2, nothing written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from cli_helpers import PNG_MAGIC, flowsim_in_process
from conftest import base_scenario_dict
from scipy import stats

from flowsim import ScenarioError
from flowsim.experiment import simulate
from flowsim.experiment.replay import replay_comparison, replay_summary
from flowsim.experiment.replay_synthetic import CAPACITY, ReplayPlan, write_example
from flowsim.model.model import Model
from flowsim.rng import Streams
from flowsim.scenario import load_scenario, scenario_hash
from flowsim.scenario.schema import OBSERVABLE

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "replay" / "replay.yaml"

# Hand-made demand: young 3, 0, 7 and old 0, 5, 7 admissions on 3-5 January 2024 (model days 2-4).
DEMAND = "date,admissions.young,admissions.old\n2024-01-03,3,0\n2024-01-04,0,5\n2024-01-05,7,7\n"
# Acute beds 4 from 2 January (day 1), 12 from 6 January (day 5); the P1 service 2 from 4 January (day 3).
CAPACITY_CSV = "date,acute,rehab\n2024-01-02,4,\n2024-01-04,,2\n2024-01-06,12,\n"
OBSERVED = "date,admissions,delayed_midnight\n2024-01-01,3,\n2024-01-03,5,1\n"


def _two_cohorts(**top: Any) -> dict[str, Any]:
    data = base_scenario_dict(rate=8.0, beds=10, duration_days=10, warmup_days=5,
                              pathways={"P0": {}, "P1": {"services": {"rehab": {
                                  "capacity": {"base": 3, "periods": [{"start": "2023-12-30", "set": 5}]},
                                  "los": {"dist": "exponential", "mean": 2.0}}}}},
                              pathway_mix={"P0": 0.8, "P1": 0.2}, **top)
    one = data["cohorts"].pop("everyone")
    data["cohorts"] = {"young": {**one, "share": 0.5, "age_band": "18-64"},
                       "old": {**one, "share": 0.5, "age_band": "85+"}}
    return data


def _write(case: Path, data: dict[str, Any], files: dict[str, str], replay: dict[str, str]) -> Path:
    for name, text in files.items():
        (case / name).write_text(text, encoding="utf-8")
    path = case / "scenario.yaml"
    path.write_text(yaml.safe_dump({**data, "replay": replay}, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    case = tmp_path_factory.mktemp("replay")
    return _write(case, _two_cohorts(), {"demand.csv": DEMAND, "capacity.csv": CAPACITY_CSV, "observed.csv": OBSERVED},
                  {"demand_file": "demand.csv", "capacity_file": "capacity.csv", "observed_file": "observed.csv"})


@pytest.fixture(scope="module")
def tiny_run(tiny: Path) -> Any:
    res = simulate(load_scenario(tiny), replications=3, seed=11)
    assert res.checks == []
    return res


# ================================================================================== dated demand


def test_replayed_admissions_are_exactly_the_csv_counts(tiny_run: Any) -> None:
    """3, 5 and 14 admissions on 3-5 January in every replication, by cohort exactly as written (no readmissions
    in this scenario, so daily admissions are the file's counts)."""
    daily = tiny_run.daily()
    for _, part in daily.groupby("replication"):
        by_date = part.set_index(part["date"].astype(str))["admissions"]
        assert [by_date["2024-01-03"], by_date["2024-01-04"], by_date["2024-01-05"]] == [3, 5, 14]
    pts = tiny_run.patients()
    pts = pts[(pts["arrival"] >= 2) & (pts["arrival"] < 5)]
    counts = pts.groupby(["replication", np.floor(pts["arrival"]).rename("day"), "cohort"], observed=False).size()
    for rep in range(3):
        assert [int(counts.get((rep, d, c), 0)) for d in (2.0, 3.0, 4.0) for c in ("young", "old")] == [3, 0, 0, 5,
                                                                                                      7, 7]


def test_days_outside_the_file_keep_the_models_arrivals() -> None:
    """Common random numbers: the model's own arrivals on every other day (the warm-up included) are the very
    instants a run without the replay has; only days 2-4 change."""
    data = _two_cohorts()
    plain = Model(load_scenario_dict(data), Streams(5, 0)).arrivals
    demand = [{"column": "admissions.young", "start": "2024-01-03", "counts": [3, 0, 7]},
              {"column": "admissions.old", "start": "2024-01-03", "counts": [0, 5, 7]}]
    replayed = Model(load_scenario_dict({**data, "replay": {"demand": demand}}), Streams(5, 0)).arrivals
    outside = (np.floor(plain) < 2) | (np.floor(plain) > 4)
    assert np.array_equal(plain[outside], replayed[(np.floor(replayed) < 2) | (np.floor(replayed) > 4)])
    assert np.sum(outside) < len(plain)  # power: the model had arrivals of its own on the replayed days
    assert np.sum((replayed >= 2) & (replayed < 5)) == 22


def load_scenario_dict(data: dict[str, Any]) -> Any:
    from flowsim.scenario.loader import validate_dict

    return validate_dict(data)


def test_replayed_arrivals_follow_the_hour_profile() -> None:
    """2,000 admissions on one day with the afternoon weighted 3:1: the share after noon is 3/4 within a 99.9%
    binomial interval (and the share 1/2 of a flat day is rejected)."""
    data = _two_cohorts()
    data["arrivals"]["hour_profile"] = [1.0] * 12 + [3.0] * 12
    sc = load_scenario_dict({**data, "replay": {"demand": [{"column": "admissions", "start": "2024-01-03",
                                                            "counts": [2000]}]}})
    t = Model(sc, Streams(9, 0)).arrivals
    day = t[(t >= 2) & (t < 3)]
    assert len(day) == 2000
    lo, hi = stats.binom.interval(0.999, 2000, 0.75)
    assert lo <= np.sum(day >= 2.5) <= hi
    assert not lo <= 1000 <= hi


def test_replayed_step_up_referrals_are_exactly_the_counts() -> None:
    data = _two_cohorts(step_up=[{"name": "gp", "target": "rehab", "cohort": "old", "rate_per_day": 0.5}])
    sc = load_scenario_dict({**data, "replay": {"demand": [{"column": "step_up.gp", "start": "2024-01-02",
                                                            "counts": [4, 0, 9]}]}})
    daily = simulate(sc, replications=2, seed=3).daily()
    for _, part in daily.groupby("replication"):
        assert part["step_up_referrals"].iloc[1:4].tolist() == [4, 0, 9]


# ================================================================================== dated capacity


def test_dated_capacity_changes_exactly_on_the_given_dates(tiny_run: Any, tiny: Path) -> None:
    """Acute beds 10 to day 1, then 4 (2 January) to day 5, then 12 (6 January) to the end; the P1 service keeps
    its schedule (3, then 5 from 30 December, day -2) until 4 January (day 3), then 2; an empty cell changes
    nothing."""
    model = Model(load_scenario(tiny), Streams(1, 0))
    raw = model.run()
    times, values = raw.capacity["acute"]
    assert times.tolist() == [-5.0, 1.0, 5.0] and values.tolist() == [10.0, 4.0, 12.0]
    times, values = raw.capacity["rehab"]
    assert times.tolist() == [-5.0, -2.0, 3.0] and values.tolist() == [3.0, 5.0, 2.0]
    beds = tiny_run.daily().groupby("day")["acute_beds"].mean()
    assert beds.tolist() == [10.0, 4.0, 4.0, 4.0, 4.0, 12.0, 12.0, 12.0, 12.0, 12.0]


def test_disruptions_act_on_the_replayed_capacity(tmp_path: Path) -> None:
    """The replay goes through the capacity mechanism: a ward closure of 3 beds on 7-8 January takes 12 to 9."""
    data = _two_cohorts(disruptions=[{"kind": "ward_closure", "target": "acute", "start": "2024-01-07",
                                      "end": "2024-01-08", "beds": 3}])
    path = _write(tmp_path, data, {"capacity.csv": CAPACITY_CSV}, {"capacity_file": "capacity.csv"})
    times, values = Model(load_scenario(path), Streams(1, 0)).run().capacity["acute"]
    assert times.tolist() == [-5.0, 1.0, 5.0, 6.0, 8.0] and values.tolist() == [10.0, 4.0, 12.0, 9.0, 12.0]


# ================================================================================== bad files


@pytest.mark.parametrize(("field", "text", "expected"), [
    ("demand_file", "date,admissions\n2024-01-03,4\n2024-01-05,2\n",
     r"demand.csv:3: date: 2024-01-05 follows 2024-01-03; the demand file needs one row per day"),
    ("demand_file", "date,admissions\n2024-01-03,4\n2024-01-04,2.5\n",
     r"demand.csv:3: admissions: expected a whole number from 0 to 5,000, got '2.5'"),
    ("demand_file", "date,admissions\n2024-01-03,\n", r"demand.csv:2: admissions: expected a whole number"),
    ("demand_file", "date,admissions\n3 Jan 2024,4\n", r"demand.csv:2: date: expected a date written YYYY-MM-DD"),
    ("demand_file", "date,admisions\n2024-01-03,4\n", r"demand.csv:1: unknown columns 'admisions'"),
    ("demand_file", "date,admissions.young,admissions.elderly\n2024-01-03,4,1\n",
     r"demand.csv:1: replay.demand.1.column: 'admissions.elderly': no cohort 'elderly'"),
    ("demand_file", "date,admissions.young\n2024-01-03,4\n",
     r"admissions by cohort need a column for every cohort; missing: admissions.old"),
    ("demand_file", "date,step_up.gp\n2024-01-03,4\n", r"'step_up.gp': no step-up stream 'gp'"),
    ("capacity_file", "date,acute\n2024-01-03,40\n2024-01-02,20\n",
     r"capacity.csv:3: date: 2024-01-02 follows 2024-01-03; dates must increase"),
    ("capacity_file", "date,acute\n2024-01-03,-4\n", r"capacity.csv:2: acute: expected a whole number from 0"),
    ("capacity_file", "date,ward9\n2024-01-03,4\n", r"capacity.csv:1: replay.capacity.0.target: 'ward9' is not a "
                                                    r"place of this scenario"),
    ("capacity_file", "date,long_term_care\n2024-01-03,4\n", r"'long_term_care' is unlimited in the scenario"),
    ("observed_file", "date,delays\n2024-01-03,4\n", r"observed.csv:1: unknown columns 'delays'"),
    ("observed_file", "date,admissions\n2024-01-03,many\n", r"observed.csv:2: admissions: expected a number"),
])
def test_bad_replay_files_are_named_by_file_line_and_column(tmp_path: Path, field: str, text: str,
                                                            expected: str) -> None:
    name = field.replace("_file", ".csv")
    path = _write(tmp_path, _two_cohorts(), {name: text}, {field: name})
    with pytest.raises(ScenarioError, match=expected):
        load_scenario(path)


def test_a_file_that_is_not_a_replay_csv_is_not_quoted(tmp_path: Path) -> None:
    path = _write(tmp_path, _two_cohorts(), {"secret.csv": "token,s3cr3t-value\n"}, {"demand_file": "secret.csv"})
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    assert "is not a replay CSV" in str(err.value) and "s3cr3t" not in str(err.value)
    assert f"{path}:" in str(err.value)  # the scenario line that named it


def test_bad_row_exits_2_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, _two_cohorts(), {"demand.csv": "date,admissions\n2024-01-03,x\n"},
                  {"demand_file": "demand.csv"})
    out = tmp_path / "run"
    proc = flowsim_in_process(capsys, "run", path, "-n", "1", "--out", out)
    assert proc.returncode == 2, proc.stderr
    assert "flowsim: error:" in proc.stderr and "demand.csv:2: admissions: expected a whole number" in proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists()


# ================================================================================== comparison, figure, report


def test_comparison_table_by_hand(tiny_run: Any, tiny: Path) -> None:
    """Observed admissions 3 (1 January) and 5 (3 January, replayed as 3 in every replication): the 3 January row
    has mean 3 and a zero-width band, so 5 is outside it; the days not observed carry no verdict."""
    comp = replay_comparison(tiny_run.daily(), load_scenario(tiny))
    adm = comp[comp["series"] == "admissions"]
    adm = adm.set_index(adm["date"].dt.strftime("%Y-%m-%d"))
    row = adm.loc["2024-01-03"]
    assert (row["observed"], row["mean"], row["p5"], row["p95"], row["in_band90"]) == (5.0, 3.0, 3.0, 3.0, 0.0)
    assert np.isnan(adm.loc["2024-01-02", "observed"]) and np.isnan(adm.loc["2024-01-02", "in_band90"])
    info = replay_summary(tiny_run.daily(), load_scenario(tiny))
    first = info["series"][0]
    assert first["days"] == 2 and first["observed_mean"] == 4.0
    assert first["days_in_band90_pct"] is None  # 3 replications: no band is judged
    assert info["demand"] == {"first": "2024-01-03", "last": "2024-01-05",
                              "columns": ["admissions.young", "admissions.old"]}


def test_observed_series_change_neither_the_run_nor_its_id(tiny: Path) -> None:
    with_obs = load_scenario(tiny)
    without = load_scenario_dict({k: v for k, v in with_obs.model_dump(mode="json").items() if k != "replay"}
                                 | {"replay": with_obs.replay.model_dump(mode="json", exclude={"observed",
                                                                                               "observed_file"})})
    assert scenario_hash(with_obs) == scenario_hash(without)
    plain = load_scenario_dict(_two_cohorts())
    assert "replay" not in json.dumps(plain.model_dump(mode="json", exclude_none=True))
    assert scenario_hash(plain) != scenario_hash(with_obs)


def test_every_observable_series_is_a_daily_column() -> None:
    data = _two_cohorts(step_up=[{"name": "gp", "target": "rehab", "cohort": "old", "rate_per_day": 0.5}])
    daily = simulate(load_scenario_dict(data), replications=1, seed=1).daily()
    assert set(OBSERVABLE) <= set(daily.columns)


def test_run_writes_the_comparison_figure_and_report_section(tiny: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    proc = flowsim_in_process(capsys, "run", tiny, "-n", "20", "--seed", "4", "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert "History replay: demand from 2024-01-03 to 2024-01-05" in proc.stdout
    assert "admissions: observed mean 4.0 over 2 days" in proc.stdout
    comp = pd.read_csv(out / "replay.csv")
    assert set(comp["series"]) == {"admissions", "delayed_midnight"} and (comp["replications"] == 20).all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["replay"]["series"][0]["days_in_band90_pct"] is not None  # 20 replications: the band counts
    assert (out / "figures" / "replay.png").read_bytes().startswith(PNG_MAGIC)
    proc = flowsim_in_process(capsys, "report", out)
    assert proc.returncode == 0, proc.stderr
    page = (out / "report.html").read_text()
    assert "History replay: simulated against observed" in page and 'id="replay"' in page
    assert 'data-series="admissions"' in page and 'data-series="delayed_midnight"' in page


# ================================================================================== the synthetic example


def test_shipped_example_loads_and_covers_its_window() -> None:
    """The shipped example (regenerate: flowsim synth-replay --out replay --overwrite) replays every day of its
    window, with the dated capacity of the generator."""
    sc = load_scenario(SHIPPED)
    assert sc.replay is not None and sc.replay.demand_days() == (sc.simulation.start_date,
                                                                  sc.simulation.end_date - pd.Timedelta(days=1))
    assert {c.target for c in sc.replay.capacity} == set(CAPACITY.columns) - {"date"}
    assert {s.column for s in sc.replay.observed} == {"admissions", "acute_occupied_midnight", "delayed_midnight"}


def test_synthetic_history_is_replayed_admission_for_admission(tmp_path: Path) -> None:
    """A 40-day history: its first admissions by cohort and day are in demand.csv, and a replay on another seed
    admits exactly those (readmissions aside), with the history's referrals and dated beds."""
    base = tmp_path / "base.yaml"
    base.write_text(f"extends: {(ROOT / 'replay' / 'scenario.yaml').as_posix()}\n"
                    "simulation: {start_date: 2023-11-25, duration_days: 40, warmup_days: 20}\n", encoding="utf-8")
    files = write_example(ReplayPlan(base, seed=8), tmp_path / "example")
    demand = pd.read_csv(files["demand"])
    assert len(demand) == 40 and demand.iloc[:, 1:].to_numpy().sum() > 0
    res = simulate(load_scenario(files["config"]), replications=1, seed=9)
    pts = res.patients()
    first = pts[(pts["arrival"] >= 0) & (pts["kind"] == "non_elective") & (pts["readmission_of"] < 0)]
    got = first.groupby([np.floor(first["arrival"]).astype(int).rename("day"), "cohort"], observed=False).size()
    for c in ("younger", "older"):
        assert got.xs(c, level="cohort").reindex(range(40), fill_value=0).tolist() == demand[f"admissions.{c}"].tolist()
    assert res.daily()["step_up_referrals"].tolist() == demand["step_up.gp"].tolist()
    beds = res.daily().set_index(res.daily()["date"].astype(str))["acute_beds"]
    assert (beds["2023-11-30"], beds["2023-12-01"]) == (175.0, 187.0)
    with pytest.raises(Exception, match="already holds a replay example"):
        write_example(ReplayPlan(base, seed=8), tmp_path / "example")

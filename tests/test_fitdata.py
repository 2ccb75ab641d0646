"""``flowsim fit-data`` recovers what generated a synthetic extract, and ``flowsim synth-extract`` is honest.

The recovery tests fit one synthetic extract of 15,000 spells (seed fixed) whose
generating parameters are known (its sidecar JSON), and compare every fitted
value with the truth within a band derived from its sampling error:

- family: the AIC must pick the generating family in each cohort.  The cohorts
  were chosen to be distinguishable at their sizes (about 6,000 / 4,950 / 4,050
  spells): for each wrong family W, the AIC margin 2 sum log f_true/f_W has mean
  2 n KL(true, best W) and s.d. 2 sqrt(n) s (s the s.d. of the per-spell
  log-likelihood ratio).  Computed on 400,000 draws, margin/s.d. (a z score) is
  at least 10.6 for the lognormal (CV 1.14, nearest rival gamma), 6.6 for the
  gamma (shape 4, nearest rival lognormal) and 5.9 for the Weibull (shape 2,
  nearest rival gamma): the chance of a wrong pick is below 2e-9 per cohort.
- parameters: within 4 standard errors, the standard errors from the expected
  Fisher information of the generating distribution (closed forms below), by
  the delta method for mean and sd;
- shares and pathway mixes: within 4 binomial standard errors;
- month, weekday and hour factors and the daily rate: within 4 Poisson standard
  errors of the expected count behind each factor (sd of a factor f estimated
  from a count with mean m is about f / sqrt(m); normalising a set to mean 1
  only removes variance).

All bands are two-sided 4-sigma: about 6e-5 false alarms per comparison, some
90 comparisons, so a correct fit fails with probability well under 1%, and
since the seed is fixed the outcome is deterministic.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from cli_helpers import PNG_MAGIC
from scipy import special, stats

from flowsim.calibration.fitdata import (
    CANDIDATES,
    ExtractError,
    FitResult,
    check_against,
    fit_extract,
    fit_los,
    merge_fragment,
    parse_columns,
)
from flowsim.calibration.synthetic import SYNTHETIC_LABEL, write_extract
from flowsim.cli import build_parser
from flowsim.errors import FlowsimError, ScenarioError
from flowsim.model.calendar import hourly_rates
from flowsim.report.fitdata_figures import write_figures
from flowsim.scenario.distributions import REGISTRY
from flowsim.scenario.loader import _deep_merge, load_raw, load_scenario, validate_dict
from flowsim.scenario.schema import MONTHS, PATHWAYS, Arrivals

ROOT = Path(__file__).resolve().parents[1]
MINIMAL = ROOT / "scenarios" / "minimal.yaml"
ROTHERHAM = ROOT / "scenarios" / "rotherham_2016.yaml"
N_SPELLS = 15_000
SEED = 20240611
Z = 4.0


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("synth") / "synthetic_extract.csv"
    csv_path, json_path = write_extract(out, spells=N_SPELLS, seed=SEED)
    return csv_path, json.loads(json_path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def fitted(synth: tuple[Path, dict[str, Any]]) -> FitResult:
    return fit_extract(synth[0], today=dt.date(2024, 6, 11))


@pytest.fixture(scope="module")
def fragment_path(fitted: FitResult, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fragment") / "fitted.yaml"
    path.write_text(fitted.fragment_yaml(), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small valid extract (400 spells over 60 days) for the bad-input tests to corrupt."""
    out = tmp_path_factory.mktemp("small") / "small.csv"
    write_extract(out, spells=400, days=60, seed=5)
    return out


def _rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


def _write(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows([header, *rows])
    return path


def _corrupt(src: Path, dst: Path, line: int, column: str, value: str) -> Path:
    """Copy ``src`` with the cell at CSV ``line`` (header = line 1) and ``column`` set to ``value``."""
    header, rows = _rows(src)
    rows[line - 2][header.index(column)] = value
    return _write(dst, header, rows)


def _cli() -> argparse.ArgumentParser:
    """The real ``flowsim`` parser (the fit-data and synth-extract sub-parsers live in the CLI layer)."""
    return build_parser()


def _run(*argv: str | Path) -> int:
    args = _cli().parse_args([str(a) for a in argv])
    return int(args.func(args))


# --------------------------------------------------------------------------- standard errors from theory
def _fisher(family: str, p: tuple[float, float]) -> np.ndarray:
    """Expected Fisher information per observation, in scipy's (shape, scale) parameters."""
    if family == "lognormal":  # in (mu, sigma): diag(1/s^2, 2/s^2); scale = exp(mu)
        s, scale = p
        jac = np.array([[0.0, 1.0 / scale], [1.0, 0.0]])  # d(mu, sigma)/d(s, scale)
        return jac.T @ np.diag([1 / s**2, 2 / s**2]) @ jac
    if family == "gamma":
        k, theta = p
        return np.array([[special.polygamma(1, k), 1 / theta], [1 / theta, k / theta**2]])
    if family == "weibull":
        k, lam = p
        g = np.euler_gamma
        return np.array([[((1 - g) ** 2 + math.pi**2 / 6) / k**2, -(1 - g) / lam], [-(1 - g) / lam, k**2 / lam**2]])
    raise AssertionError(family)


def _scipy_params(spec: dict[str, Any]) -> tuple[str, tuple[float, float]]:
    if spec["dist"] == "lognormal":
        s = math.sqrt(math.log1p((spec["sd"] / spec["mean"]) ** 2))
        return "lognormal", (s, spec["mean"] * math.exp(-s * s / 2))
    if spec["dist"] == "gamma":
        k = (spec["mean"] / spec["sd"]) ** 2
        return "gamma", (k, spec["mean"] / k)
    return "weibull", (spec["shape"], spec["scale"])


def _mean_sd(family: str, p: tuple[float, float]) -> np.ndarray:
    fam = {"lognormal": stats.lognorm, "gamma": stats.gamma, "weibull": stats.weibull_min}[family]
    return np.array(fam.stats(p[0], loc=0, scale=p[1], moments="mv"), dtype=float) ** [1.0, 0.5]


def _se(family: str, p: tuple[float, float], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Standard errors of (shape, scale) and, by the delta method, of (mean, sd) of the MLE from n spells."""
    cov = np.linalg.inv(_fisher(family, p)) / n
    jac = np.empty((2, 2))
    for j in range(2):
        h = 1e-6 * p[j]
        up, dn = list(p), list(p)
        up[j] += h
        dn[j] -= h
        jac[:, j] = (_mean_sd(family, tuple(up)) - _mean_sd(family, tuple(dn))) / (2 * h)
    return np.sqrt(np.diag(cov)), np.sqrt(np.diag(jac @ cov @ jac.T))


def test_fisher_information_matches_the_score_variance() -> None:
    """The closed forms above, checked against the variance of the numerical score on a large sample."""
    rng = np.random.default_rng(1)
    for family, p in (("lognormal", (0.9, 2.5)), ("gamma", (4.0, 1.75)), ("weibull", (2.0, 10.0))):
        fam = {"lognormal": stats.lognorm, "gamma": stats.gamma, "weibull": stats.weibull_min}[family]
        x = fam.rvs(p[0], loc=0, scale=p[1], size=400_000, random_state=rng)
        score = []
        for j in range(2):
            up, dn = list(p), list(p)
            up[j] += 1e-5
            dn[j] -= 1e-5
            score.append((fam.logpdf(x, up[0], 0, up[1]) - fam.logpdf(x, dn[0], 0, dn[1])) / 2e-5)
        emp = np.cov(np.vstack(score))
        theory = _fisher(family, p)
        assert np.allclose(emp, theory, rtol=0.03, atol=0.02 * np.abs(theory).max()), (family, emp, theory)


# --------------------------------------------------------------------------- recovery
def test_synthetic_cohort_sizes_support_the_power_argument(fitted: FitResult) -> None:
    assert fitted.extract.n == N_SPELLS
    assert all(len(c.los) >= 3000 for c in fitted.cohorts), [(c.name, len(c.los)) for c in fitted.cohorts]


def test_aic_picks_the_generating_family(fitted: FitResult, synth: tuple[Path, dict[str, Any]]) -> None:
    truth = synth[1]["parameters"]["cohorts"]
    assert [c.name for c in fitted.cohorts] == list(truth)
    for c in fitted.cohorts:
        aics = [(x.family, x.aic) for x in c.candidates]
        assert c.winner.family == truth[c.name]["acute_los"]["dist"], (c.name, aics)
        assert [x.aic for x in c.candidates] == sorted(x.aic for x in c.candidates)
        assert {x.family for x in c.candidates} == set(CANDIDATES)


def test_fitted_los_parameters_within_four_standard_errors(fitted: FitResult,
                                                           synth: tuple[Path, dict[str, Any]]) -> None:
    truth = synth[1]["parameters"]["cohorts"]
    frag = fitted.fragment()["cohorts"]
    for c in fitted.cohorts:
        true_spec = truth[c.name]["acute_los"]
        family, p = _scipy_params(true_spec)
        se_params, se_moments = _se(family, p, len(c.los))
        got = frag[c.name]["acute_los"]
        assert got["dist"] == true_spec["dist"]
        true_ms = _mean_sd(family, p)
        got_ms = _mean_sd(family, _scipy_params(got)[1])
        for what, g, t, se in (("mean", got_ms[0], true_ms[0], se_moments[0]), ("sd", got_ms[1], true_ms[1],
                                                                                   se_moments[1])):
            assert abs(g - t) <= Z * se, f"{c.name} {what}: fitted {g:.4f}, true {t:.4f}, se {se:.4f}"
        if family == "weibull":
            for what, se in zip(("shape", "scale"), se_params, strict=True):
                assert abs(got[what] - true_spec[what]) <= Z * se, (c.name, what, got[what], true_spec[what], se)
        # the bands are tight enough to matter: a 6% error in the mean would be caught
        assert Z * se_moments[0] < 0.06 * true_ms[0]


def test_shares_and_pathway_mix_within_binomial_bands(fitted: FitResult, synth: tuple[Path, dict[str, Any]]) -> None:
    truth = synth[1]["parameters"]["cohorts"]
    n = fitted.extract.n
    frag = fitted.fragment()["cohorts"]
    assert abs(sum(c["share"] for c in frag.values()) - 1.0) < 1e-9
    for c in fitted.cohorts:
        p = truth[c.name]["share"]
        assert abs(frag[c.name]["share"] - p) <= Z * math.sqrt(p * (1 - p) / n), (c.name, frag[c.name]["share"], p)
        assert abs(frag[c.name]["share"] - c.n / n) <= 1e-6  # what is written is the observed fraction
        mix = frag[c.name]["pathway_mix"]
        assert abs(sum(mix.values()) - 1.0) < 1e-9
        m = sum(c.pathway_counts.values())
        for pw in PATHWAYS:
            q = truth[c.name]["pathway_mix"][pw]
            assert abs(mix.get(pw, 0.0) - q) <= Z * math.sqrt(q * (1 - q) / m), (c.name, pw, mix.get(pw), q)


def _expected_counts(meta: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Expected admissions per month, weekday and hour under the generating parameters (and their total)."""
    truth = meta["parameters"]
    arrivals = Arrivals(**{k: truth[k] for k in ("rate_per_day", "month_factors", "weekday_factors", "hour_profile")})
    start = dt.date.fromisoformat(meta["start_date"])
    hour_t, rate = hourly_rates(arrivals, start, 0.0, float(meta["days"]))
    per_hour = rate / 24.0
    day = np.floor(hour_t + 1e-9).astype(int)
    dates = np.datetime64(meta["start_date"], "D") + day
    month = dates.astype("datetime64[M]").astype(int) % 12
    weekday = (dates.astype(int) + 3) % 7
    hour = np.round((hour_t - day) * 24).astype(int) % 24
    return (np.bincount(month, per_hour, 12), np.bincount(weekday, per_hour, 7), np.bincount(hour, per_hour, 24),
            float(per_hour.sum()))


def test_arrival_factors_within_poisson_bands(fitted: FitResult, synth: tuple[Path, dict[str, Any]]) -> None:
    meta = synth[1]
    truth = meta["parameters"]
    e_month, e_week, e_hour, total = _expected_counts(meta)
    assert total == pytest.approx(N_SPELLS, rel=1e-9)  # --spells fixes the count; the rate is set to match
    arr = fitted.fragment()["arrivals"]
    for i, m in enumerate(MONTHS):
        t = truth["month_factors"][m]
        assert abs(arr["month_factors"][m] - t) <= Z * t / math.sqrt(e_month[i]), (m, arr["month_factors"][m], t)
    for i in range(7):
        t = truth["weekday_factors"][i]
        assert abs(arr["weekday_factors"][i] - t) <= Z * t / math.sqrt(e_week[i]), (i, arr["weekday_factors"][i], t)
    for h in range(24):
        t = truth["hour_profile"][h]
        assert abs(arr["hour_profile"][h] - t) <= Z * t / math.sqrt(e_hour[h]), (h, arr["hour_profile"][h], t)
    r = truth["rate_per_day"]
    assert abs(arr["rate_per_day"] - r) <= Z * r / math.sqrt(N_SPELLS), (arr["rate_per_day"], r)
    # the factor sets are normalised as the model normalises them: mean 1
    for key in ("weekday_factors", "hour_profile"):
        assert np.mean(arr[key]) == pytest.approx(1.0, abs=2e-4)
    assert np.mean(list(arr["month_factors"].values())) == pytest.approx(1.0, abs=2e-4)
    # the bands resolve the seasonality: January is distinguishable from August
    assert arr["month_factors"]["jan"] - arr["month_factors"]["aug"] > 0.1


def test_delay_table_matches_the_generating_means(fitted: FitResult, synth: tuple[Path, dict[str, Any]]) -> None:
    truth = synth[1]["parameters"]["delay_to_discharge"]
    table = fitted.delays.set_index("pathway")
    assert list(table.index) == [*PATHWAYS, "all"]
    assert table.loc["all", "spells"] == N_SPELLS
    for pw in PATHWAYS:
        mean, n = truth[pw]["mean"], table.loc[pw, "spells"]
        # exponential: sd = mean; whole-minute recording changes each delay by under a minute
        assert abs(table.loc[pw, "mean_days"] - mean) <= Z * mean / math.sqrt(n) + 1 / 1440, (pw, table.loc[pw])


# --------------------------------------------------------------------------- the candidates themselves
def test_fit_los_loglik_aic_and_syntax_are_consistent() -> None:
    x = stats.gamma.rvs(2.5, scale=2.0, size=800, random_state=np.random.default_rng(3))
    cands = fit_los(x)
    assert [c.aic for c in cands] == sorted(c.aic for c in cands)
    for c in cands:
        ll = float(np.sum(c.frozen().logpdf(x)))
        assert c.loglik == pytest.approx(ll, rel=1e-10)
        assert c.aic == pytest.approx(2 * c.k - 2 * ll, rel=1e-12)
        assert c.k == (1 if c.family == "exponential" else 2)
        dist = REGISTRY[c.spec["dist"]].model_validate(c.spec)  # the flowsim syntax means the fitted distribution
        grid = np.quantile(x, [0.05, 0.25, 0.5, 0.75, 0.95])
        assert np.allclose(dist.cdf(grid), c.frozen().cdf(grid), atol=1e-4), c.family
        assert dist.mean == pytest.approx(c.mean, rel=1e-4)
    expo = next(c for c in cands if c.family == "exponential")
    assert expo.loglik == pytest.approx(-len(x) * math.log(x.mean()) - len(x))
    gamma = next(c for c in cands if c.family == "gamma")
    assert gamma.loglik >= expo.loglik  # nested: the gamma with shape 1 is the exponential


def test_fit_los_rejects_non_positive_durations() -> None:
    with pytest.raises(ValueError, match="positive"):
        fit_los(np.array([1.0, 0.0, 2.0]))


# --------------------------------------------------------------------------- the fragment
def test_fragment_validates_merged_into_minimal(fragment_path: Path, fitted: FitResult) -> None:
    base, _ = load_raw(MINIMAL)
    frag, _ = load_raw(fragment_path)
    assert frag == fitted.fragment()  # the YAML (comments and all) says what the fit says
    sc = validate_dict(merge_fragment(base, frag), str(MINIMAL))
    assert list(sc.cohorts) == [c.name for c in fitted.cohorts]
    for c in fitted.cohorts:
        assert sc.cohorts[c.name].acute_los.dist == c.winner.family
        assert sc.cohorts[c.name].age_band == {"age_18_64": "18-64", "age_65_84": "65-84",
                                               "age_85_plus": "85+"}[c.name]
    assert sc.arrivals is not None
    assert sc.arrivals.rate_per_day == frag["arrivals"]["rate_per_day"]
    assert sc.arrivals.weekday_factors == frag["arrivals"]["weekday_factors"]
    # the loader's own deep merge gives the same scenario once the old cohorts are taken out
    plain = _deep_merge({k: v for k, v in base.items() if k != "cohorts"}, frag)
    assert validate_dict(plain, str(MINIMAL)) == sc
    # without taking them out, the old cohort's share is added to the fitted ones: that must not validate
    with pytest.raises(ScenarioError, match="sum to 1"):
        validate_dict(_deep_merge(base, frag), str(MINIMAL))


def test_fragment_validates_against_rotherham_and_runs(fragment_path: Path) -> None:
    from flowsim.experiment import simulate

    sc = check_against(fragment_path, ROTHERHAM)
    assert sc.arrivals is not None and sc.arrivals.annual_growth == pytest.approx(0.007)  # kept from the base
    short = sc.model_copy(update={"simulation": sc.simulation.model_copy(update={"duration_days": 20,
                                                                                   "warmup_days": 0})})
    result = simulate(short, replications=1, seed=1)
    assert result.checks == []
    assert result.summary().loc["admissions_per_day", "mean"] > 0
    # the fragment's cohorts replace the base's: the patients are drawn from them and from nowhere else
    base = load_scenario(ROTHERHAM)
    drawn = set(result.patients()["cohort"].astype(str))
    assert drawn <= set(sc.cohorts) and set(sc.cohorts) != set(base.cohorts)
    assert len(drawn) >= min(2, len(sc.cohorts))


def test_fragment_comments_give_provenance(fragment_path: Path, fitted: FitResult) -> None:
    text = fragment_path.read_text(encoding="utf-8")
    assert "FITTED from synthetic_extract.csv on 2024-06-11" in text
    assert f"{N_SPELLS} spells" in text
    assert "SYNTHETIC - not real patient data" in text
    lines = text.splitlines()
    keys = ("rate_per_day:", "month_factors:", "weekday_factors:", "hour_profile:", "share:", "acute_los:",
            "pathway_mix:")
    tagged = 0
    for i, line in enumerate(lines):
        if line.strip().startswith(keys):  # the value's last line (flow collections may wrap) names its source
            end = line if line.count("[") + line.count("{") == line.count("]") + line.count("}") else lines[i + 1]
            assert end.endswith("   # FITTED from synthetic_extract.csv"), (line, end)
            tagged += 1
    assert tagged == 4 + 4 * len(fitted.cohorts) - len(fitted.cohorts)
    for c in fitted.cohorts:
        assert f"{c.n} of {N_SPELLS} spells" in text
        for cand in c.candidates:  # the AIC of every candidate, to one decimal
            assert f"{cand.family:<11} AIC {cand.aic:11.1f}" in text
    assert "DESCRIPTIVE ONLY" in text


def test_figures_and_tables(fitted: FitResult, tmp_path: Path) -> None:
    written = write_figures(fitted, tmp_path / "fig")
    names = {p.name for p in written}
    assert names == {"los_aic.csv", "arrival_factors.csv", "delay_by_pathway.csv", "arrivals.png",
                     *(f"los_{c.name}.png" for c in fitted.cohorts)}
    for p in written:
        if p.suffix == ".png":
            assert p.read_bytes()[:8] == PNG_MAGIC and p.stat().st_size > 10_000
    aic = pd.read_csv(tmp_path / "fig" / "los_aic.csv")
    assert len(aic) == 4 * len(fitted.cohorts)
    for cohort, grp in aic.groupby("cohort"):
        assert grp["winner"].sum() == 1, cohort
        assert grp.loc[grp["winner"], "delta_aic"].iloc[0] == 0.0
        assert (grp["delta_aic"] >= 0).all()
        assert grp["akaike_weight"].sum() == pytest.approx(1.0)
        assert np.allclose(grp["aic"], 2 * grp["k"] - 2 * grp["loglik"])
    assert not list((tmp_path / "fig").glob(".*tmp"))  # atomic writes leave no temporary files


# --------------------------------------------------------------------------- the synthetic extract
def test_synthetic_extract_is_labelled_and_deterministic(tmp_path: Path) -> None:
    a = tmp_path / "a" / "synthetic_extract.csv"
    b = tmp_path / "b" / "synthetic_extract.csv"
    assert _run("synth-extract", "--out", a, "--spells", "500", "--seed", "9") == 0
    assert _run("synth-extract", "--out", b, "--spells", "500", "--seed", "9") == 0
    assert a.read_bytes() == b.read_bytes()
    assert a.with_suffix(".json").read_bytes() == b.with_suffix(".json").read_bytes()
    c = tmp_path / "c.csv"
    _run("synth-extract", "--out", c, "--spells", "500", "--seed", "10")
    assert c.read_bytes() != a.read_bytes()
    frame = pd.read_csv(a)
    assert len(frame) == 500
    assert (frame["source"] == SYNTHETIC_LABEL).all()
    meta = json.loads(a.with_suffix(".json").read_text(encoding="utf-8"))
    assert meta["label"] == SYNTHETIC_LABEL and meta["seed"] == 9 and meta["spells"] == 500
    assert {"month_factors", "weekday_factors", "hour_profile", "cohorts", "delay_to_discharge"} <= set(
        meta["parameters"])
    adm = pd.to_datetime(frame["admission_time"])
    assert adm.is_monotonic_increasing
    assert (pd.to_datetime(frame["medically_fit_time"]) >= adm).all()
    assert (pd.to_datetime(frame["discharge_time"]) >= pd.to_datetime(frame["medically_fit_time"])).all()


def test_synthetic_days_mode_is_poisson_at_the_rate(tmp_path: Path) -> None:
    out = tmp_path / "d.csv"
    assert _run("synth-extract", "--out", out, "--days", "120", "--seed", "4", "--start", "2024-01-01") == 0
    meta = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    frame = pd.read_csv(out)
    assert meta["days"] == 120 and meta["start_date"] == "2024-01-01" and meta["spells"] == len(frame)
    truth = meta["parameters"]
    assert truth["rate_per_day"] == 41.0  # the default rate, not derived from the count
    expected = _expected_counts(meta)[3]  # the intensity integrated over the 120 days (winter: above 41 a day)
    assert abs(len(frame) - expected) <= Z * math.sqrt(expected), (len(frame), expected)
    assert pd.to_datetime(frame["admission_time"]).min() >= pd.Timestamp("2024-01-01")
    assert pd.to_datetime(frame["admission_time"]).max() < pd.Timestamp("2024-04-30")


def test_synth_cli_rejects_both_spells_and_days(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        _cli().parse_args(["synth-extract", "--spells", "10", "--days", "30"])
    assert exc.value.code == 2
    assert "not allowed with" in capsys.readouterr().err


# --------------------------------------------------------------------------- the CLI handler
def test_fit_data_cli_handler(synth: tuple[Path, dict[str, Any]], tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    out, figs = tmp_path / "frag.yaml", tmp_path / "figs"
    rc = _run("fit-data", synth[0], "--out", out, "--figures", figs, "--check", MINIMAL)
    assert rc == 0
    printed = capsys.readouterr().out
    assert "SYNTHETIC" in printed and "validates" in printed and "age_85_plus" in printed
    assert out.exists() and (figs / "los_aic.csv").exists() and (figs / "los_age_65_84.png").exists()
    frag, _ = load_raw(out)
    assert set(frag["cohorts"]) == {"age_18_64", "age_65_84", "age_85_plus"}


def test_fit_data_default_out_is_beside_the_extract(small: Path, tmp_path: Path) -> None:
    src = tmp_path / "my_extract.csv"
    src.write_bytes(small.read_bytes())
    assert _run("fit-data", src) == 0
    assert (tmp_path / "my_extract_fitted.yaml").exists()


def test_column_mapping_and_group_by(small: Path, tmp_path: Path) -> None:
    header, rows = _rows(small)
    renamed = ["id", "src", "AdmDT", "MFFD", "DischDT", "Route", "AgeGroup"]
    assert header == ["spell_id", "source", "admission_time", "medically_fit_time", "discharge_time", "pathway",
                      "age_band"]
    mapped = _write(tmp_path / "mapped.csv", renamed, rows)
    cols = parse_columns("admission=AdmDT,medically_fit=MFFD, discharge=DischDT,pathway=Route,age_band=AgeGroup")
    a = fit_extract(small, today=dt.date(2024, 1, 1)).fragment()
    b = fit_extract(mapped, cols, today=dt.date(2024, 1, 1)).fragment()
    assert a == b
    one = fit_extract(mapped, cols, group_by="none").fragment()
    assert list(one["cohorts"]) == ["all"] and one["cohorts"]["all"]["share"] == 1.0
    by_route = fit_extract(mapped, cols, group_by="Route").fragment()
    assert set(by_route["cohorts"]) <= {"route_p0", "route_p1", "route_p2", "route_p3"}


def test_partial_year_and_day_first_dates(small: Path, tmp_path: Path) -> None:
    header, rows = _rows(small)
    for r in rows:
        for j in (2, 3, 4):
            d = dt.datetime.strptime(r[j], "%Y-%m-%d %H:%M")
            r[j] = d.strftime("%d/%m/%Y %H:%M")
    uk = _write(tmp_path / "uk.csv", header, rows)
    res = fit_extract(uk)
    assert res.fragment() == fit_extract(small).fragment()
    frag = res.fragment()
    assert set(frag["arrivals"]["month_factors"]) == {"apr", "may"}  # 60 days from 1 April
    assert any("does not cover" in n for n in res.notes)
    base, _ = load_raw(MINIMAL)
    validate_dict(merge_fragment(base, frag))


def test_dates_without_times_and_zero_stays(small: Path, tmp_path: Path) -> None:
    header, rows = _rows(small)
    for r in rows:
        for j in (2, 3, 4):
            r[j] = r[j][:10]
    dated = _write(tmp_path / "dates.csv", header, rows)
    res = fit_extract(dated, min_los=0.5)
    frag = res.fragment()
    assert "hour_profile" not in frag["arrivals"]
    same_day = sum(r[2] == r[3] for r in rows)
    assert same_day > 0
    assert sum(c.n_floored for c in res.cohorts) == same_day
    assert min(float(c.los.min()) for c in res.cohorts) == 0.5
    assert any("min_los" in n for n in res.notes) and any("hour_profile" in n for n in res.notes)
    assert "raised to it before fitting" in res.fragment_yaml()
    pngs = [p for p in write_figures(res, tmp_path / "figs") if p.suffix == ".png"]  # no hour panel to draw
    assert len(pngs) == len(res.cohorts) + 1 and all(p.read_bytes()[:8] == PNG_MAGIC for p in pngs)
    base, _ = load_raw(MINIMAL)
    validate_dict(merge_fragment(base, frag))


def test_blank_fit_discharge_and_pathway_are_allowed_and_counted(small: Path, tmp_path: Path) -> None:
    header, rows = _rows(small)
    rows[0][3] = rows[0][4] = rows[0][5] = ""  # still in hospital: not yet fit, no pathway
    rows[1][4] = ""  # fit, waiting: no discharge yet
    res = fit_extract(_write(tmp_path / "open.csv", header, rows))
    assert sum(len(c.los) for c in res.cohorts) == len(rows) - 1
    assert sum(sum(c.pathway_counts.values()) for c in res.cohorts) == len(rows) - 1
    assert res.delays.set_index("pathway").loc["all", "spells"] == len(rows) - 2
    assert any("no medically fit time" in n for n in res.notes)


# --------------------------------------------------------------------------- bad input
def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ExtractError, match=r"nope\.csv: file not found"):
        fit_extract(tmp_path / "nope.csv")


def test_missing_column_names_it_and_the_header(small: Path, tmp_path: Path) -> None:
    header, rows = _rows(small)
    header[header.index("medically_fit_time")] = "fit"
    bad = _write(tmp_path / "cols.csv", header, rows)
    with pytest.raises(ExtractError) as exc:
        fit_extract(bad)
    msg = str(exc.value)
    assert f"{bad}:1: missing column 'medically_fit_time'" in msg and "fit, discharge_time" in msg
    assert "--columns medically_fit=" in msg
    with pytest.raises(ExtractError, match=r"no column 'mfft' \(given by --columns medically_fit=mfft\)"):
        fit_extract(bad, {"medically_fit": "mfft"})
    assert fit_extract(bad, {"medically_fit": "fit"}).extract.n == len(rows)


@pytest.mark.parametrize(("line", "column", "value", "words"), [
    (5, "admission_time", "2023-13-45 10:00", ["column 'admission_time' (admission)", "cannot read '2023-13-45 10:00'",
                                               "allowed: a date-time like 2024-01-31 14:05"]),
    (6, "admission_time", "", ["column 'admission_time' (admission): blank"]),
    (7, "medically_fit_time", "yesterday", ["column 'medically_fit_time' (medically_fit)", "cannot read 'yesterday'"]),
    (4, "pathway", "P7", ["column 'pathway' (pathway): 'P7' is not a discharge pathway", "allowed: P0, P1, P2, P3"]),
    (9, "age_band", " ", ["column 'age_band' (cohort grouping): blank"]),
], ids=["bad-date", "blank-admission", "bad-fit-date", "bad-pathway", "blank-group"])
def test_bad_cell_names_line_and_column(small: Path, tmp_path: Path, line: int, column: str, value: str,
                                        words: list[str]) -> None:
    bad = _corrupt(small, tmp_path / "bad.csv", line, column, value)
    with pytest.raises(ExtractError) as exc:
        fit_extract(bad)
    problems = exc.value.problems
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{bad}:{line}: ")
    for w in words:
        assert w in problems[0], problems[0]


def test_times_out_of_order(small: Path, tmp_path: Path) -> None:
    header, rows = _rows(small)
    a, f, d = header.index("admission_time"), header.index("medically_fit_time"), header.index("discharge_time")
    rows[6][f] = "2000-01-01 00:00"  # line 8: fit before admission
    adm = dt.datetime.strptime(rows[10][a], "%Y-%m-%d %H:%M")
    rows[10][f] = f"{adm + dt.timedelta(hours=1):%Y-%m-%d %H:%M}"  # line 12: fit an hour after admission,
    rows[10][d] = rows[10][a]  # but discharged at admission, before being fit
    bad = _write(tmp_path / "order.csv", header, rows)
    with pytest.raises(ExtractError) as exc:
        fit_extract(bad)
    msg = str(exc.value)
    assert (f"{bad}:8: column 'medically_fit_time' (medically_fit): 2000-01-01 00:00 is before the admission time"
            in msg)
    assert f"{bad}:12: column 'discharge_time' (discharge)" in msg and "before the medically fit time" in msg
    assert "allowed: discharge at or after medically fit" in msg


def test_line_numbers_count_quoted_newlines_and_blank_lines(small: Path, tmp_path: Path) -> None:
    header, rows = _rows(small)
    rows[0][1] = "first line\nsecond line"  # spans CSV lines 2-3
    rows[3][header.index("pathway")] = "Pathway 9"  # the 4th record starts on line 6
    bad = _write(tmp_path / "multi.csv", header, rows)
    with pytest.raises(ExtractError, match=rf"{bad.name}:6: column 'pathway'"):
        fit_extract(bad)
    text = bad.read_text(encoding="utf-8").replace("\n", "\n\n", 1)  # a blank line after the header
    bad.write_text(text, encoding="utf-8")
    with pytest.raises(ExtractError, match=rf"{bad.name}:7: column 'pathway'"):
        fit_extract(bad)


def test_ragged_row_empty_file_and_header_only(small: Path, tmp_path: Path) -> None:
    header, rows = _rows(small)
    rows[2].append("extra")
    ragged = _write(tmp_path / "ragged.csv", header, rows)
    with pytest.raises(ExtractError, match=r"ragged\.csv:4: 8 fields but the header has 7"):
        fit_extract(ragged)
    empty = tmp_path / "empty.csv"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(ExtractError, match="the file is empty"):
        fit_extract(empty)
    only = _write(tmp_path / "only.csv", header, [])
    with pytest.raises(ExtractError, match="no spells after the header"):
        fit_extract(only)


def test_too_few_spells_in_a_cohort(small: Path, tmp_path: Path) -> None:
    header, rows = _rows(small)
    rows[0][header.index("age_band")] = "100+"
    bad = _write(tmp_path / "tiny.csv", header, rows)
    with pytest.raises(ExtractError, match=r"cohort 'age_100_plus' \(age_band = '100\+'\): 1 spells"):
        fit_extract(bad)


@pytest.mark.parametrize(("text", "words"), [
    ("admission", "expected FIELD=COLUMN"),
    ("arrival=adm", "unknown field 'arrival'; allowed: admission, medically_fit"),
    ("admission=", "expected FIELD=COLUMN"),
])
def test_bad_column_mapping(text: str, words: str) -> None:
    with pytest.raises(ExtractError, match=words):
        parse_columns(text)


def test_errors_are_flowsim_errors_for_the_cli(tmp_path: Path) -> None:
    with pytest.raises(FlowsimError):
        _run("fit-data", tmp_path / "missing.csv")
    with pytest.raises(SystemExit):
        _cli().parse_args(["fit-data", "x.csv", "--min-los", "-1"])


def test_check_against_a_scenario_that_names_old_cohorts(fragment_path: Path, tmp_path: Path) -> None:
    data, _ = load_raw(MINIMAL)
    data["pathways"]["P1"]["services"]["reablement"]["cohorts"] = ["adults"]
    scenario = tmp_path / "named.yaml"
    scenario.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    with pytest.raises(ScenarioError, match=r"merged into .*named\.yaml.*cohort 'adults' is not defined"):
        check_against(fragment_path, scenario)


# --------------------------------------------------------------------------- the real command line
def test_python_m_flowsim_fit_data(tmp_path: Path, small: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "MPLBACKEND": "Agg"}

    def flowsim(*args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "flowsim", *map(str, args)], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120, check=False)

    helped = flowsim("fit-data", "--help")
    assert helped.returncode == 0 and "--columns" in helped.stdout and "--figures" in helped.stdout
    ok = flowsim("fit-data", small, "--out", tmp_path / "f.yaml")
    assert ok.returncode == 0, ok.stderr
    bad = _corrupt(small, tmp_path / "bad.csv", 3, "discharge_time", "31/02/2023 10:00")
    proc = flowsim("fit-data", bad)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"flowsim: error: {bad}:3: column 'discharge_time'" in proc.stderr

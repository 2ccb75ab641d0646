"""Bad and hostile input (issue 15): every invalid input ends with exit 2 and one ``flowsim: error:`` line
per problem naming file, line, field, bad value and what is allowed; no traceback; nothing written.

Each finding of the issue has a test here that fails on the code before the fix: duplicate keys, hostile
paths (/dev/zero, a FIFO, a directory), size, alias and depth bombs, non-UTF-8 files, files echoed in
errors, YAML booleans read as numbers, infinities and NaN, overflowing distribution parameters, negative
capacity changes, overlapping periods, unreachable escalation actions, blank names, absurd magnitudes,
start-from-today counts above capacity.  The property test at the end generates invalid scenarios and
checks the whole contract on each.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from cli_helpers import ROOT, cli_env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowsim import ScenarioError, load_scenario
from flowsim.cli import main
from flowsim.model.calendar import capacity_steps, value_at
from flowsim.scenario.loader import load_raw
from flowsim.scenario.safeyaml import MAX_DEPTH, MAX_FILE_BYTES, parse_yaml
from flowsim.scenario.schema import Period, Schedule

SCENARIOS = ROOT / "scenarios"
SMALL = ROOT / "tests" / "scenarios" / "small.yaml"
SMALL_TEXT = SMALL.read_text(encoding="utf-8")


def cli(*args: str | Path) -> tuple[int, str, str]:
    """``flowsim ARGS`` in this process (cheap enough for a property test): exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def user_error(code: int, err: str) -> list[str]:
    """The contract's shape: exit 2, only ``flowsim: error:`` lines, no traceback; returns the lines."""
    assert code == 2, err
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert lines and all(ln.startswith("flowsim: error: ") for ln in lines), err
    return lines


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


# ============================================================================ loading


def test_duplicate_keys_are_rejected_with_both_lines(tmp_path: Path) -> None:
    """The issue's case: a second ``arrivals:`` block silently replaced the first (1,995 admissions a day)."""
    text = SMALL_TEXT + "\narrivals:\n  rate_per_day: 1995\n"
    path = write(tmp_path, "dup.yaml", text)
    first = SMALL_TEXT.splitlines().index("arrivals:") + 1
    second = len(text.splitlines()) - 1
    [line] = user_error(*cli("validate", path)[::2])
    assert f"{path}:{second}: arrivals:" in line and f"lines {first} and {second}" in line


def test_nested_duplicate_keys_are_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, "dup.yaml", SMALL_TEXT.replace("  beds: 100", "  beds: 100\n  beds: 90"))
    [line] = user_error(*cli("validate", path)[::2])
    assert "acute.beds" in line and "written twice" in line


def test_merge_keys_may_override(tmp_path: Path) -> None:
    """``<<: *base`` then a key of its own is YAML's override, not a duplicate."""
    text = "x_defaults: &h {start: 8, end: 18}\n" + SMALL_TEXT
    text = text.replace("discharge:\n  hours: {start: 8, end: 20}", "discharge:\n  hours: {<<: *h, end: 20}")
    data, _ = parse_yaml(text, "t")
    assert data["discharge"]["hours"] == {"start": 8, "end": 20}


@pytest.mark.parametrize("where", ["scenario", "extends"])
def test_device_files_are_refused_without_reading(tmp_path: Path, where: str) -> None:
    """``extends: /dev/zero`` reached 5.4 GB in 3.5 s."""
    target = Path("/dev/zero")
    path = target if where == "scenario" else write(tmp_path, "z.yaml", "extends: /dev/zero\n")
    t = time.monotonic()
    [line] = user_error(*cli("validate", path)[::2])
    assert time.monotonic() - t < 10
    assert "/dev/zero" in line and "not a regular file" in line


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    [line] = user_error(*cli("validate", fifo)[::2])
    assert "not a regular file" in line


def test_directory_and_missing_files_are_user_errors(tmp_path: Path) -> None:
    [line] = user_error(*cli("validate", tmp_path)[::2])
    assert "is a directory" in line
    [line] = user_error(*cli("validate", write(tmp_path, "e.yaml", "extends: nothere.yaml\n"))[::2])
    assert "e.yaml:1: extends: " in line and "nothere.yaml: file not found" in line


def test_oversized_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    with open(path, "wb") as fh:
        fh.truncate(MAX_FILE_BYTES + 1)  # sparse: costs no disk
    [line] = user_error(*cli("validate", path)[::2])
    assert "bytes" in line and f"{MAX_FILE_BYTES:,}" in line


BOMB = """a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def test_alias_bomb_is_refused_in_bounded_memory(tmp_path: Path) -> None:
    """A 1 KB "billion laughs" file: the old line map followed aliases (6 GB).  Run in a process capped at
    1.5 GB of address space, so the old behaviour fails the test instead of the machine."""
    path = write(tmp_path, "bomb.yaml", BOMB)
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (1_500_000_000, 1_500_000_000)); "
            "from flowsim.cli import main; sys.exit(main(['validate', sys.argv[1]]))")
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120,
                          env=cli_env(), check=False)
    [line] = user_error(proc.returncode, proc.stderr)
    assert "alias" in line and "bomb.yaml:" in line


def test_alias_in_set_value_is_bounded() -> None:
    code, _, err = cli("validate", SMALL, "--set", "description=" + "{" + BOMB.replace("\n", ", ")[:-2] + "}")
    assert "alias" in user_error(code, err)[0]


def test_self_referencing_alias_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "loop.yaml", SMALL_TEXT + "assumptions: &x [*x]\n")
    [line] = user_error(*cli("validate", path)[::2])
    assert "refers to the mapping or list that contains it" in line


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 1000])
def test_deep_nesting_is_refused(tmp_path: Path, levels: int) -> None:
    """1,000 nested brackets raised RecursionError."""
    path = write(tmp_path, "deep.yaml", "name: " + "[" * levels + "]" * levels + "\n")
    [line] = user_error(*cli("validate", path)[::2])
    assert f"deeper than {MAX_DEPTH}" in line


def test_alias_chains_count_towards_depth(tmp_path: Path) -> None:
    chain = ["a0: &a0 [1]"] + [f"a{i}: &a{i} [*a{i - 1}]" for i in range(1, MAX_DEPTH + 5)]
    path = write(tmp_path, "chain.yaml", "\n".join(chain) + "\n")
    [line] = user_error(*cli("validate", path)[::2])
    assert "aliases are expanded" in line


def test_non_text_keys_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "keys.yaml", SMALL_TEXT + "? [a, b]\n: 1\n")
    [line] = user_error(*cli("validate", path)[::2])
    assert "plain text" in line


@pytest.mark.parametrize("where", ["scenario", "extends", "snapshot", "sweep"])
def test_non_utf8_files_are_a_clean_error(tmp_path: Path, where: str) -> None:
    bad = write(tmp_path, "latin1.yaml", "name: caf\xe9\n".encode("latin-1") + SMALL_TEXT.split("\n", 4)[4].encode())
    if where == "scenario":
        args: tuple[str | Path, ...] = ("validate", bad)
    elif where == "extends":
        args = ("validate", write(tmp_path, "child.yaml", "extends: latin1.yaml\n"))
    elif where == "snapshot":
        write(tmp_path, "snap.csv", b"node,days\nacute,caf\xe9\n")
        args = ("validate", SMALL, "--set", f"initial_state.snapshot_file={tmp_path / 'snap.csv'}",
                "--set", "simulation.warmup_days=0")
    else:
        args = ("sweep", write(tmp_path, "sweep.yaml", b"name: caf\xe9\nbase: x.yaml\n"), "--out", tmp_path / "o")
    [line] = user_error(*cli(*args)[::2])
    assert "not UTF-8" in line and "0xe9" in line


SECRET = "hunter2-SECRET-7f3a"


def test_extends_of_a_non_scenario_never_echoes_it(tmp_path: Path) -> None:
    """``extends: secret.json`` printed the file's token and password."""
    write(tmp_path, "secret.json", f'{{"token": "{SECRET}", "password": "{SECRET}"}}\n')
    path = write(tmp_path, "x.yaml", "extends: secret.json\n")
    code, out, err = cli("validate", path)
    [line] = user_error(code, err)
    assert SECRET not in err + out and "password" not in err
    assert "x.yaml:1: extends: " in line and "secret.json is not a flowsim scenario" in line
    code, out, err = cli("validate", tmp_path / "secret.json")
    assert SECRET not in err + out and "not a flowsim scenario" in user_error(code, err)[0]


def test_unknown_fields_never_echo_their_values() -> None:
    code, _, err = cli("validate", SMALL, "--set", f"api_token={SECRET}")
    [line] = user_error(code, err)
    assert "api_token: unknown field" in line and SECRET not in err


def test_snapshot_file_never_echoes_a_foreign_file(tmp_path: Path) -> None:
    """``snapshot_file: /etc/passwd`` printed its first line."""
    passwd = write(tmp_path, "passwd", f"root:x:0:0:{SECRET}:/root:/bin/bash\n")
    code, _, err = cli("validate", SMALL, "--set", f"initial_state.snapshot_file={passwd}",
                       "--set", "simulation.warmup_days=0")
    [line] = user_error(code, err)
    assert SECRET not in err and "is not a snapshot CSV" in line and "initial_state.snapshot_file" in line


def test_snapshot_rows_are_reported_at_their_csv_line(tmp_path: Path) -> None:
    write(tmp_path, "snap.csv", "node,days\nacute,1\nnowhere,2\n")
    code, _, err = cli("validate", SMALL, "--set", f"initial_state.snapshot_file={tmp_path / 'snap.csv'}",
                       "--set", "simulation.warmup_days=0")
    [line] = user_error(code, err)
    assert f"{tmp_path / 'snap.csv'}:3: initial_state.patients.1.node" in line and "'nowhere'" in line


# ============================================================================ strict values


def problems(*overrides: str, path: Path = SMALL) -> list[str]:
    with pytest.raises(ScenarioError) as exc:
        load_scenario(path, list(overrides))
    for p in exc.value.problems:
        assert "\n" not in p and "Traceback" not in p
    return exc.value.problems


@pytest.mark.parametrize("field", ["simulation.duration_days", "acute.beds", "arrivals.rate_per_day",
                                   "costs.acute_delay_per_day", "discharge.weekend_rate", "assessment.staff",
                                   "cohorts.adults.acute_los.mean", "discharge.hours.start"])
def test_yaml_booleans_are_never_numbers(field: str) -> None:
    """``duration_days: true`` was a one-day run, ``beds: true`` one bed."""
    [p] = problems(f"{field}=true")
    assert f"--set: {field}: allowed" in p and "(got True)" in p


@pytest.mark.parametrize(("field", "value"), [
    ("costs.acute_delay_per_day", ".inf"), ("costs.non_elective_admission", ".nan"),
    ("pathways.P1.services.reablement.unit_cost_per_day", ".inf"), ("arrivals.rate_per_day", ".inf"),
    ("cohorts.adults.acute_los.mean", ".inf"), ("cohorts.adults.share", ".nan"),
    ("pathways.P2.readmission.within_days", ".inf")])
def test_infinity_and_nan_are_rejected(field: str, value: str) -> None:
    """``.inf`` costs made total_cost null."""
    [p] = problems(f"{field}={value}")
    assert field in p and "infinity and NaN are not allowed" in p


def test_text_numbers_name_the_yaml_trap() -> None:
    [p] = problems("arrivals.rate_per_day=1e9")  # YAML 1.1 reads 1e9 as text
    assert "YAML reads this as text" in p


@pytest.mark.parametrize(("dist", "word"), [
    ("{dist: lognormal, mean: 1.0e-300, sd: 5}", "sd / mean"),
    ("{dist: gamma, mean: 5, sd: 1.0e-9}", "sd / mean"),
    ("{dist: weibull, shape: 0.001, scale: 1}", "Weibull shape"),
    ("{dist: weibull, shape: 0.06, scale: 10}", "mean of"),
])
def test_distributions_whose_moments_overflow_are_rejected(dist: str, word: str) -> None:
    [p] = problems(f"cohorts.adults.acute_los={dist}")
    assert "cohorts.adults.acute_los" in p and word in p and "allowed" in p


def test_negative_add_below_zero_is_reported() -> None:
    """The model clamped 10 - 40 to 0 without a word."""
    [p] = problems("pathways.P3.services.nursing_d2a.capacity={base: 10, periods: [{start: 2024-07-01, add: -40}]}")
    assert "capacity.periods.0.add" in p and "below zero" in p and "from -10" in p


@pytest.mark.parametrize("periods", [
    "[{start: 2024-06-01, end: 2024-07-31, add: 4}, {start: 2024-07-15, set: 2}]",
    "[{start: 2023-12-01, end: 2024-03-31, add: 4, annual: true}, {start: 2024-05-10, end: 2025-01-10, add: 1}]",
])
def test_overlapping_periods_are_rejected(periods: str) -> None:
    [p] = problems(f"pathways.P3.services.nursing_d2a.capacity={{base: 10, periods: {periods}}}",
                   "simulation.duration_days=365")
    assert "capacity.periods.1: overlaps period 0" in p


def test_touching_annual_periods_are_fine() -> None:
    sc = load_scenario(SMALL, ["simulation.duration_days=800", "pathways.P3.services.nursing_d2a.capacity={base: 10, "
                               "periods: [{start: 2023-12-01, end: 2024-03-31, add: 4, annual: true}, "
                               "{start: 2024-04-01, end: 2024-11-30, add: 1, annual: true}]}"])
    assert sc.pathways["P3"].services["nursing_d2a"].capacity.value_on(sc.simulation.start_date) == 11  # type: ignore[union-attr]


def test_unreachable_escalation_actions_are_reported() -> None:
    winter = SCENARIOS / "rotherham_winter_2016.yaml"
    found = problems("escalation.levels={}", path=winter)
    assert found and all("can never start" in p and "rules: none" in p for p in found)
    data, _ = load_raw(winter)
    n_actions = sum(1 for a in data["escalation"]["actions"] if "level" in a)  # community actions follow `when`
    assert len(found) == n_actions
    found = problems("escalation.levels={2: {any: [{metric: ed_boarding, above: 10}]}}", path=winter)
    assert found and all("reaches OPEL 3 or above (rules: 2)" in p or "reaches OPEL 4" in p for p in found)


@pytest.mark.parametrize("field", ["name", "pathways.P1.label", "cohorts.adults.label"])
def test_blank_names_are_rejected(field: str) -> None:
    [p] = problems(f"{field}='   '")
    assert field in p and "blank" in p


@pytest.mark.parametrize(("override", "words"), [
    ("arrivals.rate_per_day=1000000000", ["at most 5,000"]),
    ("simulation.start_date=9999-01-01", ["2199-12-31"]),
    ("simulation.start_date=1900-01-15", ["warm-up would start on 1899-12-16"]),
    ("acute.beds=10000000", ["100,000"]),
    ("population_18plus=100000000000", ["100,000,000"]),
    ("arrivals.rate_per_day=4000", ["stays a replication", "1,000,000"]),
])
def test_absurd_magnitudes_fail_validation_not_a_worker(override: str, words: list[str]) -> None:
    """1e9 arrivals a day and dates in 9999 passed validation and crashed inside a worker."""
    extra = ["simulation.duration_days=3000"] if "4000" in override else []
    [p] = problems(override, *extra)
    for w in words:
        assert w in p, p


def test_pathway_only_streams_may_not_add_up_beyond_one_process() -> None:
    """Found by fuzzing: each stream within range, their sum (one arrival process) beyond it."""
    [p] = problems("demand.0.rate_per_day=4999.0", path=SCENARIOS / "rotherham_pathway_only.yaml")
    assert "demand: the demand streams add up to" in p


def test_seed_beyond_int64_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    """``--seed 2**70`` left a half-written run directory after an OverflowError."""
    code, _, err = cli("run", SMALL, "--seed", str(2**70), "--out", tmp_path / "out")
    assert code == 2 and "--seed" in err and "2**63 - 1" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


# ============================================================================ start from today


def test_start_above_capacity_is_rejected() -> None:
    """5,000 patients in 555 beds ran at 397% occupancy."""
    today = SCENARIOS / "rotherham_from_today.yaml"
    [p] = problems("initial_state.acute_occupied=5000", path=today)
    assert "initial_state.acute_occupied" in p and "more than the 555 acute beds in force on 2016-11-01" in p
    [p] = problems("initial_state.services.oakwood=500", path=today)
    assert "initial_state.services.oakwood" in p and "places" in p


def test_start_above_capacity_counts_ward_closures() -> None:
    [p] = problems("simulation.warmup_days=0", "initial_state.acute_occupied=90",
                   "disruptions=[{kind: ward_closure, target: acute, beds: 20, start: 2024-03-01, end: 2024-04-30}]")
    assert "more than the 80 acute beds" in p


def test_allowed_overflow_runs_reports_and_is_checked() -> None:
    """With the explicit setting the overflow runs (nobody admitted until below capacity), is reported, and the
    invariant checks cover the snapshot patients: the same records fail them when the setting is taken away."""
    from flowsim.model.model import Model
    from flowsim.results.checks import check_records
    from flowsim.results.records import build_records
    from flowsim.rng import Streams

    sc = load_scenario(SCENARIOS / "rotherham_from_today.yaml",
                       ["simulation.duration_days=5", "initial_state.acute_occupied=700",
                        "initial_state.allow_over_capacity=true"])
    [(where, count, cap, unit)] = sc.start_overflow()
    assert where == ("initial_state", "acute_occupied") and count > cap == 555 and unit == "acute beds"
    raw = Model(sc, Streams(3, 0)).run()
    rec = build_records(raw)
    assert check_records(rec, raw, sc) == []
    admitted = rec["bed_start"][~rec["initial"] & ~np.isnan(rec["bed_start"])]
    occupied_at = (rec["bed_start"][:, None] <= admitted) & ~(rec["acute_end"][:, None] <= admitted)
    assert (occupied_at.sum(axis=0) <= cap).all()  # every new admission found the ward back within capacity
    strict = sc.model_copy(update={"initial_state": sc.initial_state.model_copy(  # type: ignore[union-attr]
        update={"allow_over_capacity": False})})
    assert [p for p in check_records(rec, raw, strict) if "snapshot patients in acute beds" in p]


# ============================================================================ capacity on a day


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(base=st.integers(0, 50), starts=st.lists(st.integers(0, 700), min_size=1, max_size=3, unique=True),
       lengths=st.lists(st.integers(0, 200), min_size=3, max_size=3), annual=st.lists(st.booleans(), min_size=3,
                                                                                      max_size=3),
       day=st.integers(-30, 900))
def test_schedule_value_on_matches_the_model(base: int, starts: list[int], lengths: list[int], annual: list[bool],
                                             day: int) -> None:
    """Validation reads a capacity on the start date with ``Schedule.value_on``; the model expands schedules
    with ``capacity_steps``.  On schedules whose periods do not overlap (the only valid ones) they agree."""
    import datetime as dt

    origin = dt.date(2024, 1, 1)
    periods = []
    for i, s in enumerate(sorted(starts)):
        end = s + min(lengths[i], 300 if annual[i] else 10_000)
        periods.append(Period(start=origin + dt.timedelta(days=s), end=origin + dt.timedelta(days=end),
                              add=i + 1, annual=annual[i]))
    sched = Schedule(base=base, periods=periods)
    from flowsim.scenario.schema import period_windows

    first, last = origin - dt.timedelta(days=60), origin + dt.timedelta(days=1000)
    spans = sorted(w for p in periods for w in period_windows(p, first, last))
    if any(b[0] <= a[1] for a, b in itertools.pairwise(spans)):
        return  # overlapping: refused by validation
    steps = capacity_steps(sched, origin, -60.0, 1000.0)
    assert sched.value_on(origin + dt.timedelta(days=day)) == value_at(steps, day + 0.5)


# ============================================================================ the contract, generated


def _bases(tmp: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Valid scenarios covering every section (escalation, electives, costs, disruptions, pathway-only,
    start from today), each resolved into one file the test can mutate."""
    out: list[tuple[Path, dict[str, Any]]] = [(SMALL, yaml.safe_load(SMALL_TEXT))]
    for name in ("rotherham_winter_2016.yaml", "rotherham_pathway_only.yaml", "rotherham_from_today.yaml"):
        data, _ = load_raw(SCENARIOS / name)
        if "initial_state" in data and "snapshot_file" in data["initial_state"]:
            data["initial_state"]["snapshot_file"] = str(SCENARIOS / data["initial_state"]["snapshot_file"])
        path = tmp / name
        path.write_text(_dump(data), encoding="utf-8")
        load_scenario(path)  # valid as written
        out.append((path, data))
    return out


def _leaves(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Any]]:
    if isinstance(node, dict):
        return [leaf for k, v in node.items() for leaf in _leaves(v, (*path, k))]
    if isinstance(node, list):
        return [leaf for i, v in enumerate(node) for leaf in _leaves(v, (*path, i))]
    return [(path, node)]


BAD_NUMBERS = [True, False, "12", math.inf, -math.inf, math.nan, -1e13, 1e13]
BAD_DATES = ["2024-02-30", "9999-01-01", 17, True]


def _mutations(data: dict[str, Any]) -> list[tuple[tuple[Any, ...], Any]]:
    """Every (leaf path, bad value) that makes the scenario invalid by itself."""
    out: list[tuple[tuple[Any, ...], Any]] = []
    for path, value in _leaves(data):
        if path[0] in ("assumptions", "description") or path[-1] == "note":
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out += [(path, bad) for bad in BAD_NUMBERS]
        elif path[-1] in ("start_date", "start", "end") and isinstance(value, str) and value[:2] in ("19", "20"):
            out += [(path, bad) for bad in BAD_DATES]
        elif path == ("name",):
            out.append((path, "  "))
    return out


class _Plain(yaml.SafeDumper):
    """Writes shared mappings out in full (no anchors), so every field has a line of its own."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _dump(data: dict[str, Any]) -> str:
    return yaml.dump(data, Dumper=_Plain, sort_keys=False)


def _set(data: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


@pytest.fixture(scope="module")
def bases(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, dict[str, Any], list[Any]]]:
    tmp = tmp_path_factory.mktemp("bases")
    return [(p, d, _mutations(d)) for p, d in _bases(tmp)]


@settings(max_examples=80, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_invalid_scenarios_keep_the_contract(bases: list[tuple[Path, dict[str, Any], list[Any]]],
                                             tmp_path: Path, data: st.DataObject) -> None:
    """One to three fields made invalid (a boolean, text, infinity, NaN, an absurd magnitude or a missing
    value where a number is meant; an impossible or out-of-range date; a blank name): exit 2, one
    ``flowsim: error:`` line per problem naming the file and the line the field is on, the field, the bad
    value and what is allowed; no traceback; ``flowsim run`` writes nothing."""
    _, original, mutations = data.draw(st.sampled_from(bases))
    picks = data.draw(st.lists(st.sampled_from(mutations), min_size=1, max_size=3,
                               unique_by=lambda m: m[0]))
    mutated = yaml.safe_load(_dump(original))  # a tree without shared parts: one change, one place
    for path, bad in picks:
        _set(mutated, path, bad)
    target = tmp_path / f"mutated-{abs(hash(repr(picks))) % 10**8}.yaml"
    text = _dump(mutated)
    target.write_text(text, encoding="utf-8")
    _, lines = parse_yaml(text, str(target))
    code, out, err = cli("validate", target)
    found = user_error(code, err)
    for path, bad in picks:
        dotted = ".".join(map(str, path))
        hits = [ln for ln in found if f": {dotted}: " in ln]
        assert hits, f"{dotted} = {bad!r} not reported: {found}"
        line = hits[0]
        assert f"{target}:{lines[path][1]}: {dotted}: " in line, line
        assert "allowed" in line, line
        assert f"(got {bad!r})" in line, line
    run_out = tmp_path / f"run-{target.stem}"
    code, out, err = cli("run", target, "--out", run_out, "-n", "2")
    user_error(code, err)
    assert not run_out.exists() and not out

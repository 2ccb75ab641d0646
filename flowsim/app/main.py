"""The Streamlit script of ``flowsim app``: scenario and levers, runs with progress, comparison, downloads.

Streamlit runs this file top to bottom on every interaction; what must survive a rerun (kept runs, the job in
progress, the last comparison) lives in ``st.session_state``.  Every number shown comes from the API and the
report's code (``flowsim.app.session``, ``views``, ``downloads``): the page only lays it out.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import streamlit as st

from flowsim.app import downloads, session, views
from flowsim.app.server import OUTPUTS_ENV
from flowsim.errors import FlowsimError
from flowsim.rundir import slug
from flowsim.scenario.levers import GROUPS, Lever, changed_settings
from flowsim.scenario.provenance import describe_overrides
from flowsim.scenario.schema import Scenario

ROOT = Path(os.environ.get(OUTPUTS_ENV) or Path("outputs") / "app")
DEFAULT_SCENARIO = "rotherham_2016"
DEFAULT_REPLICATIONS = 20
DEFAULT_SEED = 12345


def _state() -> Any:
    state = st.session_state
    for key, value in (("runs", {}), ("jobs", []), ("comparison", None), ("errors", []), ("selected", None)):
        if key not in state:
            state[key] = value
    return state


# ------------------------------------------------------------------------------------------------ scenario
def choose_scenario() -> tuple[Path | None, dict[str, str]]:
    """The scenario file the planner chose (shipped, or uploaded and kept under outputs), and upload names."""
    st.sidebar.header("Scenario")
    source = st.sidebar.radio("Scenario source", ["Shipped with flowsim", "Upload YAML"], key="source")
    if source == "Shipped with flowsim":
        shipped = session.shipped_scenarios()
        names = list(shipped)
        if not names:
            st.sidebar.error("No shipped scenarios found (scenarios/ beside the package or in this folder).")
            return None, {}
        pick = st.sidebar.selectbox("Scenario file", names, key="shipped",
                                    index=names.index(DEFAULT_SCENARIO) if DEFAULT_SCENARIO in names else 0)
        return shipped[str(pick)], {}
    upload = st.sidebar.file_uploader("Scenario YAML", type=["yaml", "yml"], key="upload")
    if upload is None:
        st.info("Upload a scenario file (YAML) to start; `extends:` must name files by an absolute path.")
        return None, {}
    path = session.save_upload(upload.name, upload.getvalue(), ROOT)
    return path, {str(path): upload.name}


@st.cache_resource(show_spinner=False, max_entries=32)
def _open(path: str, stamp: float) -> tuple[Scenario, list[Lever]] | list[str]:
    """The scenario and its levers, or the CLI's error lines (cached per file and modification time)."""
    try:
        return session.open_scenario(Path(path))
    except FlowsimError as exc:
        return session.error_lines(exc)


def load(path: Path, shown_as: dict[str, str]) -> tuple[Scenario, list[Lever]] | None:
    """Load the chosen file; its validation errors are shown as the CLI writes them."""
    opened = _open(str(path), path.stat().st_mtime if path.exists() else 0.0)
    if isinstance(opened, list):
        lines = []
        for line in opened:
            for stored, name in shown_as.items():
                line = line.replace(stored, name)
            lines.append(line)
        st.error("The scenario is not valid; each problem on its own line (file:line: field: what is allowed):")
        st.code("\n".join(lines), language=None)
        return None
    return opened


def _control(lever: Lever, key: str) -> Any:
    label = f"{lever.label} ({lever.unit})"
    note = lever.note or "no comment in the file"
    help_text = f"{note} — {lever.where}" if lever.where else note
    if lever.kind == "bool":
        value: Any = st.toggle(label, value=bool(lever.value), key=key, help=help_text)
    elif lever.kind == "int":
        value = st.number_input(label, min_value=int(lever.low or 0), max_value=int(lever.high or 0),
                                value=int(lever.value), step=int(lever.step), key=key, help=help_text)
    else:
        digits = max(0, len(f"{lever.step:g}".partition(".")[2]))
        value = st.number_input(label, min_value=float(lever.low or 0), max_value=float(lever.high or 0),
                                value=float(lever.value), step=float(lever.step), format=f"%.{digits}f", key=key,
                                help=help_text)
    st.caption(f"{note}" + (f"  ·  `{Path(lever.where).name}`" if lever.where else ""))
    return value


def lever_controls(levers: list[Lever], prefix: str) -> list[str]:
    """Every lever as a labelled control, by group; returns the ``--set`` settings of those moved."""
    values: dict[str, Any] = {}
    for group in GROUPS:
        members = [lv for lv in levers if lv.group == group]
        if not members:
            continue
        with st.expander(f"{group} ({len(members)})", expanded=group == "Beds and capacity"):
            for lever in members:
                values[lever.path] = _control(lever, f"{prefix}|{lever.path}")
    return changed_settings(levers, values)


def window_settings(scenario: Scenario, prefix: str) -> list[str]:
    """Days reported and warm-up days (shorter runs while exploring), as settings when changed."""
    sim = scenario.simulation
    days = st.sidebar.number_input("Days reported", 1, 3660, sim.duration_days, key=f"{prefix}|days")
    warm = st.sidebar.number_input("Warm-up days", 0, 3660, sim.warmup_days, key=f"{prefix}|warmup")
    out = []
    if days != sim.duration_days:
        out.append(f"simulation.duration_days={int(days)}")
    if warm != sim.warmup_days:
        out.append(f"simulation.warmup_days={int(warm)}")
    return out


# ------------------------------------------------------------------------------------------------ runs
@st.fragment(run_every=1.0)
def job_status() -> None:
    """Progress of the runs under way (this fragment alone refreshes every second, so the page stays usable)."""
    state = _state()
    for job in list(state.jobs):
        if not job.finished:
            st.progress(job.done / max(job.total, 1), text=f"Running '{job.name}': {job.done} of {job.total} "
                                                           "replications done")
            continue
        state.jobs.remove(job)
        if job.run is not None:
            state.runs[job.run.name] = job.run
            state.selected = job.run.name
            state.errors = []
        else:
            state.errors = job.errors
        st.rerun(scope="app")


def _unique_name(name: str, taken: Any) -> str:
    name = name.strip() or "run"
    if name not in taken:
        return name
    k = 2
    while f"{name} ({k})" in taken:
        k += 1
    return f"{name} ({k})"


def run_controls(path: Path, settings: list[str], shown_as: dict[str, str], scenario: Scenario) -> None:
    """Name, replications and seed, and the Run button (the run starts in the background)."""
    state = _state()
    c1, c2, c3 = st.columns([3, 1, 1])
    name = c1.text_input("Run name", value=f"{scenario.name} - run {len(state.runs) + 1}",
                         key=f"run_name|{scenario.name}|{len(state.runs)}")
    reps = c2.number_input("Replications", 1, 1000, DEFAULT_REPLICATIONS, key="replications")
    seed = c3.number_input("Seed", 0, 2**31 - 1, DEFAULT_SEED, key="seed")
    if settings:
        st.markdown("**Changed from the file for this run:** " + "; ".join(f"`{s}`" for s in settings))
    if st.button("Run", type="primary", disabled=bool(state.jobs), key="run"):
        taken = set(state.runs) | {j.name for j in state.jobs}
        job = session.start_run(path, settings, replications=int(reps), seed=int(seed),
                                name=_unique_name(name, taken), root=ROOT, shown_as=shown_as)
        state.jobs.append(job)
        st.rerun()


def show_run(run: session.AppRun) -> None:
    """A kept run: what changed, the headline with standards, the DTOC trajectory, occupancy and queues."""
    src = views.run_source(run.directory)
    st.subheader(run.name)
    st.caption(f"{run.replications} replications, seed {run.seed}; run directory `{run.directory}`")
    for change in describe_overrides(src.scenario):
        st.markdown(f"- {change}")
    st.markdown("**Headline measures** (average over replications, 95% CI; verdicts only when the whole interval "
                "is on one side of the standard)")
    st.table(views.headline_frame(src).set_index("Measure"))
    png = views.dtoc_png(src)
    if png is not None:
        st.image(png, caption="Delayed transfers of care each day against the Better Care Fund target")
    for file, caption in views.RUN_FIGURES.items():
        if file in src.figures:
            st.image(src.figures[file], caption=caption)
    st.markdown("**Delayed days by NHS quarter**")
    quarters = views.quarters_frame(src)
    st.table(quarters.set_index("NHS quarter") if not quarters.empty else quarters)


def runs_tab(path: Path, settings: list[str], shown_as: dict[str, str], scenario: Scenario) -> None:
    """Run controls, progress, errors as the CLI writes them, and the kept run chosen."""
    state = _state()
    run_controls(path, settings, shown_as, scenario)
    job_status()
    if state.errors:
        st.error("The run did not start or did not finish:")
        st.code("\n".join(state.errors), language=None)
    if not state.runs:
        st.info("No runs yet: move the levers, then Run. Runs are kept for this session.")
        return
    names = list(state.runs)
    pick = st.selectbox("Kept run", names, index=names.index(state.selected) if state.selected in names else 0,
                        key=f"kept_run|{len(names)}")  # a new run is shown first
    state.selected = pick
    show_run(state.runs[pick])


# ------------------------------------------------------------------------------------------------ compare
def compare_tab() -> None:
    """Choose a baseline among the kept runs and pair the others with it, as ``flowsim compare`` does."""
    state = _state()
    names = list(state.runs)
    if len(names) < 2:
        st.info("Keep at least two runs (same seed and replications) to compare them.")
        return
    base = st.selectbox("Baseline", names, key="baseline")
    options = st.multiselect("Options", [n for n in names if n != base], default=[n for n in names if n != base],
                             key="options")
    if st.button("Compare with the baseline", disabled=not options, key="compare"):
        try:
            with st.spinner("Pairing the runs and writing the comparison..."):
                state.comparison = session.compare_kept(state.runs[base], [state.runs[o] for o in options], ROOT)
        except FlowsimError as exc:
            state.comparison = None
            st.error("\n\n".join(session.error_lines(exc)))
    if state.comparison is not None:
        show_comparison(state.comparison)


def show_comparison(app_cmp: session.AppComparison) -> None:
    """Paired differences, value for money with the rule's words, and the national standards."""
    cmp = app_cmp.comparison
    st.subheader(f"Options against '{cmp.names[0]}'")
    n = len(cmp.baseline.replications)
    st.caption(f"{n} paired replications each, seed {cmp.baseline.seed} (common random numbers); "
               f"directory `{app_cmp.directory}`")
    st.markdown("**Paired differences** (option minus baseline, 95% CI)")
    st.table(views.differences_frame(cmp).set_index("Option"))
    st.markdown("**Value for money** (words follow the 95% intervals)")
    st.table(views.economics_frame(cmp).set_index("Option"))
    for line in views.decision_text(cmp):
        st.markdown(f"- {line}")
    st.markdown("**National standards**")
    st.table(views.standards_frame(cmp).set_index("Scenario"))


# ------------------------------------------------------------------------------------------------ downloads
@st.cache_data(show_spinner=False, max_entries=64)
def _bytes(kind: str, directory: str) -> bytes:
    d = Path(directory)
    if kind == "xlsx":
        return downloads.workbook(d)
    if kind == "html":
        return downloads.report_html(d).encode("utf-8")
    return downloads.directory_zip(d)


def _directory_downloads(directory: Path, stem: str, what: str) -> None:
    c1, c2, c3 = st.columns(3)
    c1.download_button(f"Excel workbook ({what})", _bytes("xlsx", str(directory)), f"{stem}.xlsx",
                       mime="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", on_click="ignore")
    c2.download_button(f"Board report, HTML ({what})", _bytes("html", str(directory)), f"{stem}.html",
                       mime="text/html", on_click="ignore")
    c3.download_button(f"Directory as zip ({what})", _bytes("zip", str(directory)), f"{stem}.zip",
                       mime="application/zip", on_click="ignore")


def downloads_tab() -> None:
    """The chosen run's changed scenario, workbook, report and zip; and the comparison's, when there is one."""
    state = _state()
    if not state.runs:
        st.info("Run a scenario first.")
        return
    run = state.runs[state.selected] if state.selected in state.runs else next(iter(state.runs.values()))
    stem = slug(run.name, "run")
    st.markdown(f"**Run '{run.name}'**")
    st.download_button("Changed scenario (YAML, extends the base)", downloads.extends_yaml(run.base, run.settings),
                       f"{stem}.yaml", mime="application/x-yaml", on_click="ignore")
    _directory_downloads(run.directory, stem, "run")
    if state.comparison is not None:
        st.markdown(f"**Comparison against '{state.comparison.comparison.names[0]}'**")
        _directory_downloads(state.comparison.directory, f"comparison-{slug(state.comparison.runs[0].name)}",
                             "comparison")


# ------------------------------------------------------------------------------------------------ page
def main() -> None:
    """The page: scenario and run window in the sidebar; Scenario, Run, Compare and Downloads tabs."""
    st.set_page_config(page_title="flowsim", layout="wide")
    st.title("flowsim: patient flow and delayed transfers of care")
    _state()
    path, shown_as = choose_scenario()
    if path is None:
        return
    loaded = load(path, shown_as)
    if loaded is None:
        return
    scenario, levers = loaded
    prefix = f"{path}"
    st.sidebar.caption(scenario.description[:400])
    settings = window_settings(scenario, prefix)
    tabs = st.tabs(["Scenario", "Run", "Compare", "Downloads"])
    with tabs[0]:
        st.markdown(f"### {scenario.name}\nEach lever shows its unit, and the source or ASSUMPTION note its file "
                    "gives it. Changes become `--set` settings, recorded in the run's outputs.")
        settings += lever_controls(levers, prefix)
    with tabs[1]:
        runs_tab(path, settings, shown_as, scenario)
    with tabs[2]:
        compare_tab()
    with tabs[3]:
        downloads_tab()


main()

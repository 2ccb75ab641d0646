"""Benchmark: the engine's cost against a plain event loop, and how it scales (issue 16), in one run.

Prints, in this order (``LINES`` names every line, so a smoke test can check that each is there):

* **ratio to the heapq reference**: ``simulate()`` of one replication of the reference network
  (``benchmarks/reference_network.yaml``: KPIs, tables and the run's Parquet parts included) against the plain
  heapq event loop of the same network (``benchmarks/heapq_reference.py``), both in this process, pinned to one
  core (``os.sched_setaffinity``), interleaved round by round; the median of the per-round ratios (target: 2x);
* **kernel events per model event** on the reference network: SimPy events scheduled per event of the heapq loop
  (an arrival, a patient medically fit, a downstream place freed), counted from the run's records;
* **Rotherham baseline**: seconds per simulated year of ``simulate()`` on ``scenarios/rotherham_2016.yaml`` (365
  days, warm-up folded in), KPIs included, on the same pinned core; also as a multiple of the heapq replication
  measured in this run, since absolute times move by +-30% between runs (the issue's target, 0.15 s when the heapq
  loop took 0.065 s, is 2.3 heapq replications); and its kernel events per model event (stamps on a stay);
* **scaling**: 20 replications of the baseline (its own warm-up) serially, on a local process pool of 2 workers
  (pool start-up included, as ``flowsim run --workers 2`` pays it) and on a Dask LocalCluster of 2 worker
  processes (cluster start-up excluded and printed, one warm-up task per worker excluded); speed-up over serial and
  efficiency (speed-up / workers; target 95%, i.e. 1.9x on 2 workers).  The three KPI tables must be identical;
* **peak RSS** of this process and of its largest child (pool worker).  How the parent's peak depends on the number
  of replications is ``benchmarks/bench_memory.py``'s job.

Run from the repo root (about 5 minutes on two shared cores; ``--quick`` is a smoke test of a few seconds' work)::

    python benchmarks/bench_engine.py [--quick] [--rounds 7] [--core 0] [--replications 20] [--workers 2]

Speed is measured here, never asserted in tests (timings vary by machine).
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import random
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from bench_core import cpu_name  # benchmarks/ is on sys.path when a script here runs
from heapq_reference import replication as heapq_replication

from flowsim import load_scenario
from flowsim.experiment.executors import DaskExecutor, Executor, ProcessExecutor, SerialExecutor
from flowsim.experiment.runner import RunResult, simulate
from flowsim.model.kernel import Kernel
from flowsim.scenario.schema import Scenario

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
REFERENCE = HERE / "reference_network.yaml"
BASELINE = ROOT / "scenarios" / "rotherham_2016.yaml"

#: The label that starts each line the benchmark prints (a smoke test checks that each one appears).
LINES: tuple[str, ...] = (
    "machine", "load average", "pinned to core", "heapq reference", "flowsim simulate()", "ratio to heapq",
    "kernel events per model event (reference)", "kernel alone (reference)",
    "rotherham per simulated year", "rotherham in heapq replications",
    "kernel events per model event (rotherham)", "serial", "process pool", "dask localcluster", "dask start-up",
    "kpi tables", "peak rss",
)


@dataclass(frozen=True)
class Settings:
    """What one run measures: horizons, rounds and the scaling run's size."""

    rounds: int
    core: int
    replications: int
    workers: int
    seed: int
    reference_overrides: tuple[str, ...]
    year_overrides: tuple[str, ...]
    scaling_overrides: tuple[str, ...]


def settings(args: argparse.Namespace) -> Settings:
    """Full measurement, or ``--quick``: short horizons, two rounds and four replications (a smoke test)."""
    if args.quick:
        return Settings(2, args.core, 4, args.workers, args.seed,
                        ("simulation.duration_days=30", "simulation.warmup_days=10"),
                        ("simulation.duration_days=30", "simulation.warmup_days=0"),
                        ("simulation.duration_days=20", "simulation.warmup_days=10"))
    return Settings(args.rounds, args.core, args.replications, args.workers, args.seed, (),
                    ("simulation.duration_days=365", "simulation.warmup_days=0"), ())


def line(label: str, text: str) -> None:
    """One result line: a fixed-width label, then the figures."""
    sys.stdout.write(f"  {label:<44} {text}\n")
    sys.stdout.flush()


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def heapq_model_events(res: RunResult) -> int:
    """Events of the heapq loop's kind in a flowsim run: arrivals, medically fit declarations, downstream places
    freed (the heapq loop runs the same network, so this is its event count for this run's patients)."""
    p = res.patients()
    return int(p["arrival"].notna().sum() + p["mffd"].notna().sum() + p["ds_end"].notna().sum())


def reference_ratio(cfg: Settings) -> float:
    """Interleaved rounds (ABBA order) of the heapq loop and ``simulate()`` on the reference network."""
    sc = load_scenario(REFERENCE, list(cfg.reference_overrides))
    sim = sc.simulation
    horizon = sim.warmup_days + sim.duration_days
    import heapq_reference as ref

    # the loop's horizon follows the scenario's (the --quick horizon is shorter than the file's)
    ref.WARM, ref.RUN, ref.END = float(sim.warmup_days), float(sim.duration_days), float(horizon)
    heapq_replication(1)
    last = simulate(sc, 1, cfg.seed, workers=1, progress=False)  # warm: imports, caches
    hq: list[float] = []
    fs: list[float] = []
    for r in range(cfg.rounds):
        seed = cfg.seed + r
        order = ("h", "f") if r % 2 == 0 else ("f", "h")
        for which in order:
            if which == "h":
                hq.append(timed(lambda seed=seed: heapq_replication(seed))[0])
            else:
                secs, res = timed(lambda seed=seed: simulate(sc, 1, seed, workers=1, progress=False))
                fs.append(secs)
                assert isinstance(res, RunResult)
                last = res
    ratios = [f / h for f, h in zip(fs, hq, strict=True)]
    h_med = statistics.median(hq)
    line("heapq reference", f"{h_med:.3f} s per replication ({horizon} days; median of {cfg.rounds})")
    line("flowsim simulate()", f"{statistics.median(fs):.3f} s per replication (KPIs and tables included)")
    line("ratio to heapq", f"{statistics.median(ratios):.2f}x (median of {cfg.rounds} interleaved rounds; "
                           f"range {min(ratios):.2f}-{max(ratios):.2f}; target 2x)")
    kev = last.replications[0].kernel_events
    mev = heapq_model_events(last)
    line("kernel events per model event (reference)", f"{kev / mev:.2f} ({kev:,} kernel events / {mev:,} "
                                                      "arrivals, fit declarations and places freed)")
    kernel_floor(cfg, kev)
    return h_med


def bare_kernel(events: int, seed: int, chains: int = 2_000) -> None:
    """``events`` timeouts on flowsim's ``Kernel``, each with one callback that draws a delay and schedules the
    next of its chain, and nothing else: the engine's own cost for a replication's kernel events, with no
    patient, stamp, record or KPI (``chains`` run at once, as ~2,000 patients are in the system)."""
    env = Kernel()
    draw = random.Random(seed).random
    left = [events - chains]

    def step(_event: object) -> None:
        left[0] -= 1
        if left[0] >= 0:
            env.timeout(draw()).callbacks.append(step)

    for _ in range(chains):
        env.timeout(draw()).callbacks.append(step)
    env.run(until=float("inf"))


def kernel_floor(cfg: Settings, events: int) -> None:
    """The kernel alone against the heapq loop, interleaved: how much of the 2x target the engine leaves for the
    model, its records and its KPIs."""
    hq: list[float] = []
    kn: list[float] = []
    for r in range(cfg.rounds):
        hq.append(timed(lambda r=r: heapq_replication(cfg.seed + r))[0])
        kn.append(timed(lambda r=r: bare_kernel(events, cfg.seed + r))[0])
    ratio = statistics.median(k / h for k, h in zip(kn, hq, strict=True))
    line("kernel alone (reference)", f"{ratio:.2f}x the heapq replication ({events:,} timeouts with one trivial "
                                     f"callback each; median of {cfg.rounds}): what the engine costs before any model")


def rotherham_year(cfg: Settings, heapq_seconds: float) -> None:
    """Seconds per simulated year of the baseline, KPIs included, median over rounds."""
    sc = load_scenario(BASELINE, list(cfg.year_overrides))
    years = (sc.simulation.duration_days + sc.simulation.warmup_days) / 365.0
    simulate(sc, 1, cfg.seed, workers=1, progress=False)
    walls: list[float] = []
    res: RunResult | None = None
    for r in range(max(1, (cfg.rounds + 1) // 2)):
        secs, out = timed(lambda r=r: simulate(sc, 1, cfg.seed + r, workers=1, progress=False))
        walls.append(secs)
        assert isinstance(out, RunResult)
        res = out
    assert res is not None
    per_year = statistics.median(walls) / years
    line("rotherham per simulated year", f"{per_year:.3f} s (simulate(), KPIs included; median of {len(walls)}; "
                                         "target 0.15 s)")
    line("rotherham in heapq replications", f"{per_year / heapq_seconds:.2f} heapq replications per simulated year "
                                            "(target 2.3: 0.15 s / 0.065 s)")
    rep = res.replications[0]
    line("kernel events per model event (rotherham)", f"{rep.kernel_events / max(rep.model_events, 1):.2f} "
                                                      f"({rep.kernel_events:,} / {rep.model_events:,} stamps on stays)")


def run_on(executor: Executor, sc: Scenario, cfg: Settings, warm: bool) -> tuple[RunResult, float]:
    if warm:  # one task per worker: workers started and flowsim imported before the clock starts
        simulate(sc, executor.workers, cfg.seed, executor=executor, progress=False)
    secs, res = timed(lambda: simulate(sc, cfg.replications, cfg.seed, executor=executor, progress=False))
    assert isinstance(res, RunResult)
    return res, secs


def scaling(cfg: Settings) -> None:
    """Serial, process pool (start-up included) and Dask LocalCluster (start-up excluded)."""
    sc = load_scenario(BASELINE, list(cfg.scaling_overrides))
    with SerialExecutor() as ex:
        serial, t_serial = run_on(ex, sc, cfg, warm=False)
    line("serial", f"{t_serial:.2f} s for {cfg.replications} replications of {sc.name} "
                   f"({sc.simulation.warmup_days}+{sc.simulation.duration_days} days)")

    def report(name: str, workers: int, secs: float, note: str) -> None:
        speedup = t_serial / secs
        line(name, f"{secs:.2f} s, {speedup:.2f}x on {workers} workers = {speedup / workers:.0%} efficiency "
                   f"({note}; target 1.9x = 95%)")

    # the pool forks, so it runs before Dask has started any threads in this process
    t0 = time.perf_counter()
    with ProcessExecutor(cfg.workers) as pool:
        pooled, _ = run_on(pool, sc, cfg, warm=False)
    report("process pool", cfg.workers, time.perf_counter() - t0, "pool start-up and shut-down included")
    import distributed  # noqa: F401  (importing it installs its logging configuration, quietened here)

    for name in ("distributed", "tornado"):
        logging.getLogger(name).setLevel(logging.ERROR)
    start, dask = timed(lambda: DaskExecutor(workers=cfg.workers))
    assert isinstance(dask, DaskExecutor)
    try:
        dasked, t_dask = run_on(dask, sc, cfg, warm=True)
        report("dask localcluster", dask.workers, t_dask, "cluster start-up and one warm-up task per worker excluded")
    finally:
        stop, _ = timed(dask.close)
    line("dask start-up", f"{start:.2f} s to start the LocalCluster, {stop:.2f} s to close it (excluded above)")
    for other, res in (("process", pooled), ("dask", dasked)):
        pd.testing.assert_frame_equal(res.kpi_frame(), serial.kpi_frame(), check_exact=True,
                                      obj=f"KPI table of the {other} executor vs serial")
    line("kpi tables", f"identical on serial, process and dask ({serial.kpi_frame().shape[1]} KPIs x "
                       f"{cfg.replications} replications)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short horizons, 2 rounds, 4 replications (smoke test)")
    ap.add_argument("--rounds", type=int, default=7, help="interleaved rounds on the reference network (default 7)")
    ap.add_argument("--core", type=int, default=None, help="core to pin the serial measurements to (default: the "
                                                            "first this process may use)")
    ap.add_argument("--replications", type=int, default=20, help="replications of the scaling run (default 20)")
    ap.add_argument("--workers", type=int, default=2, help="process pool and Dask workers (default 2)")
    ap.add_argument("--seed", type=int, default=12345)
    args = ap.parse_args(argv)
    allowed = sorted(os.sched_getaffinity(0))
    args.core = allowed[0] if args.core is None else args.core
    if args.core not in allowed or args.rounds < 1 or args.replications < 1 or args.workers < 1:
        ap.error(f"--core must be one of {allowed}; --rounds, --replications and --workers at least 1")
    cfg = settings(args)
    sys.stdout.write(f"flowsim engine benchmark{' (--quick: smoke test, not a measurement)' if args.quick else ''}, "
                     f"{time.strftime('%Y-%m-%d %H:%M')}\n")
    line("machine", f"{platform.machine()}, {cpu_name()}, {len(allowed)} usable cores, Python "
                    f"{platform.python_version()}")
    line("load average", "{:.2f} {:.2f} {:.2f} (1, 5, 15 min; other work on the machine slows both sides of a "
                         "ratio, not always equally)".format(*os.getloadavg()))
    os.sched_setaffinity(0, {cfg.core})
    line("pinned to core", f"{cfg.core} for the reference and Rotherham measurements")
    try:
        heapq_seconds = reference_ratio(cfg)
        rotherham_year(cfg, heapq_seconds)
    finally:
        os.sched_setaffinity(0, allowed)  # the pool and the cluster's workers inherit this process's affinity
    scaling(cfg)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    line("peak rss", f"{own:,.0f} MB this process, {child:,.0f} MB its largest finished child (pool worker)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

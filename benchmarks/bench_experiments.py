"""Benchmark: replications per second of the Rotherham baseline on each executor.

Runs the same N replications (default 8) of ``scenarios/rotherham_2016.yaml`` on

* ``serial``  - one worker, in this process;
* ``process`` - a local process pool of ``--workers`` processes (default 2);
* ``dask``    - a Dask LocalCluster of ``--workers`` single-threaded worker processes;

and prints a table of seconds, replications per second, speed-up over one worker and scaling
efficiency (speed-up / workers).  Before each timed run a warm-up call (one replication per worker)
starts the pool and loads flowsim in the workers; it is excluded, and so is the Dask cluster's
start-up, which is timed and reported on its own line.  Replications keep their per-patient tables,
as ``flowsim run`` does, so the pools' figures include shipping results back to this process.

The three KPI tables must be identical (a replication is a pure function of scenario, seed and
index, whatever runs it); that is asserted, because it is a correctness check, not a timing one.
Run from the repo root::

    python benchmarks/bench_experiments.py [--replications 8] [--workers 2] [--quick]

``--quick`` shortens the horizon (90 reported days after a 30-day warm-up instead of 365 after 180).
Speed is measured here, never asserted in tests (timings vary by machine).
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import time
from pathlib import Path

import pandas as pd
from bench_core import cpu_name  # benchmarks/ is on sys.path when a script here runs

from flowsim import load_scenario
from flowsim.experiment.executors import DaskExecutor, ProcessExecutor, SerialExecutor
from flowsim.experiment.runner import RunResult, simulate

ROOT = Path(__file__).resolve().parent.parent

QUICK = ["simulation.duration_days=90", "simulation.warmup_days=30"]


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def quiet_dask() -> None:
    """Dask logs every worker and comm at INFO on stderr (and tracebacks on shutdown): keep warnings only."""
    import distributed  # noqa: F401  (importing it installs its logging configuration, overridden here)

    for name in ("distributed", "tornado"):
        logging.getLogger(name).setLevel(logging.WARNING)


def timed_run(executor, scenario, replications: int, seed: int) -> tuple[RunResult, float, float]:
    """(result, warm-up seconds, timed seconds): a warm-up of one replication per worker, then the run."""
    t0 = time.perf_counter()
    simulate(scenario, executor.workers, seed, executor=executor, progress=False)
    t1 = time.perf_counter()
    result = simulate(scenario, replications, seed, executor=executor, progress=False)
    t2 = time.perf_counter()
    return result, t1 - t0, t2 - t1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default=str(ROOT / "scenarios" / "rotherham_2016.yaml"))
    ap.add_argument("--replications", type=int, default=8, help="replications timed per executor (default 8)")
    ap.add_argument("--workers", type=int, default=2, help="workers of the process pool and the Dask cluster")
    ap.add_argument("--seed", type=int, default=12345)
    ap.add_argument("--quick", action="store_true", help=f"shorter horizon: {' '.join(QUICK)}")
    args = ap.parse_args(argv)
    if args.replications < 1 or args.workers < 1:
        ap.error("--replications and --workers must be at least 1")
    sc = load_scenario(args.scenario, QUICK if args.quick else [])
    quiet_dask()
    out = sys.stdout
    out.write(f"flowsim experiments benchmark: {sc.name}, {args.replications} replications x "
              f"{sc.simulation.duration_days} days (+ {sc.simulation.warmup_days} warm-up), seed {args.seed}\n")
    out.write(f"  machine  {platform.machine()}, {cpu_name()}, {usable_cores()} usable cores "
              f"(sched_getaffinity; os.cpu_count() {os.cpu_count()})\n")
    out.write(f"  platform {platform.platform()}, Python {platform.python_version()}\n\n")
    out.flush()

    rows: list[tuple[str, int, float, float]] = []   # executor, workers, warm-up s, timed s
    results: dict[str, RunResult] = {}

    with SerialExecutor() as ex:
        results["serial"], warm, secs = timed_run(ex, sc, args.replications, args.seed)
        rows.append(("serial", 1, warm, secs))
    # the process pool forks, so it runs before Dask has started any threads in this process
    with ProcessExecutor(args.workers) as ex:
        results["process"], warm, secs = timed_run(ex, sc, args.replications, args.seed)
        rows.append(("process", ex.workers, warm, secs))
    t0 = time.perf_counter()
    dask = DaskExecutor(workers=args.workers)
    startup = time.perf_counter() - t0
    try:
        results["dask"], warm, secs = timed_run(dask, sc, args.replications, args.seed)
        rows.append(("dask", dask.workers, warm, secs))
    finally:
        t0 = time.perf_counter()
        dask.close()
        shutdown = time.perf_counter() - t0

    base_rate = args.replications / rows[0][3]
    out.write(f"{'executor':<9} {'workers':>7} {'reps':>5} {'seconds':>8} {'reps/s':>7} {'speed-up':>8} "
              f"{'efficiency':>10}   warm-up (excluded)\n")
    for name, workers, warm, secs in rows:
        rate = args.replications / secs
        speedup = rate / base_rate
        out.write(f"{name:<9} {workers:>7} {args.replications:>5} {secs:>8.2f} {rate:>7.2f} {speedup:>7.2f}x "
                  f"{speedup / workers:>9.0%}   {warm:.2f} s\n")
    out.write(f"\nDask LocalCluster start-up ({args.workers} workers): {startup:.2f} s; shut-down {shutdown:.2f} s "
              f"(both excluded from the throughput above)\n")

    reference = results["serial"].kpi_frame()
    for name in ("process", "dask"):
        pd.testing.assert_frame_equal(results[name].kpi_frame(), reference, check_exact=True,
                                      obj=f"KPI table of the {name} executor vs serial")
    out.write(f"KPI tables identical on serial, process and dask: {reference.shape[0]} replications x "
              f"{reference.shape[1]} KPIs matched exactly\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

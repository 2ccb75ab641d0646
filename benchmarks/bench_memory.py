"""Benchmark: peak memory of ``flowsim run`` against the number of replications (issue 15).

Runs the one-year Rotherham baseline (``scenarios/rotherham_2016.yaml``, its own warm-up) as a user
would, ``flowsim run -n N`` on a local process pool, once per N (default 10 and 1,000), each in a fresh
process that reports

* the peak resident set of the flowsim process itself (the parent: it receives every replication's
  tables, stores them as Parquet parts and writes the run directory), and
* the largest peak of its pool workers (each simulates one replication at a time),

so the total is at most parent + workers x largest worker.  Before issue 15 the parent kept every
replication's tables (~10 MB each: 200 replications peaked at 3.4 GB); now they stream to disk and the
parent's peak should not depend on N.  The target: 1,000 replications under 2 GB.

Run from the repo root (the 1,000-replication run takes about an hour on two shared cores)::

    python benchmarks/bench_memory.py [--replications 10 1000] [--workers 2] [--no-figures] [--keep]

Memory is measured here, not in the test suite; ``tests/test_faults.py`` checks the ratio of peak RSS
at two small replication counts instead.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_core import cpu_name  # benchmarks/ is on sys.path when a script here runs

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "scenarios" / "rotherham_2016.yaml"

#: Runs ``flowsim run`` in this (fresh) process and prints its own and its children's peak RSS (KB).
_MEASURED = """
import contextlib, io, json, resource, sys, time
from flowsim.cli import main
t = time.perf_counter()
with contextlib.redirect_stdout(io.StringIO()):
    code = main(sys.argv[1:])
print(json.dumps({"code": code, "seconds": time.perf_counter() - t,
                  "parent_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "worker_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""


def measure(replications: int, workers: int, out: Path, figures: bool) -> dict[str, float]:
    args = ["run", str(SCENARIO), "-n", str(replications), "--workers", str(workers), "--seed", "12345",
            "--out", str(out)]
    if not figures:
        args.append("--no-figures")
    proc = subprocess.run([sys.executable, "-c", _MEASURED, *args], cwd=ROOT, capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        raise SystemExit(f"flowsim run -n {replications} failed:\n{proc.stderr}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if result["code"] != 0:
        raise SystemExit(f"flowsim run -n {replications} exited {result['code']}:\n{proc.stderr}")
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--replications", type=int, nargs="+", default=[10, 1000])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-figures", action="store_true", help="skip the figures (they read every daily row)")
    ap.add_argument("--keep", action="store_true", help="keep the run directories (printed) instead of deleting")
    args = ap.parse_args()
    print(f"flowsim run {SCENARIO.relative_to(ROOT)} on a process pool of {args.workers} workers; "
          f"figures {'off' if args.no_figures else 'on'}")
    print(f"machine: {cpu_name()}, Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}")
    print(f"{'replications':>12} {'seconds':>9} {'parent peak MB':>15} {'worker peak MB':>15} {'bound MB':>9}")
    base = Path(tempfile.mkdtemp(prefix="flowsim-bench-memory-"))
    for n in args.replications:
        out = base / f"run-{n}"
        r = measure(n, args.workers, out, not args.no_figures)
        parent, worker = r["parent_kb"] / 1024, r["worker_kb"] / 1024
        print(f"{n:>12,} {r['seconds']:>9,.0f} {parent:>15,.0f} {worker:>15,.0f} "
              f"{parent + args.workers * worker:>9,.0f}", flush=True)
    if args.keep:
        print(f"run directories under {base}")
    else:
        import shutil

        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()

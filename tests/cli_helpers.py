"""Running the CLI as a user types it, for the subprocess tests (one copy, shared by every test module)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

#: The winter comparison several modules read through conftest's ``winter_compare`` session fixture (appraisal
#: numbers, the board report, the browser checks): the 2016/17 winter baseline and two options, 3 paired
#: replications of 60 days after a 30-day warm-up.
WINTER_COMPARE_FILES = [ROOT / "scenarios" / "rotherham_winter_2016.yaml",
                        ROOT / "scenarios" / "rotherham_winter_2017_reablement.yaml",
                        ROOT / "scenarios" / "rotherham_winter_2017_trusted_assessor.yaml"]
WINTER_COMPARE_REPS, WINTER_COMPARE_DAYS, WINTER_COMPARE_WARMUP = 3, 60, 30
#: The small test calibration conftest's ``small_calibration`` runs once (smallest budget).
SMALL_CALIBRATION = ROOT / "tests" / "calibration" / "small.yaml"


def cli_env(**extra: str) -> dict[str, str]:
    """The caller's environment minus FLOWSIM_SCHEDULER (a user's Dask cluster must not leak into tests), with
    this checkout importable, a headless matplotlib, and warnings shown; ``extra`` is set on top."""
    env = {k: v for k, v in os.environ.items() if k != "FLOWSIM_SCHEDULER"}
    env.update(PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
               MPLBACKEND="Agg", PYTHONWARNINGS="default", **extra)
    return env


def cli_argv(args: tuple[str | Path, ...]) -> list[str]:
    return [sys.executable, "-m", "flowsim", *map(str, args)]


def flowsim(*args: str | Path, timeout: float = 900, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m flowsim ARGS`` from the repository root; never raises on a non-zero exit.

    ``timeout`` guards against a hang, not a slow machine: the shipped calibration and sweep took over 300 s
    under ``-n 2`` on a 2-core VM shared with another suite, so the default is 900 s."""
    return subprocess.run(cli_argv(args), cwd=ROOT, env=cli_env(**env), capture_output=True, text=True,
                          timeout=timeout, check=False)


def flowsim_in_process(capsys: Any, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """``flowsim.cli.main(ARGS)`` in this process, its exit code and output captured like ``flowsim(...)``'s.

    For tests where a subprocess proves nothing more than the code path (argument checks, validation messages,
    small runs): each saves a second or more of start-up.  An exception that escaped ``main`` fails the test
    with its traceback, as a traceback on a subprocess's stderr would.  Exit codes, the absence of tracebacks
    and the console script are still checked in real subprocesses (test_cli.py)."""
    from flowsim.cli import main

    root = logging.getLogger()
    handlers = list(root.handlers)
    dask_logging = os.environ.get("DASK_LOGGING__DISTRIBUTED")
    scheduler = os.environ.pop("FLOWSIM_SCHEDULER", None)  # as cli_env: a user's Dask cluster must not leak in
    capsys.readouterr()
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        for h in root.handlers[:]:  # main's logging.basicConfig: leave logging as it was
            if h not in handlers:
                root.removeHandler(h)
        if dask_logging is None:
            os.environ.pop("DASK_LOGGING__DISTRIBUTED", None)
        if scheduler is not None:
            os.environ["FLOWSIM_SCHEDULER"] = scheduler
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(["flowsim", *map(str, args)], code, out, err)

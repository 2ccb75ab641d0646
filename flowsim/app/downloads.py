"""What the app offers to download, each made by the code the command line uses.

- the changed scenario: ``flowsim.scenario.levers.extends_yaml`` (only the changed fields, ``extends:`` the base);
- the Excel workbook: ``flowsim.report.workbook`` (the same as ``flowsim export DIR --xlsx``);
- the board report: ``flowsim.report.html.build_report`` (the same as ``flowsim report DIR``);
- the run (or comparison) directory as a zip, exactly the files its completion manifest lists.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

from flowsim.report.html import build_report
from flowsim.report.workbook import workbook_bytes
from flowsim.rundir import COMPLETE, OWNER, check_complete
from flowsim.scenario.levers import extends_yaml

__all__ = ["directory_zip", "extends_yaml", "report_html", "workbook"]


def directory_zip(directory: Path) -> bytes:
    """A complete flowsim directory as a zip: every file its manifest lists, and the two markers, under the
    directory's name (nothing else that may be lying there)."""
    check_complete(directory)
    done = json.loads((directory / COMPLETE).read_text(encoding="utf-8"))
    names = [OWNER, *sorted(done["files"]), COMPLETE]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for name in names:
            path = directory / name.rstrip("/")
            files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
            for f in files:
                z.write(f, f"{directory.name}/{f.relative_to(directory).as_posix()}")
    return buffer.getvalue()


def report_html(directory: Path) -> str:
    """The board report of a complete run or comparison directory (nothing is written)."""
    check_complete(directory)
    return build_report(directory)


def workbook(directory: Path) -> bytes:
    """The Excel workbook of a complete run or comparison directory."""
    check_complete(directory)
    return workbook_bytes(directory)

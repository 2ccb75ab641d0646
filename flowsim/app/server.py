"""``flowsim app``: start the Streamlit server on the app script, as a child this process owns.

Why a child process: Streamlit serves a script with its own command (``streamlit run``); starting it from flowsim
keeps one command to remember and lets flowsim check what a planner can get wrong first (a port in use is one
``flowsim: error:`` line and exit 2, not a Tornado traceback).  The child runs in its own process group, so
stopping it stops everything it started (the process pool of a run in progress too); Ctrl-C or SIGTERM to
flowsim is passed on, and on Linux the child is also told to stop if flowsim itself dies (``PR_SET_PDEATHSIG``),
so no server outlives the command that started it.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import importlib.util
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

from flowsim.errors import FlowsimError

log = logging.getLogger(__name__)

#: The Streamlit script.
SCRIPT = Path(__file__).resolve().with_name("main.py")
#: How the script learns where to keep its run directories.
OUTPUTS_ENV = "FLOWSIM_APP_OUTPUTS"
#: Seconds the server gets to stop after SIGTERM before it is killed.
STOP_GRACE = 10.0


def check_port(host: str, port: int) -> None:
    """Refuse a port something else already listens on (or one this user may not use), before starting."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise FlowsimError(f"--host {host}: not an address of this machine ({exc.strerror})") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        # as the server will: a port whose last connections are still closing (TIME_WAIT) is free to listen on
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(address)
        except PermissionError:
            raise FlowsimError(f"--port {port}: not allowed for this user (ports below 1024 need privileges); "
                               "choose another, e.g. --port 8501") from None
        except OSError as exc:
            raise FlowsimError(f"--port {port}: {host}:{port} is in use ({exc.strerror}); another program (or "
                               "another flowsim app) is serving there: choose another port, e.g. "
                               f"--port {port + 1}") from None


def command(port: int, host: str) -> list[str]:
    """The ``streamlit run`` command line (headless, no usage statistics, no file watcher)."""
    return [sys.executable, "-m", "streamlit", "run", str(SCRIPT), "--server.port", str(port),
            "--server.address", host, "--server.headless", "true", "--browser.gatherUsageStats", "false",
            "--server.fileWatcherType", "none", "--global.developmentMode", "false",
            "--server.runOnSave", "false", "--client.toolbarMode", "minimal"]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """In the child: ask Linux to send SIGTERM when the parent dies; start a new process group."""
    os.setsid()
    libc_name = ctypes.util.find_library("c")
    if sys.platform.startswith("linux") and libc_name:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(libc_name, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class _Stop(Exception):
    """SIGTERM arrived: stop the server as for Ctrl-C."""


@contextlib.contextmanager
def _terminate_raises() -> Iterator[None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        raise _Stop

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _stop(child: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's whole process group, then SIGKILL if it has not gone within the grace time."""
    for sig, wait in ((signal.SIGTERM, STOP_GRACE), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, sig)
        try:
            child.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def serve(port: int, host: str, outputs: Path) -> int:
    """Run the app until Ctrl-C or SIGTERM (exit 0), or until the server ends (its exit code)."""
    if importlib.util.find_spec("streamlit") is None:
        raise FlowsimError("the web app needs Streamlit: pip install -e . (the README's set-up installs it)")
    check_port(host, port)
    env = {**os.environ, OUTPUTS_ENV: str(outputs.resolve())}
    shown = "localhost" if host in ("0.0.0.0", "::") else host
    sys.stderr.write(f"flowsim: the web app is at http://{shown}:{port} (Ctrl-C stops it; runs are kept in "
                     f"{outputs})\n")
    child = subprocess.Popen(command(port, host), env=env, preexec_fn=_die_with_parent)
    try:
        with _terminate_raises():
            return child.wait()
    except (KeyboardInterrupt, _Stop):
        _stop(child)
        sys.stderr.write("flowsim: the web app has stopped\n")
        return 0
    finally:
        if child.poll() is None:
            _stop(child)

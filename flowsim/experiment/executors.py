"""Where replications run: in this process, a local process pool, or a Dask cluster.

Why one small interface: sweeps, calibration and option appraisal all reduce
to "run this pure function on these tasks and hand me each result as it
finishes".  Results are keyed by the task's position, never by arrival
order, so the executor changes the wall-clock time and nothing else.

A task that raises in a worker comes back as a ``TaskError`` naming the task
(point and replication), with the worker's traceback kept for ``-v``; it is
never swallowed and never turns into a silent gap in the results.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from flowsim.errors import FlowsimError

log = logging.getLogger(__name__)

SCHEDULER_ENV = "FLOWSIM_SCHEDULER"
EXECUTORS = ("serial", "process", "dask")


class TaskError(FlowsimError):
    """A task failed in a worker; the message names it, ``worker_traceback`` says where."""

    def __init__(self, label: str, error: str, worker_traceback: str = ""):
        super().__init__(f"{label} failed: {error}")
        self.label = label
        self.error = error
        self.worker_traceback = worker_traceback


@dataclass(frozen=True)
class _Failure:
    error: str
    tb: str


def source_fingerprint(root: Path | None = None) -> str:
    """A short hash of the flowsim package's Python sources (paths and contents), read from disk now.

    Why: a replication's numbers are a function of the scenario, the seed *and the code*.  A Dask worker
    imports flowsim afresh from its own disk, so a remote worker with another flowsim, or a local one started
    after the sources were edited (an editable install changed under a long run), silently computes different
    numbers under the same seed.  Comparing this hash, taken when each process imported flowsim, catches both.
    """
    root = root or Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


@functools.cache
def sources() -> str:
    """The sources this process runs, hashed once (about 20 ms) when first asked: in the caller when its Dask
    executor starts, in a worker at its first task; never for a run that does not use Dask."""
    return source_fingerprint()


def _guarded(fn: Callable[[Any], Any], task: Any) -> Any:
    """Run ``fn(task)`` in a worker; an exception comes back as data so the label can be attached."""
    try:
        return fn(task)
    except Exception as exc:  # reported to the caller with its traceback
        return _Failure(f"{type(exc).__name__}: {exc}", traceback.format_exc())


def _same_code(expected: str, fn: Callable[[Any], Any], task: Any) -> Any:
    """Run a task on a Dask worker only if the worker runs the sources the caller runs (``sources()``)."""
    if expected != sources():
        return _Failure(f"this Dask worker runs different flowsim code (sources {sources()}) "
                        f"from the process that sent the task (sources {expected}), so its results would not be "
                        "those of this flowsim under the same seed; install the same flowsim on every worker (or, "
                        "if the sources were edited after this run started, start it again)", "")
    return _guarded(fn, task)


#: How often a pool worker checks that the process that started it is still alive (seconds).
PARENT_POLL_SECONDS = 0.25


def _parent_alive(parent: int, first_ppid: int) -> bool:
    if os.getppid() != first_ppid:  # re-parented: whoever started this worker is gone
        return False
    try:
        os.kill(parent, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - exists, owned by someone else (pid reused)
        return False
    return True


def _watch_parent(parent: int) -> None:
    """Exit this worker as soon as ``parent`` is gone, however it died.

    A pool worker blocks reading its task queue; when the parent is SIGKILLed (the OOM killer's
    natural target) nothing closes that queue, so without this the worker lives on, holding its
    memory and the caller's stdout and stderr open.  A daemon thread polls the parent (``getppid``
    changes when a process is re-parented), which works with any start method and on any POSIX
    system; it costs one system call a quarter second.
    """
    first_ppid = os.getppid()

    def loop() -> None:
        while _parent_alive(parent, first_ppid):
            time.sleep(PARENT_POLL_SECONDS)
        os._exit(1)

    threading.Thread(target=loop, name="flowsim-parent-watch", daemon=True).start()


def _worker_init(parent: int) -> None:
    """Pool worker start-up: Ctrl-C is the parent's to handle (it stops the pool), and the worker
    never outlives the parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    _watch_parent(parent)


@contextlib.contextmanager
def _sigint_held() -> Iterator[None]:
    """Hold Ctrl-C while worker processes may be forked; raise it as KeyboardInterrupt afterwards.

    Two holes are closed.  A new worker must not get Ctrl-C before its start-up has set it to be
    ignored: the signal stays blocked (the mask is inherited by a forked or spawned child) and the
    Python handler only records it (a forked child inherits that too).  And the parent must not get
    it inside ``os.fork``'s after-fork handlers, where Python prints "Exception ignored" and drops the
    KeyboardInterrupt (the run would carry on as if nothing happened): a signal delivered to another
    thread of this process is still handled in the main thread, so blocking alone is not enough.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    hit: list[int] = []
    handler = signal.signal(signal.SIGINT, lambda signum, frame: hit.append(signum))
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
        signal.signal(signal.SIGINT, handler)
    if hit:
        raise KeyboardInterrupt


def available_cores() -> int:
    """Cores this process may use (respects CPU affinity, e.g. in containers)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


class Executor(Protocol):
    """Runs a picklable function over tasks and yields ``(index, result)`` as each finishes."""

    name: str
    workers: int

    def run(self, fn: Callable[[Any], Any], tasks: Sequence[Any],
            label: Callable[[Any], str] = repr) -> Iterator[tuple[int, Any]]:
        """Yield ``(index, fn(task))`` as each task finishes; a failure raises TaskError naming ``label(task)``."""
        ...

    def close(self) -> None:
        """Release the workers."""
        ...

    def describe(self) -> dict[str, Any]:
        """Where the work runs, for the record (summary.json, sweep.json)."""
        ...


def _unwrap(index: int, result: Any, tasks: Sequence[Any], label: Callable[[Any], str]) -> tuple[int, Any]:
    if isinstance(result, _Failure):
        log.debug("worker traceback for %s:\n%s", label(tasks[index]), result.tb)
        raise TaskError(label(tasks[index]), result.error, result.tb)
    return index, result


class SerialExecutor:
    """Everything in the calling process: for debugging, profiling and tiny runs."""

    name = "serial"
    workers = 1

    def run(self, fn: Callable[[Any], Any], tasks: Sequence[Any],
            label: Callable[[Any], str] = repr) -> Iterator[tuple[int, Any]]:
        """Run each task in turn, in this process."""
        for i, task in enumerate(tasks):
            yield _unwrap(i, _guarded(fn, task), tasks, label)

    def close(self) -> None:
        """Nothing to release."""
        pass

    def describe(self) -> dict[str, Any]:
        """In this process, one task at a time."""
        return {"executor": self.name, "workers": 1}

    def __enter__(self) -> SerialExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ProcessExecutor:
    """A local process pool (the default).  At most ``2 x workers`` tasks are in flight, so a
    sweep of thousands of tasks does not pickle them all up front, and an interrupted sweep
    loses at most the tasks then running."""

    name = "process"

    def __init__(self, workers: int | None = None):
        self.workers = workers or available_cores()
        self._pool: ProcessPoolExecutor | None = None

    def _get_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=self.workers, initializer=_worker_init,
                                             initargs=(os.getpid(),))
        return self._pool

    def describe(self) -> dict[str, Any]:
        """A local process pool of ``workers`` processes."""
        return {"executor": self.name, "workers": self.workers}

    def run(self, fn: Callable[[Any], Any], tasks: Sequence[Any],
            label: Callable[[Any], str] = repr) -> Iterator[tuple[int, Any]]:
        """Run the tasks on the process pool; results come back as they finish."""
        if self.workers == 1 or len(tasks) <= 1:
            yield from SerialExecutor().run(fn, tasks, label)
            return
        pool = self._get_pool()
        pending: dict[Future[Any], int] = {}
        nxt = 0
        try:
            while nxt < len(tasks) or pending:
                while nxt < len(tasks) and len(pending) < 2 * self.workers:
                    with _sigint_held():  # a submit may fork a worker
                        pending[pool.submit(_guarded, fn, tasks[nxt])] = nxt
                    nxt += 1
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in sorted(done, key=pending.__getitem__):
                    i = pending.pop(fut)
                    try:
                        result = fut.result()
                    except BrokenProcessPool:
                        self._pool = None
                        raise TaskError(label(tasks[i]), "a worker process died (killed, or out of memory)") from None
                    yield _unwrap(i, result, tasks, label)
        finally:
            for fut in pending:
                fut.cancel()

    def close(self) -> None:
        """Shut the pool down."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def abort(self) -> None:
        """Stop at once (Ctrl-C, or a task failed): end the workers rather than wait for their tasks."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        procs = list(getattr(pool, "_processes", {}).values())  # no public way before Python 3.14
        for proc in procs:
            with contextlib.suppress(Exception):
                proc.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in procs:
            with contextlib.suppress(Exception):
                proc.join(timeout=5)

    def __enter__(self) -> ProcessExecutor:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class DaskExecutor:
    """Dask distributed: an existing cluster (``address``) or a LocalCluster started here.

    Workers must have flowsim installed (the same version: the scenario is
    pickled with its classes).  A LocalCluster uses one single-threaded process
    per worker because a replication is pure Python and holds the GIL.
    """

    name = "dask"

    def __init__(self, address: str | None = None, workers: int | None = None, *, dashboard: str | None = None,
                 source: str | None = None):
        try:
            import dask
            from distributed import Client, LocalCluster
        except ImportError:  # pragma: no cover - distributed is a declared dependency
            raise FlowsimError("the Dask executor needs the 'distributed' package: pip install distributed") from None
        self.address = address
        self.source = source
        self.dashboard: str | None = None
        self._cluster = None
        try:
            if address:
                self._client = Client(address, timeout="20s")
            elif dashboard is None:
                # Dask's scheduler always serves HTTP (8787 by default, even with dashboard_address=None): with no
                # dashboard asked for, it serves no routes, on a port of its choosing, on this machine only
                with dask.config.set({"distributed.scheduler.http.routes": []}):
                    self._cluster = LocalCluster(n_workers=workers or available_cores(), threads_per_worker=1,
                                                 processes=True, scheduler_kwargs={
                                                     "dashboard": False, "dashboard_address": "127.0.0.1:0"})
                self._client = Client(self._cluster)
            else:
                self._cluster = LocalCluster(n_workers=workers or available_cores(), threads_per_worker=1,
                                             processes=True, dashboard_address=dashboard)
                self._client = Client(self._cluster)
                self.dashboard = self._client.dashboard_link
        except (OSError, TimeoutError) as exc:
            raise FlowsimError(f"cannot connect to the Dask scheduler at {address}: {exc}") from None
        self._sources = sources()  # what every task checks its worker against
        n = len(self._client.scheduler_info().get("workers", {}))
        self.workers = max(1, n)
        log.info("Dask executor: %s with %d workers", address or "LocalCluster", self.workers)

    def describe(self) -> dict[str, Any]:
        """The Dask scheduler used (or a LocalCluster), where its address came from, the dashboard setting and the
        hash of the sources every task checked its worker against."""
        return {"executor": self.name, "workers": self.workers, "scheduler": self.address or "LocalCluster",
                "scheduler_from": self.source, "dashboard": self.dashboard, "sources": self._sources}

    def run(self, fn: Callable[[Any], Any], tasks: Sequence[Any],
            label: Callable[[Any], str] = repr) -> Iterator[tuple[int, Any]]:
        """Submit the tasks to the Dask cluster; results come back as they finish."""
        from distributed import as_completed

        futures = [self._client.submit(_same_code, self._sources, fn, t, pure=False) for t in tasks]
        index = {f.key: i for i, f in enumerate(futures)}
        try:
            for fut in as_completed(futures):
                i = index[fut.key]
                try:
                    result = fut.result()
                except Exception as exc:  # e.g. a worker lost: name the task
                    raise TaskError(label(tasks[i]), f"{type(exc).__name__}: {exc}") from None
                fut.release()
                yield _unwrap(i, result, tasks, label)
        finally:
            self._client.cancel([f for f in futures if not f.done()])

    def close(self) -> None:
        """Close the client, and the LocalCluster if this executor started it."""
        self._client.close()
        if self._cluster is not None:
            self._cluster.close()

    def __enter__(self) -> DaskExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


AnyExecutor = SerialExecutor | ProcessExecutor | DaskExecutor


def make_executor(kind: str | None = None, workers: int | None = None,
                  scheduler: str | None = None, dashboard: str | None = None) -> AnyExecutor:
    """Build an executor from command-line style settings.

    ``scheduler`` (or the ``FLOWSIM_SCHEDULER`` environment variable) implies
    Dask on that cluster; ``kind='dask'`` without one starts a LocalCluster
    with ``workers`` workers.  Otherwise a process pool of ``workers``
    processes (default: the cores available); ``workers=1`` runs in-process.
    """
    source = "--scheduler" if scheduler else None
    if kind in (None, "dask") and not scheduler and os.environ.get(SCHEDULER_ENV):
        # the environment names a cluster only for runs that may use one; the caller announces it
        scheduler, source = os.environ[SCHEDULER_ENV], SCHEDULER_ENV
    if kind is None:
        kind = "dask" if scheduler else "process"
    if kind not in EXECUTORS:
        raise FlowsimError(f"executor: unknown '{kind}'; allowed: {', '.join(EXECUTORS)}")
    if kind == "dask":
        if scheduler and dashboard:
            raise FlowsimError("--dashboard starts a dashboard for a local cluster; a remote scheduler serves its own")
        return DaskExecutor(scheduler, workers, dashboard=dashboard, source=source)
    if dashboard:
        raise FlowsimError(f"--dashboard needs the dask executor, not '{kind}'")
    if scheduler:
        raise FlowsimError(f"--scheduler {scheduler} needs the dask executor, not '{kind}'")
    if kind == "serial" or workers == 1:
        return SerialExecutor()
    return ProcessExecutor(workers)

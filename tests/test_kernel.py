"""The lean event loop (``flowsim.model.kernel.Kernel``) runs every event SimPy would, in SimPy's order.

Why this matters: every result of a run follows from the order of its events; ``Kernel`` inlines SimPy's loop, its
timeouts and ``now``, so these tests run the same programs on ``simpy.Environment`` and on ``Kernel`` and compare
what happened, when, in which order: timeouts with ties, events triggered by other processes, interrupts,
conditions, a failure nobody handles, the end of the run (an event at exactly ``until`` does not run), and the
model itself (identical records).  ``Task`` (a generator on callbacks, without SimPy's start and end events) is held
to the same standard: the same program run as tasks and as processes logs the same events in the same order.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import simpy

from flowsim import load_scenario
from flowsim.model.kernel import Kernel, Task
from flowsim.model.model import Model
from flowsim.results.records import build_records
from flowsim.rng import Streams

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"


Start = Callable[[simpy.Environment, Generator[simpy.Event, Any, None]], Any]


def _process(env: simpy.Environment, gen: Generator[simpy.Event, Any, None]) -> simpy.Process:
    return env.process(gen)


def _task(env: simpy.Environment, gen: Generator[simpy.Event, Any, None]) -> Task:
    return Task(env, gen, soon=True)


def _program(env: simpy.Environment, seed: int, log: list[tuple[float, str]], start: Start = _process) -> None:
    """Processes that wait on timeouts (many ties: times on a 0.25 grid), signal each other, get interrupted and
    wait on conditions."""
    rng = random.Random(seed)
    signal = env.event()

    def worker(i: int) -> Generator[simpy.Event, Any, None]:
        for k in range(rng.randint(1, 6)):
            try:
                yield env.timeout(rng.randint(0, 8) * 0.25)
                log.append((env.now, f"w{i} step {k}"))
                if rng.random() < 0.2:
                    yield env.timeout(0.5) | signal
                    log.append((env.now, f"w{i} cond"))
            except simpy.Interrupt as exc:
                log.append((env.now, f"w{i} interrupted {exc.cause}"))

    def signaller(procs: list[simpy.Process]) -> Generator[simpy.Event, Any, None]:
        yield env.timeout(1.25)
        signal.succeed("go")
        log.append((env.now, "signal"))
        for p in procs[::3]:
            if p.is_alive:
                p.interrupt("stop")
        yield env.all_of([env.timeout(0.25), env.timeout(0.5)])
        log.append((env.now, "all of"))

    procs = [start(env, worker(i)) for i in range(12)]
    start(env, signaller(procs))


@pytest.mark.parametrize("seed", range(8))
def test_same_events_in_the_same_order(seed: int) -> None:
    logs = []
    for env in (simpy.Environment(initial_time=-1.0), Kernel(initial_time=-1.0)):
        log: list[tuple[float, str]] = []
        _program(env, seed, log)
        env.run(until=2.0)
        assert env.now == 2.0
        logs.append(log)
    assert logs[0] == logs[1]
    assert any(t == 2.0 for t, _ in logs[0]) is False  # nothing at exactly ``until`` ran (it comes after the end)
    assert len(logs[0]) > 10


def test_runs_without_a_limit_and_to_an_event_as_simpy_does() -> None:
    for until in (None, "event"):
        logs = []
        for env in (simpy.Environment(), Kernel()):
            log: list[tuple[float, str]] = []
            _program(env, 3, log)
            if until is None:
                env.run()
            else:
                env.run(env.timeout(1.5))
            logs.append((log, env.now))
        assert logs[0] == logs[1]


def test_an_unhandled_failure_ends_the_run_in_both() -> None:
    for env in (simpy.Environment(), Kernel()):
        def fail(env: simpy.Environment = env) -> Generator[simpy.Event, Any, None]:
            yield env.timeout(1.0)
            raise KeyError("lost")

        env.process(fail())
        with pytest.raises(KeyError, match="lost"):
            env.run(until=5.0)
        assert env.now == 1.0
    with pytest.raises(ValueError, match="Negative delay"):
        Kernel().timeout(-1.0)
    with pytest.raises(ValueError, match="must be greater"):
        Kernel(initial_time=3.0).run(until=2.0)


def test_the_model_gives_the_same_records_on_either_loop() -> None:
    sc = load_scenario(SCENARIOS / "rotherham_2016.yaml", ["simulation.duration_days=30", "simulation.warmup_days=20"])
    recs = [build_records(Model(sc, Streams(5, 1), env_factory=factory).run())
            for factory in (simpy.Environment, Kernel)]
    assert recs[0].cols.keys() == recs[1].cols.keys()
    for name, col in recs[0].cols.items():
        np.testing.assert_array_equal(col, recs[1].cols[name], err_msg=name)


@pytest.mark.parametrize("seed", range(6))
def test_tasks_run_the_same_events_as_processes(seed: int) -> None:
    """Workers, a signal, interrupts and conditions: as tasks started ``soon`` they log exactly what processes do."""
    logs = []
    for start in (_process, _task):
        log: list[tuple[float, str]] = []
        env = Kernel(initial_time=-1.0)
        _program(env, seed, log, start)
        env.run(until=2.0)
        logs.append(log)
    assert logs[0] == logs[1]
    assert any("interrupted" in what for _, what in logs[0])  # the interrupt path was exercised


def _spawner(env: simpy.Environment, seed: int, log: list[tuple[float, str]], tasks: bool,
             ) -> Generator[simpy.Event, Any, None]:
    """A loop starting children at times on a coarse grid (many ties), each child waiting on the same grid and
    taking from a shared counter; as tasks, the loop queues its next timeout before a child starts at once."""
    rng = random.Random(seed)
    delays = [rng.randint(0, 2) * 0.5 for _ in range(40)]
    counter = [0]

    def child(k: int) -> Generator[simpy.Event, Any, None]:
        for step in range(3):
            counter[0] += 1
            log.append((env.now, f"c{k} step {step} takes {counter[0]}"))
            yield env.timeout(rng.randint(0, 2) * 0.5)

    if not tasks:
        for k, d in enumerate(delays):
            yield env.timeout(d)
            env.process(child(k))
        return
    nxt = env.timeout(delays[0])
    for k in range(len(delays)):
        yield nxt
        if k + 1 < len(delays):
            nxt = env.timeout(delays[k + 1])
        Task(env, child(k))


@pytest.mark.parametrize("seed", range(6))
def test_a_task_started_at_once_after_the_next_timeout_keeps_simpys_order(seed: int) -> None:
    """The rule ``Model._timed`` relies on: started at once after its caller has queued its next timeout, a task
    runs its first step where SimPy's ``Initialize`` would have run it, so every tie resolves the same way."""
    logs = []
    for tasks in (False, True):
        log: list[tuple[float, str]] = []
        env = Kernel()
        env.process(_spawner(env, seed, log, tasks))
        env.run(until=30.0)
        logs.append(log)
    assert logs[0] == logs[1]
    assert len({t for t, _ in logs[0]}) < len(logs[0]) / 2  # ties are the rule, not the exception


def test_a_task_started_inside_another_leaves_it_the_active_process() -> None:
    """A task started at once runs inside its caller's step: afterwards the caller must still be the active process
    (the model files ``env.active_process`` to interrupt later; losing it would lose the interrupt)."""
    env = Kernel()
    seen: list[object] = []

    def inner() -> Generator[simpy.Event, Any, None]:
        yield env.timeout(1.0)

    def outer() -> Generator[simpy.Event, Any, None]:
        yield env.timeout(0.5)
        Task(env, inner())
        seen.append(env.active_process)
        try:
            yield env.timeout(5.0)
        except simpy.Interrupt as exc:
            seen.append((env.now, exc.cause))

    task = Task(env, outer())

    def interrupter() -> Generator[simpy.Event, Any, None]:
        yield env.timeout(2.0)
        task.interrupt("now")

    Task(env, interrupter())
    env.run(until=10.0)
    assert seen == [task, (2.0, "now")]
    assert not task.is_alive
    with pytest.raises(RuntimeError, match="terminated"):
        task.interrupt("again")


def test_a_finished_task_is_freed_by_reference_counting() -> None:
    """No reference cycle through a task (a bound method kept on it was one): a run's tens of thousands of finished
    tasks must go when their last event does, not wait for the garbage collector, which then walks every live
    patient again and again (that cycle cost a reference replication ~20% of its time)."""
    import gc

    env = Kernel()

    def wait() -> Generator[simpy.Event, Any, None]:
        yield env.timeout(1.0)

    def tasks() -> int:
        return sum(isinstance(o, Task) for o in gc.get_objects())

    was = gc.isenabled()
    gc.collect()  # other tests' garbage
    gc.disable()
    try:
        before = tasks()
        for _ in range(3):
            Task(env, wait())
        assert tasks() == before + 3
        env.run(until=2.0)
        assert tasks() == before
    finally:
        if was:
            gc.enable()

"""SimPy's environment with a leaner event loop: the same events in the same order, less work per event.

Why: a replication schedules ~190,000 events on the reference network (issue 16), and SimPy's ``run(until)``
spends a method call on ``step()`` and on ``schedule()`` for each, builds every ``Timeout`` through a bound-class
call and its ``__init__``, and serves ``now`` through a property the model reads ~2 times per event.  ``Kernel`` is
a ``simpy.Environment`` (every SimPy event, process, condition and interrupt works as before) that

* runs to a time with the loop of ``step()`` inlined;
* creates a timeout by filling the ``Timeout`` object and pushing it on the queue directly;
* keeps ``now`` as a plain attribute, set with SimPy's ``_now`` wherever time moves.

Events are queued exactly as SimPy queues them, as ``(time, priority, event id, event)`` with ids from the same
counter, so the order of events, and with it every result, is SimPy's to the bit (``tests/test_kernel.py``).
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from heapq import heappop, heappush
from types import MethodType
from typing import Any

import simpy
from simpy.core import EmptySchedule, StopSimulation
from simpy.events import NORMAL, URGENT, AllOf, AnyOf, Event, EventPriority, Interrupt, Process, Timeout


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector inside the block, and restore it after (nested pauses are no-ops).

    Why: a replication's objects (patients, events, tasks, record columns) form no reference cycles and go by
    reference counting, while every collection walks all of them again.  Objects created with the collector off
    still sit in its youngest generation, so the first collections after it comes back on walk the whole run's
    patients (~0.2 s of a Rotherham replication of ~1.4 s CPU), whichever code allocates next pays for it.
    """
    paused = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


class Kernel(simpy.Environment):
    """A ``simpy.Environment`` with the event loop of ``run(until=<time>)`` and ``timeout`` inlined."""

    now: float = 0.0  # a plain attribute here, a property in SimPy

    def __init__(self, initial_time: float = 0.0):
        super().__init__(initial_time)
        self.now = initial_time
        # SimPy binds these only for its own class (BoundClass.bind_early reads the class's own namespace)
        self.process = MethodType(Process, self)  # type: ignore[method-assign]
        self.event = MethodType(Event, self)  # type: ignore[method-assign]
        self.all_of = MethodType(AllOf, self)  # type: ignore[method-assign]
        self.any_of = MethodType(AnyOf, self)  # type: ignore[method-assign]

    def timeout(self, delay: float = 0.0, value: Any = None) -> Timeout:
        """A ``Timeout`` of ``delay``, scheduled as ``Timeout.__init__`` schedules it."""
        if delay < 0:
            raise ValueError(f"Negative delay {delay}")
        ev = Timeout.__new__(Timeout)
        ev.env = self
        ev.callbacks = []
        ev._value = value
        ev._delay = delay
        ev._ok = True
        heappush(self._queue, (self._now + delay, NORMAL, next(self._eid), ev))
        return ev

    def step(self) -> None:
        """SimPy's ``step``, keeping ``now`` in step with ``_now``."""
        try:
            self._now, _, _, event = heappop(self._queue)
        except IndexError:
            raise EmptySchedule from None
        self.now = self._now
        callbacks, event.callbacks = event.callbacks, None  # type: ignore[assignment]
        try:
            for callback in callbacks:
                callback(event)
        except StopSimulation:
            event.callbacks = callbacks[callbacks.index(callback) + 1:]
            self.schedule(event, EventPriority(URGENT - 1))
            raise
        if not event._ok and not hasattr(event, "_defused"):
            _crash(event)

    def run(self, until: float | Event | None = None) -> Any:
        """Run to a time with the loop inlined; anything else (an event, or no limit) runs through SimPy's ``run``."""
        if until is None or isinstance(until, Event):
            return super().run(until)
        at = float(until)
        if at <= self._now:
            raise ValueError(f"until ({at}) must be greater than the current simulation time")
        # as SimPy does: an urgent event at ``at``, so nothing scheduled at ``at`` itself runs
        stop = Event(self)
        stop._ok = True
        stop._value = None
        heappush(self._queue, (at, URGENT, next(self._eid), stop))
        queue = self._queue
        while True:
            t, _, _, event = heappop(queue)
            self._now = self.now = t
            if event is stop:
                stop.callbacks = None  # type: ignore[assignment]
                return None
            callbacks, event.callbacks = event.callbacks, None  # type: ignore[assignment]
            for callback in callbacks:
                callback(event)
            if not event._ok and not hasattr(event, "_defused"):
                _crash(event)


def _crash(event: Event) -> None:
    """A failed event nobody handled ends the run, as in SimPy (a fresh copy of its exception, caused by it)."""
    exc = type(event._value)(*event._value.args)
    exc.__cause__ = event._value
    raise exc


def urgent(env: simpy.Environment, callback: Callable[[Event], None]) -> Event:
    """Call ``callback`` on an urgent event now: where and when SimPy's ``Initialize`` would start a process
    created here (before any normal event at this instant, after urgent ones already queued)."""
    ev = Event(env)
    ev._ok = True
    ev._value = None
    ev.callbacks.append(callback)
    env.schedule(ev, URGENT)
    return ev


class Task:
    """A generator driven by event callbacks: a ``simpy.Process`` without the events nobody waits for.

    Why: a SimPy process costs two kernel events besides its waits, an ``Initialize`` event to start it and
    the process's own event when it ends, and the model starts one per stay and per readmission while nobody
    ever waits for one to end.  A ``Task`` resumes its generator exactly as ``Process._resume`` does (the
    value of each event it waited for sent in, a failed event's exception thrown in, an event already
    processed passed straight back), but

    * starts at once, inside the caller (``Task(env, gen)``), or, with ``soon=True``, on an urgent event
      scheduled as SimPy's ``Initialize`` is (same priority, same event id, so the same order of events);
    * schedules nothing when its generator ends (an error propagates out of the run, as an unhandled
      failed process does);
    * is interrupted as a process is (``interrupt``: an urgent event that throws ``simpy.Interrupt`` in),
      and is ``env.active_process`` while it runs, so code written for processes works unchanged.

    Starting at once moves the events the generator's first step schedules ahead of those the caller
    schedules after the call: callers start a task last where order at equal times matters (see
    ``Model._arrive``).
    """

    __slots__ = ("env", "gen", "target")

    def __init__(self, env: simpy.Environment, gen: Generator[Event, Any, Any], soon: bool = False):
        self.env = env
        self.gen = gen
        self.target: Event | None = None
        if soon:
            self.target = urgent(env, self._run)
        else:
            self._run(None)

    @property
    def is_alive(self) -> bool:
        """True until the generator has ended (it waits for an event, or is about to start)."""
        return self.target is not None

    def _run(self, event: Event | None) -> None:
        env = self.env
        caller = env._active_proc  # a task started at once runs inside its caller's step, which goes on after it
        env._active_proc = self  # type: ignore[assignment]
        gen = self.gen
        while True:
            try:
                if event is None:
                    nxt = gen.send(None)
                elif event._ok:
                    nxt = gen.send(event._value)
                else:  # as SimPy does: the process handles the failed event (its own copy of the exception)
                    event._defused = True
                    exc = type(event._value)(*event._value.args)
                    exc.__cause__ = event._value
                    nxt = gen.throw(exc)
            except StopIteration:
                self.target = None
                break
            if nxt.callbacks is not None:
                nxt.callbacks.append(self._run)  # a bound method each time: one kept on self would be a cycle
                self.target = nxt
                break
            event = nxt  # already processed: its value goes straight back in
        env._active_proc = caller

    def interrupt(self, cause: Any = None) -> None:
        """Throw ``simpy.Interrupt(cause)`` into the generator on an urgent event, as ``Process.interrupt`` does."""
        if not self.is_alive:
            raise RuntimeError(f"{self.gen} has terminated and cannot be interrupted.")
        active: object = self.env.active_process
        if active is self:
            raise RuntimeError("A process is not allowed to interrupt itself.")
        ev = Event(self.env)
        ev._ok = False
        ev._value = Interrupt(cause)
        ev._defused = True
        ev.callbacks.append(self._interrupted)
        self.env.schedule(ev, URGENT)

    def _interrupted(self, event: Event) -> None:
        if self.target is None:  # ended meanwhile (several interrupts at one instant)
            return
        assert self.target.callbacks is not None
        self.target.callbacks.remove(self._run)  # equal to the one appended (same task, same function)
        self._run(event)

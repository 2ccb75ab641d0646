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

from heapq import heappop, heappush
from types import MethodType
from typing import Any

import simpy
from simpy.core import EmptySchedule, StopSimulation
from simpy.events import NORMAL, URGENT, AllOf, AnyOf, Event, EventPriority, Process, Timeout


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

"""OPEL escalation: levels 1-4 from system state, with hysteresis and delayed, costed actions.

NHS England's Operational Pressures Escalation Levels run from 1 (steady) to
4 (extreme pressure).  Local triggers are not in the seed documents (SF §6),
so rules and actions come from the scenario.  The controller reads live
state from the model at set times of day, decides the level, and asks the
model to start or stop actions; the model owns capacity and discharge rules.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from typing import Any, Protocol

import simpy

from flowsim.model.capacity import Group, Pool
from flowsim.scenario.schema import Action, Escalation, LevelRule


class EscalationHost(Protocol):
    """What the controller needs from the model: live state to read and the two action hooks.

    A protocol rather than an import of ``Model``, because the model creates the controller: importing it back
    would tie the two modules into a circle."""

    env: simpy.Environment
    t0: float
    t1: float
    n_delayed: int
    acute_pool: Pool
    acute: Group

    def start_action(self, action: Action) -> None:
        """Put an escalation action into force."""

    def stop_action(self, action: Action) -> None:
        """Take an escalation action out of force."""

#: Action log events, in the order an action can go through them.
REQUESTED, STARTED, STOPPED, CANCELLED = "requested", "started", "stopped", "cancelled"


class EscalationController:
    """Evaluates the OPEL level for one replication and drives the actions of each level."""

    def __init__(self, model: EscalationHost, spec: Escalation):
        self.m = model
        self.spec = spec
        self.level = 1
        self.since = model.t0
        self.level_log: list[tuple[float, int]] = [(model.t0, 1)]
        self.action_log: list[tuple[float, int, str]] = []
        self._pending: dict[int, int] = {}
        self._active: set[int] = set()
        self._token = 0
        self._rules: list[tuple[int, LevelRule]] = sorted(spec.levels.items(), reverse=True)
        model.env.process(self._clock())

    # ------------------------------------------------------------------ state
    def metrics(self) -> dict[str, float]:
        """The system state the rules read (the same names as the triggers' ``metric``)."""
        m = self.m
        pool = m.acute_pool
        cap = pool.capacity
        occ = 100.0 * pool.busy / cap if 0 < cap < math.inf else (math.inf if pool.busy else 0.0)
        queue = m.acute.queue
        longest = 24.0 * (m.env.now - queue[0][0].arrival) if queue else 0.0
        return {"acute_occupancy_pct": occ, "ed_boarding": float(len(queue)),
                "ed_longest_wait_hours": longest, "delayed_patients": float(m.n_delayed)}

    def target(self) -> int:
        """The highest level whose rule holds now (1 if none)."""
        values = self.metrics()
        for level, rule in self._rules:
            if rule.any is not None and any(values[t.metric] > t.above for t in rule.any):
                return level
            if rule.all is not None and all(values[t.metric] > t.above for t in rule.all):
                return level
        return 1

    # ------------------------------------------------------------------ processes
    def _clock(self) -> Generator[simpy.Event, Any, None]:
        env = self.m.env
        hours = sorted(set(self.spec.evaluate_at_hours))
        for day in range(math.floor(self.m.t0), math.ceil(self.m.t1) + 1):
            for h in hours:
                t = day + h / 24.0
                if t < self.m.t0:
                    continue
                if t >= self.m.t1:
                    return
                yield env.timeout(t - env.now)
                self.evaluate()

    def evaluate(self) -> None:
        """Raise at once to a higher target; lower only after the current level's hold time."""
        target = self.target()
        now = self.m.env.now
        if target > self.level or (target < self.level and now - self.since >= self.spec.hold_days - 1e-12):
            self._set_level(target, now)

    def _set_level(self, new: int, now: float) -> None:
        old = self.level
        self.level = new
        self.since = now
        self.level_log.append((now, new))
        for i, action in enumerate(self.spec.actions):
            if old < action.level <= new:
                self._request(i, now)
            elif new < action.level <= old:
                self._stop(i, now)

    def _request(self, i: int, now: float) -> None:
        delay = self.spec.actions[i].delay_hours / 24.0
        if delay <= 0:
            self._start(i, now)
            return
        self._token += 1
        self._pending[i] = self._token
        self.action_log.append((now, i, REQUESTED))
        self.m.env.process(self._after_delay(i, self._token, delay))

    def _after_delay(self, i: int, token: int, delay: float) -> Generator[simpy.Event, Any, None]:
        yield self.m.env.timeout(delay)
        if self._pending.get(i) == token:
            del self._pending[i]
            self._start(i, self.m.env.now)

    def _start(self, i: int, now: float) -> None:
        self._active.add(i)
        self.action_log.append((now, i, STARTED))
        self.m.start_action(self.spec.actions[i])

    def _stop(self, i: int, now: float) -> None:
        if i in self._pending:
            del self._pending[i]
            self.action_log.append((now, i, CANCELLED))
        elif i in self._active:
            self._active.discard(i)
            self.action_log.append((now, i, STOPPED))
            self.m.stop_action(self.spec.actions[i])

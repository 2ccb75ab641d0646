"""OPEL escalation as a command centre runs it: levels with hysteresis, actions that take time and last.

NHS England's Operational Pressures Escalation Levels run from 1 (steady) to
4 (extreme pressure).  Local triggers are not in the seed documents (SF §6),
so rules and actions come from the scenario.  The controller reads live
state from its host (the model) at set times of day, decides the level, and
asks the host to start or stop actions; the host owns capacity and discharge
rules.

Why actions are a small state machine rather than on/off with the level: a
real escalation ward is staffed for days, not hours, and closes when its last
patient has gone.  An action that stops the moment its level drops (and a
trigger that reads occupancy against the beds it has just opened) flaps open
and shut, and its cost and "days at OPEL 3" mean nothing.  Each action here is
``off`` -> ``pending`` (its delay) -> ``on`` -> [``standing down``] ->
[``closing``, until its places are empty] -> ``off``, with a minimum time on.

The controller depends only on :class:`EscalationHost`, so the model module
and this one do not import each other.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from enum import Enum
from typing import Any, Protocol

import simpy

from flowsim.scenario.schema import Action, Escalation, LevelRule

#: Action log events.  The first four are the life of a simple action; the rest appear with
#: minimum durations, stand-down delays and close-when-empty.
REQUESTED, STARTED, STOPPED, CANCELLED = "requested", "started", "stopped", "cancelled"
STANDING_DOWN, RESUMED, CLOSING = "standing_down", "resumed", "closing"


class EscalationHost(Protocol):
    """What the controller needs from the model it escalates."""

    env: simpy.Environment
    t0: float
    t1: float

    def escalation_metrics(self) -> dict[str, float]:
        """Live values of every trigger metric (see ``schema.Trigger``)."""

    def start_action(self, action: Action) -> None:
        """Put an action in force (add places, extend discharge rules, cancel electives)."""

    def stop_action(self, action: Action) -> None:
        """Take an action out of force; places it added close to new patients at once."""

    def places_in_use(self, action: Action) -> bool:
        """After ``stop_action``: are patients still in the places the action added?"""

    def watch_release(self, target: str, callback: Callable[[], bool]) -> None:
        """Call ``callback`` after each release of a place at ``target`` until it returns True."""


class _State(Enum):
    OFF = "off"
    PENDING = "pending"
    ON = "on"
    STANDING_DOWN = "standing_down"
    CLOSING = "closing"


class EscalationController:
    """Evaluates the OPEL level for one replication and drives every action's state machine."""

    def __init__(self, host: EscalationHost, spec: Escalation):
        self.m = host
        self.spec = spec
        self.level = 1
        self.since = host.t0
        self.level_log: list[tuple[float, int]] = [(host.t0, 1)]
        self.action_log: list[tuple[float, int, str]] = []
        self._state: list[_State] = [_State.OFF] * len(spec.actions)
        self._token: list[int] = [0] * len(spec.actions)
        self._on_since: list[float] = [math.nan] * len(spec.actions)
        self._rules: list[tuple[int, LevelRule]] = sorted(spec.levels.items(), reverse=True)
        host.env.process(self._clock())

    # ------------------------------------------------------------------ state
    def target(self, values: dict[str, float]) -> int:
        """The highest level whose rule holds for ``values`` (1 if none)."""
        for level, rule in self._rules:
            if rule.holds(values):
                return level
        return 1

    def _wanted(self, action: Action, values: dict[str, float]) -> bool:
        if action.level is not None:
            return self.level >= action.level
        assert action.when is not None
        return action.when.holds(values)

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
        """Raise at once to a higher target, lower only after the hold time; then step every action."""
        values = self.m.escalation_metrics()
        target = self.target(values)
        now = self.m.env.now
        if target > self.level or (target < self.level and now - self.since >= self.spec.hold_days - 1e-12):
            self.level = target
            self.since = now
            self.level_log.append((now, target))
        for i, action in enumerate(self.spec.actions):
            self._step(i, self._wanted(action, values), now)

    def _step(self, i: int, wanted: bool, now: float) -> None:
        state = self._state[i]
        if wanted:
            if state is _State.OFF:
                self._request(i, now)
            elif state in (_State.STANDING_DOWN, _State.CLOSING):
                self._resume(i, now)
        elif state is _State.PENDING:
            self._set(i, _State.OFF, now, CANCELLED)
        elif state is _State.ON:
            self._stand_down(i, now)

    def _set(self, i: int, state: _State, now: float, event: str) -> None:
        self._state[i] = state
        self._token[i] += 1  # any timer set for the previous state is now stale
        self.action_log.append((now, i, event))

    def _later(self, i: int, delay: float, fire: Callable[[int, float], None]) -> None:
        token = self._token[i]

        def run() -> Generator[simpy.Event, Any, None]:
            yield self.m.env.timeout(delay)
            if self._token[i] == token:
                fire(i, self.m.env.now)

        self.m.env.process(run())

    def _request(self, i: int, now: float) -> None:
        delay = self.spec.actions[i].delay_hours / 24.0
        if delay <= 0:
            self._start(i, now)
            return
        self._set(i, _State.PENDING, now, REQUESTED)
        self._later(i, delay, self._start)

    def _start(self, i: int, now: float) -> None:
        self._set(i, _State.ON, now, STARTED)
        self._on_since[i] = now
        self.m.start_action(self.spec.actions[i])

    def _stand_down(self, i: int, now: float) -> None:
        action = self.spec.actions[i]
        end = max(now + action.stand_down_hours / 24.0, self._on_since[i] + action.min_duration_hours / 24.0)
        if end <= now + 1e-12:
            self._end(i, now)
            return
        self._set(i, _State.STANDING_DOWN, now, STANDING_DOWN)
        self._later(i, end - now, self._end)

    def _resume(self, i: int, now: float) -> None:
        if self._state[i] is _State.CLOSING:  # the places closing to new patients open again
            self.m.start_action(self.spec.actions[i])
        self._set(i, _State.ON, now, RESUMED)

    def _end(self, i: int, now: float) -> None:
        action = self.spec.actions[i]
        self.m.stop_action(action)
        if not (action.close_when_empty and self.m.places_in_use(action)):
            self._set(i, _State.OFF, now, STOPPED)
            return
        self._set(i, _State.CLOSING, now, CLOSING)
        token = self._token[i]

        def emptied() -> bool:
            if self._token[i] != token:  # resumed, or already ended
                return True
            if self.m.places_in_use(action):
                return False
            self._set(i, _State.OFF, self.m.env.now, STOPPED)
            return True

        assert action.target is not None
        self.m.watch_release(action.target, emptied)

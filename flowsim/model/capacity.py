"""Capacity pools with one FIFO queue: beds, packages, assessment staff.

Why not ``simpy.Resource``: we need capacity that changes over time without
evicting anyone, several services serving one queue in preference order
(a pathway with several bed bases), cohort eligibility, and an immediate
grant that costs *no* kernel event when a slot is free.  A granted request
from the queue costs exactly one event (``succeed``), which keeps the
per-patient path lean.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np
import simpy


class Pool:
    """One capacity-limited service. ``capacity`` may be ``math.inf``."""

    __slots__ = ("accepts", "busy", "capacity", "home", "index", "name")

    def __init__(self, name: str, capacity: float, accepts: frozenset[int] | None = None, index: int = 0,
                 home: frozenset[int] | None = None):
        self.name = name
        self.capacity = capacity
        self.busy = 0
        self.accepts = accepts  # cohort indices allowed; None means everyone
        self.index = index
        self.home = home  # cohorts of this pool's own locality: served before neighbours' patients

    def admits(self, patient: Any) -> bool:
        """Whether ``patient`` may use this pool: their cohort is eligible, and they are not bound for another
        service of the pathway (a step-up referral to one named service)."""
        return (self.accepts is None or patient.cohort in self.accepts) and (patient.only < 0
                                                                            or patient.only == self.index)

    def room(self, patient: Any, now: float) -> bool:
        """Can this pool take ``patient`` now?"""
        return self.busy < self.capacity and self.admits(patient)

    def take(self, patient: Any, now: float) -> None:
        """Give ``patient`` a slot (the caller has checked there is room)."""
        self.busy += 1
        patient.pool = self

    def drop(self, patient: Any) -> None:
        """Forget a departing patient (nothing to forget for a plain pool)."""


class VisitPool(Pool):
    """P1 capacity counted in home visits a day rather than packages.

    A package needs ``start`` visits a day on its first day, tapering linearly
    to ``end`` by the end of its stay; a new package is taken when the visits
    already committed plus its ``start`` fit in ``capacity`` (visits a day).
    ``busy`` still counts packages, for occupancy reports.
    """

    __slots__ = ("active", "end", "los", "start")

    def __init__(self, name: str, capacity: float, accepts: frozenset[int] | None, index: int, *,
                 home: frozenset[int] | None, start: float, end: float, los: Any):
        super().__init__(name, capacity, accepts, index, home)
        self.start = start
        self.end = end
        self.los = los
        self.active: dict[int, tuple[float, float]] = {}  # patient id -> (package start, length)

    def rate(self, t0: float, length: float, now: float) -> float:
        """Visits a day at ``now`` for a package started at ``t0`` lasting ``length`` days (linear taper)."""
        frac = 1.0 if length <= 0 else min(max((now - t0) / length, 0.0), 1.0)
        return self.start + (self.end - self.start) * frac

    def load(self, now: float) -> float:
        """Visits a day committed to the packages in progress."""
        return sum(self.rate(t0, length, now) for t0, length in self.active.values())

    def room(self, patient: Any, now: float) -> bool:
        """Can this pool take ``patient`` now: eligible, and their first day's visits fit?"""
        return self.admits(patient) and self.load(now) + self.start <= self.capacity + 1e-9

    def take(self, patient: Any, now: float) -> None:
        """Give ``patient`` a package and commit its visits."""
        length = float(self.los.ppf(np.array([patient.u_los]))[0])
        patient.remaining = patient.package_len = length
        self.add(patient.id, now, length)
        self.busy += 1
        patient.pool = self

    def add(self, pid: int, t0: float, length: float) -> None:
        """Commit a package's visits (also used for patients already in place at the start)."""
        self.active[pid] = (t0, length)

    def drop(self, patient: Any) -> None:
        """Forget a departing patient's package."""
        self.active.pop(patient.id, None)

    def next_room(self, now: float) -> float | None:
        """Earliest time >= now at which a new package fits, if nothing else changes (None: never)."""
        t = now
        while True:
            gap = self.capacity - self.start - self.load(t)
            if gap >= -1e-9:
                return t
            tapering = [(t0, length) for t0, length in self.active.values() if length > 0 and t < t0 + length]
            slope = sum((self.end - self.start) / length for _, length in tapering)
            if not tapering or slope >= 0:
                return None
            t_fit = t + gap / slope
            t_next = min(t0 + length for t0, length in tapering)
            if t_fit <= t_next:
                return t_fit
            t = t_next


class HoursPool(Pool):
    """Long-term home care counted in care hours a week rather than packages.

    Each package takes its own hours (``patient.care_hours``, drawn when it is asked for); one is
    granted when the hours already committed plus its own fit in ``capacity``.  ``busy`` still counts
    packages.  Queued packages are served first come, first served: a large package at the head of
    the queue holds back smaller ones behind it, as a brokerage team working down its list does.
    """

    __slots__ = ("active", "hours")

    def __init__(self, name: str, capacity: float):
        super().__init__(name, capacity)
        self.hours = 0.0
        self.active: dict[int, float] = {}  # patient id -> hours a week

    def room(self, patient: Any, now: float) -> bool:
        """Can this pool take ``patient``'s package now: eligible, and do its hours fit?"""
        return self.admits(patient) and self.hours + patient.care_hours <= self.capacity + 1e-9

    def take(self, patient: Any, now: float) -> None:
        """Commit the package's hours."""
        self.hours += patient.care_hours
        self.active[patient.id] = patient.care_hours
        self.busy += 1
        patient.pool = self

    def drop(self, patient: Any) -> None:
        """Release the package's hours."""
        self.hours -= self.active.pop(patient.id, 0.0)


class Group:
    """A FIFO queue in front of one or more pools tried in preference order.

    Invariant after every call: no queued patient is eligible for a pool with
    a free slot.  So a newcomer may take a free eligible slot at once, and a
    freed slot goes to the first queued patient eligible for it.
    """

    __slots__ = ("_order", "_simple", "_targeted", "_visits", "_wake_token", "_weighted", "env", "name", "on_release",
                 "pools", "queue")

    def __init__(self, env: simpy.Environment, name: str, pools: list[Pool]):
        self.env = env
        self.name = name
        self.pools = pools
        # called with the pool's name after every release (escalation waits for added places to empty)
        self.on_release: Callable[[str], None] | None = None
        self.queue: deque[tuple[Any, simpy.Event]] = deque()
        self._visits = [p for p in pools if isinstance(p, VisitPool)]
        self._weighted = any(isinstance(p, (VisitPool, HoursPool)) for p in pools)
        self._simple = len(pools) == 1 and pools[0].accepts is None and not self._weighted
        self._wake_token: dict[str, int] = {}
        self._targeted = False  # set by ``target()``: some queued patients may use only one named pool
        # localities: a patient tries their own locality's pools first, then the rest in listed order
        self._order: dict[int, list[Pool]] = {}
        if any(p.home for p in pools):
            cohorts: set[int] = set().union(*(p.home or frozenset() for p in pools),
                                            *(p.accepts or frozenset() for p in pools))
            for c in cohorts:
                self._order[c] = sorted(pools, key=lambda p, c=c: not (p.home and c in p.home))  # type: ignore[misc]

    def request(self, patient: Any) -> simpy.Event | None:
        """Grant a slot now (returns None, sets ``patient.pool``) or queue (returns an event)."""
        if self._simple:
            pool = self.pools[0]
            if pool.busy < pool.capacity:
                pool.busy += 1
                patient.pool = pool
                return None
        else:
            now = self.env.now
            for pool in self._order.get(patient.cohort, self.pools):
                if pool.room(patient, now) and not (self._weighted and self._queued_ahead(pool, patient)):
                    pool.take(patient, now)
                    return None
        ev = simpy.Event(self.env)
        queue = self.queue
        prio = patient.prio
        if not queue or queue[-1][0].prio <= prio:
            queue.append((patient, ev))
        else:  # a step-up referral ranked before or after step-down patients: behind its own rank
            i = len(queue)
            while i > 0 and queue[i - 1][0].prio > prio:
                i -= 1
            queue.insert(i, (patient, ev))
        for pool in self._visits:
            self._wake(pool)
        return ev

    def _queued_ahead(self, pool: Pool, patient: Any) -> bool:
        """Would ``_dispatch_weighted(pool)`` reach a queued package before this newcomer?

        A visit or hours pool serves its queue first come, first served and stops at the first package that
        does not fit (``_dispatch_weighted``), so a small newcomer whose hours happen to fit must not slip past a
        larger package already waiting for the same pool: it would be granted on arrival what it would be refused
        had it arrived a moment earlier and queued.  Ahead means: queued at the newcomer's rank or better
        (``prio``), admitted by the pool and, when the pool has a home locality the newcomer belongs to, from that
        locality too (the pool serves its own locality first).
        """
        if not isinstance(pool, (VisitPool, HoursPool)):
            return False  # a plain pool keeps the group's invariant: nobody queued is eligible for its free slot
        home = pool.home if pool.home and patient.cohort in pool.home else None  # served in the first pass
        prio = patient.prio
        for queued, _ in self.queue:
            if queued.prio > prio:
                break  # the queue is in rank order: the rest would join behind the newcomer
            if pool.admits(queued) and (home is None or queued.cohort in home):
                return True
        return False

    def target(self) -> None:
        """Some patients of this group are bound for one named pool: check each grant against it."""
        self._simple = False
        self._targeted = True

    def withdraw(self, patient: Any, ev: simpy.Event) -> None:
        """Take a patient who gives up out of the queue (nobody else can take a slot because of it, except
        behind a weighted pool's first-come head of line, which is re-dispatched)."""
        try:
            self.queue.remove((patient, ev))
        except ValueError:
            return
        for pool in self.pools:
            if self._weighted and isinstance(pool, (VisitPool, HoursPool)):
                self._dispatch_weighted(pool)

    def try_acquire(self, patient: Any) -> bool:
        """Take a slot only if one is free now (never queue): for scheduled electives."""
        for pool in self.pools:
            if pool.busy < pool.capacity and pool.admits(patient):
                pool.busy += 1
                patient.pool = pool
                return True
        return False

    def release(self, pool: Pool, patient: Any = None) -> None:
        """Free ``patient``'s slot and hand it to the first queued patient who may use it."""
        pool.busy -= 1
        if patient is not None:
            pool.drop(patient)
        if self.queue:
            self._dispatch(pool)
        if self.on_release is not None:
            self.on_release(pool.name)

    def set_capacity(self, pool: Pool, capacity: float) -> None:
        """Change a pool's capacity (never evicting anyone) and fill any room it makes."""
        pool.capacity = capacity
        if self.queue:
            self._dispatch(pool)

    def _dispatch(self, pool: Pool) -> None:
        queue = self.queue
        if isinstance(pool, (VisitPool, HoursPool)):
            self._dispatch_weighted(pool)
            return
        if pool.accepts is None and not pool.home and not self._targeted:
            while queue and pool.busy < pool.capacity:
                patient, ev = queue.popleft()
                pool.busy += 1
                patient.pool = pool
                ev.succeed()
            return
        # the pool's own locality first (in queue order), then any other eligible patient
        for wanted in ((pool.home, None) if pool.home else (None,)):
            i = 0
            while i < len(queue) and pool.busy < pool.capacity:
                patient, ev = queue[i]
                if pool.admits(patient) and (wanted is None or patient.cohort in wanted):
                    del queue[i]
                    pool.busy += 1
                    patient.pool = pool
                    ev.succeed()
                else:
                    i += 1

    def _dispatch_weighted(self, pool: VisitPool | HoursPool) -> None:
        """Admit queued packages in order while their visits (or hours) fit; then wake when the next one will."""
        now = self.env.now
        queue = self.queue
        for wanted in ((pool.home, None) if pool.home else (None,)):
            i = 0
            while i < len(queue):
                patient, ev = queue[i]
                if (wanted is not None and patient.cohort not in wanted) or not pool.admits(patient):
                    i += 1
                    continue
                if not pool.room(patient, now):
                    break  # first come, first served: later packages need the same start rate
                del queue[i]
                pool.take(patient, now)
                ev.succeed()
        if isinstance(pool, VisitPool):
            self._wake(pool)

    def _wake(self, pool: VisitPool) -> None:
        """Schedule one dispatch at the moment tapering visits make room for the next package."""
        token = self._wake_token.get(pool.name, 0) + 1
        self._wake_token[pool.name] = token
        if not any(pool.admits(p) for p, _ in self.queue):
            return
        now = self.env.now
        t = pool.next_room(now)
        if t is None or t <= now:
            return

        def fire(_event: simpy.Event) -> None:
            if self._wake_token.get(pool.name) == token:
                self._dispatch_weighted(pool)

        self.env.timeout(t - now).callbacks.append(fire)

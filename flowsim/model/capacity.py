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
from typing import Any

import simpy


class Pool:
    """One capacity-limited service. ``capacity`` may be ``math.inf``."""

    __slots__ = ("name", "capacity", "busy", "accepts", "index")

    def __init__(self, name: str, capacity: float, accepts: frozenset[int] | None = None, index: int = 0):
        self.name = name
        self.capacity = capacity
        self.busy = 0
        self.accepts = accepts  # cohort indices allowed; None means everyone
        self.index = index

    def admits(self, cohort: int) -> bool:
        return self.accepts is None or cohort in self.accepts


class Group:
    """A FIFO queue in front of one or more pools tried in preference order.

    Invariant after every call: no queued patient is eligible for a pool with
    a free slot.  So a newcomer may take a free eligible slot at once, and a
    freed slot goes to the first queued patient eligible for it.
    """

    __slots__ = ("env", "name", "pools", "queue", "_simple")

    def __init__(self, env: simpy.Environment, name: str, pools: list[Pool]):
        self.env = env
        self.name = name
        self.pools = pools
        self.queue: deque[tuple[Any, simpy.Event]] = deque()
        self._simple = len(pools) == 1 and pools[0].accepts is None

    def request(self, patient: Any) -> simpy.Event | None:
        """Grant a slot now (returns None, sets ``patient.pool``) or queue (returns an event)."""
        if self._simple:
            pool = self.pools[0]
            if pool.busy < pool.capacity:
                pool.busy += 1
                patient.pool = pool
                return None
        else:
            cohort = patient.cohort
            for pool in self.pools:
                if pool.busy < pool.capacity and (pool.accepts is None or cohort in pool.accepts):
                    pool.busy += 1
                    patient.pool = pool
                    return None
        ev = simpy.Event(self.env)
        self.queue.append((patient, ev))
        return ev

    def try_acquire(self, patient: Any) -> bool:
        """Take a slot only if one is free now (never queue): for scheduled electives."""
        for pool in self.pools:
            if pool.busy < pool.capacity and pool.admits(patient.cohort):
                pool.busy += 1
                patient.pool = pool
                return True
        return False

    def release(self, pool: Pool) -> None:
        pool.busy -= 1
        if self.queue:
            self._dispatch(pool)

    def set_capacity(self, pool: Pool, capacity: float) -> None:
        pool.capacity = capacity
        if self.queue:
            self._dispatch(pool)

    def _dispatch(self, pool: Pool) -> None:
        queue = self.queue
        if pool.accepts is None:
            while queue and pool.busy < pool.capacity:
                patient, ev = queue.popleft()
                pool.busy += 1
                patient.pool = pool
                ev.succeed()
            return
        i = 0
        while i < len(queue) and pool.busy < pool.capacity:
            patient, ev = queue[i]
            if patient.cohort in pool.accepts:
                del queue[i]
                pool.busy += 1
                patient.pool = pool
                ev.succeed()
            else:
                i += 1

    @property
    def waiting(self) -> int:
        return len(self.queue)

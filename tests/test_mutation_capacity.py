"""The parts of the capacity layer (``flowsim.model.capacity``) the event-order tests of ``test_capacity.py`` left
untouched, on tiny environments with every grant time worked out by hand.

Why: the mutation run (``docs/mutation.md``) found these behaviours unchecked: home-care capacity counted in care
hours a week (``HoursPool``, first come first served, hours released on leaving), a step-up referral's rank in
the queue (``prio``), a patient giving up their place in the queue (``withdraw``), patients bound for one named
service (``only`` after ``target()``), the release hook escalation listens to (``on_release``), a visit
package's taper (``VisitPool.rate``) and an exact fit of visits at capacity.  Each test drives ``Group`` and its
pools the way the model does, through their public methods, so it survives a rework of the model's internals.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest
import simpy
from test_capacity import Log, Pt, assert_log, run, stay, visit_pool

from flowsim.model.capacity import Group, HoursPool, Pool, VisitPool


# ============================================================================ home care counted in hours
def test_hours_pool_grants_while_the_hours_fit_first_come_first_served() -> None:
    """40 care hours a week.  a (2 h) and b (31 h) fit at 0 (33 h); c (10 h, at 0.5) and d (8 h, at 1) do not
    (43 and 41 > 40) and queue.  a leaves at 2 (31 h): d would fit (39) but waits behind c, which does not
    (41): first come, first served.  b leaves at 3 (0 h): c and then d are granted at 3 (18 h).  e (22 h, at 4)
    fits exactly (40 h) and is granted at once."""
    env = simpy.Environment()
    pool = HoursPool("home_care", 40.0)
    group = Group(env, "LTC", [pool])
    log: Log = []
    for name, h, arrive, hold in (("a", 2.0, 0.0, 2.0), ("b", 31.0, 0.0, 3.0), ("c", 10.0, 0.5, 10.0),
                                  ("d", 8.0, 1.0, 10.0), ("e", 22.0, 4.0, 1.0)):
        env.process(stay(env, group, Pt(name, care_hours=h), arrive, hold, log))
    env.run(until=2.5)
    assert_log(log, [(0, "a", "home_care"), (0, "b", "home_care")])
    assert pool.hours == pytest.approx(31.0) and pool.busy == 1 and len(group.queue) == 2
    env.run(until=4.5)
    assert_log(log, [(0, "a", "home_care"), (0, "b", "home_care"), (3, "c", "home_care"), (3, "d", "home_care"),
                     (4, "e", "home_care")])
    assert pool.hours == pytest.approx(40.0) and pool.busy == 3
    env.run(until=100)
    assert pool.hours == pytest.approx(0.0) and pool.busy == 0 and not pool.active


def test_a_small_newcomer_does_not_slip_past_a_larger_package_already_waiting() -> None:
    """10 care hours a week.  a (8 h) holds from 0 to 1; b (6 h, at 0.2) does not fit (14) and queues.  c (2 h,
    at 0.4) would fit on arrival (10) but b came first: c queues behind b, as it would had it arrived while b
    was at the head of the list.  a leaves at 1: b (6 h) and then c (8 h) are granted at 1.  d (2 h, at 1.5)
    fits (10) with nobody waiting and is granted at once."""
    env = simpy.Environment()
    pool = HoursPool("home_care", 10.0)
    group = Group(env, "LTC", [pool])
    log: Log = []
    for name, h, arrive, hold in (("a", 8.0, 0.0, 1.0), ("b", 6.0, 0.2, 10.0), ("c", 2.0, 0.4, 10.0),
                                  ("d", 2.0, 1.5, 10.0)):
        env.process(stay(env, group, Pt(name, care_hours=h), arrive, hold, log))
    env.run(until=0.5)
    assert_log(log, [(0, "a", "home_care")])
    assert [p.name for p, _ in group.queue] == ["b", "c"] and pool.hours == pytest.approx(8.0)
    env.run(until=5.0)
    assert_log(log, [(0, "a", "home_care"), (1, "b", "home_care"), (1, "c", "home_care"), (1.5, "d", "home_care")])
    assert pool.hours == pytest.approx(10.0) and not group.queue


def test_a_newcomer_of_a_better_rank_or_another_service_is_not_held_back() -> None:
    """The newcomer waits only for packages that would be served before it by the same pool.  10 hours; a (8 h)
    holds; b (6 h, rank 1) queues.  c (2 h, rank 0: a step-up ranked before step-down) would join ahead of b, so
    it is granted at once.  A hours pool ineligible for the queued package does not hold anyone back: e (2 h)
    may use only pool ``other`` (index 1), where f (9 h) waits only for ``main``."""
    env = simpy.Environment()
    pool = HoursPool("home_care", 10.0)
    group = Group(env, "LTC", [pool])
    a, b, c = Pt("a", care_hours=8.0), Pt("b", care_hours=6.0, prio=1), Pt("c", care_hours=2.0, prio=0)
    assert group.request(a) is None and group.request(b) is not None
    assert group.request(c) is None and c.pool is pool and pool.hours == pytest.approx(10.0)

    main, other = HoursPool("main", 10.0), HoursPool("other", 10.0)
    main.index, other.index = 0, 1
    g2 = Group(env, "LTC2", [main, other])
    g2.target()
    x = Pt("x", care_hours=8.0, only=0)
    f = Pt("f", care_hours=9.0, only=0)
    e = Pt("e", care_hours=2.0, only=1)
    assert g2.request(x) is None and g2.request(f) is not None  # f waits for main (17 > 10)
    assert g2.request(e) is None and e.pool is other             # nobody queued for other
    assert not main.room(e, 0.0) and other.room(e, 0.0)          # room checks eligibility too


def test_hours_pool_room_and_release_by_hand() -> None:
    pool = HoursPool("home_care", 10.0)
    a, b = Pt("a", care_hours=6.0), Pt("b", care_hours=4.0)
    assert pool.room(a, 0.0)
    pool.take(a, 0.0)
    assert pool.hours == 6.0 and pool.busy == 1 and a.pool is pool
    assert pool.room(b, 0.0)                       # 6 + 4 = 10: exactly full is allowed
    assert not pool.room(Pt("c", care_hours=4.5), 0.0)
    pool.drop(a)
    assert pool.hours == 0.0 and a.id not in pool.active
    pool.drop(a)                                   # dropping twice releases nothing more
    assert pool.hours == 0.0


# ============================================================================ ranks in the queue
def test_a_lower_rank_queues_ahead_of_higher_ranks_and_behind_its_own() -> None:
    """One slot held by x until 1.  Queued at 0.1, 0.2, 0.3, 0.4: a (rank 1), b (rank 1), c (rank 0), d (rank 0).
    c goes ahead of a and b but stays behind nobody of its rank; d joins behind c.  Grants at 1, 2, 3, 4, 5:
    c, d, a, b (FIFO within a rank)."""
    env = simpy.Environment()
    group = Group(env, "g", [Pool("p", 1)])
    log = run(env, group, [(Pt("x"), 0.0, 1.0), (Pt("a", prio=1), 0.1, 1.0), (Pt("b", prio=1), 0.2, 1.0),
                           (Pt("c", prio=0), 0.3, 1.0), (Pt("d", prio=0), 0.4, 1.0)])
    assert_log(log, [(0, "x", "p"), (1, "c", "p"), (2, "d", "p"), (3, "a", "p"), (4, "b", "p")])


def test_a_higher_rank_joins_at_the_back() -> None:
    env = simpy.Environment()
    group = Group(env, "g", [Pool("p", 1)])
    log = run(env, group, [(Pt("x"), 0.0, 1.0), (Pt("a", prio=0), 0.1, 1.0), (Pt("b", prio=2), 0.2, 1.0),
                           (Pt("c", prio=2), 0.3, 1.0)])
    assert_log(log, [(0, "x", "p"), (1, "a", "p"), (2, "b", "p"), (3, "c", "p")])


# ============================================================================ giving up a place in the queue
def test_withdrawn_patient_is_never_granted_and_the_next_one_is() -> None:
    """One slot held by x until 2; a and b queue; a withdraws at 1 (say, they died): b is granted at 2, a never.
    Withdrawing again, or someone never queued, changes nothing."""
    env = simpy.Environment()
    group = Group(env, "g", [Pool("p", 1)])
    x, a, b = Pt("x"), Pt("a"), Pt("b")
    assert group.request(x) is None
    ev_a, ev_b = group.request(a), group.request(b)
    assert ev_a is not None and ev_b is not None

    def leave() -> Generator[simpy.Event, Any, None]:
        yield env.timeout(1.0)
        group.withdraw(a, ev_a)
        group.withdraw(a, ev_a)
        group.withdraw(Pt("z"), simpy.Event(env))
        yield env.timeout(1.0)
        group.release(x.pool, x)  # type: ignore[arg-type]

    env.process(leave())
    env.run(until=10)
    assert not ev_a.triggered and ev_b.triggered and b.pool is group.pools[0]
    assert not group.queue


def test_withdrawing_the_head_of_a_weighted_queue_lets_the_next_package_in() -> None:
    """Hours pool of 10: a (5 h) and x (3 h) hold 8; b (6 h) and c (3 h) queue.  x leaves at 1 (5 h): c would
    fit (8) but waits behind b (11).  b withdraws at 2: c is granted at once, at 2."""
    env = simpy.Environment()
    pool = HoursPool("hc", 10.0)
    group = Group(env, "LTC", [pool])
    a, x = Pt("a", care_hours=5.0), Pt("x", care_hours=3.0)
    b, c = Pt("b", care_hours=6.0), Pt("c", care_hours=3.0)
    assert group.request(a) is None and group.request(x) is None
    ev_b, ev_c = group.request(b), group.request(c)
    assert ev_b is not None and ev_c is not None
    granted: list[float] = []
    ev_c.callbacks.append(lambda _e: granted.append(env.now))

    def script() -> Generator[simpy.Event, Any, None]:
        yield env.timeout(1.0)
        group.release(pool, x)
        yield env.timeout(1.0)
        group.withdraw(b, ev_b)

    env.process(script())
    env.run(until=1.5)
    assert not ev_c.triggered
    env.run(until=5.0)
    assert granted == [2.0] and c.pool is pool and pool.hours == 8.0
    assert not ev_b.triggered and not group.queue


# ============================================================================ bound for one named service
def test_targeted_patient_waits_for_their_own_service() -> None:
    """Two one-slot services, indices 0 (p) and 1 (q), both busy until 1 (p) and 2 (q).  a may use only q
    (a step-up referral to one named service), b anyone.  p frees at 1: b (not a) takes it; q frees at 2: a."""
    env = simpy.Environment()
    group = Group(env, "g", [Pool("p", 1, index=0), Pool("q", 1, index=1)])
    group.target()
    log = run(env, group, [(Pt("x"), 0.0, 1.0), (Pt("y"), 0.0, 2.0), (Pt("a", only=1), 0.1, 5.0),
                           (Pt("b"), 0.2, 5.0)])
    assert_log(log, [(0, "x", "p"), (0, "y", "q"), (1, "b", "p"), (2, "a", "q")])


def test_targeted_patient_skips_a_free_slot_of_another_service() -> None:
    env = simpy.Environment()
    group = Group(env, "g", [Pool("p", 1, index=0), Pool("q", 1, index=1)])
    group.target()
    log = run(env, group, [(Pt("y"), 0.0, 2.0, ), (Pt("a", only=0), 0.5, 1.0), (Pt("b", only=0), 0.6, 1.0)])
    # y takes p (preferred); a and b both want p only, and q stays free: a at 2, b at 3
    assert_log(log, [(0, "y", "p"), (2, "a", "p"), (3, "b", "p")])


# ============================================================================ the release hook
def test_every_release_calls_the_hook_with_the_pool_name() -> None:
    env = simpy.Environment()
    group = Group(env, "g", [Pool("p", 1), Pool("q", 1)])
    heard: list[tuple[float, str]] = []
    group.on_release = lambda name: heard.append((env.now, name))
    run(env, group, [(Pt("a"), 0.0, 1.0), (Pt("b"), 0.0, 2.0), (Pt("c"), 0.5, 1.0)])
    # a leaves p at 1 -> c takes p until 2; b leaves q at 2; c leaves p at 2
    assert sorted(heard) == [(1.0, "p"), (2.0, "p"), (2.0, "q")]


# ============================================================================ home visits
def test_visit_rate_tapers_linearly_and_stays_at_its_end_rate() -> None:
    pool = visit_pool(10)  # 4 visits a day at first, 1 by the end of the package
    assert pool.rate(0.0, 10.0, 0.0) == 4.0
    assert pool.rate(0.0, 10.0, 5.0) == pytest.approx(2.5)
    assert pool.rate(0.0, 10.0, 10.0) == 1.0
    assert pool.rate(0.0, 10.0, 30.0) == 1.0       # after its length: the end rate
    assert pool.rate(5.0, 10.0, 2.0) == 4.0        # not started yet: the start rate
    assert pool.rate(3.0, 0.0, 3.0) == 1.0         # a zero-length package is at its end rate at once
    pool.add(1, 0.0, 10.0)
    pool.add(2, 5.0, 10.0)
    assert pool.load(5.0) == pytest.approx(2.5 + 4.0)


def test_visits_fitting_exactly_at_capacity_are_granted() -> None:
    """Capacity 8: a's package needs 4 at 0; b's 4 more fits exactly (8 <= 8)."""
    env = simpy.Environment()
    group = Group(env, "P1", [visit_pool(8)])
    log = run(env, group, [(Pt("a"), 0, None), (Pt("b"), 0, None)])
    assert_log(log, [(0, "a", "visits"), (0, "b", "visits")])


def test_next_room_with_room_now_and_a_package_that_stopped_tapering() -> None:
    """Capacity 6.5, a 2-day package from 0 (4 -> 1 visits a day): 4 + 4 > 6.5 at 0; room for 4 more when
    4 - 1.5 t <= 2.5, at t = 1."""
    pool = visit_pool(6.5)
    pool.add(1, 0.0, 2.0)
    assert pool.next_room(0.0) == pytest.approx(1.0)
    assert pool.next_room(1.5) == 1.5


def test_visit_rate_of_a_package_shorter_than_a_day_tapers_too() -> None:
    pool = visit_pool(10)
    assert pool.rate(0.0, 0.5, 0.25) == pytest.approx(2.5)   # half-way through a half-day package


def test_visits_over_capacity_by_less_than_a_visit_are_refused() -> None:
    """Capacity 7.5: a's package needs 4; b's 4 more would make 8 > 7.5, so b waits (tolerance is rounding only)."""
    env = simpy.Environment()
    group = Group(env, "P1", [visit_pool(7.5)])
    a, b = Pt("a"), Pt("b")
    assert group.request(a) is None
    assert group.request(b) is not None


def test_dropping_a_package_twice_forgets_it_once() -> None:
    pool = visit_pool(10)
    p = Pt("a")
    pool.take(p, 0.0)
    pool.drop(p)
    pool.drop(p)
    assert not pool.active and pool.load(0.0) == 0.0


def test_visit_pool_keeps_the_eligibility_index_and_locality_it_is_given() -> None:
    """A visit pool is a pool: cohort 1 only, index 2 for a patient bound to it, home locality {1}."""
    pool = VisitPool("v", 10.0, frozenset({1}), 2, home=frozenset({1}), start=4.0, end=1.0, los=visit_pool(1).los)
    assert pool.accepts == frozenset({1}) and pool.index == 2 and pool.home == frozenset({1})
    assert pool.room(Pt("a", cohort=1), 0.0) and not pool.room(Pt("b", cohort=0), 0.0)
    assert pool.room(Pt("c", cohort=1, only=2), 0.0) and not pool.room(Pt("d", cohort=1, only=0), 0.0)


def test_next_room_exactly_now_after_tapering_has_stopped() -> None:
    """Capacity 5, a 2-day package from 0: at 3 it needs its end rate of 1, and 1 + 4 = 5 fits exactly: now."""
    pool = visit_pool(5)
    pool.add(1, 0.0, 2.0)
    assert pool.next_room(3.0) == 3.0


def test_next_room_of_a_package_shorter_than_a_day() -> None:
    """Capacity 6.5, a half-day package from 0 (4 -> 1 visits a day, slope -6): room for 4 more when
    4 - 6 t <= 2.5, at t = 0.25."""
    pool = visit_pool(6.5)
    pool.add(1, 0.0, 0.5)
    assert pool.next_room(0.0) == pytest.approx(0.25)


def test_next_room_never_comes_when_visits_do_not_taper() -> None:
    """A flat 2 visits a day (start = end): with 3 of capacity and one package in progress, no room ever comes
    by tapering (only a release makes it)."""
    flat = VisitPool("flat", 3.0, None, 0, home=None, start=2.0, end=2.0, los=visit_pool(1).los)
    flat.add(1, 0.0, 10.0)
    assert flat.next_room(0.0) is None
    rising = VisitPool("rising", 3.0, None, 0, home=None, start=2.0, end=3.0, los=visit_pool(1).los)
    rising.add(1, 0.0, 10.0)
    assert rising.next_room(0.0) is None


def test_a_freed_visit_package_goes_to_the_pools_own_locality_first() -> None:
    """One visit pool serving locality 0 first (4 visits a day each, capacity 4: one package at a time).  x
    (locality 0) holds it until 1; n (locality 1) queues at 0.1, h (locality 0) at 0.2.  At 1 the place goes to h,
    the pool's own patient, although n asked first; n gets it when h leaves at 2."""
    env = simpy.Environment()
    pool = VisitPool("v", 4.0, None, 0, home=frozenset({0}), start=4.0, end=1.0, los=visit_pool(1).los)
    group = Group(env, "P1", [pool])
    log = run(env, group, [(Pt("x", cohort=0), 0.0, 1.0), (Pt("n", cohort=1), 0.1, 1.0),
                           (Pt("h", cohort=0), 0.2, 1.0)])
    assert_log(log, [(0, "x", "v"), (1, "h", "v"), (2, "n", "v")])


# ============================================================================ survivors of the second mutation run
def test_a_single_pool_still_checks_eligibility_and_defaults_to_index_0() -> None:
    """A one-pool group takes a fast path only when its pool admits everyone: a pool for cohort 0 alone never
    grants cohort 1, even with free places.  A pool made without an index is the pathway's first (0), so a
    patient bound for service 0 may use it.  The group keeps its name (the model logs and reports by it)."""
    env = simpy.Environment()
    only0 = Pool("p", 2, accepts=frozenset({0}))
    group = Group(env, "g", [only0])
    assert group.name == "g" and only0.index == 0
    assert group.request(Pt("b", cohort=1)) is not None and only0.busy == 0
    bound = Pt("a", cohort=0, only=0)
    assert group.request(bound) is None and bound.pool is only0


def test_a_third_queued_patient_is_reached_past_two_ineligible_ones() -> None:
    """One place for cohort 0 and one for cohort 1, each held until 1.  Queued: a and b (cohort 1), then c
    (cohort 0).  When the cohort-0 place frees at 1 the dispatch walks past a and b to c (an off-by-one in
    that walk loops for ever or stops early); the cohort-1 place frees at 2 and goes to a, then b at 3."""
    env = simpy.Environment()
    group = Group(env, "g", [Pool("p0", 1, accepts=frozenset({0})), Pool("p1", 1, accepts=frozenset({1}))])
    log = run(env, group, [(Pt("x0", cohort=0), 0.0, 1.0), (Pt("x1", cohort=1), 0.0, 2.0),
                           (Pt("a", cohort=1), 0.1, 1.0), (Pt("b", cohort=1), 0.2, 1.0),
                           (Pt("c", cohort=0), 0.3, 1.0)], until=10.0)
    assert_log(log, [(0, "x0", "p0"), (0, "x1", "p1"), (1, "c", "p0"), (2, "a", "p1"), (3, "b", "p1")])


def test_a_weighted_dispatch_walks_past_two_packages_it_may_not_serve() -> None:
    """Hours pool ``h`` of 10 for cohort 0 only, full (x, 10 h, until 1); a and b (cohort 1, for which only the
    one-place pool ``q`` exists, held by y until 5) queue, then c (cohort 0, 4 h).  When x leaves, the hours
    pool skips a and b (not eligible) and grants c at 1."""
    env = simpy.Environment()
    h = HoursPool("h", 10.0)
    h.accepts = frozenset({0})
    group = Group(env, "g", [h, Pool("q", 1, accepts=frozenset({1}), index=1)])
    log = run(env, group, [(Pt("x", cohort=0, care_hours=10.0), 0.0, 1.0), (Pt("y", cohort=1), 0.0, 5.0),
                           (Pt("a", cohort=1, care_hours=1.0), 0.1, 1.0), (Pt("b", cohort=1, care_hours=1.0), 0.2, 1.0),
                           (Pt("c", cohort=0, care_hours=4.0), 0.3, 1.0)], until=10.0)
    assert_log(log, [(0, "x", "h"), (0, "y", "q"), (1, "c", "h"), (5, "a", "q"), (6, "b", "q")])


def test_a_lower_rank_goes_ahead_of_three_higher_ranks() -> None:
    """Queued a, b, c (rank 1), then d (rank 0): d joins at the head, ahead of all three."""
    env = simpy.Environment()
    group = Group(env, "g", [Pool("p", 1)])
    assert group.request(Pt("x")) is None
    for name, prio in (("a", 1), ("b", 1), ("c", 1), ("d", 0)):
        assert group.request(Pt(name, prio=prio)) is not None
    assert [p.name for p, _ in group.queue] == ["d", "a", "b", "c"]


def test_the_newcomer_rule_respects_localities_and_plain_pools() -> None:
    """An hours pool serves its own locality (cohort 0) first.  Pool of 10, x (local, 8 h) holds it.
    - q1 (cohort 1, a neighbour, 6 h) waits.  A local newcomer n0 (2 h) is served before q1 by the dispatch,
      so it is granted at once (8 h); a neighbour's newcomer n1 (2 h, which would fit: 10) is held behind q1.
    - In a second group, a local q0 (6 h) waits: a local newcomer (2 h) is held behind it.
    - A plain pool in a group with an hours pool never holds a newcomer back: r (cohort 2) takes the free
      plain place ``p`` although a package waits for the hours pool."""
    env = simpy.Environment()
    h = HoursPool("h", 10.0)
    h.home = frozenset({0})
    group = Group(env, "g", [h])
    assert group.request(Pt("x", cohort=0, care_hours=6.0)) is None
    assert group.request(Pt("q1", cohort=1, care_hours=6.0)) is not None
    n0 = Pt("n0", cohort=0, care_hours=2.0)
    assert group.request(n0) is None and n0.pool is h                    # local: ahead of the neighbour
    assert group.request(Pt("n1", cohort=1, care_hours=2.0)) is not None  # neighbour: behind q1

    h2 = HoursPool("h2", 10.0)
    h2.home = frozenset({0})
    g2 = Group(env, "g2", [h2])
    assert g2.request(Pt("x", cohort=0, care_hours=6.0)) is None
    assert g2.request(Pt("q0", cohort=0, care_hours=6.0)) is not None
    assert g2.request(Pt("m0", cohort=0, care_hours=2.0)) is not None    # local behind a local

    h3 = HoursPool("h3", 10.0)
    plain = Pool("p", 1, accepts=frozenset({2}), index=1)
    g3 = Group(env, "g3", [h3, plain])
    assert g3.request(Pt("x", cohort=0, care_hours=9.0)) is None
    assert g3.request(Pt("w", cohort=0, care_hours=5.0)) is not None
    r = Pt("r", cohort=2, care_hours=5.0)
    assert g3.request(r) is None and r.pool is plain

"""The OPEL controller (``flowsim.model.escalation``) against a scripted host, every log written out by hand.

Why: the winter tests run the whole model and check that the level path replays from the metrics and that beds
follow the level; the mutation run (``docs/mutation.md``) showed what that leaves loose: the exact times of the
evaluation clock at the window's edges, the hold before lowering at its boundary, and each step of an action's
state machine (delay, cancellation, minimum duration, stand-down, resumption, close-when-empty).  Here the host
is a few lines: its metrics follow a script of (from time, occupancy, P1 queue), it logs what it is asked to
start and stop, and the test decides when the added places empty.  Evaluation and timer times never coincide, so
the order of same-time events in SimPy does not enter the expectations.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import simpy

from flowsim.model.escalation import EscalationController
from flowsim.scenario.schema import Action, Escalation

OCC = "acute_occupancy_pct"
METRICS = ("acute_occupancy_pct", "ed_boarding", "ed_longest_wait_hours", "delayed_patients", "nctr_patients",
           "waiting_for_assessment", "queue_P1", "queue_P2", "queue_P3")
#: OPEL 2 above 90% occupancy, OPEL 3 above 95%
LEVELS = {2: {"any": [{"metric": OCC, "above": 90}]}, 3: {"any": [{"metric": OCC, "above": 95}]}}
EVERY_6H = [0.0, 6.0, 12.0, 18.0]  # evaluations at k/4 days


class Host:
    """The model side of :class:`EscalationHost`, scripted: metrics by time, a log of starts and stops."""

    def __init__(self, script: list[tuple[float, float, float]], t0: float = 0.0, t1: float = 3.0):
        self.env = simpy.Environment(initial_time=t0)
        self.t0, self.t1 = t0, t1
        self.script = script  # (from time, occupancy %, P1 queue), in time order
        self.asked: list[float] = []  # when the controller read the metrics
        self.calls: list[tuple[float, str, str | None]] = []
        self.in_use = False
        self.watchers: list[tuple[str, Callable[[], bool]]] = []

    def escalation_metrics(self) -> dict[str, float]:
        now = self.env.now
        self.asked.append(now)
        occ, q1 = next((o, q) for t, o, q in reversed(self.script) if t <= now + 1e-12)
        return {m: 0.0 for m in METRICS} | {OCC: occ, "queue_P1": q1}

    def start_action(self, action: Action) -> None:
        self.calls.append((self.env.now, "start", action.label))

    def stop_action(self, action: Action) -> None:
        self.calls.append((self.env.now, "stop", action.label))

    def places_in_use(self, action: Action) -> bool:
        return self.in_use

    def watch_release(self, target: str, callback: Callable[[], bool]) -> None:
        self.watchers.append((target, callback))


def controller(host: Host, actions: list[dict[str, Any]], *, hold_days: float = 0.0,
               hours: list[float] | None = None, levels: dict[int, Any] | None = None) -> EscalationController:
    spec = Escalation.model_validate({"evaluate_at_hours": hours or EVERY_6H, "hold_days": hold_days,
                                      "levels": LEVELS if levels is None else levels, "actions": actions})
    return EscalationController(host, spec)


def run(host: Host, until: float | None = None) -> None:
    host.env.run(until=host.t1 if until is None else until)


def close(got: list[tuple[Any, ...]], expected: list[tuple[Any, ...]]) -> None:
    """Logs equal, times to 1e-9 days (they are sums of hand-exact fractions of a day)."""
    assert len(got) == len(expected), f"{got} != {expected}"
    for g, e in zip(got, expected, strict=True):
        assert g[0] == pytest.approx(e[0], abs=1e-9) and g[1:] == e[1:], f"{got} != {expected}"


# ------------------------------------------------------------------------------------------------- the clock
def test_the_clock_evaluates_at_the_set_hours_within_the_window_only() -> None:
    # t0 = 8h on day 0 exactly (evaluated: t >= t0), t1 = 8h on day 2 exactly (not evaluated: t < t1); hours are
    # de-duplicated and sorted, so [20, 8, 8] evaluates at 8h and 20h of each day
    host = Host([(0.0, 50.0, 0.0)], t0=8 / 24, t1=2 + 8 / 24)
    controller(host, [], hours=[20.0, 8.0, 8.0])
    run(host, until=5.0)
    close([(t,) for t in host.asked], [(8 / 24,), (20 / 24,), (1 + 8 / 24,), (1 + 20 / 24,)])


def test_the_clock_starts_on_the_day_of_t0_and_runs_to_the_last_day() -> None:
    # a window from the middle of day 1 to the middle of day 3: evaluations at 18h of day 1, 6h and 18h of day 2,
    # and 6h of day 3 (t1 = 3.5 comes before 18h of day 3)
    host = Host([(0.0, 50.0, 0.0)], t0=1.5, t1=3.5)
    controller(host, [], hours=[6.0, 18.0])
    run(host, until=6.0)
    close([(t,) for t in host.asked], [(1.75,), (2.25,), (2.75,), (3.25,)])


# ------------------------------------------------------------------------------------------------- the level
def test_level_rises_at_once_to_the_highest_rule_and_lowers_after_the_hold() -> None:
    # 96% at 0 (OPEL 3, the highest rule holding, not 2); 80% from 0.5: lowering waits for the hold of 1 day from
    # the rise at 0, so it happens at 1.0 exactly (held for the hold, not longer); 93% from 1.25: up to 2 at once
    host = Host([(0.0, 96.0, 0.0), (0.5, 80.0, 0.0), (1.25, 93.0, 0.0)], t1=1.6)
    ctl = controller(host, [], hold_days=1.0)
    run(host)
    close(ctl.level_log, [(0.0, 1), (0.0, 3), (1.0, 1), (1.25, 2)])
    assert ctl.level == 2


def test_level_lowers_step_by_step_to_the_current_target() -> None:
    # 96% -> OPEL 3; from 0.5 93% (target 2) and after the hold of 0.5 days it lowers to 2, not to 1; from 1.0
    # 50%: the hold counts from the last change (1.0 - 0.5 = 0.5 >= 0.5): lowered to 1 at 1.0
    host = Host([(0.0, 96.0, 0.0), (0.25, 93.0, 0.0), (1.0, 50.0, 0.0)], t1=1.4)
    ctl = controller(host, [], hold_days=0.5)
    run(host)
    close(ctl.level_log, [(0.0, 1), (0.0, 3), (0.5, 2), (1.0, 1)])


def test_no_rule_holding_means_level_one() -> None:
    host = Host([(0.0, 90.0, 0.0)], t1=0.1)  # 90 is not above 90
    ctl = controller(host, [])
    run(host)
    assert ctl.level == 1 and ctl.level_log == [(0.0, 1)]
    assert ctl.target({m: 0.0 for m in METRICS} | {OCC: 95.5}) == 3


# ------------------------------------------------------------------------------------------------- actions
def action(label: str, **kw: Any) -> dict[str, Any]:
    return {"level": 3, "kind": "cancel_electives", "label": label} | kw


def test_action_delay_minimum_duration_and_stand_down() -> None:
    # OPEL 3 at 0 -> requested at 0, started after its 3-hour delay at 0.125.  Not called for from 0.5: it stands
    # down at 0.5 and ends at max(0.5 + 9h, started 0.125 + 30h) = max(0.875, 1.375) = 1.375
    host = Host([(0.0, 96.0, 0.0), (0.5, 80.0, 0.0)], t1=2.0)
    ctl = controller(host, [action("A", delay_hours=3, min_duration_hours=30, stand_down_hours=9)])
    run(host)
    close(ctl.action_log, [(0.0, 0, "requested"), (0.125, 0, "started"), (0.5, 0, "standing_down"),
                           (1.375, 0, "stopped")])
    close(host.calls, [(0.125, "start", "A"), (1.375, "stop", "A")])


def test_stand_down_delay_when_it_outlasts_the_minimum_duration() -> None:
    # no delay: started at once at 0 (no 'requested'); not called for from 0.25: ends at max(0.25 + 9h, 0 + 3h)
    host = Host([(0.0, 96.0, 0.0), (0.25, 80.0, 0.0)], t1=1.0)
    ctl = controller(host, [action("A", min_duration_hours=3, stand_down_hours=9)])
    run(host)
    close(ctl.action_log, [(0.0, 0, "started"), (0.25, 0, "standing_down"), (0.625, 0, "stopped")])


def test_an_action_with_nothing_to_wait_for_stops_at_once() -> None:
    host = Host([(0.0, 96.0, 0.0), (0.25, 80.0, 0.0)], t1=1.0)
    ctl = controller(host, [action("A")])
    run(host)
    close(ctl.action_log, [(0.0, 0, "started"), (0.25, 0, "stopped")])
    close(host.calls, [(0.0, "start", "A"), (0.25, "stop", "A")])


def test_minimum_duration_ending_exactly_now_stops_at_once() -> None:
    # started at 0 with a minimum of 6 hours: at 0.25 the minimum is just over, so it stops at once
    host = Host([(0.0, 96.0, 0.0), (0.25, 80.0, 0.0)], t1=1.0)
    ctl = controller(host, [action("A", min_duration_hours=6)])
    run(host)
    close(ctl.action_log, [(0.0, 0, "started"), (0.25, 0, "stopped")])


def test_a_request_no_longer_called_for_is_cancelled_and_never_starts() -> None:
    # requested at 0 with a 9-hour delay (would start at 0.375); not called for at 0.25: cancelled; called for
    # again at 0.5: a fresh request, starting at 0.875 (the first timer, at 0.375, is stale)
    host = Host([(0.0, 96.0, 0.0), (0.25, 80.0, 0.0), (0.5, 96.0, 0.0)], t1=1.0)
    ctl = controller(host, [action("A", delay_hours=9)])
    run(host)
    close(ctl.action_log, [(0.0, 0, "requested"), (0.25, 0, "cancelled"), (0.5, 0, "requested"),
                           (0.875, 0, "started")])
    close(host.calls, [(0.875, "start", "A")])


def test_called_for_again_while_standing_down_resumes_without_a_new_start() -> None:
    # started at 0; standing down at 0.25 (would end at 0.625); called for again at 0.5: resumed, the timer at
    # 0.625 is stale; standing down again at 0.75, ending at 1.125
    host = Host([(0.0, 96.0, 0.0), (0.25, 80.0, 0.0), (0.5, 96.0, 0.0), (0.75, 80.0, 0.0)], t1=2.0)
    ctl = controller(host, [action("A", stand_down_hours=9)])
    run(host)
    close(ctl.action_log, [(0.0, 0, "started"), (0.25, 0, "standing_down"), (0.5, 0, "resumed"),
                           (0.75, 0, "standing_down"), (1.125, 0, "stopped")])
    close(host.calls, [(0.0, "start", "A"), (1.125, "stop", "A")])


def beds(label: str = "beds") -> dict[str, Any]:
    return action(label, kind="add_capacity", target="acute", amount=5, close_when_empty=True)


def test_close_when_empty_waits_for_the_last_patient() -> None:
    # stops at 0.25 with patients still in the places: closing; the watcher says 'not yet' while they are in use
    # and ends the action the first time it finds them empty
    host = Host([(0.0, 96.0, 0.0), (0.25, 80.0, 0.0)], t1=1.0)
    host.in_use = True
    ctl = controller(host, [beds()])
    run(host, until=0.3)
    close(ctl.action_log, [(0.0, 0, "started"), (0.25, 0, "closing")])
    [(target, emptied)] = host.watchers
    assert target == "acute"
    assert emptied() is False
    host.in_use = False
    run(host, until=0.4)
    assert emptied() is True
    close(ctl.action_log, [(0.0, 0, "started"), (0.25, 0, "closing"), (0.4, 0, "stopped")])
    assert emptied() is True  # already ended: nothing more logged
    assert len(ctl.action_log) == 3


def test_close_when_empty_stops_at_once_when_nobody_is_in_the_places() -> None:
    host = Host([(0.0, 96.0, 0.0), (0.25, 80.0, 0.0)], t1=1.0)
    ctl = controller(host, [beds()])
    run(host)
    close(ctl.action_log, [(0.0, 0, "started"), (0.25, 0, "stopped")])
    assert host.watchers == []


def test_called_for_while_closing_reopens_the_places() -> None:
    # closing from 0.25; called for again at 0.5: the places open again (a second start) and the old watcher is
    # stale (it reports done without logging anything)
    host = Host([(0.0, 96.0, 0.0), (0.25, 80.0, 0.0), (0.5, 96.0, 0.0)], t1=0.6)
    host.in_use = True
    ctl = controller(host, [beds()])
    run(host)
    close(ctl.action_log, [(0.0, 0, "started"), (0.25, 0, "closing"), (0.5, 0, "resumed")])
    close(host.calls, [(0.0, "start", "beds"), (0.25, "stop", "beds"), (0.5, "start", "beds")])
    [(_, emptied)] = host.watchers
    host.in_use = False
    assert emptied() is True
    assert len(ctl.action_log) == 3


def test_an_action_with_its_own_rule_ignores_the_level() -> None:
    # community escalation: on while the P1 queue is above 15, whatever the OPEL level (which stays 1 here)
    host = Host([(0.0, 50.0, 20.0), (0.5, 50.0, 10.0)], t1=1.0)
    ctl = controller(host, [{"when": {"any": [{"metric": "queue_P1", "above": 15}]}, "kind": "cancel_electives",
                             "label": "P1"}])
    run(host)
    assert ctl.level == 1
    close(ctl.action_log, [(0.0, 0, "started"), (0.5, 0, "stopped")])


def test_actions_follow_their_own_levels() -> None:
    # an OPEL 2 action starts at 93%, the OPEL 3 one only at 96%; both stop when the level falls to 1
    host = Host([(0.0, 93.0, 0.0), (0.25, 96.0, 0.0), (0.5, 50.0, 0.0)], t1=0.6)
    ctl = controller(host, [action("two", level=2), action("three", level=3)])
    run(host)
    close(ctl.action_log, [(0.0, 0, "started"), (0.25, 1, "started"), (0.5, 0, "stopped"), (0.5, 1, "stopped")])


def test_an_action_that_stopped_starts_again_when_called_for_again() -> None:
    # started at 0, stopped at 0.25, called for again at 0.5: a new start
    host = Host([(0.0, 96.0, 0.0), (0.25, 80.0, 0.0), (0.5, 96.0, 0.0)], t1=0.6)
    ctl = controller(host, [action("A")])
    run(host)
    close(ctl.action_log, [(0.0, 0, "started"), (0.25, 0, "stopped"), (0.5, 0, "started")])


def test_places_that_closed_when_empty_open_again_when_called_for_again() -> None:
    # closing from 0.25, empty at 0.3 (stopped), called for again at 0.5: started afresh
    host = Host([(0.0, 96.0, 0.0), (0.25, 80.0, 0.0), (0.5, 96.0, 0.0)], t1=0.6)
    host.in_use = True
    ctl = controller(host, [beds()])
    run(host, until=0.3)
    host.in_use = False
    assert host.watchers[0][1]() is True
    run(host)
    close(ctl.action_log, [(0.0, 0, "started"), (0.25, 0, "closing"), (0.3, 0, "stopped"), (0.5, 0, "started")])

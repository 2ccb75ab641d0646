"""Named codes the model stamps on a stay, shared with the results layer.

Integers, not strings, because the model writes them on every patient and the
results layer turns them into numpy columns; ``IntEnum`` gives each one a name
so no module compares against a bare 0, 1 or 2.
"""

from __future__ import annotations

from enum import IntEnum


class Stage(IntEnum):
    """Where in the journey a patient joins (start-from-today snapshot patients join part-way)."""

    ED = 0
    IN_ACUTE = 1
    ASSESSMENT = 2
    WAITING = 3
    IN_SERVICE = 4


class Outcome(IntEnum):
    """How a stay ends.  ``NONE``: still under way when the run ended."""

    NONE = -1
    HOME = 0
    LONG_TERM_CARE = 1
    DEATH = 2
    HOME_WITH_CARE = 3


#: Record labels of the outcomes, indexed by code (``NONE`` is the last, empty label).
OUTCOME_LABELS: tuple[str, ...] = ("home", "long_term_care", "death", "home_with_care")


class Cancelled(IntEnum):
    """Why an elective admission did not happen."""

    NOT = 0
    NO_BED = 1
    ESCALATION = 2


CANCELLED_LABELS: tuple[str, ...] = ("", "no_bed", "escalation")

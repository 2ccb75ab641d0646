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
    READMITTED = 4  # a downstream stay cut short by a readmission to hospital


#: Record labels of the outcomes, indexed by code (``NONE`` is the last, empty label).
OUTCOME_LABELS: tuple[str, ...] = ("home", "long_term_care", "death", "home_with_care", "readmitted")


class Cancelled(IntEnum):
    """Why an elective admission, or a step-up referral, did not happen."""

    NOT = 0
    NO_BED = 1
    ESCALATION = 2
    REFUSED = 3  # a step-up referral that found no place within its patience
    ADMITTED = 4  # ... and was admitted to hospital instead


CANCELLED_LABELS: tuple[str, ...] = ("", "no_bed", "escalation", "refused", "admitted")


class AcuteExit(IntEnum):
    """How an acute stay ends: through a discharge pathway (``PATHWAY``), or without one."""

    PATHWAY = 0
    DIED = 1
    SAME_DAY = 2


ACUTE_EXIT_LABELS: tuple[str, ...] = ("", "died", "same_day")

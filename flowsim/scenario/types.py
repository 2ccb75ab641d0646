"""Strict field types for scenarios and configs: numbers that are numbers, in ranges that can run.

Why not pydantic's plain ``int`` and ``float``: in its lax mode a YAML ``true`` is the number 1
(``beds: true`` was one bed, ``duration_days: true`` a one-day run), the text ``"10"`` is 10, and
``.inf`` passes ``ge=0`` (an infinite cost made ``total_cost`` null).  Absurd magnitudes passed
validation and then crashed inside a worker, hours into a sweep (1e9 arrivals a day, dates in 9999).

Each alias below is one kind of quantity with its allowed range, checked by one validator whose
message states the range ("allowed: a whole number from 0 to 100,000 (places, beds or staff)").
Fields declare *what* they hold (``Count``, ``Rate``, ``Money``, ``Days``...), so a field added
later inherits the same strictness by using the alias.  The ranges are far wider than any real
local system and narrow enough that a run cannot exhaust memory or overflow a date.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError, core_schema

#: Places, beds, staff or patients in one place (a large English trust has ~1,500 G&A beds).
MAX_COUNT = 100_000
#: Non-elective admissions (or referrals) a day (all of England is ~16,000; a large system ~500).
MAX_RATE = 5_000.0
#: Money per unit, per day or one-off, in GBP.
MAX_MONEY = 1e10
#: Durations and stays in days (100 years; long-term care stays are the longest).
MAX_DAYS = 36_500.0
#: Relative calendar factors and surge multipliers.
MAX_FACTOR = 1_000.0
#: Adults in the population served (England has ~45 million).
MAX_POPULATION = 100_000_000
#: Thresholds on live state (occupancy %, patients waiting, hours).
MAX_THRESHOLD = 1e6
#: Dates a scenario may name: pandas and the calendar arithmetic are exact well inside this window.
MIN_DATE = dt.date(1900, 1, 1)
MAX_DATE = dt.date(2199, 12, 31)


def _fmt(x: float) -> str:
    if isinstance(x, int):
        return f"{x:,}"
    return f"{x:,.0f}" if x.is_integer() else f"{x:,g}"


def _text_number(text: str) -> str:
    try:
        float(text)
    except ValueError:
        return "got text"
    # YAML 1.1 reads 1e9 (no decimal point) as text; 1.0e+9 or 1000000000 is a number
    return "YAML reads this as text: write it without quotes, and exponents with a decimal point (1.0e+9)"


class Range:
    """Annotation metadata for one numeric kind: rejects booleans, text, infinity and NaN, and values
    outside ``[low, high]`` (ends open where asked), with the range in the message and the schema."""

    def __init__(self, low: float, high: float, what: str = "", *, integer: bool = False, low_open: bool = False,
                 high_open: bool = False):
        self.low, self.high, self.integer = low, high, integer
        self.low_open, self.high_open = low_open, high_open
        kind = "a whole number" if integer else "a number"
        if not low_open and not high_open:
            span = f"from {_fmt(low)} to {_fmt(high)}"
        else:
            lo = f"above {_fmt(low)}" if low_open else f"at least {_fmt(low)}"
            hi = f"below {_fmt(high)}" if high_open else f"at most {_fmt(high)}"
            span = f"{lo} and {hi}"
        self.allowed = f"allowed: {kind} {span}" + (f" ({what})" if what else "")

    def _fail(self, why: str = "") -> ValueError:
        return ValueError(self.allowed + (f"; {why}" if why else ""))

    def _not_a_number(self, why: str = "") -> PydanticCustomError:
        # typed as a type error, so at a union (capacity: number | 'unlimited' | schedule) the member that
        # matches the input's shape speaks, not this one
        return PydanticCustomError("int_type" if self.integer else "float_type",
                                   self.allowed + (f"; {why}" if why else ""))

    def __call__(self, value: Any) -> int | float:
        if isinstance(value, bool):
            raise self._not_a_number("true/false is not a number (YAML reads yes, no, on, off as true/false)")
        if isinstance(value, str):
            raise self._not_a_number(_text_number(value))
        if not isinstance(value, (int, float)):
            raise self._not_a_number()
        if isinstance(value, float) and not math.isfinite(value):
            raise self._fail("infinity and NaN are not allowed")
        if self.integer and isinstance(value, float) and not value.is_integer():
            raise self._fail("got a fraction")
        x = int(value) if self.integer or isinstance(value, int) else value
        too_low = x < self.low or (self.low_open and x == self.low)
        too_high = x > self.high or (self.high_open and x == self.high)
        if too_low or too_high:
            raise self._fail()
        return int(x) if self.integer else float(x)

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_before_validator_function(self, handler(source))

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        out = handler(schema)
        out["exclusiveMinimum" if self.low_open else "minimum"] = self.low
        out["exclusiveMaximum" if self.high_open else "maximum"] = self.high
        return out


Count = Annotated[int, Range(0, MAX_COUNT, "places, beds, staff or patients", integer=True)]
PositiveCount = Annotated[int, Range(1, MAX_COUNT, "places, beds, staff or patients", integer=True)]
Change = Annotated[int, Range(-MAX_COUNT, MAX_COUNT, "places added, or taken away if negative", integer=True)]
Rate = Annotated[float, Range(0, MAX_RATE, "patients a day", low_open=True)]
Factor = Annotated[float, Range(0, MAX_FACTOR, "a relative factor or multiplier", low_open=True)]
Probability = Annotated[float, Range(0, 1, "a probability")]
Share = Annotated[float, Range(0, 1, "a share", low_open=True)]
Percent = Annotated[float, Range(0, 100, "per cent", low_open=True)]
Money = Annotated[float, Range(0, MAX_MONEY, "GBP")]
Days = Annotated[float, Range(0, MAX_DAYS, "days")]
PositiveDays = Annotated[float, Range(0, MAX_DAYS, "days", low_open=True)]
DelayHours = Annotated[float, Range(0, 24 * 366, "hours")]
HourOfDay = Annotated[float, Range(0, 24, "hour of the day", high_open=True)]
HourEnd = Annotated[float, Range(0, 24, "hour of the day", low_open=True)]
Population = Annotated[int, Range(1, MAX_POPULATION, "people", integer=True)]
Threshold = Annotated[float, Range(0, MAX_THRESHOLD, "a threshold on live state")]
Growth = Annotated[float, Range(-0.5, 1.0, "annual growth, e.g. 0.02 for 2% a year")]
Seed = Annotated[int, Range(0, 2**63 - 1, "a random seed", integer=True)]
#: Any finite number (bounds and thresholds in sweep and calibration files).
Finite = Annotated[float, Range(-1e15, 1e15, "a finite number")]


_DATE_HELP = f"allowed: a real date written as YYYY-MM-DD, from {MIN_DATE} to {MAX_DATE}"


def _date(value: Any) -> Any:
    """Dates are written as text (2024-04-01); a bare number would be read as seconds since 1970."""
    if isinstance(value, dt.date):
        return value
    if not isinstance(value, str):
        raise PydanticCustomError("date_type", _DATE_HELP)
    try:
        return dt.date.fromisoformat(value.strip())
    except ValueError:
        raise PydanticCustomError("date_parsing", _DATE_HELP) from None


def _date_range(value: dt.date) -> dt.date:
    if not MIN_DATE <= value <= MAX_DATE:
        raise ValueError(_DATE_HELP)
    return value


def _text(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        raise ValueError("must not be blank; allowed: text with at least one visible character")
    return value


Date = Annotated[dt.date, BeforeValidator(_date), AfterValidator(_date_range)]
#: A label or title shown to people: not blank, not a book.
Text = Annotated[str, BeforeValidator(_text), Field(max_length=500)]

"""How numbers, money, intervals and verdicts are written, in the terminal and in every report.

One module so that a figure reads the same everywhere: "£28.4m" in the terminal is "£28.4m" in the board paper,
and a verdict word means the same thing in both.  Money is rounded for a board (three significant figures in
£, £k or £m): a £28M total printed to the penny suggests a precision no simulation has.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from flowsim.results.kpi import KPIS, kpi_info

DASH = "–"
VERDICT_TEXT = {"met": "Met", "missed": "Missed", "uncertain": "Too close to call"}


def num(value: object) -> float:
    """``value`` as a float, NaN when it is not a number."""
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def _three_figures(a: float) -> str:
    """A non-negative number to three significant figures without an exponent: 9.86, 241, 28.4, 0.452."""
    if a == 0:
        return "0"
    digits = max(0, 2 - math.floor(math.log10(a)))
    text = f"{a:,.{digits}f}"
    return text


def money(value: object) -> str:
    """Money for a board: '£28.4m', '-£241k', '£9.86k', '£512', '£5.12'; an en dash when missing."""
    x = num(value)
    if math.isnan(x):
        return DASH
    if math.isinf(x):
        return "unlimited" if x > 0 else "-unlimited"
    a = abs(x)
    if a == 0:
        return "£0"
    rounded = float(f"{a:.3g}")  # round first, so 999,999 is £1.00m and not £1,000k
    if rounded >= 1e6:
        text = _three_figures(rounded / 1e6) + "m"
    elif rounded >= 1e3:
        text = _three_figures(rounded / 1e3) + "k"
    else:
        text = _three_figures(rounded) if rounded >= 1 else f"{a:.2f}"
    sign = "-" if x < 0 and text.strip("0.,km") else ""
    return f"{sign}£{text}"


def fmt(value: object, unit: str = "") -> str:
    """A number as the reports print it: three significant-ish figures, thousands separated, money for a board.

    An en dash for a missing value; tests format expected values with this same function."""
    if unit == "GBP":
        return money(value)
    x = num(value)
    if math.isnan(x):
        return DASH
    if math.isinf(x):
        return "unlimited" if x > 0 else "-unlimited"
    a = abs(x)
    text = f"{a:,.0f}" if a >= 1000 else f"{a:,.1f}" if a >= 10 else f"{a:,.2f}"
    sign = "-" if x < 0 and text.strip("0.,") else ""
    return f"{sign}{text}"


def fmt_ci(low: object, high: object, unit: str = "") -> str:
    """'12.1 to 32.5', or '' when the interval is undefined (one replication)."""
    lo, hi = num(low), num(high)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return ""
    return f"{fmt(lo, unit)} to {fmt(hi, unit)}"


def verdict(low: float, high: float, threshold: float, sense: str) -> str:
    """'met' / 'missed' when the 95% CI lies wholly on one side of the threshold, else 'uncertain'."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return "uncertain"
    if sense == "at most":
        return "met" if high <= threshold else "missed" if low > threshold else "uncertain"
    return "met" if low >= threshold else "missed" if high < threshold else "uncertain"


def service_labels(scenario: Mapping[str, Any]) -> dict[str, str]:
    """Each service's display label by name (its ``label``, else its name with spaces), from plain scenario data."""
    out: dict[str, str] = {}
    for pw in (scenario.get("pathways") or {}).values():
        for name, svc in ((pw or {}).get("services") or {}).items():
            out[str(name)] = str((svc or {}).get("label") or str(name).replace("_", " "))
    return out


def kpi_label(name: str, scenario: Mapping[str, Any] | None = None) -> str:
    """The KPI's label; a per-service KPI is named after the service's own label ('IRR and home reablement
    (in-house): utilisation', not 'Irr reablement: utilisation')."""
    info = kpi_info(name)
    if name in KPIS or not name.startswith("service_") or scenario is None:
        return info.label
    for svc, label in sorted(service_labels(scenario).items(), key=lambda kv: -len(kv[0])):
        if name.startswith(f"service_{svc}_"):
            what = info.label.split(": ", 1)[-1]
            return f"{label}: {what}"
    return info.label


def sentence(text: str) -> str:
    """``text`` with a capital first letter and a full stop (only the first character is changed)."""
    text = text.strip()
    return (text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")) if text else ""

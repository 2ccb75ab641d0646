"""The decision rule's answer in words: the same sentences in the terminal and in the board report.

Every sentence is built from an :class:`~flowsim.appraisal.OptionAppraisal`, whose verdict words were decided
from the intervals by :func:`flowsim.appraisal.decide`; nothing here judges a number, so no sentence can say
"saves" when the net-cost interval spans zero.
"""

from __future__ import annotations

import math

from flowsim.appraisal import (
    BASELINE,
    COSTS_MORE,
    DOMINATED,
    FEWER_DELAYS,
    MORE_DELAYS,
    OFF_FRONTIER,
    SAVES,
    Decision,
    OptionAppraisal,
)
from flowsim.report.format import fmt, fmt_ci, money


def who(name: str) -> str:
    """An alternative as a sentence names it ('the baseline', or the option's display name)."""
    return "the baseline" if name == BASELINE else name


def _ci(t: tuple[float, float, float], unit: str = "") -> str:
    text = fmt_ci(t[1], t[2], unit)
    return f" ({text})" if text else ""


def cost_sentence(o: OptionAppraisal) -> str:
    """'saves £56k net (£3k to £115k)' only when the whole interval is below zero; else 'costs ... more' or
    'net cost too close to call'."""
    m = o.net_cost[0]
    if o.cost_verdict == SAVES:
        return f"saves {money(-m)} net{_ci(o.net_cost, 'GBP')}"
    if o.cost_verdict == COSTS_MORE:
        return f"costs {money(m)} more net{_ci(o.net_cost, 'GBP')}"
    return f"net cost too close to call: {money(m)}{_ci(o.net_cost, 'GBP')}"


def delay_sentence(o: OptionAppraisal) -> str:
    """'1,926 fewer delayed bed-days (905 to 2,947)', or 'more', or 'too close to call'."""
    m = o.avoided[0]
    if o.delay_verdict == FEWER_DELAYS:
        return f"{fmt(m)} fewer delayed bed-days{_ci(o.avoided)}"
    if o.delay_verdict == MORE_DELAYS:
        return f"{fmt(-m)} more delayed bed-days (avoided: {fmt_ci(o.avoided[1], o.avoided[2])})"
    return f"delayed bed-days avoided too close to call: {fmt(m)}{_ci(o.avoided)}"


def frontier_sentence(o: OptionAppraisal) -> str:
    """Dominated (by whom), off the efficiency frontier (why), or on it (with the incremental cost per delayed
    bed-day avoided against the next less effective option on it)."""
    if o.frontier == DOMINATED:
        return f"dominated by {who(o.dominated_by)}: {o.frontier_note}"
    if o.frontier == OFF_FRONTIER:
        return f"off the efficiency frontier: {o.frontier_note}"
    if not o.compared_with:
        return f"on the efficiency frontier: {o.frontier_note}" if o.frontier_note else \
            "on the efficiency frontier (its least effective point)"
    if not math.isfinite(o.icer[0]):
        return f"on the efficiency frontier after {who(o.compared_with)}"
    ci = fmt_ci(o.icer[1], o.icer[2], "GBP")
    return (f"on the efficiency frontier: {money(o.icer[0])} per delayed bed-day avoided against "
            f"{who(o.compared_with)}"
            + (f" ({ci})" if ci else " (interval undefined: the extra effect is too uncertain)"))


def benefit_sentence(o: OptionAppraisal, value: float | None) -> str:
    """Net monetary benefit at the stated value, the probability of being best and the rank ('' without a value)."""
    if value is None or not math.isfinite(o.nmb[0]):
        return ""
    return (f"net benefit at {money(value)} a delayed bed-day {money(o.nmb[0])}{_ci(o.nmb, 'GBP')}; probability "
            f"best {o.prob_best:.0%}; rank {o.rank}")


def best_sentence(decision: Decision, baseline: str) -> str:
    """The headline answer: which option is best at the stated value, and whether that is clear or too close."""
    if decision.value_per_day is None:
        return ("No value per delayed bed-day avoided is set (costs.value_per_delayed_bed_day in the baseline "
                "scenario), so the options are not ranked by net benefit: read the efficiency frontier.")
    value = money(decision.value_per_day)
    head = (f"At {value} per delayed bed-day avoided, no option has a higher expected net benefit than the "
            f"baseline ({baseline})" if decision.best == BASELINE else
            f"At {value} per delayed bed-day avoided, {decision.best} has the highest expected net benefit")
    prob = decision.baseline_prob_best if decision.best == BASELINE else decision.option(decision.best).prob_best
    tail = ("; it is ahead of every alternative by a paired 95% interval" if decision.best_clear else
            f"; too close to call against {', '.join(who(c) for c in decision.close)}")
    return f"{head} (probability best {prob:.0%}){tail}."


def option_sentences(o: OptionAppraisal, value: float | None) -> list[str]:
    """Every statement the decision rule makes about one option, in reading order."""
    return [s for s in (cost_sentence(o), delay_sentence(o), frontier_sentence(o), benefit_sentence(o, value)) if s]


def decision_lines(decision: Decision, baseline: str) -> list[str]:
    """The terminal's value-for-money section."""
    lines = ["", "Value for money (paired with the baseline over replications; the decision rule is in README.md "
                 "and the report):"]
    for o in decision.options:
        lines.append(f"  {o.name}")
        lines += [f"    {s}" for s in option_sentences(o, decision.value_per_day)]
    lines.append(best_sentence(decision, baseline))
    return lines

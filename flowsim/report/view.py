"""View-models of the board reports: plain data the Jinja2 templates render, and nothing else.

Why a view-model: the old report built its HTML by concatenating strings in Python, 1,800 lines of it, so a
wording change meant reading code and escaping was everyone's job.  Now Python decides *what* to say (which
sections, which rows, which verdict, which words) and the templates under ``templates/`` decide *how* it looks;
every text value is escaped by Jinja2's autoescape, so no builder writes markup.

Building blocks:

- :class:`Rich`: a sentence of :class:`Span` pieces (plain, bold, a verdict badge, a highlighted ASSUMPTION or
  an analyst to-do), so a key message can carry emphasis without markup.
- :class:`Cell`, :class:`Column`, :class:`Row`, :class:`Table`: tables with values, intervals beneath, badges and
  ``data-*`` attributes (the tests and the browser check read them).
- :class:`FigureView`: an embedded PNG with its number, alt text and caption.
- :class:`Page`: the masthead, the numbered sections (in order, appendices lettered) and figure numbering.

Each report kind has a builder module (``run_report``, ``comparison_report``, ``sweep_report``,
``calibration_report``) that turns its sources into a :class:`Page`.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from flowsim.report.format import VERDICT_TEXT

#: Highlighted in every text that a scenario wrote, so readers see which figures are not sourced.
ASSUMPTION = "ASSUMPTION"


@dataclass(frozen=True)
class Span:
    """A piece of a sentence: ``style`` is '' (plain), 'b' (bold), 'i' (italic), 'code', 'badge' (``key`` is the
    verdict: met, missed, uncertain, ...), 'assumption' (highlighted) or 'todo' (an analyst must complete)."""

    text: str
    style: str = ""
    key: str = ""


@dataclass(frozen=True)
class Rich:
    """A sentence made of spans (plain text unless a span says otherwise)."""

    spans: tuple[Span, ...] = ()

    @classmethod
    def of(cls, *parts: str | Span) -> Rich:
        """Build from strings (plain) and spans."""
        return cls(tuple(p if isinstance(p, Span) else Span(p) for p in parts if p != ""))

    def __bool__(self) -> bool:
        return bool(self.spans)

    @property
    def text(self) -> str:
        """The sentence as plain text (what a reader sees, without styling)."""
        return "".join(s.text if s.style != "badge" else f" {s.text} " for s in self.spans)


def b(text: str) -> Span:
    """A bold span."""
    return Span(text, "b")


def badge(verdict: str) -> Span:
    """A verdict badge: Met, Missed or Too close to call (anything unknown reads 'Too close to call')."""
    key = verdict if verdict in VERDICT_TEXT else "uncertain"
    return Span(VERDICT_TEXT[key], "badge", key)


def todo(text: str) -> Span:
    """Something the analyst must write before the paper goes to the board."""
    return Span(f"Analyst to complete: {text}", "todo")


def marked(text: str) -> Rich:
    """Text from a scenario file with the word ASSUMPTION highlighted."""
    parts: list[str | Span] = []
    for i, piece in enumerate(re.split(rf"({ASSUMPTION})", str(text))):
        parts.append(Span(piece, "assumption") if i % 2 else piece)
    return Rich.of(*parts)


@dataclass(frozen=True)
class Cell:
    """A table cell: ``value`` (bold in result cells), an interval ``ci`` beneath, a ``badge``, a small ``note``
    (a definition), or ``rich`` text for prose cells; ``data`` become ``data-*`` attributes."""

    value: str = ""
    ci: str = ""
    badge: str = ""
    note: str = ""
    rich: Rich | None = None
    numeric: bool = False
    klass: str = ""
    data: tuple[tuple[str, str], ...] = ()
    code: bool = False
    strong: bool = False


@dataclass(frozen=True)
class Column:
    """A table header: its label, a smaller second line, and whether the column holds numbers (right-aligned)."""

    label: str
    sub: str = ""
    numeric: bool = False


@dataclass(frozen=True)
class Row:
    """A table row; ``group`` makes it a heading row spanning the table."""

    cells: tuple[Cell, ...] = ()
    data: tuple[tuple[str, str], ...] = ()
    klass: str = ""
    group: str = ""


@dataclass
class Table:
    """A table; short tables (at most 12 rows) are kept on one printed page."""

    columns: list[Column]
    rows: list[Row]
    id: str = ""
    caption: str = ""
    klass: str = ""
    widths: tuple[int, ...] = ()

    @property
    def keep(self) -> bool:
        """Whether the table must not be split across printed pages."""
        return len(self.rows) <= 12


@dataclass(frozen=True)
class FigureView:
    """An embedded PNG figure (``number`` 0 and ``missing`` text when the chart is not available)."""

    number: int
    alt: str
    caption: str
    data_uri: str = ""
    missing: str = ""


@dataclass
class Section:
    """A numbered section (or a lettered appendix): its id, heading and the kind-specific content."""

    id: str
    heading: str
    content: dict[str, Any]
    appendix: bool = False
    label: str = ""
    first_appendix: bool = False


@dataclass
class Masthead:
    """The blue header: kicker, title, subtitle, key facts, changes made for this run, and the bottom band."""

    kicker: str
    title: str
    subtitle: str
    facts: list[tuple[str, str]]
    band: str
    changes: list[str] = field(default_factory=list)


@dataclass
class Page:
    """A whole report: what the base template needs, plus the sections in display order."""

    kind: str
    title: str
    masthead: Masthead | None = None
    sections: list[Section] = field(default_factory=list)
    footer: Rich = field(default_factory=Rich)
    figures: int = 0

    def figure(self, png: bytes | None, alt: str, caption: str, missing: str = "") -> FigureView | None:
        """The next numbered figure; without a PNG, a 'missing' note if one is given, else nothing."""
        if png is None:
            return FigureView(0, alt, caption, "", missing) if missing else None
        self.figures += 1
        return FigureView(self.figures, alt, caption, "data:image/png;base64," + base64.b64encode(png).decode("ascii"))

    def add(self, sid: str, heading: str, appendix: bool = False, **content: Any) -> None:
        """Append a section if it has any content (a section whose values are all empty is left out)."""
        if not any(_present(v) for v in content.values()):
            return
        self.sections.append(Section(sid, heading, content, appendix))

    def number(self) -> Page:
        """Number the sections 1, 2, ... and the appendices A, B, ... (in the order they were added)."""
        n = a = 0
        for s in self.sections:
            if s.appendix:
                a += 1
                s.label = f"Appendix {chr(64 + a)}. {s.heading}"
                s.first_appendix = a == 1
            else:
                n += 1
                s.label = f"{n}. {s.heading}"
        return self


def _present(value: Any) -> bool:
    """Whether a section's content value has anything to show."""
    if value is None or value is False:
        return False
    if isinstance(value, Table):
        return bool(value.rows)
    if isinstance(value, Rich | str):
        return bool(value)
    if isinstance(value, dict):
        return any(_present(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_present(v) for v in value)
    return True


def data(**attrs: object) -> tuple[tuple[str, str], ...]:
    """``data-*`` attributes for a cell or row (underscores in names become hyphens)."""
    return tuple((k.replace("_", "-"), str(v)) for k, v in attrs.items() if v is not None)


def bullets(items: Iterable[Rich | str]) -> list[Rich]:
    """Key messages as rich sentences (strings become plain text)."""
    return [i if isinstance(i, Rich) else Rich.of(i) for i in items if i]


def columns(*specs: str | tuple[str, str], numeric_from: int = 1) -> list[Column]:
    """Headers from labels (or (label, sub) pairs); from ``numeric_from`` on they are right-aligned."""
    out = []
    for i, spec in enumerate(specs):
        label, sub = spec if isinstance(spec, tuple) else (spec, "")
        out.append(Column(label, sub, i >= numeric_from))
    return out

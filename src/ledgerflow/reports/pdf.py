"""Reports as documents: paginated PDF with title, period, tables and figures, and CSV.

Every page carries the title in its header and "Page N of M" with the generation time
in its footer. Values are printed as given: amounts stay ``Decimal`` or ``str`` all
the way to the page, never passing through ``float``.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Callable, Iterable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import UTC, datetime

from fpdf import FPDF

from ledgerflow.reports import fonts
from ledgerflow.reports.flow import (
    DROP_FILL,
    DROP_STROKE,
    EDGE_STROKE,
    LABEL_SIZE,
    PAD_X,
    STAGE_FILL,
    STAGE_STROKE,
    TEXT_FILL,
    Flow,
    Point,
    Text,
    layout,
)
from ledgerflow.reports.tables import TableWriter, cell_text


@dataclass(frozen=True)
class Paragraph:
    """Running text; its line breaks are kept."""

    text: str


@dataclass(frozen=True)
class Heading:
    """A section title, kept on the same page as what follows it."""

    text: str


@dataclass(frozen=True)
class Table:
    """Rows under named columns; ``numeric`` names the columns aligned to the right.

    Cells are printed with ``str`` (None as empty): pass amounts as ``Decimal`` or ``str``.
    """

    columns: Sequence[str]
    rows: Sequence[Sequence[object]]
    numeric: AbstractSet[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if not self.columns:
            raise ValueError("a table needs at least one column")
        unknown = set(self.numeric) - set(self.columns)
        if unknown:
            raise ValueError(f"numeric names unknown columns: {sorted(unknown)}")
        for index, row in enumerate(self.rows):
            if len(row) != len(self.columns):
                raise ValueError(f"row {index} has {len(row)} cells for {len(self.columns)}")


@dataclass(frozen=True)
class Figure:
    """A flow graph with a caption under it."""

    flow: Flow
    caption: str = ""


Section = Paragraph | Heading | Table | Figure

MARGIN = 15.0  # millimetres
TOP = 20.0
BOTTOM = 18.0
BODY = 10.0  # points
SMALL = 8.0
INK = (20, 30, 40)
GREY = (90, 98, 108)
RULE = (190, 197, 205)
_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"{moment} has no time zone; reports need aware datetimes")
    return moment.astimezone(UTC)


def _when(moment: datetime) -> str:
    at = _utc(moment)
    return f"{at.day} {_MONTHS[at.month - 1]} {at.year} {at:%H:%M} UTC"


def _iso(moment: datetime) -> str:
    return _utc(moment).replace(microsecond=0).isoformat().replace("+00:00", "Z")


class _Document(FPDF):
    """An A4 document with the report's header and footer on every page."""

    def __init__(self, title: str, generated: str, files: fonts.FontFiles | None) -> None:
        super().__init__(orientation="portrait", unit="mm", format="A4")
        self.lf_title = title
        self.lf_generated = generated
        self.lf_face = fonts.Typeface(self, files)
        self.set_margins(MARGIN, TOP, MARGIN)
        self.set_auto_page_break(True, margin=BOTTOM)
        self.c_margin = 0  # text starts on the margin, in line with the tables and rules

    def header(self) -> None:
        """The report's title, on one line, above a thin rule."""
        face = self.lf_face
        face.use("", SMALL)
        self.set_text_color(*GREY)
        title = face.clean(self.lf_title.replace("\n", " "))
        self.text(MARGIN, 11.0, face.fit(title, "", SMALL, self.epw))
        self.set_draw_color(*RULE)
        self.set_line_width(0.2)
        self.line(MARGIN, 13.0, self.w - MARGIN, 13.0)
        self.set_xy(MARGIN, TOP)

    def footer(self) -> None:
        """The generation time on the left, "Page N of M" on the right."""
        self.set_draw_color(*RULE)
        self.set_line_width(0.2)
        self.line(MARGIN, self.h - 13.0, self.w - MARGIN, self.h - 13.0)
        self.lf_face.use("", SMALL)
        self.set_text_color(*GREY)
        self.set_xy(MARGIN, self.h - 12.0)
        self.cell(self.epw / 2, 5, f"Generated {self.lf_generated}")
        # {nb} is the library's placeholder for the page count, known only at the end.
        self.cell(self.epw / 2, 5, f"Page {self.page_no()} of {{nb}}", align="R")


def _rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def draw_flow(
    pdf: FPDF,
    flow: Flow,
    x: float,
    y: float,
    width: float,
    clean: Callable[[str], str] | None = None,
) -> float:
    """Draw ``flow`` into ``pdf`` with its top-left corner at (x, y), ``width`` wide.

    Paints the same layout as ``flow.to_svg``, with real PDF text in the document's
    current font family (which needs a bold style too). ``clean`` makes a label
    printable in that font; by default labels are kept for a TrueType font and cut to
    Latin-1 for a core font. Returns the height drawn, in the document's units.
    """
    plan = layout(flow)
    scale = width / plan.width
    family = pdf.font_family
    if clean is None:
        clean = str if pdf.is_ttf_font else fonts.to_latin1

    def at(point: Point) -> tuple[float, float]:
        return x + point.x * scale, y + point.y * scale

    def put(item: Text, room: float | None = None) -> None:
        text, style = clean(item.text), "B" if item.bold else ""
        size = item.size * scale * pdf.k
        pdf.set_font(family, style, size)
        measured = pdf.get_string_width(text)
        if room is not None and measured > room * scale:
            # The layout's width estimate was beaten by the font: shrink, never overflow.
            pdf.set_font(family, style, size * room * scale / measured)
            measured = pdf.get_string_width(text)
        left, base = at(Point(item.x, item.y))
        pdf.text(
            left - {"start": 0.0, "middle": measured / 2, "end": measured}[item.anchor], base, text
        )

    with pdf.local_context():
        pdf.set_text_color(*_rgb(TEXT_FILL))
        pdf.set_line_width(1.5 * scale)
        for path in plan.paths:
            colour = _rgb(DROP_STROKE if path.to_drop else EDGE_STROKE)
            pdf.set_draw_color(*colour)
            pdf.set_fill_color(*colour)
            *body, before, tip = path.points
            length = math.dist(before, tip) or 1.0
            dx, dy = (tip.x - before.x) / length, (tip.y - before.y) / length
            base = Point(tip.x - dx * plan.arrow, tip.y - dy * plan.arrow)
            pdf.polyline([at(p) for p in (*body, before, base)], style="D")
            half = plan.arrow / 2
            wings = (
                Point(base.x - dy * half, base.y + dx * half),
                Point(base.x + dy * half, base.y - dx * half),
            )
            pdf.polygon([at(p) for p in (tip, *wings)], style="F")
            put(path.label)
        pdf.set_line_width(1.2 * scale)
        for box in plan.boxes:
            stage = box.node.kind == "stage"
            pdf.set_fill_color(*_rgb(STAGE_FILL if stage else DROP_FILL))
            pdf.set_draw_color(*_rgb(STAGE_STROKE if stage else DROP_STROKE))
            left, top = at(Point(box.x, box.y))
            pdf.rect(
                left,
                top,
                box.width * scale,
                box.height * scale,
                style="DF",
                round_corners=True,
                corner_radius=4 * scale,
            )
            for line in box.lines:
                put(line, box.width - 2 * PAD_X + 6)
    return plan.height * scale


def _title_block(pdf: _Document, period: str) -> None:
    face = pdf.lf_face
    pdf.set_text_color(*INK)
    face.use("B", 18)
    pdf.multi_cell(0, 8, face.clean(pdf.lf_title), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(1)
    face.use("", BODY)
    pdf.set_text_color(*GREY)
    pdf.cell(0, 5, f"Period: {period}", new_x="LMARGIN", new_y="NEXT")
    pdf.cell(0, 5, f"Generated {pdf.lf_generated}", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(5)


def _paragraph(pdf: _Document, section: Paragraph) -> None:
    pdf.lf_face.use("", BODY)
    pdf.set_text_color(*INK)
    pdf.multi_cell(0, 5, pdf.lf_face.clean(section.text), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)


def _heading(pdf: _Document, section: Heading) -> None:
    if pdf.get_y() + 7 + 3 * 5 > pdf.page_break_trigger:  # a heading never ends a page
        pdf.add_page()
    pdf.lf_face.use("B", 13)
    pdf.set_text_color(*INK)
    pdf.multi_cell(0, 7, pdf.lf_face.clean(section.text), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(1.5)


def _figure(pdf: _Document, section: Figure) -> None:
    plan = layout(section.flow)
    caption = pdf.lf_face.clean(section.caption)
    below = 12.0 if caption else 2.0
    # As wide as the page allows, but labels no larger than 9 pt, and on one page.
    scale = min(pdf.epw / plan.width, 9 / LABEL_SIZE / pdf.k)
    scale = min(scale, (pdf.page_break_trigger - TOP - below) / plan.height)
    width, height = plan.width * scale, plan.height * scale
    if pdf.get_y() + height + below > pdf.page_break_trigger:
        pdf.add_page()
    pdf.lf_face.use("", BODY)
    top = pdf.get_y()
    draw_flow(pdf, section.flow, MARGIN + (pdf.epw - width) / 2, top, width, pdf.lf_face.clean)
    pdf.set_y(top + height + 2)
    if caption:
        pdf.lf_face.use("", SMALL + 0.5)
        pdf.set_text_color(*GREY)
        pdf.multi_cell(0, 4, caption, align="C", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)


def pdf_report(
    title: str,
    period: tuple[datetime, datetime] | None,
    sections: Sequence[Section],
    generated_at: datetime,
) -> bytes:
    """Render a report to PDF bytes.

    The first page shows the title, the period ("1 Nov 2026 00:00 UTC to 30 Nov 2026
    00:00 UTC", or "All time" when ``period`` is None) and ``generated_at``, which is
    also the document's creation date. Datetimes must be timezone-aware.
    """
    when = "All time" if period is None else f"{_when(period[0])} to {_when(period[1])}"
    pdf = _Document(title, _iso(generated_at), fonts.find_unicode_font())
    pdf.set_title(title)
    pdf.set_creation_date(_utc(generated_at))
    pdf.set_producer("ledgerflow")
    pdf.set_creator("ledgerflow")
    pdf.set_lang("en")
    pdf.add_page()
    _title_block(pdf, when)
    for section in sections:
        match section:
            case Paragraph():
                _paragraph(pdf, section)
            case Heading():
                _heading(pdf, section)
            case Table():
                TableWriter(
                    pdf, pdf.lf_face, section.columns, section.rows, section.numeric
                ).write()
                pdf.ln(4)
            case Figure():
                _figure(pdf, section)
    return bytes(pdf.output())


def csv_report(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """CSV text: a header row, then one line per row; None is empty, values go through
    ``csv_cell``."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([csv_cell(value) for value in row] for row in rows)
    return out.getvalue()


_FORMULA = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def csv_cell(value: object) -> str:
    """A value as a CSV cell: exact (``str`` of a Decimal), and text that a spreadsheet
    would run as a formula (``=HYPERLINK(...)`` in a message id or a body) led by a quote
    mark. Numbers, ``-12.5`` included, are left as they are."""
    text = cell_text(value)
    if isinstance(value, str) and text.startswith(_FORMULA) and not _NUMBER.match(text):
        return "'" + text
    return text

"""Tables in the PDF reports: column widths, word wrap, and rows that run across pages.

Drawn with plain rectangles and text rather than the library's own table, so that a
page break can fall inside a row taller than a page (a long message body), the header
row repeats on every page, and 10,000 rows take seconds, not minutes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet

from fpdf import FPDF

from ledgerflow.reports.fonts import Typeface

SIZE = 8.0  # points
LINE = 3.8  # millimetres from one line of a cell to the next
PAD_X = 1.5
PAD_Y = 1.0
INK = (20, 30, 40)
RULE = (190, 197, 205)
HEAD_FILL = (226, 233, 240)
STRIPE = (246, 248, 250)


def cell_text(value: object) -> str:
    """A value as a table shows it: None is empty, anything else goes through ``str``.

    ``str`` keeps a ``Decimal`` exact (no float on the way).
    """
    return "" if value is None else str(value)


def wrap(text: str, width: float, measure: Callable[[str], float]) -> list[str]:
    """Greedy word wrap to ``width``; line breaks are kept and words wider than a line
    are cut between characters."""
    lines: list[str] = []
    space = measure(" ")
    for paragraph in text.split("\n"):
        current, used = "", 0.0
        for word in paragraph.split():
            size = measure(word)
            if current and used + space + size <= width:
                current, used = f"{current} {word}", used + space + size
                continue
            if current:
                lines.append(current)
            while size > width and len(word) > 1:
                total, cut = 0.0, 0
                while cut < len(word) and total + measure(word[cut]) <= width:
                    total += measure(word[cut])
                    cut += 1
                cut = max(cut, 1)
                lines.append(word[:cut])
                word = word[cut:]
                size = measure(word)
            current, used = word, size
        lines.append(current)
    return lines


class TableWriter:
    """Draws one table at the document's current position, row by row."""

    def __init__(
        self,
        pdf: FPDF,
        face: Typeface,
        columns: Sequence[str],
        rows: Sequence[Sequence[object]],
        numeric: AbstractSet[str],
    ) -> None:
        self.pdf = pdf
        self.face = face
        self.right = [column in numeric for column in columns]
        self.body = [[face.clean(cell_text(value)) for value in row] for row in rows]
        head = [face.clean(column) for column in columns]
        self.widths = self._widths(head)
        self.head = self._lines(head, "B")

    def _measure(self, style: str) -> Callable[[str], float]:
        return lambda text: self.face.width(text, style, SIZE)

    def _widths(self, head: list[str]) -> list[float]:
        # The usual automatic table layout: every column gets its longest word (a number
        # in full; other words up to half the page), and the rest of the width goes to
        # the columns in proportion to what they lack for one line per cell.
        plain, bold = self._measure(""), self._measure("B")
        least = [max(bold(w) for w in [*text.split(), ""]) + 2 * PAD_X for text in head]
        ideal = [bold(text) + 2 * PAD_X for text in head]
        room = self.pdf.epw
        for row in self.body:
            for index, text in enumerate(row):
                for line in text.split("\n"):
                    ideal[index] = max(ideal[index], plain(line) + 2 * PAD_X)
                    word = max((plain(w) for w in line.split()), default=0.0) + 2 * PAD_X
                    cap = room if self.right[index] else room / 2
                    least[index] = max(least[index], min(word, cap))
        if sum(ideal) <= room:
            return [size * room / sum(ideal) for size in ideal]
        if sum(least) >= room:
            return [size * room / sum(least) for size in least]
        share = (room - sum(least)) / (sum(ideal) - sum(least))
        return [low + (high - low) * share for low, high in zip(least, ideal, strict=True)]

    def _lines(self, row: list[str], style: str) -> list[list[str]]:
        measure = self._measure(style)
        pairs = zip(row, self.widths, strict=True)
        return [wrap(text, width - 2 * PAD_X, measure) for text, width in pairs]

    def _draw(
        self,
        cells: list[list[str]],
        start: int,
        count: int,
        style: str,
        fill: tuple[int, int, int] | None,
    ) -> None:
        pdf = self.pdf
        top, x = pdf.get_y(), pdf.l_margin
        height = count * LINE + 2 * PAD_Y
        size = SIZE / pdf.k
        baseline = top + PAD_Y + (LINE - size) / 2 + 0.8 * size
        pdf.set_draw_color(*RULE)
        pdf.set_line_width(0.15)
        self.face.use(style, SIZE)
        pdf.set_text_color(*INK)
        if fill is not None:
            pdf.set_fill_color(*fill)
        measure = self._measure(style)
        for lines, width, right in zip(cells, self.widths, self.right, strict=True):
            pdf.rect(x, top, width, height, style="DF" if fill is not None else "D")
            for offset, line in enumerate(lines[start : start + count]):
                if line:
                    left = x + width - PAD_X - measure(line) if right else x + PAD_X
                    pdf.text(left, baseline + offset * LINE, line)
            x += width
        pdf.set_y(top + height)

    def _head(self) -> None:
        self._draw(self.head, 0, max(map(len, self.head)), "B", HEAD_FILL)

    def write(self) -> None:
        """Draw the header row, then every row, breaking pages between rows, or inside a
        row only when it is taller than a whole page."""
        pdf = self.pdf
        head = max(map(len, self.head)) * LINE + 2 * PAD_Y
        if pdf.get_y() + head + LINE + 2 * PAD_Y > pdf.page_break_trigger:
            pdf.add_page()
        self._head()
        fresh = int((pdf.page_break_trigger - pdf.t_margin - head - 2 * PAD_Y) // LINE)
        for index, row in enumerate(self.body):
            cells = self._lines(row, "")
            total, start, broke = max(map(len, cells)), 0, False
            fill = STRIPE if index % 2 else None
            while start < total:
                room = int((pdf.page_break_trigger - pdf.get_y() - 2 * PAD_Y) // LINE)
                if room < min(total - start, fresh, 2):
                    room = 0  # no stub of a single line at the foot of a page
                if not broke and (room == 0 or (start == 0 and room < total <= fresh)):
                    pdf.add_page()
                    self._head()
                    broke = True
                    continue
                # Right after a break something is drawn, whatever the room: a header
                # row taller than the page must not loop for ever.
                count = max(1, min(room, total - start))
                self._draw(cells, start, count, "", fill)
                start, broke = start + count, False

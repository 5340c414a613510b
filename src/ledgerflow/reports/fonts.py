"""The typeface of the PDF reports: DejaVu Sans when installed, else Helvetica.

User text (rule names, justifications, message bodies) may be any Unicode, while the
PDF core fonts print Latin-1 only. A report never fails on a character: what the
chosen face cannot print becomes "?".
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from fpdf import FPDF
from fpdf.fonts import TTFFont


@dataclass(frozen=True)
class FontFiles:
    """A TrueType face able to print most user text: its regular and bold files."""

    regular: Path
    bold: Path


FONT_DIRS = (
    Path("/usr/share/fonts/truetype/dejavu"),
    Path("/usr/share/fonts/dejavu"),
    Path("/usr/share/fonts/TTF"),
    Path("/usr/local/share/fonts"),
)


def _fc_match(pattern: str) -> Path | None:
    # fc-match always answers with its nearest face; only DejaVu Sans itself will do.
    if shutil.which("fc-match") is None:
        return None
    try:
        done = subprocess.run(
            ["fc-match", "-f", "%{file}", pattern],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    found = Path(done.stdout.strip())
    if done.returncode == 0 and found.name.startswith("DejaVuSans") and found.is_file():
        return found
    return None


def find_unicode_font() -> FontFiles | None:
    """Find DejaVu Sans, regular and bold, or return None when it is not installed.

    Looks in the usual font directories first, then asks fontconfig's ``fc-match``
    when that program exists. A missing bold face is replaced by the regular one.
    """
    regular: Path | None = None
    bold: Path | None = None
    for directory in FONT_DIRS:
        if (directory / "DejaVuSans.ttf").is_file():
            regular, bold = directory / "DejaVuSans.ttf", directory / "DejaVuSans-Bold.ttf"
            break
    else:
        regular, bold = _fc_match("DejaVu Sans"), _fc_match("DejaVu Sans:bold")
    if regular is None:
        return None
    return FontFiles(regular, bold if bold is not None and bold.is_file() else regular)


_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def to_latin1(text: str) -> str:
    """``text`` with every character beyond Latin-1 replaced by "?", for the core fonts."""
    return text.encode("latin-1", "replace").decode("latin-1")


class Typeface:
    """The face a document prints in, regular and bold: what it can print, and how wide.

    Registers the TrueType files with ``pdf`` when given, else uses Helvetica.
    """

    def __init__(self, pdf: FPDF, files: FontFiles | None) -> None:
        self.pdf = pdf
        self.family = "dejavu" if files is not None else "helvetica"
        self.glyphs: frozenset[int] | None = None  # None: the Latin-1 core font
        if files is not None:
            pdf.add_font(self.family, "", str(files.regular))
            pdf.add_font(self.family, "B", str(files.bold))
            faces = [pdf.fonts.get(self.family), pdf.fonts.get(self.family + "B")]
            maps = [frozenset(face.cmap) for face in faces if isinstance(face, TTFFont)]
            self.glyphs = frozenset.intersection(*maps) if maps else frozenset()
        self._widths: dict[tuple[str, float], dict[str, float]] = {}

    @property
    def unicode(self) -> bool:
        """Whether the face prints beyond Latin-1."""
        return self.glyphs is not None

    def clean(self, text: str) -> str:
        """``text`` made printable: control characters become spaces (line breaks stay),
        and characters the face has no glyph for become "?"."""
        text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", " ")
        text = _CONTROL.sub(" ", text)
        if self.glyphs is None:
            return to_latin1(text)
        if text.isascii():  # every usable face has ASCII: the common case stays fast
            return text
        glyphs = self.glyphs
        return "".join(c if c == "\n" or ord(c) in glyphs else "?" for c in text)

    def use(self, style: str, size: float) -> None:
        """Make the face current in ``style`` ("" or "B") at ``size`` points."""
        self.pdf.set_font(self.family, style, size)

    def width(self, text: str, style: str, size: float) -> float:
        """The width of cleaned ``text`` in document units.

        Summed from cached character widths, which is exact here (no kerning without
        text shaping) and far faster than measuring every string through the library.
        """
        cache = self._widths.setdefault((style, size), {})
        total = 0.0
        for char in text:
            width = cache.get(char)
            if width is None:
                with self.pdf.local_context():
                    self.use(style, size)
                    width = cache[char] = self.pdf.get_string_width(char)
            total += width
        return total

    def fit(self, text: str, style: str, size: float, room: float) -> str:
        """``text`` shortened with "..." to fit ``room``, or unchanged if it fits."""
        if self.width(text, style, size) <= room:
            return text
        while text and self.width(text + "...", style, size) > room:
            text = text[:-1]
        return text + "..."

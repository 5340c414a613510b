"""Server-rendered pages: Jinja2 templates from each package's ``templates`` folder,
the shared layout and stylesheet from this one. Pages work before any script runs."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from jinja2 import ChoiceLoader, Environment, PackageLoader, select_autoescape
from markupsafe import Markup, escape
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles

STATIC_PATH = "/static"
_CODE = re.compile(r"`([^`]+)`")


def when(value: datetime | str | None) -> str:
    """A moment as people read it: ``2026-11-29 23:49:45 UTC`` (CSV keeps ISO 8601)."""
    if value is None or value == "":
        return ""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def amount(value: Decimal | int | str | None, places: int = 2) -> str:
    """A decimal as people read it, exactly: thousands separated, at least ``places``
    decimals and every significant one after (``1234567.5`` → ``1,234,567.50``), never
    through a float. A string is read as a Decimal (figures kept as JSON); ``None``: empty."""
    if value is None or value == "":
        return ""
    if isinstance(value, float):
        raise TypeError(f"{value!r}: a float is not exact; give a Decimal")
    number = value if isinstance(value, Decimal) else Decimal(str(value))
    if not number.is_finite():
        return str(number)
    sign = "-" if number.is_signed() and not number.is_zero() else ""
    whole, _, fraction = format(number.copy_abs(), "f").partition(".")
    fraction = fraction.rstrip("0").ljust(places, "0")
    return f"{sign}{int(whole):,}" + (f".{fraction}" if fraction else "")


def percent(value: Decimal | str | None, places: int = 2) -> str:
    """A ratio as a percentage, exactly (``1.0525`` → ``105.25 %``); ``None``: empty."""
    if value is None or value == "":
        return ""
    ratio = value if isinstance(value, Decimal) else Decimal(value)
    sign, digits, exponent = ratio.as_tuple()
    if not isinstance(exponent, int):
        return str(ratio)
    return f"{amount(Decimal((sign, digits, exponent + 2)), places)} %"  # exact, unlike * 100


def code_spans(text: str | None) -> Markup:
    """Text with its `backquoted` parts as code, the rest escaped."""
    escaped = str(escape(text or ""))
    return Markup(_CODE.sub(r"<code>\1</code>", escaped))


class Pages:
    """Templates of the given packages (``ledgerflow.web`` first: the layout)."""

    def __init__(self, packages: Iterable[str]) -> None:
        loaders = [PackageLoader(p, "templates") for p in ("ledgerflow.web", *packages)]
        self.env = Environment(
            loader=ChoiceLoader(loaders),
            autoescape=select_autoescape(default=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["when"] = when
        self.env.filters["code_spans"] = code_spans
        self.env.filters["amount"] = amount
        self.env.filters["percent"] = percent

    def render(
        self, request: Request, template: str, status_code: int = 200, **context: Any
    ) -> HTMLResponse:
        """The page ``template``, with the request and its identity in the context."""
        identity = getattr(request.state, "identity", None)
        html = self.env.get_template(template).render(
            request=request, identity=identity, static=STATIC_PATH, **context
        )
        return HTMLResponse(html, status_code=status_code)


MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "pdf": "application/pdf"}


def download(filename: str, content: bytes | str) -> Response:
    """A file to save (``name.csv`` or ``name.pdf``), not to show in the browser."""
    extension = filename.rsplit(".", 1)[-1]
    return Response(
        content,
        media_type=MEDIA_TYPES[extension],
        headers={"content-disposition": f'attachment; filename="{filename}"'},
    )


def static_files() -> StaticFiles:
    """The stylesheet and scripts of the console (``ledgerflow/web/static``)."""
    return StaticFiles(packages=[("ledgerflow.web", "static")])

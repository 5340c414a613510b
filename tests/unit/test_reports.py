"""Reports: PDF documents read back as text, the flow graph as SVG, and CSV."""

from __future__ import annotations

import io
import re
import shutil
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pypdf
import pytest

from ledgerflow.reports import fonts
from ledgerflow.reports.flow import Edge, Flow, Node, layout, to_svg
from ledgerflow.reports.pdf import (
    Figure,
    Heading,
    Paragraph,
    Section,
    Table,
    csv_report,
    pdf_report,
)

SVG = "{http://www.w3.org/2000/svg}"
GENERATED = datetime(2026, 12, 1, 8, 30, 15, 123456, tzinfo=UTC)
NOVEMBER = (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 30, tzinfo=UTC))
TITLE = "Transactions, November 2026"
RULE = "filtered: big-values v3"
UNICODE = "Zürich → 東京 ✓"
BIG = Decimal("12345678901234567890.123456789012")


def transactions() -> Flow:
    return Flow(
        "Transactions pipeline",
        (
            Node("received", "received", 1_234_567, "stage"),
            Node("parsed", "parsed", 1_230_000, "stage"),
            Node("stored", "stored", 1_191_933, "stage"),
            Node("published", "published", 1_191_923, "stage"),
            Node("invalid", "rejected: invalid_json", 4_567, "drop"),
            Node("big", RULE, 38_000, "drop"),
            Node("odd", 'filtered: <b>&"x"', 67, "drop"),
            Node("duplicate", "duplicate", 10, "drop"),
            Node("redelivered", "redelivered", None, "drop"),
        ),
        (
            Edge("received", "parsed", 1_230_000),
            Edge("received", "invalid", 4_500),
            Edge("parsed", "invalid", 67),
            Edge("parsed", "stored", 1_191_933),
            Edge("parsed", "big", 38_000),
            Edge("parsed", "odd", 2_000),
            Edge("stored", "published", 1_191_923),
            Edge("stored", "duplicate", 10),
            Edge("published", "redelivered", 42),
        ),
    )


def read(data: bytes) -> list[str]:
    """Each page's text, whitespace runs collapsed to one space."""
    reader = pypdf.PdfReader(io.BytesIO(data))
    return [" ".join(page.extract_text().split()) for page in reader.pages]


def report(*sections: Section) -> list[str]:
    return read(pdf_report(TITLE, NOVEMBER, sections, GENERATED))


def rows(count: int) -> list[list[object]]:
    return [
        [f"row-{i:04d}", Decimal(i) / 8, None, "a justification that runs on " * (i % 7)]
        for i in range(count)
    ]


def long_table(count: int) -> Table:
    return Table(["Message id", "Amount", "Account", "Justification"], rows(count), {"Amount"})


def test_every_page_has_title_and_page_n_of_m_and_page_one_the_period_and_time() -> None:
    pages = report(Paragraph("Monthly figures."), long_table(150))

    assert len(pages) > 1
    assert "Period: 1 Nov 2026 00:00 UTC to 30 Nov 2026 00:00 UTC" in pages[0]
    assert "Generated 2026-12-01T08:30:15Z" in pages[0]
    for number, text in enumerate(pages, start=1):
        assert TITLE in text
        assert f"Page {number} of {len(pages)}" in text
        assert "Generated 2026-12-01T08:30:15Z" in text


def test_a_report_without_period_covers_all_time() -> None:
    data = pdf_report(TITLE, None, [Paragraph("Everything.")], GENERATED)

    assert "Period: All time" in read(data)[0]


def test_metadata_has_title_creation_date_and_producer() -> None:
    data = pdf_report(TITLE, NOVEMBER, [], GENERATED)

    metadata = pypdf.PdfReader(io.BytesIO(data)).metadata
    assert metadata is not None
    assert metadata.title == TITLE
    assert metadata.producer == "ledgerflow"
    assert metadata.creation_date == GENERATED.replace(microsecond=0)


def test_a_long_table_breaks_over_pages_repeating_its_header_row() -> None:
    pages = report(Heading("Transactions"), long_table(300))

    assert len(pages) >= 3
    for text in pages:  # readers differ on whether a wide gap between cells is a space
        assert re.search("Message id ?Amount ?Account ?Justification", text)
    found = re.findall(r"row-\d{4}", " ".join(pages))
    assert found == [f"row-{i:04d}" for i in range(300)]


def test_a_row_taller_than_a_page_continues_on_the_next_pages() -> None:
    body = "\n".join(f"line-{i:03d}" for i in range(200))
    pages = report(Table(["Message id", "Body"], [["row-0000", body], ["row-0001", "short"]]))

    assert len(pages) >= 3
    assert re.findall(r"line-\d{3}", " ".join(pages)) == [f"line-{i:03d}" for i in range(200)]
    assert all(re.search("Message id ?Body", text) for text in pages)
    assert "row-0001 short" in pages[-1]


def test_decimals_appear_exactly_as_given() -> None:
    table = Table(
        ["Account", "Balance"], [["acct-1", BIG], ["acct-2", "-0.000000000001"]], {"Balance"}
    )

    text = " ".join(report(table))

    assert f"acct-1 {BIG}" in text
    assert "acct-2 -0.000000000001" in text


def test_non_latin1_text_prints_with_the_unicode_font() -> None:
    pages = report(Heading(UNICODE), Paragraph(UNICODE), Table(["Rule"], [[UNICODE]]))

    if fonts.find_unicode_font() is None:
        pytest.skip("DejaVu Sans is not installed: non-Latin-1 text prints as '?'")
    # DejaVu Sans has no CJK glyphs; those print as "?" instead of vanishing.
    assert pages[0].count("Zürich → ?? ✓") == 3


def test_without_the_unicode_font_non_latin1_text_becomes_question_marks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(fonts, "find_unicode_font", lambda: None)
    flow = Flow("Unicode", (Node("a", "東京", 1, "stage"), Node("b", "✓", 2, "stage")), ())

    pages = read(pdf_report(UNICODE, None, [Paragraph(UNICODE), Figure(flow)], GENERATED))

    assert "Zürich ? ?? ?" in pages[0]


def test_the_flow_figure_is_text_in_the_pdf() -> None:
    pages = report(Figure(transactions(), "The transactions pipeline"))

    text = pages[0]
    for expected in ("received", "1,234,567", RULE, "rejected: invalid_json", "4,500", "42"):
        assert expected in text
    assert "The transactions pipeline" in text


def test_svg_is_well_formed_titled_and_free_of_scripts_and_inline_styles() -> None:
    svg = to_svg(transactions())

    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    assert root.get("role") == "img"
    assert root.get("viewBox") is not None
    title = root.find(f"{SVG}title")
    assert title is not None and title.text == "Transactions pipeline"
    assert not [e for e in root.iter() if e.tag in (f"{SVG}script", f"{SVG}style")]
    assert not [e for e in root.iter() if "style" in e.attrib]
    assert "<style" not in svg and "style=" not in svg
    assert root.find(f".//{SVG}marker") is not None


def test_svg_shows_every_node_label_and_count_and_every_edge_count() -> None:
    flow = transactions()

    root = ET.fromstring(to_svg(flow))

    boxes = {
        group.get("data-key"): " ".join(t.text or "" for t in group.iter(f"{SVG}text"))
        for group in root.iter(f"{SVG}g")
        if group.get("class") in ("lf-flow-stage", "lf-flow-drop")
    }
    for node in flow.nodes:
        count = "" if node.count is None else f" {node.count:,}"
        assert boxes[node.key] == node.label + count
    edges = [
        " ".join(t.text or "" for t in group.iter(f"{SVG}text"))
        for group in root.iter(f"{SVG}g")
        if group.get("class") == "lf-flow-edge"
    ]
    assert edges == [f"{edge.count:,}" for edge in flow.edges]


def test_svg_escapes_user_text() -> None:
    flow = Flow('<script>alert("t")</script>', (Node("a", '<b>&"x"', 1, "stage"),), ())

    svg = to_svg(flow)

    assert "&lt;b&gt;&amp;" in svg
    root = ET.fromstring(svg)
    assert not [e for e in root.iter() if e.tag in (f"{SVG}script", f"{SVG}b", "b")]
    assert [t.text for t in root.iter(f"{SVG}text")] == ['<b>&"x"', "1"]


def test_an_edge_to_an_unknown_node_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown node 'nowhere'"):
        Flow("t", (Node("a", "a", 1, "stage"),), (Edge("a", "nowhere", 1),))


def test_edges_skipping_a_stage_run_above_the_main_line() -> None:
    stages = tuple(Node(key, key, 10, "stage") for key in ("received", "validated", "served"))
    flow = Flow("Prices", stages, (Edge("received", "validated", 9), Edge("received", "served", 1)))

    plan = layout(flow)

    top = min(box.y for box in plan.boxes)
    assert min(point.y for point in plan.paths[1].points) < top
    assert min(point.y for point in plan.paths[0].points) > top


def test_table_and_datetimes_are_checked() -> None:
    with pytest.raises(ValueError, match="row 1"):
        Table(["a", "b"], [["1", "2"], ["3"]])
    with pytest.raises(ValueError, match="unknown columns"):
        Table(["a"], [], {"b"})
    with pytest.raises(ValueError, match="time zone"):
        pdf_report(TITLE, None, [], datetime(2026, 12, 1))


def test_no_font_is_found_without_font_directories_or_fc_match(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(fonts, "FONT_DIRS", (Path("/nonexistent"),))
    monkeypatch.setattr(shutil, "which", lambda name: None)

    assert fonts.find_unicode_font() is None


def test_csv_has_a_header_and_keeps_values_exact() -> None:
    text = csv_report(
        ["id", "amount", "note"], [["a", BIG, None], ["b", Decimal("-3"), 'say "hi", twice']]
    )

    assert text == f'id,amount,note\na,{BIG},\nb,-3,"say ""hi"", twice"\n'


def test_a_csv_cell_a_spreadsheet_would_run_is_led_by_a_quote_mark() -> None:
    from decimal import Decimal

    from ledgerflow.reports.pdf import csv_cell

    assert csv_cell('=HYPERLINK("http://x","y")') == '\'=HYPERLINK("http://x","y")'
    assert csv_cell("@SUM(A1)") == "'@SUM(A1)"
    assert csv_cell("-12.5") == "-12.5"  # an amount as text stays a number
    assert csv_cell("+1e3") == "+1e3"
    assert csv_cell(Decimal("-3")) == "-3"
    assert csv_cell(None) == ""
    assert csv_cell("m-1") == "m-1"

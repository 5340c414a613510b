"""The lineage graph of a pipeline, laid out once and drawn to SVG or into a PDF.

Stages run left to right on one main line; every "drop" node (rejected, filtered,
duplicate...) hangs below the stage it first leaves from, several drops under one
stage stacking downwards on a shared trunk. ``layout`` computes every position in
abstract units; ``to_svg`` here and ``ledgerflow.reports.pdf.draw_flow`` only paint that
layout, so the web console and the PDF show the same picture.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Literal, NamedTuple
from xml.sax.saxutils import escape, quoteattr

NodeKind = Literal["stage", "drop"]
Anchor = Literal["start", "middle", "end"]


@dataclass(frozen=True)
class Node:
    """A box of the graph: a main-line ``stage`` or a ``drop`` branching off one."""

    key: str
    label: str
    count: int | None
    kind: NodeKind


@dataclass(frozen=True)
class Edge:
    """An arrow from one node to another, carrying how many messages took it."""

    source: str
    target: str
    count: int


@dataclass(frozen=True)
class Flow:
    """A whole graph; main-line stages are drawn in the order of ``nodes``.

    Raises ValueError for duplicate node keys, an edge naming an unknown node, an edge
    onto its own source or out of a drop, and a drop no stage leads to.
    """

    title: str
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]

    def __post_init__(self) -> None:
        keys: dict[str, Node] = {}
        for node in self.nodes:
            if node.key in keys:
                raise ValueError(f"two nodes have the key {node.key!r}")
            keys[node.key] = node
        for edge in self.edges:
            name = f"edge {edge.source!r} -> {edge.target!r}"
            for end in (edge.source, edge.target):
                if end not in keys:
                    raise ValueError(f"{name} names an unknown node {end!r}")
            if edge.source == edge.target:
                raise ValueError(f"{name} loops onto its own source")
            if keys[edge.source].kind == "drop":
                raise ValueError(f"{name} leaves a drop node")
        reached = {edge.target for edge in self.edges}
        for node in self.nodes:
            if node.kind == "drop" and node.key not in reached:
                raise ValueError(f"drop node {node.key!r} has no edge from a stage")


class Point(NamedTuple):
    """A position in layout units; y grows downwards, as in SVG."""

    x: float
    y: float


@dataclass(frozen=True)
class Text:
    """One line of text; ``y`` is its baseline, ``anchor`` where ``x`` sits on it."""

    x: float
    y: float
    text: str
    size: float
    anchor: Anchor
    bold: bool = False


@dataclass(frozen=True)
class Box:
    """A node's rectangle and the lines of text inside it."""

    node: Node
    x: float
    y: float
    width: float
    height: float
    lines: tuple[Text, ...]


@dataclass(frozen=True)
class Path:
    """An edge drawn as a polyline ending in an arrowhead, with its count beside it."""

    edge: Edge
    points: tuple[Point, ...]
    label: Text
    to_drop: bool


@dataclass(frozen=True)
class Layout:
    """Everything a renderer needs, in abstract units (one unit is one SVG pixel)."""

    title: str
    width: float
    height: float
    boxes: tuple[Box, ...]
    paths: tuple[Path, ...]
    arrow: float


# Sizes in layout units. Text widths are estimated without a font file, generously,
# so that the widest common sans-serif face still fits its box.
MARGIN = 16.0
LABEL_SIZE = 12.0
EDGE_SIZE = 11.0
LINE_HEIGHT = 15.0
PAD_X = 10.0
PAD_Y = 8.0
ARROW = 7.0
TRUNK = 12.0  # the drops' trunk, right of the stage's left edge
DROP_INDENT = 24.0  # drops' left edge, right of the stage's left edge
FOREIGN = 4.0  # edges to drops of earlier stages leave this far right of the left edge
LABEL_ROOM = EDGE_SIZE + 8.0  # the space above a drop for its edge's count
LANE = EDGE_SIZE + 12.0  # the spacing of edges routed above the main line

STAGE_FILL, STAGE_STROKE = "#e4ebf2", "#4d6a86"
DROP_FILL, DROP_STROKE = "#f8e6df", "#b0553f"
EDGE_STROKE, TEXT_FILL = "#5c6773", "#1f2a36"
FONT_FAMILY = "DejaVu Sans, Helvetica, Arial, sans-serif"


def count_text(count: int) -> str:
    """A count with thousands separators: ``1,234,567``."""
    return f"{count:,}"


def text_width(text: str, size: float) -> float:
    """An upper estimate of ``text``'s width at font size ``size``, in the same units."""
    total = 0.0
    for char in text:
        if char in " ,.:;'!|()[]ijlrtfI":
            total += 0.36
        elif char in "mwMW@%":
            total += 0.95
        elif char.isupper() or char.isdigit():
            total += 0.7
        elif ord(char) >= 0x2E80:  # CJK and other wide scripts
            total += 1.0
        else:
            total += 0.62
    return total * size


def wrap(text: str, width: float, size: float, most: int = 4) -> list[str]:
    """Break ``text`` into at most ``most`` lines no wider than ``width`` (estimated).

    A label such as ``filtered: big-values v3`` breaks after its colon first; a word
    wider than a line is cut, and text beyond the last line is elided with "...".
    """
    if text_width(text, size) <= width:
        return [text]
    head, colon, tail = text.partition(": ")
    if colon and tail:
        lines = [*wrap(head + ":", width, size, most), *wrap(tail, width, size, most)]
    else:
        lines = []
        for word in text.split():
            while text_width(word, size) > width and len(word) > 1:
                cut = len(word) - 1
                while cut > 1 and text_width(word[:cut], size) > width:
                    cut -= 1
                lines.append(word[:cut])
                word = word[cut:]
            if lines and text_width(f"{lines[-1]} {word}", size) <= width:
                lines[-1] = f"{lines[-1]} {word}"
            else:
                lines.append(word)
    if len(lines) > most:
        lines = [*lines[: most - 1], lines[most - 1][: max(1, len(lines[most - 1]) - 3)] + "..."]
    return lines or [""]


def _box(node: Node, x: float, y: float, width: float, lines: list[str]) -> Box:
    texts: list[Text] = []
    centre = x + width / 2
    baseline = y + PAD_Y + LABEL_SIZE * 0.95
    for line in lines:
        texts.append(Text(centre, baseline, line, LABEL_SIZE, "middle"))
        baseline += LINE_HEIGHT
    if node.count is not None:
        texts.append(Text(centre, baseline, count_text(node.count), LABEL_SIZE, "middle", True))
    height = 2 * PAD_Y + LINE_HEIGHT * len(texts) - (LINE_HEIGHT - LABEL_SIZE * 1.2)
    return Box(node, x, y, width, height, tuple(texts))


def _node_width(node: Node) -> float:
    count = text_width(count_text(node.count), LABEL_SIZE) if node.count is not None else 0.0
    return max(text_width(node.label, LABEL_SIZE), count) + 2 * PAD_X


def layout(flow: Flow) -> Layout:
    """Place every box, path and label of ``flow``, in abstract units."""
    nodes = {node.key: node for node in flow.nodes}
    stages = [node for node in flow.nodes if node.kind == "stage"]
    column = {node.key: index for index, node in enumerate(stages)}
    anchor: dict[str, int] = {}
    for node in flow.nodes:
        if node.kind == "drop":
            anchor[node.key] = min(column[e.source] for e in flow.edges if e.target == node.key)
    # Stage-to-stage edges other than to the next stage run above the main line, each
    # in a lane of its own; nesting short spans under long ones saves crossings.
    between = [i for i, e in enumerate(flow.edges) if nodes[e.target].kind == "stage"]
    span = {i: column[flow.edges[i].target] - column[flow.edges[i].source] for i in between}
    skips = sorted((i for i in between if span[i] != 1), key=lambda i: abs(span[i]))
    lanes = {index: lane for lane, index in enumerate(skips)}  # short spans run lowest

    stage_width = min(max([100.0, *(_node_width(node) for node in stages)]), 180.0)
    straight = [count_text(flow.edges[i].count) for i in between if i not in lanes]
    gap = max([64.0, *(text_width(text, EDGE_SIZE) + 28 for text in straight)])
    pitch = stage_width + gap
    drop_width = pitch - DROP_INDENT - 16
    inner = stage_width - 2 * PAD_X
    top = MARGIN + LANE * len(lanes) + (4.0 if lanes else 0.0)

    boxes: dict[str, Box] = {}
    for node in stages:
        x = MARGIN + pitch * column[node.key]
        boxes[node.key] = _box(node, x, top, stage_width, wrap(node.label, inner, LABEL_SIZE))
    stage_height = max((box.height for box in boxes.values()), default=0.0)
    for key, box in boxes.items():  # one height keeps the main-line arrows straight
        shift = (stage_height - box.height) / 2
        moved = tuple(Text(t.x, t.y + shift, t.text, t.size, t.anchor, t.bold) for t in box.lines)
        boxes[key] = Box(box.node, box.x, box.y, box.width, stage_height, moved)
    depth = [top + stage_height] * len(stages)
    for node in flow.nodes:
        if node.kind == "drop":
            index = anchor[node.key]
            x = MARGIN + pitch * index + DROP_INDENT
            lines = wrap(node.label, drop_width - 2 * PAD_X, LABEL_SIZE)
            boxes[node.key] = _box(node, x, depth[index] + LABEL_ROOM, drop_width, lines)
            depth[index] = boxes[node.key].y + boxes[node.key].height

    paths = [
        _route(edge, boxes, column[edge.source] == anchor.get(edge.target), lanes.get(index))
        for index, edge in enumerate(flow.edges)
    ]
    right = max((box.x + box.width for box in boxes.values()), default=MARGIN)
    bottom = max([top, *depth])
    return Layout(
        flow.title, right + MARGIN, bottom + MARGIN, tuple(boxes.values()), tuple(paths), ARROW
    )


def _route(edge: Edge, boxes: dict[str, Box], below: bool, lane: int | None) -> Path:
    source, target = boxes[edge.source], boxes[edge.target]
    text = count_text(edge.count)
    points: tuple[Point, ...]
    if target.node.kind == "drop":
        middle = target.y + target.height / 2
        if below:  # down the trunk of this stage's drops, then right into the box
            trunk = source.x + TRUNK
            points = (Point(trunk, source.y + source.height), Point(trunk, middle))
            label = Text(target.x, target.y - 5, text, EDGE_SIZE, "start")
            return Path(edge, (*points, Point(target.x, middle)), label, True)
        # An earlier stage's drop: down beside this stage's trunk, into the box's right side.
        down = source.x + FOREIGN
        points = (Point(down, source.y + source.height), Point(down, middle))
        label = Text(down - 3, target.y - 5, text, EDGE_SIZE, "end")
        return Path(edge, (*points, Point(target.x + target.width, middle)), label, True)
    if lane is not None:
        high = source.y - LANE * (lane + 1)
        start = Point(source.x + source.width * 0.62, source.y)
        end = Point(target.x + target.width * 0.38, target.y)
        points = (start, Point(start.x, high), Point(end.x, high), end)
        label = Text((start.x + end.x) / 2, high - 4, text, EDGE_SIZE, "middle")
        return Path(edge, points, label, False)
    middle = source.y + source.height / 2
    points = (Point(source.x + source.width, middle), Point(target.x, middle))
    label = Text((points[0].x + points[1].x) / 2, middle - 5, text, EDGE_SIZE, "middle")
    return Path(edge, points, label, False)


_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _xml_text(text: str) -> str:
    # Control characters cannot appear in XML at all, escaped or not.
    return escape(_NOT_XML.sub("?", text))


def _svg_text(item: Text, cls: str) -> str:
    weight = ' font-weight="bold"' if item.bold else ""
    return (
        f'<text class="{cls}" x="{item.x:.1f}" y="{item.y:.1f}" font-size="{item.size:g}"'
        f' text-anchor="{item.anchor}"{weight}>{_xml_text(item.text)}</text>'
    )


def to_svg(flow: Flow) -> str:
    """``flow`` as a self-contained SVG document, free of scripts and inline styles."""
    plan = layout(flow)
    ident = hashlib.sha256(repr(flow).encode()).hexdigest()[:10]
    width, height = f"{plan.width:.0f}", f"{plan.height:.0f}"
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="lf-flow" viewBox="0 0 {width} {height}"'
        f' width="{width}" height="{height}" role="img" aria-labelledby="lf-flow-{ident}"'
        f' font-family="{FONT_FAMILY}" fill="{TEXT_FILL}">',
        f'<title id="lf-flow-{ident}">{_xml_text(plan.title)}</title>',
        "<defs>",
    ]
    for name, colour in (("edge", EDGE_STROKE), ("drop", DROP_STROKE)):
        out.append(
            f'<marker id="lf-arrow-{name}-{ident}" viewBox="0 0 10 10" refX="10" refY="5"'
            f' markerUnits="userSpaceOnUse" markerWidth="{plan.arrow:g}"'
            f' markerHeight="{plan.arrow:g}" orient="auto">'
            f'<path d="M0,0 L10,5 L0,10 z" fill="{colour}"/></marker>'
        )
    out.append("</defs>")
    for path in plan.paths:
        name, colour = ("drop", DROP_STROKE) if path.to_drop else ("edge", EDGE_STROKE)
        points = " ".join(f"{p.x:.1f},{p.y:.1f}" for p in path.points)
        out.append(
            f'<g class="lf-flow-edge"><polyline points="{points}" fill="none"'
            f' stroke="{colour}" stroke-width="1.5" marker-end="url(#lf-arrow-{name}-{ident})"/>'
            f"{_svg_text(path.label, 'lf-flow-count')}</g>"
        )
    for box in plan.boxes:
        fill, stroke = (
            (STAGE_FILL, STAGE_STROKE) if box.node.kind == "stage" else (DROP_FILL, DROP_STROKE)
        )
        texts = "".join(_svg_text(line, "lf-flow-label") for line in box.lines)
        key = quoteattr(_NOT_XML.sub("?", box.node.key))
        out.append(
            f'<g class="lf-flow-{box.node.kind}" data-key={key}>'
            f'<rect x="{box.x:.1f}" y="{box.y:.1f}" width="{box.width:.1f}"'
            f' height="{box.height:.1f}" rx="4" fill="{fill}" stroke="{stroke}"'
            f' stroke-width="1.2"/>{texts}</g>'
        )
    out.append("</svg>")
    return "\n".join(out)

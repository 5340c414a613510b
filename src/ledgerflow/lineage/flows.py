"""The stage counts as flow graphs: the picture the lineage page draws and the PDF report
prints (one layout, two renderers: ``ledgerflow.reports.flow``)."""

from __future__ import annotations

from ledgerflow.lineage.stages import PriceStages, TransactionStages
from ledgerflow.reports.flow import Edge, Flow, Node


def transactions_flow(stages: TransactionStages, title: str = "Transactions") -> Flow:
    """received → parsed → stored → published, with where the others went."""
    nodes = [
        Node("received", "received", stages.received, "stage"),
        Node("parsed", "parsed", stages.parsed, "stage"),
        Node("stored", "stored", stages.stored, "stage"),
        Node("published", "published", stages.published, "stage"),
    ]
    edges = [
        Edge("received", "parsed", stages.parsed),
        Edge("parsed", "stored", stages.stored),
        Edge("stored", "published", stages.published),
    ]
    drops: list[tuple[str, str, str, int]] = [
        ("received", "redelivered", "redelivered (already counted)", stages.redelivered),
        ("received", "duplicate", "duplicate message id", stages.duplicate),
    ]
    drops += [
        ("received", f"rejected:{reason}", f"rejected: {reason}", count)
        for reason, count in stages.rejected_by_reason
    ]
    drops += [
        ("parsed", f"filtered:{name}:{version}", f"filtered: {name} v{version}", count)
        for name, version, count in stages.filtered_by_rule
    ]
    for source, key, label, count in drops:
        if count:
            nodes.append(Node(key, label, count, "drop"))
            edges.append(Edge(source, key, count))
    return Flow(title, tuple(nodes), tuple(edges))


def prices_flow(stages: PriceStages, title: str = "Price batches") -> Flow:
    """received → validated → committed → served, with the batches refused."""
    nodes = [
        Node("received", "received (batches)", stages.received, "stage"),
        Node("validated", "validated", stages.committed, "stage"),
        Node("committed", "committed", stages.committed, "stage"),
        Node("served", f"served ({stages.rows:,} rows)", stages.committed, "stage"),
    ]
    edges = [
        Edge("received", "validated", stages.committed),
        Edge("validated", "committed", stages.committed),
        Edge("committed", "served", stages.committed),
    ]
    if stages.rejected:
        nodes.append(Node("rejected", "rejected: invalid_price_batch", stages.rejected, "drop"))
        edges.append(Edge("received", "rejected", stages.rejected))
    return Flow(title, tuple(nodes), tuple(edges))

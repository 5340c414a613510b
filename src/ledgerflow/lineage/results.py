"""What a comparison by message id finds: counts per stage pair, the items it stored, and
the run itself, as the console, the HTTP API and ``ledgerflow reconcile --json`` show them.

Every figure is exact: ids are text, balances are the strings KeyDB holds, counts are
integers. ``StageCounts`` round-trips through ``ledgerflow.comparisons.counts`` (JSON).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

# The built-in source: ledgerflow's own pipeline, queue -> historical_transactions -> KeyDB.
BUILT_IN = "ledgerflow"

Kind = Literal["missing", "foreign", "mismatch"]
Stages = Literal["source-persistency", "persistency-target"]
SOURCE_PERSISTENCY: Stages = "source-persistency"
PERSISTENCY_TARGET: Stages = "persistency-target"


@dataclass(frozen=True)
class StageCounts:
    """One stage pair of a run: how many ids each side holds, how many are missing from
    the second (in the first only), foreign to it (in the second only) or mismatched (in
    both, with another value), and how many of those are explained, by explanation."""

    stages: Stages
    left: str  # what the first stage is, e.g. "queue (ledgerflow.batches)"
    right: str
    left_ids: int | None = None  # None: the stage was not compared (see ``note``)
    right_ids: int | None = None
    missing: int = 0
    missing_explained: int = 0
    foreign: int = 0
    foreign_explained: int = 0
    mismatched: int = 0
    explanations: dict[str, int] = field(default_factory=dict)
    note: str | None = None  # why the stage was not compared, or what to know about it

    @property
    def unexplained(self) -> int:
        """Items of this stage pair that nothing explains."""
        return (
            self.missing
            - self.missing_explained
            + self.foreign
            - self.foreign_explained
            + self.mismatched
        )

    @property
    def explained(self) -> int:
        """Items of this stage pair that an outcome, a rule or the history explains."""
        return self.missing_explained + self.foreign_explained

    def as_json(self) -> dict[str, Any]:
        """The counts as stored in ``ledgerflow.comparisons.counts`` and shown by the API."""
        return {
            "stages": self.stages,
            "left": self.left,
            "right": self.right,
            "left_ids": self.left_ids,
            "right_ids": self.right_ids,
            "missing": self.missing,
            "missing_explained": self.missing_explained,
            "foreign": self.foreign,
            "foreign_explained": self.foreign_explained,
            "mismatched": self.mismatched,
            "unexplained": self.unexplained,
            "explanations": dict(self.explanations),
            "note": self.note,
        }

    @staticmethod
    def from_json(data: dict[str, Any]) -> StageCounts:
        """The counts back from ``as_json`` (the derived ``unexplained`` is recomputed)."""
        return StageCounts(
            stages=data["stages"],
            left=data["left"],
            right=data["right"],
            left_ids=data.get("left_ids"),
            right_ids=data.get("right_ids"),
            missing=data.get("missing", 0),
            missing_explained=data.get("missing_explained", 0),
            foreign=data.get("foreign", 0),
            foreign_explained=data.get("foreign_explained", 0),
            mismatched=data.get("mismatched", 0),
            explanations=dict(data.get("explanations") or {}),
            note=data.get("note"),
        )


@dataclass(frozen=True)
class Item:
    """One id a run found missing, foreign or mismatched, explained or not."""

    kind: Kind
    stages: Stages
    item_id: str
    explained: bool
    explanation: str | None = None  # why, when explained: "filtered by rule big-values v3"
    detail: str | None = None  # what was found: where the message is, what the row holds
    rule_version_id: int | None = None
    batch_id: int | None = None  # where ledgerflow's lineage holds the message
    position: int | None = None  # its position in that batch, from 0
    expected: str | None = None  # a mismatch: the published value (exact text)
    actual: str | None = None  # and what KeyDB holds (None: the key is missing)

    def as_json(self) -> dict[str, Any]:
        """The item as the API and ``--json`` show it."""
        return {
            "kind": self.kind,
            "stages": self.stages,
            "id": self.item_id,
            "explained": self.explained,
            "explanation": self.explanation,
            "detail": self.detail,
            "rule_version_id": self.rule_version_id,
            "batch_id": self.batch_id,
            "position": self.position,
            "expected": self.expected,
            "actual": self.actual,
        }


@dataclass(frozen=True)
class Comparison:
    """One stored run of a comparison: when, by whom, and its exact counts."""

    comparison_id: int
    source: str
    started_at: datetime
    finished_at: datetime
    ran_by: str
    stages: list[StageCounts]
    unexplained: int
    explained: int
    explained_kept: int  # explained items stored (at most the run's limit)

    @property
    def seconds(self) -> float:
        """How long the run took."""
        return (self.finished_at - self.started_at).total_seconds()

    def as_json(self) -> dict[str, Any]:
        """The run as the API and ``--json`` show it (times in ISO 8601)."""
        return {
            "comparison_id": self.comparison_id,
            "source": self.source,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "seconds": round(self.seconds, 3),
            "ran_by": self.ran_by,
            "unexplained": self.unexplained,
            "explained": self.explained,
            "explained_kept": self.explained_kept,
            "stages": [stage.as_json() for stage in self.stages],
        }

    @staticmethod
    def from_row(row: dict[str, Any]) -> Comparison:
        """A run from its ``ledgerflow.comparisons`` row."""
        return Comparison(
            comparison_id=row["id"],
            source=row["source"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            ran_by=row["ran_by"],
            stages=[StageCounts.from_json(s) for s in (row["counts"] or {}).get("stages", [])],
            unexplained=row["unexplained"],
            explained=row["explained"],
            explained_kept=row["explained_kept"],
        )


@dataclass(frozen=True)
class ComparisonResult(Comparison):
    """A run just made, with its first unexplained items (all of them are in
    ``comparison_items``)."""

    items: list[Item] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """The run and its first unexplained items."""
        return {**super().as_json(), "items": [item.as_json() for item in self.items]}


class ComparisonError(Exception):
    """A comparison that could not run: KeyDB unreachable, a connection already in a
    transaction."""

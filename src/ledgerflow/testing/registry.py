"""A schema registry in memory, with the registry's rules: for unit tests only, kept honest
by the contract suite that runs the same scenarios against it, ledgerflow's own store and
a registry over HTTP (tests/integration/test_registry.py)."""

from __future__ import annotations

import json
from typing import Any

from ledgerflow.treasury.registry import (
    IncompatibleSchema,
    SchemaNotFound,
    SubjectNotFound,
    SubjectVersion,
    backward_problems,
    parse,
    schema_text,
)


class MemoryRegistry:
    """A SchemaRegistry in memory."""

    def __init__(self) -> None:
        self.texts: dict[int, str] = {}
        self.subjects: dict[str, list[int]] = {}

    async def schema_by_id(self, schema_id: int) -> dict[str, Any]:
        if schema_id not in self.texts:
            raise SchemaNotFound(f"Schema {schema_id} not found")
        schema: dict[str, Any] = json.loads(self.texts[schema_id])
        return schema

    async def register(self, subject: str, schema: dict[str, Any]) -> int:
        parse(schema)
        text = schema_text(schema)
        ids = {t: i for i, t in self.texts.items()}
        versions = self.subjects.setdefault(subject, [])
        if ids.get(text) in versions:
            return ids[text]
        if versions:
            problems = backward_problems(schema, json.loads(self.texts[versions[-1]]))
            if problems:
                raise IncompatibleSchema(f"incompatible with subject {subject!r}: {problems}")
        schema_id = ids.get(text) or len(self.texts) + 1
        self.texts[schema_id] = text
        versions.append(schema_id)
        return schema_id

    async def latest(self, subject: str) -> SubjectVersion:
        if not self.subjects.get(subject):
            raise SubjectNotFound(f"Subject '{subject}' not found.")
        versions = self.subjects[subject]
        return SubjectVersion(len(versions), versions[-1], await self.schema_by_id(versions[-1]))

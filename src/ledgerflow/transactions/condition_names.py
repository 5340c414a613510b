"""The names a filtering condition may use, the types it is checked with, and what a
checked condition is (the compiler is ``ledgerflow.transactions.conditions``)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from psycopg import sql


class ConditionError(ValueError):
    """A condition that cannot be used, with where (1-based line and column) it went wrong."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(f"{message} (line {line}, column {column})")
        self.message = message
        self.line = line
        self.column = column


class Type(Enum):
    """What a sub-expression evaluates to."""

    INT = "int"
    DECIMAL = "decimal"
    STRING = "string"
    BOOL = "bool"
    NULL = "null"
    MAP = "map"  # headers: string keys, values of any type
    DYN = "dyn"  # a header's value: its type is known per message only
    LIST = "list"


NUMBERS = {Type.INT, Type.DECIMAL}


@dataclass(frozen=True)
class Variable:
    """A name a condition may use, and the column of the batch statement that holds it."""

    name: str
    type: Type
    column_type: str  # the PostgreSQL array element type it is sent as
    nullable: bool


_PROPERTY_STRINGS = (
    "content_type",
    "content_encoding",
    "correlation_id",
    "reply_to",
    "expiration",
    "type",
    "user_id",
    "app_id",
)
VARIABLES: dict[str, Variable] = {
    "id": Variable("id", Type.INT, "integer", nullable=False),
    "value": Variable("value", Type.DECIMAL, "numeric", nullable=False),
    "message_id": Variable("message_id", Type.STRING, "text", nullable=True),
    "headers": Variable("headers", Type.MAP, "jsonb", nullable=False),
    "priority": Variable("priority", Type.INT, "integer", nullable=True),
    "delivery_mode": Variable("delivery_mode", Type.INT, "integer", nullable=True),
    "redelivered": Variable("redelivered", Type.BOOL, "boolean", nullable=False),
    **{n: Variable(n, Type.STRING, "text", nullable=True) for n in _PROPERTY_STRINGS},
}


@dataclass(frozen=True)
class Condition:
    """A checked condition: its SQL over the columns ``m.<variable>``, and what it reads."""

    text: str
    sql: sql.Composable
    variables: frozenset[str]
    patterns: frozenset[str] = frozenset()  # of matches(): PostgreSQL checks each on saving

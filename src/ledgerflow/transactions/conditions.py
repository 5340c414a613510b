"""Filtering conditions: CEL, parsed and type-checked when a rule is saved, then translated
into a SQL expression that PostgreSQL evaluates inside the batch's insert.

Why SQL: a rule runs on every message, and the worker spends about 10 µs of CPU on one.
Measured on a 2-core machine for 20 rules (``value > X && id == Y``): a compiled CEL
program per message costs 2.5 µs and reads the decimal value as a float; closures built
from the syntax tree cost 1.9 µs; the same 20 conditions as one ``CASE`` inside the insert
cost PostgreSQL 0.6 µs a message, on exact ``numeric`` values. So a condition is checked
here, once, and never interpreted per message in Python.

What a condition can use: the message's fields by their names (``id``, the provider id;
``value``, an exact decimal), its ``message_id``, and the delivery's properties
(``headers``, ``content_type``, ``app_id``, ``type``, ...). Numbers are exact decimals
(``value > 900.10`` compares decimals, never floats). Operators: ``&& || ! ?:``,
comparisons, ``+ - * / %``, ``in`` a list or a map, ``has(headers.x)``, ``size()``,
``startsWith``, ``endsWith``, ``contains``, ``matches``. A condition that cannot be
evaluated for a message (division by zero, a header that is absent or of another type)
does not match it: the message is not filtered by that rule.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from celpy.celparser import CELParseError, CELParser
from lark import Token, Tree
from psycopg import sql

from ledgerflow.transactions.condition_names import (
    NUMBERS,
    VARIABLES,
    Condition,
    ConditionError,
    Type,
)

__all__ = ["VARIABLES", "Condition", "ConditionError", "Type", "compile_condition"]


@dataclass(frozen=True)
class _Expr:
    sql: sql.Composable
    type: Type
    element: Type | None = None  # of a list literal
    nullable: bool = False  # may be NULL for some message (absent, or undefined there)
    # Read from a header: an absent header (or one of another type) matches no comparison,
    # not even !=, as the documentation promises.
    header: bool = False


@functools.cache
def _parser() -> CELParser:
    """CEL's grammar, built on first use (150 ms: not at every process's start)."""
    return CELParser()


_COMPARISONS = {
    "relation_lt": "<",
    "relation_le": "<=",
    "relation_gt": ">",
    "relation_ge": ">=",
    "relation_eq": "=",
    "relation_ne": "<>",
}
_ARITHMETIC = {
    "addition_add": "+",
    "addition_sub": "-",
    "multiplication_mul": "*",
    "multiplication_div": "/",
    "multiplication_mod": "%",
}
_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_ESCAPE = re.compile(
    r"\\(?:([abfnrtv\"'\\`?])|x([0-9a-fA-F]{2})|u([0-9a-fA-F]{4})|"
    r"U([0-9a-fA-F]{8})|([0-7]{3}))"
)
MAX_LENGTH = 4000
MAX_DIGITS = 100  # of a number written in a condition


def compile_condition(text: str) -> Condition:
    """Parse and check ``text``; raise ConditionError with the position of the problem."""
    if not text.strip():
        raise ConditionError("the condition is empty", 1, 1)
    if len(text) > MAX_LENGTH:
        raise ConditionError(f"the condition is longer than {MAX_LENGTH} characters", 1, 1)
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise ConditionError("the condition contains a NUL character", line, 1)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ConditionError("the condition holds a lone surrogate, not text", 1, 1) from None
    try:
        return _compile(text)
    except RecursionError:
        raise ConditionError("the condition is nested too deeply", 1, 1) from None


def _compile(text: str) -> Condition:
    try:
        tree = _parser().parse(text)
    except CELParseError as exc:
        line, column = exc.line or 1, exc.column or 1
        source = text.splitlines()[line - 1] if text.splitlines() else ""
        near = source[column - 1 : column + 11]
        where = f"near {near!r}" if near.strip() else "at the end"
        raise ConditionError(f"syntax error {where}", line, column) from None
    compiler = _Compiler()
    expr = compiler.expr(tree)
    if expr.type is not Type.BOOL:
        line, column = _position(tree)
        raise ConditionError(
            f"a condition must be true or false, this one is a {expr.type.value}", line, column
        )
    return Condition(text, expr.sql, frozenset(compiler.used), frozenset(compiler.patterns))


def _position(node: Tree[Any] | Token) -> tuple[int, int]:
    if isinstance(node, Token):
        return node.line or 1, node.column or 1
    meta = node.meta
    return (getattr(meta, "line", 1) or 1, getattr(meta, "column", 1) or 1)


def _fail(node: Tree[Any] | Token, message: str) -> ConditionError:
    line, column = _position(node)
    return ConditionError(message, line, column)


def _only(node: Tree[Any]) -> Tree[Any]:
    child = node.children[0]
    assert isinstance(child, Tree)
    return child


class _Compiler:
    """One pass over the parse tree, typing each node and writing its SQL."""

    def __init__(self) -> None:
        self.used: set[str] = set()
        self.patterns: set[str] = set()

    def expr(self, node: Tree[Any]) -> _Expr:
        rule = node.data
        children = [c for c in node.children if c is not None]
        if rule == "expr":
            if len(children) == 1:
                return self.expr(children[0])
            return self._ternary(node, *children)
        if rule in ("conditionalor", "conditionaland"):
            if len(children) == 1:
                return self.expr(children[0])
            left, right = self.expr(children[0]), self.expr(children[1])
            for side, child in ((left, children[0]), (right, children[1])):
                if side.type is not Type.BOOL:
                    raise _fail(
                        child,
                        f"{'||' if rule == 'conditionalor' else '&&'} needs "
                        f"true or false on both sides, not a {side.type.value}",
                    )
            op = sql.SQL(" OR " if rule == "conditionalor" else " AND ")
            return _Expr(sql.SQL("({})").format(op.join([left.sql, right.sql])), Type.BOOL)
        if rule == "relation":
            if len(children) == 1:
                return self.expr(children[0])
            return self._relation(children[0], children[1])
        if rule in ("addition", "multiplication"):
            if len(children) == 1:
                return self.expr(children[0])
            return self._arithmetic(children[0], children[1])
        if rule == "unary":
            if len(children) == 1:
                return self.expr(children[0])
            return self._unary(children[0], children[1])
        if rule in ("member", "primary"):
            return self.expr(children[0])
        if rule == "paren_expr":
            inner = self.expr(children[0])
            return _Expr(sql.SQL("({})").format(inner.sql), inner.type, inner.element)
        if rule == "literal":
            literal = children[0]
            assert isinstance(literal, Token)
            return self._literal(literal)
        if rule == "ident":
            token = children[0]
            assert isinstance(token, Token)
            return self._ident(token)
        if rule == "list_lit":
            return self._list(node, children)
        if rule == "member_dot":
            return self._header(node, children[0], sql.Literal(str(children[1])))
        if rule == "member_index":
            key = self.expr(children[1])
            if key.type is not Type.STRING:
                raise _fail(children[1], "a header is looked up by a string")
            return self._header(node, children[0], key.sql)
        if rule == "member_dot_arg":
            args = list(children[2].children) if len(children) > 2 else []
            return self._method(node, children[0], str(children[1]), args)
        if rule == "ident_arg":
            args = list(children[1].children) if len(children) > 1 else []
            return self._function(node, str(children[0]), args)
        raise _fail(node, f"{_describe(rule)} cannot be used in a filtering condition")

    def _ternary(self, node: Tree[Any], test: Tree[Any], a: Tree[Any], b: Tree[Any]) -> _Expr:
        cond, yes, no = self.expr(test), self.expr(a), self.expr(b)
        if cond.type is not Type.BOOL:
            raise _fail(test, "the test of ?: must be true or false")
        yes, no = _coerce(yes, no), _coerce(no, yes)  # a header meets the other branch's type
        result = _common(yes.type, no.type)
        if result is None:
            raise _fail(node, f"?: gives a {yes.type.value} or a {no.type.value}: pick one type")
        return _Expr(
            sql.SQL("(CASE WHEN {} THEN {} ELSE {} END)").format(cond.sql, yes.sql, no.sql),
            result,
            nullable=True,  # the test may be NULL
            header=yes.header or no.header,
        )

    def _relation(self, op_node: Tree[Any], right_node: Tree[Any]) -> _Expr:
        left = self.expr(_only(op_node))
        right = self.expr(right_node)
        if op_node.data == "relation_in":
            return self._in(op_node, left, right)
        op = _COMPARISONS[op_node.data]
        if Type.NULL in (left.type, right.type):
            if op not in ("=", "<>"):
                raise _fail(op_node, "null can only be compared with == or !=")
            other = right if left.type is Type.NULL else left
            test = "IS NULL" if op == "=" else "IS NOT NULL"
            return _Expr(sql.SQL("({} {})").format(other.sql, sql.SQL(test)), Type.BOOL)
        left, right = _coerce(left, right), _coerce(right, left)
        if _common(left.type, right.type) is None or left.type in (Type.MAP, Type.LIST):
            raise _fail(
                op_node, f"a {left.type.value} cannot be compared with a {right.type.value}"
            )
        if left.type is Type.BOOL and op not in ("=", "<>"):
            raise _fail(op_node, "true and false can only be compared with == or !=")
        # IS [NOT] DISTINCT FROM where a side may be absent: a message without a
        # message_id is not equal to "x", so != matches it. Plain = elsewhere (faster).
        if (left.nullable or right.nullable) and not (left.header or right.header):
            sql_op = {"=": "IS NOT DISTINCT FROM", "<>": "IS DISTINCT FROM"}.get(op, op)
        else:
            sql_op = op
        return _Expr(sql.SQL("({} {} {})").format(left.sql, sql.SQL(sql_op), right.sql), Type.BOOL)

    def _in(self, node: Tree[Any], item: _Expr, container: _Expr) -> _Expr:
        if container.type is Type.MAP:
            if item.type is not Type.STRING:
                raise _fail(node, "a header name is a string")
            return _Expr(sql.SQL("({} ? {})").format(container.sql, item.sql), Type.BOOL)
        if container.type is not Type.LIST:
            raise _fail(node, "in needs a list, such as [1, 2, 3], or headers")
        element = container.element or item.type
        item = _coerce(item, _Expr(sql.SQL(""), element))
        if _common(item.type, element) is None:
            raise _fail(node, f"a {item.type.value} is never in a list of {element.value}s")
        return _Expr(sql.SQL("({} IN {})").format(item.sql, container.sql), Type.BOOL)

    def _arithmetic(self, op_node: Tree[Any], right_node: Tree[Any]) -> _Expr:
        left = self.expr(_only(op_node))
        right = self.expr(right_node)
        op = _ARITHMETIC[op_node.data]
        if op == "+" and left.type is Type.STRING and right.type is Type.STRING:
            return _Expr(
                sql.SQL("({} || {})").format(left.sql, right.sql),
                Type.STRING,
                nullable=left.nullable or right.nullable,
                header=left.header or right.header,
            )
        left = _numeric(_coerce(left, _Expr(sql.SQL(""), Type.DECIMAL)), op_node, op)
        right = _numeric(_coerce(right, _Expr(sql.SQL(""), Type.DECIMAL)), right_node, op)
        result = Type.INT if left.type is right.type is Type.INT and op != "/" else Type.DECIMAL
        if op in ("/", "%"):
            # Division by zero gives NULL, so the rule does not match that message.
            template = "({}::numeric {} NULLIF({}, 0))"
            if op == "/" and result is Type.DECIMAL and left.type is right.type is Type.INT:
                template = "trunc({}::numeric {} NULLIF({}, 0))"
                result = Type.INT
        else:
            template = "({}::numeric {} {})"  # numeric: no integer overflow to fail a batch
        return _Expr(
            sql.SQL(template).format(left.sql, sql.SQL(op), right.sql),
            result,
            nullable=left.nullable or right.nullable or op in ("/", "%"),
        )

    def _unary(self, op_node: Tree[Any], operand_node: Tree[Any]) -> _Expr:
        operand = self.expr(operand_node)
        if op_node.data == "unary_not":
            if operand.type is not Type.BOOL:
                raise _fail(op_node, f"! needs true or false, not a {operand.type.value}")
            return _Expr(sql.SQL("(NOT {})").format(operand.sql), Type.BOOL)
        operand = _numeric(_coerce(operand, _Expr(sql.SQL(""), Type.DECIMAL)), op_node, "-")
        return _Expr(
            sql.SQL("(-{}::numeric)").format(operand.sql), operand.type, nullable=operand.nullable
        )

    def _literal(self, token: Token) -> _Expr:
        kind, text = token.type, str(token)
        if kind in ("INT_LIT", "UINT_LIT"):
            digits = text.rstrip("uU")
            if len(digits.lstrip("-").removeprefix("0x").removeprefix("0X")) > MAX_DIGITS:
                raise _fail(token, f"a number in a condition has at most {MAX_DIGITS} digits")
            number = int(digits, 16) if "x" in digits.lower() else int(digits)
            # Written as a plain integer (a Python int's text: digits only), so that
            # ``id == 2`` compares integers; past bigint it is a numeric.
            cast = "" if -(2**63) <= number < 2**63 else "::numeric"
            return _Expr(sql.SQL(f"({number}{cast})"), Type.INT)
        if kind == "FLOAT_LIT":
            decimal = Decimal(text)
            exponent = decimal.as_tuple().exponent
            if (
                not isinstance(exponent, int)
                or abs(exponent) > MAX_DIGITS
                or decimal.adjusted() > MAX_DIGITS
            ):
                raise _fail(token, f"a number in a condition has at most {MAX_DIGITS} digits")
            # A decimal written out (digits, a point, a sign): PostgreSQL reads it as an
            # exact numeric, so ``value > 900.10`` never meets a float.
            return _Expr(sql.SQL(f"({decimal:f})"), Type.DECIMAL)
        if kind in ("STRING_LIT", "MLSTRING_LIT"):
            value = _unquote(token)
            return _Expr(sql.SQL("{}::text").format(sql.Literal(value)), Type.STRING)
        if kind == "BOOL_LIT":
            return _Expr(sql.SQL("TRUE" if text == "true" else "FALSE"), Type.BOOL)
        if kind == "NULL_LIT":
            return _Expr(sql.SQL("NULL"), Type.NULL)
        raise _fail(token, "bytes cannot be used in a filtering condition")

    def _ident(self, token: Token) -> _Expr:
        name = str(token)
        variable = VARIABLES.get(name)
        if variable is None:
            known = ", ".join(sorted(VARIABLES))
            raise _fail(token, f"unknown name {name!r}; a condition can use {known}")
        self.used.add(name)
        return _Expr(
            sql.SQL("m.{}").format(sql.Identifier(name)), variable.type, nullable=variable.nullable
        )

    def _list(self, node: Tree[Any], children: list[Any]) -> _Expr:
        items = [self.expr(c) for c in children[0].children] if children else []
        if not items:
            raise _fail(node, "an empty list matches nothing: leave it out")
        element = items[0].type
        for item, child in zip(items, children[0].children, strict=True):
            common = _common(element, item.type)
            if common is None or item.type not in (*NUMBERS, Type.STRING, Type.BOOL):
                raise _fail(child, "a list holds numbers, strings or booleans, one kind only")
            element = common
        return _Expr(
            sql.SQL("({})").format(sql.SQL(", ").join(i.sql for i in items)), Type.LIST, element
        )

    def _header(self, node: Tree[Any], target: Tree[Any], key: sql.Composable) -> _Expr:
        container = self.expr(target)
        if container.type is not Type.MAP:
            raise _fail(node, f"a {container.type.value} has no fields; only headers do")
        return _Expr(
            sql.SQL("({} -> {})").format(container.sql, key), Type.DYN, nullable=True, header=True
        )

    def _method(self, node: Tree[Any], target: Tree[Any], name: str, args: list[Any]) -> _Expr:
        subject = _coerce(self.expr(target), _Expr(sql.SQL(""), Type.STRING))
        templates = {
            "startsWith": "starts_with({}, {})",
            "endsWith": "(right({0}, char_length({1})) = {1})",
            "contains": "(strpos({}, {}) > 0)",
            "matches": "({} ~ {})",
        }
        if name == "size" and not args:
            return self._function(node, "size", [target])
        if name not in templates:
            raise _fail(
                node,
                f"unknown function {name!r}; use startsWith, endsWith, contains, matches or size",
            )
        if subject.type is not Type.STRING or len(args) != 1:
            raise _fail(node, f"{name} is called on a string with one string argument")
        argument = self.expr(args[0])
        if argument.type is not Type.STRING:
            raise _fail(args[0], f"{name} takes a string")
        if name == "matches":
            literal = _unwrap(args[0])
            if literal.data != "literal":
                # A pattern written in the condition is checked by PostgreSQL when the rule
                # is saved; one computed per message could fail a batch.
                raise _fail(args[0], "matches() takes a pattern written in the condition")
            token = literal.children[0]
            assert isinstance(token, Token)
            self.patterns.add(_unquote(token))
        return _Expr(sql.SQL(templates[name]).format(subject.sql, argument.sql), Type.BOOL)

    def _function(self, node: Tree[Any], name: str, args: list[Any]) -> _Expr:
        if name == "has" and len(args) == 1:
            inner = _unwrap(args[0])
            if inner.data != "member_dot":
                raise _fail(node, "has() takes a header, as in has(headers.region)")
            container = self.expr(inner.children[0])
            if container.type is not Type.MAP:
                raise _fail(node, "has() takes a header, as in has(headers.region)")
            key = sql.Literal(str(inner.children[1]))
            return _Expr(sql.SQL("({} ? {})").format(container.sql, key), Type.BOOL)
        if name == "size" and len(args) == 1:
            subject = _coerce(self.expr(args[0]), _Expr(sql.SQL(""), Type.STRING))
            if subject.type is Type.STRING:
                return _Expr(
                    sql.SQL("char_length({})").format(subject.sql),
                    Type.INT,
                    nullable=subject.nullable,
                )
            if subject.type is Type.MAP:
                return _Expr(
                    sql.SQL("(SELECT count(*) FROM jsonb_object_keys({}))").format(subject.sql),
                    Type.INT,
                )
            raise _fail(node, "size() takes a string or headers")
        raise _fail(node, f"unknown function {name!r}; use has or size")


def _unwrap(node: Tree[Any]) -> Tree[Any]:
    """The first node below ``node`` that is more than a wrapper of one child."""
    while len(node.children) == 1 and isinstance(node.children[0], Tree):
        node = node.children[0]
    return node


def _common(a: Type, b: Type) -> Type | None:
    """The type both sides share, or None when they cannot meet."""
    if a is b:
        return a
    if {a, b} <= NUMBERS:
        return Type.DECIMAL
    if Type.DYN in (a, b):
        return b if a is Type.DYN else a
    return None


def _coerce(expr: _Expr, other: _Expr) -> _Expr:
    """A header's value read as the type it meets: NULL where it holds another type."""
    if expr.type is not Type.DYN or other.type is Type.DYN:
        return expr
    casts = {
        Type.INT: ("number", "numeric", Type.DECIMAL),
        Type.DECIMAL: ("number", "numeric", Type.DECIMAL),
        Type.STRING: ("string", "text", Type.STRING),
        Type.BOOL: ("boolean", "boolean", Type.BOOL),
    }
    if other.type not in casts:
        return expr
    json_type, cast, result = casts[other.type]
    return _Expr(
        sql.SQL("(CASE WHEN jsonb_typeof({0}) = {1} THEN ({0} #>> '{{}}')::{2} END)").format(
            expr.sql, sql.Literal(json_type), sql.SQL(cast)
        ),
        result,
        nullable=True,
        header=expr.header,
    )


def _numeric(expr: _Expr, node: Tree[Any] | Token, op: str) -> _Expr:
    if expr.type not in NUMBERS:
        raise _fail(node, f"{op} needs numbers, not a {expr.type.value}")
    return expr


def _unquote(token: Token) -> str:
    text = str(token)
    raw = text[:1] in "rR"
    body = text[1:] if raw else text
    quote = body[:3] if body[:3] in ('"""', "'''") else body[:1]
    body = body[len(quote) : -len(quote)]
    if raw:
        return body

    def replace(match: re.Match[str]) -> str:
        simple, hex2, hex4, hex8, octal = match.groups()
        if simple:
            return _ESCAPES.get(simple, simple)
        code = int(hex2 or hex4 or hex8, 16) if (hex2 or hex4 or hex8) else int(octal, 8)
        if code == 0:
            raise _fail(token, "a string cannot hold a NUL character")
        if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
            raise _fail(token, f"\\U{code:08x} is not a character")
        return chr(code)

    return _ESCAPE.sub(replace, body)


def _describe(rule: str) -> str:
    return {
        "map_lit": "a map literal",
        "member_object": "a message literal",
        "dot_ident": "a qualified name",
        "dot_ident_arg": "a qualified function",
    }.get(rule, rule.replace("_", " "))

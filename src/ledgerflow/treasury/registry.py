"""The schema store: Avro schemas by subject, version and id, as Confluent's registry keeps
them, behind one port (``SchemaRegistry``) with two adapters.

The rules are Confluent's: a subject's versions count from 1; ids are global, and one
schema has one id whatever subjects it is registered under; registering a schema a subject
already has returns its existing id. Two schemas are the same when their JSON is, key order
and whitespace aside. A new version must be BACKWARD compatible with the subject's latest:
a reader using it can read what was written with the previous one (``backward_problems``).

``PostgresSchemaStore`` is ledgerflow's own (tables of migration 025);
``HttpSchemaRegistry`` talks to a Confluent-compatible registry over HTTP, used when
LEDGERFLOW_SCHEMA_REGISTRY_URL is set. Both cache schemas by id in the process: an id never
changes meaning.
"""

from __future__ import annotations

import hashlib
import json
from types import TracebackType
from typing import Any, NamedTuple, Protocol
from urllib.parse import quote

import fastavro
import httpx2
from psycopg_pool import AsyncConnectionPool

from ledgerflow.core import ConfigError
from ledgerflow.db.queries import Queries

QUERIES = Queries.of("ledgerflow.treasury", "registry.sql")
CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
URL_VARIABLE = "LEDGERFLOW_SCHEMA_REGISTRY_URL"
# pg_advisory_xact_lock(key, hashtext(subject)) serialises registrations per subject.
SUBJECT_LOCK_KEY = 0x6C667363  # "lfsc"

AvroSchema = dict[str, Any]


class SubjectVersion(NamedTuple):
    """One version of a subject: its number, its schema's id, the schema."""

    version: int
    id: int
    schema: AvroSchema


class SchemaRegistryError(Exception):
    """The registry refused or could not answer."""


class SchemaNotFound(SchemaRegistryError, LookupError):
    """No schema has this id."""


class SubjectNotFound(SchemaRegistryError, LookupError):
    """No schema is registered under this subject."""


class InvalidSchema(SchemaRegistryError, ValueError):
    """Not an Avro schema."""


class IncompatibleSchema(SchemaRegistryError, ValueError):
    """A schema a reader could not use to read what the subject's latest version wrote."""


class SchemaRegistry(Protocol):
    """Where Avro schemas are registered and found."""

    async def schema_by_id(self, schema_id: int) -> AvroSchema:
        """The schema with this id (SchemaNotFound)."""
        ...

    async def register(self, subject: str, schema: AvroSchema) -> int:
        """Register ``schema`` under ``subject``; its id (IncompatibleSchema, InvalidSchema)."""
        ...

    async def latest(self, subject: str) -> SubjectVersion:
        """The subject's newest version (SubjectNotFound)."""
        ...


def schema_text(schema: AvroSchema) -> str:
    """The text a schema is stored, compared and sent as: compact JSON, keys sorted."""
    return json.dumps(schema, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def parse(schema: object) -> Any:
    """``schema`` parsed by fastavro (InvalidSchema when it is not an Avro record, enum...)."""
    if not isinstance(schema, dict):
        raise InvalidSchema("an Avro schema here is a JSON object")
    try:
        return fastavro.parse_schema(schema)
    except Exception as exc:  # fastavro raises several kinds for a malformed schema
        raise InvalidSchema(f"not an Avro schema: {exc}") from None


# BACKWARD compatibility, on parsed schemas. Avro's resolution rules, reader = new, writer =
# old; each rule below is named in the problems it finds:
#   1. primitives: the same type, or a promotion (int to long, float or double; long to
#      float or double; float to double; string to bytes and bytes to string);
#   2. records: the same name (unqualified, or one of the reader's aliases); a field the
#      reader adds needs a default, and that default must suit the field's type (a union's
#      first branch); a field the writer has and the reader not is skipped; fields match by
#      name or by the reader field's aliases;
#   3. enums: the same name; every writer symbol known to the reader, unless the reader
#      has a default symbol;
#   4. fixed: the same name and size; arrays and maps: items and values, recursively;
#   5. unions: every branch the writer may write must be read by some branch of the reader
#      (or by the reader itself when it is not a union);
#   6. logical types (stricter than Avro, which reads the underlying type and changes the
#      meaning silently): a decimal keeps its scale, its precision may grow; any other
#      logical type may not be added, removed or changed.
_PROMOTIONS = {
    ("int", "long"),
    ("int", "float"),
    ("int", "double"),
    ("long", "float"),
    ("long", "double"),
    ("float", "double"),
    ("string", "bytes"),
    ("bytes", "string"),
}
_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _type(schema: Any) -> str:
    return (
        schema
        if isinstance(schema, str)
        else "union"
        if isinstance(schema, list)
        else schema["type"]
    )


def _default_suits(default: Any, schema: Any) -> bool:
    kind = _type(schema[0] if isinstance(schema, list) else schema)
    suits: dict[str, Any] = {
        "null": default is None,
        "boolean": isinstance(default, bool),
        "int": isinstance(default, int) and not isinstance(default, bool),
        "long": isinstance(default, int) and not isinstance(default, bool),
        "float": isinstance(default, int | float) and not isinstance(default, bool),
        "double": isinstance(default, int | float) and not isinstance(default, bool),
        "array": isinstance(default, list),
        "map": isinstance(default, dict),
        "record": isinstance(default, dict),
    }
    return bool(suits.get(kind, isinstance(default, str)))  # bytes, string, enum, fixed


class _Resolution:
    """One check of a reader schema against a writer schema, collecting problems."""

    def __init__(
        self, names: tuple[dict[str, Any], dict[str, Any]], seen: set[tuple[str, str]]
    ) -> None:
        self.names = names  # the named types of the reader and of the writer
        self.problems: list[str] = []
        self.seen = seen  # the record pairs checked, or being checked further up

    def named(self, schema: Any, side: int) -> Any:
        if isinstance(schema, str) and schema not in _PRIMITIVES:
            return self.names[side].get(schema, schema)
        return schema

    def reads(self, reader: Any, writer: Any, path: str) -> bool:
        """Whether ``reader`` reads ``writer`` (problems not kept)."""
        quiet = _Resolution(self.names, set(self.seen))
        quiet.check(reader, writer, path)
        return not quiet.problems

    def check(self, reader: Any, writer: Any, path: str) -> None:
        reader, writer = self.named(reader, 0), self.named(writer, 1)
        if isinstance(writer, list):
            for branch in writer:
                if isinstance(reader, list):
                    if not any(self.reads(r, branch, path) for r in reader):
                        written = _type(self.named(branch, 1))
                        self.problems.append(
                            f"{path}: no branch reads the writer's {written} (rule 5)"
                        )
                else:
                    self.check(reader, branch, path)
            return
        if isinstance(reader, list):
            if not any(self.reads(r, writer, path) for r in reader):
                self.problems.append(
                    f"{path}: no branch of the union reads the writer's {_type(writer)} (rule 5)"
                )
            return
        self.check_logical(reader, writer, path)
        kind, written = _type(reader), _type(writer)
        if kind != written:
            if (written, kind) not in _PROMOTIONS:
                self.problems.append(f"{path}: {written} cannot be read as {kind} (rule 1)")
            return
        if kind in ("record", "enum", "fixed") and not self.same_name(reader, writer):
            names = _short(writer["name"]), _short(reader["name"])
            self.problems.append(
                f"{path}: {kind} {names[0]} cannot be read as {names[1]} (rule 2-4)"
            )
        elif kind == "record":
            self.check_record(reader, writer, path)
        elif kind == "enum":
            missing = [s for s in writer["symbols"] if s not in reader["symbols"]]
            if missing and reader.get("default") is None:
                self.problems.append(
                    f"{path}: symbols {missing} removed without a default symbol (rule 3)"
                )
        elif kind == "fixed" and reader["size"] != writer["size"]:
            self.problems.append(
                f"{path}: size {writer['size']} cannot be read as {reader['size']} (rule 4)"
            )
        elif kind == "array":
            self.check(reader["items"], writer["items"], f"{path}[]")
        elif kind == "map":
            self.check(reader["values"], writer["values"], f"{path}{{}}")

    @staticmethod
    def same_name(reader: Any, writer: Any) -> bool:
        names = {_short(reader["name"])} | {_short(a) for a in reader.get("aliases", ())}
        return _short(writer["name"]) in names

    def check_record(self, reader: Any, writer: Any, path: str) -> None:
        pair = (reader["name"], writer["name"])
        if pair in self.seen:
            return  # a recursive type: this pair is being checked further up
        self.seen.add(pair)
        written = {f["name"]: f for f in writer["fields"]}
        for field in reader["fields"]:
            where = f"{path}.{field['name']}"
            names = [field["name"], *field.get("aliases", ())]
            match = next((written[n] for n in names if n in written), None)
            if match is not None:
                self.check(field["type"], match["type"], where)
            elif "default" not in field:
                self.problems.append(f"{where}: field added without a default (rule 2)")
            elif not _default_suits(field["default"], self.named(field["type"], 0)):
                self.problems.append(
                    f"{where}: default {field['default']!r} does not suit the field's type (rule 2)"
                )

    def check_logical(self, reader: Any, writer: Any, path: str) -> None:
        logical = [s.get("logicalType") if isinstance(s, dict) else None for s in (reader, writer)]
        if logical == ["decimal", "decimal"]:
            if reader.get("scale", 0) != writer.get("scale", 0):
                scales = writer.get("scale", 0), reader.get("scale", 0)
                self.problems.append(
                    f"{path}: decimal scale {scales[0]} changed to {scales[1]} (rule 6)"
                )
            elif reader["precision"] < writer["precision"]:
                digits = writer["precision"], reader["precision"]
                self.problems.append(
                    f"{path}: decimal precision {digits[0]} narrowed to {digits[1]} (rule 6)"
                )
        elif logical[0] != logical[1]:
            self.problems.append(
                f"{path}: logical type {logical[1]} changed to {logical[0]} (rule 6)"
            )


def backward_problems(reader: AvroSchema, writer: AvroSchema) -> list[str]:
    """Why a reader using ``reader`` cannot read data written with ``writer``: empty when
    it can (BACKWARD compatibility of ``reader`` as the version after ``writer``)."""
    parsed_reader, parsed_writer = parse(reader), parse(writer)
    names = (parsed_reader.get("__named_schemas", {}), parsed_writer.get("__named_schemas", {}))
    resolution = _Resolution(names, set())
    resolution.check(parsed_reader, parsed_writer, _short(str(parsed_reader.get("name", "schema"))))
    return resolution.problems


def incompatible(subject: str, problems: list[str]) -> IncompatibleSchema:
    """The error a registration refused as incompatible raises, worded as Confluent's."""
    return IncompatibleSchema(
        "Schema being registered is incompatible with an earlier schema for subject"
        f' "{subject}", details: {problems}'
    )


# The adapters.


class PostgresSchemaStore:
    """The schema store in ledgerflow's database (``ledgerflow.avro_schemas`` and
    ``ledgerflow.avro_subject_versions``)."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool
        self._texts: dict[int, str] = {}

    async def schema_by_id(self, schema_id: int) -> AvroSchema:
        """The schema with this id (SchemaNotFound)."""
        text = self._texts.get(schema_id)
        if text is None:
            async with self.pool.connection() as conn:
                cursor = await conn.execute(QUERIES["schema_by_id"], {"id": schema_id})
                row = await cursor.fetchone()
            if row is None:
                raise SchemaNotFound(f"Schema {schema_id} not found")
            text = self._texts[schema_id] = row[0]
        schema: AvroSchema = json.loads(text)
        return schema

    async def register(self, subject: str, schema: AvroSchema) -> int:
        """Register ``schema`` under ``subject`` as its next version, unless the subject has
        it already; its id (IncompatibleSchema, InvalidSchema)."""
        if not 1 <= len(subject) <= 255:
            raise ValueError("a subject has 1 to 255 characters")
        parse(schema)
        text = schema_text(schema)
        key = {"subject": subject, "fingerprint": hashlib.sha256(text.encode()).digest()}
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(QUERIES["lock_subject"], {"key": SUBJECT_LOCK_KEY, **key})
            cursor = await conn.execute(QUERIES["subject_schema_id"], key)
            row = await cursor.fetchone()
            if row is not None:
                return int(row[0])
            cursor = await conn.execute(QUERIES["latest_version"], key)
            latest = await cursor.fetchone()
            if latest is not None:
                problems = backward_problems(schema, json.loads(latest[2]))
                if problems:
                    raise incompatible(subject, problems)
            cursor = await conn.execute(QUERIES["add_schema"], {**key, "text": text})
            found = await cursor.fetchone()
            assert found is not None
            await conn.execute(QUERIES["add_version"], {**key, "schema_id": found[0]})
            return int(found[0])

    async def latest(self, subject: str) -> SubjectVersion:
        """The subject's newest version (SubjectNotFound)."""
        async with self.pool.connection() as conn:
            cursor = await conn.execute(QUERIES["latest_version"], {"subject": subject})
            row = await cursor.fetchone()
        if row is None:
            raise SubjectNotFound(f"Subject '{subject}' not found.")
        return SubjectVersion(int(row[0]), int(row[1]), json.loads(row[2]))


class HttpSchemaRegistry:
    """A Confluent-compatible schema registry over HTTP (ledgerflow's own ``/registry``
    routes among them); a user and password in the URL are sent as basic authentication,
    ``token`` as a bearer token. Close it (``async with``) when done."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout: float = 10.0,
        transport: httpx2.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"accept": f"{CONTENT_TYPE}, application/json", "content-type": CONTENT_TYPE}
        if token:
            headers["authorization"] = f"Bearer {token}"
        self._client = httpx2.AsyncClient(
            base_url=check_url(url), headers=headers, timeout=timeout, transport=transport
        )
        self._texts: dict[int, str] = {}

    async def __aenter__(self) -> HttpSchemaRegistry:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections."""
        await self._client.aclose()

    async def schema_by_id(self, schema_id: int) -> AvroSchema:
        """The schema with this id (SchemaNotFound)."""
        text = self._texts.get(schema_id)
        if text is None:
            answer = await self._call("GET", f"/schemas/ids/{schema_id}")
            text = self._texts[schema_id] = answer["schema"]
        schema: AvroSchema = json.loads(text)
        return schema

    async def register(self, subject: str, schema: AvroSchema) -> int:
        """Register ``schema`` under ``subject``; its id (IncompatibleSchema, InvalidSchema)."""
        body = {"schema": schema_text(schema)}
        answer = await self._call("POST", f"/subjects/{quote(subject, safe='')}/versions", body)
        return int(answer["id"])

    async def latest(self, subject: str) -> SubjectVersion:
        """The subject's newest version (SubjectNotFound)."""
        answer = await self._call("GET", f"/subjects/{quote(subject, safe='')}/versions/latest")
        return SubjectVersion(
            int(answer["version"]), int(answer["id"]), json.loads(answer["schema"])
        )

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            response = await self._client.request(method, path.lstrip("/"), json=body)
        except httpx2.TransportError as exc:
            raise SchemaRegistryError(f"the schema registry does not answer: {exc!r}") from exc
        if response.is_success:
            return response.json()
        try:
            error = response.json()
            code, message = int(error["error_code"]), str(error["message"])
        except (ValueError, KeyError, TypeError):
            code, message = response.status_code, response.text[:200]
        # Confluent's codes: 40401 subject, 40402 version, 40403 schema not found;
        # 409 incompatible; 42201 invalid schema.
        kinds: dict[int, type[SchemaRegistryError]] = {
            40401: SubjectNotFound,
            40402: SubjectNotFound,
            40403: SchemaNotFound,
            409: IncompatibleSchema,
            42201: InvalidSchema,
        }
        raise kinds.get(code, SchemaRegistryError)(
            message if code in kinds else f"HTTP {response.status_code} ({code}): {message}"
        )


def check_url(url: str) -> str:
    """``url`` as the base of the registry's endpoints; ConfigError naming
    LEDGERFLOW_SCHEMA_REGISTRY_URL when it is no http(s) URL."""
    try:
        parsed = httpx2.URL(url)
    except (httpx2.InvalidURL, ValueError):
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigError(f"{URL_VARIABLE}: not an http(s) URL with a host")
    return url.rstrip("/") + "/"


def schema_registry(
    url: str | None, pool: AsyncConnectionPool, token: str | None = None
) -> SchemaRegistry:
    """The registry to use: Confluent-compatible over HTTP when ``url`` (the value of
    LEDGERFLOW_SCHEMA_REGISTRY_URL) is set, else ledgerflow's own store in ``pool``."""
    return HttpSchemaRegistry(url, token=token) if url else PostgresSchemaStore(pool)

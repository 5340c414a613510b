"""Users, tokens, sessions and the audit log in PostgreSQL."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from ledgerflow.auth import passwords
from ledgerflow.auth.model import ROLE_SCOPES, Identity, Role, check_scopes
from ledgerflow.core import ConfigError
from ledgerflow.db.queries import Queries
from ledgerflow.notifications.notify import parse_addresses

QUERIES = Queries.of("ledgerflow.auth")
TOKEN_PREFIX = "lf_"


class Conflict(Exception):
    """A name that is already taken, or nothing of that name; the message says which."""


def digest(secret: str) -> bytes:
    """How tokens and session ids are stored: SHA-256 of the secret. They carry 256 bits
    of randomness, so a fast hash is enough (passwords get argon2)."""
    return hashlib.sha256(secret.encode()).digest()


async def _records(cursor: psycopg.AsyncCursor[Any]) -> list[dict[str, Any]]:
    columns = [c.name for c in cursor.description or []]
    return [dict(zip(columns, row, strict=True)) for row in await cursor.fetchall()]


# Users.


def checked_email(email: str) -> str:
    """``email`` when it is one address (``a@example.com`` or ``Ann <a@example.com>``):
    mail is sent to it, and a list or a line break would change whom; ValueError
    otherwise."""
    try:
        (address,) = parse_addresses(email, "email")
    except (ConfigError, ValueError):
        raise ValueError(f"email: {email.strip()[:100]!r} is not one address") from None
    return address


async def add_user(
    conn: psycopg.AsyncConnection[Any],
    name: str,
    role: Role,
    password: str | None,
    email: str | None = None,
) -> int:
    """Add a user (``password`` None: proxy sign-on only); Conflict if the name is taken,
    ValueError for an email that is not one address."""
    if email is not None:
        email = checked_email(email)
    hashed = passwords.hash_password(password) if password is not None else None
    try:
        async with conn.transaction():
            cursor = await conn.execute(
                QUERIES["add_user"],
                {"name": name, "role": role.value, "email": email, "password_hash": hashed},
            )
            row = await cursor.fetchone()
    except psycopg.errors.UniqueViolation:
        raise Conflict(f"a user named {name!r} exists already") from None
    except psycopg.errors.CheckViolation:
        raise ValueError(
            f"{name!r} is not a user name: letters, digits and . _ @ -, up to 64"
        ) from None
    assert row is not None
    return int(row[0])


async def set_password(conn: psycopg.AsyncConnection[Any], name: str, password: str) -> None:
    """Set a user's password (and lift a lockout); Conflict if there is no such user."""
    async with conn.transaction():
        cursor = await conn.execute(
            QUERIES["set_password"],
            {"name": name, "password_hash": passwords.hash_password(password)},
        )
    if cursor.rowcount == 0:
        raise Conflict(f"no user named {name!r}")


async def users(conn: psycopg.AsyncConnection[Any]) -> list[dict[str, Any]]:
    """Every user, by name."""
    records = await _records(await conn.execute(QUERIES["users"]))
    await conn.commit()
    return records


@dataclass(frozen=True)
class SignIn:
    """What one sign-in attempt came to."""

    identity: Identity | None
    problem: str | None = None  # for the person, when identity is None
    user_id: int | None = None  # the user signed in, to start the session with


async def sign_in(
    conn: psycopg.AsyncConnection[Any],
    name: str,
    password: str,
    attempts: int,
    lockout_seconds: int,
) -> SignIn:
    """Check a name and password. A locked user is refused without looking at the
    password; every failure counts, and ``attempts`` failures in a row lock the user for
    ``lockout_seconds``, twice as long at each failure after."""
    async with conn.transaction():
        cursor = await conn.execute(QUERIES["user_by_name"], {"name": name})
        user = await cursor.fetchone()
        if user is None:
            passwords.verify(None, password)  # as long as a wrong password takes
            return SignIn(None, "wrong name or password")
        user_id, _, role, _, password_hash, _, locked, locked_for = user
        if locked:
            return SignIn(None, f"too many failed sign-ins: try again in {locked_for} s")
        if not passwords.verify(password_hash, password):
            cursor = await conn.execute(
                QUERIES["sign_in_failed"],
                {"id": user_id, "attempts": attempts, "lockout": lockout_seconds},
            )
            failed = await cursor.fetchone()
            assert failed is not None
            if failed[1]:
                return SignIn(None, "too many failed sign-ins: the user is locked for a while")
            return SignIn(None, "wrong name or password")
        await conn.execute(QUERIES["sign_in_succeeded"], {"id": user_id})
        if password_hash and passwords.needs_rehash(password_hash):
            await conn.execute(
                QUERIES["set_password"],
                {"name": name, "password_hash": passwords.hash_password(password)},
            )
    role = Role(role)
    identity = Identity(name, "user", ROLE_SCOPES[role], role, via="password")
    return SignIn(identity, user_id=user_id)


async def user_identity(conn: psycopg.AsyncConnection[Any], name: str, via: str) -> Identity | None:
    """The identity of an existing user (for sign-on through a trusted proxy)."""
    cursor = await conn.execute(QUERIES["user_by_name"], {"name": name})
    row = await cursor.fetchone()
    if row is None:
        return None
    role = Role(row[2])
    return Identity(row[1], "user", ROLE_SCOPES[role], role, via=via)


# Tokens.


async def create_token(
    conn: psycopg.AsyncConnection[Any], name: str, scopes: list[str], created_by: str
) -> str:
    """Create a token with ``scopes`` and return it: the only time it is ever shown."""
    checked = check_scopes(scopes)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    try:
        async with conn.transaction():
            await conn.execute(
                QUERIES["add_token"],
                {
                    "name": name,
                    "token_sha256": digest(token),
                    "prefix": token[:8],
                    "scopes": sorted(checked),
                    "created_by": created_by,
                },
            )
    except psycopg.errors.UniqueViolation:
        raise Conflict(f"a token named {name!r} exists already") from None
    return token


async def token_identity(conn: psycopg.AsyncConnection[Any], token: str) -> Identity | None:
    """The identity of a token that exists and is not revoked (and note its use)."""
    hashed = digest(token)
    cursor = await conn.execute(QUERIES["token_by_hash"], {"token_sha256": hashed})
    row = await cursor.fetchone()
    if row is None:
        return None
    await conn.execute(QUERIES["token_used"], {"token_sha256": hashed})
    return Identity(row[0], "token", frozenset(row[1]), via="token")


async def tokens(conn: psycopg.AsyncConnection[Any]) -> list[dict[str, Any]]:
    """Every token (revoked ones too), oldest first; never the token itself."""
    records = await _records(await conn.execute(QUERIES["tokens"]))
    await conn.commit()
    return records


async def revoke_token(conn: psycopg.AsyncConnection[Any], name: str) -> None:
    """Revoke a token; Conflict if there is no such live token."""
    async with conn.transaction():
        cursor = await conn.execute(QUERIES["revoke_token"], {"name": name})
        revoked = await cursor.fetchone()
    if revoked is None:
        raise Conflict(f"no live token named {name!r}")


# Sessions.


async def start_session(conn: psycopg.AsyncConnection[Any], user_id: int, seconds: float) -> str:
    """Start a session for a user; return the cookie's value (stored only hashed)."""
    session = secrets.token_urlsafe(32)
    async with conn.transaction():
        await conn.execute(QUERIES["end_expired_sessions"])
        await conn.execute(
            QUERIES["add_session"],
            {
                "id_sha256": digest(session),
                "user_id": user_id,
                "csrf_token": secrets.token_urlsafe(32),
                "seconds": seconds,
            },
        )
    return session


async def session_identity(conn: psycopg.AsyncConnection[Any], session: str) -> Identity | None:
    """The identity of a live session."""
    cursor = await conn.execute(QUERIES["session_user"], {"id_sha256": digest(session)})
    row = await cursor.fetchone()
    if row is None:
        return None
    role = Role(row[1])
    return Identity(row[0], "user", ROLE_SCOPES[role], role, csrf_token=row[2])


async def end_session(conn: psycopg.AsyncConnection[Any], session: str) -> None:
    """End a session (sign-out)."""
    await conn.execute(QUERIES["end_session"], {"id_sha256": digest(session)})


# The audit log.


async def audit(
    conn: psycopg.AsyncConnection[Any],
    actor: str,
    action: str,
    target: str | None = None,
    detail: dict[str, Any] | None = None,
    client: str | None = None,
) -> None:
    """Record who did what (in the caller's transaction, if it has one)."""
    await conn.execute(
        QUERIES["audit"],
        {
            "actor": actor,
            "action": action,
            "target": target,
            "detail": Jsonb(detail or {}),
            "client": client,
        },
    )


async def audit_log(conn: psycopg.AsyncConnection[Any], limit: int = 100) -> list[dict[str, Any]]:
    """The newest entries of the audit log, newest first."""
    return await _records(await conn.execute(QUERIES["audit_log"], {"limit": limit}))

"""``ledgerflow users`` and ``ledgerflow tokens``: people and machines."""

from __future__ import annotations

import sys
from typing import Any, TypeVar

import click
import psycopg

from ledgerflow.auth import store
from ledgerflow.auth.model import SCOPES, Role
from ledgerflow.cli.common import actor, with_database

T = TypeVar("T")


EXPECTED = (store.Conflict, ValueError)  # refused inputs: one line, exit code 1


def read_password(confirm: bool = True) -> str:
    """A password from standard input: asked twice, hidden, on a terminal; else the first
    line (so it never appears in the command line or the shell's history)."""
    if sys.stdin.isatty():
        password: str = click.prompt("Password", hide_input=True, confirmation_prompt=confirm)
        return password
    line = sys.stdin.readline()
    if not line:
        raise click.ClickException("give the password on standard input")
    return line.rstrip("\r\n")


@click.group(name="users")
def users_command() -> None:
    """People who sign in to the console."""


@users_command.command(name="add")
@click.argument("name")
@click.option(
    "--role", type=click.Choice([r.value for r in Role]), required=True, help="What they may do."
)
@click.option("--email", help="Where notifications reach them.")
@click.option(
    "--no-password",
    is_flag=True,
    help="Sign-in only through the trusted proxy (LEDGERFLOW_TRUSTED_AUTH_HEADER).",
)
@click.pass_context
def add_user(
    ctx: click.Context, name: str, role: str, email: str | None, no_password: bool
) -> None:
    """Add a user; the password is read from standard input, never from an argument."""
    password = None if no_password else read_password()

    async def work(conn: psycopg.AsyncConnection[Any]) -> None:
        await store.add_user(conn, name, Role(role), password, email)
        await store.audit(conn, actor(), "user.add", name, {"role": role, "email": email})

    with_database(ctx, work, EXPECTED)
    click.echo(f"added {name} ({role})")


@users_command.command(name="password")
@click.argument("name")
@click.pass_context
def set_password(ctx: click.Context, name: str) -> None:
    """Set a user's password (from standard input) and lift a lockout."""
    password = read_password()

    async def work(conn: psycopg.AsyncConnection[Any]) -> None:
        await store.set_password(conn, name, password)
        await store.audit(conn, actor(), "user.password", name)

    with_database(ctx, work, EXPECTED)
    click.echo(f"password of {name} set")


@users_command.command(name="list")
@click.pass_context
def list_users(ctx: click.Context) -> None:
    """Every user, with role, e-mail and whether a password is set."""
    found = with_database(ctx, store.users, EXPECTED)
    click.echo(f"{'NAME':<24} {'ROLE':<9} {'PASSWORD':<9} {'LOCKED':<7} EMAIL")
    for user in found:
        click.echo(
            f"{user['name']:<24} {user['role']:<9} {'yes' if user['has_password'] else 'no':<9}"
            f" {'yes' if user['locked'] else 'no':<7} {user['email'] or ''}"
        )


@click.group(name="tokens")
def tokens_command() -> None:
    """API tokens for machines: scopes, shown once, stored hashed, revocable."""


@tokens_command.command(name="create")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    type=click.Choice(sorted(SCOPES)),
    help="What the token may do (repeat for several).",
)
@click.option("--name", help="A name to list and revoke it by (default: token-<n>).")
@click.pass_context
def create_token(ctx: click.Context, scopes: tuple[str, ...], name: str | None) -> None:
    """Create a token and print it: the only time it is shown."""

    async def work(conn: psycopg.AsyncConnection[Any]) -> str:
        chosen = name or f"token-{len(await store.tokens(conn)) + 1}"
        token = await store.create_token(conn, chosen, list(scopes), actor())
        await store.audit(conn, actor(), "token.create", chosen, {"scopes": sorted(scopes)})
        return token

    token = with_database(ctx, work, EXPECTED)
    click.echo(token)


@tokens_command.command(name="list")
@click.pass_context
def list_tokens(ctx: click.Context) -> None:
    """Every token: name, first characters, scopes, last use; never the token."""
    found = with_database(ctx, store.tokens, EXPECTED)
    click.echo(f"{'NAME':<20} {'PREFIX':<9} {'STATE':<8} {'LAST USED':<20} SCOPES")
    for token in found:
        state = "revoked" if token["revoked_at"] else "live"
        used = token["last_used_at"].strftime("%Y-%m-%d %H:%M:%S") if token["last_used_at"] else "-"
        click.echo(
            f"{token['name']:<20} {token['prefix']:<9} {state:<8} {used:<20}"
            f" {' '.join(token['scopes'])}"
        )


@tokens_command.command(name="revoke")
@click.argument("name")
@click.pass_context
def revoke_token(ctx: click.Context, name: str) -> None:
    """Revoke a token: within seconds no server accepts it."""

    async def work(conn: psycopg.AsyncConnection[Any]) -> None:
        await store.revoke_token(conn, name)
        await store.audit(conn, actor(), "token.revoke", name)

    with_database(ctx, work, EXPECTED)
    click.echo(f"revoked {name}")

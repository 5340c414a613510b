"""``ledgerflow rules`` and ``ledgerflow trace``: filtering rules, and one message followed
from the queue to KeyDB."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import click
import psycopg

from ledgerflow.auth import store
from ledgerflow.cli.common import actor, settings_of, with_database
from ledgerflow.lineage.trace import trace
from ledgerflow.notifications.notify import Notifier, own_connection
from ledgerflow.runtime.announce import Announcer
from ledgerflow.transactions import rules
from ledgerflow.transactions.rules import BUILT_IN, Rule, RuleError


def _refused(exc: RuleError) -> click.ClickException:
    where = f"--{'when' if exc.field == 'condition' else exc.field}"
    return click.ClickException(f"{where}: {exc}")


def _change(
    ctx: click.Context,
    work: Callable[[psycopg.AsyncConnection[Any]], Awaitable[tuple[Rule, bool]]],
    by: str,
) -> Rule:
    """Save a change and announce it (the notifications), as the console and the API do."""
    try:
        rule, changed = with_database(ctx, work, (LookupError,))
    except RuleError as exc:
        raise _refused(exc) from None
    if changed:
        settings = settings_of(ctx)

        async def announce() -> None:
            notifier = Notifier(settings.notify_settings(), own_connection(settings.database_url))
            announcer = Announcer(notifier)
            await announcer.rule_changed(rule, by)
            await announcer.close()

        asyncio.run(announce())
    return rule


@click.group(name="rules")
def rules_command() -> None:
    """Filtering rules: a message matching an enabled rule is filtered, not stored."""


@rules_command.command(name="add")
@click.argument("name")
@click.option("--when", "condition", required=True, help="The condition, in CEL: value > 900")
@click.option("--technical", required=True, help="Why, technically.")
@click.option("--functional", required=True, help="Why, for the business.")
@click.option("--owner", help="Who answers for it (default: you).")
@click.pass_context
def add(
    ctx: click.Context,
    name: str,
    condition: str,
    technical: str,
    functional: str,
    owner: str | None,
) -> None:
    """Add rule NAME, enabled; it applies from the next batch on."""
    by = actor()

    async def work(conn: psycopg.AsyncConnection[Any]) -> tuple[Rule, bool]:
        async with conn.transaction():
            rule = await rules.add_rule(
                conn, name, condition, technical, functional, owner or by, by
            )
            await store.audit(conn, by, "rule.add", name, {"condition": condition})
        return rule, True

    rule = _change(ctx, work, by)
    click.echo(f"rule {rule.name} version {rule.version} added: {rule.condition}")


def _set_enabled(ctx: click.Context, name: str, enabled: bool) -> None:
    by = actor()

    async def work(conn: psycopg.AsyncConnection[Any]) -> tuple[Rule, bool]:
        async with conn.transaction():
            before = await rules.get_rule(conn, name)
            rule = await rules.change_rule(conn, name, by, enabled=enabled)
            changed = before is None or rule.version != before.version
            if changed:
                await store.audit(conn, by, f"rule.{'enable' if enabled else 'disable'}", name)
        return rule, changed

    rule = _change(ctx, work, by)
    state = "enabled" if rule.enabled else "disabled"
    click.echo(f"rule {rule.name} is {state} (version {rule.version})")


@rules_command.command(name="disable")
@click.argument("name")
@click.pass_context
def disable(ctx: click.Context, name: str) -> None:
    """Stop rule NAME filtering, from the next batch on (its history stays)."""
    _set_enabled(ctx, name, False)


@rules_command.command(name="enable")
@click.argument("name")
@click.pass_context
def enable(ctx: click.Context, name: str) -> None:
    """Let rule NAME filter again, from the next batch on."""
    _set_enabled(ctx, name, True)


@rules_command.command(name="change")
@click.argument("name")
@click.option("--when", "condition", help="A new condition.")
@click.option("--technical", help="A new technical justification.")
@click.option("--functional", help="A new functional justification.")
@click.option("--owner", help="A new owner.")
@click.pass_context
def change(
    ctx: click.Context,
    name: str,
    condition: str | None,
    technical: str | None,
    functional: str | None,
    owner: str | None,
) -> None:
    """Save a new version of rule NAME with what is given."""
    by = actor()

    async def work(conn: psycopg.AsyncConnection[Any]) -> tuple[Rule, bool]:
        async with conn.transaction():
            before = await rules.get_rule(conn, name)
            rule = await rules.change_rule(
                conn,
                name,
                by,
                condition=condition,
                technical=technical,
                functional=functional,
                owner=owner,
            )
            changed = before is None or rule.version != before.version
            if changed:
                await store.audit(conn, by, "rule.change", name, {"version": rule.version})
        return rule, changed

    rule = _change(ctx, work, by)
    click.echo(f"rule {rule.name} is at version {rule.version}: {rule.condition}")


@rules_command.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="As JSON, with the built-in rules.")
@click.pass_context
def list_rules(ctx: click.Context, as_json: bool) -> None:
    """Every rule, in the order they are evaluated, and the built-in technical rules."""
    found = with_database(ctx, rules.list_rules)
    built_in = [
        {"reason": reason.value, "technical": technical, "functional": functional}
        for reason, (technical, functional) in BUILT_IN.items()
    ]
    if as_json:
        document = {"rules": [r.as_json() for r in found], "built_in": built_in}
        click.echo(json.dumps(document, indent=2))
        return
    if not found:
        click.echo("no filtering rules")
    for rule in found:
        state = "enabled " if rule.enabled else "disabled"
        click.echo(f"{rule.name:24} v{rule.version:<3} {state} {rule.condition}")
        click.echo(f"{'':24} technical: {rule.technical}")
        click.echo(f"{'':24} functional: {rule.functional} (owner {rule.owner})")
    click.echo("built in (messages rejected by validation):")
    for entry in built_in:
        click.echo(f"  {entry['reason']:22} {entry['technical']}")


@click.command(name="trace")
@click.argument("key")
@click.option("--json", "as_json", is_flag=True, help="As JSON.")
@click.pass_context
def trace_command(ctx: click.Context, key: str, as_json: bool) -> None:
    """Follow the message with id KEY (or the body with SHA-256 KEY) to KeyDB.

    Exits 1 when no message matches.
    """

    async def work(conn: psycopg.AsyncConnection[Any]) -> dict[str, Any]:
        return await trace(conn, key)

    found = with_database(ctx, work)
    if as_json:
        click.echo(json.dumps(found, indent=2))
    else:
        for message in found["messages"]:
            click.echo(_describe(message))
    if not found["messages"]:
        if not as_json:
            click.echo(f"no message has id or body SHA-256 {key!r}", err=True)
        ctx.exit(1)


def _describe(message: dict[str, Any]) -> str:
    """One message's trace as a few lines a person reads."""
    lines = [
        f"batch {message['batch_id']} position {message['position']} on {message['queue']},"
        f" committed {message['committed_at']}: {message['outcome']}",
        f"  message id {message['message_id'] or '(none)'}, body SHA-256 {message['body_sha256']}",
    ]
    if "rule" in message:
        rule = message["rule"]
        lines.append(f"  filtered by rule {rule['name']} v{rule['version']}: {rule['condition']}")
        lines.append(f"    technical: {rule['technical']}; functional: {rule['functional']}")
    if "rejection" in message:
        rejection = message["rejection"]
        lines.append(f"  rejected: {rejection['reason']} ({rejection['detail']})")
    if "counted_in_batch" in message:
        lines.append(f"  its message id was counted in batch {message['counted_in_batch']}")
    if "repeats" in message:
        lines.append(f"  a redelivery of batch {message['repeats']['batch_id']}")
    transaction = message.get("transaction")
    if transaction:
        lines.append(
            f"  transaction {transaction['id']}: provider {transaction.get('provider_id')}"
            f" value {transaction.get('value')}"
        )
        publication = transaction.get("first_publication")
        if publication:
            lines.append(
                f"  first published at boundary {publication['boundary']}:"
                f" {publication['key']} = {publication['value']}"
            )
        elif "first_publication" in transaction:
            lines.append("  not published yet")
    return "\n".join(lines)

"""`ledgerflow status`: is every worker alive, answering, and doing its job?"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from typing import Any

from ledgerflow.cluster.registry import workers as registered_workers
from ledgerflow.cluster.shards import shard_terms
from ledgerflow.db.connections import connect
from ledgerflow.db.rejected import rejected_summary
from ledgerflow.messaging.rabbitmq import queue_backlog
from ledgerflow.messaging.shards import shard_queue
from ledgerflow.settings import Settings
from ledgerflow.transactions.publisher import last_publications

# A heartbeat older than this, or an active worker without a publication for this long,
# is unhealthy (seconds).
STALE = 120.0


def _answers(address: str | None) -> bool | None:
    if not address:
        return None
    try:
        with urllib.request.urlopen(f"http://{address}/healthz", timeout=1.5) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _silent_for(worker: dict[str, Any]) -> float:
    """Seconds the worker has been active without publishing (its lead counts as grace)."""
    publication = worker["last_publication"]
    candidates = [worker["active_for"], publication["age"] if publication else None]
    known = [c for c in candidates if c is not None]
    return min(known) if known else 0.0


async def snapshot(database_url: str) -> dict[str, Any]:
    """Workers with their latest publication, and rejection counts, from the database."""
    conn = await connect(database_url, autocommit=True, connect_timeout=5)
    async with conn:
        workers = await registered_workers(conn)
        publications = await last_publications(conn)
        rejected = await rejected_summary(conn)
    for worker in workers:
        worker["last_publication"] = publications.get(worker["instance"])
    return {"workers": workers, "rejected": rejected}


async def gather(settings: Settings) -> dict[str, Any]:
    """Everything status reports, with a list of problems (empty when all is well)."""
    report = await snapshot(settings.database_url)
    workers = report["workers"]
    answers = await asyncio.gather(
        *(asyncio.to_thread(_answers, w["http_address"]) for w in workers)
    )
    problems = []
    for worker, answer in zip(workers, answers, strict=True):
        worker["answers"] = answer
        worker["problems"] = issues = []
        if worker["heartbeat_age"] > STALE:
            issues.append(f"heartbeat {worker['heartbeat_age']:.0f} s old")
        if answer is False:
            issues.append("does not answer /healthz")
        if worker["role"] == "active" and _silent_for(worker) > STALE:
            issues.append(f"active with no publication for {_silent_for(worker):.0f} s")
        problems += [f"{worker['instance']}: {issue}" for issue in issues]
    if not any(w["role"] == "active" and not w["problems"] for w in workers):
        problems.append("no healthy active worker")
    backlog = await asyncio.to_thread(queue_backlog, settings.amqp_url, settings.queue)
    report["queue"] = {"name": settings.queue, "backlog": backlog}
    if settings.shards:
        report["shards"] = shards = await shard_report(settings)
        live = {w["instance"] for w in workers if not w["problems"]}
        for shard in shards:
            if shard["instance"] not in live and shard["backlog"]:
                problems.append(
                    f"{shard['queue']}: {shard['backlog']} ready, its last holder"
                    f" {shard['instance'] or '(none)'} is not a healthy worker"
                )
    report["problems"] = problems
    report["healthy"] = not problems
    return report


async def shard_report(settings: Settings) -> list[dict[str, Any]]:
    """Each shard: its active worker (the holder of its current term), since when, its
    backlog and the messages it took in the last minute."""
    conn = await connect(settings.database_url, autocommit=True, connect_timeout=5)
    async with conn:
        terms = {t["queue"]: t for t in await shard_terms(conn)}
    names = [shard_queue(settings.queue, n) for n in range(settings.shards)]
    backlogs = await asyncio.gather(
        *(asyncio.to_thread(queue_backlog, settings.amqp_url, name) for name in names)
    )
    report = []
    for name, backlog in zip(names, backlogs, strict=True):
        term = terms.get(name, {})
        report.append(
            {
                "queue": name,
                "instance": term.get("instance"),
                "term": term.get("term"),
                "held_for": term.get("held_for"),
                "backlog": backlog,
                "last_minute": term.get("last_minute", 0),
            }
        )
    return report


def render(report: dict[str, Any]) -> str:
    """The report as a table for people."""
    lines = [
        f"{'INSTANCE':<24} {'ROLE':<8} {'ANSWERS':<8} {'HEARTBEAT':>9}  "
        f"{'LAST PUBLISH':<20} {'LAG':>8}  STATUS"
    ]
    for w in report["workers"]:
        publication = w["last_publication"]
        answers = {True: "yes", False: "NO", None: "-"}[w["answers"]]
        when = publication["boundary"].strftime("%Y-%m-%d %H:%M:%S") if publication else "-"
        lag = f"{publication['lag_seconds'] * 1000:.1f} ms" if publication else "-"
        state = "; ".join(w["problems"]) or "ok"
        lines.append(
            f"{w['instance']:<24} {w['role']:<8} {answers:<8} "
            f"{w['heartbeat_age']:>7.0f} s  {when:<20} {lag:>8}  {state}"
        )
    if not report["workers"]:
        lines.append("(no worker has written a heartbeat)")
    queue = report["queue"]
    backlog = "unknown" if queue["backlog"] is None else f"{queue['backlog']} ready"
    rejected = report["rejected"]
    lines.append(
        f"queue {queue['name']}: {backlog}; rejected messages: {rejected['total']} in all,"
        f" {rejected['last_hour']} in the last hour"
    )
    if "shards" in report:
        lines.append(
            f"{'SHARD':<32} {'ACTIVE WORKER':<24} {'SINCE':>9} {'READY':>7} {'LAST MIN':>9}"
        )
        for s in report["shards"]:
            since = "-" if s["held_for"] is None else f"{s['held_for']:.0f} s"
            ready = "?" if s["backlog"] is None else str(s["backlog"])
            lines.append(
                f"{s['queue']:<32} {s['instance'] or '-':<24} {since:>9} {ready:>7}"
                f" {s['last_minute']:>9}"
            )
    lines.append("healthy" if report["healthy"] else "UNHEALTHY: " + "; ".join(report["problems"]))
    return "\n".join(lines)


def as_json(report: dict[str, Any]) -> str:
    """The report for machines."""
    return json.dumps(report, default=str, indent=2)

"""An in-memory BalanceLedger (tests/integration/test_contracts.py holds it to
PostgresBalanceLedger)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import datetime
from decimal import Decimal

from ledgerflow.cluster.leadership import LeadershipLost
from ledgerflow.core.amounts import format_amount
from ledgerflow.transactions.publisher import Snapshot, balance_key


class FakeBalanceLedger:
    """Providers with their initial values and transactions, the current term, and the
    publications recorded (boundary, term) -> provider count."""

    def __init__(self) -> None:
        self.providers: dict[int, tuple[str, Decimal]] = {}
        self.totals: dict[int, Decimal] = {}
        self.term = 0
        self.publications: dict[tuple[datetime, int], int] = {}

    def add_provider(self, name: str, initial: Decimal) -> int:
        """A new provider; return its id."""
        provider_id = len(self.providers) + 1
        self.providers[provider_id] = (name, initial)
        return provider_id

    def add_transaction(self, provider_id: int, value: Decimal) -> None:
        """A stored transaction."""
        self.totals[provider_id] = self.totals.get(provider_id, Decimal(0)) + value

    def take_term(self) -> int:
        """A new leader's term."""
        self.term += 1
        return self.term

    @contextlib.asynccontextmanager
    async def snapshot(
        self, boundary: datetime, term: int, instance: str
    ) -> AsyncIterator[Snapshot]:
        """See BalanceLedger.snapshot."""
        if term != self.term:
            raise LeadershipLost(f"term {term} is over; the current term is {self.term}")
        if any(b == boundary and t != term for b, t in self.publications):
            yield Snapshot({}, skipped=True)
            return
        snapshot = Snapshot(
            {
                balance_key(pid, name): format_amount(initial + self.totals.get(pid, Decimal(0)))
                for pid, (name, initial) in sorted(self.providers.items())
            },
            skipped=False,
        )
        yield snapshot
        if snapshot.published_at is not None:
            self.publications[(boundary, term)] = len(snapshot.keys)

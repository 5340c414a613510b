"""An in-memory BalanceStore (tests/integration/test_contracts.py holds it to KeyDB's)."""

from __future__ import annotations

from collections.abc import Mapping

from ledgerflow.kv.balance_store import BalanceStoreError


class FakeBalanceStore:
    """Keys in a dict; ``down`` makes every call fail as an unreachable KeyDB does."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.writes: list[dict[str, str]] = []  # every write_all, in order
        self.down = False

    async def write_all(self, values: Mapping[str, str]) -> None:
        """Write every key at once, or raise BalanceStoreError and write none."""
        if self.down:
            raise BalanceStoreError("cannot write balances to KeyDB: connection refused")
        if values:
            self.values.update(values)
            self.writes.append(dict(values))

    async def read_all(self, keys: list[str]) -> dict[str, str | None]:
        """The current value of each key (None when absent)."""
        if self.down:
            raise BalanceStoreError("cannot read balances from KeyDB: connection refused")
        return {key: self.values.get(key) for key in keys}

    async def close(self) -> None:
        """Nothing to release."""

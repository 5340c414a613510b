"""In-memory fakes for unit tests only, each kept honest by a contract test that runs the
same scenarios against the fake and the real service (tests/integration/test_contracts.py).
"""

from ledgerflow.testing.balance_store import FakeBalanceStore
from ledgerflow.testing.clock import FakeClock
from ledgerflow.testing.ledger import FakeBalanceLedger
from ledgerflow.testing.queue import FakeBroker, FakeQueue
from ledgerflow.testing.registry import MemoryRegistry

__all__ = [
    "FakeBalanceLedger",
    "FakeBalanceStore",
    "FakeBroker",
    "FakeClock",
    "FakeQueue",
    "MemoryRegistry",
]

"""In-memory fakes for unit tests only, each kept honest by a contract test that runs the
same scenarios against the fake and the real service (tests/integration/test_contracts.py).
"""

from ledgerflow.testing.clock import FakeClock

__all__ = ["FakeClock"]

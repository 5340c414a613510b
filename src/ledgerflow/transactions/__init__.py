"""Transactions: parsing messages, committing them in batches exactly once, and publishing
every provider's balance at each minute boundary."""

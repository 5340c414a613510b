"""KeyDB (or Redis): where balances are published, and the persistent LRU cache."""

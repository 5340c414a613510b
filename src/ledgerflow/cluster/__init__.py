"""Running several instances: the leader lock and its terms, and the registry of workers."""

"""What every part of ledgerflow shares and that does no I/O of its own: exact amounts,
the clock, logs, tracing, health."""


class ConfigError(Exception):
    """The configuration is unusable; the message names the variable to fix."""

"""ledgerflow: transactions from RabbitMQ into PostgreSQL, balances into KeyDB every minute."""

__version__ = "0.1.0"

"""PostgreSQL: connections, the one ordered sequence of migrations, named queries, and the
record of rejected messages that every domain writes to."""

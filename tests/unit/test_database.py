"""Telling a restarting PostgreSQL from a configuration mistake."""

import psycopg

from ledgerflow.db.connections import DatabaseError, restarting


def test_a_restarting_postgresql_is_told_apart_from_a_configuration_mistake() -> None:
    def failure(message: str) -> DatabaseError:
        try:
            raise DatabaseError("cannot connect") from psycopg.OperationalError(message)
        except DatabaseError as error:
            return error

    assert restarting(failure("FATAL:  the database system is starting up"))
    assert restarting(failure("FATAL:  the database system is shutting down"))
    assert restarting(
        failure('connection to server at "127.0.0.1", port 5432 failed: Connection refused')
    )
    assert not restarting(failure('FATAL:  password authentication failed for user "x"'))
    assert not restarting(failure('FATAL:  database "x" does not exist'))
    assert not restarting(DatabaseError("the database lacks migrations 008_rates"))

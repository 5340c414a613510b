import asyncio

import pytest

from ledgerflow.cluster.leadership import Leadership, LeadershipLost

pytestmark = pytest.mark.integration


async def test_only_one_instance_leads_and_the_next_takes_a_new_term(db_url: str) -> None:
    first = Leadership(db_url, "first", poll=0.05)
    second = Leadership(db_url, "second", poll=0.05)
    term = await first.acquire()
    waiting = asyncio.create_task(second.acquire())
    await asyncio.sleep(0.3)
    assert not waiting.done()  # the standby waits while the leader holds the lock
    await first.release()
    assert await asyncio.wait_for(waiting, 5) == term + 1
    await second.release()


async def test_losing_the_lock_connection_ends_leadership(db_url: str) -> None:
    import psycopg

    leader = Leadership(db_url, "leader", check_every=0.05)
    await leader.acquire()
    watch = asyncio.create_task(leader.watch())
    # An administrator (or a network fault) ends the leader's session.
    with psycopg.connect(db_url, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_locks"
            " WHERE locktype = 'advisory' AND pid <> pg_backend_pid()"
        )
    with pytest.raises(LeadershipLost):
        await asyncio.wait_for(watch, 5)
    await leader.release()

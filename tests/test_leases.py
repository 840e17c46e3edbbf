"""The lease rule every query shares (``steplog_lease_free``, ``steplog_owner_dead``, migration 0006)."""

from __future__ import annotations

import pytest
from sqlalchemy import text

LEASE = 1.2


@pytest.fixture
def conn(engine):
    with engine.begin() as c:
        c.execute(text("INSERT INTO worker_procs (id, worker, pid) VALUES ('alive', 'w1@h', 1)"))
        c.execute(text(
            "INSERT INTO worker_procs (id, worker, pid, heartbeat_at) "
            "VALUES ('silent', 'w2@h', 2, now() - interval '5 seconds')"
        ))
        yield c


def _free(conn, owner: str | None, started: str, expires: str) -> bool:
    return conn.execute(
        text(f"SELECT steplog_lease_free(:owner, now() - interval '{started}', now() + interval '{expires}', :lease)"),
        dict(owner=owner, lease=LEASE),
    ).scalar_one()


def test_a_lease_is_free_when_nobody_holds_it_or_its_holder_is_gone(conn) -> None:
    assert _free(conn, None, "0 s", "1 hour")
    assert not _free(conn, "alive", "0 s", "1 hour")  # a live heartbeat keeps the lease
    assert _free(conn, "alive", "0 s", "-1 second")  # ...until the hard deadline passes
    assert _free(conn, "silent", "0 s", "1 hour")  # heartbeat older than the lease time
    # A holder with no liveness row counts from when it took the lease.
    assert not _free(conn, "never-registered", "0.5 second", "1 hour")
    assert _free(conn, "never-registered", "2 seconds", "1 hour")


def test_an_owner_is_dead_when_its_heartbeat_or_its_promise_is_older_than_the_lease(conn) -> None:
    def dead(owner: str, since: str) -> bool:
        return conn.execute(
            text(f"SELECT steplog_owner_dead(:owner, now() - interval '{since}', :lease)"), dict(owner=owner, lease=1)
        ).scalar_one()  # an integer lease time is accepted as well

    assert not dead("alive", "1 hour")
    assert dead("silent", "0 s")
    assert not dead("nobody", "0.5 second") and dead("nobody", "3 seconds")

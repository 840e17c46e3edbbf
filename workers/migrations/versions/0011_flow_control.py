"""flow control: concurrency keys, throttled dispatches, run priorities

Revision ID: 0011
Revises: 0009

A run keyed for concurrency carries its key and limit (fixed at submission, from its input) and
whether it holds one of the key's slots (`flow_slot`, true from its claim to its commit, kept while a
dead worker's step is taken over). An outbox row of a throttled step says why it waits (`throttle`);
one waiting for a concurrency slot also names the key and since when it waits (FIFO per key).

Admission and hand-off are SQL functions that take the key's advisory lock first and only then read
(plpgsql, VOLATILE: each statement inside sees what committed before the lock was granted), so a
claim and a commit of the same key never both miss each other.
"""
import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

FLOW_LOCK = """
CREATE OR REPLACE FUNCTION steplog_flow_lock(p_key text) RETURNS void LANGUAGE sql VOLATILE AS $$
  -- One mutex per concurrency key, held to the end of the transaction (a claim or commit statement).
  SELECT pg_advisory_xact_lock(hashtextextended('steplog-flow:' || p_key, 0))
$$
"""

FLOW_BUSY = """
CREATE OR REPLACE FUNCTION steplog_flow_busy(p_key text, p_run_id text, p_seq integer)
RETURNS integer LANGUAGE sql VOLATILE AS $$
  -- Slots held (runs between claim and commit) plus slots handed to a woken waiter whose step is on
  -- its way (not counting step p_seq of p_run_id itself).
  SELECT (SELECT count(*) FROM runs WHERE flow_key = p_key AND flow_slot)::integer
       + (SELECT count(*) FROM outbox o WHERE o.throttle_key = p_key AND o.dispatched_at IS NOT NULL
            AND NOT (o.run_id = p_run_id AND o.seq = p_seq))::integer
$$
"""

FLOW_ADMIT = """
CREATE OR REPLACE FUNCTION steplog_flow_admit(p_run_id text, p_seq integer, p_key text, p_limit integer,
                                              p_holds boolean)
RETURNS boolean LANGUAGE plpgsql VOLATILE COST 10000 AS $$
-- Whether step p_seq of a keyed run may take a slot. No: its outbox row becomes a waiter (no due
-- time, no broker message) until a freed slot wakes it, oldest first. Called from the claim's WHERE
-- (COST keeps it the last test); harmless to call twice.
BEGIN
  IF p_key IS NULL OR p_holds THEN
    RETURN true;
  END IF;
  PERFORM steplog_flow_lock(p_key);
  IF steplog_flow_busy(p_key, p_run_id, p_seq) < p_limit THEN
    RETURN true;
  END IF;
  UPDATE outbox SET throttle = 'concurrency', throttle_key = p_key,
                    throttled_since = coalesce(throttled_since, now()),
                    dispatched_at = NULL, owner = NULL, available_at = 'infinity'
   WHERE run_id = p_run_id AND seq = p_seq;
  RETURN false;
END
$$
"""

FLOW_WAKE = """
CREATE OR REPLACE FUNCTION steplog_flow_wake(p_key text, p_owner text, p_n integer)
RETURNS TABLE (run_id text, seq integer, workflow text, priority smallint) LANGUAGE plpgsql VOLATILE AS $$
-- Hand p_n freed slots of p_key to its oldest waiters: their dispatches are promised by p_owner, who
-- publishes them after the commit. Called by a commit that frees a slot (p_n 1) and by the sweeper.
BEGIN
  IF p_key IS NULL OR p_n < 1 THEN
    RETURN;
  END IF;
  PERFORM steplog_flow_lock(p_key);
  RETURN QUERY
  WITH head AS (
    SELECT o.run_id, o.seq FROM outbox o
     WHERE o.throttle_key = p_key AND o.dispatched_at IS NULL
     ORDER BY o.throttled_since, o.run_id
     LIMIT p_n
     FOR UPDATE SKIP LOCKED
  )
  UPDATE outbox o SET dispatched_at = now(), owner = p_owner, available_at = now()
    FROM head, runs r
   WHERE o.run_id = head.run_id AND o.seq = head.seq AND r.run_id = o.run_id
  RETURNING o.run_id, o.seq, r.workflow, r.priority;
END
$$
"""


def upgrade() -> None:
    op.add_column("runs", sa.Column("flow_key", sa.Text(), nullable=True))
    op.add_column("runs", sa.Column("flow_limit", sa.Integer(), nullable=True))
    op.add_column("runs", sa.Column("flow_slot", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.add_column("runs", sa.Column("priority", sa.SmallInteger(), nullable=False, server_default="0"))
    op.create_check_constraint("runs_priority_valid", "runs", "priority BETWEEN 0 AND 9")
    op.create_index("runs_flow_slot_idx", "runs", ["flow_key"], postgresql_where=sa.text("flow_slot"))
    op.add_column("outbox", sa.Column("throttle", sa.Text(), nullable=True))
    op.add_column("outbox", sa.Column("throttle_key", sa.Text(), nullable=True))
    op.add_column("outbox", sa.Column("throttled_since", sa.DateTime(timezone=True), nullable=True))
    op.create_index("outbox_throttle_idx", "outbox", ["throttle_key", "throttled_since"],
                    postgresql_where=sa.text("throttle_key IS NOT NULL"))
    for fn in (FLOW_LOCK, FLOW_BUSY, FLOW_ADMIT, FLOW_WAKE):
        op.execute(fn)


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS steplog_flow_wake(text, text, integer)")
    op.execute("DROP FUNCTION IF EXISTS steplog_flow_admit(text, integer, text, integer, boolean)")
    op.execute("DROP FUNCTION IF EXISTS steplog_flow_busy(text, text, integer)")
    op.execute("DROP FUNCTION IF EXISTS steplog_flow_lock(text)")
    op.drop_index("outbox_throttle_idx", "outbox")
    for col in ("throttled_since", "throttle_key", "throttle"):
        op.drop_column("outbox", col)
    op.drop_index("runs_flow_slot_idx", "runs")
    op.drop_constraint("runs_priority_valid", "runs")
    for col in ("priority", "flow_slot", "flow_limit", "flow_key"):
        op.drop_column("runs", col)

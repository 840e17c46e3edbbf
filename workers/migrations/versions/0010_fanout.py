"""fan-out: child runs, their parent's join, the in-flight window

Revision ID: 0010
Revises: 0009

A child run is an ordinary run that records its parent, the parent's step that spawned it and its
index. One `fanouts` row per spawning step holds the join's rule (on_error, quorum), the window
(max_parallel, how many children were dispatched so far) and counters of ended children.

Whatever ends a child (its last step's commit, a failure, a cancel, a sweep) goes through one
trigger, in the ending statement's transaction: it counts the child on the parent's row with a
conditional update under that row's lock, and when the join condition first holds (the row's
`joined_by` is still NULL) appends the parent's `joined` event and its next step's outbox row; else,
while the window has room, it queues the next undispatched child. Nothing polls per child.
"""
import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

CANCEL_CHILDREN = """
CREATE OR REPLACE FUNCTION steplog_cancel_children(p_parent text, p_seq integer, p_by text)
RETURNS integer LANGUAGE plpgsql AS $$
-- Cancel the children of p_parent (of its step p_seq; NULL: all of them) that have not ended: those
-- no worker is stepping end `cancelled` now; the others are asked to stop, and end at their step's
-- commit (commit_step turns a child's continuation or finish into `cancelled`), or, when their worker
-- died, at the claim that finds the cancel. SKIP LOCKED: a child whose row another transaction holds
-- is ending or being claimed right now; waiting for it could deadlock with its own end, which locks
-- the fan-out row this caller may hold. The join's step calls this again for such stragglers.
-- Each child's end fires the trigger below, which also cancels that child's own children.
DECLARE n integer;
BEGIN
  WITH picked AS (
    SELECT r.run_id, r.lease_owner IS NULL AS free FROM runs r
     WHERE r.parent_run_id = p_parent AND (p_seq IS NULL OR r.parent_seq = p_seq)
       AND r.status IN ('queued', 'running', 'waiting')
     FOR UPDATE SKIP LOCKED
  ), asked AS (
    UPDATE runs r SET cancel_requested_by = coalesce(r.cancel_requested_by, p_by), updated_at = now()
      FROM picked WHERE r.run_id = picked.run_id AND NOT picked.free AND r.cancel_requested_by IS NULL
  ), adv AS (
    UPDATE runs r SET status = 'cancelled', cancel_requested_by = coalesce(r.cancel_requested_by, p_by),
           next_seq = r.next_seq + 1, attempt = 0, lease_started_at = NULL, lease_expires_at = NULL,
           wait_signal = NULL, wait_since = NULL, wait_until = NULL, updated_at = now()
      FROM picked WHERE r.run_id = picked.run_id AND picked.free
    RETURNING r.run_id, r.next_seq - 1 AS seq, r.cancel_requested_by
  ), dropped AS (
    DELETE FROM outbox o USING adv WHERE o.run_id = adv.run_id
  ), lost AS (
    UPDATE step_attempts a SET outcome = 'lost', finished_at = now()
      FROM adv WHERE a.run_id = adv.run_id AND a.outcome IS NULL
  ), ev AS (
    INSERT INTO events (run_id, seq, type, state, payload, worker, pid, attempt)
    SELECT adv.run_id, adv.seq, 'cancelled',
           (SELECT e.state FROM events e WHERE e.run_id = adv.run_id AND e.seq = adv.seq - 1),
           jsonb_build_object('by', adv.cancel_requested_by), 'steplog', 0, 0
      FROM adv
  )
  SELECT count(*) INTO n FROM adv;
  RETURN n;
END
$$
"""

RUN_ENDED = """
CREATE OR REPLACE FUNCTION steplog_run_ended() RETURNS trigger LANGUAGE plpgsql AS $$
-- A run just ended (its status became succeeded, failed or cancelled, once: a final status never
-- changes). A cancelled run's own children are cancelled with it. A child is counted on its
-- parent's fan-out row, which this statement locks: two children ending at once on two workers
-- are counted one after the other, and exactly one of them finds the join condition first true.
DECLARE
  f fanouts%ROWTYPE;
  ok integer; bad integer; ended integer; fire boolean;
  nxt integer := NULL;
BEGIN
  IF NEW.status = 'cancelled' THEN
    PERFORM steplog_cancel_children(NEW.run_id, NULL, 'parent ' || NEW.run_id);
  END IF;
  IF NEW.parent_run_id IS NULL THEN
    RETURN NULL;
  END IF;
  -- The parent's row before the fan-out's: the order a cancel of the parent takes them in (its own row,
  -- then, through its children's ends, the fan-out's), so the two never wait on each other in a cycle.
  PERFORM 1 FROM runs WHERE run_id = NEW.parent_run_id FOR NO KEY UPDATE;
  SELECT * INTO f FROM fanouts WHERE run_id = NEW.parent_run_id AND seq = NEW.parent_seq FOR UPDATE;
  IF NOT FOUND THEN
    RETURN NULL;
  END IF;
  ok := f.succeeded + (NEW.status = 'succeeded')::int;
  bad := f.failed + f.cancelled + (NEW.status <> 'succeeded')::int;
  ended := ok + bad;
  fire := f.joined_by IS NULL AND (
    ended >= f.total
    OR (f.on_error = 'all' AND bad > 0)
    OR (f.on_error = 'quorum' AND (ok >= f.quorum OR f.total - bad < f.quorum)));
  IF f.joined_by IS NULL AND NOT fire AND f.dispatched < f.total THEN
    nxt := f.dispatched;  -- one child ended, so one more may start: the window never grows
  END IF;
  UPDATE fanouts SET succeeded = succeeded + (NEW.status = 'succeeded')::int,
                     failed = failed + (NEW.status = 'failed')::int,
                     cancelled = cancelled + (NEW.status = 'cancelled')::int,
                     dispatched = dispatched + (nxt IS NOT NULL)::int,
                     joined_by = CASE WHEN fire THEN NEW.run_id ELSE joined_by END,
                     joined_at = CASE WHEN fire THEN now() ELSE joined_at END
   WHERE run_id = f.run_id AND seq = f.seq;
  IF nxt IS NOT NULL THEN
    INSERT INTO outbox (run_id, seq, owner, dispatched_at)
    SELECT c.run_id, c.next_seq, NULL, NULL FROM runs c
     WHERE c.parent_run_id = f.run_id AND c.parent_seq = f.seq AND c.child_index = nxt AND c.status = 'queued'
    ON CONFLICT (run_id, seq) DO NOTHING;
  END IF;
  IF fire THEN
    WITH adv AS (
      UPDATE runs p SET status = 'queued', next_seq = f.seq + 2, wait_signal = NULL, wait_since = NULL,
                        wait_until = NULL, updated_at = now()
       WHERE p.run_id = f.run_id AND p.status = 'waiting' AND p.next_seq = f.seq + 1
      RETURNING p.run_id
    ), ev AS (
      INSERT INTO events (run_id, seq, type, state, payload, worker, pid, attempt)
      SELECT adv.run_id, f.seq + 1, 'joined',
             (SELECT e.state FROM events e WHERE e.run_id = f.run_id AND e.seq = f.seq),
             jsonb_build_object('fanout_seq', f.seq, 'total', f.total, 'succeeded', ok,
                                'failed', f.failed + (NEW.status = 'failed')::int,
                                'cancelled', f.cancelled + (NEW.status = 'cancelled')::int, 'by', NEW.run_id),
             -- written by the worker whose commit ended the child (its lease id is node:pid:token)
             coalesce(nullif(split_part(OLD.lease_owner, ':', 1), ''), 'steplog'),
             coalesce(nullif(split_part(OLD.lease_owner, ':', 2), '')::int, 0), 0
        FROM adv
    )
    INSERT INTO outbox (run_id, seq, owner, dispatched_at) SELECT adv.run_id, f.seq + 2, NULL, NULL FROM adv;
    IF ended < f.total THEN  -- an early join (quorum reached, or a failure under 'all'): the rest stop
      PERFORM steplog_cancel_children(f.run_id, f.seq, 'join of ' || f.run_id);
    END IF;
  END IF;
  RETURN NULL;
END
$$
"""

TRIGGER = """
CREATE TRIGGER runs_ended AFTER UPDATE OF status ON runs FOR EACH ROW
WHEN (NEW.status IN ('succeeded', 'failed', 'cancelled') AND OLD.status NOT IN ('succeeded', 'failed', 'cancelled')
      AND (NEW.parent_run_id IS NOT NULL OR NEW.status = 'cancelled'))
EXECUTE FUNCTION steplog_run_ended()
"""


def upgrade() -> None:
    op.add_column("runs", sa.Column("parent_run_id", sa.Text(), nullable=True))
    op.add_column("runs", sa.Column("parent_seq", sa.Integer(), nullable=True))
    op.add_column("runs", sa.Column("child_index", sa.Integer(), nullable=True))
    op.create_index("runs_children_idx", "runs", ["parent_run_id", "parent_seq", "child_index"],
                    postgresql_where=sa.text("parent_run_id IS NOT NULL"))
    op.create_table(
        "fanouts",
        sa.Column("run_id", sa.Text(), sa.ForeignKey("runs.run_id", ondelete="CASCADE"), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("max_parallel", sa.Integer(), nullable=False),
        sa.Column("on_error", sa.Text(), nullable=False),
        sa.Column("quorum", sa.Integer(), nullable=True),
        sa.Column("dispatched", sa.Integer(), nullable=False),
        sa.Column("succeeded", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("failed", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("cancelled", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("joined_by", sa.Text(), nullable=True),
        sa.Column("joined_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("run_id", "seq", name="fanouts_pkey"),
        sa.CheckConstraint("on_error IN ('all', 'settled', 'quorum')", name="fanouts_on_error_valid"),
    )
    op.execute(CANCEL_CHILDREN)
    op.execute(RUN_ENDED)
    op.execute(TRIGGER)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS runs_ended ON runs")
    op.execute("DROP FUNCTION IF EXISTS steplog_run_ended()")
    op.execute("DROP FUNCTION IF EXISTS steplog_cancel_children(text, integer, text)")
    op.drop_table("fanouts")
    op.drop_index("runs_children_idx", "runs")
    op.drop_column("runs", "child_index")
    op.drop_column("runs", "parent_seq")
    op.drop_column("runs", "parent_run_id")

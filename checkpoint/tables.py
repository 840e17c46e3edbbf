"""Table definitions: the one SQLAlchemy MetaData that Alembic migrations must reproduce.

Every durable write has a natural key, so a repeated write is absorbed by the schema, not by an `if`:
events by (run_id, seq), outbox rows by (run_id, seq), attempts by (run_id, seq, attempt).
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    Computed,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    Table,
    Text,
    UniqueConstraint,
    false,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, TSVECTOR

from checkpoint.statuses import RUN_STATUSES

metadata = MetaData()


runs = Table(
    "runs",
    metadata,
    Column("run_id", Text, primary_key=True),
    Column("workflow", Text, nullable=False),
    Column("status", Text, nullable=False, server_default="queued"),
    Column("input", JSONB, nullable=False),
    Column("result", JSONB),
    Column("error", JSONB),
    # The seq the next step will write; a step for any other seq is a duplicate or stale.
    Column("next_seq", Integer, nullable=False, server_default="2"),
    # Attempts at step next_seq so far; reset when a step commits.
    Column("attempt", Integer, nullable=False, server_default="0"),
    # The lease: which worker process runs step next_seq now, and the hard deadline of that attempt.
    Column("lease_owner", Text),
    Column("lease_started_at", DateTime(timezone=True)),
    Column("lease_expires_at", DateTime(timezone=True)),
    Column("cancel_requested_by", Text),
    Column("archive", JSONB),
    # While status is 'waiting': the signal it waits for (NULL for a sleep), since when, and its due
    # time (a sleep's end or a wait's timeout), which any worker's sweeper acts on.
    Column("wait_signal", Text),
    Column("wait_since", DateTime(timezone=True)),
    Column("wait_until", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Who the run belongs to: the API shows a tenant's runs to that tenant's tokens only.
    Column("tenant", Text, nullable=False, server_default="default"),
    # Flow control (migration 0011): the run's concurrency key and limit, fixed at submission; whether
    # it holds one of the key's slots (claim to commit); its priority, 0-9, carried on every step message.
    Column("flow_key", Text),
    Column("flow_limit", Integer),
    Column("flow_slot", Boolean, nullable=False, server_default=false()),
    Column("priority", SmallInteger, nullable=False, server_default="0"),
    # A child run (fan-out): its parent, the parent's step that spawned it, and its index among them.
    Column("parent_run_id", Text),
    Column("parent_seq", Integer),
    Column("child_index", Integer),
    CheckConstraint(f"status IN {RUN_STATUSES}", name="runs_status_valid"),
    CheckConstraint("priority BETWEEN 0 AND 9", name="runs_priority_valid"),
    Index("runs_created_at_idx", "created_at"),
    Index("runs_tenant_created_idx", "tenant", "created_at"),
    Index("runs_leased_idx", "lease_owner", postgresql_where=text("lease_owner IS NOT NULL")),
    Index("runs_wait_due_idx", "wait_until", postgresql_where=text("status = 'waiting'")),
    Index("runs_flow_slot_idx", "flow_key", postgresql_where=text("flow_slot")),
    Index("runs_children_idx", "parent_run_id", "parent_seq", "child_index",
          postgresql_where=text("parent_run_id IS NOT NULL")),
)

fanouts = Table(
    "fanouts",
    metadata,
    # One row per step that spawned children (Map, Spawn): the join's rule, the in-flight window and
    # counters of ended children, kept by the trigger every child's end fires (migration 0010).
    Column("run_id", Text, ForeignKey("runs.run_id", ondelete="CASCADE"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("total", Integer, nullable=False),
    Column("max_parallel", Integer, nullable=False),
    Column("on_error", Text, nullable=False),
    Column("quorum", Integer),
    # Children with index below this have been dispatched; the rest wait for a slot in the window.
    Column("dispatched", Integer, nullable=False),
    Column("succeeded", Integer, nullable=False, server_default="0"),
    Column("failed", Integer, nullable=False, server_default="0"),
    Column("cancelled", Integer, nullable=False, server_default="0"),
    # The child whose end fired the join (set once: the join fires once), and when.
    Column("joined_by", Text),
    Column("joined_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("run_id", "seq", name="fanouts_pkey"),
    CheckConstraint("on_error IN ('all', 'settled', 'quorum')", name="fanouts_on_error_valid"),
)

events = Table(
    "events",
    metadata,
    Column("run_id", Text, ForeignKey("runs.run_id", ondelete="CASCADE"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("type", Text, nullable=False),
    # The checkpoint: the workflow state after this event. The next step starts from it alone.
    Column("state", JSONB, nullable=False),
    Column("payload", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("worker", Text),
    Column("pid", Integer),
    Column("attempt", Integer, nullable=False, server_default="0"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("run_id", "seq", name="events_pkey"),
    # The latest summary of a run in one index probe, however long its history (checkpoint/context.py).
    Index("events_summary_idx", "run_id", "seq", postgresql_where=text("type = 'summary'")),
)

outbox = Table(
    "outbox",
    metadata,
    Column("run_id", Text, ForeignKey("runs.run_id", ondelete="CASCADE"), nullable=False),
    Column("seq", Integer, nullable=False),
    # Who promised to publish it (a worker process id); NULL for a submitter or a delayed retry.
    Column("owner", Text),
    Column("available_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # When it was last published; NULL: not yet. The claim of the step deletes the row.
    Column("dispatched_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # A throttled step: why it waits ('concurrency', 'rate: llm tpm', ...); one waiting for a
    # concurrency slot names its key and since when it waits (woken oldest first).
    Column("throttle", Text),
    Column("throttle_key", Text),
    Column("throttled_since", DateTime(timezone=True)),
    PrimaryKeyConstraint("run_id", "seq", name="outbox_pkey"),
    Index("outbox_available_idx", "available_at"),
    Index("outbox_throttle_idx", "throttle_key", "throttled_since", postgresql_where=text("throttle_key IS NOT NULL")),
)

step_attempts = Table(
    "step_attempts",
    metadata,
    Column("run_id", Text, ForeignKey("runs.run_id", ondelete="CASCADE"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("owner", Text, nullable=False),
    Column("worker", Text, nullable=False),
    Column("pid", Integer, nullable=False),
    # NULL while running; then committed, failed, lost (its worker died), fenced (a zombie's write refused).
    Column("outcome", Text),
    Column("error", JSONB),
    Column("started_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("finished_at", DateTime(timezone=True)),
    # Time inside the workflow's step function (reasoning, tools), for overhead accounting.
    Column("step_ms", Float),
    PrimaryKeyConstraint("run_id", "seq", "attempt", name="step_attempts_pkey"),
)

worker_procs = Table(
    "worker_procs",
    metadata,
    # node:pid:token. The token makes a restarted process with the same pid a new owner.
    Column("id", Text, primary_key=True),
    Column("worker", Text, nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("heartbeat_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

summaries = Table(
    "summaries",
    metadata,
    # Written with the run's `summary` event at the same seq, in the same transaction. It outlives the
    # event when the run's history is archived, so past runs stay searchable (checkpoint/recall.py).
    Column("run_id", Text, ForeignKey("runs.run_id", ondelete="CASCADE"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("text", Text, nullable=False),
    Column("tsv", TSVECTOR, Computed("to_tsvector('english'::regconfig, text)", persisted=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("run_id", "seq", name="summaries_pkey"),
    Index("summaries_tsv_idx", "tsv", postgresql_using="gin"),
)

signals = Table(
    "signals",
    metadata,
    Column("run_id", Text, ForeignKey("runs.run_id", ondelete="CASCADE"), nullable=False),
    # The sender's deduplication key (random when none is given): the same key twice stores one signal.
    Column("key", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("data", JSONB),
    Column("sender", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # The seq of the `signal` event that delivered it to a wait; NULL while buffered.
    Column("consumed_seq", Integer),
    PrimaryKeyConstraint("run_id", "key", name="signals_pkey"),
    Index("signals_pending_idx", "run_id", "name", "created_at", postgresql_where=text("consumed_seq IS NULL")),
)

SCHEDULE_OVERLAP = ("skip", "allow")
SCHEDULE_CATCH_UP = ("none", "one", "all")

schedules = Table(
    "schedules",
    metadata,
    Column("name", Text, primary_key=True),
    Column("cron", Text, nullable=False),
    Column("timezone", Text, nullable=False, server_default="UTC"),
    Column("workflow", Text, nullable=False),
    Column("input", JSONB, nullable=False),
    # The workflow's initial checkpoint for that input, computed when the schedule was added.
    Column("state", JSONB, nullable=False),
    Column("overlap", Text, nullable=False, server_default="skip"),
    Column("catch_up", Text, nullable=False, server_default="one"),
    Column("next_fire_at", DateTime(timezone=True), nullable=False),
    Column("created_by", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint(f"overlap IN {SCHEDULE_OVERLAP}", name="schedules_overlap_valid"),
    CheckConstraint(f"catch_up IN {SCHEDULE_CATCH_UP}", name="schedules_catch_up_valid"),
    Index("schedules_due_idx", "next_fire_at"),
)

schedule_fires = Table(
    "schedule_fires",
    metadata,
    # One row per (schedule, tick), whoever fires it: the schema makes each tick fire once.
    Column("schedule", Text, ForeignKey("schedules.name", ondelete="CASCADE"), nullable=False),
    Column("tick", DateTime(timezone=True), nullable=False),
    Column("run_id", Text, ForeignKey("runs.run_id", ondelete="SET NULL")),
    Column("outcome", Text, nullable=False),
    Column("fired_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("schedule", "tick", name="schedule_fires_pkey"),
    CheckConstraint("outcome IN ('started', 'skipped')", name="schedule_fires_outcome_valid"),
)

turns = Table(
    "turns",
    metadata,
    # One row per turn of a session (a chat agent's run), written with the turn's `reply` event in
    # one transaction. A message key makes at most one turn: a resent message is answered once.
    Column("run_id", Text, ForeignKey("runs.run_id", ondelete="CASCADE"), nullable=False),
    Column("turn", Integer, nullable=False),
    Column("message_key", Text, nullable=False),
    Column("message", Text, nullable=False),
    Column("reply", Text, nullable=False),
    Column("citations", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("seq", Integer, nullable=False),  # the `reply` event
    Column("sent_at", DateTime(timezone=True)),  # when the message was stored
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("tsv", TSVECTOR, Computed("to_tsvector('english'::regconfig, message || ' ' || reply)", persisted=True)),
    PrimaryKeyConstraint("run_id", "turn", name="turns_pkey"),
    UniqueConstraint("run_id", "message_key", name="turns_message_key"),
    Index("turns_tsv_idx", "tsv", postgresql_using="gin"),
)

ROLES = ("viewer", "operator", "approver", "admin")

api_tokens = Table(
    "api_tokens",
    metadata,
    # A token is known by its name (recorded in the event log for what it does) and stored as its
    # SHA-256 only: the token itself is shown once, when it is created.
    Column("name", Text, primary_key=True),
    Column("token_hash", Text, nullable=False),
    Column("tenant", Text, nullable=False),
    Column("role", Text, nullable=False),
    Column("created_by", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("revoked_at", DateTime(timezone=True)),
    CheckConstraint(f"role IN {ROLES}", name="api_tokens_role_valid"),
    UniqueConstraint("token_hash", name="api_tokens_hash_key"),
)

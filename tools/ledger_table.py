"""The tool ledger and the tables the built-in write tools fill (notes, reports).

The ledger is keyed by the idempotency key, so a repeated call finds its own row instead of adding one:
it is both the dedupe record and the audit trail of every tool call an agent made.
"""

from __future__ import annotations

from sqlalchemy import (
    CheckConstraint,
    Column,
    Computed,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, TSVECTOR

from checkpoint.tables import metadata

LEDGER_STATUSES = ("started", "succeeded", "failed", "unknown")

tool_ledger = Table(
    "tool_ledger",
    metadata,
    Column("key", Text, primary_key=True),
    Column("run_id", Text, ForeignKey("runs.run_id", ondelete="CASCADE"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("tool", Text, nullable=False),
    Column("version", Text, nullable=False),
    Column("input_hash", Text, nullable=False),
    # The validated input itself: the audit trail must say what the agent asked for.
    Column("input", JSONB, nullable=False),
    Column("status", Text, nullable=False, server_default="started"),
    Column("result", JSONB),
    # Set instead of result when the result was larger than the inline limit.
    Column("result_artifact", JSONB),
    Column("error", JSONB),
    # Executions of the tool for this key (in-step retries and re-runs after lost attempts).
    Column("attempts", Integer, nullable=False, server_default="0"),
    # Calls answered from this row without executing.
    Column("replays", Integer, nullable=False, server_default="0"),
    Column("worker", Text),
    Column("owner", Text),
    Column("started_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("finished_at", DateTime(timezone=True)),
    CheckConstraint(f"status IN {LEDGER_STATUSES}", name="tool_ledger_status_valid"),
    Index("tool_ledger_run_idx", "run_id", "seq"),
)

notes = Table(
    "notes",
    metadata,
    # The idempotency key of the save_note call that wrote it: a re-run writes nothing new.
    Column("key", Text, primary_key=True),
    Column("run_id", Text, ForeignKey("runs.run_id", ondelete="CASCADE"), nullable=False),
    Column("text", Text, nullable=False),
    Column("citations", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("tsv", TSVECTOR, Computed("to_tsvector('english'::regconfig, text)", persisted=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("notes_run_idx", "run_id"),
    Index("notes_tsv_idx", "tsv", postgresql_using="gin"),
)

reports = Table(
    "reports",
    metadata,
    Column("run_id", Text, ForeignKey("runs.run_id", ondelete="CASCADE"), primary_key=True),
    Column("markdown", Text, nullable=False),
    Column("citations", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    # The key of the publish_report call that wrote this version.
    Column("key", Text, nullable=False),
    Column("published_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

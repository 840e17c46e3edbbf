"""The research app's own tables, filled by the built-in write tools: ``notes`` (save_note) and
``reports`` (publish_report). Each row is keyed by the idempotency key of the call that wrote it, so a
re-run writes nothing new.
"""

from __future__ import annotations

from sqlalchemy import Column, Computed, DateTime, ForeignKey, Index, Table, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB, TSVECTOR

from checkpoint.tables import metadata

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

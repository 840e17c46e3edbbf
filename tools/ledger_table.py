"""The tool ledger: one row per tool call an agent made.

The ledger is keyed by the idempotency key, so a repeated call finds its own row instead of adding one:
it is both the dedupe record and the audit trail of every tool call an agent made. (The tables the
built-in write tools fill, notes and reports, are in :mod:`tools.builtin.research_tables`.)
"""

from __future__ import annotations

from sqlalchemy import CheckConstraint, Column, DateTime, ForeignKey, Index, Integer, Table, Text, func
from sqlalchemy.dialects.postgresql import JSONB

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

"""durable waits: waiting runs, signals, schedules

Revision ID: 0007
Revises: 0006

A waiting run is a row with status 'waiting' and what it waits for (wait_signal, wait_until); nothing
else holds it. Signals are stored first, deduplicated by (run_id, key), and consumed by the wait they
wake (consumed_seq). Schedules fire each (schedule, tick) once: schedule_fires' primary key.
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

OLD_STATUSES = "('queued', 'running', 'succeeded', 'failed', 'cancelled')"
NEW_STATUSES = "('queued', 'running', 'waiting', 'succeeded', 'failed', 'cancelled')"


def upgrade() -> None:
    op.drop_constraint("runs_status_valid", "runs", type_="check")
    op.create_check_constraint("runs_status_valid", "runs", f"status IN {NEW_STATUSES}")
    op.add_column("runs", sa.Column("wait_signal", sa.Text(), nullable=True))
    op.add_column("runs", sa.Column("wait_since", sa.DateTime(timezone=True), nullable=True))
    op.add_column("runs", sa.Column("wait_until", sa.DateTime(timezone=True), nullable=True))
    op.create_index("runs_wait_due_idx", "runs", ["wait_until"], postgresql_where=sa.text("status = 'waiting'"))

    op.create_table(
        "signals",
        sa.Column("run_id", sa.Text(), sa.ForeignKey("runs.run_id", ondelete="CASCADE"), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("data", JSONB(), nullable=True),
        sa.Column("sender", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("consumed_seq", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("run_id", "key", name="signals_pkey"),
    )
    op.create_index(
        "signals_pending_idx", "signals", ["run_id", "name", "created_at"],
        postgresql_where=sa.text("consumed_seq IS NULL"),
    )

    op.create_table(
        "schedules",
        sa.Column("name", sa.Text(), primary_key=True),
        sa.Column("cron", sa.Text(), nullable=False),
        sa.Column("timezone", sa.Text(), nullable=False, server_default="UTC"),
        sa.Column("workflow", sa.Text(), nullable=False),
        sa.Column("input", JSONB(), nullable=False),
        sa.Column("state", JSONB(), nullable=False),
        sa.Column("overlap", sa.Text(), nullable=False, server_default="skip"),
        sa.Column("catch_up", sa.Text(), nullable=False, server_default="one"),
        sa.Column("next_fire_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("overlap IN ('skip', 'allow')", name="schedules_overlap_valid"),
        sa.CheckConstraint("catch_up IN ('none', 'one', 'all')", name="schedules_catch_up_valid"),
    )
    op.create_index("schedules_due_idx", "schedules", ["next_fire_at"])
    op.create_table(
        "schedule_fires",
        sa.Column("schedule", sa.Text(), sa.ForeignKey("schedules.name", ondelete="CASCADE"), nullable=False),
        sa.Column("tick", sa.DateTime(timezone=True), nullable=False),
        sa.Column("run_id", sa.Text(), sa.ForeignKey("runs.run_id", ondelete="SET NULL"), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("fired_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("schedule", "tick", name="schedule_fires_pkey"),
        sa.CheckConstraint("outcome IN ('started', 'skipped')", name="schedule_fires_outcome_valid"),
    )


def downgrade() -> None:
    op.drop_table("schedule_fires")
    op.drop_table("schedules")
    op.drop_table("signals")
    op.drop_index("runs_wait_due_idx", table_name="runs")
    op.drop_column("runs", "wait_until")
    op.drop_column("runs", "wait_since")
    op.drop_column("runs", "wait_signal")
    op.drop_constraint("runs_status_valid", "runs", type_="check")
    op.create_check_constraint("runs_status_valid", "runs", f"status IN {OLD_STATUSES}")

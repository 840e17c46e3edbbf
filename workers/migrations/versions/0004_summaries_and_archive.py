"""summaries (full-text searchable) and the partial index finding a run's latest summary event

Revision ID: 0004
Revises: 0003
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # runs.archive (the pointer to an archived history) already exists since 0001.
    op.create_index(
        "events_summary_idx", "events", ["run_id", "seq"], unique=False, postgresql_where=sa.text("type = 'summary'")
    )
    op.create_table(
        "summaries",
        sa.Column("run_id", sa.Text(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column(
            "tsv",
            postgresql.TSVECTOR(),
            sa.Computed("to_tsvector('english'::regconfig, text)", persisted=True),
            nullable=True,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.run_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "seq", name="summaries_pkey"),
    )
    op.create_index("summaries_tsv_idx", "summaries", ["tsv"], unique=False, postgresql_using="gin")


def downgrade() -> None:
    op.drop_index("summaries_tsv_idx", table_name="summaries", postgresql_using="gin")
    op.drop_table("summaries")
    op.drop_index("events_summary_idx", table_name="events", postgresql_where=sa.text("type = 'summary'"))

"""sessions: the durable turns of conversations

Revision ID: 0008
Revises: 0007

A session is a run of a chat agent; each of its turns (one user message, one reply) is a row here,
written in the same transaction as the turn's `reply` event. (run_id, message_key) is unique: a
message resent with the same client id can never make a second turn. `tsv` makes the conversation
searchable by search_memory.
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, TSVECTOR

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "turns",
        sa.Column("run_id", sa.Text(), sa.ForeignKey("runs.run_id", ondelete="CASCADE"), nullable=False),
        sa.Column("turn", sa.Integer(), nullable=False),
        sa.Column("message_key", sa.Text(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("reply", sa.Text(), nullable=False),
        sa.Column("citations", JSONB(), nullable=False, server_default=sa.text("'[]'::jsonb")),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column(
            "tsv", TSVECTOR(),
            sa.Computed("to_tsvector('english'::regconfig, message || ' ' || reply)", persisted=True),
        ),
        sa.PrimaryKeyConstraint("run_id", "turn", name="turns_pkey"),
        sa.UniqueConstraint("run_id", "message_key", name="turns_message_key"),
    )
    op.create_index("turns_tsv_idx", "turns", ["tsv"], postgresql_using="gin")


def downgrade() -> None:
    op.drop_table("turns")

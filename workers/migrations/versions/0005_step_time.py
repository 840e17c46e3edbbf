"""step_attempts.step_ms: time inside the workflow's step function

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("step_attempts", sa.Column("step_ms", sa.Float(), nullable=True))


def downgrade() -> None:
    op.drop_column("step_attempts", "step_ms")

"""tenants and API tokens

Revision ID: 0009
Revises: 0008

Every run belongs to a tenant (`default` for what existed before). API tokens are stored as their
SHA-256 only; a token has a name (what the event log records of its actions), a tenant and a role.
"""
import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

ROLES = "('viewer', 'operator', 'approver', 'admin')"


def upgrade() -> None:
    op.add_column("runs", sa.Column("tenant", sa.Text(), nullable=False, server_default="default"))
    op.create_index("runs_tenant_created_idx", "runs", ["tenant", "created_at"])
    op.create_table(
        "api_tokens",
        sa.Column("name", sa.Text(), primary_key=True),
        sa.Column("token_hash", sa.Text(), nullable=False),
        sa.Column("tenant", sa.Text(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("created_by", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(f"role IN {ROLES}", name="api_tokens_role_valid"),
        sa.UniqueConstraint("token_hash", name="api_tokens_hash_key"),
    )


def downgrade() -> None:
    op.drop_table("api_tokens")
    op.drop_index("runs_tenant_created_idx", "runs")
    op.drop_column("runs", "tenant")

"""research corpus: corpora, corpus_docs, corpus_passages (full-text search)

Revision ID: 0003
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# Frozen copy of tools.corpus.tables.PASSAGE_TSV: a migration must not change when the code does.
PASSAGE_TSV = (
    "setweight(to_tsvector('english'::regconfig, heading), 'A'::\"char\") || "
    "setweight(to_tsvector('english'::regconfig, "
    "regexp_replace(text, '([[:alpha:]_][[:alnum:]_]*)\\.(?=[[:alpha:]_])'::text, '\\1 '::text, 'g'::text)), "
    "'B'::\"char\")"
)


def upgrade() -> None:
    op.create_table(
        "corpora",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("kind IN ('stdlib', 'files')", name="corpora_kind_valid"),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "corpus_docs",
        sa.Column("corpus", sa.Text(), nullable=False),
        sa.Column("doc_id", sa.Text(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("signature", sa.Text(), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("boost", sa.Float(), server_default="1", nullable=False),
        sa.ForeignKeyConstraint(["corpus"], ["corpora.name"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("corpus", "doc_id", name="corpus_docs_pkey"),
    )
    op.create_table(
        "corpus_passages",
        sa.Column("corpus", sa.Text(), nullable=False),
        sa.Column("doc_id", sa.Text(), nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("heading", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("tsv", postgresql.TSVECTOR(), sa.Computed(PASSAGE_TSV, persisted=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["corpus", "doc_id"], ["corpus_docs.corpus", "corpus_docs.doc_id"], ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("corpus", "doc_id", "ordinal", name="corpus_passages_pkey"),
    )
    op.create_index("corpus_passages_tsv_idx", "corpus_passages", ["tsv"], unique=False, postgresql_using="gin")


def downgrade() -> None:
    op.drop_index("corpus_passages_tsv_idx", table_name="corpus_passages", postgresql_using="gin")
    op.drop_table("corpus_passages")
    op.drop_table("corpus_docs")
    op.drop_table("corpora")

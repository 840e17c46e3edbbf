"""Alembic's migrations produce exactly the schema the code declares."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from workers.schema import metadata


def test_migrated_schema_matches_metadata(database_url):
    engine = create_engine(database_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    engine.dispose()
    assert diff == [], f"migrations and tables differ: {diff}"

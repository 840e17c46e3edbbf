"""Alembic's migrations produce exactly the schema the code declares."""

import warnings

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from workers.schema import metadata


def test_migrated_schema_matches_metadata(database_url):
    """Every table module (``workers.schema`` imports them all) against ``alembic upgrade head``:
    tables, columns and their types, nullability, server defaults, keys, indexes, named CHECK
    constraints, and generated-column expressions (``PASSAGE_TSV``, the notes' and summaries' tsv)."""
    engine = create_engine(database_url)
    with engine.connect() as conn, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        context = MigrationContext.configure(
            conn,
            opts={
                "compare_type": True,
                "compare_server_default": True,
                "autogenerate_plugins": ["alembic.autogenerate.*", "alembic.ext.checkconstraint_byname"],
            },
        )
        diff = compare_metadata(context, metadata)
    engine.dispose()
    assert diff == [], f"migrations and tables differ: {diff}"
    # Alembic cannot alter a generated column, so a differing expression is only a warning
    # ("Computed default on corpus_passages.tsv cannot be modified"); so is anything it could not compare.
    unchecked = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert unchecked == [], f"migrations and tables differ: {unchecked}"

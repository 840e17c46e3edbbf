"""The whole schema: every package's tables on one MetaData, as Alembic must reproduce it."""

from checkpoint.tables import metadata

__all__ = ["metadata"]

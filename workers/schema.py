"""The whole schema: every package's tables on one MetaData, as Alembic must reproduce it."""

import tools.builtin.research_tables  # noqa: F401  (registers its tables)
import tools.corpus.tables  # noqa: F401
import tools.ledger_table  # noqa: F401
from checkpoint.tables import metadata

__all__ = ["metadata"]

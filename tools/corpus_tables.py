"""The research corpus's tables (filled in by the corpus work)."""

from checkpoint.tables import metadata  # noqa: F401

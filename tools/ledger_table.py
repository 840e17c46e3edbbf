"""The tool ledger's table (filled in by the tool-runtime work)."""

from checkpoint.tables import metadata  # noqa: F401

"""Exceptions of a run's history tiers (context, hot cache, summaries, recall, archive): one subtree."""

from __future__ import annotations


class HistoryError(Exception):
    """Any failure reading, condensing, searching or archiving a run's history."""


class HistoryInputError(HistoryError, ValueError):
    """A caller passed a value the history functions cannot use (the message names the parameter)."""


class NoHistory(HistoryError, LookupError):
    """A run has no events to build a context from: it does not exist, or its history is archived."""


class ArchiveError(HistoryError):
    """Archiving a run's events failed (the store refused, or the archive does not match the run)."""


class RunNotFinished(ArchiveError, ValueError):
    """Only a run in a terminal status (succeeded, failed, cancelled) may be archived."""

"""The research corpus's exceptions: one subtree under :class:`CorpusError`, itself under steplog's
error root :class:`checkpoint.errors.SteplogError`."""

from __future__ import annotations

from checkpoint.errors import SteplogError, StorageError


class CorpusError(SteplogError):
    """Anything the research corpus refuses or fails to do."""


class UnknownCorpus(CorpusError, LookupError):
    """No corpus of this name has been built or added to."""

    def __init__(self, name: str, known: list[str] | None = None) -> None:
        self.name = name
        hint = f" (known: {', '.join(known)})" if known else " (none built yet: build_stdlib or add_files)"
        super().__init__(f"unknown corpus {name!r}{hint}")


class DocumentNotFound(CorpusError, LookupError):
    """The corpus has no document, or no passage, with this id."""


class UnsupportedFile(CorpusError, ValueError):
    """A file add_files cannot read: an unknown extension, not UTF-8, or missing."""

    exit_code = 2


class CorpusKindMismatch(CorpusError, ValueError):
    """An operation meant for one kind of corpus (stdlib, files) was asked of the other."""

    exit_code = 2


class CorpusBuildError(CorpusError):
    """The standard-library documentation could not be gathered at all."""


class CorpusStorageError(CorpusError, StorageError):
    """Postgres failed while reading or writing the corpus."""

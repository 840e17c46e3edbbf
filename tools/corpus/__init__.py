"""The research corpus: the standard library's documentation (or the user's files), searched with
Postgres full-text search.

    build_stdlib(engine)                       # once per database; rebuilding replaces it atomically
    add_files(engine, ["notes/"], corpus="notes")
    search(engine, "how to read a CSV file")   # ranked passages, best first
    get_passage(engine, "stdlib", "csv", 0); get_document(engine, "stdlib", "csv.DictReader")

A standard-library document id is the qualified name of what it documents (``csv.DictReader``,
``subprocess.run``, ``os.path.join``); a file's is its path relative to the root it was added from.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from os import PathLike
from typing import Any

from sqlalchemy import Engine

from tools.corpus import build, files, store
from tools.corpus.errors import (
    CorpusBuildError,
    CorpusError,
    CorpusKindMismatch,
    CorpusStorageError,
    DocumentNotFound,
    UnknownCorpus,
    UnsupportedFile,
)
from tools.corpus.store import BuildStats, corpora, corpus_exists, get_document, get_passage
from tools.corpus.text import extract_sentences, query_groups, query_terms, split_sentences

__all__ = [
    "BuildStats",
    "CorpusBuildError",
    "CorpusError",
    "CorpusKindMismatch",
    "CorpusStorageError",
    "DocumentNotFound",
    "UnknownCorpus",
    "UnsupportedFile",
    "add_files",
    "build_stdlib",
    "corpora",
    "corpus_exists",
    "extract_sentences",
    "get_document",
    "get_passage",
    "query_terms",
    "search",
    "split_sentences",
]

STDLIB = "stdlib"
MAX_LIMIT = 100


def build_stdlib(engine: Engine, *, name: str = STDLIB, processes: int | None = None) -> BuildStats:
    """Build (or rebuild) corpus ``name`` from the docstrings of the public standard library.

    Modules are imported in isolated child processes (``processes`` of them, default: the CPU
    count, at most 4); one that fails to import is listed in ``BuildStats.failed`` and skipped.
    The corpus is replaced in one transaction, so a rebuild is idempotent and readers never see
    half of it. Raises :class:`CorpusBuildError` if nothing could be gathered,
    :class:`CorpusKindMismatch` if ``name`` is a corpus of added files.
    """
    started = time.monotonic()
    modules = build.stdlib_modules()
    records, failed = build.harvest(modules, processes=processes)
    docs = build.documents(records)
    if not docs:
        raise CorpusBuildError(f"no documentation gathered from {len(modules)} modules: {dict(list(failed.items())[:5])}")
    passages = store.replace_corpus(engine, name, "stdlib", docs)
    return BuildStats(
        corpus=name,
        documents=len(docs),
        passages=passages,
        total_documents=len(docs),
        total_passages=passages,
        modules=len(modules) - len(failed),
        seconds=round(time.monotonic() - started, 3),
        failed=failed,
    )


def add_files(
    engine: Engine,
    paths: Iterable[str | PathLike[str]],
    *,
    corpus: str,
    root: str | PathLike[str] | None = None,
) -> BuildStats:
    """Add Markdown (``.md``), text (``.txt``) or HTML (``.html``) files to corpus ``corpus``.

    A path may be a file or a directory (its supported files, recursively). A document's id is its
    path relative to ``root`` when given (else relative to the directory named, or the file's own
    name); adding a file again replaces its document. Raises :class:`UnsupportedFile` for a missing
    file, an unknown extension or a file that is not UTF-8, before anything is written, and
    :class:`CorpusKindMismatch` when ``corpus`` is the standard-library corpus.
    """
    if not corpus or not corpus.strip():
        raise ValueError("corpus name must not be empty")
    started = time.monotonic()
    docs = files.read_documents(paths, root=root)
    passages = store.upsert_documents(engine, corpus, "files", docs)
    total_docs, total_passages = store.corpus_counts(engine, corpus)
    return BuildStats(
        corpus=corpus,
        documents=len(docs),
        passages=passages,
        total_documents=total_docs,
        total_passages=total_passages,
        modules=len(docs),
        seconds=round(time.monotonic() - started, 3),
        failed={},
    )


def _tsquery(groups: list[list[str]], op: str) -> str:
    # Terms are alphanumerics and hyphens only (query_groups), so this cannot inject tsquery syntax.
    parts = [f"({' | '.join(g)})" if len(g) > 1 else g[0] for g in groups]
    return f" {op} ".join(parts)


def search(
    engine: Engine, query: str, *, corpus: str = STDLIB, limit: int = 5, per_doc: int = 1
) -> list[dict[str, Any]]:
    """The passages of ``corpus`` that best match ``query``, best first.

    Each result is ``{"doc_id", "title", "passage", "rank", "corpus", "ordinal"}`` plus ``"kind"``
    (module, class, function, method, ..., file), ``"source"`` (its module or file) and
    ``"all_terms"`` (whether it holds every query term). Passages holding every content word of
    the question come first; when fewer than ``limit`` do, passages holding some of them follow,
    ranked by ``ts_rank`` (title words weigh most) times a boost for module overviews and short
    names. At most ``per_doc`` passages come from one document. A question of stop words only
    finds nothing. Raises :class:`UnknownCorpus` naming an unknown ``corpus``.
    """
    if not isinstance(query, str) or not query.strip():
        raise ValueError("search query must be a non-empty string")
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    if per_doc < 1:
        raise ValueError(f"per_doc must be at least 1, got {per_doc}")
    groups = query_groups(query)
    if not groups:
        if not corpus_exists(engine, corpus):
            raise UnknownCorpus(corpus, corpora(engine))
        return []
    return store.search_passages(
        engine,
        corpus,
        all_query=_tsquery(groups, "&"),
        any_query=_tsquery(groups, "|"),
        limit=limit,
        per_doc=per_doc,
    )

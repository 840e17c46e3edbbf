"""The research corpus in Postgres: write documents with their passages, read and search them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, TextClause

from checkpoint.db import storage_errors
from checkpoint.queries import load
from tools.corpus.errors import (
    CorpusKindMismatch,
    CorpusStorageError,
    DocumentNotFound,
    UnknownCorpus,
)
from tools.corpus.tables import corpus_docs, corpus_passages
from tools.corpus.text import split_passages

# Rows per INSERT statement: big enough to amortise round trips, small enough for one message.
_BATCH = 2000


def _q() -> dict[str, TextClause]:
    return load(Path(__file__).with_name("queries.sql"))


@dataclass(frozen=True)
class BuildStats:
    """What a build or an addition did: documents and passages written, and how long it took.

    ``documents``/``passages`` count what this call wrote; ``total_documents``/``total_passages``
    the corpus afterwards. ``modules`` are the modules (or files) read; ``failed`` maps each one that
    could not be read to why.
    """

    corpus: str
    documents: int
    passages: int
    total_documents: int
    total_passages: int
    modules: int
    seconds: float
    failed: dict[str, str]


@dataclass(frozen=True)
class Document:
    """One document of a corpus, before it is split into passages."""

    doc_id: str
    title: str
    kind: str
    source: str
    body: str
    heading: str  # the title's words, indexed with weight A on every passage
    signature: str | None = None
    boost: float = 1.0

    def passages(self) -> list[str]:
        """The passages of this document; the first one starts with its call signature, if any."""
        lead = f"{self.doc_id}{self.signature}" if self.signature else ""
        parts = split_passages(f"{lead}\n\n{self.body}" if lead else self.body)
        return parts or [self.title]


#: Postgres errors inside become a CorpusStorageError saying what the corpus was doing.
_storage = partial(storage_errors, CorpusStorageError)


def _claim(conn: Connection, name: str, kind: str) -> None:
    existing = conn.execute(_q()["claim_corpus"], {"name": name, "kind": kind}).scalar_one()
    if existing != kind:
        raise CorpusKindMismatch(f"corpus {name!r} holds {existing} documents, not {kind}")


def _insert(conn: Connection, corpus: str, docs: Sequence[Document]) -> int:
    """Insert documents and their passages; returns the number of passages."""
    doc_rows: list[dict[str, Any]] = []
    passage_rows: list[dict[str, Any]] = []
    for d in docs:
        doc_rows.append(
            {
                "corpus": corpus,
                "doc_id": d.doc_id,
                "title": d.title,
                "kind": d.kind,
                "source": d.source,
                "signature": d.signature,
                "body": d.body,
                "boost": d.boost,
            }
        )
        for ordinal, text in enumerate(d.passages()):
            passage_rows.append(
                {"corpus": corpus, "doc_id": d.doc_id, "ordinal": ordinal, "heading": d.heading, "text": text}
            )
    for start in range(0, len(doc_rows), _BATCH):
        conn.execute(corpus_docs.insert(), doc_rows[start : start + _BATCH])
    for start in range(0, len(passage_rows), _BATCH):
        conn.execute(corpus_passages.insert(), passage_rows[start : start + _BATCH])
    return len(passage_rows)


def replace_corpus(engine: Engine, name: str, kind: str, docs: Sequence[Document]) -> int:
    """Make ``docs`` the whole content of corpus ``name``, in one transaction; returns passages written.

    Readers see the old corpus until the commit, then the new one; a failed rebuild changes nothing.
    """
    _check_unique(docs)
    with _storage(f"rebuilding corpus {name!r}"), engine.begin() as conn:
        _claim(conn, name, kind)
        conn.execute(_q()["clear_corpus"], {"name": name})
        return _insert(conn, name, docs)


def upsert_documents(engine: Engine, name: str, kind: str, docs: Sequence[Document]) -> int:
    """Add ``docs`` to corpus ``name`` (created if new), replacing documents with the same ids."""
    _check_unique(docs)
    with _storage(f"adding to corpus {name!r}"), engine.begin() as conn:
        _claim(conn, name, kind)
        for d in docs:
            conn.execute(_q()["delete_doc"], {"corpus": name, "doc_id": d.doc_id})
        return _insert(conn, name, docs)


def _check_unique(docs: Sequence[Document]) -> None:
    seen: set[str] = set()
    for d in docs:
        if d.doc_id in seen:
            raise ValueError(f"two documents share the id {d.doc_id!r}")
        seen.add(d.doc_id)


def corpora(engine: Engine) -> list[str]:
    """The names of all corpora, sorted."""
    with _storage("listing corpora"), engine.connect() as conn:
        return list(conn.execute(_q()["corpora"]).scalars())


def corpus_exists(engine: Engine, name: str) -> bool:
    """Whether a corpus of this name has been built or added to."""
    with _storage("looking up a corpus"), engine.connect() as conn:
        return bool(conn.execute(_q()["corpus_exists"], {"name": name}).scalar_one())


def corpus_counts(engine: Engine, name: str) -> tuple[int, int]:
    """(documents, passages) of a corpus; raises :class:`UnknownCorpus` for a name never built."""
    with _storage("counting a corpus"), engine.connect() as conn:
        _require(conn, name)
        row = conn.execute(_q()["corpus_counts"], {"name": name}).one()
        return int(row.documents), int(row.passages)


def _require(conn: Connection, name: str) -> None:
    if not conn.execute(_q()["corpus_exists"], {"name": name}).scalar_one():
        raise UnknownCorpus(name, list(conn.execute(_q()["corpora"]).scalars()))


def search_passages(
    engine: Engine, corpus: str, *, all_query: str, any_query: str, limit: int, per_doc: int
) -> list[dict[str, Any]]:
    """Ranked passages for prepared ``to_tsquery`` expressions (see :func:`tools.corpus.search`)."""
    params = {"corpus": corpus, "all_query": all_query, "any_query": any_query, "limit": limit, "per_doc": per_doc}
    with _storage(f"searching corpus {corpus!r}"), engine.connect() as conn:
        _require(conn, corpus)
        rows = conn.execute(_q()["search"], params).mappings().all()
    return [
        {
            "doc_id": r["doc_id"],
            "title": r["title"],
            "passage": r["passage"],
            "rank": float(r["rank"]),
            "corpus": corpus,
            "ordinal": r["ordinal"],
            "kind": r["kind"],
            "source": r["source"],
            "all_terms": r["all_terms"],
        }
        for r in rows
    ]


def get_passage(engine: Engine, corpus: str, doc_id: str, ordinal: int) -> dict[str, Any]:
    """One passage: ``{"doc_id", "title", "passage", "ordinal", "corpus", "kind", "source"}``.

    Raises :class:`UnknownCorpus` or :class:`DocumentNotFound` naming what is missing.
    """
    with _storage(f"reading corpus {corpus!r}"), engine.connect() as conn:
        _require(conn, corpus)
        row = conn.execute(_q()["get_passage"], {"corpus": corpus, "doc_id": doc_id, "ordinal": ordinal}).mappings().first()
    if row is None:
        raise DocumentNotFound(f"corpus {corpus!r} has no passage {ordinal} of document {doc_id!r}")
    return {**row, "corpus": corpus}


def get_document(engine: Engine, corpus: str, doc_id: str) -> dict[str, Any]:
    """One whole document: ``{"doc_id", "title", "kind", "source", "signature", "body", "passages",
    "corpus"}`` (``passages`` is their count; fetch one with :func:`get_passage`)."""
    with _storage(f"reading corpus {corpus!r}"), engine.connect() as conn:
        _require(conn, corpus)
        row = conn.execute(_q()["get_document"], {"corpus": corpus, "doc_id": doc_id}).mappings().first()
    if row is None:
        raise DocumentNotFound(f"corpus {corpus!r} has no document {doc_id!r}")
    return {**row, "corpus": corpus}

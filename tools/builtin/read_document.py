"""read_document (read): one document of the research corpus, passage by passage, with ordinals."""

from __future__ import annotations

from pydantic import BaseModel, Field

from tools.declaration import Effect, ToolContext, tool
from tools.errors import ToolInputError, TransientToolError


class ReadInput(BaseModel):
    corpus: str = Field("stdlib", min_length=1, description="Which corpus the document is in.")
    doc_id: str = Field(min_length=1, max_length=1000, description="The document's id, as search_corpus returns it.")
    max_passages: int = Field(20, ge=1, le=100, description="Most passages to return, from the first.")


class DocumentPassage(BaseModel):
    doc_id: str
    title: str
    ordinal: int = Field(description="The passage's position in the document; cite it with the doc id.")
    text: str


class ReadOutput(BaseModel):
    corpus: str
    doc_id: str
    title: str
    kind: str | None = None
    source: str | None = Field(None, description="The module (or file) the document belongs to.")
    passages: list[DocumentPassage]
    total_passages: int
    truncated: bool = Field(description="True when the document has more passages than max_passages.")


@tool("read_document", "1", Effect.READ)
def read_document(ctx: ToolContext, args: ReadInput) -> ReadOutput:
    """Read a corpus document: its passages in order, each with the ordinal that cites it."""
    # Imported on use, like search_corpus: the other tools work without the corpus module.
    from tools import corpus
    from tools.corpus.errors import CorpusStorageError, DocumentNotFound, UnknownCorpus

    try:
        doc = corpus.get_document(ctx.engine, args.corpus, args.doc_id)
        total = int(doc["passages"])
        passages = [
            corpus.get_passage(ctx.engine, args.corpus, args.doc_id, ordinal)
            for ordinal in range(min(total, args.max_passages))
        ]
    except UnknownCorpus as exc:
        raise ToolInputError("corpus", str(exc)) from exc
    except DocumentNotFound as exc:
        # Also a document replaced (by a rebuild) between reading its count and its passages.
        raise ToolInputError("doc_id", str(exc)) from exc
    except CorpusStorageError as exc:
        raise TransientToolError(f"reading document {args.doc_id!r} failed: {exc}", maybe_applied=False) from exc
    return ReadOutput(
        corpus=args.corpus,
        doc_id=doc["doc_id"],
        title=doc["title"],
        kind=doc["kind"],
        source=doc["source"],
        passages=[
            DocumentPassage(doc_id=p["doc_id"], title=p["title"], ordinal=p["ordinal"], text=p["passage"])
            for p in passages
        ],
        total_passages=total,
        truncated=total > args.max_passages,
    )

"""search_corpus (read): full-text search of the research corpus."""

from __future__ import annotations

from pydantic import BaseModel, Field

from tools.declaration import Effect, ToolContext, tool
from tools.errors import ToolInputError, TransientToolError


class SearchInput(BaseModel):
    query: str = Field(min_length=1, max_length=500, description="What to look for.")
    corpus: str = Field("stdlib", min_length=1, description="Which corpus to search.")
    limit: int = Field(5, ge=1, le=50, description="Most passages to return.")


class Passage(BaseModel):
    doc_id: str
    title: str
    passage: str
    rank: float
    corpus: str
    kind: str | None = None
    source: str | None = None


class SearchOutput(BaseModel):
    results: list[Passage]


@tool("search_corpus", "1", Effect.READ)
def search_corpus(ctx: ToolContext, args: SearchInput) -> SearchOutput:
    """Search the research corpus; returns the best passages with their document ids and titles."""
    # Imported on use: the other tools work without the corpus module.
    from tools import corpus
    from tools.corpus.errors import CorpusStorageError, UnknownCorpus

    try:
        hits = corpus.search(ctx.engine, args.query, corpus=args.corpus, limit=args.limit)
    except UnknownCorpus as exc:
        raise ToolInputError("corpus", str(exc)) from exc
    except CorpusStorageError as exc:
        raise TransientToolError(f"corpus search failed: {exc}", maybe_applied=False) from exc
    except ValueError as exc:
        raise ToolInputError("query", str(exc)) from exc
    return SearchOutput(results=[Passage.model_validate(h) for h in hits])

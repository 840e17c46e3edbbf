"""The offline reasoner: deterministic extractive research over the corpus, no model, no network.

For each sub-query of the question (the question itself, its phrases, its content words) it
searches the corpus, reads the best documents, saves the sentences that answer the question as a
note citing their passage; then, while the budget allows, reads the modules most sub-queries' result
lists agree on that none of them took; and finally composes the report from the notes. Every decision is
recomputed from the context alone: the plan is replayed over the observations and notes so far and
the first step not yet done is the next one. The same context gives the same decision.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tasks.reasoning.base import Decision, FinalReport, Observation, ResearchContext, ToolCall
from tasks.reasoning.citations import PassageRef, parse_citation
from tasks.reasoning.extract import Extract, best_extract, covered_terms, module_of, topic_terms
from tasks.reasoning.report import compose
from tasks.reasoning.subqueries import MAX_SUBQUERIES, subqueries
from tools.corpus import query_terms

SEARCH_LIMIT = 8
# Documents to take notes from per sub-query: the whole question gets several modules to compare,
# a part of it one more document about that part.
DOCS_FOR_QUESTION = 3
DOCS_PER_SUBQUERY = 1
# Documents read without finding an answer before a sub-query moves on.
MAX_MISSES = 2
# A tool call costs two steps (the tool step and the next reasoning step), the report one: at
# this many steps left, report instead of calling another tool.
WRAP_UP_AT = 3
MAX_PASSAGES = 20
# Sources (modules) per search that count towards retrieval consensus.
VOTING_SOURCES = 3
# Modules, by consensus over all sub-queries' results, read after the sub-queries if none took them.
CONSENSUS_READS = 2


@dataclass
class _Seen:
    """What the context shows was done already."""

    searches: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # query -> results ([] if failed)
    reads: dict[str, dict[str, Any] | None] = field(default_factory=dict)  # doc id -> document (None if failed)
    notes: list[tuple[PassageRef, str]] = field(default_factory=list)  # (passage, text), oldest first
    note_tried: list[str] = field(default_factory=list)  # doc ids of save_note calls that failed

    @property
    def noted_docs(self) -> list[str]:
        return [ref.doc_id for ref, _ in self.notes]


def _unread(seen: _Seen, hits: list[dict[str, Any]], *, after: dict[str, Any], taken: list[str], modules: list[str],
            need: int) -> list[str]:
    """The next ``need`` documents after ``after`` in a sub-query's results that its plan will read
    (not taken by an earlier sub-query, not read, of modules not yet covered), in rank order."""
    found: list[str] = []
    modules = list(modules)
    for hit in hits[hits.index(after) + 1:]:
        if need <= 0:
            break
        doc_id = hit["doc_id"]
        module = module_of(doc_id, hit.get("source"))
        if doc_id in taken or module in modules:
            continue
        modules.append(module)
        need -= 1
        if doc_id not in seen.reads and doc_id not in seen.noted_docs:
            found.append(doc_id)
    return found


def _observe(context: ResearchContext) -> _Seen:
    seen = _Seen()
    for raw in context.notes:
        text = raw.get("text") if isinstance(raw, dict) else None
        for c in (raw.get("citations") or []) if isinstance(raw, dict) else []:
            ref = parse_citation(c, context.corpus)
            if isinstance(text, str) and ref is not None and ref.corpus == context.corpus:
                seen.notes.append((ref, text))
    for obs in context.observations:
        _observe_one(seen, obs, context.corpus)
    return seen


def _observe_one(seen: _Seen, obs: Observation, corpus: str) -> None:
    args = obs.call.args or {}
    result = obs.result if isinstance(obs.result, dict) else {}
    if obs.call.tool == "search_corpus" and args.get("corpus", corpus) == corpus:
        seen.searches[str(args.get("query"))] = list(result.get("results") or []) if obs.ok else []
    elif obs.call.tool == "read_document" and args.get("corpus", corpus) == corpus:
        seen.reads[str(args.get("doc_id"))] = result if obs.ok and result.get("passages") is not None else None
    elif obs.call.tool == "save_note":
        # A note the context's note list does not show yet (or whose save failed) still counts as done.
        refs = [parse_citation(c, corpus) for c in args.get("citations") or []]
        for ref in refs:
            if ref is None or ref.corpus != corpus:
                continue
            if obs.ok and all(ref != r for r, _ in seen.notes):
                seen.notes.append((ref, str(args.get("text", ""))))
            elif not obs.ok:
                seen.note_tried.append(ref.doc_id)


def _votes(seen: _Seen, queries: list[str]) -> dict[str, float]:
    """Each module's reciprocal rank among the first sources of every sub-query's results, summed."""
    votes: dict[str, float] = {}
    for q in queries:
        sources: list[str] = []
        for r in seen.searches.get(q, []):
            m = module_of(r["doc_id"], r.get("source"))
            if m not in sources:
                sources.append(m)
        for rank, m in enumerate(sources[:VOTING_SOURCES], 1):
            votes[m] = votes.get(m, 0.0) + 1.0 / rank
    return votes


def _consensus(seen: _Seen, queries: list[str]) -> list[tuple[str, str]]:
    """Modules by their reciprocal rank among the sources of each sub-query's whole result list,
    summed, best first, each with its best-ranked document (first sub-query first): (module, doc id)."""
    score: dict[str, float] = {}
    best: dict[str, str] = {}
    for q in queries:
        sources: list[str] = []
        for r in seen.searches.get(q, []):
            m = module_of(r["doc_id"], r.get("source"))
            best.setdefault(m, r["doc_id"])
            if m not in sources:
                sources.append(m)
        for rank, m in enumerate(sources, 1):
            score[m] = score.get(m, 0.0) + 1.0 / rank
    order = sorted(score, key=lambda m: (-round(score[m], 6), m))
    return [(m, best[m]) for m in order]


def _topics(seen: _Seen, terms: list[str], extracts: list[Extract]) -> dict[str, int]:
    """Per module of ``extracts``: the question terms its own name and summary line hold (its module
    document's, if read), plus those the name and summary line of its best quoted document hold."""
    topics: dict[str, int] = {}
    for e in extracts:
        if e.module in topics:
            continue
        own = topic_terms(e.module, seen.reads.get(e.module), terms)
        quoted = max(
            (len(topic_terms(x.ref.doc_id, seen.reads.get(x.ref.doc_id), terms)) for x in extracts if x.module == e.module),
            default=0,
        )
        topics[e.module] = len(own) + quoted
    return topics


class OfflineReasoner:
    """Extractive research without a model: search, read, note, report (see the module docstring).

    ``search_limit`` is the number of results asked of each search, ``wrap_up_at`` the steps left
    at which it reports instead of calling another tool, ``max_subqueries`` the searches per
    question (at most).
    """

    name = "offline"

    def __init__(
        self, *, search_limit: int = SEARCH_LIMIT, wrap_up_at: int = WRAP_UP_AT, max_subqueries: int = MAX_SUBQUERIES
    ) -> None:
        if not 1 <= search_limit <= 50:
            raise ValueError(f"search_limit must be between 1 and 50, got {search_limit}")
        if wrap_up_at < 1:
            raise ValueError(f"wrap_up_at must be at least 1 (the report itself is a step), got {wrap_up_at}")
        if max_subqueries < 1:
            raise ValueError(f"max_subqueries must be at least 1, got {max_subqueries}")
        self.search_limit = search_limit
        self.wrap_up_at = wrap_up_at
        self.max_subqueries = max_subqueries

    def decide(self, context: ResearchContext) -> Decision:
        """The next action for ``context``: a tool call, or the report when done or out of steps."""
        terms = query_terms(context.question) if isinstance(context.question, str) else []
        if not terms:
            return self._report(context, [], _Seen(), [], truncated=False,
                                why="the question has no words to search for")
        queries = subqueries(context.question, limit=self.max_subqueries)
        seen = _observe(context)
        if context.corrections > 0:
            # This reasoner's calls are valid by construction; a refusal means the workflow lacks a
            # tool it needs, and asking again would be refused again.
            return self._report(context, terms, seen, queries, truncated=True,
                                why=f"a tool call was refused: {context.last_error or 'unknown reason'}")
        call = self._next_call(context, terms, queries, seen)
        if call is None:
            return self._report(context, terms, seen, queries, truncated=False)
        if context.steps_left <= self.wrap_up_at:
            return self._report(context, terms, seen, queries, truncated=True,
                                why=f"{context.steps_used} of {context.max_steps} steps used")
        if isinstance(call, tuple):
            return Decision(call, record={"reasoner": self.name, "tool": call[0].tool,
                                          "thought": "; ".join(c.thought for c in call)})
        return Decision(call, record={"reasoner": self.name, "tool": call.tool, "thought": call.thought})

    # -- the plan, replayed over what was done ------------------------------------------------------

    def _next_call(
        self, context: ResearchContext, terms: list[str], queries: list[str], seen: _Seen
    ) -> ToolCall | tuple[ToolCall, ...] | None:
        corpus = context.corpus
        claimed: list[str] = []  # documents earlier sub-queries took, in this replay
        for i, query in enumerate(queries):
            label = f"sub-query {i + 1}/{len(queries)} {query!r}"
            if query not in seen.searches:
                if any(q in seen.searches for q in queries[i + 1 :]):
                    continue  # searched long ago: its observation was folded into the summary
                return ToolCall("search_corpus", {"query": query, "corpus": corpus, "limit": self.search_limit},
                                thought=f"search {label}")
            wanted = DOCS_FOR_QUESTION if i == 0 else DOCS_PER_SUBQUERY
            focus = query_terms(query)
            got: list[str] = []  # modules noted for this sub-query: one document each
            misses = 0
            for hit in seen.searches[query]:
                if len(got) >= wanted or misses >= MAX_MISSES:
                    break
                doc_id = hit["doc_id"]
                module = module_of(doc_id, hit.get("source"))
                if doc_id in claimed or module in got:
                    continue
                claimed.append(doc_id)
                if doc_id in seen.noted_docs:
                    got.append(module)
                    continue
                if doc_id not in seen.reads:
                    # Every document this sub-query still needs is read at once (in parallel, as one
                    # fan-out); each is then noted in turn, as if read one by one. The budget is charged
                    # as for reads one by one (a read and its note: 4 steps), so only as many are read
                    # as one-by-one reading would have reached: the report is the same.
                    room = (context.steps_left - self.wrap_up_at - 1) // 4
                    batch = [doc_id] + _unread(seen, seen.searches[query], after=hit, taken=claimed,
                                               modules=[*got, module], need=min(wanted - len(got) - 1, room))
                    calls = tuple(ToolCall("read_document", {"corpus": corpus, "doc_id": d, "max_passages": MAX_PASSAGES},
                                           thought=f"read {d} for {label}") for d in batch)
                    return calls[0] if len(calls) == 1 else calls
                document = seen.reads[doc_id]
                extract = best_extract(document, terms, focus) if document else None
                if extract is None or doc_id in seen.note_tried:
                    misses += extract is None
                    got += [module] if extract is not None else []
                    continue
                return ToolCall("save_note", {"text": extract.quote, "citations": [extract.ref.as_string()]},
                                thought=f"note {doc_id} (matches {', '.join(extract.covered)}) for {label}")
        return self._consensus_call(context, terms, queries, seen, claimed)

    def _consensus_call(
        self, context: ResearchContext, terms: list[str], queries: list[str], seen: _Seen, claimed: list[str]
    ) -> ToolCall | None:
        """Once every sub-query is done: the modules that most sub-queries' whole result lists agree on
        (``CONSENSUS_READS`` of them) but whose documents no sub-query took get their best-ranked
        document read and noted too, so a module found often, if never first, can still be cited.
        An extra, not part of the plan: a document is only read while the budget leaves room to note
        it and still report (the report is never cut short for it)."""
        corpus = context.corpus
        taken = {module_of(d, (seen.reads.get(d) or {}).get("source")) for d in claimed}
        fresh = [(m, d) for m, d in _consensus(seen, queries) if m not in taken]
        for module, doc_id in fresh[:CONSENSUS_READS]:
            if doc_id in seen.noted_docs:
                continue
            if doc_id not in seen.reads:
                if context.steps_left <= self.wrap_up_at + 2:
                    return None
                return ToolCall("read_document", {"corpus": corpus, "doc_id": doc_id, "max_passages": MAX_PASSAGES},
                                thought=f"read {doc_id}: {module} is found by several sub-queries")
            document = seen.reads[doc_id]
            extract = best_extract(document, terms, terms) if document else None
            if extract is None or doc_id in seen.note_tried:
                continue
            return ToolCall("save_note", {"text": extract.quote, "citations": [extract.ref.as_string()]},
                            thought=f"note {doc_id} (matches {', '.join(extract.covered)}): found by several sub-queries")
        return None

    # -- the report ----------------------------------------------------------------------------------

    def _report(
        self, context: ResearchContext, terms: list[str], seen: _Seen, queries: list[str], *, truncated: bool,
        why: str = "",
    ) -> Decision:
        extracts = self._evidence(context, terms, seen, pending=truncated)
        report: FinalReport = compose(context.question, extracts, corpus=context.corpus,
                                      votes=_votes(seen, queries), topics=_topics(seen, terms, extracts),
                                      truncated=truncated, stop_reason=why)
        record = {"reasoner": self.name, "tool": None, "truncated": truncated, "sources": len(report.citations)}
        return Decision(report, record=record)

    @staticmethod
    def _evidence(context: ResearchContext, terms: list[str], seen: _Seen, *, pending: bool) -> list[Extract]:
        """The notes as extracts, oldest first; with ``pending``, also the answers read but not yet noted."""
        out: list[Extract] = []
        for ref, text in seen.notes:
            document = seen.reads.get(ref.doc_id) or {}
            out.append(Extract(ref, text, covered_terms(text, terms), module_of(ref.doc_id, document.get("source"))))
        if pending:
            for doc_id, document in seen.reads.items():
                if document and doc_id not in seen.noted_docs:
                    extract = best_extract(document, terms, terms)
                    if extract is not None:
                        out.append(extract)
        return out

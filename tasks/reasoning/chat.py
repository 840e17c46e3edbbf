"""The offline chat reasoner: answers each message of a session from the corpus, with no model.

One search per turn, then the answer. A follow-up ("and which exception tells me it expired?") is
read against the previous turn: its words and the module its answer led with join the search, and
documents of that module rank higher, so "it" resolves to what was being talked about. Results are
ranked on the document's name first (``subprocess.TimeoutExpired`` names "expired"), then its passage,
then the conversation's topic. Every decision is a function of the context alone.
"""

from __future__ import annotations

import re
from typing import Any

from tasks.reasoning.base import Decision, FinalReport, ResearchContext, ToolCall
from tasks.reasoning.extract import module_of
from tools.corpus import query_terms, split_sentences
from tools.corpus.text import identifier_words, stem

SEARCH_LIMIT = 20
# Words that point back at the conversation, and openings of a question that continues the last one.
_BACK_REFERENCES = frozenset("it its it's that this those these they them their one".split())
_CONTINUATIONS = ("and ", "also ", "what about", "how about", "then ", "so ")
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_']*")
_SIGNATURE = re.compile(r"^\s*[\w.]+\([^)]*\)\s*")  # `subprocess.run(*popenargs, ...)` opening a passage
SNIPPET = 320  # characters quoted from the lead passage
SEE_ALSO = 2


def _stems(text: str) -> set[str]:
    out: set[str] = set()
    for w in _WORD.findall(text):
        for piece in identifier_words(w):
            if len(piece) > 2:
                out.add(stem(piece))
    return out


def is_follow_up(question: str) -> bool:
    """Whether a question leans on the previous turn (a pronoun with nothing else to point at, or an
    opening like "and ...")."""
    q = question.strip().lower()
    words = {w.strip("'") for w in _WORD.findall(q)}
    return q.startswith(_CONTINUATIONS) or bool(words & _BACK_REFERENCES)


def topic(context: ResearchContext) -> tuple[list[str], str | None]:
    """What the conversation was about, for a follow-up: the previous question's content words and
    the module its answer led with (None when there is no previous turn)."""
    conversation = getattr(context, "conversation", ())
    if not conversation:
        return [], None
    last = conversation[-1]
    cites = last.get("citations") or []
    lead = module_of(cites[0]) if cites else None
    return query_terms(last.get("message", "")), lead


class OfflineChat:
    """Answers a session's messages from the corpus: search once, answer with the best passages."""

    name = "offline-chat"

    def __init__(self, *, corpus: str = "stdlib", search_limit: int = SEARCH_LIMIT) -> None:
        self.corpus, self.search_limit = corpus, search_limit

    def decide(self, context: ResearchContext) -> Decision:
        searched = [o for o in context.observations if o.call.tool == "search_corpus"]
        if not searched:
            return Decision(ToolCall("search_corpus", {"query": self.query(context), "corpus": self.corpus,
                                                       "limit": self.search_limit},
                                     thought="search the corpus for the message"),
                            record={"reasoner": self.name})
        last = searched[-1]
        results = list((last.result or {}).get("results") or []) if last.ok else []
        return Decision(self.answer(context, results), record={"reasoner": self.name})

    def query(self, context: ResearchContext) -> str:
        words = query_terms(context.question)
        if is_follow_up(context.question) or not words:
            previous, lead = topic(context)
            words += [w for w in previous if w not in words]
            if lead and lead not in words:
                words.append(lead)
        return " ".join(words) or context.question

    def rank(self, context: ResearchContext, results: list[dict[str, Any]]) -> list[tuple[float, dict[str, Any]]]:
        own = _stems(" ".join(query_terms(context.question)))
        previous, lead = topic(context) if is_follow_up(context.question) else ([], None)
        about = _stems(" ".join(previous)) - own
        scored: list[tuple[float, dict[str, Any]]] = []
        for r in results:
            name = _stems(r["doc_id"])
            text = _stems(str(r.get("passage", ""))[:600]) | name
            score = 3 * len(own & name) + 2 * len(own & text) + len(about & text)
            if lead and module_of(r["doc_id"], r.get("source")) == lead:
                score += 1.5
            scored.append((score + min(float(r.get("rank") or 0.0), 1.0) / 10, r))
        scored.sort(key=lambda sr: -sr[0])  # stable: the corpus's order breaks ties
        return scored

    def answer(self, context: ResearchContext, results: list[dict[str, Any]]) -> FinalReport:
        ranked = [r for score, r in self.rank(context, results) if score >= 1]
        if not ranked:
            return FinalReport(f"I found nothing in the `{self.corpus}` corpus about that. Could you say it "
                               "another way, naming the module or the task?")
        lead, seen = ranked[0], {ranked[0]["doc_id"]}
        others = []
        for r in ranked[1:]:
            if r["doc_id"] not in seen and len(others) < SEE_ALSO:
                seen.add(r["doc_id"])
                others.append(r)
        lines = []
        _, about = topic(context) if is_follow_up(context.question) else ([], None)
        if about:
            lines.append(f"(Following on from {about}.)")
        lines.append(f"**[{lead['doc_id']}]** answers this best: {_snippet(lead)}")
        if others:
            lines.append("See also: " + "; ".join(f"[{r['doc_id']}]: {_snippet(r, 160)}" for r in others))
        cites = [{"doc_id": r["doc_id"], "corpus": r.get("corpus", self.corpus)} for r in [lead, *others]]
        return FinalReport("\n\n".join(lines), citations=cites)


def _snippet(result: dict[str, Any], limit: int = SNIPPET) -> str:
    """The passage's first sentences past its signature line, up to ``limit`` characters."""
    sentences = split_sentences(_SIGNATURE.sub("", str(result.get("passage", "")), count=1))
    out = ""
    for s in sentences:
        if out and len(out) + len(s) > limit:
            break
        out = f"{out} {s}".strip()
    return out[:limit].rstrip() + ("…" if len(out) > limit else "")

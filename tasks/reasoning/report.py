"""The research report from extracted evidence: which module answers, why, and the quoted sources."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tasks.reasoning.base import FinalReport
from tasks.reasoning.extract import Extract, is_file_id, weight


# What a question word found in a module's name or summary line is worth, against one held by a
# quote: half. A quote holding more of the question's words still counts, but a loosely related
# quote no longer beats the module whose name and summary say it is about the question's subject.
TOPIC_WEIGHT = 0.5


@dataclass(frozen=True)
class ModuleEvidence:
    """The extracts of one module and how strongly they answer the question."""

    module: str
    extracts: tuple[Extract, ...]
    coverage: float  # most question terms one of its quotes holds, a generic word counting half
    votes: float  # retrieval consensus: reciprocal ranks over the sub-queries' searches
    first: int  # position of its first extract, the tie-breaker
    topic: float = 0  # question terms its name and summary line hold, weighed (see offline._topics)

    @property
    def score(self) -> float:
        return round(self.coverage + TOPIC_WEIGHT * self.topic, 6)  # rounded: float noise cannot reorder


def rank_modules(
    extracts: Sequence[Extract], votes: Mapping[str, float], topics: Mapping[str, float] | None = None
) -> list[ModuleEvidence]:
    """Modules best first: the quote holding most of the question plus, at half weight, the
    question words the module's name and summary line hold (``topics``); on a tie the quote holding
    more of the question, then search consensus, then the number of quotes, then the order they
    were found in."""
    grouped: dict[str, list[Extract]] = {}
    for e in extracts:
        grouped.setdefault(e.module, []).append(e)
    order = list(grouped)
    evidence = [
        ModuleEvidence(
            module=m,
            extracts=tuple(sorted(es, key=lambda e: -weight(e.covered))),  # stable: found order within ties
            coverage=max(weight(e.covered) for e in es),
            votes=round(votes.get(m, 0.0), 6),  # rounded so float noise cannot reorder
            first=order.index(m),
            topic=(topics or {}).get(m, 0),
        )
        for m, es in grouped.items()
    ]
    return sorted(evidence, key=lambda ev: (-ev.score, -ev.coverage, -ev.votes, -len(ev.extracts), ev.first))


def _cite(e: Extract) -> str:
    return f"[{e.ref.doc_id}]"


def _name(module: str) -> str:
    return f"`{module}`" if is_file_id(module) else f"The `{module}` module"


def _blockquote(text: str) -> str:
    return f"“{text}”"


def compose(
    question: str,
    extracts: Sequence[Extract],
    *,
    corpus: str,
    votes: Mapping[str, float] | None = None,
    topics: Mapping[str, float] | None = None,
    truncated: bool = False,
    stop_reason: str = "",
) -> FinalReport:
    """A Markdown report answering ``question`` from ``extracts``: the best module first, then the
    findings by module, then a Sources section quoting every passage used.

    ``votes`` and ``topics`` (per module) rank the modules, see :func:`rank_modules`.
    ``truncated`` marks a report cut short (``stop_reason`` says why). Citations are
    ``{doc_id, corpus, ordinal, passage, module}`` with ``passage`` the quoted sentences.
    """
    unique: list[Extract] = []
    for e in extracts:
        if all(e.ref != u.ref for u in unique):
            unique.append(e)
    ranked = rank_modules(unique, votes or {}, topics)
    lines = [f"# {question.strip()}", ""]
    if truncated:
        why = f" ({stop_reason})" if stop_reason else ""
        lines += [f"> **Stopped early**{why}: this is the best report from the evidence gathered so far.", ""]
    if not ranked:
        lines += [f"No passage of corpus `{corpus}` was found that answers this question."]
        return FinalReport(markdown="\n".join(lines) + "\n", citations=[], truncated=truncated)

    best = ranked[0]
    lead = best.extracts[0]
    lines += [
        f"**{_name(best.module)} answers this best** {_cite(lead)}: {_blockquote(lead.quote)}",
        "",
    ]
    if len(ranked) > 1:
        others = ", ".join(f"`{ev.module}`" for ev in ranked[1:])
        lines += [f"Also relevant: {others}.", ""]
    lines += ["## Findings", ""]
    for ev in ranked:
        terms = ", ".join(ev.extracts[0].covered)
        lines += [f"### `{ev.module}`", "", f"Matches: {terms}.", ""]
        lines += [f"- {_blockquote(e.quote)} {_cite(e)}" for e in ev.extracts]
        lines.append("")
    lines += ["## Sources", ""]
    ordered = [e for ev in ranked for e in ev.extracts]
    for n, e in enumerate(ordered, 1):
        lines.append(f"{n}. {_cite(e)} corpus `{e.ref.corpus}`, passage {e.ref.ordinal}: {_blockquote(e.quote)}")
    citations = [{**e.ref.as_dict(), "passage": e.quote, "module": e.module} for e in ordered]
    return FinalReport(markdown="\n".join(lines) + "\n", citations=citations, truncated=truncated)

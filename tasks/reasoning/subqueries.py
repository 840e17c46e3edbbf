"""Sub-queries of a research question: the whole question, its phrases, then its single subjects.

"how to run a subprocess with a timeout" -> ["how to run a subprocess with a timeout",
"run a subprocess", "timeout", "run"]: the whole question finds passages that answer all of it;
each phrase (the question cut at prepositions) and each content word finds the documents about one
part, which the whole question can rank below a document that merely mentions every word.
"""

from __future__ import annotations

import re

from tools.corpus import query_terms
from tools.corpus.text import QUESTION_NOISE, STOP_WORDS

MAX_SUBQUERIES = 4

# Words that join the parts of a how-to question: "compress a file | with gzip", "serialize objects |
# to JSON". Cutting there gives the action phrase and the thing it is done with.
_JOINERS = frozenset(
    "with without to into from in for of on using via by and or as at over through".split()
)
# A word as the corpus' query parser sees it: letters/digits, hyphenated forms kept whole (SHA-256).
_TOKEN = re.compile(r"[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*")


def _trim(tokens: list[str]) -> str:
    """A phrase without the articles and question words at its ends ("a timeout" -> "timeout")."""
    filler = STOP_WORDS | QUESTION_NOISE
    while tokens and tokens[0].lower() in filler:
        tokens = tokens[1:]
    while tokens and tokens[-1].lower() in filler:
        tokens = tokens[:-1]
    return " ".join(tokens)


def phrases(question: str) -> list[str]:
    """The question cut at joining words into phrases that hold at least one content word."""
    out: list[str] = []
    current: list[str] = []
    for token in _TOKEN.findall(question):
        if token.lower() in _JOINERS:
            out.append(_trim(current))
            current = []
        else:
            current.append(token)
    out.append(_trim(current))
    return [p for p in out if query_terms(p)]


def subqueries(question: str, *, limit: int = MAX_SUBQUERIES) -> list[str]:
    """Up to ``limit`` searches for ``question``: itself, then its phrases, then its content words.

    Each sub-query adds a different set of content terms (a phrase that says the same as the whole
    question is not searched twice). Deterministic; raises ``ValueError`` for a question without
    a single content word ("how do I do it?") or a ``limit`` below 1.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    if not isinstance(question, str) or not query_terms(question):
        raise ValueError(f"the question has no words to search for: {question!r}")
    candidates = [question.strip(), *phrases(question)]
    # A single word in the question's own spelling keeps "command-line" and "SHA-256" whole.
    candidates += [t for t in _TOKEN.findall(question) if query_terms(t)]
    out: list[str] = []
    seen: list[tuple[str, ...]] = []
    for candidate in candidates:
        key = tuple(sorted(query_terms(candidate)))
        if key and key not in seen:
            seen.append(key)
            out.append(candidate)
        if len(out) == limit:
            break
    return out

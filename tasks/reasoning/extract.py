"""Extractive evidence: the sentences of a read document that answer a question, as a quote.

A quote keeps the passage's own words: sentences that follow each other in the passage are joined
by a space, a gap between them is marked ``[...]``, so each piece between markers occurs verbatim
(whitespace collapsed) in the cited passage.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tasks.reasoning.citations import PassageRef
from tools.corpus import extract_sentences, split_sentences
from tools.corpus.text import is_generic, stem, term_weight, word_stems

GAP = " [...] "
MAX_SENTENCES = 3
# A "sentence" this long is a code listing or a table, not an answer worth quoting.
MAX_SENTENCE_CHARS = 600
MIN_SENTENCE_WORDS = 3


@dataclass(frozen=True)
class Extract:
    """Sentences quoted from one passage, with the question terms they hold."""

    ref: PassageRef
    quote: str
    covered: tuple[str, ...]  # the question's terms found in the quote, in question order
    module: str  # the module (or file) the document belongs to

    def pieces(self) -> list[str]:
        """The verbatim runs of the quote (split at the ``[...]`` gaps)."""
        return self.quote.split(GAP)


def covered_terms(text: str, terms: Sequence[str]) -> tuple[str, ...]:
    """The terms whose stem occurs in ``text`` (camel case split), as the corpus matches them."""
    return tuple(t for t in terms if extract_sentences(text, [t], limit=1))


# A question word's stem this long found inside a run-together name part counts as a name match
# ("pars" in argparse, "thread" in threading); shorter stems ("ip", "os") must be a whole part.
MIN_INNER_STEM = 4


def summary_line(document: dict[str, Any] | None) -> str:
    """The summary line of a read document (``read_document`` result): the first line of its
    docstring (PEP 257), after the call signature its first passage may start with; "" if none."""
    passages = (document or {}).get("passages") or []
    if not passages:
        return ""
    doc_id = str(document.get("doc_id", ""))
    for line in passages[0]["text"].splitlines():
        line = line.strip()
        if line and not (line.startswith(doc_id + "(") or line == doc_id):
            # A module without a docstring of its own starts with its synopsis' heading, no summary.
            return "" if line == f"What the {doc_id} module provides:" else line
    return ""


def name_terms(name: str, terms: Sequence[str]) -> tuple[str, ...]:
    """The terms that name ``name`` (a module or qualified name): their stem is the stem of one of
    its parts (split at dots, underscores and camel case), or lies inside a run-together part.

    A generic word (``tools.corpus.text.GENERIC_WORDS``) must be a word of the name: the start of a
    camel-case piece ("read" in DictReader) but not a piece of a run-together one ("read" in readline,
    "get" in getpass), where it is most often a coincidence of spelling.
    """
    parts = [p.lower() for p in re.split(r"[^A-Za-z0-9]+", name) if p]
    pieces = {piece.lower() for p in re.split(r"[^A-Za-z0-9]+", name) for piece in _camel_pieces(p)}
    stems = word_stems(name.replace(".", " ").replace("_", " "))
    out = []
    for t in terms:
        s = stem(t)
        if s in stems:
            out.append(t)
        elif len(s) >= MIN_INNER_STEM and not is_generic(t) and any(s in p for p in parts):
            out.append(t)
        elif is_generic(t) and any(p.startswith(s) for p in pieces):
            out.append(t)
    return tuple(out)


def _camel_pieces(part: str) -> list[str]:
    """The camel-case pieces of a name part, when it has more than one (DictReader -> Dict, Reader)."""
    found = re.findall(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+", part)
    return found if len(found) > 1 else []


def topic_terms(name: str, document: dict[str, Any] | None, terms: Sequence[str]) -> tuple[str, ...]:
    """The ``terms`` a document is about by its own account: found in its name or its summary line.

    ``document`` is its ``read_document`` result, or None when it was not read (its name alone).
    """
    in_summary = set(covered_terms(summary_line(document), terms)) if document else set()
    named = set(name_terms(name, terms))
    return tuple(t for t in terms if t in named or t in in_summary)


def weight(terms: Sequence[str]) -> float:
    """What ``terms`` found together are worth: one per term, half per generic word."""
    return sum(term_weight(t) for t in terms)


def module_of(doc_id: str, source: str | None = None) -> str:
    """The module a document belongs to: its recorded source, else its id without the last name.

    ``csv.DictReader`` -> ``csv``; ``urllib.request.urlopen`` -> ``urllib.request``; a module's
    own document (``csv``) and a file (``notes/retry.md``) are their own.
    """
    if source:
        return source
    if is_file_id(doc_id) or "." not in doc_id:
        return doc_id
    return doc_id.rsplit(".", 1)[0]


def is_file_id(doc_id: str) -> bool:
    """Whether a document id names an added file (``notes/retry.md``) rather than a Python name."""
    return "/" in doc_id or re.search(r"\.(md|txt|html)$", doc_id) is not None


def quote(passage: str, sentences: Sequence[str]) -> str:
    """``sentences`` of ``passage`` joined in passage order, ``[...]`` where sentences were left out."""
    all_sentences = split_sentences(passage)
    positions = []
    start = 0
    for s in sentences:
        i = all_sentences.index(s, start)
        positions.append(i)
        start = i + 1
    out = ""
    for n, i in enumerate(positions):
        if n:
            out += " " if i == positions[n - 1] + 1 else GAP
        out += all_sentences[i]
    return out


def _quotable(sentence: str) -> bool:
    # A bare title ("asyncio.timeouts") or a code listing says nothing a reader can use.
    return len(sentence) <= MAX_SENTENCE_CHARS and len(sentence.split()) >= MIN_SENTENCE_WORDS


def answer_sentences(passage: str, terms: Sequence[str], *, limit: int = MAX_SENTENCES) -> list[str]:
    """Up to ``limit`` sentences of ``passage`` that together hold as many of ``terms`` as it can.

    Greedy cover: the sentence holding most of the terms not yet held (the earlier on ties), again
    until every term is held or ``limit`` is reached. In passage order.
    """
    sentences = [s for s in split_sentences(passage) if _quotable(s)]
    text = "\n\n".join(sentences)  # blank lines: each quotable sentence stays one sentence
    chosen: list[str] = []
    remaining = list(terms)
    while remaining and len(chosen) < limit:
        pick = [s for s in extract_sentences(text, remaining, limit=len(sentences) or 1) if s not in chosen]
        if not pick:
            break
        # extract_sentences returns passage order; the best is the one holding most remaining terms.
        best = max(pick, key=lambda s: (len(covered_terms(s, remaining)), -pick.index(s)))
        chosen.append(best)
        remaining = [t for t in remaining if t not in covered_terms(best, remaining)]
    order = {s: i for i, s in reversed(list(enumerate(split_sentences(passage))))}
    return sorted(chosen, key=order.__getitem__)


def best_extract(document: dict[str, Any], terms: Sequence[str], focus: Sequence[str]) -> Extract | None:
    """The quote of ``document`` (a ``read_document`` result) that best answers the question.

    ``terms`` are the question's content terms, ``focus`` those of the sub-query the document was
    found by. A passage qualifies when its chosen sentences hold a ``focus`` term; the best holds
    the most question terms, then the most focus terms, then comes first. None when none qualifies.
    """
    best: tuple[tuple[int, int], Extract] | None = None
    for p in document.get("passages") or []:
        chosen = answer_sentences(p["text"], terms)
        if not chosen:
            continue
        text = " ".join(chosen)
        focus_hits = covered_terms(text, focus)
        if not focus_hits:
            continue
        covered = covered_terms(text, terms)
        score = (weight(covered), weight(focus_hits))
        if best is None or score > best[0]:  # strictly better: ties keep the earlier passage
            ref = PassageRef(document["corpus"], document["doc_id"], int(p["ordinal"]))
            module = module_of(document["doc_id"], document.get("source"))
            best = (score, Extract(ref, quote(p["text"], chosen), covered, module))
    return best[1] if best else None

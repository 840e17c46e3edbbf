"""Passage citations in the two shapes they travel in: ``{doc_id, corpus, ordinal}`` and a string.

``save_note`` stores citations as strings (URLs or doc ids), so a passage travels as
``"<corpus>:<doc_id>#<ordinal>"`` (``"stdlib:csv.DictReader#0"``); the report and the context may
carry the dict form. Both parse to a :class:`PassageRef`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, order=True)
class PassageRef:
    """One passage of a corpus document."""

    corpus: str
    doc_id: str
    ordinal: int

    def as_string(self) -> str:
        """The form ``save_note`` stores: ``corpus:doc_id#ordinal``."""
        return f"{self.corpus}:{self.doc_id}#{self.ordinal}"

    def as_dict(self) -> dict[str, Any]:
        return {"doc_id": self.doc_id, "corpus": self.corpus, "ordinal": self.ordinal}


def parse_citation(value: Any, corpus: str | None = None) -> PassageRef | None:
    """The passage a citation names, or None when it names none (a URL, a bare doc id, junk).

    ``corpus``, when known, is matched as a prefix first, so a corpus name holding ``:`` still
    parses; a document id may hold ``:`` and ``#`` (file paths) since only the last ``#`` counts.
    """
    if isinstance(value, dict):
        doc_id, where, ordinal = value.get("doc_id"), value.get("corpus"), value.get("ordinal")
        if isinstance(doc_id, str) and doc_id and isinstance(where, str) and where and _is_ordinal(ordinal):
            return PassageRef(where, doc_id, int(ordinal))
        return None
    if not isinstance(value, str) or "://" in value:
        return None
    head, sep, ordinal = value.rpartition("#")
    if not sep or not ordinal.isdigit():
        return None
    if corpus and head.startswith(corpus + ":"):
        where, doc_id = corpus, head[len(corpus) + 1 :]
    else:
        where, _, doc_id = head.partition(":")
    if not where or not doc_id:
        return None
    return PassageRef(where, doc_id, int(ordinal))


def _is_ordinal(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0 or (
        isinstance(value, str) and value.isdigit()
    )

"""Bounded context reconstruction: what a step sees of its run's history.

A step's context is the latest checkpoint state, the latest ``summary`` event's text, and the most
recent events after that summary, newest first until ``budget_tokens`` (summary + events) or
``tail_limit`` events is reached. It is read in one statement of index probes, so its cost is flat in
the length of the history; nothing is replayed and no tool runs again. Payloads keep their artifact
pointers; :func:`resolve_payload` fetches them when a step asks.

The token budget covers the history (summary and tail); the checkpoint ``state`` is the workflow's
own data, which it keeps small, and is not counted.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from checkpoint.artifacts import ArtifactStore, is_pointer_json, resolve
from checkpoint.db import autocommit
from checkpoint.errors import HistoryError, HistoryInputError, NoHistory
from checkpoint.queries import load
from checkpoint.tokens import clip_to_tokens, count_json_tokens, count_tokens

Q = load(Path(__file__).with_name("history.sql"))

#: The event type whose payload ``{"text": ...}`` condenses the run's history before it.
SUMMARY_EVENT = "summary"
_MAX_SEQ = 2**31 - 1  # events.seq is a Postgres integer


@dataclass(frozen=True)
class RunContext:
    """A run's history as a step sees it, as of event ``seq``.

    ``tail`` holds ``{"seq", "type", "payload"}`` dicts, oldest first, all after ``summary_seq``;
    ``omitted`` counts the events after the summary that did not fit (a sign it is time to summarize);
    ``tokens`` is the summary's plus the tail's tokens and never exceeds ``budget_tokens``.
    """

    run_id: str
    seq: int
    state: dict[str, Any]
    summary: str | None
    summary_seq: int | None
    tail: list[dict[str, Any]]
    tokens: int
    omitted: int
    budget_tokens: int
    tail_limit: int
    tail_tokens: list[int] = field(default_factory=list, repr=False)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (how the hot cache stores it)."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunContext:
        """The context :meth:`to_json` wrote; raise :class:`HistoryError` if it is not one."""
        try:
            return cls(**data)
        except TypeError as exc:
            raise HistoryError(f"not a stored RunContext: {exc}") from exc

    def advance(self, seq: int, event_type: str, state: dict[str, Any], payload: dict[str, Any]) -> RunContext:
        """The context as of the next event, built without Postgres: equal to :func:`reconstruct` at
        ``seq`` (same budget and tail limit). A step calls it after its commit to warm the cache for
        the next step."""
        if seq != self.seq + 1:
            raise HistoryInputError(f"advance: seq must be {self.seq + 1} (the event after {self.seq}), got {seq}")
        if event_type == SUMMARY_EVENT:
            return _fit(self.run_id, seq, state, _summary_text(self.run_id, seq, payload), seq, [],
                        self.budget_tokens, self.tail_limit)
        newest_first = [_tail_item(seq, event_type, payload)]
        newest_first += [(e, t) for e, t in zip(reversed(self.tail), reversed(self.tail_tokens), strict=True)]
        return _fit(self.run_id, seq, state, self.summary, self.summary_seq, newest_first,
                    self.budget_tokens, self.tail_limit)


def summary_payload(text: str, **extra: Any) -> dict[str, Any]:
    """The payload of a ``summary`` event: ``{"text": text, **extra}``."""
    if not isinstance(text, str) or not text.strip():
        raise HistoryInputError("a summary event needs a non-empty text")
    return {"text": text, **extra}


def reconstruct(
    engine: Engine, run_id: str, *, at_seq: int | None = None, budget_tokens: int, tail_limit: int
) -> RunContext:
    """The context of ``run_id`` as of event ``at_seq`` (default: its latest event), from Postgres.

    Raises :class:`NoHistory` when the run has no events (unknown run id, or history archived).
    """
    _check_bounds(budget_tokens, tail_limit)
    if at_seq is not None and (not isinstance(at_seq, int) or isinstance(at_seq, bool) or at_seq < 1):
        raise HistoryInputError(f"at_seq must be an int >= 1 or None, got {at_seq!r}")
    params = dict(run_id=run_id, at_seq=_MAX_SEQ if at_seq is None else at_seq, tail_limit=tail_limit)
    with autocommit(engine).connect() as conn:  # one statement: no BEGIN/ROLLBACK round trips
        rows = conn.execute(Q["context_rows"], params).all()
    latest = next((r for r in rows if r.part == "latest"), None)
    if latest is None:
        raise NoHistory(f"run {run_id!r} has no events{'' if at_seq is None else f' at or before seq {at_seq}'}"
                        " (unknown run, or its history is archived)")
    summ = next((r for r in rows if r.part == "summary"), None)
    tail = sorted((r for r in rows if r.part == "tail"), key=lambda r: r.seq, reverse=True)
    summary = None if summ is None else _summary_text(run_id, summ.seq, summ.doc)
    return _fit(
        run_id, latest.seq, latest.doc, summary, None if summ is None else summ.seq,
        # Lazily: the tokens of rows older than the first that does not fit are never counted.
        (_tail_item(r.seq, r.type, r.doc) for r in tail), budget_tokens, tail_limit,
    )


def resolve_payload(value: Any, *, store: ArtifactStore) -> Any:
    """``value`` with every artifact reference in it (at any depth) replaced by the stored value."""
    if is_pointer_json(value):
        return resolve(value, store=store)
    if isinstance(value, dict):
        return {k: resolve_payload(v, store=store) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_payload(v, store=store) for v in value]
    return value


def _check_bounds(budget_tokens: int, tail_limit: int) -> None:
    for name, value in (("budget_tokens", budget_tokens), ("tail_limit", tail_limit)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise HistoryInputError(f"{name} must be an int >= 1, got {value!r}")


def _summary_text(run_id: str, seq: int, payload: Any) -> str:
    text = payload.get("text") if isinstance(payload, dict) else None
    if not isinstance(text, str):
        raise HistoryError(f"run {run_id!r}: summary event {seq} has no text (payload must be {{'text': str}})")
    return text


def _tail_item(seq: int, event_type: str, payload: Any) -> tuple[dict[str, Any], int]:
    item = {"seq": seq, "type": event_type, "payload": payload}
    return item, count_json_tokens(item)


def _fit(
    run_id: str,
    seq: int,
    state: dict[str, Any],
    summary: str | None,
    summary_seq: int | None,
    newest_first: Iterable[tuple[dict[str, Any], int]],
    budget_tokens: int,
    tail_limit: int,
) -> RunContext:
    """Keep the summary (clipped if it alone passes the budget), then the newest events that fit.

    Stops at the first event that does not fit: the tail is always a contiguous run of the latest
    events, which is what makes :meth:`RunContext.advance` equal to a rebuild.
    """
    summary_tokens = 0
    if summary is not None:
        summary_tokens = count_tokens(summary)
        if summary_tokens > budget_tokens:
            summary = clip_to_tokens(summary, budget_tokens)
            summary_tokens = count_tokens(summary)
    room = budget_tokens - summary_tokens
    kept: list[tuple[dict[str, Any], int]] = []
    for item, tokens in islice(newest_first, tail_limit):
        if tokens > room:
            break
        kept.append((item, tokens))
        room -= tokens
    kept.reverse()
    tail = [item for item, _ in kept]
    return RunContext(
        run_id=run_id, seq=seq, state=state, summary=summary, summary_seq=summary_seq, tail=tail,
        tokens=budget_tokens - room, omitted=seq - (summary_seq or 0) - len(tail),
        budget_tokens=budget_tokens, tail_limit=tail_limit, tail_tokens=[t for _, t in kept],
    )

"""The warm tier of sessions: each turn (one message, one reply) as a row, searchable by search_memory.

A turn's row is written by the step that commits its ``reply`` event, in the same transaction
(:func:`write`, passed as one of the commit's ``extra_writes``), so a turn exists exactly when its
reply does. ``(run_id, message_key)`` is unique: one message makes at most one turn.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine

from checkpoint.jsonutil import dumps
from checkpoint.queries import load

Q = load(Path(__file__).with_name("turns.sql"))

MAX_LIST = 1000


@dataclass(frozen=True)
class Turn:
    """One turn of a session: the user's ``message`` (sent with ``message_key``), the ``reply`` and the
    document ids it cites; ``seq`` is the reply's event."""

    turn: int
    message_key: str
    message: str
    reply: str
    citations: list[str] = field(default_factory=list)
    seq: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Turn:
        return cls(int(data["turn"]), str(data["message_key"]), str(data["message"]), str(data["reply"]),
                   [str(c) for c in data.get("citations") or []], int(data.get("seq") or 0))


@dataclass(frozen=True)
class SessionRow:
    run_id: str
    workflow: str
    status: str
    turns: int
    created_at: datetime
    updated_at: datetime
    last_turn_at: datetime | None


def write(run_id: str, turn: Turn, *, sent_at: str | None = None) -> Callable[[Connection], None]:
    """The insert of ``turn``, for the commit of its reply event (``extra_writes``)."""
    params = dict(run_id=run_id, turn=turn.turn, message_key=turn.message_key, message=turn.message,
                  reply=turn.reply, citations=dumps(turn.citations), seq=turn.seq, sent_at=sent_at)

    def insert(conn: Connection) -> None:
        conn.execute(Q["insert_turn"], params)

    return insert


def _turn(row: Any) -> Turn:
    return Turn(row.turn, row.message_key, row.message, row.reply, list(row.citations or []), row.seq)


def recent(engine: Engine, run_id: str, *, through: int, limit: int) -> list[Turn]:
    """The last ``limit`` turns up to turn ``through``, oldest first."""
    if limit < 1 or through < 1:
        return []
    with engine.connect() as conn:
        rows = conn.execute(Q["recent_turns"], dict(run_id=run_id, through=through, limit=limit)).all()
    return [_turn(r) for r in rows]


def by_key(engine: Engine, run_id: str, message_key: str) -> Turn | None:
    """The turn that message ``message_key`` made, or None (not answered yet, or never sent)."""
    with engine.connect() as conn:
        row = conn.execute(Q["turn_by_key"], dict(run_id=run_id, message_key=message_key)).one_or_none()
    return None if row is None else _turn(row)


def sessions(engine: Engine, workflows: Sequence[str], *, limit: int = 100, tenant: str | None = None) -> list[SessionRow]:
    """Runs of the chat workflows ``workflows``, newest first, with how many turns each has had; only
    ``tenant``'s when given."""
    if not 1 <= limit <= MAX_LIST:
        raise ValueError(f"limit must be 1 to {MAX_LIST}, got {limit}")
    with engine.connect() as conn:
        rows = conn.execute(Q["list_sessions"], dict(workflows=list(workflows), limit=limit, tenant=tenant)).all()
    return [SessionRow(r.run_id, r.workflow, r.status, r.turns, r.created_at, r.updated_at, r.last_at) for r in rows]

"""The hot tier of sessions: recent turns and the live reply stream, in Redis, with a TTL.

- ``steplog:turns:{run}``: the session's last ``window`` turns, newest last. A turn's context is read
  from here first. An entry is trusted only when its turns run without a gap up to the turn the
  checkpoint says is the last one; anything else (expired, wiped, a push lost with a dead worker) is a
  miss, and the caller rebuilds from Postgres (:mod:`checkpoint.turns`) and refills it.
- ``steplog:live:{run}``: what ``steplog chat`` follows: ``delta`` entries (reply tokens as a model
  streams them) and one ``reply`` entry per committed reply. Losing it only costs the live view.
- ``steplog:reply:{run}:{message}``: one message's doorbell, which ``steplog say`` blocks on: the
  committed turn, pushed once the reply's commit succeeded. Without it, the reply is read from Postgres.

All of them expire ``ttl`` seconds after the session's last write, so an idle session holds no Redis
memory once the TTL has passed. Redis errors are misses (:meth:`checkpoint.hotcache.HotCache.guarded`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from checkpoint import redis_keys
from checkpoint.hotcache import MAX_BLOCK_MS, HotCache
from checkpoint.jsonutil import dumps
from checkpoint.turns import Turn

log = logging.getLogger(__name__)

LIVE_MAXLEN = 2000  # entries kept per live stream (approximately)


class SessionCache:
    def __init__(self, hot: HotCache, ttl: int, window: int) -> None:
        if not isinstance(ttl, int) or isinstance(ttl, bool) or ttl < 1:
            raise ValueError(f"session ttl must be an int >= 1 (STEPLOG_SESSION_TTL_SECONDS), got {ttl!r}")
        self.hot, self.ttl, self.window = hot, ttl, window

    # -- recent turns -------------------------------------------------------------------------------

    def recent(self, run_id: str, *, through: int, want: int) -> list[Turn] | None:
        """The last ``want`` turns up to ``through``, oldest first, when Redis holds them all; else None."""
        key = redis_keys.session_turns(run_id)
        raw = self.hot.guarded("LRANGE", key, lambda: self.hot.client.lrange(key, -max(want, 1), -1))
        if raw is None:
            return None
        try:
            turns = [Turn.from_json(json.loads(r)) for r in raw]
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("session cache: unreadable turns under %s (%s); rebuilding from Postgres", key, exc)
            return None
        need = min(want, through)
        numbers = [t.turn for t in turns][-need:] if need else []
        if len(numbers) < need or (need and numbers != list(range(through - need + 1, through + 1))):
            return None
        return turns[-need:] if need else []

    def remember(self, run_id: str, turns: Sequence[Turn]) -> None:
        """Replace the cached turns with ``turns`` (rebuilt from Postgres), oldest first."""
        key = redis_keys.session_turns(run_id)
        values = [dumps(t.to_json()) for t in turns[-self.window:]]

        def fill() -> Any:
            pipe = self.hot.client.pipeline(transaction=True)
            pipe.delete(key)
            if values:
                pipe.rpush(key, *values)
                pipe.expire(key, self.ttl)
            return pipe.execute()

        self.hot.guarded("RPUSH", key, fill)

    def push(self, run_id: str, turn: Turn) -> None:
        """Append a turn that was just committed (after its commit: a lost push is a later miss)."""
        key = redis_keys.session_turns(run_id)
        value = dumps(turn.to_json())

        def add() -> Any:
            pipe = self.hot.client.pipeline(transaction=True)
            pipe.rpush(key, value)
            pipe.ltrim(key, -self.window, -1)
            pipe.expire(key, self.ttl)
            return pipe.execute()

        self.hot.guarded("RPUSH", key, add)

    # -- the live stream ----------------------------------------------------------------------------

    def announce(self, run_id: str, entry: dict[str, Any]) -> str | None:
        """Append ``entry`` (``{"type": "delta"|"reply", "turn", ...}``) to the live stream; its id."""
        key = redis_keys.session_live(run_id)
        fields = {"entry": dumps(entry)}

        def add() -> Any:
            pipe = self.hot.client.pipeline(transaction=False)
            pipe.xadd(key, fields, maxlen=LIVE_MAXLEN, approximate=True)
            pipe.expire(key, self.ttl)
            return pipe.execute()[0]

        entry_id = self.hot.guarded("XADD", key, add)
        return None if entry_id is None else _text(entry_id)

    def ring(self, run_id: str, turn: Turn) -> None:
        """A reply was committed: tell whoever waits for it (its doorbell list, and the live stream),
        with the turn as committed, in one round trip."""
        entry = dumps({"type": "reply", "key": turn.message_key, "turn": turn.to_json()})
        live, bell = redis_keys.session_live(run_id), redis_keys.session_reply(run_id, turn.message_key)

        def add() -> Any:
            pipe = self.hot.client.pipeline(transaction=False)
            pipe.lpush(bell, entry)
            pipe.expire(bell, self.ttl)
            pipe.xadd(live, {"entry": entry}, maxlen=LIVE_MAXLEN, approximate=True)
            pipe.expire(live, self.ttl)
            return pipe.execute()

        self.hot.guarded("LPUSH", bell, add)

    def await_reply(self, run_id: str, message_key: str, *, block_ms: int) -> dict[str, Any] | None:
        """The reply entry :meth:`ring` left for ``message_key``, waiting up to ``block_ms`` for it; None
        when none came (or Redis is unavailable: the caller reads Postgres)."""
        if not 1 <= block_ms <= MAX_BLOCK_MS:
            raise ValueError(f"block_ms must be between 1 and {MAX_BLOCK_MS}, got {block_ms!r}")
        bell = redis_keys.session_reply(run_id, message_key)
        client = self.hot.blocking_client()
        got = self.hot.guarded("BLPOP", bell, lambda: client.blpop([bell], timeout=block_ms / 1000))
        if not got:
            return None
        try:
            return json.loads(got[1])
        except (TypeError, ValueError):
            log.warning("reply doorbell %s: unreadable entry skipped", bell)
            return None

    def last_id(self, run_id: str) -> str:
        """The id of the live stream's newest entry ("0-0" when it is empty or Redis is down): read
        from there to see only what comes after now."""
        key = redis_keys.session_live(run_id)
        reply = self.hot.guarded("XREVRANGE", key, lambda: self.hot.client.xrevrange(key, count=1))
        return _text(reply[0][0]) if reply else "0-0"

    def follow(self, run_id: str, after_id: str, *, block_ms: int) -> list[tuple[str, dict[str, Any]]]:
        """Live entries after ``after_id``, oldest first, waiting up to ``block_ms`` for one. Empty when
        none came or Redis is unavailable (the caller then reads Postgres)."""
        if not 0 <= block_ms <= MAX_BLOCK_MS:
            raise ValueError(f"block_ms must be between 0 and {MAX_BLOCK_MS}, got {block_ms!r}")
        key = redis_keys.session_live(run_id)
        client = self.hot.blocking_client() if block_ms else self.hot.client
        reply = self.hot.guarded("XREAD", key, lambda: client.xread({key: after_id}, count=500, block=block_ms or None))
        out: list[tuple[str, dict[str, Any]]] = []
        for _stream, entries in reply or []:
            for entry_id, fields in entries:
                try:
                    out.append((_text(entry_id), json.loads(fields.get(b"entry", fields.get("entry")))))
                except (TypeError, ValueError):
                    log.warning("live stream %s: unreadable entry %s skipped", key, _text(entry_id))
        return out


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)

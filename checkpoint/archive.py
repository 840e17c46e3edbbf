"""Retention: a finished run's events move to the artifact store as one gzip JSON-lines object.

The object is content-addressed (its SHA-256 names it and is checked on every read). The upload is
read back and verified before anything is deleted; then, in one transaction, the run row gets the
pointer (``runs.archive``) and its events are deleted. Archiving again returns the same pointer.
Summaries stay in Postgres, so archived runs remain searchable (:mod:`checkpoint.recall`).
"""

from __future__ import annotations

import gzip
import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from checkpoint.artifacts import ArtifactError, ArtifactPointer, ArtifactStore, open_store
from checkpoint.errors import ArchiveError, HistoryInputError, RunNotFinished, RunNotFound
from checkpoint.jsonutil import dumps
from checkpoint.queries import load
from checkpoint.statuses import TERMINAL_STATUSES

Q = load(Path(__file__).with_name("history.sql"))  # the history tiers' named SQL

FORMAT = "jsonl+gzip"
MEDIA_TYPE = "application/gzip"
_COLUMNS = ("seq", "type", "state", "payload", "worker", "pid", "attempt", "created_at")
_BATCH = 100


def archive_run(engine: Engine, store: ArtifactStore, run_id: str) -> dict[str, Any]:
    """Archive a finished run's events and return the archive pointer now in ``runs.archive``:
    ``{"$artifact": {uri, sha256, size, media_type}, "format", "events", "first_seq", "last_seq",
    "store", "endpoint_url", "archived_at"}``. An archived run returns its existing pointer.

    Raises ``RunNotFound``, :class:`RunNotFinished`, or :class:`ArchiveError` (nothing deleted).
    """
    with engine.connect() as conn:
        row = conn.execute(Q["run_archive_state"], dict(run_id=run_id)).one_or_none()
        if row is None:
            raise RunNotFound(run_id)
        if row.archive is not None:
            return row.archive
        if row.status not in TERMINAL_STATUSES:
            raise RunNotFinished(f"run {run_id!r} is {row.status}: only finished runs are archived")
        events = [dict(r._mapping) for r in conn.execute(Q["all_events"], dict(run_id=run_id))]
    blob = encode_events(events)
    try:
        pointer = store.put(blob, MEDIA_TYPE)
        if decode_events(store.get(pointer)) != [_jsonable(e) for e in events]:
            raise ArchiveError(f"run {run_id!r}: archive {pointer.uri} does not read back as the run's events")
    except ArtifactError as exc:
        raise ArchiveError(f"run {run_id!r}: cannot store its archive in {store.url}: {exc}") from exc
    seqs = [e["seq"] for e in events]
    archive = {
        **pointer.to_json(),
        "format": FORMAT,
        "events": len(events),
        "first_seq": min(seqs, default=None),
        "last_seq": max(seqs, default=None),
        "store": store.url,
        "endpoint_url": getattr(store, "endpoint_url", None),
        "archived_at": datetime.now(timezone.utc).isoformat(),
    }
    with engine.begin() as conn:
        row = conn.execute(Q["lock_run_for_archive"], dict(run_id=run_id)).one()
        if row.archive is not None:  # another collector finished first: same content, same object
            return row.archive
        deleted = conn.execute(Q["delete_events_through"], dict(run_id=run_id, last_seq=archive["last_seq"] or 0))
        if deleted.rowcount != len(events):
            # Rolls back: the run changed between the read and now, so the archive is not its history.
            raise ArchiveError(
                f"run {run_id!r}: {deleted.rowcount} events to delete but {len(events)} archived; nothing changed"
            )
        conn.execute(Q["set_archive"], dict(run_id=run_id, archive=dumps(archive)))
    return archive


def archived_events(store: ArtifactStore, pointer: dict[str, Any], *, after: int = 0) -> list[dict[str, Any]]:
    """The events in an archive (as ``checkpoint.runs.events`` returns them), after seq ``after``.

    The object's size and SHA-256 are checked against the pointer; a mismatch raises :class:`ArchiveError`.
    """
    try:
        ref = ArtifactPointer.from_json(pointer)
        events = decode_events(store.get(ref))
    except ArtifactError as exc:
        raise ArchiveError(f"cannot read archived events: {exc}") from exc
    if len(events) != pointer.get("events", len(events)):
        raise ArchiveError(f"archive {ref.uri} holds {len(events)} events, its pointer says {pointer.get('events')}")
    for e in events:
        e["created_at"] = datetime.fromisoformat(e["created_at"]) if e.get("created_at") else None
    return [e for e in events if e["seq"] > after]


def store_for_archive(pointer: dict[str, Any]) -> ArtifactStore:
    """The artifact store an archive was written to, as its pointer records it."""
    url = pointer.get("store")
    if not isinstance(url, str):
        raise ArchiveError(f"archive pointer names no store: {pointer!r:.200}")
    return open_store(url, s3_endpoint_url=pointer.get("endpoint_url"))


def gc(engine: Engine, store: ArtifactStore, older_than_days: float) -> list[str]:
    """Archive every finished run whose last change is more than ``older_than_days`` days old; the
    ids archived, oldest first."""
    if isinstance(older_than_days, bool) or not isinstance(older_than_days, (int, float)) \
            or not math.isfinite(older_than_days) or older_than_days < 0:
        raise HistoryInputError(f"older_than_days must be a number >= 0, got {older_than_days!r}")
    done: list[str] = []
    while True:
        with engine.connect() as conn:
            batch = conn.execute(Q["gc_candidates"], dict(days=float(older_than_days), limit=_BATCH)).scalars().all()
        if not batch:
            return done
        for run_id in batch:
            archive_run(engine, store, run_id)
            done.append(run_id)


def encode_events(events: list[dict[str, Any]]) -> bytes:
    """Events as gzip JSON lines; ``mtime=0`` so equal histories give equal bytes (one object)."""
    lines = "".join(dumps(_jsonable(e)) + "\n" for e in events)
    return gzip.compress(lines.encode("utf-8"), mtime=0)


def decode_events(blob: bytes) -> list[dict[str, Any]]:
    """The JSON-lines records of :func:`encode_events`."""
    try:
        text = gzip.decompress(blob).decode("utf-8")
        return [json.loads(line) for line in text.splitlines() if line]
    except (OSError, EOFError, ValueError) as exc:
        raise ArchiveError(f"archive is not gzip JSON lines: {exc}") from exc


def _jsonable(event: dict[str, Any]) -> dict[str, Any]:
    out = {k: event.get(k) for k in _COLUMNS}
    if isinstance(out["created_at"], datetime):
        out["created_at"] = out["created_at"].isoformat()
    return out

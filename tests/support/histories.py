"""Synthetic run histories written straight into Postgres (for context tests and bench_context).

A history looks like a long agent run: tool results of a few hundred bytes to a few KB, now and then
one offloaded to the artifact store (the event keeps a pointer), and a ``summary`` event (with its
``summaries`` row) every ``summary_every`` events.
"""

from __future__ import annotations

import random
from typing import Any

from sqlalchemy import Engine, insert

from checkpoint import runs
from checkpoint.artifacts import ArtifactStore, offload
from checkpoint.context import SUMMARY_EVENT, summary_payload
from checkpoint.tables import events as events_table
from checkpoint.tables import summaries as summaries_table

WORDS = (
    "lease checkpoint worker broker sweep outbox commit summary archive context token budget agent "
    "search fetch note report citation source retry fence claim redis postgres artifact stream"
).split()


def summary_text(seq: int) -> str:
    return f"Summary through step {seq}: the agent searched sources, fetched pages and saved notes (marker s{seq})."


def event_payload(rng: random.Random, seq: int, store: ArtifactStore | None) -> dict[str, Any]:
    body = " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 400)))
    if store is not None and seq % 37 == 0:
        # A tool output of tens of KB: offloaded, the event holds a pointer.
        big = (body + " ") * 40
        return {"tool": "fetch_url", "result": offload(big, store=store, inline_limit=1024)}
    return {"tool": rng.choice(["search", "fetch_url", "save_note"]), "result": body}


def make_history(
    engine: Engine,
    n_events: int,
    *,
    summary_every: int | None = 50,
    store: ArtifactStore | None = None,
    status: str = "running",
    seed: int = 7,
) -> str:
    """A run with events 1..n_events (1 is `submitted`); returns its run id."""
    rng = random.Random(seed)
    run_id = runs.create(engine, "synthetic", {"n": n_events}, {"step": 1}, submitted_by="test")
    rows, summ = [], []
    for seq in range(2, n_events + 1):
        state = {"step": seq, "found": seq // 3}
        if summary_every and seq % summary_every == 0:
            text = summary_text(seq)
            rows.append(dict(run_id=run_id, seq=seq, type=SUMMARY_EVENT, state=state, payload=summary_payload(text)))
            summ.append(dict(run_id=run_id, seq=seq, text=text))
        else:
            rows.append(dict(run_id=run_id, seq=seq, type="tool_result", state=state,
                             payload=event_payload(rng, seq, store)))
    with engine.begin() as conn:
        for i in range(0, len(rows), 1000):
            conn.execute(insert(events_table), rows[i : i + 1000])
        if summ:
            conn.execute(insert(summaries_table), summ)
        conn.exec_driver_sql(
            "UPDATE runs SET next_seq = %(n)s, status = %(status)s WHERE run_id = %(r)s",
            dict(n=n_events + 1, status=status, r=run_id),
        )
        conn.exec_driver_sql("DELETE FROM outbox WHERE run_id = %(r)s", dict(r=run_id))
    return run_id


def append_event(engine: Engine, run_id: str, seq: int, event_type: str, payload: dict[str, Any]) -> None:
    with engine.begin() as conn:
        conn.execute(insert(events_table), [dict(run_id=run_id, seq=seq, type=event_type,
                                                 state={"step": seq}, payload=payload)])

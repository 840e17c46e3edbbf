"""The built-in write and read tools against real Postgres, and the audit view of the ledger."""

from __future__ import annotations

import json

from rich.console import Console
from sqlalchemy import text

from tools.audit import ledger_rows, render_table
from tools.registry import builtin_registry
from tools.runtime import ToolRuntime



def step(engine, run_id, seq, calls):
    """One step: run the calls, then commit their records together."""
    rt = ToolRuntime(engine, builtin_registry(), run_id=run_id, seq=seq, owner="proc-1", worker="node-1")
    outs = [rt.call(name, args) for name, args in calls]
    with engine.begin() as conn:
        for record in rt.records():
            record(conn)
    return outs


def test_save_note_is_searchable_and_written_once(engine, run_id):
    args = {"text": "The asyncio timeout context manager cancels the enclosed task", "citations": ["asyncio.timeout"]}
    [out] = step(engine, run_id, 2, [("save_note", args)])
    [replay] = step(engine, run_id, 2, [("save_note", args)])
    assert out.ok and replay.replayed and replay.result == out.result == {"note_id": out.key}
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT key, citations FROM notes WHERE tsv @@ plainto_tsquery('english', 'cancelled tasks')")
        ).all()
    assert rows == [(out.key, ["asyncio.timeout"])]


def test_publish_report_once_per_key_replaced_by_a_later_step(engine, run_id):
    first = {"markdown": "# Findings\n\nasyncio.timeout cancels.", "citations": ["asyncio.timeout"]}
    crashed = ToolRuntime(engine, builtin_registry(), run_id=run_id, seq=2).call("publish_report", first)
    with engine.connect() as conn:
        published = conn.execute(text("SELECT published_at, key FROM reports WHERE run_id = :r"), dict(r=run_id)).one()
    [a] = step(engine, run_id, 2, [("publish_report", first)])  # executed again: same key, a no-op
    assert a.ok and a.key == crashed.key == published.key
    with engine.connect() as conn:
        again = conn.execute(text("SELECT published_at, key FROM reports WHERE run_id = :r"), dict(r=run_id)).one()
    assert again == published
    assert ledger_rows(engine, run_id)[0]["attempts"] == 2
    [b] = step(engine, run_id, 5, [("publish_report", {"markdown": "# Findings v2"})])
    with engine.connect() as conn:
        row = conn.execute(text("SELECT markdown, key, citations FROM reports WHERE run_id = :r"), dict(r=run_id)).one()
    assert (row.markdown, row.key, row.citations) == ("# Findings v2", b.key, [])


def test_search_corpus_delegates_to_the_corpus(engine, run_id, tmp_path):
    from tools import corpus

    (tmp_path / "retry.md").write_text("# Retries\n\nExponential backoff with jitter spreads retried requests.\n")
    corpus.add_files(engine, [tmp_path], corpus="notes-corpus")
    [hit, unknown] = step(
        engine, run_id, 2,
        [("search_corpus", {"query": "backoff jitter", "corpus": "notes-corpus"}),
         ("search_corpus", {"query": "x", "corpus": "no-such-corpus"})],
    )
    assert hit.ok and hit.result["results"][0]["doc_id"] == "retry.md"
    assert {"doc_id", "title", "passage", "rank", "corpus"} <= set(hit.result["results"][0])
    assert unknown.error["type"] == "ToolInputError" and unknown.error["field"] == "corpus"


def test_audit_rows_and_table(engine, run_id):
    step(engine, run_id, 2, [("save_note", {"text": "one"}), ("save_note", {"text": "one"})])
    step(engine, run_id, 3, [("fetch_url", {"url": "http://127.0.0.1/"})])
    rows = ledger_rows(engine, run_id)
    assert [(r["seq"], r["tool"], r["status"], r["attempts"], r["replays"]) for r in rows] == [
        (2, "save_note", "succeeded", 1, 1),
        (3, "fetch_url", "failed", 1, 0),
    ]
    assert rows[1]["error"]["type"] == "NetworkRefused" and rows[0]["duration_ms"] >= 0
    json.dumps(rows)  # the --json output
    console = Console(width=200, record=True)
    console.print(render_table(rows))
    shown = console.export_text()
    assert "save_note" in shown and "NetworkRefused" in shown and rows[0]["key"][:12] in shown
    assert ledger_rows(engine, "no-such-run") == []

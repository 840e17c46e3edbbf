"""The three tiers of a run's history on real servers: bounded reconstruction from Postgres, the
Redis hot cache (never stale, disposable), summaries and recall, and archiving to the artifact store."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading

import pytest
import redis
from sqlalchemy import text

from checkpoint import redis_keys, runs, steps
from checkpoint.archive import archive_run, archived_events, gc
from checkpoint.artifacts import ArtifactCorrupt, LocalArtifactStore, is_pointer_json
from checkpoint.context import SUMMARY_EVENT, reconstruct, resolve_payload, summary_payload
from checkpoint.errors import ArchiveError, HistoryInputError, NoHistory, RunNotFinished
from checkpoint.hotcache import HotCache
from checkpoint.recall import search_memory
from checkpoint.summary import condense, pending_events, should_summarize, summary_write
from checkpoint.tokens import count_json_tokens, count_tokens
from tests.support.harness import ROOT, cli_json
from tests.support.histories import append_event, make_history, summary_text
from workers.local.procs import free_port

BUDGET, TAIL = 6000, 50


@pytest.fixture
def store(tmp_path) -> LocalArtifactStore:
    return LocalArtifactStore(tmp_path / "artifacts")


@pytest.fixture
def cache(redis_url):
    c = HotCache.from_url(redis_url, ttl=3600)
    yield c
    c.client.close()


def _gc(env: dict[str, str], *args: str) -> dict:
    """`steplog gc`."""
    done = subprocess.run([sys.executable, "-m", "workers", "gc", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_reconstruction_of_300_steps_stays_in_budget_and_starts_at_the_latest_summary(engine, store):
    run_id = make_history(engine, 300, summary_every=50, store=store)
    saw_omitted = saw_pointer = False
    for at in range(1, 301):
        ctx = reconstruct(engine, run_id, at_seq=at, budget_tokens=BUDGET, tail_limit=TAIL)
        assert ctx.seq == at and ctx.state["step"] == (at if at > 1 else 1)
        assert ctx.tokens <= BUDGET
        # The count is honest: the summary and the tail as the step sees them.
        assert ctx.tokens == (count_tokens(ctx.summary) if ctx.summary else 0) + sum(
            count_json_tokens(e) for e in ctx.tail
        )
        latest_summary = at // 50 * 50 or None
        assert ctx.summary_seq == latest_summary
        assert ctx.summary == (summary_text(latest_summary) if latest_summary else None)
        seqs = [e["seq"] for e in ctx.tail]
        # The tail is the newest events after the summary, contiguous, ending at the checkpoint.
        if seqs:
            assert seqs == list(range(seqs[0], at + 1)) and seqs[0] > (latest_summary or 0)
        assert len(seqs) <= TAIL
        assert ctx.omitted == at - (latest_summary or 0) - len(seqs)
        saw_omitted |= ctx.omitted > 0
        for e in ctx.tail:
            if is_pointer_json(e["payload"].get("result")):
                saw_pointer = True
                full = resolve_payload(e["payload"], store=store)
                assert isinstance(full["result"], str) and len(full["result"]) > 1024
    assert saw_omitted, "the budget never bound: the history is too small to test it"
    assert saw_pointer, "no offloaded payload reached a context"


def test_reconstruction_reads_a_bounded_number_of_rows(engine):
    run_id = make_history(engine, 2000, summary_every=None)
    ctx = reconstruct(engine, run_id, budget_tokens=10**6, tail_limit=TAIL)
    assert ctx.seq == 2000 and len(ctx.tail) == TAIL and ctx.omitted == 2000 - TAIL
    # Every part of the statement is an index probe: no sequential scan of the events table.
    from checkpoint.context import Q

    with engine.connect() as conn:
        conn.exec_driver_sql("SET enable_seqscan = off")  # small tables would tempt the planner anyway
        conn.exec_driver_sql("ANALYZE events")
        plan = "\n".join(
            r[0] for r in conn.execute(text("EXPLAIN " + Q["context_rows"].text),
                                       dict(run_id=run_id, at_seq=2000, tail_limit=TAIL))
        )
    assert "Seq Scan" not in plan and "events_summary_idx" in plan, plan


def test_advancing_a_context_equals_rebuilding_it(engine, store):
    run_id = make_history(engine, 180, summary_every=40, store=store)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT seq, type, state, payload FROM events WHERE run_id = :r ORDER BY seq"),
                            dict(r=run_id)).all()
    ctx = reconstruct(engine, run_id, at_seq=1, budget_tokens=2000, tail_limit=20)
    for row in rows[1:]:
        ctx = ctx.advance(row.seq, row.type, row.state, row.payload)
        rebuilt = reconstruct(engine, run_id, at_seq=row.seq, budget_tokens=2000, tail_limit=20)
        assert ctx.to_json() == rebuilt.to_json(), f"differs at seq {row.seq}"
    with pytest.raises(HistoryInputError, match="seq must be 181"):
        ctx.advance(183, "tool_result", {}, {})


def test_unknown_run_has_no_history(engine):
    with pytest.raises(NoHistory, match="no-such-run"):
        reconstruct(engine, "no-such-run", budget_tokens=BUDGET, tail_limit=TAIL)
    with pytest.raises(HistoryInputError, match="budget_tokens"):
        reconstruct(engine, "x", budget_tokens=0, tail_limit=TAIL)


def test_cache_is_used_only_at_the_latest_seq(engine, cache):
    run_id = make_history(engine, 60, summary_every=25)
    ctx = cache.load(engine, run_id, latest_seq=60, budget_tokens=BUDGET, tail_limit=TAIL)
    assert cache.client.exists(redis_keys.context(run_id, 60))
    # A step at the same seq gets the cached context (proved by planting a marked one there).
    planted = type(ctx).from_json({**ctx.to_json(), "summary": "PLANTED"})
    assert cache.put(planted)
    assert cache.load(engine, run_id, latest_seq=60, budget_tokens=BUDGET, tail_limit=TAIL).summary == "PLANTED"
    # A different budget is a different context: rebuilt, not served from the entry.
    other = cache.load(engine, run_id, latest_seq=60, budget_tokens=BUDGET // 2, tail_limit=TAIL)
    assert other.summary == summary_text(50) and other.budget_tokens == BUDGET // 2
    # The run moves on: the entry at 60 is never used for seq 61.
    append_event(engine, run_id, 61, "tool_result", {"tool": "search", "result": "fresh news"})
    fresh = cache.load(engine, run_id, latest_seq=61, budget_tokens=BUDGET, tail_limit=TAIL)
    assert fresh.seq == 61 and fresh.summary != "PLANTED" and fresh.tail[-1]["payload"]["result"] == "fresh news"
    assert fresh.to_json() == reconstruct(engine, run_id, budget_tokens=BUDGET, tail_limit=TAIL).to_json()
    assert cache.get(run_id, 61) == fresh
    # A step warms the next step's entry after its commit, without Postgres.
    append_event(engine, run_id, 62, SUMMARY_EVENT, summary_payload("condensed through 62"))
    assert cache.put(fresh.advance(62, SUMMARY_EVENT, {"step": 62}, summary_payload("condensed through 62")))
    warm = cache.get(run_id, 62)
    assert warm.summary == "condensed through 62" and warm.tail == []
    assert warm.to_json() == reconstruct(engine, run_id, budget_tokens=BUDGET, tail_limit=TAIL).to_json()
    ttl = cache.client.ttl(redis_keys.context(run_id, 62))
    assert 0 < ttl <= 3600
    assert cache.forget(run_id) >= 3 and cache.get(run_id, 62) is None


def test_flushing_redis_between_loads_loses_nothing(engine, cache, redis_url):
    run_id = make_history(engine, 120, summary_every=30)
    first = cache.load(engine, run_id, latest_seq=120, budget_tokens=BUDGET, tail_limit=TAIL)
    # FLUSHDB on this test's own database: FLUSHALL would also empty other tests' brokers.
    redis.Redis.from_url(redis_url).flushdb()
    assert cache.get(run_id, 120) is None
    again = cache.load(engine, run_id, latest_seq=120, budget_tokens=BUDGET, tail_limit=TAIL)
    assert again.to_json() == first.to_json()
    assert cache.get(run_id, 120) == first


def test_corrupt_cache_entry_is_a_miss(engine, cache):
    run_id = make_history(engine, 10, summary_every=None)
    cache.client.set(redis_keys.context(run_id, 10), b"{not json")
    ctx = cache.load(engine, run_id, latest_seq=10, budget_tokens=BUDGET, tail_limit=TAIL)
    assert ctx.seq == 10 and cache.get(run_id, 10) == ctx


def test_redis_down_degrades_to_postgres(engine, caplog):
    run_id = make_history(engine, 40, summary_every=15)
    down = HotCache.from_url(f"redis://127.0.0.1:{free_port()}/0", ttl=60)
    ctx = down.load(engine, run_id, latest_seq=40, budget_tokens=BUDGET, tail_limit=TAIL)
    assert ctx.to_json() == reconstruct(engine, run_id, budget_tokens=BUDGET, tail_limit=TAIL).to_json()
    assert down.get(run_id, 40) is None
    assert down.put(ctx) is False
    assert down.publish_progress(run_id, {"seq": 40}) is None
    assert down.read_progress(run_id) == []
    assert "treated as a miss" in caplog.text


def test_progress_stream_is_capped_and_readable(cache):
    run_id = "r-progress"
    ids = [cache.publish_progress(run_id, {"seq": i}) for i in range(1500)]
    assert all(ids)
    length = cache.client.xlen(redis_keys.progress(run_id))
    assert 1000 <= length < 1500  # MAXLEN ~ trims whole nodes: about 1000 entries stay
    tail = cache.read_progress(run_id, after_id=ids[-4])
    assert [e for _, e in tail] == [{"seq": 1497}, {"seq": 1498}, {"seq": 1499}]
    assert cache.read_progress(run_id, after_id=ids[-1]) == []
    got: list = []
    reader = threading.Thread(target=lambda: got.extend(cache.read_progress(run_id, after_id=ids[-1], block_ms=10_000)))
    reader.start()
    cache.publish_progress(run_id, {"seq": "live"})
    reader.join(15)
    assert [e for _, e in got] == [{"seq": "live"}]
    assert 0 < cache.client.ttl(redis_keys.progress(run_id)) <= 3600


def test_summary_commits_with_its_event_and_is_recalled(engine):
    run_id = runs.create(engine, "synthetic", {}, {"step": 1}, submitted_by="test")
    worker = steps.Worker("test-owner", "w@test", 1)
    text_ = "The agent compared photosynthesis rates of chlorophyll mutants under blue light."
    claim = steps.claim(engine, run_id, 2, worker, deadline=30, lease_seconds=30)
    status = steps.commit(engine, claim, worker, event_type=SUMMARY_EVENT, state={"step": 2},
                          payload=summary_payload(text_), extra_writes=[summary_write(run_id, 2, text_)])
    assert status == "running"
    ctx = reconstruct(engine, run_id, budget_tokens=BUDGET, tail_limit=TAIL)
    assert (ctx.summary, ctx.summary_seq, ctx.tail) == (text_, 2, [])
    # A fenced commit (a stale attempt) writes neither the event nor the summary row.
    stale = steps.commit(engine, claim, worker, event_type=SUMMARY_EVENT, state={}, payload=summary_payload("stale"),
                         extra_writes=[summary_write(run_id, 2, "stale words zebra")])
    assert stale is None and search_memory(engine, "zebra") == []

    other = make_history(engine, 30, summary_every=10)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO notes (key, run_id, text) VALUES ('k1', :r, :t)"),
                     dict(r=other, t="Blue light raises chlorophyll fluorescence in leaves."))
    hits = search_memory(engine, "chlorophyll photosynthesis")  # every word must match
    assert [(h.kind, h.run_id, h.seq, h.text) for h in hits] == [("summary", run_id, 2, text_)]
    # Either word: both texts, the one matching more of the query first.
    hits = search_memory(engine, "chlorophyll or photosynthesis")
    assert [(h.kind, h.run_id, h.source) for h in hits] == [
        ("summary", run_id, "summary@2"), ("note", other, "note:k1")
    ]
    assert hits[0].rank > hits[1].rank
    # English stemming: other word forms find it; the run filter narrows.
    assert search_memory(engine, "mutant compares")[0].run_id == run_id
    assert [h.kind for h in search_memory(engine, "chlorophyll", run_id=other)] == ["note"]
    # Only `other` has summaries with the word "marker": seqs 10, 20, 30.
    assert sorted(h.seq for h in search_memory(engine, "marker", limit=10)) == [10, 20, 30]
    with pytest.raises(HistoryInputError, match="query"):
        search_memory(engine, "  ")


def test_when_to_summarize_and_condense_within_bounds(engine, store):
    run_id = make_history(engine, 95, summary_every=40, store=store)
    ctx = reconstruct(engine, run_id, budget_tokens=BUDGET, tail_limit=TAIL)  # summary at 80
    assert ctx.summary_seq == 80
    assert not should_summarize(ctx, every_steps=20, budget_tokens=BUDGET)
    assert should_summarize(ctx, every_steps=15, budget_tokens=BUDGET)
    tight = reconstruct(engine, run_id, budget_tokens=300, tail_limit=TAIL)
    assert tight.omitted > 0 and should_summarize(tight, every_steps=1000, budget_tokens=300)
    pending = pending_events(engine, ctx)
    assert [e["seq"] for e in pending] == list(range(81, 96))
    summary = condense(pending, ctx.summary, max_tokens=400)
    assert count_tokens(summary) <= 400
    assert summary.startswith(summary_text(80)) and "#95 tool_result" in summary
    # Artifact references are named, not fetched; nested keys read as paths.
    ref = store.put(b"x" * 5000, "text/plain")
    line = condense([{"seq": 3, "type": "tool_result", "payload": {"tool": "fetch", "out": {"body": ref.to_json()}}}],
                    None, max_tokens=100)
    assert line == "#3 tool_result: tool=fetch; out.body=[artifact 5000 bytes]"
    with pytest.raises(HistoryInputError, match="max_tokens"):
        condense(pending, None, max_tokens=0)


def test_token_counts_and_clipping():
    from checkpoint.tokens import clip_to_tokens, estimate_tokens, method

    assert count_tokens("") == 0
    if method() == "estimate":  # no tiktoken encoding offline: the documented estimate is used
        assert count_tokens("four score and seven years ago") == estimate_tokens("four score and seven years ago") == 8
        assert count_tokens("日本語のテキスト") == 6  # 24 UTF-8 bytes / 4: dense scripts are not under-counted
    long = " ".join(["budget"] * 500)
    clipped = clip_to_tokens(long, 50)
    assert count_tokens(clipped) <= 50 and clipped.endswith(" …") and long.startswith(clipped[:-2])
    assert clip_to_tokens("short", 50) == "short"


def test_archive_is_content_addressed_and_verified(engine, store):
    run_id = make_history(engine, 40, summary_every=20, store=store, status="succeeded")
    before = runs.events(engine, run_id)
    pointer = archive_run(engine, store, run_id)
    assert archive_run(engine, store, run_id) == pointer  # idempotent
    path = store.path_for(pointer["$artifact"]["sha256"])
    data = path.read_bytes()
    assert hashlib.sha256(data).hexdigest() == pointer["$artifact"]["sha256"] == path.name
    assert pointer["events"] == 40 and (pointer["first_seq"], pointer["last_seq"]) == (1, 40)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM events WHERE run_id = :r"), dict(r=run_id)).scalar() == 0
    assert runs.events(engine, run_id) == before
    assert runs.events(engine, run_id, after=35) == before[35:]
    assert archived_events(store, pointer) == before
    with pytest.raises(NoHistory):
        reconstruct(engine, run_id, budget_tokens=BUDGET, tail_limit=TAIL)
    # The summaries outlive the events: an archived run is still found by its words.
    assert search_memory(engine, "marker", run_id=run_id)
    # One flipped byte and the archive is refused, naming the object.
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(ArchiveError, match=pointer["$artifact"]["sha256"]) as err:
        runs.events(engine, run_id)
    assert isinstance(err.value.__cause__, ArtifactCorrupt)


def test_only_finished_runs_are_archived(engine, store):
    run_id = make_history(engine, 10, summary_every=None, status="running")
    with pytest.raises(RunNotFinished, match="running"):
        archive_run(engine, store, run_id)
    assert len(runs.events(engine, run_id)) == 10
    with pytest.raises(HistoryInputError, match="older_than_days"):
        gc(engine, store, -1)


def test_gc_archives_old_finished_runs_to_s3_and_show_reads_them(engine, steplog_env, s3_server, monkeypatch):
    for name, value in s3_server.env().items():  # this process reads the archive too
        monkeypatch.setenv(name, value)
    env = {**steplog_env, **s3_server.env()}
    env["STEPLOG_ARTIFACTS_URL"] = f"s3://{s3_server.bucket}/{s3_server.new_prefix()}"
    old = make_history(engine, 60, summary_every=20, status="succeeded", seed=1)
    running = make_history(engine, 20, summary_every=None, status="running", seed=2)
    recent = make_history(engine, 20, summary_every=None, status="failed", seed=3)
    with engine.begin() as conn:
        conn.execute(text("UPDATE runs SET updated_at = now() - interval '3 days' WHERE run_id IN (:a, :b)"),
                     dict(a=old, b=running))
    shown = cli_json(env, "show", old, "--json")
    before = runs.events(engine, old)

    assert _gc(env, "--older-than", "1", "--json") == {"archived": [old], "count": 1}
    run = runs.get(engine, old)
    assert run["archive"]["$artifact"]["uri"].startswith(f"s3://{s3_server.bucket}/")
    with engine.connect() as conn:
        left = dict(conn.execute(text("SELECT run_id, count(*) FROM events GROUP BY run_id")).all())
    assert old not in left and left[running] == 20 and left[recent] == 20
    # The operator's view of the archived run is what it was before.
    assert cli_json(env, "show", old, "--json") == shown
    assert runs.events(engine, old) == before
    # The object is content-addressed: its key is the SHA-256 of its bytes.
    key = run["archive"]["$artifact"]["uri"].removeprefix(f"s3://{s3_server.bucket}/")
    body = s3_server.client().get_object(Bucket=s3_server.bucket, Key=key)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == run["archive"]["$artifact"]["sha256"] == key.rsplit("/", 1)[1]
    assert _gc(env, "--older-than", "1", "--json") == {"archived": [], "count": 0}
    bad = subprocess.run([sys.executable, "-m", "workers", "gc", "--older-than", "-2"], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--older-than" in bad.stderr

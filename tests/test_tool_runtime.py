"""The tool runtime against real Postgres and a real HTTP server: every call safe to repeat."""

from __future__ import annotations

import itertools
import uuid

import pytest
from pydantic import BaseModel
from sqlalchemy import text

from tools.config import ToolConfig
from tools.declaration import Effect, ToolContext, tool
from tools.errors import TransientToolError
from tools.registry import ToolRegistry, builtin_registry
from tools.runtime import ToolRuntime

FAST = dict(retry_base_seconds=0.001, retry_max_wait=0.01)


class Echo(BaseModel):
    text: str
    n: int = 1


class Counted(BaseModel):
    text: str
    execution: int


def counting_tool(name: str, effect: Effect, *, dedupes: bool = False, fail_with=None):
    """A tool that counts its executions in ``calls``; ``fail_with(execution)`` may raise."""
    calls: list[str] = []

    @tool(name, "1", effect, dedupes=dedupes)
    def fn(ctx: ToolContext, args: Echo) -> Counted:
        calls.append(ctx.key)
        if fail_with is not None:
            fail_with(len(calls))
        return Counted(text=args.text * args.n, execution=ctx.execution)

    return fn, calls






def ledger(engine, run_id):
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(
            text("SELECT * FROM tool_ledger WHERE run_id = :r ORDER BY seq, tool"), dict(r=run_id)
        ).mappings()]


def commit(engine, runtime):
    """What the step engine does: every record in one transaction (with the checkpoint)."""
    with engine.begin() as conn:
        for record in runtime.records():
            record(conn)


def test_same_call_twice_in_one_step_runs_once_and_replays_after_commit(engine, run_id):
    echo, calls = counting_tool("echo", Effect.READ)
    registry = ToolRegistry([echo])
    rt = ToolRuntime(engine, registry, run_id=run_id, seq=2, owner="w1:1:a", worker="w1")
    first = rt.call("echo", {"text": "ab", "n": 2})
    again = rt.call("echo", {"n": 2.0, "text": "ab"})  # same validated input, other order and form
    assert first.ok and not first.replayed and first.result == {"text": "abab", "execution": 1}
    assert again.ok and again.replayed and again.result == first.result and again.key == first.key
    assert len(calls) == 1
    commit(engine, rt)
    [row] = ledger(engine, run_id)
    assert (row["status"], row["attempts"], row["replays"], row["result"]) == ("succeeded", 1, 1, first.result)
    assert (row["worker"], row["owner"]) == ("w1", "w1:1:a")

    # A redelivered step (new runtime, same run and seq) is answered from the ledger.
    rt2 = ToolRuntime(engine, registry, run_id=run_id, seq=2)
    replay = rt2.call("echo", {"text": "ab", "n": 2})
    assert replay.replayed and replay.result == first.result and len(calls) == 1
    assert ledger(engine, run_id)[0]["replays"] == 2
    # Another step is another call.
    assert not ToolRuntime(engine, registry, run_id=run_id, seq=3).call("echo", {"text": "ab", "n": 2}).replayed
    assert len(calls) == 2


def test_permanent_http_error_is_a_result_not_retried(engine, run_id, server):
    cfg = ToolConfig(net_allow=server.allow, retries=3, **FAST)
    rt = ToolRuntime(engine, builtin_registry(), cfg, run_id=run_id, seq=2)
    out = rt.call("notify", {"url": f"{server.base}/status/404", "payload": {"x": 1}})
    assert out.status == "failed" and not out.ok
    assert out.error["type"] == "PermanentToolError" and out.error["status"] == 404
    assert out.as_message()["error"]["retryable"] is False
    commit(engine, rt)
    assert server.hits["/status/404"] == 1
    [row] = ledger(engine, run_id)
    assert (row["status"], row["attempts"], row["error"]["status"]) == ("failed", 1, 404)


def test_transient_errors_are_retried_within_bounds(engine, run_id, server):
    cfg = ToolConfig(net_allow=server.allow, retries=2, **FAST)
    rt = ToolRuntime(engine, builtin_registry(), cfg, run_id=run_id, seq=2)
    out = rt.call("fetch_url", {"url": f"{server.base}/status/503"})
    assert out.status == "failed" and out.error["retryable"] is True and out.error["status"] == 503
    assert server.hits["/status/503"] == 3  # the first try and two retries
    commit(engine, rt)
    [row] = ledger(engine, run_id)
    assert (row["status"], row["attempts"]) == ("failed", 3)


def test_transient_error_absorbed_by_a_retry(engine, run_id):
    def flaky(n):
        if n == 1:
            raise TransientToolError("connection reset", maybe_applied=True)

    echo, calls = counting_tool("echo", Effect.READ, fail_with=flaky)
    rt = ToolRuntime(engine, ToolRegistry([echo]), ToolConfig(**FAST), run_id=run_id, seq=2)
    out = rt.call("echo", {"text": "x"})
    assert out.ok and out.result == {"text": "x", "execution": 2} and len(calls) == 2


def test_unexpected_exception_is_a_recorded_tool_error(engine, run_id):
    def boom(n):
        raise KeyError("missing")

    broken, calls = counting_tool("broken", Effect.WRITE, fail_with=boom)
    rt = ToolRuntime(engine, ToolRegistry([broken]), ToolConfig(**FAST), run_id=run_id, seq=2)
    out = rt.call("broken", {"text": "x"})
    assert out.status == "failed" and out.error["type"] == "UnexpectedToolError"
    assert "KeyError" in out.error["message"] and len(calls) == 1
    commit(engine, rt)
    assert ledger(engine, run_id)[0]["status"] == "failed"


def test_invalid_input_names_the_field_and_is_audited(engine, run_id):
    rt = ToolRuntime(engine, builtin_registry(), run_id=run_id, seq=2)
    out = rt.call("search_corpus", {"query": "asyncio", "limit": "many"})
    assert out.status == "failed" and out.error["type"] == "ToolInputError" and out.error["field"] == "limit"
    assert "limit" in out.error["message"]
    missing = rt.call("fetch_url", {})
    assert missing.error["field"] == "url" and "required" in missing.error["message"].lower()
    nested = rt.call("notify", {"url": "http://x", "payload": {"a": float("nan")}})
    assert nested.error["type"] == "ToolInputError" and nested.error["field"] == "payload.a"
    unknown = rt.call("no_such_tool", {"a": 1})
    assert unknown.error["type"] == "UnknownToolError" and "fetch_url" in unknown.error["message"]
    commit(engine, rt)
    rows = ledger(engine, run_id)
    assert {r["tool"] for r in rows} == {"search_corpus", "fetch_url", "notify", "no_such_tool"}
    assert all(r["status"] == "failed" and r["attempts"] == 0 for r in rows)


def test_irreversible_without_dedupe_found_started_is_unknown_not_refired(engine, run_id):
    send, calls = counting_tool("send_sms", Effect.IRREVERSIBLE, dedupes=False)
    registry = ToolRegistry([send])
    crashed = ToolRuntime(engine, registry, run_id=run_id, seq=2)
    assert crashed.call("send_sms", {"text": "hi"}).ok
    # ... and the worker dies before the step commits: nothing recorded.
    assert ledger(engine, run_id)[0]["status"] == "started"

    for _ in range(2):  # the retried step, then once more
        rt = ToolRuntime(engine, registry, run_id=run_id, seq=2)
        out = rt.call("send_sms", {"text": "hi"})
        assert out.status == "unknown" and out.error["type"] == "OutcomeUnknown"
        assert "operator" in out.as_message()["error"]["message"]
        commit(engine, rt)
    assert len(calls) == 1
    [row] = ledger(engine, run_id)
    assert (row["status"], row["attempts"]) == ("unknown", 1)


def test_irreversible_without_dedupe_is_retried_only_when_surely_not_applied(engine, run_id):
    def lost_answer(n):
        raise TransientToolError("read timeout", maybe_applied=True)

    send, calls = counting_tool("send_sms", Effect.IRREVERSIBLE, fail_with=lost_answer)
    rt = ToolRuntime(engine, ToolRegistry([send]), ToolConfig(**FAST), run_id=run_id, seq=2)
    out = rt.call("send_sms", {"text": "hi"})
    assert out.status == "unknown" and out.error["cause"]["message"] == "read timeout" and len(calls) == 1

    def refused_once(n):
        if n == 1:
            raise TransientToolError("connection refused", maybe_applied=False)

    send2, calls2 = counting_tool("send_fax", Effect.IRREVERSIBLE, fail_with=refused_once)
    rt2 = ToolRuntime(engine, ToolRegistry([send2]), ToolConfig(**FAST), run_id=run_id, seq=2)
    assert rt2.call("send_fax", {"text": "hi"}).ok and len(calls2) == 2


def test_lost_attempt_of_a_write_tool_executes_again_once(engine, run_id):
    registry = builtin_registry()
    crashed = ToolRuntime(engine, registry, run_id=run_id, seq=2)
    first = crashed.call("save_note", {"text": "asyncio.timeout cancels the task", "citations": ["doc:1"]})
    assert first.ok  # effect done, answer never recorded
    rt = ToolRuntime(engine, registry, run_id=run_id, seq=2)
    second = rt.call("save_note", {"text": "asyncio.timeout cancels the task", "citations": ["doc:1"]})
    assert second.ok and not second.replayed and second.result == first.result
    commit(engine, rt)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM notes WHERE run_id = :r"), dict(r=run_id)).scalar() == 1
    [row] = ledger(engine, run_id)
    assert (row["status"], row["attempts"]) == ("succeeded", 2)


def test_rolled_back_commit_leaves_started_and_the_rerun_executes(engine, run_id):
    echo, calls = counting_tool("echo", Effect.READ)
    registry = ToolRegistry([echo])
    rt = ToolRuntime(engine, registry, run_id=run_id, seq=2)
    assert rt.call("echo", {"text": "x"}).ok
    with pytest.raises(RuntimeError):
        with engine.begin() as conn:
            for record in rt.records():
                record(conn)
            raise RuntimeError("the checkpoint append failed")
    assert ledger(engine, run_id)[0]["status"] == "started"
    rerun = ToolRuntime(engine, registry, run_id=run_id, seq=2)
    out = rerun.call("echo", {"text": "x"})
    assert out.ok and not out.replayed and len(calls) == 2
    commit(engine, rerun)
    assert ledger(engine, run_id)[0]["status"] == "succeeded"


def test_notify_under_faults_and_crashes_reaches_the_receiver_once_per_call(engine, run_id, server):
    cfg = ToolConfig(net_allow=server.allow, fault_rate=0.3, fault_seed=7, retries=12, **FAST)
    registry = builtin_registry()
    owners = itertools.count()
    keys = {}
    for i in range(10):
        args = {"url": f"{server.base}/hook", "payload": {"call": i, "text": f"step {i} done"}}
        seq = 2 + i
        crashed = ToolRuntime(engine, registry, cfg, run_id=run_id, seq=seq, owner=f"p{next(owners)}")
        first = crashed.call("notify", args)  # the worker dies before its step commits
        retried = ToolRuntime(engine, registry, cfg, run_id=run_id, seq=seq, owner=f"p{next(owners)}")
        out = retried.call("notify", args)
        assert out.ok, out.error
        assert out.key == first.key
        keys[i] = out.key
        commit(engine, retried)

    by_call = server.keys_by("call")
    assert {i: by_call[i] for i in range(10)} == {i: {keys[i]} for i in range(10)}
    assert len(server.applied) == 10 and len(set(keys.values())) == 10
    rows = ledger(engine, run_id)
    assert [r["status"] for r in rows] == ["succeeded"] * 10
    assert sorted(r["key"] for r in rows) == sorted(keys.values())
    # The faults did strike: more requests reached the receiver than it applied, and attempts show retries.
    assert len(server.requests) > 10 + 10  # two runs per call at least, plus re-sends after lost answers
    assert sum(r["attempts"] for r in rows) > 20


class FileArtifacts:
    """Files in a directory behind the runtime's artifact seam (until checkpoint.artifacts is wired in)."""

    def __init__(self, root):
        self.root = root

    def put(self, data: bytes, media_type: str) -> dict:
        name = uuid.uuid4().hex
        (self.root / name).write_bytes(data)
        return {"path": name, "media_type": media_type, "size": len(data)}

    def get(self, pointer: dict) -> bytes:
        return (self.root / pointer["path"]).read_bytes()


def test_large_results_go_to_the_artifact_store_and_replay_from_it(engine, run_id, tmp_path):
    echo, calls = counting_tool("echo", Effect.READ)
    registry, store = ToolRegistry([echo]), FileArtifacts(tmp_path)
    cfg = ToolConfig(inline_limit=100)
    rt = ToolRuntime(engine, registry, cfg, run_id=run_id, seq=2, artifacts=store)
    small = rt.call("echo", {"text": "s"})
    big = rt.call("echo", {"text": "b" * 50, "n": 4})
    commit(engine, rt)
    rows = {r["key"]: r for r in ledger(engine, run_id)}
    assert rows[small.key]["result"] == small.result and rows[small.key]["result_artifact"] is None
    assert rows[big.key]["result"] is None and rows[big.key]["result_artifact"]["size"] > 100
    replay = ToolRuntime(engine, registry, cfg, run_id=run_id, seq=2, artifacts=store).call("echo", {"text": "b" * 50, "n": 4})
    assert replay.replayed and replay.result == big.result == {"text": "b" * 200, "execution": 1}
    assert len(calls) == 2

"""The research job end to end: real workers, the real stdlib corpus, offline and LLM reasoners."""

from __future__ import annotations

import signal

import pytest
from sqlalchemy import text

from tests.support.fake_llm import tool_call
from tests.support.harness import assert_contiguous, cli, cli_json, count_runs, wait_for
from tools.corpus import get_passage


@pytest.fixture
def corpus_env(fast_env, corpus_database_url):
    """The test's environment on a database of its own that already holds the stdlib corpus."""
    return {**fast_env, "STEPLOG_DATABASE_URL": corpus_database_url}


def test_bad_research_input_exits_2_and_writes_nothing(corpus_env):
    cases = [
        (["research", ""], "question"),
        (["research", "   "], "question: Value error, must not be blank"),
        (["research", "x" * 2001], "question: String should have at most 2000 characters"),
        (["research", "how to read a CSV file", "--corpus", "nope"], "unknown corpus 'nope'"),
        (["research", "how to read a CSV file", "--max-steps", "1"], "max_steps"),
    ]
    for args, message in cases:
        res = cli(corpus_env, *args)
        assert res.returncode == 2, (args, res.stderr)
        assert message in res.stderr, (args, res.stderr)
    assert count_runs(corpus_env) == 0


def test_offline_research_run_cites_the_module_through_real_workers(corpus_env, tmp_path):
    from tests.support.harness import Fleet
    from tests.support.toolsupport import LocalHTTPServer

    hook = LocalHTTPServer().__enter__()
    env = {**corpus_env, "STEPLOG_NET_ALLOW": hook.allow}
    fleet = Fleet(env, tmp_path)
    try:
        fleet.start()
        fleet.start()
        run_id = cli_json(env, "research", "how to run a subprocess with a timeout", "--json",
                          "--notify-url", f"{hook.base}/hook")["run_id"]
        run = fleet.wait_finished(run_id, timeout=120)
        assert run["status"] == "succeeded", run["error"]
        report = run["result"]["report"]
        assert "[subprocess" in report
        engine = fleet.engine
        for c in run["result"]["citations"]:
            assert get_passage(engine, c["corpus"], c["doc_id"], c["ordinal"]) is not None
        events = fleet.events(run_id)
        assert_contiguous(events)
        kinds = [e["payload"].get("kind") for e in events[1:]]
        assert kinds[0] == "reason" and kinds[1] == "tool"  # one reasoning step, then one tool step
        assert {e["worker"] for e in events[1:]} == {"w1@test", "w2@test"}
        # The documents the question needs were read at once: a fan-out of read_document child steps.
        kids = cli_json(corpus_env, "show", run_id, "--children", "--json")
        assert len(kids) > 1 and {k["workflow"] for k in kids} == {"tool_call"}
        assert {k["status"] for k in kids} == {"succeeded"} and "joined" in [e["type"] for e in events]
        waited = cli(env, "research", "how to read a CSV file", "--wait")  # follows, then prints the report
        assert waited.returncode == 0, waited.stderr
        assert "step   2 step       search_corpus" in waited.stdout and "[csv" in waited.stdout
        printed = cli(corpus_env, "report", run_id)
        assert printed.returncode == 0 and "[subprocess" in printed.stdout
        tools = {row["tool"] for row in cli_json(corpus_env, "tools", run_id, "--json")}
        assert {"search_corpus", "read_document", "save_note", "publish_report", "reasoner", "notify"} <= tools
        # The webhook heard about the finished report once, with the call's idempotency key.
        assert [p["run_id"] for _, p in hook.requests] == [run_id]
        assert hook.requests[0][0] and run["result"]["notified"] == "succeeded"
    finally:
        fleet.close()
        hook.__exit__(None, None, None)


def test_faults_and_a_kill_do_not_change_the_report(corpus_env, tmp_path):
    from tests.support.harness import Fleet

    question = "how to compute a SHA-256 hash"
    calm = Fleet(corpus_env, tmp_path / "calm")
    try:
        calm.start()
        reference = calm.wait_finished(calm.submit("research", {"question": question}), timeout=120)
    finally:
        calm.close()

    # 8 retries: a call whose 9 executions all fail (p = 0.3**9 = 2e-5) would legitimately change the
    # report; at 0.3, the run's tool calls all went without a fault (the test proves nothing) with
    # p = 0.7**calls (calls are printed on failure).
    stormy_env = {**corpus_env, "STEPLOG_TOOL_FAULT_RATE": "0.3", "STEPLOG_TOOL_RETRIES": "8"}
    storm = Fleet(stormy_env, tmp_path / "storm")
    try:
        victim = storm.start()
        storm.start()
        run_id = storm.submit("research", {"question": question})
        wait_for(lambda: len(storm.events(run_id)) >= 4, what="the run to get going")
        _, killed_seq = storm.kill_mid_step(victim, [run_id])
        run = storm.wait_finished(run_id, timeout=120)
        # The kill interrupted a step (lost on the victim, committed elsewhere) ...
        killed = [(a["worker"], a["outcome"]) for a in storm.attempts(run_id) if a["seq"] == killed_seq]
        assert killed[0] == (victim.node, "lost") and killed[-1][1] == "committed", killed
        # ... and faults were injected: some tool call took more than one execution.
        with storm.engine.connect() as conn:
            calls, executions = conn.execute(
                text("SELECT count(*), sum(attempts) FROM tool_ledger WHERE run_id = :r"), dict(r=run_id)
            ).one()
        assert executions > calls, (calls, executions)
    finally:
        storm.close()
    assert run["status"] == "succeeded"
    assert run["result"]["report"] == reference["result"]["report"]
    assert "[hashlib" in run["result"]["report"]


def _llm_env(env, fake_llm, **extra):
    return {**env, "STEPLOG_LLM_BASE_URL": fake_llm.url, "STEPLOG_LLM_MODEL": "fake-model",
            "STEPLOG_LLM_API_KEY": "sk-test-secret-key", "STEPLOG_LLM_MAX_RETRIES": "1", **extra}


def test_llm_research_with_a_correction_completes(corpus_env, fake_llm, tmp_path):
    from tests.support.harness import Fleet

    fake_llm.script(
        tool_call("search_corpus", {"query": "read CSV file", "corpus": "stdlib"}),
        tool_call("search_corpus", "{not json"),  # malformed arguments: corrected, not fatal
        tool_call("save_note", {"text": "csv.DictReader reads rows as dicts.", "citations": ["stdlib:csv.DictReader#0"]}),
        tool_call("final_report", {"markdown": "Use the csv module [csv.DictReader].", "citations": ["stdlib:csv.DictReader#0"]}),
    )
    env = _llm_env(corpus_env, fake_llm)
    fleet = Fleet(env, tmp_path)
    try:
        fleet.start()
        run_id = fleet.submit("research", {"question": "how to read a CSV file"})
        run = fleet.wait_finished(run_id, timeout=60)
        assert run["status"] == "succeeded", run["error"]
        assert run["result"]["report"] == "Use the csv module [csv.DictReader]."
        assert run["result"]["tokens"]["total_tokens"] > 0
        refused = [e for e in fleet.events(run_id) if e["payload"].get("refused")]
        assert len(refused) == 1
        # The correction went back to the model in the next request.
        assert any("arguments" in m.get("content", "").lower() or "json" in m.get("content", "").lower()
                   for m in fake_llm.chat_requests[2].messages if m["role"] in ("user", "system", "tool"))
        shown = cli(env, "show", run_id, "--json").stdout + "".join(w.log() for w in fleet.workers)
        assert "sk-test-secret-key" not in shown
    finally:
        fleet.close()


def test_a_model_that_never_answers_usably_fails_the_run_clearly(corpus_env, fake_llm, tmp_path):
    from tests.support.harness import Fleet

    fake_llm.script(default=tool_call("no_such_tool", {"x": 1}))
    fleet = Fleet(_llm_env(corpus_env, fake_llm, STEPLOG_LLM_MAX_CORRECTIONS="2"), tmp_path)
    try:
        fleet.start()
        run = fleet.wait_finished(fleet.submit("research", {"question": "how to read a CSV file"}), timeout=60)
    finally:
        fleet.close()
    assert run["status"] == "failed"
    assert run["error"]["type"] == "FailRun"
    assert "unusable answers" in run["error"]["message"] and "no_such_tool" in run["error"]["message"]
    assert len(fake_llm.chat_requests) == 3  # the first answer and two corrections, then no more


def test_worker_killed_after_the_model_answered_does_not_ask_again(corpus_env, fake_llm, tmp_path):
    from tests.support.harness import Fleet

    fake_llm.script(
        tool_call("search_corpus", {"query": "read CSV file", "corpus": "stdlib"}),
        tool_call("final_report", {"markdown": "Use [csv].", "citations": ["stdlib:csv#0"]}),
    )
    env = _llm_env(corpus_env, fake_llm)
    fleet = Fleet(env, tmp_path)
    try:
        doomed = fleet.start(env={**env, "STEPLOG_FAULT_AFTER_DECISION": "1"})
        run_id = fleet.submit("research", {"question": "how to read a CSV file"})
        doomed.proc.wait(timeout=60)  # it records the model's answer, then dies before committing
        assert doomed.proc.returncode == -signal.SIGKILL
        assert len(fake_llm.chat_requests) == 1
        fleet.start()
        run = fleet.wait_finished(run_id, timeout=60)
    finally:
        fleet.close()
    assert run["status"] == "succeeded" and run["result"]["report"] == "Use [csv]."
    assert len(fake_llm.chat_requests) == 2  # one per reasoning step; none repeated
    assert fake_llm.repeated_requests() == []
    first = fleet.events(run_id)[1]
    assert first["attempt"] == 2 and first["payload"]["replayed"] is True

"""The LLM reasoner against a real HTTP server (tests/support/fake_llm.py) speaking the chat-completions API."""

from __future__ import annotations

import json
import logging
import traceback

import pytest

from tasks.reasoning.base import FinalReport, Observation, ResearchContext, ToolCall
from tasks.reasoning.errors import InvalidDecision, ReasonerError
from tasks.reasoning.llm import InvalidModelReply, LLMEndpointError, LLMReasoner
from tasks.reasoning.prompt import FINAL_REPORT
from tasks.reasoning.toolspec import ToolSpec, tool_specs
from tests.support.fake_llm import Reply, error, malformed, text, tool_call
from tools.registry import builtin_registry
from workers.settings import SettingsError, load_settings

KEY = "sk-test-9f8e7d6c5b4a39281706"
SPECS = tool_specs(builtin_registry())


def reasoner(url: str, **kw) -> LLMReasoner:
    kw = {"timeout": 5.0, "max_retries": 2, "backoff_seconds": 0.01, "backoff_max_seconds": 0.05, **kw}
    api_key = kw.pop("api_key", KEY)
    return LLMReasoner(url, "fake-model", api_key, SPECS, **kw)


def context(**kw) -> ResearchContext:
    base = dict(
        run_id="run-1", question="How do I pretty-print JSON?", corpus="stdlib",
        max_steps=20, steps_used=0, observations=[], notes=[],
    )
    return ResearchContext(**{**base, **kw})


# --- decisions -----------------------------------------------------------------------------------


def test_tool_call_becomes_a_validated_tool_call(fake_llm):
    fake_llm.script(tool_call("search_corpus", {"query": "json indent", "limit": "3"}, call_id="call_abc",
                              content="Let me search.",
                              usage={"prompt_tokens": 812, "completion_tokens": 31, "total_tokens": 843}))
    decision = reasoner(fake_llm.url).decide(context())

    assert decision.action == ToolCall(
        tool="search_corpus", args={"query": "json indent", "corpus": "stdlib", "limit": 3},
        call_id="call_abc", thought="Let me search.",
    )
    assert decision.usage == {"prompt_tokens": 812, "completion_tokens": 31, "total_tokens": 843}
    rec = decision.record
    assert rec["model"] == "fake-model" and rec["finish_reason"] == "tool_calls" and rec["attempts"] == 1
    assert rec["message"]["tool_calls"][0]["function"]["name"] == "search_corpus"
    assert rec["usage"] == decision.usage and rec["latency_s"] >= 0
    json.dumps(rec)  # the checkpoint stores it as JSON

    (req,) = fake_llm.chat_requests
    assert req.body["model"] == "fake-model" and req.body["tool_choice"] == "auto"
    assert req.tool_names == [s.name for s in SPECS] + [FINAL_REPORT]
    assert {"search_corpus", "save_note"} <= set(req.tool_names)
    (search,) = [t["function"] for t in req.body["tools"] if t["function"]["name"] == "search_corpus"]
    assert search["parameters"]["required"] == ["query"]  # the input model's JSON schema
    assert req.headers["authorization"] == f"Bearer {KEY}"


def test_final_report_tool_becomes_a_final_report(fake_llm):
    fake_llm.script(tool_call(FINAL_REPORT, {
        "markdown": "Use `json.dumps(obj, indent=2)` [json.dumps].",
        "citations": [{"doc_id": "json.dumps", "corpus": "stdlib", "ordinal": 0}, "json.dump", "stdlib:json.load#2"],
    }))
    action = reasoner(fake_llm.url).decide(context()).action
    assert action == FinalReport(
        markdown="Use `json.dumps(obj, indent=2)` [json.dumps].",
        citations=[{"doc_id": "json.dumps", "corpus": "stdlib", "ordinal": 0}, {"doc_id": "json.dump"},
                   {"doc_id": "json.load", "corpus": "stdlib", "ordinal": 2}],
    )


def test_plain_text_answer_is_the_final_report_with_its_cited_ids(fake_llm):
    fake_llm.script(text("<think>easy</think>Call [json.dumps] with indent; see [the docs](https://x) and [json.dump]."))
    action = reasoner(fake_llm.url).decide(context()).action
    assert isinstance(action, FinalReport)
    assert action.markdown == "Call [json.dumps] with indent; see [the docs](https://x) and [json.dump]."
    assert action.citations == [{"doc_id": "json.dumps"}, {"doc_id": "json.dump"}]


def test_several_tool_calls_take_the_first_and_note_the_rest(fake_llm):
    fake_llm.script(tool_call("search_corpus", {"query": "a"}, more=[("search_corpus", {"query": "b"})]))
    decision = reasoner(fake_llm.url).decide(context())
    assert decision.action.args["query"] == "a"
    assert decision.record["ignored_tool_calls"] == ["search_corpus"]


# --- answers the model must correct -------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (tool_call("search_corpus", '{"query": "json", "limit": 3'), ["search_corpus", "not valid JSON"]),
        (tool_call("search_corpus", '["json"]'), ["search_corpus", "must be a JSON object"]),
        (tool_call("read_minds", {"who": "me"}), ["unknown tool 'read_minds'", "search_corpus", FINAL_REPORT]),
        (tool_call("search_corpus", {"limit": 500}), ["'search_corpus'", "query: Field required", "limit: "]),
        (tool_call(FINAL_REPORT, {"citations": []}), [f"'{FINAL_REPORT}'", "markdown: Field required"]),
        ({"id": "x", "object": "chat.completion", "choices": []}, ["no choices"]),
        (text("   "), ["empty"]),
    ],
    ids=["malformed-json", "not-an-object", "unknown-tool", "invalid-args", "report-without-markdown",
         "no-choices", "empty"],
)
def test_unusable_answers_raise_invalid_decision_naming_the_problem(fake_llm, reply, expected):
    fake_llm.script(reply)
    with pytest.raises(InvalidDecision) as info:
        reasoner(fake_llm.url).decide(context())
    for fragment in expected:
        assert fragment in str(info.value)
    assert len(fake_llm.chat_requests) == 1  # a bad answer is the workflow's to correct, not retried here


def test_invalid_decision_keeps_the_exchange_for_the_checkpoint(fake_llm):
    fake_llm.script(tool_call("search_corpus", {"query": ""},
                              usage={"prompt_tokens": 50, "completion_tokens": 5, "total_tokens": 55}))
    with pytest.raises(InvalidModelReply) as info:
        reasoner(fake_llm.url).decide(context())
    assert "query: String should have at least 1 character" in str(info.value)
    assert info.value.usage["total_tokens"] == 55
    assert info.value.record["message"]["tool_calls"][0]["function"]["name"] == "search_corpus"
    assert info.value.record["refused"] == str(info.value)


# --- the endpoint failing -----------------------------------------------------------------------


def test_rate_limit_then_success_is_retried(fake_llm):
    fake_llm.script(error(429, "slow down", retry_after=0), tool_call("search_corpus", {"query": "json"}))
    decision = reasoner(fake_llm.url).decide(context())
    assert decision.action.tool == "search_corpus"
    assert decision.record["attempts"] == 2
    first, second = fake_llm.chat_requests
    assert first.body == second.body  # the same request, sent again


def test_timeout_and_malformed_body_are_retried(fake_llm):
    fake_llm.script(Reply(body=text("late"), delay=1.0), malformed(), tool_call("search_corpus", {"query": "json"}))
    decision = reasoner(fake_llm.url, timeout=0.3).decide(context())
    assert decision.action.tool == "search_corpus"
    assert len(fake_llm.chat_requests) == 3


def test_persistent_server_errors_end_in_reasoner_error_after_bounded_retries(fake_llm):
    fake_llm.script(default=error(500, "upstream exploded"))  # every request
    with pytest.raises(ReasonerError) as info:
        reasoner(fake_llm.url, max_retries=2).decide(context())
    assert not isinstance(info.value, InvalidDecision)
    assert "HTTP 500" in str(info.value) and "upstream exploded" in str(info.value) and "3 attempts" in str(info.value)
    assert info.value.retryable
    assert len(fake_llm.chat_requests) == 3


def test_retries_are_bounded_by_time_too(fake_llm):
    fake_llm.script(default=error(503, "busy", retry_after=30))  # asks for a wait beyond the time budget
    with pytest.raises(LLMEndpointError, match="HTTP 503"):
        reasoner(fake_llm.url, max_retries=10, retry_seconds=5).decide(context())
    assert len(fake_llm.chat_requests) == 1


def test_connection_refused_ends_in_reasoner_error(fake_llm):
    url = fake_llm.url
    fake_llm.close()
    with pytest.raises(LLMEndpointError, match="connection failed") as info:
        reasoner(url, max_retries=1).decide(context())
    assert "2 attempts" in str(info.value)


def test_bad_key_fails_at_once_without_the_key_in_the_message(fake_llm):
    # Some servers echo the key they refused; it must not travel on in our error.
    fake_llm.script(error(401, f"Incorrect API key provided: {KEY}"))
    with pytest.raises(ReasonerError) as info:
        reasoner(fake_llm.url).decide(context())
    message = str(info.value)
    assert "rejected the API key" in message and "HTTP 401" in message
    assert KEY not in message and KEY not in repr(info.value)
    assert info.value.retryable is False
    assert len(fake_llm.chat_requests) == 1


def test_key_never_appears_in_repr_record_or_logs(fake_llm, caplog):
    caplog.set_level(logging.DEBUG)  # every logger, httpx and httpcore included
    fake_llm.script(error(429, f"key {KEY} is over quota", retry_after=0),
                    tool_call("search_corpus", {"query": "json"}), error(401, f"bad key {KEY}"))
    r = reasoner(fake_llm.url)
    decision = r.decide(context())
    with pytest.raises(ReasonerError):
        r.decide(context())

    assert fake_llm.chat_requests[0].headers["authorization"] == f"Bearer {KEY}"  # it was used
    assert KEY not in repr(r) and KEY not in str(r)
    assert KEY not in json.dumps(decision.record) and KEY not in repr(decision)
    assert caplog.records, "expected log output to check"
    assert any("retrying" in rec.getMessage() for rec in caplog.records)
    assert KEY not in caplog.text
    assert KEY not in " ".join(str(rec.args) for rec in caplog.records)


def test_key_is_absent_from_the_whole_traceback_of_a_failure(fake_llm):
    fake_llm.script(default=error(429, f"quota exceeded for key {KEY}", retry_after=0))
    with pytest.raises(LLMEndpointError) as info:
        reasoner(fake_llm.url, max_retries=1).decide(context())
    assert "HTTP 429" in str(info.value) and "quota exceeded" in str(info.value)
    assert info.value.__cause__ is not None  # the chained errors are printed too
    assert KEY not in "".join(traceback.format_exception(info.value))


def test_no_key_sends_no_authorization_header(fake_llm):
    fake_llm.script(tool_call("search_corpus", {"query": "json"}))
    reasoner(fake_llm.url, api_key=None).decide(context())
    assert "authorization" not in fake_llm.chat_requests[0].headers


# --- the messages sent --------------------------------------------------------------------------


def test_messages_pair_tool_calls_with_their_results(fake_llm):
    observations = [
        Observation(ToolCall("search_corpus", {"query": "json"}, call_id="call_A", thought="search first"),
                    ok=True, result={"results": [{"doc_id": "json.dumps", "passage": "indent=..."}]}),
        Observation(ToolCall("fetch_url", {"url": "https://example.org"}), ok=False, error="host refused"),
        Observation(ToolCall("save_note", {"text": "use indent"}, call_id="call_A"), ok=True,
                    result={"note_id": "n1"}),  # a server that reuses ids: must not pair twice
    ]
    ctx = context(
        observations=observations, steps_used=7, summary="Searched twice for 'pretty print'.",
        notes=[{"text": "json.dumps takes indent", "citations": [{"doc_id": "json.dumps", "corpus": "stdlib"}]}],
        last_error="unknown tool 'grep'", corrections=1,
    )
    fake_llm.script(tool_call(FINAL_REPORT, {"markdown": "Use indent [json.dumps]."}))
    reasoner(fake_llm.url).decide(ctx)

    messages = fake_llm.chat_requests[0].messages
    assert [m["role"] for m in messages] == [
        "system", "user", "assistant", "tool", "assistant", "tool", "assistant", "tool", "user",
    ]
    assert "[doc_id]" in messages[0]["content"]
    task = messages[1]["content"]
    for fragment in ("How do I pretty-print JSON?", "stdlib", "7 of 20", "Searched twice", "json.dumps takes indent"):
        assert fragment in task

    ids = []
    for obs, call_msg, result_msg in zip(observations, messages[2:8:2], messages[3:8:2], strict=True):
        (call,) = call_msg["tool_calls"]
        assert call["type"] == "function" and call["function"]["name"] == obs.call.tool
        assert json.loads(call["function"]["arguments"]) == obs.call.args
        assert result_msg["tool_call_id"] == call["id"]
        ids.append(call["id"])
        expected = obs.result if obs.ok else {"error": obs.error}
        assert json.loads(result_msg["content"]) == expected
    assert ids[0] == "call_A" and len(set(ids)) == 3 and all(ids)
    assert messages[2]["content"] == "search first"
    assert "unknown tool 'grep'" in messages[-1]["content"]


def test_same_context_sends_the_same_request(fake_llm):
    ctx = context(observations=[Observation(ToolCall("search_corpus", {"query": "x"}), ok=True, result={"r": 1})])
    fake_llm.script(tool_call("search_corpus", {"query": "a"}), tool_call("search_corpus", {"query": "a"}))
    r = reasoner(fake_llm.url)
    r.decide(ctx)
    r.decide(ctx)
    first, second = fake_llm.chat_requests
    assert first.body == second.body
    assert fake_llm.repeated_requests() == [second]


def test_long_tool_results_are_cut(fake_llm):
    ctx = context(observations=[Observation(ToolCall("search_corpus", {"query": "x"}), ok=True, result="y" * 5000)])
    fake_llm.script(text("done"))
    reasoner(fake_llm.url, max_result_chars=1000).decide(ctx)
    content = fake_llm.chat_requests[0].messages[3]["content"]
    assert content.startswith("y" * 1000) and "4000 more characters" in content and len(content) < 1100


# --- construction and settings ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"base_url": "localhost:11434"}, "base_url"),
        ({"base_url": "https://user:pw@api.example.com/v1"}, "credentials"),
        ({"model": " "}, "model"),
        ({"tools": [ToolSpec(FINAL_REPORT, "x", {"type": "object"})]}, FINAL_REPORT),
        ({"tools": [SPECS[0], SPECS[0]]}, "twice"),
        ({"timeout": 0}, "timeout"),
        ({"max_retries": -1}, "max_retries"),
        ({"extra_body": {"model": "other"}}, "extra_body"),
    ],
)
def test_bad_configuration_is_refused_with_a_clear_message(kwargs, fragment):
    args = {"base_url": "http://127.0.0.1:1/v1", "model": "m", "api_key": KEY, "tools": SPECS, **kwargs}
    with pytest.raises(ValueError, match=fragment) as info:
        LLMReasoner(**args)
    assert KEY not in str(info.value)


def test_base_url_may_end_in_a_slash_or_the_endpoint(fake_llm):
    fake_llm.script(text("a"), text("b"))
    for url in (fake_llm.url + "/", fake_llm.url + "/chat/completions"):
        assert isinstance(reasoner(url).decide(context()).action, FinalReport)
    assert [r.path for r in fake_llm.chat_requests] == ["/v1/chat/completions"] * 2


def test_settings_choose_the_reasoner_and_hide_the_key():
    assert load_settings().effective_reasoner == "offline"
    s = load_settings(llm_base_url="http://localhost:11434/v1", llm_model="qwen2.5:7b", llm_api_key=KEY)
    assert s.effective_reasoner == "llm" and s.llm_max_corrections == 3
    assert s.llm_api_key.get_secret_value() == KEY and KEY not in repr(s)
    assert load_settings(reasoner="offline", llm_base_url="http://x/v1").effective_reasoner == "offline"
    with pytest.raises(SettingsError, match="STEPLOG_LLM_BASE_URL"):
        load_settings(reasoner="llm")
    with pytest.raises(SettingsError, match="STEPLOG_LLM_MODEL"):
        load_settings(llm_base_url="http://localhost:8000/v1")

"""The LLM reasoner against a real HTTP server (tests/support/fake_llm.py) speaking the chat-completions API."""

from __future__ import annotations

import json
import logging
import time
import traceback

import openai
import pytest

from tasks.reasoning.base import FinalReport, Observation, ResearchContext, ToolCall
from tasks.reasoning.errors import InvalidDecision, ReasonerError
from tasks.reasoning.llm import InvalidModelReply, LLMEndpointError, LLMReasoner
from tasks.reasoning.prompt import FINAL_REPORT
from tasks.reasoning.toolspec import ToolSpec, tool_specs
from tests.support.fake_llm import (
    Reply,
    error,
    malformed,
    stream_chunks,
    stream_error,
    text,
    tool_call,
)
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


# --- the SDK, and streaming ---------------------------------------------------------------------


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and every exception it chains, as a traceback would print them or a debugger reach them."""
    out: list[BaseException] = []
    while exc is not None and exc not in out:
        out.append(exc)
        exc = exc.__cause__ or exc.__context__
    return out


def _decide_both_ways(url: str, ctx: ResearchContext, **kw):
    """The plain decision, then the streamed one (with the text deltas it sent)."""
    plain = reasoner(url, **kw).decide(ctx)
    deltas: list[str] = []
    streamed = reasoner(url, **kw).decide(ctx, on_delta=deltas.append)
    return plain, streamed, deltas


def test_requests_go_through_the_openai_sdk(fake_llm):
    fake_llm.script(text("done"))
    reasoner(fake_llm.url).decide(context())
    (req,) = fake_llm.chat_requests
    assert req.headers["user-agent"].startswith("OpenAI/Python")
    assert req.headers["x-stainless-retry-count"] == "0"  # the SDK's own retries are off: ours do it
    assert req.body["stream"] is False and "stream_options" not in req.body
    assert "openai-organization" not in req.headers and "openai-project" not in req.headers


REPLIES = {
    "tool-call": lambda: tool_call("search_corpus", {"query": "json indent", "limit": 3}, content="Let me search.",
                                   usage={"prompt_tokens": 812, "completion_tokens": 31, "total_tokens": 843}),
    "final-report": lambda: tool_call(FINAL_REPORT, {"markdown": "Use `json.dumps(obj, indent=2)` [json.dumps].",
                                                     "citations": ["json.dumps"]}),
    "plain-text": lambda: text("<think>easy</think>Call [json.dumps] with indent; see [json.dump]."),
    "several-calls": lambda: tool_call("search_corpus", {"query": "a"}, more=[("save_note", {"text": "b"})]),
    "arguments-object": lambda: tool_call("search_corpus", {"query": "json"}),  # made an object below
}


@pytest.mark.parametrize("name", list(REPLIES))
def test_streamed_and_plain_answers_give_equal_decisions(fake_llm, name):
    reply = REPLIES[name]()
    if name == "arguments-object":  # Ollama's native shape: the arguments as an object, not a string
        reply["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] = {"query": "json"}
    fake_llm.script(reply, reply)
    plain, streamed, deltas = _decide_both_ways(fake_llm.url, context())

    assert streamed.action == plain.action
    assert streamed.usage == plain.usage == reply["usage"]  # the usage chunk of the stream
    for key in ("message", "finish_reason", "response_id", "served_by", "usage", "ignored_tool_calls"):
        assert streamed.record.get(key) == plain.record.get(key), key
    assert streamed.record["streamed"] is True and "streamed" not in plain.record
    assert "".join(deltas) == (reply["choices"][0]["message"].get("content") or "")
    if name == "tool-call":
        assert len(deltas) > 1  # in pieces, as they arrived

    first, second = fake_llm.chat_requests
    assert not first.streamed and second.streamed
    assert second.body["stream_options"] == {"include_usage": True}
    assert {k: v for k, v in second.body.items() if k not in ("stream", "stream_options")} == \
        {k: v for k, v in first.body.items() if k != "stream"}


def test_stream_assembles_interleaved_tool_call_deltas(fake_llm):
    # Two calls whose argument pieces arrive interleaved, the name once, the id once (as vLLM may send).
    body = tool_call("search_corpus", {"query": "json"}, call_id="call_A", more=[("save_note", {"text": "n"})])
    chunks = stream_chunks(body, piece=2)
    head, calls, tail = chunks[:1], [c for c in chunks if c["choices"] and "tool_calls" in c["choices"][0]["delta"]], \
        [c for c in chunks if not c["choices"] or c["choices"][0]["finish_reason"]]
    by_index = {0: [c for c in calls if c["choices"][0]["delta"]["tool_calls"][0]["index"] == 0],
                1: [c for c in calls if c["choices"][0]["delta"]["tool_calls"][0]["index"] == 1]}
    interleaved = [c for pair in zip(by_index[0], by_index[1]) for c in pair]
    n = min(len(by_index[0]), len(by_index[1]))
    interleaved += by_index[0][n:] + by_index[1][n:]
    raw = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in head + interleaved + tail)
    fake_llm.script(Reply(body=raw + b"data: [DONE]\n\n", headers={"Content-Type": "text/event-stream"}))

    decision = reasoner(fake_llm.url).decide(context(), on_delta=lambda _: None)
    assert decision.action == ToolCall("search_corpus", {"query": "json", "corpus": "stdlib", "limit": 5},
                                       call_id="call_A")
    assert decision.record["ignored_tool_calls"] == ["save_note"]
    calls = decision.record["message"]["tool_calls"]
    assert [json.loads(c["function"]["arguments"]) for c in calls] == [{"query": "json"}, {"text": "n"}]


def test_stream_without_usage_when_the_server_is_not_asked(fake_llm):
    fake_llm.script(text("done [json.dumps]"))
    decision = reasoner(fake_llm.url, stream=True, stream_usage=False).decide(context())
    assert decision.action.markdown == "done [json.dumps]"
    assert decision.usage == {} and decision.record["usage"] == {}
    (req,) = fake_llm.chat_requests
    assert req.streamed and "stream_options" not in req.body


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_malformed_tool_call_is_a_correction_then_success(fake_llm, stream):
    fake_llm.script(tool_call("search_corpus", '{"query": "json", "limit": 3'),
                    tool_call("search_corpus", {"query": "json", "limit": 3}))
    r = reasoner(fake_llm.url, stream=stream)
    with pytest.raises(InvalidModelReply) as info:
        r.decide(context())
    assert "not valid JSON" in str(info.value) and info.value.usage["total_tokens"] == 120
    assert info.value.record["message"]["tool_calls"][0]["function"]["arguments"] == '{"query": "json", "limit": 3'
    assert len(fake_llm.chat_requests) == 1  # not retried here: the workflow sends it back as a correction

    decision = r.decide(context(last_error=str(info.value), corrections=1))
    assert decision.action.args == {"query": "json", "corpus": "stdlib", "limit": 3}
    assert str(info.value) in fake_llm.chat_requests[1].messages[-1]["content"]


def test_streamed_rate_limit_then_success_is_retried(fake_llm):
    fake_llm.script(error(429, "slow down", retry_after=0), tool_call("search_corpus", {"query": "json"}))
    decision = reasoner(fake_llm.url).decide(context(), on_delta=lambda _: None)
    assert decision.action.tool == "search_corpus" and decision.record["attempts"] == 2
    first, second = fake_llm.chat_requests
    assert first.body == second.body and first.streamed


def test_rate_limit_waits_as_retry_after_asks(fake_llm):
    fake_llm.script(error(429, "slow down", retry_after=0.5), text("done"))
    started = time.monotonic()
    reasoner(fake_llm.url).decide(context())
    first, second = fake_llm.chat_requests
    assert second.at - first.at >= 0.5
    assert time.monotonic() - started < 5


def test_bad_key_is_not_retried_and_no_sdk_exception_travels_on(fake_llm):
    fake_llm.script(default=error(403, f"key {KEY} may not use this model"))
    with pytest.raises(LLMEndpointError) as info:
        reasoner(fake_llm.url, max_retries=3).decide(context(), on_delta=lambda _: None)
    assert "rejected the API key" in str(info.value) and "HTTP 403" in str(info.value)
    assert "not retried" in str(info.value)
    assert info.value.status == 403 and info.value.retryable is False
    assert len(fake_llm.chat_requests) == 1
    # The SDK's exceptions carry the request, Authorization header included: none is kept.
    for exc in _chain(info.value):
        assert not isinstance(exc, openai.OpenAIError)
        assert KEY not in str(exc) and KEY not in repr(exc) and KEY not in repr(vars(exc))
    assert KEY not in "".join(traceback.format_exception(info.value))


def test_no_key_and_a_server_that_wants_one_says_so(fake_llm):
    fake_llm.script(error(401, "missing bearer token"))
    with pytest.raises(LLMEndpointError, match=r"requires an API key \(none is set\)"):
        reasoner(fake_llm.url, api_key="").decide(context())
    assert "authorization" not in fake_llm.chat_requests[0].headers


def test_no_key_ignores_an_ambient_openai_key(fake_llm, monkeypatch):
    # The SDK falls back on OPENAI_API_KEY: an OpenAI key must not travel to a self-hosted server.
    monkeypatch.setenv("OPENAI_API_KEY", "sk-ambient-123456")
    monkeypatch.setenv("OPENAI_ORG_ID", "org-ambient")
    fake_llm.script(text("a"), text("b"))
    reasoner(fake_llm.url, api_key=None).decide(context())
    reasoner(fake_llm.url, api_key=None).decide(context(), on_delta=lambda _: None)
    for req in fake_llm.chat_requests:
        assert "authorization" not in req.headers and "openai-organization" not in req.headers


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_a_server_that_never_answers_fails_in_bounded_time(fake_llm, stream):
    fake_llm.script(default=Reply(body=text("never"), delay=30))
    started = time.monotonic()
    with pytest.raises(LLMEndpointError) as info:
        reasoner(fake_llm.url, timeout=0.3, max_retries=1, stream=stream).decide(context())
    assert time.monotonic() - started < 5
    assert "no answer within 0.3 s" in str(info.value) and "2 attempts" in str(info.value)
    assert info.value.retryable and not isinstance(info.value, InvalidDecision)
    assert len(fake_llm.chat_requests) == 2


def test_a_stream_that_stalls_is_retried_and_the_text_restarts(fake_llm):
    body = text("the first attempt stalls half way")
    fake_llm.script(Reply(body=body, stall_after=2, stall=5.0), text("second [json.dumps]"))  # role, one piece
    deltas: list[str] = []
    restarts: list[int] = []
    decision = reasoner(fake_llm.url, timeout=0.5).decide(
        context(), on_delta=deltas.append, on_restart=lambda: restarts.append(len(deltas)))
    assert decision.action.markdown == "second [json.dumps]" and decision.record["attempts"] == 2
    assert restarts == [1]  # after the one piece the stalled attempt sent
    assert "".join(deltas[1:]) == "second [json.dumps]"


def test_a_stream_cut_short_is_retried(fake_llm):
    fake_llm.script(Reply(body=text("cut off before the end"), cut_after=3), text("whole"))
    decision = reasoner(fake_llm.url, stream=True).decide(context())
    assert decision.action.markdown == "whole" and len(fake_llm.chat_requests) == 2


def test_a_server_that_ignores_stream_answers_json_and_the_decision_is_the_same(fake_llm):
    whole = json.dumps(text("not streamed [json.dumps]")).encode()
    fake_llm.script(Reply(body=whole, headers={"Content-Type": "application/json"}))
    deltas: list[str] = []
    decision = reasoner(fake_llm.url).decide(context(), on_delta=deltas.append)
    assert decision.action.markdown == "not streamed [json.dumps]" and deltas == ["not streamed [json.dumps]"]
    assert decision.usage["total_tokens"] == 120


def test_a_stream_event_that_is_not_json_is_retried(fake_llm):
    fake_llm.script(Reply(body=b"data: {\"id\": \"chatcmpl-broken\", \"choi\n\n",
                          headers={"Content-Type": "text/event-stream"}), text("fine"))
    decision = reasoner(fake_llm.url, stream=True).decide(context())
    assert decision.action.markdown == "fine" and decision.record["attempts"] == 2


def test_an_error_event_in_a_stream_is_an_endpoint_error_without_the_key(fake_llm):
    fake_llm.script(stream_error(f"upstream failed for key {KEY}", after=text("partial answer")))
    deltas: list[str] = []
    with pytest.raises(LLMEndpointError) as info:
        reasoner(fake_llm.url).decide(context(), on_delta=deltas.append)
    assert "reported an error" in str(info.value) and "upstream failed" in str(info.value)
    assert KEY not in str(info.value) and info.value.retryable
    assert all(not isinstance(e, openai.OpenAIError) for e in _chain(info.value))
    assert len(fake_llm.chat_requests) == 1


def test_a_failing_delta_callback_does_not_fail_the_decision(fake_llm, caplog):
    fake_llm.script(text("a longer answer [json.dumps]"))

    def broken(_: str) -> None:
        raise RuntimeError("redis is down")

    decision = reasoner(fake_llm.url).decide(context(), on_delta=broken)
    assert decision.action.markdown == "a longer answer [json.dumps]"
    assert sum("redis is down" in rec.getMessage() for rec in caplog.records) == 1


def test_key_never_appears_in_streamed_records_or_debug_logs(fake_llm, caplog):
    caplog.set_level(logging.DEBUG)  # the openai, httpx and httpcore loggers included
    fake_llm.script(error(429, f"key {KEY} is over quota", retry_after=0), tool_call("search_corpus", {"query": "j"}))
    decision = reasoner(fake_llm.url).decide(context(), on_delta=lambda _: None)
    assert fake_llm.chat_requests[1].headers["authorization"] == f"Bearer {KEY}"
    assert any(rec.name.startswith("openai") for rec in caplog.records)
    assert KEY not in caplog.text and KEY not in " ".join(str(rec.args) for rec in caplog.records)
    assert KEY not in json.dumps(decision.record)

"""The LLM reasoner: one chat-completions call per decision, against any OpenAI-compatible endpoint
(OpenAI, vLLM, Ollama, LiteLLM proxies) with tool calling.

The model sees the run's tools plus the pseudo-tool ``final_report`` and answers with one tool call
(a plain text answer counts as the final report). It holds no state between decisions: everything
comes from the :class:`ResearchContext`, and corrections are the workflow's loop, not ours.

The request goes through the official ``openai`` SDK (:mod:`tasks.reasoning.openai_client`), plain
or streamed: ``stream=True`` (or an ``on_delta`` callback given to :meth:`LLMReasoner.decide`) sends
the answer's text to the callback as it arrives and decides on the assembled answer, exactly as the
plain call would.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from pydantic import SecretStr

from tasks.reasoning.base import Decision, FinalReport, ResearchContext
from tasks.reasoning.errors import LLMEndpointError
from tasks.reasoning.openai_client import ChatClient, ChatResponse
from tasks.reasoning.prompt import (
    FINAL_REPORT,
    MAX_RESULT_CHARS,
    build_messages,
    tool_definitions,
)
from tasks.reasoning.reply import InvalidModelReply, parse_reply, parse_usage
from tasks.reasoning.toolspec import ToolSpec

log = logging.getLogger(__name__)

__all__ = ["InvalidModelReply", "LLMEndpointError", "LLMReasoner", "ToolSpec"]


class LLMReasoner:
    """Decides a research run's next step by asking a chat model.

    ``tools`` are :class:`ToolSpec` values (see :func:`tasks.reasoning.toolspec.tool_specs` to
    build them from a tool registry). ``api_key`` may be empty for servers without auth (Ollama,
    vLLM); it is kept as a ``SecretStr`` and never appears in records, logs, errors or ``repr``.
    ``extra_body`` is merged into every request (provider options such as ``{"seed": 1}``).
    ``stream`` streams every request; ``stream_usage`` asks a streaming server for token usage
    (``stream_options.include_usage``; turn it off for a server that refuses the option).
    """

    name = "llm"

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | SecretStr | None,
        tools: Sequence[ToolSpec],
        *,
        timeout: float = 120.0,
        max_retries: int = 4,
        retry_seconds: float = 240.0,
        backoff_seconds: float = 1.0,
        backoff_max_seconds: float = 30.0,
        temperature: float | None = None,
        max_tokens: int | None = None,
        parallel_tool_calls: bool | None = None,
        extra_body: Mapping[str, Any] | None = None,
        max_result_chars: int = MAX_RESULT_CHARS,
        stream: bool = False,
        stream_usage: bool = True,
    ) -> None:
        if not isinstance(model, str) or not model.strip():
            raise ValueError("model must be a non-empty model name, e.g. gpt-4o-mini or qwen2.5:7b")
        self.model = model.strip()
        self.tools = _check_tools(tools)
        self._by_name = {t.name: t for t in self.tools}
        self._client = ChatClient(
            base_url,
            api_key,
            timeout=timeout,
            max_retries=max_retries,
            retry_seconds=retry_seconds,
            backoff_seconds=backoff_seconds,
            backoff_max_seconds=backoff_max_seconds,
        )
        if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
            raise ValueError(f"max_tokens must be a positive integer, not {max_tokens!r}")
        if not isinstance(max_result_chars, int) or max_result_chars < 100:
            raise ValueError(f"max_result_chars must be an integer >= 100, not {max_result_chars!r}")
        self.max_result_chars = max_result_chars
        self._options: dict[str, Any] = dict(extra_body or {})
        for key, value in (
            ("temperature", temperature),
            ("max_tokens", max_tokens),
            ("parallel_tool_calls", parallel_tool_calls),
        ):
            if value is not None:  # unset options are not sent: not every server knows every one
                self._options[key] = value
        self.stream = bool(stream)
        self.stream_usage = bool(stream_usage)
        for reserved in ("model", "messages", "tools", "tool_choice", "stream", "stream_options"):
            if reserved in self._options:
                raise ValueError(f"extra_body must not set {reserved!r}; the reasoner sets it")

    @property
    def base_url(self) -> str:
        return self._client.base_url

    def __repr__(self) -> str:
        return (
            f"LLMReasoner(base_url={self.base_url!r}, model={self.model!r}, "
            f"tools={[t.name for t in self.tools]!r}, client={self._client!r})"
        )

    def request_body(self, context: ResearchContext, *, stream: bool | None = None) -> dict[str, Any]:
        """The chat-completions request for ``context`` (a pure function of it, and of ``stream``,
        by default the reasoner's own setting)."""
        stream = self.stream if stream is None else stream
        return {
            **self._options,
            "model": self.model,
            "messages": build_messages(context, max_result_chars=self.max_result_chars),
            "tools": tool_definitions(self.tools),
            "tool_choice": "auto",
            "stream": stream,
            **({"stream_options": {"include_usage": True}} if stream and self.stream_usage else {}),
        }

    def decide(
        self,
        context: ResearchContext,
        *,
        on_delta: Callable[[str], None] | None = None,
        on_restart: Callable[[], None] | None = None,
    ) -> Decision:
        """Ask the model once. :class:`InvalidModelReply` (an ``InvalidDecision``) when its answer is
        unusable; :class:`LLMEndpointError` (a ``ReasonerError``) when the endpoint fails.

        With ``on_delta`` (or ``stream=True``) the answer is streamed: ``on_delta(text)`` gets its
        text as it arrives, ``on_restart()`` is called when a failed attempt that sent text is
        retried (the text starts over). The decision is the one the plain call would give."""
        streamed = self.stream or on_delta is not None
        body = self.request_body(context, stream=streamed)
        if streamed:
            response = self._client.stream(body, on_delta, include_usage=self.stream_usage, on_restart=on_restart)
        else:
            response = self._client.complete(body)
        try:
            parsed = parse_reply(response.body, self._by_name)
        except InvalidModelReply as exc:
            exc.usage = parse_usage(response.body)
            exc.record = self._record(response, _message_of(response.body), _finish_of(response.body), exc.usage)
            exc.record["refused"] = str(exc)
            log.info("run %s: model %s answered unusably: %s", context.run_id, self.model, exc)
            raise
        record = self._record(response, parsed.message, parsed.finish_reason, parsed.usage)
        if parsed.ignored_calls:
            record["ignored_tool_calls"] = parsed.ignored_calls
            log.info(
                "run %s: model %s made %d tool calls in one reply; took the first, ignored %s",
                context.run_id, self.model, 1 + len(parsed.ignored_calls), ", ".join(parsed.ignored_calls),
            )
        action = parsed.action
        chosen = FINAL_REPORT if isinstance(action, FinalReport) else action.tool
        log.info(
            "run %s: model %s chose %s (%s tokens, %.2f s, %d attempt(s))",
            context.run_id, self.model, chosen, parsed.usage.get("total_tokens", "?"),
            response.latency_s, response.attempts,
        )
        return Decision(action=action, usage=parsed.usage, record=record)

    def _record(
        self, response: ChatResponse, message: dict[str, Any], finish: Any, usage: dict[str, int]
    ) -> dict[str, Any]:
        # What the checkpoint keeps: the answer and its cost, never the request's headers or key.
        body = response.body
        return {
            "reasoner": self.name,
            "model": self.model,
            "served_by": body.get("model") if isinstance(body.get("model"), str) else None,
            "response_id": body.get("id") if isinstance(body.get("id"), str) else None,
            "message": {
                "role": message.get("role", "assistant"),
                "content": message.get("content"),
                "tool_calls": message.get("tool_calls"),
                **({"reasoning_content": message["reasoning_content"]} if message.get("reasoning_content") else {}),
            },
            "finish_reason": finish if isinstance(finish, str) else None,
            "usage": usage,
            "latency_s": round(response.latency_s, 3),
            "elapsed_s": round(response.elapsed_s, 3),
            "attempts": response.attempts,
            **({"streamed": True} if response.streamed else {}),
        }


def _check_tools(tools: Iterable[ToolSpec]) -> list[ToolSpec]:
    out: list[ToolSpec] = []
    seen: set[str] = set()
    for t in tools:
        if not isinstance(t, ToolSpec):
            raise ValueError(f"tools must be ToolSpec values (see tool_specs()), not {type(t).__name__}")
        if t.name == FINAL_REPORT:
            raise ValueError(f"a tool may not be called {FINAL_REPORT!r}: the reasoner offers that pseudo-tool")
        if t.name in seen:
            raise ValueError(f"tool {t.name!r} is listed twice")
        seen.add(t.name)
        out.append(t)
    return out


def _message_of(body: Mapping[str, Any]) -> dict[str, Any]:
    try:
        message = body["choices"][0]["message"]
    except (KeyError, IndexError, TypeError):
        return {}
    return dict(message) if isinstance(message, Mapping) else {}


def _finish_of(body: Mapping[str, Any]) -> Any:
    try:
        return body["choices"][0].get("finish_reason")
    except (KeyError, IndexError, TypeError, AttributeError):
        return None

"""From a chat-completions answer to one action: a validated :class:`ToolCall` or a :class:`FinalReport`.

Every way the model can answer badly (arguments that are not JSON, an unknown tool, arguments its
input model refuses, nothing at all) is an :class:`InvalidModelReply` whose message is written for
the model: the research workflow sends it back as a correction.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field, ValidationError, field_validator

from tasks.reasoning.base import FinalReport, ToolCall
from tasks.reasoning.errors import InvalidDecision
from tasks.reasoning.citations import parse_citation
from tasks.reasoning.prompt import FINAL_REPORT
from tasks.reasoning.toolspec import ToolSpec

_THINK = re.compile(r"<think>.*?</think>", re.DOTALL)
# [doc_id] not followed by "(" (a Markdown link) and not a bare footnote number.
_CITE = re.compile(r"\[([^\[\]\s]+)\](?!\()")
_MAX_THOUGHT = 500


class InvalidModelReply(InvalidDecision):
    """An :class:`InvalidDecision` that keeps what the refused exchange cost and said:
    ``record`` (as :attr:`Decision.record`) and ``usage`` (tokens), for the checkpoint."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.record: dict[str, Any] = {}
        self.usage: dict[str, int] = {}


class _Citation(BaseModel):
    doc_id: str = Field(min_length=1)
    corpus: str | None = None
    ordinal: int | None = None
    passage: str | None = None


class _FinalReportArgs(BaseModel):
    markdown: str = Field(min_length=1)
    citations: list[_Citation] = Field(default_factory=list)

    @field_validator("citations", mode="before")
    @classmethod
    def _ids_as_objects(cls, v: Any) -> Any:
        # Models often cite with strings: a passage as save_note stores it, or a bare id.
        if isinstance(v, list):
            return [_citation_from_string(c) if isinstance(c, str) else c for c in v]
        return v


def _citation_from_string(text: str) -> dict[str, Any]:
    ref = parse_citation(text)
    return ref.as_dict() if ref is not None else {"doc_id": text}


@dataclass(frozen=True)
class ParsedReply:
    """The action and what the answer said besides it."""

    action: ToolCall | FinalReport
    message: dict[str, Any]  # the raw assistant message
    finish_reason: str | None
    usage: dict[str, int]
    ignored_calls: list[str] = field(default_factory=list)  # names of further tool calls, not taken


def parse_usage(body: Mapping[str, Any]) -> dict[str, int]:
    """``prompt_tokens``, ``completion_tokens``, ``total_tokens`` of an answer (those it reports)."""
    usage = body.get("usage")
    if not isinstance(usage, Mapping):
        return {}
    out = {k: int(usage[k]) for k in ("prompt_tokens", "completion_tokens", "total_tokens")
           if isinstance(usage.get(k), (int, float)) and not isinstance(usage.get(k), bool)}
    if "total_tokens" not in out and {"prompt_tokens", "completion_tokens"} <= out.keys():
        out["total_tokens"] = out["prompt_tokens"] + out["completion_tokens"]
    return out


def parse_reply(body: Mapping[str, Any], tools: Mapping[str, ToolSpec]) -> ParsedReply:
    """The one action in ``body`` (a chat-completions JSON answer); :class:`InvalidModelReply` if none."""
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
        raise InvalidModelReply("the reply had no choices: answer with one tool call")
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, Mapping):
        raise InvalidModelReply("the reply had no message: answer with one tool call")
    message = dict(message)
    finish = choice.get("finish_reason")
    usage = parse_usage(body)

    calls = _tool_calls(message)
    content = _visible_text(message.get("content"))
    ignored: list[str] = []
    if not calls:
        embedded = _embedded_call(content, tools)
        if embedded is not None:
            calls, content = [embedded], ""
    if calls:
        first, rest = calls[0], calls[1:]
        ignored = [_name_of(c) for c in rest]
        action = _tool_action(first, tools, thought=content, cut=finish == "length")
        return ParsedReply(action, message, finish, usage, ignored)
    if finish == "length":
        raise InvalidModelReply(
            f"the reply was cut off at the token limit: call {FINAL_REPORT} with a shorter report"
        )
    if not content:
        raise InvalidModelReply(f"the reply was empty: call one tool, or {FINAL_REPORT} to finish")
    # A plain text answer is the final report.
    return ParsedReply(FinalReport(markdown=content, citations=cited_ids(content)), message, finish, usage)


def cited_ids(markdown: str) -> list[dict[str, Any]]:
    """``[{doc_id}]`` for every distinct ``[doc_id]`` marker in ``markdown``, in order of appearance."""
    seen: dict[str, None] = {}
    for m in _CITE.finditer(markdown):
        ref = m.group(1)
        if not ref.isdigit() and ref not in ("x", "X"):  # footnote numbers and task-list boxes
            seen.setdefault(ref, None)
    return [{"doc_id": ref} for ref in seen]


def _tool_calls(message: Mapping[str, Any]) -> list[Any]:
    calls = message.get("tool_calls")
    if isinstance(calls, list) and calls:
        return calls
    legacy = message.get("function_call")  # the pre-"tools" API, still spoken by some proxies
    if isinstance(legacy, Mapping):
        return [{"id": None, "type": "function", "function": legacy}]
    return []


def _name_of(call: Any) -> str:
    fn = call.get("function") if isinstance(call, Mapping) else None
    return str(fn.get("name")) if isinstance(fn, Mapping) else "?"


def _tool_action(call: Any, tools: Mapping[str, ToolSpec], *, thought: str, cut: bool) -> ToolCall | FinalReport:
    fn = call.get("function") if isinstance(call, Mapping) else None
    name = fn.get("name") if isinstance(fn, Mapping) else None
    if not isinstance(name, str) or not name:
        raise InvalidModelReply("the tool call names no function: give the tool's name")
    if name != FINAL_REPORT and name not in tools:
        known = ", ".join([*sorted(tools), FINAL_REPORT])
        raise InvalidModelReply(f"unknown tool {name!r}: the tools are {known}")
    args = _arguments(name, fn.get("arguments"), cut=cut)
    if name == FINAL_REPORT:
        report = _validate(name, _FinalReportArgs, args)
        citations = [c.model_dump(exclude_none=True) for c in report.citations] or cited_ids(report.markdown)
        return FinalReport(markdown=report.markdown, citations=citations)
    spec = tools[name]
    if spec.input_model is not None:
        args = _validate(name, spec.input_model, args).model_dump(mode="json")
    else:
        missing = [f for f in spec.input_schema.get("required", []) if f not in args]
        if missing:
            raise InvalidModelReply(
                f"invalid arguments for tool {name!r}: " + "; ".join(f"{f}: Field required" for f in missing)
            )
    call_id = call.get("id")
    return ToolCall(
        tool=name,
        args=args,
        call_id=call_id if isinstance(call_id, str) and call_id else None,
        thought=thought[:_MAX_THOUGHT],
    )


def _arguments(name: str, raw: Any, *, cut: bool) -> dict[str, Any]:
    if raw is None or raw == "":
        return {}  # a tool without required arguments: some servers send nothing
    if isinstance(raw, Mapping):  # Ollama's native shape
        return dict(raw)
    if not isinstance(raw, str):
        raise InvalidModelReply(f"the arguments of tool {name!r} must be a JSON object, not {type(raw).__name__}")
    try:
        args = json.loads(raw)
    except json.JSONDecodeError as exc:
        why = " (the reply was cut off at the token limit)" if cut else ""
        raise InvalidModelReply(
            f"the arguments of tool {name!r} are not valid JSON{why}: {exc.msg} at character {exc.pos}"
        ) from None
    if not isinstance(args, dict):
        raise InvalidModelReply(f"the arguments of tool {name!r} must be a JSON object, not {type(args).__name__}")
    return args


def _validate(name: str, model: type[BaseModel], args: dict[str, Any]) -> Any:
    try:
        return model.model_validate(args)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            where = ".".join(str(p) for p in err.get("loc", ())) or "arguments"
            problems.append(f"{where}: {err['msg']}")
        raise InvalidModelReply(f"invalid arguments for tool {name!r}: " + "; ".join(problems)) from None


def _visible_text(content: Any) -> str:
    """The message text without reasoning blocks; list-of-parts content (some proxies) joined."""
    if isinstance(content, list):
        content = "".join(p.get("text", "") for p in content if isinstance(p, Mapping))
    if not isinstance(content, str):
        return ""
    return _THINK.sub("", content).strip()


def _embedded_call(content: str, tools: Mapping[str, ToolSpec]) -> dict[str, Any] | None:
    """A tool call written as JSON text (small models served without a tool parser do this):
    ``{"name": ..., "arguments": {...}}`` naming a known tool."""
    text = content.strip()
    if text.startswith("```"):
        text = text.strip("`").removeprefix("json").strip()
    if not (text.startswith("{") and text.endswith("}")):
        return None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(obj, dict):
        return None
    name = obj.get("name")
    args = obj.get("arguments", obj.get("parameters"))
    if not isinstance(name, str) or (name not in tools and name != FINAL_REPORT) or not isinstance(args, (dict, str)):
        return None
    return {"id": None, "type": "function", "function": {"name": name, "arguments": args}}

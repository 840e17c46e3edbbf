"""The chat messages an LLM reasoner sends: from a :class:`ResearchContext` to OpenAI-style messages.

A pure function of the context (no clock, no randomness), so the same checkpoint always yields the
same request. Past actions go back as assistant ``tool_calls`` each followed by its ``tool`` message,
paired by id, which is the shape every OpenAI-compatible server (vLLM, Ollama, LiteLLM) expects.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from tasks.reasoning.base import Observation, ResearchContext
from tasks.reasoning.toolspec import ToolSpec

FINAL_REPORT = "final_report"

#: The pseudo-tool the model finishes with. Hand-written (no $ref) because some servers' tool
#: parsers (Ollama's) only read flat schemas.
FINAL_REPORT_SPEC = ToolSpec(
    name=FINAL_REPORT,
    description="Finish the research: submit the final report that answers the question. "
    "Call this once you can answer, or when few steps are left.",
    input_schema={
        "type": "object",
        "properties": {
            "markdown": {
                "type": "string",
                "description": "The report in Markdown. Cite the source of every claim inline as [doc_id].",
            },
            "citations": {
                "type": "array",
                "description": "The documents the report cites.",
                "items": {
                    "type": "object",
                    "properties": {
                        "doc_id": {"type": "string", "description": "The document id, as cited: [doc_id]."},
                        "corpus": {"type": "string", "description": "The corpus the document is in."},
                        "ordinal": {"type": "integer", "description": "The passage number, when known."},
                        "passage": {"type": "string", "description": "The passage that supports the claim."},
                    },
                    "required": ["doc_id"],
                },
            },
        },
        "required": ["markdown"],
    },
)

SYSTEM_PROMPT = """\
You are a research agent. You answer the user's question from the documents of a search corpus, \
which you reach only through the tools you are given.

How to work:
- Each reply is exactly one tool call. Search the corpus, read what comes back, search again with \
better words when the results miss, and save notes of the facts you will rely on.
- When you can answer (or when only a few steps are left), call final_report with a Markdown report \
that answers the question directly.
- Cite the source of every claim inline as [doc_id], the document id in square brackets, e.g. [json.dumps]. \
Cite only ids that a tool returned to you; never invent one.
- If the corpus does not answer the question, say so in the report rather than guessing."""

#: Longest tool result sent back to the model, in characters; the rest is cut (the context window is finite).
MAX_RESULT_CHARS = 8000


def tool_definitions(specs: Sequence[ToolSpec]) -> list[dict[str, Any]]:
    """The request's ``tools`` list: every tool, then ``final_report``."""
    return [s.as_openai_tool() for s in specs] + [FINAL_REPORT_SPEC.as_openai_tool()]


def build_messages(context: ResearchContext, *, max_result_chars: int = MAX_RESULT_CHARS) -> list[dict[str, Any]]:
    """System prompt, the task (question, budget, summary, notes), past calls with their results,
    and a correction when the previous answer was refused."""
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": _task(context)},
    ]
    used: set[str] = set()
    for n, obs in enumerate(context.observations):
        call_id = _call_id(obs, n, used)
        messages.append(
            {
                "role": "assistant",
                "content": obs.call.thought or None,
                "tool_calls": [
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {"name": obs.call.tool, "arguments": _json(obs.call.args)},
                    }
                ],
            }
        )
        messages.append({"role": "tool", "tool_call_id": call_id, "content": _result(obs, max_result_chars)})
    if context.last_error:
        messages.append({"role": "user", "content": correction(context.last_error)})
    return messages


def correction(error: str) -> str:
    """What the model reads after a refused answer."""
    return (
        f"Your previous reply was refused: {error}\n"
        f"Reply again with exactly one call of one of the listed tools, with arguments that match its "
        f"schema, or call {FINAL_REPORT} to finish."
    )


def _task(context: ResearchContext) -> str:
    parts = [
        f"Question: {context.question}",
        f"Corpus: {context.corpus}",
        f"Steps used: {context.steps_used} of {context.max_steps} ({max(context.steps_left, 0)} left).",
    ]
    if context.steps_left <= 2:
        parts.append(f"Almost out of steps: call {FINAL_REPORT} now with the best report you can write.")
    if context.summary:
        parts.append(f"Summary of your earlier work:\n{context.summary}")
    if context.notes:
        parts.append("Notes you saved:\n" + "\n".join(_note(i, n) for i, n in enumerate(context.notes, 1)))
    return "\n\n".join(parts)


def _note(i: int, note: dict[str, Any]) -> str:
    cites = [c.get("doc_id") if isinstance(c, dict) else c for c in note.get("citations") or []]
    sources = " ".join(f"[{c}]" for c in cites if c)
    return f"{i}. {note.get('text', '')}" + (f" (sources: {sources})" if sources else "")


def _call_id(obs: Observation, n: int, used: set[str]) -> str:
    """The model's own id when it gave a usable one, else a synthesized one. Ids must be unique in a
    request (some servers reuse "call_0" across replies); synthesized ids are 9 alphanumerics,
    the only form Mistral-family chat templates accept."""
    call_id = obs.call.call_id
    k = n
    while not call_id or call_id in used:
        call_id = f"call{k:05d}"
        k += 1
    used.add(call_id)
    return call_id


def _result(obs: Observation, limit: int) -> str:
    if obs.ok:
        text = obs.result if isinstance(obs.result, str) else _json(obs.result)
    else:
        text = _json({"error": obs.error or "the tool failed"})
    if len(text) > limit:
        text = text[:limit] + f"... [cut: {len(text) - limit} more characters]"
    return text


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)

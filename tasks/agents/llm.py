"""An agent's OpenAI-compatible model: the research LLM reasoner, told the agent's instructions and
offered the agent's tools instead of the research job's.

The request is the research reasoner's (:meth:`tasks.reasoning.llm.LLMReasoner.request_body`: past
calls as ``tool_calls`` paired with their results, corrections, ``final_report`` to finish) with two
changes: the system message is the agent's instructions, and the task replaces the research question.
"""

from __future__ import annotations

import copy
from typing import Any

from tasks.reasoning.base import Decision, ResearchContext
from tasks.reasoning.toolspec import ToolSpec

HOW = (
    "Each reply is exactly one call of one of the tools you are given. When you are done, or when only a "
    "few steps are left, call final_report with your answer in Markdown."
)
FINISH = "Finish: submit your final answer to the task, in Markdown."
HOW_CHAT = (
    "You are in a conversation. Call one of the tools you are given when you need it, one call per reply. "
    "When you can answer, reply to the user's latest message in plain text (Markdown), citing sources by "
    "their id in square brackets."
)


def system_prompt(context: ResearchContext) -> str:
    instructions = getattr(context, "instructions", "") or "You are an agent that carries out the user's task."
    return f"{instructions.strip()}\n\n{HOW_CHAT if getattr(context, 'chat', False) else HOW}"


def conversation(context: ResearchContext) -> str:
    """A session's conversation so far, as the model reads it."""
    lines = [f"(earlier) {m}" for m in getattr(context, "memory", ())]
    for t in getattr(context, "conversation", ()):
        lines += [f"user: {t['message']}", f"assistant: {t['reply']}"]
    return "\n".join(lines)


def task_message(context: ResearchContext) -> str:
    if getattr(context, "chat", False):
        talk = conversation(context)
        parts = [f"Conversation so far:\n{talk}"] if talk else []
        parts.append(f"The user now says: {context.question}")
    else:
        parts = [f"Task: {context.question}"]
    parts += [f"Steps used: {context.steps_used} of {context.max_steps} ({max(context.steps_left, 0)} left)."]
    if context.steps_left <= 2:
        parts.append("Almost out of steps: call final_report now with the best answer you can give.")
    if context.summary:
        parts.append(f"Summary of your earlier work:\n{context.summary}")
    if context.notes:
        parts.append("Notes you kept:\n" + "\n".join(f"- {n}" for n in context.notes))
    return "\n\n".join(parts)


def _agent_reasoner_class() -> type:
    from tasks.reasoning.llm import LLMReasoner

    class AgentLLM(LLMReasoner):
        def request_body(self, context: ResearchContext, *args: Any, **kwargs: Any) -> dict[str, Any]:
            body = super().request_body(context, *args, **kwargs)
            messages = body["messages"]
            first = {m["role"]: i for i, m in reversed(list(enumerate(messages[:2])))}
            if "system" in first:
                messages[first["system"]] = {"role": "system", "content": system_prompt(context)}
            if "user" in first:
                messages[first["user"]] = {"role": "user", "content": task_message(context)}
            tools = copy.deepcopy(body.get("tools") or [])
            for t in tools:
                if t.get("function", {}).get("name") == "final_report":
                    t["function"]["description"] = FINISH
            body["tools"] = tools
            return body

    return AgentLLM


class AgentModel:
    """A reasoner over the agent's tools (``context.tools``), built once per tool list per process."""

    name = "llm"
    streams = True  # a session streams its reply tokens through decide(on_delta=...)

    def __init__(self, model: str, *, base_url: str, api_key: str | None = None, **options: Any) -> None:
        self.model, self.base_url, self.options = model, base_url, options
        self._api_key = api_key
        self._built: dict[tuple[str, ...], Any] = {}

    def reasoner(self, specs: tuple[ToolSpec, ...]) -> Any:
        key = tuple(s.name for s in specs)
        if key not in self._built:
            cls = _agent_reasoner_class()
            self._built[key] = cls(self.base_url, self.model, self._api_key, list(specs), **self.options)
        return self._built[key]

    def decide(self, context: ResearchContext, **streaming: Any) -> Decision:
        """``streaming``: ``on_delta``/``on_restart`` (:meth:`tasks.reasoning.llm.LLMReasoner.decide`)."""
        return self.reasoner(tuple(getattr(context, "tools", ()))).decide(context, **streaming)

    def __repr__(self) -> str:
        return f"OpenAIModel({self.model!r}, base_url={self.base_url!r})"

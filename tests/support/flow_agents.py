"""Agents for the flow-control tests: `limited_llm` asks a model (the fake server at
STEPLOG_LLM_BASE_URL) for each decision, so a fleet of them spends a fleet-wide budget; `rated_tool`
calls a tool declared with a fleet-wide Rate."""

from __future__ import annotations

import os

from pydantic import BaseModel

from tasks.agent import Agent, OpenAIModel, Scripted, call
from tools.declaration import Effect, Rate, ToolContext, tool


class Note(BaseModel):
    text: str = ""


@tool("jot", "1", Effect.READ)
def jot(ctx: ToolContext, args: Note) -> Note:
    """Write a note down (returns it)."""
    return Note(text=args.text.upper())


@tool("ping_api", "1", Effect.READ, rate=Rate(5, 1.0, key="args.text"))
def ping_api(ctx: ToolContext, args: Note) -> Note:
    """Call an outside API that allows 5 calls a second per text."""
    return Note(text="pong " + args.text)


def _ping_plan(task: str, seen: dict):
    return call("ping_api", text="x") if "ping_api" not in seen else f"done: {seen['ping_api']}"


WORKFLOWS = [
    Agent("limited_llm", "Jot the task down with the jot tool, then answer.", tools=[jot],
          reasoner=OpenAIModel("fake-model", base_url=os.environ.get("STEPLOG_LLM_BASE_URL", "http://127.0.0.1:9/v1"),
                               max_tokens=50),
          max_steps=6),
    Agent("rated_tool", "Ping the API once.", tools=[ping_api], reasoner=Scripted(_ping_plan), max_steps=4),
]

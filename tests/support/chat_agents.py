"""Chat agents for the session tests and scripts/bench_sessions.py.

``memo``: one tool call per turn (``lookup``, a read tool; a message containing "slow" makes it sleep,
so a worker can be killed mid-turn), and a reply that shows what the turn knew of the conversation:
every earlier message in its window and the lines of its memory. Its reasoner is a function of the
context, like any reasoner, and takes no time (the benchmark measures the platform, not a model).
"""

from __future__ import annotations

import time

from pydantic import BaseModel

from tasks.agent import Agent
from tasks.reasoning.base import Decision, FinalReport, ResearchContext, ToolCall
from tools.declaration import Effect, ToolContext, tool

SLOW_SECONDS = 3.0


class LookupIn(BaseModel):
    text: str


class LookupOut(BaseModel):
    words: int
    upper: str


@tool("lookup", "1", Effect.READ)
def lookup(ctx: ToolContext, args: LookupIn) -> LookupOut:
    """Counts the words of a text (slowly when it says "slow")."""
    if "slow" in args.text:
        time.sleep(SLOW_SECONDS)
    return LookupOut(words=len(args.text.split()), upper=args.text.upper()[:200])


class MemoReasoner:
    name = "memo"

    def decide(self, context: ResearchContext) -> Decision:
        done = [o for o in context.observations if o.call.tool == "lookup"]
        if not done:
            return Decision(ToolCall("lookup", {"text": context.question}))
        earlier = [t["message"] for t in context.conversation]
        words = done[-1].result["words"] if done[-1].ok else None
        text = (f"{context.question} ({words} words). I remember {len(earlier)} earlier messages: "
                f"{' | '.join(earlier)}. Memory: {len(context.memory)} lines.")
        return Decision(FinalReport(text, citations=[{"doc_id": f"turn-{len(earlier) + len(context.memory) + 1}"}]))


MEMO = Agent("memo", "Count the words of each message and remember the conversation.", tools=[lookup],
             reasoner=MemoReasoner(), chat=True, max_steps=6, turns_window=4)
WORKFLOWS = [MEMO]

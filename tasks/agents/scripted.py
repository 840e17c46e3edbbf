"""A reasoner without a model: a function of the task and of what the tools returned decides.

For offline runs, tests and agents whose steps are known in advance. It is a reasoner like any other:
one decision per reasoning step, recorded before the tool runs, and no state between decisions
(everything comes from the context, so a replayed step decides the same).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tasks.reasoning.base import Decision, FinalReport, ResearchContext, ToolCall


def call(tool: str, **args: Any) -> ToolCall:
    """A decision to call ``tool`` with ``args``: ``call("find_order", order_id="A-1")``."""
    return ToolCall(tool, args)


class Scripted:
    """``plan(task, seen)`` returns the next :func:`call`, or the answer (a string or a FinalReport).

    ``seen`` maps each tool called so far (within the context's observation window) to what its
    latest call returned, or to ``{"error": message}`` when that call failed or was rejected.
    """

    name = "scripted"

    def __init__(self, plan: Callable[[str, dict[str, Any]], ToolCall | FinalReport | str]) -> None:
        self.plan = plan

    def decide(self, context: ResearchContext) -> Decision:
        seen = {o.call.tool: o.result if o.ok else {"error": o.error} for o in context.observations}
        nxt = self.plan(context.question, seen)
        if isinstance(nxt, (ToolCall, FinalReport)):
            return Decision(nxt, record={"reasoner": self.name})
        return Decision(FinalReport(str(nxt)), record={"reasoner": self.name})

    def __repr__(self) -> str:
        return f"Scripted({getattr(self.plan, '__qualname__', self.plan)!r})"

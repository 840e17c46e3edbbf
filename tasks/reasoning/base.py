"""The reasoner interface: from the reconstructed context of a research run to the next action.

A reasoning step calls ``decide`` once; the research workflow records the decision in the
checkpoint *before* any tool runs, so a retried or migrated step never asks again for a decision
already made. Reasoners hold no state between calls: everything they know is in the context.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class ToolCall:
    """Run one tool next. ``args`` must validate against the tool's input model."""

    tool: str
    args: dict[str, Any]
    call_id: str | None = None  # the model's id for the call (LLM), echoed back with the result
    thought: str = ""  # a short reason, shown in `steplog watch`


@dataclass(frozen=True)
class FinalReport:
    """Finish: a Markdown report that cites its sources as ``[doc_id]`` (or URLs)."""

    markdown: str
    citations: list[dict[str, Any]] = field(default_factory=list)  # {doc_id, corpus, ordinal, passage}
    truncated: bool = False  # True when the step budget ran out and this is the best report so far


@dataclass(frozen=True)
class Decision:
    # Several calls of one tool (a tuple) are made at once, as a fan-out of child steps.
    action: ToolCall | tuple[ToolCall, ...] | FinalReport
    usage: dict[str, int] = field(default_factory=dict)  # prompt_tokens, completion_tokens, total_tokens
    record: dict[str, Any] = field(default_factory=dict)  # what the checkpoint keeps of the exchange (raw model reply)


@dataclass(frozen=True)
class Observation:
    """One past action and what came of it, as the context shows it."""

    call: ToolCall
    ok: bool
    result: Any = None  # the tool's output (JSON), or None
    error: str | None = None  # the tool error message when not ok
    replayed: bool = False


@dataclass(frozen=True)
class ResearchContext:
    """Everything a reasoner may read. Bounded: old observations are folded into ``summary``."""

    run_id: str
    question: str
    corpus: str
    max_steps: int
    steps_used: int  # reasoning + tool steps so far
    observations: list[Observation]  # the most recent ones, oldest first
    notes: list[dict[str, Any]]  # saved notes: {text, citations: [{doc_id, corpus, ordinal}]}
    summary: str = ""  # what older observations amounted to
    corrections: int = 0  # consecutive invalid decisions so far (LLM)
    last_error: str | None = None  # why the previous decision was refused (unknown tool, bad args)

    @property
    def steps_left(self) -> int:
        return self.max_steps - self.steps_used


class Reasoner(Protocol):
    name: str

    def decide(self, context: ResearchContext) -> Decision: ...


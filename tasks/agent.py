"""Your own agent: a name, instructions, tools and a reasoner become a durable workflow.

::

    refunds = Agent("refunds", "Refund the order named in the task.", tools=[find_order, refund],
                    reasoner=OpenAIModel("gpt-4o-mini", base_url="https://api.openai.com/v1", api_key=KEY),
                    approve=["refund"], max_steps=10)
    WORKFLOWS = [refunds]  # in a module named by STEPLOG_WORKFLOW_MODULES

A run alternates one reasoning step (one decision of the reasoner, recorded before any tool runs)
and one tool step (one keyed, ledgered call of one of the agent's tools), until the reasoner answers
or the step budget is spent; then the agent's output calls run (if any) and the run finishes with its
output. Tools in ``approve`` (or declared ``approval=True``, or named in ``STEPLOG_APPROVE_TOOLS``)
park the run until ``steplog approve`` / ``steplog reject``; the approved call runs exactly once, with
the key shown when approval was asked. How the steps work: :mod:`tasks.agents.loop`.

Reasoners: an :class:`OpenAIModel` (any OpenAI-compatible chat endpoint with tool calling: it sees
the instructions and the agent's tools), :class:`Scripted` (no model: your own function decides, for
offline runs and tests), any object with ``name`` and ``decide(context) -> Decision``
(:class:`tasks.reasoning.base.Reasoner`), or None: the worker's default reasoner, which is made for the
research job (``STEPLOG_LLM_*`` over the research tools, or the offline research reasoner).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tasks.agents import session
from tasks.agents.loop import AgentContext, AgentRun, Loop, Output, Then, default_result
from tasks.agents.scripted import Scripted, call
from tasks.concurrency import Concurrency
from tasks.reasoning.base import Decision, FinalReport, ToolCall
from tasks.workflow import Workflow
from tools.declaration import Tool

__all__ = [
    "Agent", "AgentContext", "Concurrency", "AgentInput", "SessionInput", "AgentRun", "Decision", "FinalReport", "OpenAIModel", "Output",
    "Scripted", "Then", "ToolCall", "call", "default_result",
]

WINDOW = 6  # observations kept whole in the checkpoint; older ones become a summary line


class SessionInput(BaseModel):
    """What a chat agent's session takes: nothing but an optional title (its messages come as signals)."""

    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(None, max_length=200, description="A name for the conversation.")


class AgentInput(BaseModel):
    """What an agent's run takes by default: ``steplog submit NAME -i '{"task": "..."}'``."""

    model_config = ConfigDict(extra="forbid")

    task: str = Field(min_length=1, max_length=20000, description="What the agent is asked to do.")
    max_steps: int | None = Field(None, ge=1, le=1000, description="Step budget (default: the agent's).")

    @field_validator("task")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be blank")
        return v.strip()


def OpenAIModel(model: str, *, base_url: str, api_key: str | None = None, **options: Any) -> Any:
    """An OpenAI-compatible chat model as an agent's reasoner: it is told the agent's instructions and
    offered the agent's tools. ``options``: as :class:`tasks.reasoning.llm.LLMReasoner` takes them."""
    from tasks.agents.llm import AgentModel

    return AgentModel(model, base_url=base_url, api_key=api_key, **options)


class Agent:
    """An agent, and the workflow it runs as (:attr:`workflow`; list either in ``WORKFLOWS``).

    ``tools``: ``@tool`` declarations (:mod:`tools.declaration`) or names of built-in tools; the only
    tools its runs may call. ``reasoner``: see the module doc. ``max_steps``: the step budget,
    reasoning and tool steps together (an input's own ``max_steps`` wins). ``approve``: names of tools
    whose calls wait for a person, or a function of the input returning them. ``output``: the run's
    result as a function of the :class:`AgentRun` (default :func:`default_result`: the answer, its
    citations, steps and tokens), or an :class:`Output` with calls to make after the answer.

    For bigger agents (the research job is one): ``input`` (a pydantic model; default
    :class:`AgentInput`), ``task`` (the task text from the input; default ``input.task``),
    ``remember(call, result)`` (a note to keep out of the observation window, or None),
    ``out_of_steps(run)`` (the answer when the budget is spent; a :class:`FinalReport`), ``window``,
    ``precheck`` and ``time_limit`` (as :class:`tasks.workflow.Workflow` takes them).

    ``chat=True`` makes a chat agent: each of its runs is a session (a conversation) that answers every
    message sent to it (``steplog say``, ``steplog chat``) with one turn, then waits for the next,
    holding nothing but its Postgres rows meanwhile. Its reasoner sees the conversation
    (``context.conversation``: the last ``turns_window`` turns; ``context.memory``: a line per older
    turn). ``max_steps`` is then the budget of one turn. See :mod:`tasks.agents.session`.
    """

    def __init__(
        self,
        name: str,
        instructions: str,
        tools: Sequence[Tool | str] = (),
        *,
        reasoner: Any = None,
        max_steps: int = 20,
        approve: Iterable[str] | Callable[[BaseModel], Iterable[str]] = (),
        output: Output | Callable[[AgentRun], dict[str, Any]] | None = None,
        input: type[BaseModel] = AgentInput,
        task: Callable[[BaseModel], str] | None = None,
        remember: Callable[[dict[str, Any], Any], dict[str, Any] | None] | None = None,
        out_of_steps: Callable[[AgentRun], FinalReport] | None = None,
        window: int = WINDOW,
        precheck: Callable[[BaseModel, Any], None] | None = None,
        time_limit: float | None = None,
        chat: bool = False,
        turns_window: int = session.WINDOW,
        concurrency: Concurrency | None = None,
    ) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ValueError("an agent needs a name")
        self.name, self.instructions = name, instructions
        self.tools = tuple(tools)
        names = [t.name if isinstance(t, Tool) else t for t in self.tools]
        for t in self.tools:
            if not isinstance(t, (Tool, str)):
                raise TypeError(f"agent {name!r}: a tool is a @tool declaration or a built-in tool's name, not {t!r}")
        if len(set(names)) != len(names):
            raise ValueError(f"agent {name!r}: a tool is listed twice: {names}")
        if reasoner is not None and not callable(getattr(reasoner, "decide", None)):
            raise TypeError(f"agent {name!r}: a reasoner has decide(context) -> Decision, not {reasoner!r}")
        self.reasoner = reasoner
        if not isinstance(max_steps, int) or max_steps < 1:
            raise ValueError(f"agent {name!r}: max_steps must be a positive integer, not {max_steps!r}")
        self.max_steps = max_steps
        self.output = output
        self.chat, self.turns_window = bool(chat), turns_window
        if self.chat:
            if isinstance(output, Output) and output.then:
                raise ValueError(f"agent {name!r}: a chat agent replies to each message; it takes no output calls")
            if input is AgentInput:
                input = SessionInput
            task = task or (lambda inp: "")
            if not isinstance(turns_window, int) or turns_window < 1:
                raise ValueError(f"agent {name!r}: turns_window must be a positive integer, not {turns_window!r}")
        self.loop = Loop(self)
        if callable(approve):
            self.approvals: Callable[[BaseModel], Iterable[str]] = approve
        else:
            fixed = tuple(approve)
            known = set(names) | {t.tool for t in self.loop.output.then}
            if set(fixed) - known:
                raise ValueError(f"agent {name!r}: approve names {sorted(set(fixed) - known)}, not among its tools {names}")
            self.approvals = lambda inp: fixed
        if task is None:
            if "task" not in input.model_fields:
                raise ValueError(f"agent {name!r}: its input has no `task` field; say which text is the task (task=)")
            task = lambda inp: inp.task
        self.input, self.task = input, task
        self.remember, self.out_of_steps, self.window = remember, out_of_steps, window
        self.workflow = Workflow(name, input, self.loop.start, self.loop.step, time_limit=time_limit,
                                 describe=self.loop.describe, precheck=precheck, session=self.chat,
                                 concurrency=concurrency, tools=tuple(t for t in self.tools if isinstance(t, Tool)))

    def as_workflow(self) -> Workflow:
        return self.workflow

    def __repr__(self) -> str:
        return f"Agent({self.name!r}, tools={[t.name if isinstance(t, Tool) else t for t in self.tools]})"

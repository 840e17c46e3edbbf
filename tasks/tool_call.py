"""`tool_call`: the built-in workflow each child of a ``Map(tool=...)`` runs: one keyed, ledgered call.

The call's idempotency key comes from the child's own run id and step, so each item has its own key,
and a retried or redelivered child step finds its call in the ledger instead of making it again. The
parent never calls the tool itself: a retried parent step finds its children already spawned.
A call that ends in a tool error fails the child, with that error (the join counts it by ``on_error``).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tasks.workflow import TOOL_CALL, FailRun, Finish, StepContext, Workflow
from tools.registry import ToolRegistry


class ToolCallInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tool: str = Field(min_length=1, description="The tool's name.")
    args: dict[str, Any] = Field(default_factory=dict, description="The call's arguments.")
    workflow: str | None = Field(None, description="The parent's workflow (where a tool it declares is found).")


def start(inp: ToolCallInput) -> dict:
    return {}


def registry_for(services: Any, tool: str, workflow: str | None) -> ToolRegistry:
    """The process's tools, or the parent workflow's own declaration of ``tool``."""
    if tool in services.tools or workflow is None or getattr(services, "workflows", None) is None:
        return services.tools
    declared = [t for t in services.workflows.get(workflow).tools if getattr(t, "name", None) == tool]
    return ToolRegistry(declared) if declared else services.tools


def step(ctx: StepContext) -> Finish:
    inp: ToolCallInput = ctx.input  # type: ignore[assignment]
    services = ctx.services
    scoped = services if inp.tool in services.tools else _with_tools(services, registry_for(services, inp.tool, inp.workflow))
    runtime = scoped.tool_runtime(ctx)
    outcome = runtime.call(inp.tool, inp.args)
    if not outcome.ok:
        raise FailRun((outcome.error or {}).get("message") or f"{inp.tool}: {outcome.status}")
    result = {"tool": inp.tool, "key": outcome.key, "replayed": outcome.replayed, "result": outcome.result}
    return Finish(result, payload={"kind": "tool", "tool": inp.tool, "key": outcome.key, "status": outcome.status,
                                   "replayed": outcome.replayed, "tool_ms": outcome.elapsed_ms},
                  writes=runtime.records())


def _with_tools(services: Any, tools: ToolRegistry) -> Any:
    import copy

    scoped = copy.copy(services)
    scoped.tools = tools
    return scoped


WORKFLOW = Workflow(TOOL_CALL, ToolCallInput, start, step, describe=lambda state: TOOL_CALL)

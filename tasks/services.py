"""What a step may use besides its checkpoint: per-process handles, never per-run state."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from tasks.workflow import StepContext
from tools.config import ToolConfig
from tools.registry import Registry as ToolRegistry
from tools.runtime import ToolRuntime


@dataclass
class StepServices:
    engine: Engine
    tools: ToolRegistry
    tool_config: ToolConfig
    artifacts: Any = None  # checkpoint.artifacts store (large payloads), when configured

    def tool_runtime(self, ctx: StepContext) -> ToolRuntime:
        """A runtime for this step attempt; pass ``runtime.records()`` as the step's ``writes``."""
        return ToolRuntime(
            self.engine, self.tools, self.tool_config, run_id=ctx.run_id, seq=ctx.seq,
            owner=ctx.owner, worker=ctx.worker, artifacts=self.artifacts,
        )

"""What a step may use besides its checkpoint: per-process handles, never per-run state."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from tasks.workflow import StepContext
from tools.config import ToolConfig
from tools.registry import ToolRegistry
from tools.runtime import ToolRuntime


class LedgerArtifacts:
    """The tool ledger's artifact seam (dict pointers) over a checkpoint.artifacts store."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def put(self, data: bytes, media_type: str) -> dict[str, Any]:
        return self.store.put(data, media_type).to_dict()

    def get(self, pointer: dict[str, Any]) -> bytes:
        from checkpoint.artifacts import ArtifactPointer

        return self.store.get(ArtifactPointer.from_dict(pointer))


@dataclass
class StepServices:
    engine: Engine
    tools: ToolRegistry
    tool_config: ToolConfig
    artifacts: Any = None  # checkpoint.artifacts store (large payloads), when configured
    reasoner: Any = None  # tasks.reasoning.base.Reasoner for research runs
    chat_reasoner: Any = None  # the reasoner of chat agents that name none (tasks.reasoning.factory)
    max_corrections: int = 3  # unusable reasoner answers in a row before a run fails
    fault_after_decision: bool = False  # test hook: die between recording a decision and committing
    hot_cache: Any = None  # checkpoint.hotcache.HotCache (Redis); None: rebuild from Postgres each step
    sessions: Any = None  # checkpoint.session_cache.SessionCache: sessions' recent turns and live replies
    budget_tokens: int = 6000  # history a step sees: latest summary + recent events
    tail_limit: int = 50
    summary_every_steps: int = 20
    workflows: Any = None  # the process's WorkflowRegistry (set by the step runner): a Map child's tools

    @property
    def inline_limit(self) -> int:
        """Payloads and results whose JSON is larger than this (bytes) go to the artifact store."""
        return self.tool_config.inline_limit

    def load_history(self, run_id: str, latest_seq: int) -> Any:
        from checkpoint.context import reconstruct

        if self.hot_cache is not None:
            return self.hot_cache.load(self.engine, run_id, latest_seq=latest_seq,
                                       budget_tokens=self.budget_tokens, tail_limit=self.tail_limit)
        return reconstruct(self.engine, run_id, at_seq=latest_seq, budget_tokens=self.budget_tokens,
                           tail_limit=self.tail_limit)

    def progress(self, run_id: str, event: dict) -> None:
        """Tell followers (`steplog watch`) a step landed: one XADD on the run's capped stream."""
        if self.hot_cache is not None:
            self.hot_cache.publish_progress(run_id, event)

    def offer_progress(self, run_id: str, event: dict) -> Any:
        """:meth:`progress`, offered to ride with this thread's next publish (checkpoint.riders): the
        offer, or None (no hot tier). An offer not taken is still to be sent with :meth:`progress`."""
        return self.hot_cache.offer_progress(run_id, event) if self.hot_cache is not None else None

    def park(self, run_id: str, seq: int) -> None:
        """A run began to wait at ``seq``: drop its Redis keys (cached contexts, progress stream); it
        holds none while it waits, and the step that follows rebuilds its context from Postgres."""
        if self.hot_cache is not None:
            self.hot_cache.park(run_id, seq)

    def warm_history(self, history: Any, seq: int, event_type: str, state: dict, payload: dict) -> None:
        """After a commit: cache the next step's context, built without Postgres (best effort)."""
        if self.hot_cache is not None and history is not None:
            self.hot_cache.put(history.advance(seq, event_type, state, payload))

    def tool_runtime(self, ctx: StepContext, *, key_seq: int | None = None) -> ToolRuntime:
        """A runtime for this step attempt; pass ``runtime.records()`` as the step's ``writes``.
        ``key_seq``: the step whose keys its calls use (an approved call keeps the key it was asked with)."""
        return ToolRuntime(
            self.engine, self.tools, self.tool_config, run_id=ctx.run_id, seq=key_seq or ctx.seq,
            owner=ctx.owner, worker=ctx.worker,
            artifacts=LedgerArtifacts(self.artifacts) if self.artifacts is not None else None,
        )

"""Which reasoner a process uses, from plain settings values (tasks/ does not import workers/)."""

from __future__ import annotations

from typing import Any

from tasks.reasoning.base import Reasoner

# The tools a research agent may call; the workflow itself calls publish_report and notify.
AGENT_TOOLS = ("search_corpus", "read_document", "fetch_url", "save_note", "search_memory")


def make_reasoner(settings: Any, tools: Any) -> Reasoner:
    if settings.effective_reasoner == "llm":
        from tasks.reasoning.llm import LLMReasoner
        from tasks.reasoning.toolspec import tool_specs

        specs = tool_specs([t for t in tools if t.name in AGENT_TOOLS])
        return LLMReasoner(
            settings.llm_base_url, settings.llm_model, settings.llm_api_key, specs,
            timeout=settings.llm_timeout_seconds, max_retries=settings.llm_max_retries,
            retry_seconds=settings.llm_retry_seconds,
        )
    from tasks.reasoning.offline import OfflineReasoner

    return OfflineReasoner()

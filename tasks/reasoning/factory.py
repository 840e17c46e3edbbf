"""Which reasoner a process uses: the LLM one when an endpoint is configured, else the offline one."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

from tasks.reasoning.base import Reasoner

# The tools a research agent may call; the workflow itself calls publish_report and notify.
AGENT_TOOLS = ("search_corpus", "read_document", "fetch_url", "save_note", "search_memory")


@dataclass(frozen=True)
class LLMConfig:
    """An OpenAI-compatible chat endpoint (built from ``STEPLOG_LLM_*`` by ``workers.wiring``)."""

    base_url: str
    model: str
    api_key: SecretStr | None = None
    timeout: float = 120.0
    max_retries: int = 4
    retry_seconds: float = 240.0


def make_reasoner(llm: LLMConfig | None, tools: Iterable[Any]) -> Reasoner:
    """The LLM reasoner over ``tools`` (the agent's subset) when ``llm`` is given, else the offline one."""
    if llm is not None:
        from tasks.reasoning.llm import LLMReasoner
        from tasks.reasoning.toolspec import tool_specs

        specs = tool_specs([t for t in tools if t.name in AGENT_TOOLS])
        return LLMReasoner(
            llm.base_url, llm.model, llm.api_key, specs,
            timeout=llm.timeout, max_retries=llm.max_retries, retry_seconds=llm.retry_seconds,
        )
    from tasks.reasoning.offline import OfflineReasoner

    return OfflineReasoner()


def make_chat_reasoner(llm: LLMConfig | None) -> Any:
    """The reasoner of chat agents that name none: the configured model (streaming its replies), else
    the offline chat reasoner (:mod:`tasks.reasoning.chat`)."""
    if llm is not None:
        from tasks.agents.llm import AgentModel

        return AgentModel(llm.model, base_url=llm.base_url, api_key=llm.api_key, timeout=llm.timeout,
                          max_retries=llm.max_retries, retry_seconds=llm.retry_seconds)
    from tasks.reasoning.chat import OfflineChat

    return OfflineChat()

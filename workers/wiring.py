"""Settings become the lower layers' typed values here, and only here.

``tasks/``, ``tools/`` and ``checkpoint/`` never see :class:`~workers.settings.Settings`: each takes
plain values (a :class:`StepPolicy`, a :class:`ToolConfig`, an :class:`LLMConfig`, a URL). Each
function below names every field it reads, so renaming a setting breaks here, loudly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tasks.reasoning.factory import LLMConfig
from tasks.runner import StepPolicy
from tools.config import ToolConfig
from workers.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from checkpoint.artifacts import ArtifactStore
    from checkpoint.broker_epoch import BrokerEpoch
    from checkpoint.hotcache import HotCache
    from checkpoint.session_cache import SessionCache
    from tasks.services import StepServices


def broker_epoch(s: Settings, engine: Engine) -> BrokerEpoch | None:
    """The sweeper's watch on the broker's data (a Redis broker's; RabbitMQ keeps its queues on disk)."""
    if not s.broker_is_redis or not s.broker_url:
        return None
    import redis

    from checkpoint.broker_epoch import BrokerEpoch

    return BrokerEpoch(redis.Redis.from_url(s.broker_url, socket_timeout=2, socket_connect_timeout=2), s.queue, engine)


def dead_letter_url(s: Settings) -> str | None:
    """Where unreadable messages are kept: the broker's Redis (beside the queue, where the transport
    itself puts them), else the hot tier's Redis, else nowhere (the worker log alone)."""
    return s.broker_url if s.broker_is_redis else s.redis_url


def step_policy(s: Settings) -> StepPolicy:
    return StepPolicy(
        lease_seconds=s.lease_seconds,
        step_time_limit=s.step_time_limit,
        max_attempts=s.max_attempts,
        retry_backoff_seconds=s.retry_backoff_seconds,
        redispatch_seconds=s.redispatch_seconds,
        fault_after_commit=s.fault_after_commit,
        fault_before_claim=s.fault_before_claim,
        max_children=s.max_children,
    )


def tool_config(s: Settings) -> ToolConfig:
    return ToolConfig(
        fault_rate=s.tool_fault_rate,
        net_allow=s.net_allow,
        retries=s.tool_retries,
        retry_seconds=s.tool_retry_seconds,
        fetch_max_bytes=s.fetch_max_bytes,
        fetch_timeout_seconds=s.fetch_timeout_seconds,
        inline_limit=s.inline_limit,
        approve_tools=s.approve_tool_names,
        approval_timeout_seconds=s.approval_timeout_seconds,
    )


def llm_config(s: Settings) -> LLMConfig | None:
    """The chat endpoint research runs ask, or None for the offline reasoner."""
    if s.effective_reasoner != "llm":
        return None
    assert s.llm_base_url and s.llm_model  # the settings' own validator guarantees both
    return LLMConfig(
        base_url=s.llm_base_url, model=s.llm_model, api_key=s.llm_api_key,
        timeout=s.llm_timeout_seconds, max_retries=s.llm_max_retries, retry_seconds=s.llm_retry_seconds,
    )


def rate_limits(s: Settings) -> None:
    """This process's fleet-wide rate limits: the limiter on the hot tier's Redis (none without one), the
    model endpoint's requests and tokens per window."""
    from checkpoint import limiter
    from tasks.reasoning import budget

    limiter.install(limiter.RateLimiter.from_url(s.redis_url) if s.redis_url else None)
    budget.configure(budget.LLMLimits(rpm=s.llm_rpm, tpm=s.llm_tpm, window=s.rate_window_seconds,
                                      completion_tokens=s.llm_completion_tokens))


def artifact_store(s: Settings) -> ArtifactStore:
    from checkpoint.artifacts import open_store

    return open_store(s.effective_artifacts_url, s3_endpoint_url=s.s3_endpoint_url)


def hot_cache(s: Settings) -> HotCache | None:
    """The Redis hot tier, or None when no Redis is configured (contexts are then rebuilt from Postgres)."""
    if not s.redis_url:
        return None
    from checkpoint.hotcache import HotCache

    return HotCache.from_url(s.redis_url, s.hot_ttl_seconds)


def session_cache(s: Settings, hot: HotCache | None) -> SessionCache | None:
    """Sessions' hot tier (recent turns, live replies) on the hot cache's Redis, or None without Redis."""
    if hot is None:
        return None
    from checkpoint.session_cache import SessionCache
    from tasks.agents.session import WINDOW

    return SessionCache(hot, s.session_ttl_seconds, WINDOW)


def step_services(s: Settings, engine: Engine) -> StepServices:
    """Everything a step may use besides its checkpoint, for one process."""
    from tasks.reasoning.factory import make_chat_reasoner, make_reasoner
    from tasks.services import StepServices
    from tools.registry import builtin_registry

    tools = builtin_registry()
    hot = hot_cache(s)
    rate_limits(s)
    return StepServices(
        engine, tools, tool_config(s),
        artifacts=artifact_store(s), reasoner=make_reasoner(llm_config(s), tools),
        chat_reasoner=make_chat_reasoner(llm_config(s)),
        max_corrections=s.llm_max_corrections, fault_after_decision=s.fault_after_decision,
        hot_cache=hot, sessions=session_cache(s, hot), budget_tokens=s.context_budget_tokens, tail_limit=s.context_tail_limit,
        summary_every_steps=s.summary_every_steps,
    )

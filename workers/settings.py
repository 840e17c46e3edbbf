"""steplog's settings: environment variables with the prefix ``STEPLOG_``.

Every field has a default that works on one laptop and a description; the README's settings table
lists the same descriptions (``tests/test_readme.py`` checks that they agree). Bad values fail at start
with a message naming the variable (see :func:`load_settings`).
"""

from __future__ import annotations

import json
from functools import cached_property
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from workers.errors import SettingsError
from workers.local import DEFAULT_HOME

__all__ = ["Settings", "SettingsError", "load_settings", "settings_from_env"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STEPLOG_", extra="ignore")

    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL of Postgres (psycopg 3), e.g. postgresql+psycopg://user@host/db. "
        "Unset: the project's own local Postgres from `steplog services up`.",
    )
    prepared_statements: bool = Field(
        True,
        description="Prepare the hot path's statements on each connection. Set false behind a pooler "
        "that cannot keep them (PgBouncer before 1.21 in transaction mode).",
    )
    broker_url: str | None = Field(
        None,
        description="Celery broker: redis://host:port/db or amqp://user:pass@host:port//. "
        "Unset: the project's own local Redis.",
    )
    redis_url: str | None = Field(
        None,
        description="Redis for the hot tier (context cache, live progress). Unset: the broker's Redis, "
        "or the local Redis when the broker is RabbitMQ.",
    )
    artifacts_url: str | None = Field(
        None,
        description="Artifact store: file:///path or s3://bucket/prefix. Unset: .steplog/artifacts.",
    )
    s3_endpoint_url: str | None = Field(
        None,
        pattern=r"^https?://",
        description="S3 endpoint for an s3:// artifact store (MinIO, SeaweedFS, ...), e.g. http://minio:9000. "
        "Unset: AWS_ENDPOINT_URL, else AWS itself. Credentials: the standard AWS_* variables.",
    )
    inline_limit: int = Field(
        16384, ge=0, description="Payloads whose JSON is larger than this many bytes are stored as artifacts."
    )
    queue: str = Field("steplog", description="The broker queue steps travel on; separate fleets use separate queues.")
    home: str = Field(DEFAULT_HOME, description="Data directory of the local services, corpus and artifacts.")

    lease_seconds: float = Field(
        1.2, gt=0, description="A worker process silent for this long is dead; its steps are taken over."
    )
    heartbeat_seconds: float = Field(0.3, gt=0, description="How often each worker process reports it is alive.")
    sweep_seconds: float = Field(
        0.25, gt=0, description="How often every worker sweeps for lost steps and unsent or lost dispatches."
    )
    redispatch_seconds: float = Field(
        30.0, gt=0, description="A dispatched step no worker claimed within this long is published again: the backstop for "
        "a lost message (a lost Redis queue is noticed within a sweep, see the README).",
    )
    max_attempts: int = Field(5, ge=1, description="Attempts at one step before its run ends failed.")
    max_children: int = Field(
        10_000, ge=1, description="Most child runs one step may spawn (Map, Spawn); a bigger fan-out fails the step "
        "and spawns nothing.",
    )
    retry_backoff_seconds: float = Field(
        0.5, ge=0, description="First delay before re-trying a failed step; doubles per attempt (capped at 60 s)."
    )
    step_time_limit: float = Field(
        300.0, gt=0, description="Longest a step may run (seconds) unless its workflow says otherwise."
    )
    visibility_timeout: float | None = Field(
        None,
        gt=0,
        description="Redis broker's redelivery backstop (seconds). Unset: twice the step time limit plus 60 s; "
        "always kept above the step time limit.",
    )
    workflow_modules: str = Field(
        "", description="Comma-separated Python modules whose WORKFLOWS lists add workflows to the built-ins."
    )
    log_format: Literal["text", "json"] = Field("text", description="Log lines as readable text or JSON.")
    log_level: str = Field("INFO", description="Log level of workers and the CLI.")
    flower_user: str | None = Field(
        None, min_length=1, pattern=r"^[^:]+$",
        description="User name for `steplog flower`'s basic auth (no colon); set with STEPLOG_FLOWER_PASSWORD.",
    )
    flower_password: SecretStr | None = Field(
        None, min_length=1,
        description="Password for `steplog flower`'s basic auth. Without both, Flower starts only with --unauthenticated.",
    )
    fault_after_decision: bool = Field(
        False, description="Test only: a worker exits right after a reasoning step's decision is recorded, before the step commits."
    )
    fault_after_commit: bool = Field(
        False, description="Test only: a worker exits right after a step commits, before it publishes the next."
    )
    fault_before_claim: bool = Field(
        False, description="Test only: a worker stops itself (SIGSTOP), once, right after it receives a step message, before it claims the step."
    )

    # Tool calls (tools/): retries, the network guard, fetch limits and fault injection.
    tool_retries: int = Field(4, ge=0, description="Retries of a transient tool error (timeout, 429/5xx) within a step.")
    tool_retry_seconds: float = Field(
        20.0, ge=0, description="Most time one tool call spends retrying (seconds); backoff is exponential with jitter."
    )
    net_allow: str = Field(
        "",
        description="Comma-separated host or host:port entries network tools may reach even when they resolve to "
        "loopback, private or link-local addresses (all such addresses are refused otherwise).",
    )
    fetch_max_bytes: int = Field(1_000_000, gt=0, description="Largest body fetch_url reads (bytes); the rest is cut.")
    fetch_timeout_seconds: float = Field(10.0, gt=0, description="Timeout of one HTTP request of a network tool (seconds).")
    approve_tools: str = Field(
        "",
        pattern=r"^[A-Za-z0-9_,\s]*$",
        description="Comma-separated tool names whose every call waits for `steplog approve` (or `reject`) first, "
        "besides tools declared with approval=True.",
    )
    approval_timeout_seconds: float = Field(
        86400.0, gt=0, description="How long a tool call waits for approval before it counts as rejected (seconds)."
    )
    tool_fault_rate: float = Field(
        0.0, ge=0.0, le=1.0,
        description="Test only: fraction of tool executions that fail transiently, half after the effect happened.",
    )

    # The three tiers of a run's history (checkpoint/context.py, hotcache.py, summary.py).
    hot_ttl_seconds: int = Field(
        3600, gt=0, description="How long a run's reconstructed context stays cached in Redis (seconds)."
    )
    api_max_body_bytes: int = Field(
        1_048_576, gt=0, description="Largest request body `steplog api` takes (bytes); a larger one is answered 413."
    )
    api_token_cache_seconds: float = Field(
        5.0, ge=0, description="How long `steplog api` trusts a token it has looked up (seconds; 0: every "
        "request looks it up); a revoked token is refused by every replica within this time.",
    )
    flower_url: str | None = Field(
        None, description="Flower's address, linked from the web console (e.g. http://127.0.0.1:5555)."
    )
    session_ttl_seconds: int = Field(
        1800, gt=0,
        description="How long an idle session's recent turns and live stream stay in Redis (seconds); after "
        "that the session holds no Redis memory and its next turn rebuilds from Postgres.",
    )
    context_budget_tokens: int = Field(
        6000, gt=0,
        description="Most tokens of history (latest summary plus recent events) a step's reconstructed context holds; "
        "a run whose history passes it is summarized.",
    )
    summary_every_steps: int = Field(
        20, ge=1, description="A run writes a summary of its history at least this often (in steps)."
    )
    context_tail_limit: int = Field(
        50, ge=1, description="Most recent events a reconstructed context holds after the latest summary."
    )

    # The reasoner of research runs (tasks/reasoning/): an OpenAI-compatible chat endpoint, or offline.
    reasoner: Literal["auto", "offline", "llm"] = Field(
        "auto",
        description="Who decides a research run's next step: llm (the chat endpoint STEPLOG_LLM_BASE_URL), "
        "offline (the built-in deterministic reasoner), or auto (llm when STEPLOG_LLM_BASE_URL is set, else offline).",
    )
    llm_base_url: str | None = Field(
        None,
        pattern=r"^https?://",
        description="Base URL of an OpenAI-compatible API (requests go to {url}/chat/completions), e.g. "
        "https://api.openai.com/v1, http://localhost:11434/v1 (Ollama), http://localhost:8000/v1 (vLLM) or a LiteLLM proxy.",
    )
    llm_model: str | None = Field(
        None, min_length=1, description="Model name sent to the endpoint, e.g. gpt-4o-mini or qwen2.5:7b; needed for llm."
    )
    llm_api_key: SecretStr | None = Field(
        None, description="API key, sent as a Bearer token; unset for servers without auth. Never logged or recorded."
    )
    llm_timeout_seconds: float = Field(120.0, gt=0, description="Timeout of one chat-completions request (seconds).")
    llm_max_retries: int = Field(
        4, ge=0, description="Retries of a rate-limited (429), timed-out, refused-connection or 5xx chat request."
    )
    llm_retry_seconds: float = Field(
        240.0, ge=0,
        description="Most time one decision spends on a chat request and its retries (seconds); keep it under the step time limit.",
    )
    llm_max_corrections: int = Field(
        3, ge=0,
        description="Unusable model answers in a row (unknown tool, bad arguments) sent back for correction before the run fails.",
    )

    # Flow control: concurrency keys, fleet-wide rate limits (tasks/concurrency.py, checkpoint/limiter.py).
    concurrency: str = Field(
        "",
        description='Concurrency limits by workflow, as JSON: {"WORKFLOW": {"key": "input.FIELD", "limit": N}} '
        "(at most N steps of runs with the same FIELD value in flight); overrides a workflow's own. Applied when "
        "a run is submitted: set it for the CLI, the API and the workers alike.",
    )
    llm_rpm: int | None = Field(
        None, ge=1, description="Requests per window (a minute) the fleet may send to the model endpoint (base URL and model); unset: no limit."
    )
    llm_tpm: int | None = Field(
        None, ge=1, description="Tokens per window (a minute) the fleet may spend at the model endpoint, prompt and completion; unset: no limit."
    )
    llm_completion_tokens: int = Field(
        1024, ge=1,
        description="Tokens a model call reserves for its answer when the request sets no max_tokens (settled with the answer's usage).",
    )
    rate_window_seconds: float = Field(
        60.0, gt=0,
        description="The window of STEPLOG_LLM_RPM and STEPLOG_LLM_TPM (seconds); shorten it only to compress a minute in tests.",
    )

    @field_validator("concurrency")
    @classmethod
    def _check_concurrency(cls, v: str) -> str:
        from tasks.concurrency import from_settings  # workers may import tasks; the check lives with the declaration

        if v.strip():
            try:
                raw = json.loads(v)
            except ValueError as exc:
                raise ValueError(f"not JSON ({exc})") from None
            if not isinstance(raw, dict):
                raise ValueError('must be a JSON object: {"WORKFLOW": {"key": "input.FIELD", "limit": N}}')
            from_settings(raw)
        return v

    @cached_property
    def concurrency_limits(self) -> dict[str, Any]:
        """``concurrency`` as :class:`tasks.concurrency.Concurrency` declarations by workflow name."""
        from tasks.concurrency import from_settings

        return from_settings(json.loads(self.concurrency)) if self.concurrency.strip() else {}

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not v.startswith(("postgresql://", "postgresql+psycopg://", "postgres://")):
            raise ValueError("must be a Postgres URL such as postgresql+psycopg://user@host:5432/db")
        if v.startswith("postgres://"):
            v = "postgresql+psycopg://" + v[len("postgres://") :]
        elif v.startswith("postgresql://"):
            v = "postgresql+psycopg://" + v[len("postgresql://") :]
        return v

    @field_validator("net_allow")
    @classmethod
    def _check_net_allow(cls, v: str) -> str:
        from tools.netguard import parse_allow  # workers may import tools; the check lives with the guard

        parse_allow(v)
        return v

    @field_validator("broker_url")
    @classmethod
    def _check_broker_url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("redis://", "rediss://", "amqp://", "amqps://", "pyamqp://")):
            raise ValueError("must start with redis:// or amqp://")
        return v

    @field_validator("artifacts_url")
    @classmethod
    def _check_artifacts_url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("file://", "s3://")):
            raise ValueError("must be file:///path or s3://bucket/prefix")
        return v

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://")
        return v

    @model_validator(mode="after")
    def _check_timing(self) -> Settings:
        if self.heartbeat_seconds >= self.lease_seconds:
            raise ValueError(
                "STEPLOG_HEARTBEAT_SECONDS must be shorter than STEPLOG_LEASE_SECONDS "
                f"({self.heartbeat_seconds} >= {self.lease_seconds})"
            )
        if self.visibility_timeout is not None and self.visibility_timeout <= self.step_time_limit:
            raise ValueError(
                "STEPLOG_VISIBILITY_TIMEOUT must be longer than STEPLOG_STEP_TIME_LIMIT "
                f"({self.visibility_timeout} <= {self.step_time_limit})"
            )
        return self

    @model_validator(mode="after")
    def _check_reasoner(self) -> Settings:
        if self.reasoner == "llm" and not self.llm_base_url:
            raise ValueError("STEPLOG_REASONER=llm needs STEPLOG_LLM_BASE_URL (an OpenAI-compatible API)")
        if self.effective_reasoner == "llm" and not self.llm_model:
            raise ValueError("the LLM reasoner needs STEPLOG_LLM_MODEL (the model name the endpoint serves)")
        return self

    @property
    def effective_reasoner(self) -> Literal["offline", "llm"]:
        """``reasoner`` with "auto" resolved: llm when ``llm_base_url`` is set, else offline."""
        if self.reasoner == "auto":
            return "llm" if self.llm_base_url else "offline"
        return self.reasoner

    @property
    def broker_is_redis(self) -> bool:
        return (self.broker_url or "redis://").startswith(("redis://", "rediss://"))

    def resolved(self, *, start: bool = False) -> Settings:
        """These settings with every unset URL filled in: an explicit STEPLOG_*_URL wins, else the
        project's local services under ``home`` (started when ``start``). The hot tier's Redis is the
        broker's when the broker is Redis, else the local Redis."""
        redis_url = self.redis_url
        if redis_url is None and self.broker_url is not None and self.broker_is_redis:
            redis_url = self.broker_url
        need = {"postgres"} if self.database_url is None else set()
        if self.broker_url is None or redis_url is None:
            need.add("redis")
        urls = None
        if need:
            from workers.local.servers import LocalServices  # only when a local service is needed

            services = LocalServices(self.home)
            urls = services.up(sorted(need)) if start else services.urls()
        update = {
            "database_url": self.database_url or urls.database_url,
            "broker_url": self.broker_url or urls.broker_url,
            "redis_url": redis_url or urls.redis_url,
        } if urls else {"redis_url": redis_url}
        return self.model_copy(update=update)

    @property
    def approve_tool_names(self) -> frozenset[str]:
        return frozenset(t.strip() for t in self.approve_tools.split(",") if t.strip())

    @property
    def workflow_module_list(self) -> list[str]:
        return [m.strip() for m in self.workflow_modules.split(",") if m.strip()]

    @property
    def effective_artifacts_url(self) -> str:
        """``artifacts_url``, else ``<home>/artifacts`` on local disk."""
        from pathlib import Path

        return self.artifacts_url or (Path(self.home) / "artifacts").absolute().as_uri()

    @cached_property
    def effective_visibility_timeout(self) -> float:
        return self.visibility_timeout or self.step_time_limit * 2 + 60


def settings_from_env(env: dict[str, str]) -> Settings:
    """Settings from an environment given as a dict (a worker subprocess's), not os.environ."""
    fields = {k.removeprefix("STEPLOG_").lower(): v for k, v in env.items() if k.startswith("STEPLOG_")}
    return Settings(**fields)


def load_settings(**overrides: object) -> Settings:
    """Read the environment; raise :class:`SettingsError` naming each bad variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = err.get("loc") or ()
            name = f"STEPLOG_{str(loc[0]).upper()}" if loc else "settings"
            problems.append(f"{name}: {err['msg']}")
        raise SettingsError("bad settings: " + "; ".join(problems)) from None

"""The tool layer's knobs, as plain data: the runtime never reads the environment or imports ``workers``."""

from __future__ import annotations

from dataclasses import dataclass, field

from tools.netguard import Allow, parse_allow


@dataclass(frozen=True)
class ToolConfig:
    """Settings of tool calls (built from ``STEPLOG_*`` by ``workers.wiring.tool_config``)."""

    #: Fraction (0..1) of tool executions that fail transiently on purpose; half after the effect.
    fault_rate: float = 0.0
    #: Seed of the fault injector; None: random. Same seed, key and execution: same decision.
    fault_seed: int | None = None
    #: Hosts (and host:port pairs) the network guard lets through whatever they resolve to.
    net_allow: Allow = field(default_factory=lambda: parse_allow(""))
    #: Retries of a transient error inside one call (so at most retries + 1 executions).
    retries: int = 4
    #: Total time one call may spend retrying, in seconds.
    retry_seconds: float = 20.0
    #: First backoff delay (seconds); doubles per retry, with full jitter, capped at retry_max_wait.
    retry_base_seconds: float = 0.2
    retry_max_wait: float = 5.0
    #: Largest body fetch_url reads (bytes); the rest is cut off and the result says so.
    fetch_max_bytes: int = 1_000_000
    #: Timeout of one HTTP request of a network tool (seconds), connect to last byte.
    fetch_timeout_seconds: float = 10.0
    #: Results whose JSON is larger than this (bytes) go to the artifact store, when one is given.
    inline_limit: int = 16 * 1024
    #: Redirects fetch_url follows (each one checked by the network guard).
    max_redirects: int = 5
    #: Tools whose every call waits for a person's approval, whatever their declaration says.
    approve_tools: frozenset[str] = frozenset()
    #: How long a call waits for approval before it counts as rejected (seconds).
    approval_timeout_seconds: float = 86400.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.fault_rate <= 1.0:
            raise ValueError(f"fault_rate must be within 0..1, not {self.fault_rate}")
        if self.retries < 0 or self.retry_seconds < 0:
            raise ValueError("retries and retry_seconds must not be negative")
        if isinstance(self.net_allow, str):
            object.__setattr__(self, "net_allow", parse_allow(self.net_allow))

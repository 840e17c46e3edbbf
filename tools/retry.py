"""Retries of transient tool errors inside a step: exponential backoff with full jitter (tenacity),
bounded by count (``retries``) and by total time (``retry_seconds``, never slept past)."""

from __future__ import annotations

import time
from collections.abc import Callable

from tenacity import Retrying, retry_if_exception, stop_after_attempt, stop_before_delay, wait_random_exponential

from tools.config import ToolConfig


def retrying(
    config: ToolConfig, retry_if: Callable[[BaseException], bool], *, sleep: Callable[[float], None] = time.sleep
) -> Retrying:
    """A tenacity loop that re-raises the last error once retries or time run out."""
    return Retrying(
        stop=stop_after_attempt(config.retries + 1) | stop_before_delay(config.retry_seconds),
        wait=wait_random_exponential(multiplier=config.retry_base_seconds, max=config.retry_max_wait),
        retry=retry_if_exception(retry_if),
        reraise=True,
        sleep=sleep,
    )

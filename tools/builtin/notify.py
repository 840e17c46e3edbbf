"""notify (irreversible): POST a JSON payload to a webhook, handing it the idempotency key.

The receiver is expected to deduplicate by the ``Idempotency-Key`` header, so a call re-fired after a
lost answer carries the same key and takes effect once.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from checkpoint.jsonutil import dumps
from tools.declaration import Effect, ToolContext, tool
from tools.guarded_http import exchange


class NotifyInput(BaseModel):
    url: str = Field(min_length=1, max_length=4096, description="The webhook's http or https URL.")
    payload: dict[str, Any] = Field(description="JSON object to send.")


class NotifyOutput(BaseModel):
    status: int
    response: str = Field(description="The start of the receiver's answer.")


@tool("notify", "1", Effect.IRREVERSIBLE, dedupes=True)
def notify(ctx: ToolContext, args: NotifyInput) -> NotifyOutput:
    """Send a notification (JSON POST) to a webhook; the receiver deduplicates by the Idempotency-Key header."""
    # Redirects are not followed: re-sending a POST elsewhere is a decision, not a transport detail.
    got = exchange(
        "POST", args.url, ctx.config,
        headers={"Idempotency-Key": ctx.key, "Content-Type": "application/json"},
        content=dumps(args.payload).encode(),
    )
    return NotifyOutput(status=got.status, response=got.body[:2000].decode("utf-8", errors="replace"))

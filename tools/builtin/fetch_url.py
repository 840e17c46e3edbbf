"""fetch_url (read): GET a public web page as text, through the network guard."""

from __future__ import annotations

from pydantic import BaseModel, Field

from tools.declaration import Effect, ToolContext, tool
from tools.guarded_http import exchange

_TEXT_TYPES = {"application/json", "application/xml", "application/xhtml+xml", "application/javascript"}


def is_text(content_type: str) -> bool:
    """Whether fetch_url returns a body of this type: text/*, JSON, XML (and their +json/+xml kinds)."""
    return (
        content_type.startswith("text/")
        or content_type in _TEXT_TYPES
        or content_type.endswith(("+json", "+xml"))
    )


class FetchInput(BaseModel):
    url: str = Field(min_length=1, max_length=4096, description="http or https URL of a public page.")


class FetchOutput(BaseModel):
    url: str = Field(description="The final URL, after redirects.")
    status: int
    content_type: str
    text: str
    truncated: bool = Field(description="True when the body was cut at the size limit.")


@tool("fetch_url", "1", Effect.READ)
def fetch_url(ctx: ToolContext, args: FetchInput) -> FetchOutput:
    """Fetch a web page or JSON/XML document as text (size- and time-limited; public addresses only)."""
    got = exchange(
        "GET", args.url, ctx.config, headers={"Accept": "text/html, application/json, application/xml, text/*"},
        follow_redirects=True, accept=is_text,
    )
    text = got.body.decode(got.charset or "utf-8", errors="replace")
    return FetchOutput(url=got.url, status=got.status, content_type=got.content_type, text=text, truncated=got.truncated)

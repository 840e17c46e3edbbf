"""Token counts for context budgets.

With ``tiktoken`` installed *and* its ``cl100k_base`` encoding loadable (tiktoken downloads the BPE
file on first use unless ``TIKTOKEN_CACHE_DIR`` already holds it), counts are exact cl100k tokens.
steplog does not depend on tiktoken: on machines without network access its first use fails, so the
default is a documented estimate — OpenAI's rule of thumb for English, "one token is about 4
characters or 3/4 of a word", taking whichever of the two is larger and counting UTF-8 bytes rather
than characters (so non-Latin scripts, which tokenize densely, are not under-counted). The estimate
errs high, which is the safe side for a budget. :data:`METHOD` says which one this process uses.
"""

from __future__ import annotations

import logging
import math
import re
from functools import cache
from typing import Any

from checkpoint.jsonutil import dumps

log = logging.getLogger(__name__)

ENCODING = "cl100k_base"
_WORD = re.compile(r"\S+")


@cache
def _encoder() -> Any:
    try:
        import tiktoken
    except ImportError:
        return None
    try:
        return tiktoken.get_encoding(ENCODING)
    except Exception as exc:  # noqa: BLE001  (a download refused offline surfaces as many types)
        log.info("tiktoken cannot load %s (%s); token counts are estimates", ENCODING, exc)
        return None


def method() -> str:
    """``"tiktoken:cl100k_base"`` when exact counts are available, else ``"estimate"``."""
    return f"tiktoken:{ENCODING}" if _encoder() is not None else "estimate"


def estimate_tokens(text: str) -> int:
    """The estimate: max(UTF-8 bytes / 4, words * 4 / 3), rounded up."""
    if not text:
        return 0
    by_bytes = len(text.encode("utf-8")) / 4
    by_words = len(_WORD.findall(text)) * 4 / 3
    return math.ceil(max(by_bytes, by_words))


def count_tokens(text: str) -> int:
    """Tokens in ``text``: exact with tiktoken's cl100k_base when it loads offline, else :func:`estimate_tokens`."""
    if not isinstance(text, str):
        raise TypeError(f"count_tokens takes str, got {type(text).__name__}")
    enc = _encoder()
    if enc is None:
        return estimate_tokens(text)
    return len(enc.encode(text, disallowed_special=()))


def count_json_tokens(value: Any) -> int:
    """Tokens of a JSON value in steplog's compact form (how events enter a context)."""
    return count_tokens(dumps(value))


def clip_to_tokens(text: str, max_tokens: int) -> str:
    """The longest prefix of ``text`` (cut at a word boundary when one is near) within ``max_tokens``."""
    if max_tokens <= 0:
        return ""
    if count_tokens(text) <= max_tokens:
        return text
    lo, hi = 0, len(text)
    while lo < hi:  # binary search on the prefix length: counts are monotone in it
        mid = (lo + hi + 1) // 2
        if count_tokens(text[:mid] + " …") <= max_tokens:
            lo = mid
        else:
            hi = mid - 1
    cut = text[:lo]
    space = cut.rfind(" ")
    if space > lo * 0.8:
        cut = cut[:space]
    return cut.rstrip() + " …" if cut else ""

"""Every Redis key steplog's hot tier uses, and the only place their names are built.

All keys start with ``steplog:`` so an operator can tell them from the broker's keys and scan them.
"""

from __future__ import annotations

import hashlib

PREFIX = "steplog:"


def _part(name: str, value: str | int) -> str:
    text = str(value)
    # A colon inside a run id would make two different (run, seq) pairs share a key.
    if not text or ":" in text:
        raise ValueError(f"redis key part {name} must be non-empty and hold no ':', got {text!r}")
    return text


def context(run_id: str, seq: int) -> str:
    """The reconstructed context of run ``run_id`` as of event ``seq``: ``steplog:ctx:{run_id}:{seq}``."""
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        raise ValueError(f"redis key part seq must be an int >= 1, got {seq!r}")
    return f"{PREFIX}ctx:{_part('run_id', run_id)}:{seq}"


def context_pattern(run_id: str) -> str:
    """A SCAN pattern matching every cached context of one run."""
    return f"{PREFIX}ctx:{_part('run_id', run_id)}:*"


def progress(run_id: str) -> str:
    """The live progress stream of a run (``steplog watch``): ``steplog:progress:{run_id}``."""
    return f"{PREFIX}progress:{_part('run_id', run_id)}"


def session_turns(run_id: str) -> str:
    """A session's recent turns, newest last (the hot tier of its context): ``steplog:turns:{run_id}``."""
    return f"{PREFIX}turns:{_part('run_id', run_id)}"


def session_live(run_id: str) -> str:
    """A session's live stream (reply tokens as they arrive, and a doorbell per reply):
    ``steplog:live:{run_id}``."""
    return f"{PREFIX}live:{_part('run_id', run_id)}"


def session_reply(run_id: str, message_key: str) -> str:
    """The doorbell of one message's reply (a list a client blocks on): ``steplog:reply:{run_id}:{digest}``,
    the digest standing for the client's message key, which may hold any character."""
    digest = hashlib.sha256(message_key.encode()).hexdigest()[:32]
    return f"{PREFIX}reply:{_part('run_id', run_id)}:{digest}"


def broker_epoch(queue: str) -> str:
    """The sentinel beside ``queue`` on the broker's Redis, holding when its data began: gone or changed,
    the queue was lost (checkpoint/broker_epoch.py): ``steplog:broker-epoch:{queue}``."""
    return f"{PREFIX}broker-epoch:{queue}"


def dead_letters(queue: str) -> str:
    """Messages on ``queue`` that no worker could read, newest first, capped: ``steplog:dead-letters:{queue}``."""
    return f"{PREFIX}dead-letters:{queue}"


def dead_letter_count(queue: str) -> str:
    """How many messages on ``queue`` were ever dead-lettered (the list is capped; this is not):
    ``steplog:dead-letter-count:{queue}``."""
    return f"{PREFIX}dead-letter-count:{queue}"


def rate(name: str, part: str) -> str:
    """One fleet-wide rate limit's state (checkpoint/limiter.py), ``part`` being ``log``, ``cost``,
    ``blocked``, ``turns`` or ``turn-kind``: ``steplog:rate:{digest}:{part}``, the digest standing for the limit's name (a model
    endpoint's URL and model, a tool and its key value), which may hold any character."""
    digest = hashlib.sha256(name.encode()).hexdigest()[:32]
    return f"{PREFIX}rate:{digest}:{_part('part', part)}"


def rates() -> str:
    """Every rate limit in use, name -> its limits as JSON (what `steplog limits` lists): ``steplog:rates``."""
    return f"{PREFIX}rates"

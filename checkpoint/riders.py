"""Redis writes that ride with this thread's next broker publish: one round trip instead of two.

A step that commits appends to its run's progress stream and publishes the next step, both on Redis
(by default the same server and database). The writer *offers* its commands here; the broker's Redis
transport (``workers/redis_transport.py``), when it pushes a message to the same Redis database from
the same thread, sends them in the LPUSH's pipeline and marks the offer taken. An offer nobody took
(another broker, another database, a failed publish) is the writer's to send on its own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_local = threading.local()


@dataclass
class Offer:
    """Commands for a Redis pipeline (``add(pipe)``), for the database ``where`` names."""

    where: tuple[Any, Any, Any]  # (host, port, db) of the writer's Redis
    add: Callable[[Any], None]
    taken: bool = False


def where(client: Any) -> tuple[Any, Any, Any]:
    """Which Redis database a redis-py client (or pool) talks to."""
    pool = getattr(client, "connection_pool", client)
    kw = pool.connection_kwargs
    return kw.get("host", kw.get("path")), kw.get("port"), int(kw.get("db") or 0)


def offer(o: Offer) -> None:
    _local.offer = o


def withdraw() -> Offer | None:
    """End this thread's offer; returns it (taken or not)."""
    o = getattr(_local, "offer", None)
    _local.offer = None
    return o


def pending(client: Any) -> Offer | None:
    """This thread's untaken offer, if it is for ``client``'s database."""
    o = getattr(_local, "offer", None)
    if o is None or o.taken or o.where != where(client):
        return None
    return o

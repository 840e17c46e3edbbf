"""kombu's Redis transport, with one Redis client per channel instead of one per command, and a
consumer that survives any bytes on its queue.

Stock kombu builds a new ``redis.Redis`` object for every publish, event, unacked-index write and
ack (``Channel.conn_or_acquire``). With redis-py 8 each construction fills a 169-entry response
callback table: about 0.2 ms of CPU, paid six to eight times per step (publish, sent event, the
worker's event flush, QoS append and ack, our progress event), which measured as a quarter of a
step's worker time. The client object holds no connection of its own (commands borrow one from
the channel's pool), so one per channel and pool is safe across threads; a new pool (after a
reconnect) gets a new client.

Stock kombu also decodes a popped message inside its BRPOP reader: a list entry that is not a kombu
message (``LPUSH steplog '{oops'``) raises there and kills the worker that popped it. Here such an
entry is moved to the queue's dead letters (:mod:`workers.dead_letters`) and the worker goes on.

A write offered by the publishing thread (a step's progress append, :mod:`checkpoint.riders`) rides in
the pipeline of the message's LPUSH when it is for the same Redis database: one round trip, not two.

Used for ``redis://`` brokers through Celery's ``broker_transport`` setting (workers/celeryconfig.py).
"""

from __future__ import annotations

import logging
import threading
from queue import Empty
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import loads

from checkpoint import riders
from workers import dead_letters

log = logging.getLogger("steplog.transport")


def _unreadable(channel: kombu_redis.Channel, payload: Any) -> str | None:
    """Why ``payload`` (a decoded list entry) is not a message kombu can deliver, or None if it is."""
    if not isinstance(payload, dict):
        return f"not a kombu message: a JSON {type(payload).__name__}"
    props = payload.get("properties")
    if not isinstance(props, dict) or "delivery_tag" not in props:
        return "not a kombu message: no properties with a delivery_tag"
    info = props.get("delivery_info")
    if not isinstance(info, dict) or "exchange" not in info or "routing_key" not in info:
        return "not a kombu message: no delivery_info with exchange and routing_key"
    headers = payload.get("headers")
    if headers is not None and not isinstance(headers, dict):
        return "headers are not a JSON object"
    body = payload.get("body")
    if body is not None and not isinstance(body, str):
        return "body is not a string"
    encoding = props.get("body_encoding")
    if body and encoding:
        try:
            channel.decode_body(body, encoding)
        except Exception as exc:  # an unknown encoding, bad base64: whatever the codec raises
            return f"body does not decode as {encoding!r}: {exc}"
    return None


_consuming = threading.local()


class QoS(kombu_redis.QoS):
    """kombu's unacked bookkeeping, with the ack of a step's message able to ride its publish.

    Under the solo pool the thread that receives a message runs its step. What that step publishes
    comes after its claim (the next step, after its commit too), or is Celery's retry of the message
    (which then acks it anyway). From the claim on, a lost step comes back through Postgres (its
    lease, its outbox row), never through the broker's redelivery, which would only bring a duplicate
    the claim refuses. So the first push from that thread carries the message's ack (ZREM, HDEL) in
    its pipeline, and Celery's ack afterwards costs no round trip. A prefork child or a thread pool
    publishes from another thread than the consumer's: nothing rides there.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._early: set = set()  # tags whose Redis bookkeeping went with a publish

    def append(self, message, delivery_tag):
        super().append(message, delivery_tag)
        _consuming.held = (self, delivery_tag)

    @staticmethod
    def held(client: Any) -> tuple[QoS, Any] | None:
        """The QoS and tag of the message this thread received and has not acked, if ``client``
        talks to its Redis database."""
        held = getattr(_consuming, "held", None)
        if held is None or held[1] in held[0]._early or riders.where(held[0].channel.pool) != riders.where(client):
            return None
        return held

    def acked_early(self, delivery_tag) -> None:
        self._early.add(delivery_tag)

    def _settled(self, delivery_tag) -> bool:
        held = getattr(_consuming, "held", None)
        if held is not None and held[1] == delivery_tag:
            _consuming.held = None
        if delivery_tag in self._early:
            self._early.discard(delivery_tag)
            return True
        return False

    def ack(self, delivery_tag):
        if self._settled(delivery_tag):
            kombu_redis.virtual.QoS.ack(self, delivery_tag)  # bookkeeping only: Redis has it already
        else:
            super().ack(delivery_tag)

    def reject(self, delivery_tag, requeue=False):
        if self._settled(delivery_tag):  # its step committed and published: nothing to requeue
            kombu_redis.virtual.QoS.ack(self, delivery_tag)
        else:
            super().reject(delivery_tag, requeue=requeue)


class Channel(kombu_redis.Channel):
    QoS = QoS
    _sync_client = None

    def _create_client(self, asynchronous: bool = False):
        if asynchronous:  # the BRPOP/pub-sub clients: kombu already keeps one each
            return super()._create_client(asynchronous=True)
        client = self._sync_client
        if client is None or client.connection_pool is not self.pool:
            client = self._sync_client = super()._create_client()
        return client

    def _put(self, queue, message, **kwargs):
        # Writes that can share the LPUSH's round trip: a step's progress append offered by this
        # thread (checkpoint/riders.py), and the ack of the message this thread is working on (see QoS).
        if kwargs.get("_publish_batch") is None and not (self._expires and queue in self._expires):
            with self.conn_or_acquire() as client:
                offer = riders.pending(client)
                held = QoS.held(client)
                if offer is not None or held is not None:
                    key = self._q_for_pri(queue, self._get_message_priority(message, reverse=False))
                    pipe = client.pipeline(transaction=False)
                    pipe.lpush(key, kombu_redis.dumps(message))
                    if offer is not None:
                        offer.add(pipe)
                    if held is not None:
                        held[0]._remove_from_indices(held[1], pipe)
                    pushed, *rest = pipe.execute(raise_on_error=False)
                    if isinstance(pushed, Exception):
                        raise pushed  # the publish failed: its retry carries the riders again
                    if offer is not None:
                        offer.taken = True
                    if held is not None:
                        held[0].acked_early(held[1])
                    for err in rest:
                        if isinstance(err, Exception):  # a rider is best effort; the message is out
                            log.warning("a write riding with a publish failed: %s", err)
                    return
        super()._put(queue, message, **kwargs)

    def _decode(self, item: bytes, queue: str) -> dict | None:
        """A popped list entry as a kombu message, or None after moving it to the dead letters."""
        try:
            payload = loads(bytes_to_str(item))
        except Exception as exc:  # not UTF-8, not JSON, a JSON object kombu's decoder refuses
            reason = f"not JSON: {exc}"
        else:
            reason = _unreadable(self, payload)
            if reason is None:
                return payload
        with self.conn_or_acquire() as client:
            dead_letters.record(client, queue, item, reason)
        return None

    def _brpop_read(self, **options):
        # kombu 5.7's reader, with the entry decoded by _decode instead of a bare loads().
        try:
            try:
                dest__item = self.client.parse_response(self.client.connection, "BRPOP", **options)
            except self.connection_errors:
                self.client.connection.disconnect()  # the next iteration reconnects
                raise
            if not dest__item:
                raise Empty()
            dest, item = dest__item
            dest = bytes_to_str(dest).rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(dest)
            payload = self._decode(item, dest)
            if payload is not None:
                self.connection._deliver(payload, dest)
            return True
        finally:
            self._in_poll = None
            flush = getattr(self, "_flush_brpop_reauth", None)
            if flush is not None:
                flush()

    def _get(self, queue):
        with self.conn_or_acquire() as client:
            for pri in self.priority_steps:
                while (item := client.rpop(self._q_for_pri(queue, pri))) is not None:
                    payload = self._decode(item, queue)
                    if payload is not None:
                        self._maybe_update_queues_expire(client, queue)
                        return payload
            self._maybe_update_queues_expire(client, queue)
            raise Empty()


class Transport(kombu_redis.Transport):
    Channel = Channel


TRANSPORT = f"{__name__}:Transport"

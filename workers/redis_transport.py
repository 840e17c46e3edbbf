"""kombu's Redis transport, with one Redis client per channel instead of one per command.

Stock kombu builds a new ``redis.Redis`` object for every publish, event, unacked-index write and
ack (``Channel.conn_or_acquire``). With redis-py 8 each construction fills a 169-entry response
callback table: about 0.2 ms of CPU, paid six to eight times per step (publish, sent event, the
worker's event flush, QoS append and ack, our progress event), which measured as a quarter of a
step's worker time. The client object holds no connection of its own (commands borrow one from
the channel's pool), so one per channel and pool is safe across threads; a new pool (after a
reconnect) gets a new client.

Used for ``redis://`` brokers through Celery's ``broker_transport`` setting (workers/celeryconfig.py).
"""

from __future__ import annotations

from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    _sync_client = None

    def _create_client(self, asynchronous: bool = False):
        if asynchronous:  # the BRPOP/pub-sub clients: kombu already keeps one each
            return super()._create_client(asynchronous=True)
        client = self._sync_client
        if client is None or client.connection_pool is not self.pool:
            client = self._sync_client = super()._create_client()
        return client


class Transport(kombu_redis.Transport):
    Channel = Channel


TRANSPORT = f"{__name__}:Transport"

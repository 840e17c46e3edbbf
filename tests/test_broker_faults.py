"""Faults of the broker itself, in seconds: junk on the step queue, the queue wiped.

Real workers on real brokers. Each test proves its fault happened (the junk was dead-lettered, the
wipe emptied the queue) before it asserts the fleet rode it out.
"""

from __future__ import annotations

import base64
import json
import time
import uuid

import pytest
import redis
from kombu import Connection, Exchange, Producer
from sqlalchemy import text

from checkpoint import redis_keys
from tests.support.harness import assert_contiguous, cli_json, wait_for
from tests.support.servers import AMQP_URL
from tests.test_resume import _rabbitmq_up


def _envelope(body: str, *, content_type: str = "application/json", headers: dict | None = None,
              encoding: str = "base64", queue: str = "steplog") -> str:
    """A list entry shaped as kombu's Redis transport writes one."""
    return json.dumps({
        "body": body, "content-encoding": "utf-8", "content-type": content_type, "headers": headers or {},
        "properties": {"body_encoding": encoding, "delivery_tag": str(uuid.uuid4()), "priority": 0,
                       "delivery_info": {"exchange": "", "routing_key": queue}},
    })


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


#: Entries the transport itself cannot read, then messages Celery cannot take.
TRANSPORT_JUNK = [
    b"{oops", b"\xff\xfe\x00 not utf-8", b'"a string"', b"[]", b"{}", b'{"properties": {}}',
    _envelope("!!not base64!!").encode(), _envelope("x", encoding="rot13").encode(),
]
CELERY_JUNK = [
    _envelope(_b64("{bad json")),                                             # body does not decode
    _envelope(_b64("gASVAAAAAAAAAAA="), content_type="application/x-python-serialize"),  # pickle: refused
    _envelope(_b64("x"), content_type="application/x-made-up"),              # unknown content type
    _envelope(_b64("{}")),                                                    # no task name anywhere
    _envelope(_b64("[[], {}, {}]"), headers={"task": "no.such.task"}),        # unknown task, no id
]
#: Readable, but the step task cannot take its arguments: a failed task (logged by Celery), no dead letter.
BAD_ARGUMENTS = _envelope(_b64("[[], {}, {}]"), headers={"task": "steplog.step", "id": "x"})


def test_junk_on_the_redis_queue_is_dead_lettered_and_the_same_worker_keeps_serving(fleet):
    worker = fleet.start()
    client = redis.Redis.from_url(fleet.env["STEPLOG_BROKER_URL"])
    for item in TRANSPORT_JUNK + [e.encode() for e in CELERY_JUNK + [BAD_ARGUMENTS]]:
        client.lpush("steplog", item)
    expected = len(TRANSPORT_JUNK) + len(CELERY_JUNK)
    wait_for(lambda: int(client.get(redis_keys.dead_letter_count("steplog")) or 0) >= expected, timeout=30,
             what="every junk message to be dead-lettered")
    run_id = fleet.submit("countdown", {"steps": 3})
    assert fleet.wait_finished(run_id, timeout=60)["status"] == "succeeded"
    assert worker.alive() and all(e["pid"] == worker.pid for e in fleet.events(run_id)[1:])
    assert "dropped an unreadable message" in worker.log()
    shown = cli_json(fleet.env, "dead-letters", "--json", "--limit", "100")
    assert shown["count"] == expected and len(shown["entries"]) == expected
    assert any(e["raw"] == "{oops" and e["reason"].startswith("not JSON") for e in shown["entries"])
    assert client.llen("steplog") == 0


def _queue_exists(queue: str) -> bool:
    from amqp.exceptions import NotFound

    try:
        with Connection(AMQP_URL) as conn:
            conn.default_channel.queue_declare(queue, passive=True)
        return True
    except NotFound:
        return False


@pytest.mark.skipif(not _rabbitmq_up(), reason="no RabbitMQ on localhost:5672")
def test_junk_on_the_rabbitmq_queue_is_dead_lettered_and_the_same_worker_keeps_serving(fleet, tmp_path):
    from tests.support.harness import Fleet

    queue = f"steplog-test-{uuid.uuid4().hex[:8]}"
    env = {**fleet.env, "STEPLOG_BROKER_URL": AMQP_URL, "STEPLOG_QUEUE": queue}
    amqp = Fleet(env, tmp_path / "amqp", host=f"test-{uuid.uuid4().hex[:8]}")  # see Fleet: RabbitMQ's control queues
    try:
        worker = amqp.start()
        # Ready in Postgres may come before the consumer declared its queue: a message published to a
        # queue that does not exist yet is dropped by RabbitMQ, and would never reach the worker.
        wait_for(lambda: _queue_exists(queue), timeout=30, what=f"the worker to declare {queue}")
        with Connection(AMQP_URL) as conn:
            producer = Producer(conn.default_channel, exchange=Exchange(""), routing_key=queue)
            for body, content_type, headers in [
                (b"{oops", "application/json", {}),
                (b"\xff\xfe", "application/octet-stream", {}),
                (b"\x80\x04K\x01.", "application/x-python-serialize", {}),
                (b"{}", "application/json", {}),
                (b"[[], {}, {}]", "application/json", {"task": "no.such.task"}),
                (b"[[], {}, {}]", "application/json", {"task": "steplog.step", "id": "x"}),  # a failed task
            ]:
                producer.publish(body, content_type=content_type, content_encoding="binary", headers=headers)
        client = redis.Redis.from_url(env["STEPLOG_REDIS_URL"])
        wait_for(lambda: int(client.get(redis_keys.dead_letter_count(queue)) or 0) >= 5, timeout=30,
                 what="every junk message to be dead-lettered")
        run_id = amqp.submit("countdown", {"steps": 3})
        assert amqp.wait_finished(run_id, timeout=60)["status"] == "succeeded"
        assert worker.alive() and all(e["pid"] == worker.pid for e in amqp.events(run_id)[1:])
        with Connection(AMQP_URL) as conn:  # nothing left behind, nothing wedged as unacked
            assert conn.default_channel.queue_declare(queue, passive=True).message_count == 0
    finally:
        amqp.close()
        with Connection(AMQP_URL) as conn:
            conn.default_channel.queue_delete(queue)


def test_a_wiped_broker_is_noticed_and_every_queued_run_goes_on_in_seconds(fleet):
    # The backstop (re-send after STEPLOG_REDISPATCH_SECONDS) is pushed to 120 s and kombu's own
    # redelivery to an hour: a run that goes on within 30 s of the wipe can only owe it to the epoch.
    env = {**fleet.env, "STEPLOG_REDISPATCH_SECONDS": "120", "STEPLOG_VISIBILITY_TIMEOUT": "3600"}
    workers = [fleet.start(env=env), fleet.start(env=env)]
    run_ids = [fleet.submit("countdown", {"steps": 6, "sleep": 0.3}) for _ in range(8)]
    broker = redis.Redis.from_url(env["STEPLOG_BROKER_URL"])
    wait_for(lambda: broker.exists(redis_keys.broker_epoch("steplog")), what="the workers to start an epoch")
    wait_for(lambda: sum(len(fleet.events(r)) for r in run_ids) >= 16, what="runs to progress")
    with fleet.engine.connect() as conn:
        wiped_at = conn.execute(text("SELECT clock_timestamp()")).scalar_one()
    pipe = broker.pipeline(transaction=True)
    for priority in range(10):  # kombu keeps one list per priority: steplog, steplog\x06\x163, ...
        pipe.llen("steplog" + (f"\x06\x16{priority}" if priority else ""))
    pipe.flushdb()
    queued = sum(pipe.execute()[:-1])
    assert queued > 0  # the wipe took queued steps with it
    runs = {r: fleet.wait_finished(r, timeout=90) for r in run_ids}
    delays = []
    for run_id, run in runs.items():
        assert run["status"] == "succeeded" and run["result"] == {"steps_run": 6}
        events = fleet.events(run_id)
        assert_contiguous(events)
        assert len(events) == 7
        after = [e for e in events if e["created_at"] > wiped_at]
        if after:
            delays.append((after[0]["created_at"] - wiped_at).total_seconds())
    print("seconds from the wipe to each run's next event:", sorted(round(d, 2) for d in delays))
    assert len(delays) >= 4
    assert max(delays) < 30, delays
    assert any("the broker lost its queue" in w.log() for w in workers)
    assert all(w.alive() for w in workers)

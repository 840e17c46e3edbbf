"""The step's hot path below the engine: driver-level SQL, the Redis transport, batched Flower events.

Each exists for speed (scripts/bench_steps.py); these tests hold them to the behaviour the slower,
stock path had: the same errors, the same messages after a dropped connection, the same events.
"""

from __future__ import annotations

import threading
from collections import defaultdict

import pytest
import redis
import sqlalchemy.exc
from sqlalchemy import text

from checkpoint.db import autocommit, one, soft, transaction
from tests.support.harness import wait_for

# -- checkpoint.db.one: SQLAlchemy's pool and errors, the driver's execute ---------------------------


def _backend_pid(pool) -> int:
    return one(pool, "SELECT pg_backend_pid()", {})[0]


def test_one_returns_the_first_row_or_none(engine):
    assert one(autocommit(engine), "SELECT %(a)s::int + 1, 'x'", {"a": 41}) == (42, "x")
    assert one(autocommit(engine), "SELECT 1 WHERE false", {}) is None


def test_one_commits_each_statement_at_once(engine):
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t_one (k int PRIMARY KEY)"))
    one(autocommit(engine), "INSERT INTO t_one VALUES (%(k)s) RETURNING k", {"k": 1})
    one(autocommit(engine), "INSERT INTO t_one VALUES (%(k)s) RETURNING k", {"k": 2})
    with engine.connect() as other:  # another session sees both: nothing waits for a COMMIT
        assert other.execute(text("SELECT array_agg(k ORDER BY k) FROM t_one")).scalar_one() == [1, 2]


def test_one_raises_sqlalchemy_errors_and_keeps_a_healthy_connection(engine):
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t_dup (k int PRIMARY KEY)"))
    pool = autocommit(engine)
    pid = _backend_pid(pool)
    one(pool, "INSERT INTO t_dup VALUES (1) RETURNING k", {})
    with pytest.raises(sqlalchemy.exc.IntegrityError) as caught:
        one(pool, "INSERT INTO t_dup VALUES (1) RETURNING k", {})
    assert not caught.value.connection_invalidated
    assert _backend_pid(pool) == pid  # a statement error does not cost the connection


def test_one_invalidates_a_connection_the_server_closed(engine):
    pool = autocommit(engine)
    pid = _backend_pid(pool)
    with engine.connect() as admin:
        admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})

    def gone() -> bool:
        with engine.connect() as conn:
            return conn.execute(text("SELECT 1 FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}).first() is None

    wait_for(gone, what="backend gone")
    # The caller sees the class it handles (the step task retries OperationalError) ...
    with pytest.raises(sqlalchemy.exc.OperationalError) as caught:
        one(pool, "SELECT 1", {})
    assert caught.value.connection_invalidated
    # ... and the dead connection is not handed out again.
    assert _backend_pid(pool) != pid


def test_one_raises_a_refused_connection_as_the_class_the_step_task_retries():
    # A Postgres that is restarting refuses new connections: the step task must see OperationalError
    # (and retry the step), not the driver's own error (which drops the step message).
    from sqlalchemy import create_engine

    from workers.local.procs import free_port

    nowhere = create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/postgres")
    try:
        with pytest.raises(sqlalchemy.exc.OperationalError) as caught:
            one(autocommit(nowhere), "SELECT 1", {})
        assert caught.value.connection_invalidated
        with pytest.raises(sqlalchemy.exc.OperationalError), transaction(nowhere) as run:
            run("SELECT 1", {})
    finally:
        nowhere.dispose()


def test_soft_commits_are_asynchronous_for_their_own_transaction_only(engine):
    # SET LOCAL, never a session setting or a startup parameter: behind a transaction-mode pooler
    # the server connection goes to other clients next, whose commits must stay durable.
    pool = soft(engine)
    with pool.begin() as conn:
        assert conn.execute(text("SHOW synchronous_commit")).scalar_one() == "off"
    raw = pool.raw_connection()  # the same server session, past that transaction's end
    try:
        assert raw.driver_connection.execute("SHOW synchronous_commit").fetchone() == ("on",)
    finally:
        raw.close()
    assert one(autocommit(engine), "SHOW synchronous_commit", {}) == ("on",)


@pytest.mark.parametrize("prepared", [True, False])
def test_prepared_statements_follow_the_engine_setting(database_url, prepared):
    from checkpoint.db import make_engine

    engine = make_engine(database_url, prepared=prepared)
    try:
        pool = autocommit(engine)
        for _ in range(6):  # past psycopg's automatic threshold (5) too
            one(pool, "SELECT %(a)s::int", {"a": 1})
            with engine.connect() as conn:
                conn.execute(text("SELECT 2"))
        seen = one(pool, "SELECT count(*) FROM pg_prepared_statements", {})[0]
        assert (seen > 0) is prepared
    finally:
        engine.dispose()


# -- the Redis transport: one client per channel, still the stock protocol ---------------------------


def _queue_size(app, queue: str) -> int:
    with app.connection_for_read() as conn:
        return conn.default_channel.queue_declare(queue=queue, passive=True).message_count


def test_steps_are_published_through_steplog_redis_transport_and_survive_a_dropped_connection(steplog_env):
    from checkpoint.steps import Dispatch
    from workers import redis_transport
    from workers.app import create_app
    from workers.settings import settings_from_env

    app = create_app(settings_from_env(steplog_env))
    with app.connection_for_write() as conn:
        assert isinstance(conn.transport, redis_transport.Transport)
    runtime = app.steplog
    assert runtime.publish(Dispatch("r1", 2, "countdown"))

    # Drop every connection to this test's Redis database, the cached client's included.
    db = int(steplog_env["STEPLOG_BROKER_URL"].rsplit("/", 1)[1])
    admin = redis.Redis.from_url(steplog_env["STEPLOG_BROKER_URL"])
    killed = [c["id"] for c in admin.client_list() if int(c["db"]) == db and c["id"] != str(admin.client_id())]
    assert killed
    for client_id in killed:
        admin.client_kill_filter(_id=client_id)

    assert runtime.publish(Dispatch("r1", 3, "countdown"))
    assert _queue_size(app, runtime.settings.queue) == 2
    app.close()


def _reads(client) -> int:
    """Read events the Redis server processed: one per request or pipeline any client sent."""
    return client.info("stats")["total_reads_processed"]


def test_a_progress_append_rides_with_the_publish_in_one_round_trip(steplog_env):
    from checkpoint import redis_keys, riders
    from checkpoint.hotcache import HotCache
    from checkpoint.steps import Dispatch
    from workers.app import create_app
    from workers.settings import settings_from_env

    app = create_app(settings_from_env(steplog_env))
    runtime = app.steplog
    cache = HotCache.from_url(steplog_env["STEPLOG_BROKER_URL"], ttl=60)
    admin = redis.Redis.from_url(steplog_env["STEPLOG_BROKER_URL"])
    assert runtime.publish(Dispatch("r1", 2, "countdown"))  # connections made, scripts loaded
    cache.publish_progress("r1", {"seq": 1})

    before = _reads(admin)
    assert runtime.publish(Dispatch("r0", 2, "countdown"))
    alone = _reads(admin) - before  # a publish and its task-sent event (and our own INFO)

    before = _reads(admin)
    offer = cache.offer_progress("r1", {"seq": 2})
    try:
        assert runtime.publish(Dispatch("r1", 3, "countdown"))
    finally:
        riders.withdraw()
    assert offer.taken
    assert _reads(admin) - before == alone  # the append cost no round trip of its own
    assert _queue_size(app, runtime.settings.queue) == 3
    entries = admin.xrange(redis_keys.progress("r1"))
    assert [e[1][b"event"] for e in entries] == [b'{"seq":1}', b'{"seq":2}']
    assert 0 < admin.ttl(redis_keys.progress("r1")) <= 60
    # Taken once: the next publish carries nothing, and a withdrawn offer rides with nothing.
    assert riders.withdraw() is None and riders.pending(admin) is None
    assert runtime.publish(Dispatch("r1", 4, "countdown"))
    assert admin.xlen(redis_keys.progress("r1")) == 2 and _queue_size(app, runtime.settings.queue) == 4
    app.close()


def test_an_offer_for_another_redis_database_is_not_taken(steplog_env):
    from checkpoint import riders
    from checkpoint.hotcache import HotCache
    from checkpoint.steps import Dispatch
    from workers.app import create_app
    from workers.settings import settings_from_env

    app = create_app(settings_from_env(steplog_env))
    broker = steplog_env["STEPLOG_BROKER_URL"]
    db = int(broker.rsplit("/", 1)[1])
    elsewhere = HotCache.from_url(f"{broker.rsplit('/', 1)[0]}/{(db + 1) % 16}", ttl=60)
    offer = elsewhere.offer_progress("r2", {"seq": 2})
    try:
        assert app.steplog.publish(Dispatch("r2", 3, "countdown"))
    finally:
        riders.withdraw()
    assert not offer.taken  # the runner then appends it on its own
    assert _queue_size(app, app.steplog.settings.queue) == 1
    app.close()


def test_the_ack_of_the_message_a_thread_works_on_rides_with_its_next_publish(steplog_env):
    from checkpoint.steps import Dispatch
    from workers.app import create_app
    from workers.settings import settings_from_env

    app = create_app(settings_from_env(steplog_env))
    runtime, queue = app.steplog, app.steplog.settings.queue
    admin = redis.Redis.from_url(steplog_env["STEPLOG_BROKER_URL"])
    for seq in (2, 3):
        assert runtime.publish(Dispatch("r3", seq, "countdown"))
    with app.connection_for_read() as conn:
        channel = conn.default_channel
        # As a solo worker does: this thread takes a message (kombu records it as unacked) ...
        message = channel.basic_get(queue)
        assert message is not None and admin.hlen("unacked") == 1

        # ... a publish from another thread (a prefork child's, a sweeper's) carries no ack ...
        other = threading.Thread(target=runtime.publish, args=(Dispatch("r4", 2, "countdown"),))
        other.start()
        other.join()
        assert admin.hlen("unacked") == 1 and admin.zcard("unacked_index") == 1

        # ... its own next publish does, and Celery's ack afterwards costs no round trip.
        assert runtime.publish(Dispatch("r3", 4, "countdown"))
        assert admin.hlen("unacked") == 0 and admin.zcard("unacked_index") == 0
        before = _reads(admin)
        message.ack()
        assert _reads(admin) - before == 1  # our INFO alone
        assert message.acknowledged

        # The next message taken and acked the ordinary way: its ack goes to Redis.
        second = channel.basic_get(queue)
        assert admin.hlen("unacked") == 1
        second.ack()
        assert admin.hlen("unacked") == 0
    assert _queue_size(app, queue) == 2
    app.close()


def test_amqp_brokers_keep_kombu_own_transport():
    from workers.celeryconfig import celery_config
    from workers.settings import Settings

    settings = Settings(broker_url="amqp://guest:guest@localhost:5672//", database_url="postgresql+psycopg://x@y/z")
    assert "broker_transport" not in celery_config(settings)


# -- Flower's view of a step: the task-progress event joins the worker's buffered task events ---------


class EventLog:
    """Every Celery event on the broker, captured by a real event receiver in a thread."""

    def __init__(self, app) -> None:
        self.app = app
        self.events: dict[str, list[dict]] = defaultdict(list)
        self.seen_probe = threading.Event()
        self._receiver = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _on_event(self, event: dict) -> None:
        if event.get("type") == "worker-probe":
            self.seen_probe.set()
        elif "uuid" in event:
            self.events[event["uuid"]].append(event)

    def _run(self) -> None:
        with self.app.connection_for_read() as conn:
            self._receiver = self.app.events.Receiver(conn, handlers={"*": self._on_event})
            self._receiver.capture(limit=None, timeout=None, wakeup=False)

    def __enter__(self) -> EventLog:
        self._thread.start()
        # Events are fanned out, not stored: send probes until the receiver is surely listening.
        with self.app.connection_for_write() as conn:
            dispatcher = self.app.events.Dispatcher(conn, hostname="probe@test")

            def heard() -> bool:
                if self.seen_probe.wait(0.1):
                    return True
                dispatcher.send("worker-probe")
                return False

            wait_for(heard, timeout=30, interval=0, what="the event receiver to start")
        return self

    def __exit__(self, *exc) -> None:
        if self._receiver is not None:
            self._receiver.should_stop = True
        self._thread.join(timeout=10)


@pytest.mark.parametrize("pool", ["solo", "prefork"])
def test_flower_receives_each_steps_events_with_its_progress(fleet, pool):
    extra = ("--concurrency=1",) if pool == "solo" else ("--concurrency=2", "--pool=prefork")
    w = fleet.start(*extra)
    with EventLog(fleet.app) as log:
        run_id = fleet.submit("countdown", {"steps": 3, "sleep": 0})
        assert fleet.wait_finished(run_id)["status"] == "succeeded"
        ids = [f"{run_id}:{seq}" for seq in (2, 3, 4)]
        wait_for(lambda: all(any(e["type"] == "task-succeeded" for e in log.events[i]) for i in ids),
                 timeout=30, what="every step's task-succeeded event")
    for seq, task_id in zip((2, 3, 4), ids, strict=True):
        kinds = [e["type"] for e in log.events[task_id]]
        assert sorted(kinds) == sorted(["task-sent", "task-received", "task-started", "task-progress", "task-succeeded"])
        if pool == "solo":  # one process sends them all, in this order (a prefork child sends progress itself)
            worker_side = [k for k in kinds if k != "task-sent"]
            assert worker_side == ["task-received", "task-started", "task-progress", "task-succeeded"], kinds
        by_type = {e["type"]: e for e in log.events[task_id]}
        progress = by_type["task-progress"]
        assert (progress["run_id"], progress["seq"], progress["hostname"]) == (run_id, seq, w.node)
        assert progress["kind"] == ("succeeded" if seq == 4 else "running")
        assert by_type["task-received"]["name"].startswith(f"countdown #{seq}")

"""What one process needs to run steps: engine, registry, identity, publisher. Rebuilt after fork.

A process's identity (its liveness owner id) is ``node:pid:token``: the token makes a restarted
process with a recycled pid, or a same-named worker, a new owner that cannot keep a dead
predecessor's leases alive.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from datetime import datetime
from typing import TYPE_CHECKING, Any

from celery import Celery
from sqlalchemy import Engine

from checkpoint import heartbeat, runs, schedules, signals
from checkpoint.db import after_fork, make_engine
from checkpoint.flow import admit_first
from checkpoint.heartbeat import Heartbeat
from checkpoint.recovery import Sweeper
from checkpoint.signals import SignalOutcome
from checkpoint.steps import Dispatch, Worker
from tasks import approvals
from tasks.observe import Observer, Observers
from tasks.errors import InvalidInput
from tasks.runner import StepRunner
from tasks.step import STEP_TASK, step_task_id
from tasks.workflow_registry import WorkflowRegistry
from workers import wiring
from workers.celeryconfig import step_priority
from workers.settings import Settings, SettingsError

if TYPE_CHECKING:
    from workers.conversation import Conversations

log = logging.getLogger("steplog.process")


class _BufferedPublish:
    """Celery's ``EventDispatcher.publish`` signature, onto a buffering dispatcher's ``send``."""

    def __init__(self, dispatcher: Any) -> None:
        self.dispatcher = dispatcher

    def publish(self, type_: str, fields: dict[str, Any], producer: Any = None, **_: Any) -> None:
        self.dispatcher.send(type_, **fields)


class ProcessRuntime:
    """A process's engine, workflows, identity, heartbeat, sweeper and publisher (``app.steplog``)."""

    def __init__(self, settings: Settings, app: Celery) -> None:
        self.settings = settings
        self.app = app
        self.node_name = f"cli@{socket.gethostname()}"
        self.registry = WorkflowRegistry.load(settings.workflow_module_list)
        unknown = sorted(set(settings.concurrency_limits) - set(self.registry.names()))
        if unknown:
            raise SettingsError(f"bad settings: STEPLOG_CONCURRENCY names unknown workflows {unknown}; "
                                f"known: {self.registry.names()}")
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._engine: Engine | None = None
        self._worker: Worker | None = None
        self._heartbeat: Heartbeat | None = None
        self._sweeper: Sweeper | None = None
        self._runner: StepRunner | None = None
        self._events = None
        self._consumer: Any = None
        self._consumer_thread: tuple[int, int] | None = None
        self._conversations: Conversations | None = None
        self.pool_size = 5  # Postgres connections kept per process (the API, serving many threads, keeps more)
        self._dead_letter_client: Any = None
        # What watches the steps: `steplog worker --metrics-port` sets metrics (workers.metrics.StepMetrics),
        # OTEL_* variables set tracing (workers.tracing.StepTracing). Set before the pool forks.
        self.metrics: Any = None
        self.tracing: Any = None

    # -- per-process state, rebuilt in a forked child ----------------------------------------------

    @property
    def engine(self) -> Engine:
        self._check_pid()
        if self._engine is None:
            self._engine = make_engine(self.settings.database_url, pool_size=self.pool_size,
                                       prepared=self.settings.prepared_statements)
        return self._engine

    def _check_pid(self) -> None:
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    if self._engine is not None:
                        after_fork(self._engine)  # the parent's sockets are not ours
                    self._engine = self._worker = self._heartbeat = self._sweeper = self._runner = None
                    self._events = None
                    self._pid = os.getpid()

    def worker(self) -> Worker:
        """This process's identity; registers it and starts its heartbeat on first use."""
        self._check_pid()
        if self._worker is None:
            with self._lock:
                if self._worker is None:
                    pid = os.getpid()
                    me = Worker(f"{self.node_name}:{pid}:{secrets.token_hex(4)}", self.node_name, pid)
                    heartbeat.register(self.engine, me)
                    self._heartbeat = Heartbeat(self.engine, me, self.settings.heartbeat_seconds)
                    self._heartbeat.start()
                    self._worker = me
        return self._worker

    def runner(self) -> StepRunner:
        self._check_pid()
        if self._runner is None:
            self._runner = StepRunner(
                self.engine, self.registry, wiring.step_policy(self.settings), self.worker, self.publish,
                # A factory, called when a step first needs it: a broken deployment fails attempts.
                services=lambda: wiring.step_services(self.settings, self.engine),
                on_commit_failure=lambda claim: self._heartbeat and self._heartbeat.release_later(claim),
                observer=self._observer(),
            )
        return self._runner

    def _observer(self) -> Observer | None:
        watching = [o for o in (self.metrics, self.tracing) if o is not None]
        return Observers(watching) if len(watching) > 1 else (watching[0] if watching else None)

    def start_sweeper(self) -> None:
        self._check_pid()
        if self._sweeper is None:
            self._sweeper = Sweeper(
                self.engine, self.worker,
                lambda dispatch, label: self.publish(dispatch, label, urgent=True),
                interval=self.settings.sweep_seconds, lease_seconds=self.settings.lease_seconds,
                redispatch_seconds=self.settings.redispatch_seconds,
                chores=[lambda: schedules.fire_due(self.engine, worker=self.worker().name)],
                epoch=wiring.broker_epoch(self.settings, self.engine),
                on_swept=self.metrics.swept if self.metrics is not None else None,
            )
            self._sweeper.start()

    def dead_letter_client(self) -> Any:
        """The Redis that keeps unreadable messages (:mod:`workers.dead_letters`), or None without one."""
        if self._dead_letter_client is None:
            url = wiring.dead_letter_url(self.settings)
            if url is None:
                return None
            import redis

            self._dead_letter_client = redis.Redis.from_url(url, socket_timeout=5)
        return self._dead_letter_client

    def stop(self) -> None:
        for thread in (self._sweeper, self._heartbeat):
            if thread is not None:
                thread.stopping.set()

    def attach_consumer(self, consumer: Any) -> None:
        """The worker's consumer (from ``worker_ready``), whose event dispatcher buffers task events."""
        self._consumer = consumer
        self._consumer_thread = (os.getpid(), threading.get_ident())

    def _buffered_events(self) -> Any:
        """The consumer's event dispatcher when called from the consumer's own thread (the solo pool),
        else None. It buffers task events and sends them as one message per event-loop turn, so a
        step's sent/received/started/progress/succeeded events cost one publish, not five."""
        consumer = self._consumer
        if consumer is None or self._consumer_thread != (os.getpid(), threading.get_ident()):
            return None
        dispatcher = consumer.event_dispatcher
        return dispatcher if dispatcher is not None and dispatcher.enabled else None

    def send_event(self, type_: str, **fields) -> None:
        """A Flower event from the task thread: buffered with the step's own events where possible;
        elsewhere (a prefork child) through one dispatcher per process (Task.send_event builds a
        dispatcher on every call)."""
        buffered = self._buffered_events()
        if buffered is not None:
            buffered.send(type_, **fields)
            return
        self._check_pid()
        if self._events is None:
            self._events = self.app.events.Dispatcher(self.app.connection_for_write(), hostname=self.node_name)
        self._events.send(type_, retry=False, **fields)

    # -- submitting a run ---------------------------------------------------------------------------

    def submit(self, workflow: str, raw: Any, *, submitted_by: str, precheck: bool = True, publish: bool = True,
               tenant: str = runs.DEFAULT_TENANT, traceparent: str | None = None, priority: int = 0) -> str:
        """Validate ``raw`` for ``workflow`` (and run its precheck), write the run (of ``tenant``, at
        ``priority`` 0-9) with its first checkpoint, its concurrency key and its dispatch, and publish
        the first step. Raises WorkflowError (or BadInput for a malformed ``traceparent``, the W3C trace
        context every step's span continues) naming the problem; then nothing is written."""
        from workers.tracing import check_traceparent

        if not isinstance(priority, int) or isinstance(priority, bool) or not 0 <= priority <= 9:
            raise InvalidInput(f"priority must be an integer from 0 to 9, not {priority!r}")
        traceparent = check_traceparent(traceparent)
        wf, data = self.registry.validate(workflow, raw, engine=self.engine if precheck else None)
        state = wf.start(wf.input_model.model_validate(data))
        flow = self.concurrency_of(wf.name, data)
        run_id = runs.create(self.engine, wf.name, data, state, submitted_by=submitted_by, tenant=tenant,
                             extra={"traceparent": traceparent} if traceparent else None, flow=flow, priority=priority)
        if publish and (flow is None or admit_first(self.engine, run_id, runs.FIRST_STEP, *flow)):
            self.publish(Dispatch(run_id, runs.FIRST_STEP, wf.name, priority))
        return run_id

    def concurrency_of(self, workflow: str, data: dict[str, Any]) -> tuple[str, int] | None:
        """A run's concurrency key and limit: ``STEPLOG_CONCURRENCY``'s for its workflow, else the
        workflow's own declaration; None when neither, or the input has no value for the key."""
        spec = self.settings.concurrency_limits.get(workflow) or self.registry.get(workflow).concurrency
        key = spec.key_of(data) if spec is not None else None
        return None if key is None else (key, spec.limit)

    # -- waking runs, and runs on a schedule ---------------------------------------------------------

    def signal(self, run_id: str, name: str, data: Any = None, *, key: str | None = None, sender: str,
               **only: Any) -> SignalOutcome:
        """Send signal ``name`` to a run (stored first, deduplicated by ``key``); a run it wakes gets
        its next step published now, not at the next sweep. ``only``: ``workflows``/``kind`` as
        :func:`checkpoint.signals.send` takes them."""
        outcome = signals.send(self.engine, run_id, name, data, key=key, sender=sender,
                               max_bytes=self.settings.inline_limit, **only)
        if outcome.dispatch is not None:
            self.publish(outcome.dispatch, starts_turn=True)
        return outcome

    @property
    def conversations(self) -> Conversations:
        """Sessions from the client's side: open one, send a message, wait for its reply."""
        if self._conversations is None:
            from workers.conversation import Conversations

            self._conversations = Conversations(self, wiring.session_cache(self.settings, wiring.hot_cache(self.settings)))
        return self._conversations

    def decide(self, run_id: str, *, approved: bool, by: str, text: str | None = None) -> SignalOutcome:
        """Approve or reject the tool call a run waits on (:func:`tasks.approvals.decide`)."""
        outcome = approvals.decide(self.engine, run_id, approved=approved, by=by, text=text,
                                   max_bytes=self.settings.inline_limit)
        if outcome.dispatch is not None:
            self.publish(outcome.dispatch)
        return outcome

    def add_schedule(self, name: str, cron: str, workflow: str, raw: Any, *, timezone: str = "UTC",
                     overlap: str = "skip", catch_up: str = "one", created_by: str) -> datetime:
        """Validate ``raw`` for ``workflow`` and store the schedule; returns its first tick."""
        spec = schedules.Cron(cron, timezone)
        wf, data = self.registry.validate(workflow, raw, engine=self.engine)
        state = wf.start(wf.input_model.model_validate(data))
        return schedules.add(self.engine, name, spec, wf.name, data, state, overlap=overlap, catch_up=catch_up,
                             created_by=created_by)

    # -- dispatch -----------------------------------------------------------------------------------

    def _sent_events(self) -> _BufferedPublish | None:
        """Inside a step (solo pool), Celery's task-sent event for the next step joins the buffered
        events of the current one (send_task_message calls ``event_dispatcher.publish``; None is
        Celery's own dispatcher)."""
        buffered = self._buffered_events()
        return None if buffered is None else _BufferedPublish(buffered)

    def publish(self, dispatch: Dispatch, label: str | None = None, *, urgent: bool = False, starts_turn: bool = False) -> bool:
        """Send a step to the broker. A failure is logged, not raised: the outbox row stays and the
        sweeper publishes it again. ``urgent`` (recoveries) puts it ahead of every other step; a
        session's step goes ahead of ordinary ones, unless it ``starts_turn`` (a message woke it)."""
        name = f"{dispatch.workflow} #{dispatch.seq}" + (f" {label}" if label else "")
        if urgent:
            level = "urgent"
        elif not starts_turn and self.registry.is_session(dispatch.workflow):
            level = "turn"
        else:
            level = "normal"
        traced = self.tracing.publishing(dispatch.run_id) if self.tracing is not None else None
        try:
            self.app.send_task(
                STEP_TASK,
                args=[dispatch.run_id, dispatch.seq],
                task_id=step_task_id(dispatch.run_id, dispatch.seq),
                # The anonymous exchange routes by queue name alone: with Redis it needs none of the
                # binding keys a FLUSHALL erases (nor a declare: the push creates the list); the
                # declare makes RabbitMQ keep a step sent before any worker has declared the queue.
                exchange="",
                routing_key=self.settings.queue,
                declare=[] if self.settings.broker_is_redis else [self.app.amqp.queues[self.settings.queue]],
                shadow=name,
                priority=step_priority(self.settings, level, dispatch.priority),
                retry=True,
                retry_policy={"max_retries": 2, "interval_start": 0.1, "interval_step": 0.2},
                event_dispatcher=self._sent_events(),
            )
            return True
        except Exception as exc:
            log.warning("publishing step %s of run %s failed (%s); the sweeper will retry", dispatch.seq, dispatch.run_id, exc)
            return False
        finally:
            if traced is not None:
                self.tracing.published(traced)

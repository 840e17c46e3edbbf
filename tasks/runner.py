"""What one step does: claim step ``seq`` of a run, run it once, commit, dispatch the next.

Any message may arrive twice, late, or after another worker took the step over; every path below
ends in a state the schema vouches for, never in an assumption about process memory.
"""

from __future__ import annotations

import logging
import os
import signal
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from checkpoint import flow, recovery, riders, runs, steps
from checkpoint.artifacts import is_pointer_json, offload, resolve
from checkpoint.errors import Throttled
from checkpoint.jsonutil import dumps
from checkpoint.steps import Claim, Dispatch, Worker
from tasks import children, logcontext
from tasks.errors import FailRun
from tasks.observe import NOTHING, Observation, Observer
from tasks.timeout import StepTimeout, time_limit
from tasks.workflow import Continue, Finish, Sleep, Spawn, StepContext, Wait, Wake
from tasks.workflow_registry import WorkflowRegistry

log = logging.getLogger("steplog.step")

MAX_BACKOFF = 60.0


@dataclass(frozen=True)
class StepPolicy:
    """The settings a step obeys (plain values, so tasks/ does not import the settings module)."""

    lease_seconds: float
    step_time_limit: float
    max_attempts: int
    retry_backoff_seconds: float
    redispatch_seconds: float = 30.0
    fault_after_commit: bool = False
    fault_before_claim: bool = False
    max_children: int = 10_000


def commit_args(outcome: Any, current_state: dict[str, Any]) -> dict[str, Any]:
    """What :func:`checkpoint.steps.commit` writes for a step's outcome; TypeError for anything else."""
    if isinstance(outcome, Finish):
        return dict(
            event_type="succeeded", state=outcome.state if outcome.state is not None else current_state,
            payload={**outcome.payload, "result": outcome.result}, status="succeeded", result=outcome.result,
            extra_writes=outcome.writes,
        )
    if isinstance(outcome, Continue):
        return dict(event_type=outcome.event, state=outcome.state, payload=outcome.payload, extra_writes=outcome.writes)
    if isinstance(outcome, Spawn):  # a fan-out parks the run until the join (tasks/children.py)
        return dict(
            event_type="waiting", state=outcome.state if outcome.state is not None else current_state,
            payload=dict(outcome.payload), status="waiting", extra_writes=outcome.writes,
        )
    if isinstance(outcome, (Wait, Sleep)):
        now = datetime.now(timezone.utc)
        if isinstance(outcome, Wait):
            signal_name, due = outcome.signal, None if outcome.timeout is None else now + timedelta(seconds=outcome.timeout)
        else:
            signal_name, due = None, outcome.due(now)
        payload = {**outcome.payload, "signal": signal_name, "since": now.isoformat(),
                   "timeout_at": None if due is None else due.isoformat()}
        return dict(
            event_type=getattr(outcome, "event", "waiting"),
            state=outcome.state if outcome.state is not None else current_state,
            payload=payload, status="waiting", extra_writes=outcome.writes, wait_signal=signal_name, wait_until=due,
        )
    raise TypeError(f"a step returned {type(outcome).__name__}, not Continue, Finish, Wait, Sleep, Map or Spawn")


def error_info(exc: BaseException) -> dict[str, Any]:
    return {
        "type": type(exc).__name__,
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(exc)),
    }


class StepRunner:
    """Runs one step of any run; holds no run state between calls."""

    def __init__(
        self,
        engine: Engine,
        registry: WorkflowRegistry,
        policy: StepPolicy,
        worker: Callable[[], Worker],
        publish: Callable[[Dispatch, str | None], None],
        *,
        services: Any = None,
        on_commit_failure: Callable[[Claim], None] | None = None,
        observer: Observer | None = None,
    ) -> None:
        self.engine = engine
        self.registry = registry
        self.policy = policy
        self.worker = worker  # the current process's identity (differs per pool child)
        self.publish = publish
        # An object, or a factory called when a step first needs it: a broken deployment (a tool
        # module that fails to import) is then a failed attempt, counted and bounded, not a loop.
        self._services = services
        self.on_commit_failure = on_commit_failure
        self.observer = observer  # metrics and traces (tasks.observe); None: nothing watches
        self._faulted = False  # the fault_before_claim test hook fired
        self._running: set[tuple[str, int]] = set()  # (run_id, seq) of the steps this process runs now

    @property
    def services(self) -> Any:
        if callable(self._services):
            self._services = self._services()
            if getattr(self._services, "workflows", False) is None:
                self._services.workflows = self.registry  # a Map(tool=) child finds its parent's tools
        return self._services

    def run(self, run_id: str, seq: int) -> str:
        """Execute step ``seq`` of ``run_id``; returns what happened, for logs and tests."""
        if self.observer is None:
            return self._run(run_id, seq, NOTHING)
        obs, outcome = self.observer.begin(run_id, seq), "error"
        try:
            outcome = self._run(run_id, seq, obs)
            return outcome
        finally:
            obs.ended(outcome)

    def _run(self, run_id: str, seq: int, obs: Observation) -> str:
        me = self.worker()
        logcontext.update(run_id=run_id, seq=seq, worker=me.name)
        if self.policy.fault_before_claim and not self._faulted:
            self._faulted = True  # test hook: freeze, once, holding a message received and not claimed
            log.warning("test fault: stopping before claiming step %s of run %s", seq, run_id)
            os.kill(os.getpid(), signal.SIGSTOP)
        deadline = self.policy.step_time_limit + self.policy.lease_seconds
        claim = steps.claim(self.engine, run_id, seq, me, deadline=deadline, lease_seconds=self.policy.lease_seconds)
        if claim is None:
            return self._not_claimed(run_id, seq, me)
        logcontext.update(attempt=claim.attempt)
        if claim.attempt > self.policy.max_attempts:
            return self._exhausted(claim, me)
        key = (run_id, seq)
        self._running.add(key)
        try:
            return self._execute(claim, me, obs)
        finally:
            self._running.discard(key)

    # -- a message that finds nothing to do -------------------------------------------------------

    def _not_claimed(self, run_id: str, seq: int, me: Worker) -> str:
        pos = steps.position(self.engine, run_id, lease_seconds=self.policy.lease_seconds, seq=seq)
        if pos is None:
            log.warning("step %s of unknown run %s dropped", seq, run_id)
            return "unknown_run"
        if pos.status in ("succeeded", "failed", "cancelled"):
            return "finished"
        if pos.next_seq > seq:
            # A duplicate of a step already written: make sure its successor is on its way, by
            # re-sending it only if its dispatch looks lost (the sweeper's rule, for this run).
            for dispatch in recovery.sweep_outbox(
                self.engine, me.owner, lease_seconds=self.policy.lease_seconds,
                redispatch_seconds=self.policy.redispatch_seconds, run_id=run_id,
            ):
                self.publish(dispatch, None)
            return "duplicate"
        if pos.status == "waiting":
            return "waiting"  # parked: a signal or a timer queues its next step
        if pos.cancel_requested_by and pos.lease_free:
            runs.finalize_cancel(self.engine, run_id, worker=me.name, lease_seconds=self.policy.lease_seconds)
            return "cancelled"
        if not pos.lease_free and pos.lease_owner == me.owner and (run_id, seq) not in self._running:
            # This very process holds the step yet does not run it: its claim landed but the answer
            # was lost (Postgres went down as it committed, and the task retried). Nobody else may
            # take the step until its deadline, so hand it back now, as after a failed commit.
            steps.hand_back(self.engine, run_id, seq, pos.attempt, me)
            log.warning("step %s of run %s: a claim of ours landed unanswered; handing the step back", seq, run_id)
            return "handed_back"
        if not pos.lease_free:
            return "busy"  # a live worker holds this step; if it dies, the sweeper re-dispatches
        if pos.throttled:
            return "throttled"  # over its concurrency key's limit: a freed slot wakes it (checkpoint/flow.py)
        log.warning("step %s of run %s is ahead of the run (next is %s); dropped", seq, run_id, pos.next_seq)
        return "early"

    def _exhausted(self, claim: Claim, me: Worker) -> str:
        error = {
            "type": "AttemptsExhausted",
            "message": (
                f"step {claim.seq} was started {claim.attempt - 1} times without finishing "
                f"(limit STEPLOG_MAX_ATTEMPTS={self.policy.max_attempts}); see its attempts"
            ),
        }
        steps.fail(self.engine, claim, me, error=error, woke=self._woke)
        log.error("run %s failed: %s", claim.run_id, error["message"])
        return "failed"

    # -- large checkpoints live in the artifact store, events keep a pointer -------------------------

    def _offload(self, value: dict[str, Any]) -> dict[str, Any]:
        store = getattr(self.services, "artifacts", None)
        if store is None or len(dumps(value)) <= self.services.inline_limit:
            return value
        return offload(value, store=store, inline_limit=self.services.inline_limit)

    def _resolve(self, value: Any) -> Any:
        return resolve(value, store=self.services.artifacts) if is_pointer_json(value) else value

    # -- the step itself ---------------------------------------------------------------------------

    def _execute(self, claim: Claim, me: Worker, obs: Observation) -> str:
        try:
            wf = self.registry.get(claim.workflow)
            inp = wf.input_model.model_validate(claim.input)
            state = self._resolve(claim.state)
            kind = wf.describe(state) if wf.describe else wf.name
            logcontext.update(step=kind)
            obs.claimed(claim, kind)
            history = self.services.load_history(claim.run_id, claim.seq - 1) if wf.history else None
            ctx = StepContext(claim.run_id, claim.seq, claim.attempt, inp, state, me.name, me.owner, self.services,
                              history, self._wake(claim))
            started = time.perf_counter()
            with time_limit(wf.time_limit or self.policy.step_time_limit):
                outcome = wf.step(ctx)
            step_ms = round((time.perf_counter() - started) * 1000, 3)
        except FailRun as exc:
            return self._fail_now(claim, me, exc)
        except Throttled as exc:
            return self._defer(claim, me, exc)
        except (Exception, StepTimeout) as exc:
            return self._attempt_failed(claim, me, exc)

        plan = None
        try:
            kwargs = commit_args(outcome, state)
            if isinstance(outcome, Spawn):
                plan = self._plan(claim, wf, outcome)
                kwargs["payload"] = {**kwargs["payload"], **plan.payload()}
                kwargs["extra_writes"] = (*kwargs["extra_writes"], plan.write(me.owner, me.name))
        except TypeError as exc:
            return self._attempt_failed(claim, me, TypeError(f"workflow {wf.name!r}: {exc}"))
        except FailRun as exc:  # too many children, an unknown child workflow or tool: nothing is spawned
            return self._fail_now(claim, me, exc)
        if kwargs.get("status") == "waiting":
            kwargs["payload"] = {**kwargs["payload"], **obs.parked()}  # e.g. the span the next step links to

        try:
            label = wf.describe(kwargs["state"]) if wf.describe else None  # from the state, not its pointer
            kwargs["state"] = self._offload(kwargs["state"])
            kwargs["payload"] = self._offload(kwargs["payload"])
            status = steps.commit(self.engine, claim, me, step_ms=step_ms, woke=self._woke, **kwargs)
        except SQLAlchemyError as exc:
            log.error("commit of step %s of run %s failed: %s; handing the step back", claim.seq, claim.run_id, exc)
            if self.on_commit_failure:
                self.on_commit_failure(claim)
            return "commit_failed"
        except Exception as exc:  # e.g. a state that is not JSON: the step's fault, not the database's
            return self._attempt_failed(claim, me, exc)

        if status is None:
            log.warning(
                "step %s of run %s: attempt %s lost its lease before committing; result discarded",
                claim.seq, claim.run_id, claim.attempt,
            )
            return "fenced"
        obs.committed(outcome.payload)
        # Redis is a cache and a doorbell: never a reason to fail a committed step. The next step's
        # context is cached before it is dispatched; followers are told after, off its path.
        if history is not None and status in ("running", "succeeded"):
            self._hot(claim, lambda: self.services.warm_history(
                history, claim.seq, kwargs["event_type"], kwargs["state"], kwargs["payload"]))
        if self.policy.fault_after_commit:
            os.kill(os.getpid(), signal.SIGKILL)  # test hook: die between commit and publish
        afters = getattr(outcome, "after", ())
        progress = {"seq": claim.seq, "type": kwargs["event_type"], "status": status, "worker": me.name,
                    "attempt": claim.attempt}
        rode = False
        if status in ("running", "queued"):
            # "queued": the wait was met at once by a signal sent before it; seq + 1 is that signal.
            nxt = Dispatch(claim.run_id, claim.seq + (1 if status == "running" else 2), wf.name, claim.priority)
            rode = self._publish(claim, nxt, label, None if afters else progress)
        elif status == "waiting" and plan is not None:  # the children the commit dispatched
            for child_id, child_wf in plan.first():
                self.publish(Dispatch(child_id, 2, child_wf), None)
        for after in afters:
            self._hot(claim, after)
        if status == "waiting":
            self._hot(claim, lambda: self.services.park(claim.run_id, claim.seq))  # a waiting run keeps no Redis key
        elif not rode:
            self._hot(claim, lambda: self.services.progress(claim.run_id, progress))
        return status

    def _publish(self, claim: Claim, dispatch: Dispatch, label: str | None, progress: dict[str, Any] | None) -> bool:
        """Publish the next step; the progress append rides in the same Redis round trip when the
        broker is the hot tier's Redis (checkpoint.riders). Whether it rode."""
        offer = None
        if progress is not None:
            try:
                offer = self.services.offer_progress(claim.run_id, progress)
            except Exception as exc:  # the hot tier is best effort; the append is then sent alone
                log.warning("progress of step %s of run %s not offered: %s", claim.seq, claim.run_id, exc)
        try:
            self.publish(dispatch, label)
        finally:
            if offer is not None:
                riders.withdraw()
        return offer is not None and offer.taken

    # -- fan-out: children planned before the commit, their outcomes read at the join ----------------

    def _plan(self, claim: Claim, wf: Any, spawn: Spawn) -> children.Plan:
        declared = {getattr(t, "name", None) for t in wf.tools}
        return children.plan(
            spawn, self.registry, run_id=claim.run_id, seq=claim.seq, max_children=self.policy.max_children,
            parent_workflow=wf.name, tool_known=lambda name: name in self.services.tools or name in declared,
        )

    def _wake(self, claim: Claim) -> Wake | None:
        wake = Wake.from_event(claim.wake)
        if wake is not None and wake.kind == "joined":
            wake = replace(wake, data=children.joined(self.engine, claim.run_id, wake.data["fanout_seq"],
                                                      artifacts=getattr(self.services, "artifacts", None)))
        return wake

    def _hot(self, claim: Claim, write: Callable[[], Any]) -> None:
        try:
            write()
        except Exception as exc:
            log.warning("hot tier not updated after step %s of run %s: %s", claim.seq, claim.run_id, exc)

    def _woke(self, dispatch: Dispatch) -> None:
        """Publish the step a freed concurrency slot woke (its waiter's dispatch is ours to send)."""
        self.publish(dispatch, None)

    def _defer(self, claim: Claim, me: Worker, exc: Throttled) -> str:
        """No budget (a rate limit): hand the step back undone, due again when the limiter says; the
        worker goes on to other steps meanwhile (no sleep here)."""
        try:
            flow.defer(self.engine, claim, me, reason=exc.reason, delay=exc.retry_after, woke=self._woke)
        except SQLAlchemyError as db_exc:
            log.error("deferring step %s of run %s failed: %s", claim.seq, claim.run_id, db_exc)
            if self.on_commit_failure:
                self.on_commit_failure(claim)
            return "commit_failed"
        log.info("step %s of run %s throttled (%s); due again in %.2fs", claim.seq, claim.run_id, exc.reason,
                 exc.retry_after)
        return "throttled"

    def _fail_now(self, claim: Claim, me: Worker, exc: FailRun) -> str:
        steps.fail(self.engine, claim, me, error=error_info(exc), woke=self._woke)
        log.error("run %s failed at step %s: %s", claim.run_id, claim.seq, exc)
        return "failed"

    def _attempt_failed(self, claim: Claim, me: Worker, exc: BaseException) -> str:
        try:
            return self._record_failure(claim, me, exc)
        except SQLAlchemyError as db_exc:
            log.error("recording the failure of step %s of run %s failed: %s", claim.seq, claim.run_id, db_exc)
            if self.on_commit_failure:
                self.on_commit_failure(claim)
            return "commit_failed"

    def _record_failure(self, claim: Claim, me: Worker, exc: BaseException) -> str:
        info = error_info(exc)
        outcome = "timed_out" if isinstance(exc, StepTimeout) else "failed"
        if claim.attempt >= self.policy.max_attempts:
            steps.fail(self.engine, claim, me, error=info, woke=self._woke)
            log.error("run %s failed at step %s after %s attempts: %s", claim.run_id, claim.seq, claim.attempt, exc)
            return "failed"
        delay = min(self.policy.retry_backoff_seconds * 2 ** (claim.attempt - 1), MAX_BACKOFF)
        steps.retry(self.engine, claim, me, error=info, delay=delay, outcome=outcome, woke=self._woke)
        log.warning(
            "step %s of run %s attempt %s failed (%s: %s); retrying in %.1fs",
            claim.seq, claim.run_id, claim.attempt, info["type"], exc, delay,
        )
        return "retrying"

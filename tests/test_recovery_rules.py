"""The outbox sweep's rules on a real Postgres: which unclaimed dispatches come back, and when.

Fast checks of the SQL; tests/test_engine.py proves the same with real workers.
"""

from __future__ import annotations

import pytest
from sqlalchemy import text

from checkpoint import heartbeat, recovery, runs, steps
from checkpoint.steps import Worker

LEASE = 1.2
BACKSTOP = 600.0  # far off: nothing below may owe its re-send to it


@pytest.fixture
def sweeper(engine) -> Worker:
    me = Worker("sweeper:1:aa", "sweeper@h", 1)
    heartbeat.register(engine, me)
    return me


def _sweep(engine, sweeper: Worker) -> list[tuple[str, int]]:
    found = recovery.sweep_outbox(engine, sweeper.owner, lease_seconds=LEASE, redispatch_seconds=BACKSTOP)
    return [(d.run_id, d.seq) for d in found]


def _set(engine, sql: str, **params) -> None:
    with engine.begin() as conn:
        conn.execute(text(sql), params)


def _dispatched(engine, run_id: str, ago: float) -> None:
    _set(engine, "UPDATE outbox SET dispatched_at = now() - make_interval(secs => :ago) WHERE run_id = :r",
         r=run_id, ago=ago)


def _died(engine, name: str, ago: float) -> None:
    """A worker process whose last heartbeat was ``ago`` seconds ago."""
    _set(engine, "INSERT INTO worker_procs (id, worker, pid, heartbeat_at) "
                 "VALUES (:id, :id, 9, now() - make_interval(secs => :ago))", id=name, ago=ago)


def test_a_dead_workers_possible_messages_are_re_sent_once_per_death(engine, sweeper) -> None:
    queued = runs.create(engine, "countdown", {"steps": 1}, {"left": 1}, submitted_by="test")
    _dispatched(engine, queued, 10)  # published by a submitter (no heartbeat): only the backstop today
    later = runs.create(engine, "countdown", {"steps": 1}, {"left": 1}, submitted_by="test")
    assert _sweep(engine, sweeper) == []  # nobody died: a long queue waits its turn, never re-sent

    _died(engine, "gone-1", 5)  # alive after `queued` was published, `later` published after its death
    _dispatched(engine, later, 0)
    assert _sweep(engine, sweeper) == [(queued, 2)]
    assert _sweep(engine, sweeper) == []  # once per death: the re-send is newer than it

    # A second worker dies (alive 3 s ago): it may hold the re-sent message, or `later`.
    _dispatched(engine, queued, 4)
    _dispatched(engine, later, 2.5)
    _died(engine, "gone-2", 3)
    assert sorted(_sweep(engine, sweeper)) == sorted([(queued, 2), (later, 2)])
    assert _sweep(engine, sweeper) == []


def test_a_commit_that_landed_while_its_worker_saw_an_error_has_its_next_step_sent_at_the_next_sweep(
        engine, sweeper) -> None:
    me = Worker("w:2:bb", "w@h", 2)
    heartbeat.register(engine, me)
    run_id = runs.create(engine, "countdown", {"steps": 2}, {"left": 2}, submitted_by="test")
    claim = steps.claim(engine, run_id, 2, me, deadline=30, lease_seconds=LEASE)
    assert steps.commit(engine, claim, me, event_type="step", state={"left": 1}, payload={}) == "running"
    # Postgres applied the commit and went away before answering: the worker saw an error, did not
    # publish step 3, and its heartbeat hands the step back once Postgres answers again.
    assert _sweep(engine, sweeper) == []  # a live owner's fresh promise: not a sweeper's business
    steps.release(engine, claim, me)
    assert _sweep(engine, sweeper) == [(run_id, 3)]
    assert [e["seq"] for e in runs.events(engine, run_id)] == [1, 2]  # the release took nothing back


def test_a_commit_that_did_not_land_is_handed_back_as_before(engine, sweeper) -> None:
    me = Worker("w:3:cc", "w@h", 3)
    heartbeat.register(engine, me)
    run_id = runs.create(engine, "countdown", {"steps": 2}, {"left": 2}, submitted_by="test")
    claim = steps.claim(engine, run_id, 2, me, deadline=30, lease_seconds=LEASE)
    steps.release(engine, claim, me)
    assert _sweep(engine, sweeper) == [(run_id, 2)]
    assert runs.get(engine, run_id)["lease_owner"] is None


def test_a_sweep_publishes_what_it_took_even_when_a_later_part_fails(engine, sweeper) -> None:
    # A worker died holding step 2; the sweep takes its lease, then a later part of the sweep fails (as
    # on a pooled connection that died with a Postgres restart). The step taken must still be sent: it
    # is promised by a live sweeper now, and only the backstop would send it otherwise.
    gone = Worker("gone:4:dd", "gone@h", 4)
    heartbeat.register(engine, gone)
    run_id = runs.create(engine, "countdown", {"steps": 2}, {"left": 2}, submitted_by="test")
    assert steps.claim(engine, run_id, 2, gone, deadline=30, lease_seconds=LEASE) is not None
    _set(engine, "UPDATE worker_procs SET heartbeat_at = now() - interval '5 seconds' WHERE id = :id", id=gone.owner)

    def broken_chore() -> list:
        raise RuntimeError("terminating connection due to administrator command")

    published: list[tuple[str, int]] = []
    sweep = recovery.Sweeper(engine, lambda: sweeper, lambda d, _label: published.append((d.run_id, d.seq)),
                             interval=60, lease_seconds=LEASE, redispatch_seconds=BACKSTOP, chores=[broken_chore])
    with pytest.raises(RuntimeError, match="administrator command"):
        sweep.sweep()
    assert published == [(run_id, 2)]
    assert runs.get(engine, run_id)["lease_owner"] is None


def test_a_claim_that_landed_unanswered_is_handed_back_by_its_own_process(engine, sweeper) -> None:
    # Postgres committed a worker's claim and went down before answering; the step task retried, and
    # its claim now finds the step leased to... itself, alive. Without a hand-back nobody could take the
    # step before its deadline (the step time limit plus the lease), far beyond the backstop.
    from tasks.runner import StepPolicy, StepRunner
    from tasks.workflow_registry import WorkflowRegistry

    registry = WorkflowRegistry.load()
    countdown = registry.get("countdown")
    start = countdown.start(countdown.input_model.model_validate({"steps": 1}))
    me = Worker("w:5:ee", "w@h", 5)
    heartbeat.register(engine, me)
    run_id = runs.create(engine, "countdown", {"steps": 1}, start, submitted_by="test")
    assert steps.claim(engine, run_id, 2, me, deadline=300, lease_seconds=LEASE) is not None  # the lost answer
    published = []
    runner = StepRunner(engine, registry, StepPolicy(lease_seconds=LEASE, step_time_limit=300,
                        max_attempts=5, retry_backoff_seconds=0.1), lambda: me, lambda d, _l=None: published.append(d))
    assert runner.run(run_id, 2) == "handed_back"
    assert _sweep(engine, sweeper) == [(run_id, 2)]  # at the next sweep, not at the deadline
    assert runner.run(run_id, 2) == "succeeded"
    assert [(a["attempt"], a["outcome"]) for a in runs.attempts(engine, run_id)] == [(1, "lost"), (2, "committed")]
    # Another worker's live lease is still left alone.
    other = runs.create(engine, "countdown", {"steps": 1}, start, submitted_by="test")
    assert steps.claim(engine, other, 2, sweeper, deadline=300, lease_seconds=LEASE) is not None
    assert runner.run(other, 2) == "busy"

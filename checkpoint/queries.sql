-- Every query of the event log, the outbox, leases and liveness, each under a `-- name:` header.
-- A step costs two statements: claim_step and commit_step. Each is one round trip and one commit.
--
-- Whether a lease is free (nobody holds it, its hard deadline passed, or its owner stopped
-- heart-beating for :lease_seconds) is one SQL function, steplog_lease_free, and whether a process is
-- dead is steplog_owner_dead; both are created by migration 0006.
--
-- Flow control (migration 0011): a run with a concurrency key is admitted by steplog_flow_admit inside
-- the claim (over the limit: not claimed, its dispatch waits for a slot); a commit, retry or failure
-- that frees its slot wakes the key's oldest waiter with steplog_flow_wake in the same statement, and
-- returns it (woke_*) for the committing worker to publish. Queries that return dispatches return
-- the run's priority too.

-- name: register_proc
INSERT INTO worker_procs (id, worker, pid) VALUES (:id, :worker, :pid)
ON CONFLICT (id) DO UPDATE SET heartbeat_at = now()

-- name: heartbeat
UPDATE worker_procs SET heartbeat_at = now() WHERE id = :id RETURNING id

-- name: forget_procs
-- Liveness rows of processes silent for an hour; their leases were taken over long ago.
DELETE FROM worker_procs WHERE heartbeat_at < now() - interval '1 hour'

-- name: create_run
WITH run AS (
  INSERT INTO runs (run_id, workflow, input, status, next_seq, tenant, flow_key, flow_limit, priority)
  VALUES (:run_id, :workflow, CAST(:input AS jsonb), 'queued', 2, :tenant, :flow_key, :flow_limit, :priority)
  RETURNING run_id
), ev AS (
  INSERT INTO events (run_id, seq, type, state, payload, worker, pid, attempt)
  SELECT run_id, 1, 'submitted', CAST(:state AS jsonb), CAST(:payload AS jsonb), :worker, :pid, 0 FROM run
)
INSERT INTO outbox (run_id, seq, owner, dispatched_at)
SELECT run_id, 2, NULL, now() FROM run

-- name: claim_step
-- Take the lease on step :seq, count the attempt, consume its dispatch and read the checkpoint it
-- starts from (and, after a wait, what woke it, and how long its dispatch waited), in one statement. Its commit does not wait for the
-- WAL fsync (a claim lost in a crash is claimed again): set_config(..., true) is SET LOCAL, for this
-- statement's own transaction only, so it also holds behind a transaction-mode pooler.
WITH claimed AS (
  UPDATE runs r
     SET status = 'running', attempt = r.attempt + 1, lease_owner = :owner,
         lease_started_at = now(), lease_expires_at = now() + (:deadline * interval '1 second'),
         updated_at = now(), flow_slot = (r.flow_key IS NOT NULL)
   WHERE r.run_id = :run_id AND r.next_seq = :seq AND r.status IN ('queued', 'running')
     AND r.cancel_requested_by IS NULL
     AND steplog_lease_free(r.lease_owner, r.lease_started_at, r.lease_expires_at, :lease_seconds)
     AND (r.flow_key IS NULL OR steplog_flow_admit(r.run_id, :seq, r.flow_key, r.flow_limit, r.flow_slot))
  RETURNING r.run_id, r.workflow, r.input, r.attempt, r.priority,
            set_config('synchronous_commit', 'off', true) AS async_commit
), consumed AS (
  DELETE FROM outbox o USING claimed c WHERE o.run_id = c.run_id AND o.seq = :seq
  RETURNING o.dispatched_at
), lost AS (
  UPDATE step_attempts a SET outcome = 'lost', finished_at = now()
   WHERE a.run_id = :run_id AND a.seq = :seq AND a.outcome IS NULL AND EXISTS (SELECT 1 FROM claimed)
), started AS (
  INSERT INTO step_attempts (run_id, seq, attempt, owner, worker, pid)
  SELECT run_id, :seq, attempt, :owner, :worker, :pid FROM claimed
)
SELECT c.workflow, c.input, c.attempt, e.state,
       CASE WHEN e.type IN ('signal', 'timed_out', 'woke', 'joined') THEN jsonb_build_object('type', e.type, 'payload', e.payload) END,
       (SELECT extract(epoch FROM now() - d.dispatched_at)::float8 FROM consumed d) AS queue_wait,
       c.priority
  FROM claimed c JOIN events e ON e.run_id = c.run_id AND e.seq = :seq - 1

-- name: run_position
-- Why a claim found nothing to do: the step is done, the run is over, a live worker holds it (maybe
-- the asker itself, whose earlier claim landed unanswered: see StepRunner._not_claimed), or
-- (throttled) step :seq waits for a concurrency slot.
SELECT r.status, r.next_seq, r.cancel_requested_by,
       steplog_lease_free(r.lease_owner, r.lease_started_at, r.lease_expires_at, :lease_seconds) AS lease_free,
       r.lease_owner, r.attempt,
       EXISTS (SELECT 1 FROM outbox o WHERE o.run_id = r.run_id AND o.seq = :seq
                  AND o.throttle_key IS NOT NULL AND o.dispatched_at IS NULL) AS throttled
  FROM runs r WHERE r.run_id = :run_id

-- name: commit_step
-- Fenced append: only the holder of this attempt's lease advances the run. In the same statement:
-- the event, the next step's outbox row (promised by :owner, who publishes right after), and the
-- attempt's outcome. A cancel requested meanwhile turns the continuation into a `cancelled` event.
-- With :status 'waiting' the run parks: what it waits for goes on its row, and no outbox row is made.
-- A child run (fan-out) whose cancel was requested ends `cancelled` even when its step finished: its
-- parent's join no longer counts it (checkpoint/fanout.sql).
WITH adv AS (
  UPDATE runs r
     SET next_seq = :seq + 1 + (CASE WHEN :status IN ('running', 'waiting') AND r.cancel_requested_by IS NOT NULL THEN 1 ELSE 0 END),
         status = CASE WHEN :status IN ('running', 'waiting') AND r.cancel_requested_by IS NOT NULL THEN 'cancelled'
                       WHEN :status = 'succeeded' AND r.cancel_requested_by IS NOT NULL AND r.parent_run_id IS NOT NULL THEN 'cancelled'
                       ELSE :status END,
         result = CAST(:result AS jsonb), attempt = 0,
         wait_signal = CASE WHEN :status = 'waiting' THEN CAST(:wait_signal AS text) END,
         wait_since = CASE WHEN :status = 'waiting' THEN now() END,
         wait_until = CASE WHEN :status = 'waiting' THEN CAST(:wait_until AS timestamptz) END,
         lease_owner = NULL, lease_started_at = NULL, lease_expires_at = NULL, updated_at = now(),
         flow_slot = false
   WHERE r.run_id = :run_id AND r.next_seq = :seq AND r.lease_owner = :owner AND r.attempt = :attempt
  RETURNING r.run_id, r.status, r.cancel_requested_by, r.flow_key
), ev AS (
  INSERT INTO events (run_id, seq, type, state, payload, worker, pid, attempt)
  SELECT run_id, :seq, CASE WHEN :status = 'succeeded' AND status = 'cancelled' THEN 'cancelled' ELSE :type END,
         CAST(:state AS jsonb), CAST(:payload AS jsonb), :worker, :pid, :attempt FROM adv
), cancel_ev AS (
  INSERT INTO events (run_id, seq, type, state, payload, worker, pid, attempt)
  SELECT run_id, :seq + 1, 'cancelled', CAST(:state AS jsonb), jsonb_build_object('by', cancel_requested_by),
         :worker, :pid, 0
    FROM adv WHERE :status IN ('running', 'waiting') AND status = 'cancelled'
), nxt AS (
  INSERT INTO outbox (run_id, seq, owner, dispatched_at)
  SELECT run_id, :seq + 1, :owner, now() FROM adv WHERE status = 'running'
), att AS (
  UPDATE step_attempts SET outcome = 'committed', finished_at = now(), step_ms = :step_ms
   WHERE run_id = :run_id AND seq = :seq AND attempt = :attempt AND EXISTS (SELECT 1 FROM adv)
), freed AS (
  SELECT w.* FROM adv, steplog_flow_wake(adv.flow_key, :owner, 1) w
)
SELECT adv.status, f.run_id AS woke_run_id, f.seq AS woke_seq, f.workflow AS woke_workflow, f.priority AS woke_priority
  FROM adv LEFT JOIN freed f ON true

-- name: retry_step
-- A failed attempt hands the step back: release the lease and queue the same step after a delay.
-- The sweeper publishes it when it is due, so the delay lives in Postgres, not in a broker countdown.
WITH rel AS (
  UPDATE runs r SET lease_owner = NULL, lease_started_at = NULL, lease_expires_at = NULL, updated_at = now(),
                    flow_slot = false
   WHERE r.run_id = :run_id AND r.next_seq = :seq AND r.lease_owner = :owner AND r.attempt = :attempt
  RETURNING r.run_id, r.flow_key
), att AS (
  UPDATE step_attempts SET outcome = :outcome, error = CAST(:error AS jsonb), finished_at = now()
   WHERE run_id = :run_id AND seq = :seq AND attempt = :attempt AND EXISTS (SELECT 1 FROM rel)
), q AS (
  INSERT INTO outbox (run_id, seq, owner, available_at, dispatched_at)
  SELECT run_id, :seq, NULL, now() + (:delay * interval '1 second'), NULL FROM rel
  ON CONFLICT (run_id, seq) DO UPDATE
     SET available_at = EXCLUDED.available_at, dispatched_at = NULL, owner = NULL
  RETURNING run_id
), freed AS (
  SELECT w.* FROM rel, steplog_flow_wake(rel.flow_key, :owner, 1) w
)
SELECT q.run_id, f.run_id AS woke_run_id, f.seq AS woke_seq, f.workflow AS woke_workflow, f.priority AS woke_priority
  FROM q LEFT JOIN freed f ON true

-- name: fail_run
-- The last allowed attempt failed: the run ends `failed`, its event lists every attempt.
WITH adv AS (
  UPDATE runs r
     SET status = 'failed', error = CAST(:error AS jsonb), next_seq = :seq + 1, attempt = 0,
         lease_owner = NULL, lease_started_at = NULL, lease_expires_at = NULL, updated_at = now(),
         flow_slot = false
   WHERE r.run_id = :run_id AND r.next_seq = :seq AND r.lease_owner = :owner AND r.attempt = :attempt
  RETURNING r.run_id, r.flow_key
), att AS (
  UPDATE step_attempts SET outcome = 'failed', error = CAST(:error AS jsonb), finished_at = now()
   WHERE run_id = :run_id AND seq = :seq AND attempt = :attempt AND EXISTS (SELECT 1 FROM adv)
), attempts AS (
  SELECT coalesce(jsonb_agg(jsonb_build_object(
           'attempt', a.attempt, 'worker', a.worker, 'pid', a.pid,
           'outcome', CASE WHEN a.attempt = :attempt THEN 'failed' ELSE coalesce(a.outcome, 'lost') END,
           'error', CASE WHEN a.attempt = :attempt THEN CAST(:error AS jsonb) ELSE a.error END,
           'started_at', a.started_at) ORDER BY a.attempt), '[]'::jsonb) AS list
    FROM step_attempts a WHERE a.run_id = :run_id AND a.seq = :seq
), ev AS (
  INSERT INTO events (run_id, seq, type, state, payload, worker, pid, attempt)
  SELECT adv.run_id, :seq, 'failed',
         (SELECT e.state FROM events e WHERE e.run_id = :run_id AND e.seq = :seq - 1),
         jsonb_build_object('error', CAST(:error AS jsonb), 'attempts', attempts.list),
         :worker, :pid, :attempt
    FROM adv, attempts
  RETURNING seq
), freed AS (
  SELECT w.* FROM adv, steplog_flow_wake(adv.flow_key, :owner, 1) w
)
SELECT ev.seq, f.run_id AS woke_run_id, f.seq AS woke_seq, f.workflow AS woke_workflow, f.priority AS woke_priority
  FROM ev LEFT JOIN freed f ON true

-- name: release_lease
-- Best effort after a database error in the commit: hand the step back at once, not at the deadline.
-- The commit may have landed all the same (Postgres applied it and went down before answering):
-- then the run has moved on and the next step's dispatch, promised by :owner, was never published;
-- it is marked unsent, so the next sweep publishes it instead of the backstop, much later.
WITH rel AS (
  UPDATE runs r SET lease_owner = NULL, lease_started_at = NULL, lease_expires_at = NULL, updated_at = now()
   WHERE r.run_id = :run_id AND r.next_seq = :seq AND r.lease_owner = :owner AND r.attempt = :attempt
  RETURNING r.run_id
), unsent AS (
  UPDATE outbox o SET dispatched_at = NULL, owner = NULL
   WHERE o.run_id = :run_id AND o.seq > :seq AND o.owner = :owner AND NOT EXISTS (SELECT 1 FROM rel)
)
INSERT INTO outbox (run_id, seq, owner, dispatched_at)
SELECT run_id, :seq, NULL, NULL FROM rel
ON CONFLICT (run_id, seq) DO UPDATE SET dispatched_at = NULL, owner = NULL

-- name: request_cancel
UPDATE runs SET cancel_requested_by = coalesce(cancel_requested_by, :by), updated_at = now()
 WHERE run_id = :run_id AND status IN ('queued', 'running', 'waiting')
RETURNING status

-- name: finalize_cancel
-- A cancel whose run no live worker is stepping (a waiting run has no step in flight): end it now
-- with a `cancelled` event.
WITH adv AS (
  UPDATE runs r
     SET status = 'cancelled', next_seq = r.next_seq + 1, attempt = 0,
         lease_owner = NULL, lease_started_at = NULL, lease_expires_at = NULL, updated_at = now(),
         wait_signal = NULL, wait_since = NULL, wait_until = NULL,
         flow_slot = false  -- its key's next waiter is woken by the sweeper's flow repair
   WHERE r.run_id = :run_id AND r.status IN ('queued', 'running', 'waiting') AND r.cancel_requested_by IS NOT NULL
     AND steplog_lease_free(r.lease_owner, r.lease_started_at, r.lease_expires_at, :lease_seconds)
  RETURNING r.run_id, r.next_seq - 1 AS seq, r.cancel_requested_by
), dropped AS (
  DELETE FROM outbox o USING adv WHERE o.run_id = adv.run_id
), lost AS (
  UPDATE step_attempts a SET outcome = 'lost', finished_at = now()
    FROM adv WHERE a.run_id = adv.run_id AND a.outcome IS NULL
)
INSERT INTO events (run_id, seq, type, state, payload, worker, pid, attempt)
SELECT adv.run_id, adv.seq, 'cancelled',
       (SELECT e.state FROM events e WHERE e.run_id = adv.run_id AND e.seq = adv.seq - 1),
       jsonb_build_object('by', adv.cancel_requested_by), :worker, :pid, 0
  FROM adv
RETURNING seq

-- name: sweep_lost_leases
-- Steps whose worker process went silent or that overran their deadline: release the lease and
-- dispatch the step again. SKIP LOCKED lets every worker sweep at once, each run handled once.
-- A keyed run keeps its concurrency slot: the step taken over runs in it.
WITH lost AS (
  SELECT r.run_id, r.next_seq, r.attempt, (r.lease_expires_at < now()) AS overran
    FROM runs r
   WHERE r.lease_owner IS NOT NULL
     AND steplog_lease_free(r.lease_owner, r.lease_started_at, r.lease_expires_at, :lease_seconds)
   FOR UPDATE OF r SKIP LOCKED
   LIMIT 200
), rel AS (
  UPDATE runs r SET lease_owner = NULL, lease_started_at = NULL, lease_expires_at = NULL, updated_at = now()
    FROM lost WHERE r.run_id = lost.run_id
  RETURNING r.run_id, r.next_seq, r.workflow, r.priority, lost.attempt, lost.overran
), att AS (
  UPDATE step_attempts a
     SET outcome = CASE WHEN rel.overran THEN 'timed_out' ELSE 'lost' END, finished_at = now(),
         error = CASE WHEN rel.overran THEN jsonb_build_object('type', 'StepTimeout',
                   'message', 'the step overran its deadline and was taken over')
                 ELSE jsonb_build_object('type', 'WorkerLost',
                   'message', 'the worker process stopped heart-beating mid-step') END
    FROM rel WHERE a.run_id = rel.run_id AND a.seq = rel.next_seq AND a.attempt = rel.attempt
               AND a.outcome IS NULL
), queued AS (
  INSERT INTO outbox (run_id, seq, owner, dispatched_at)
  SELECT run_id, next_seq, :owner, now() FROM rel
  ON CONFLICT (run_id, seq) DO UPDATE SET owner = EXCLUDED.owner, dispatched_at = now(), available_at = now()
)
SELECT run_id, next_seq AS seq, workflow, priority FROM rel

-- name: sweep_outbox
-- Dispatches that are due and not known to be in flight: never published (a delayed retry),
-- promised by a worker process that has died since (maybe before it published), or published so
-- long ago that the broker must have lost the message (Redis restarted, FLUSHALL). A submitter
-- (owner NULL) has no heartbeat: its rows wait the full redispatch time, so a long queue of fresh
-- runs is not re-sent while it waits its turn. With :run_id, only that run's rows (a duplicate step
-- message checking on its successor: re-sending a successor still in flight would start a chain of
-- duplicates that follows the run to its end).
--
-- Also every dispatch a dead worker process may have received and not claimed. Postgres does not know
-- which worker a message went to, only that a process found dead (heartbeat older than the lease)
-- could have received any message published before it was found dead, i.e. before its last
-- heartbeat plus the lease: so those are re-sent, the moment the first sweeper sees the death.
-- Once per death: the re-send moves dispatched_at past that moment, so the same death never matches
-- again; a later death matches again, as it should (the re-sent message may be in its hands too).
-- One max() over the liveness rows per sweep; the price is one duplicate message per step queued at
-- the death, which its claim turns into a no-op.
WITH dead AS (
  SELECT max(w.heartbeat_at) + (:lease_seconds * interval '1 second') AS found_dead
    FROM worker_procs w WHERE w.heartbeat_at < now() - (:lease_seconds * interval '1 second')
), due AS (
  SELECT o.run_id, o.seq FROM outbox o, dead
   WHERE o.available_at <= now()
     AND (CAST(:run_id AS text) IS NULL OR o.run_id = :run_id)
     AND (o.dispatched_at IS NULL
          OR o.dispatched_at < now() - (:redispatch_seconds * interval '1 second')
          OR o.dispatched_at < dead.found_dead
          OR (o.owner IS NOT NULL AND o.dispatched_at < now() - (:lease_seconds * interval '1 second')
              AND steplog_owner_dead(o.owner, o.dispatched_at, :lease_seconds)))
   ORDER BY o.available_at
   FOR UPDATE OF o SKIP LOCKED
   LIMIT 500
)
UPDATE outbox o SET dispatched_at = now(), owner = :owner
  FROM due, runs r
 WHERE o.run_id = due.run_id AND o.seq = due.seq AND r.run_id = o.run_id
RETURNING o.run_id, o.seq, r.workflow, r.priority

-- name: resend_dispatched_before
-- The broker lost its data (checkpoint/broker_epoch.py): every dispatch published before the new
-- epoch began and still unclaimed went with it. Each is taken once (dispatched_at moves past the
-- epoch's start, so the other sweepers that notice the same loss find nothing), for the owner to
-- publish again.
WITH lost AS (
  SELECT o.run_id, o.seq FROM outbox o
   WHERE o.dispatched_at < :since
   ORDER BY o.available_at
   FOR UPDATE SKIP LOCKED
)
UPDATE outbox o SET dispatched_at = now(), owner = :owner
  FROM lost, runs r
 WHERE o.run_id = lost.run_id AND o.seq = lost.seq AND r.run_id = o.run_id
RETURNING o.run_id, o.seq, r.workflow, r.priority

-- name: clock
SELECT clock_timestamp() AS now

-- name: get_run
SELECT run_id, workflow, status, input, result, error, next_seq, attempt, lease_owner,
       lease_started_at, lease_expires_at, cancel_requested_by, archive, created_at, updated_at,
       wait_signal, wait_since, wait_until, tenant, flow_key, flow_limit, priority, parent_run_id, parent_seq,
       child_index
  FROM runs WHERE run_id = :run_id

-- name: run_version
-- A digest of the run's whole row: every event, lease, wait and status change rewrites that row (an
-- event always advances next_seq), so an unchanged digest means an unchanged `show`, except where
-- `show` also tells what other rows hold: a parent's children, and a queued or running step's
-- throttle (its key's slots); `fixed` says the digest covers everything.
SELECT tenant, md5(r::text) AS version,
       r.status NOT IN ('queued', 'running') AND NOT EXISTS (SELECT 1 FROM fanouts f WHERE f.run_id = r.run_id) AS fixed
  FROM runs r WHERE run_id = :run_id

-- name: get_events
SELECT seq, type, state, payload, worker, pid, attempt, created_at
  FROM events WHERE run_id = :run_id AND seq > :after ORDER BY seq

-- name: get_archive
SELECT archive FROM runs WHERE run_id = :run_id

-- name: get_in_flight
SELECT a.seq, a.worker, a.pid, a.attempt, a.started_at, r.lease_expires_at
  FROM runs r JOIN step_attempts a
    ON a.run_id = r.run_id AND a.seq = r.next_seq AND a.attempt = r.attempt AND a.owner = r.lease_owner
 WHERE r.run_id = :run_id AND a.outcome IS NULL

-- name: get_attempts
SELECT seq, attempt, worker, pid, outcome, error, started_at, finished_at, step_ms
  FROM step_attempts WHERE run_id = :run_id ORDER BY seq, attempt

-- name: list_runs
-- Newest first; optionally one status, one tenant, and a search: a run id prefix or a workflow name.
SELECT run_id, workflow, status, created_at, updated_at, tenant
  FROM runs
 WHERE (CAST(:status AS text) IS NULL OR status = :status)
   AND (CAST(:tenant AS text) IS NULL OR tenant = :tenant)
   AND (CAST(:q AS text) IS NULL OR run_id LIKE :q || '%' OR workflow = :q)
 ORDER BY created_at DESC, run_id DESC LIMIT :limit

-- name: waiting_for
-- Runs waiting for signal :signal (an approval: a person's inbox), longest waiting first, with the
-- payload of the `waiting` event that parked them (for an approval: the tool, its arguments, its key).
SELECT r.run_id, r.workflow, r.tenant, r.wait_since, r.wait_until, w.payload
  FROM runs r
  JOIN LATERAL (SELECT payload FROM events e
                 WHERE e.run_id = r.run_id AND e.type = 'waiting' ORDER BY e.seq DESC LIMIT 1) w ON true
 WHERE r.status = 'waiting' AND r.wait_signal = :signal
   AND (CAST(:tenant AS text) IS NULL OR r.tenant = :tenant)
 ORDER BY r.wait_since, r.run_id LIMIT :limit

-- name: count_by_status
SELECT status, count(*) AS n FROM runs GROUP BY status

-- name: event_traceparent
-- The trace context an event keeps: the caller's in a `submitted` event, a parked step's span in a `waiting` one.
SELECT payload->>'traceparent' FROM events WHERE run_id = :run_id AND seq = :seq

-- name: count_waiting
-- Runs parked by a wait, by the signal they wait for ('' for a sleep).
SELECT coalesce(wait_signal, '') AS signal, count(*) AS n FROM runs WHERE status = 'waiting' GROUP BY 1

-- name: lock_run
-- A signal's sender holds the run row while it stores the signal and maybe wakes the run, so a
-- timer's wake or a step committing its wait is ordered before or after it, never beside it.
SELECT status, workflow, wait_signal, next_seq FROM runs WHERE run_id = :run_id FOR UPDATE

-- name: store_signal
-- Durable first. The sender holds the run row and looked for the key first (get_signal): the same
-- key twice stores (and delivers) once.
-- created_at is the clock after the run row was locked, not the transaction's start: signals that
-- race each other are consumed in the order they were stored (a session's messages, in order).
INSERT INTO signals (run_id, key, name, data, sender, created_at)
VALUES (:run_id, :key, :name, CAST(:data AS jsonb), :sender, clock_timestamp())
ON CONFLICT (run_id, key) DO NOTHING
RETURNING key

-- name: get_signal
SELECT name, consumed_seq, created_at FROM signals WHERE run_id = :run_id AND key = :key

-- name: wake_on_signal
-- A run waiting for a signal that has arrived (now, or earlier and buffered): consume the oldest
-- such signal, append its `signal` event (the checkpoint unchanged) and queue the next step, whose
-- dispatch :owner promises to publish. No row when the run waits for no signal now stored.
WITH w AS (
  SELECT r.run_id, r.next_seq, r.workflow, r.wait_signal FROM runs r
   WHERE r.run_id = :run_id AND r.status = 'waiting' AND r.wait_signal IS NOT NULL
), sig AS (
  SELECT s.key, s.name, s.data, s.sender, s.created_at FROM signals s JOIN w ON s.run_id = w.run_id
   WHERE s.name = w.wait_signal AND s.consumed_seq IS NULL
   ORDER BY s.created_at, s.key LIMIT 1
), used AS (
  UPDATE signals s SET consumed_seq = w.next_seq FROM w, sig WHERE s.run_id = w.run_id AND s.key = sig.key
), ev AS (
  INSERT INTO events (run_id, seq, type, state, payload, worker, pid, attempt)
  SELECT w.run_id, w.next_seq, 'signal',
         (SELECT e.state FROM events e WHERE e.run_id = w.run_id AND e.seq = w.next_seq - 1),
         jsonb_build_object('name', sig.name, 'data', sig.data, 'sender', sig.sender, 'key', sig.key,
                            'sent_at', sig.created_at),
         :worker, :pid, 0
    FROM w, sig
), adv AS (
  UPDATE runs r SET status = 'queued', next_seq = w.next_seq + 1, wait_signal = NULL, wait_since = NULL,
                    wait_until = NULL, updated_at = now()
    FROM w, sig WHERE r.run_id = w.run_id
  RETURNING r.run_id, r.next_seq, r.workflow, r.priority
), nxt AS (
  INSERT INTO outbox (run_id, seq, owner, dispatched_at) SELECT run_id, next_seq, :owner, now() FROM adv
)
SELECT run_id, next_seq AS seq, workflow, priority FROM adv

-- name: wake_due
-- Waits whose time has come: a sleep ends (`woke`), a wait for a signal times out (`timed_out`).
-- Each event records how late it fired. SKIP LOCKED: every worker's sweeper runs this, and a run a
-- signal's sender holds is left to the sender (one outcome, never both).
WITH due AS (
  SELECT r.run_id, r.next_seq, r.wait_signal, r.wait_until FROM runs r
   WHERE r.status = 'waiting' AND r.wait_until <= now()
   ORDER BY r.wait_until
   FOR UPDATE SKIP LOCKED
   LIMIT :batch
), ev AS (
  INSERT INTO events (run_id, seq, type, state, payload, worker, pid, attempt)
  SELECT due.run_id, due.next_seq, CASE WHEN due.wait_signal IS NULL THEN 'woke' ELSE 'timed_out' END,
         (SELECT e.state FROM events e WHERE e.run_id = due.run_id AND e.seq = due.next_seq - 1),
         jsonb_build_object('signal', due.wait_signal, 'due_at', due.wait_until,
                            'late_seconds', round(extract(epoch FROM now() - due.wait_until)::numeric, 3)),
         :worker, :pid, 0
    FROM due
), adv AS (
  UPDATE runs r SET status = 'queued', next_seq = due.next_seq + 1, wait_signal = NULL, wait_since = NULL,
                    wait_until = NULL, updated_at = now()
    FROM due WHERE r.run_id = due.run_id
  RETURNING r.run_id, r.next_seq, r.workflow, r.priority
), nxt AS (
  INSERT INTO outbox (run_id, seq, owner, dispatched_at) SELECT run_id, next_seq, :owner, now() FROM adv
)
SELECT run_id, next_seq AS seq, workflow, priority FROM adv

-- name: last_signal
-- The most recent signal of this name a run consumed (e.g. the answer to its last approval).
SELECT key, data, consumed_seq FROM signals
 WHERE run_id = :run_id AND name = :name AND consumed_seq IS NOT NULL
 ORDER BY consumed_seq DESC LIMIT 1

-- name: add_schedule
INSERT INTO schedules (name, cron, timezone, workflow, input, state, overlap, catch_up, next_fire_at, created_by)
VALUES (:name, :cron, :timezone, :workflow, CAST(:input AS jsonb), CAST(:state AS jsonb), :overlap, :catch_up,
        :next_fire_at, :created_by)
ON CONFLICT (name) DO NOTHING
RETURNING name

-- name: list_schedules
SELECT s.name, s.cron, s.timezone, s.workflow, s.input, s.overlap, s.catch_up, s.next_fire_at, s.created_by,
       s.created_at, (SELECT count(*) FROM schedule_fires f WHERE f.schedule = s.name AND f.outcome = 'started') AS runs,
       (SELECT max(f.tick) FROM schedule_fires f WHERE f.schedule = s.name) AS last_tick
  FROM schedules s ORDER BY s.name

-- name: remove_schedule
DELETE FROM schedules WHERE name = :name RETURNING name

-- name: due_schedules
-- Schedules with a tick due; SKIP LOCKED: each is fired by one sweeper at a time.
SELECT name, cron, timezone, workflow, input, state, overlap, catch_up, next_fire_at, now() AS now
  FROM schedules WHERE next_fire_at <= now()
 ORDER BY next_fire_at
 FOR UPDATE SKIP LOCKED
 LIMIT 50

-- name: claim_tick
-- The tick's one row: whoever inserts it fires the tick; anyone else finds it taken.
INSERT INTO schedule_fires (schedule, tick, outcome) VALUES (:schedule, :tick, 'started')
ON CONFLICT (schedule, tick) DO NOTHING
RETURNING tick

-- name: schedule_busy
-- Whether the schedule's latest run is still going (for overlap = skip).
SELECT EXISTS (
  SELECT 1 FROM schedule_fires f JOIN runs r ON r.run_id = f.run_id
   WHERE f.schedule = :schedule AND r.status NOT IN ('succeeded', 'failed', 'cancelled')
)

-- name: record_fire
UPDATE schedule_fires SET run_id = :run_id, outcome = :outcome WHERE schedule = :schedule AND tick = :tick

-- name: advance_schedule
UPDATE schedules SET next_fire_at = :next_fire_at WHERE name = :name

-- Flow control's queries besides the claim and commit (checkpoint/queries.sql): a step deferred for
-- want of budget, the sweeper's repair of concurrency waiters, and what operators see.
-- The SQL functions steplog_flow_admit, steplog_flow_wake and steplog_flow_busy: migration 0011.

-- name: defer_step
-- A step that found no budget (a rate limit) hands its step back undone: the lease released, the
-- attempt not counted (its row removed: it never ran), the dispatch due again after :delay with the
-- reason kept for `show`, and the run's concurrency slot freed (its key's oldest waiter woken).
WITH rel AS (
  UPDATE runs r SET lease_owner = NULL, lease_started_at = NULL, lease_expires_at = NULL, updated_at = now(),
                    attempt = r.attempt - 1, flow_slot = false
   WHERE r.run_id = :run_id AND r.next_seq = :seq AND r.lease_owner = :owner AND r.attempt = :attempt
  RETURNING r.run_id, r.flow_key
), att AS (
  DELETE FROM step_attempts
   WHERE run_id = :run_id AND seq = :seq AND attempt = :attempt AND EXISTS (SELECT 1 FROM rel)
), q AS (
  INSERT INTO outbox (run_id, seq, owner, available_at, dispatched_at, throttle)
  SELECT run_id, :seq, NULL, now() + (:delay * interval '1 second'), NULL, :reason FROM rel
  ON CONFLICT (run_id, seq) DO UPDATE
     SET available_at = EXCLUDED.available_at, dispatched_at = NULL, owner = NULL, throttle = EXCLUDED.throttle,
         throttle_key = NULL, throttled_since = NULL
  RETURNING run_id
), freed AS (
  SELECT w.* FROM rel, steplog_flow_wake(rel.flow_key, :owner, 1) w
)
SELECT q.run_id, f.run_id AS woke_run_id, f.seq AS woke_seq, f.workflow AS woke_workflow, f.priority AS woke_priority
  FROM q LEFT JOIN freed f ON true

-- name: flow_repair
-- Keys with waiters and a free slot (a woken step whose run was cancelled, a slot freed by a cancel):
-- wake as many as fit, for :owner to publish. The sweeper's backstop; a commit wakes its own waiter.
WITH keys AS (
  SELECT DISTINCT o.throttle_key AS key FROM outbox o
   WHERE o.throttle_key IS NOT NULL AND o.dispatched_at IS NULL
), room AS (
  SELECT keys.key,
         (SELECT r.flow_limit FROM outbox o JOIN runs r ON r.run_id = o.run_id
           WHERE o.throttle_key = keys.key AND o.dispatched_at IS NULL
           ORDER BY o.throttled_since LIMIT 1) - steplog_flow_busy(keys.key, '', 0) AS n
    FROM keys
)
SELECT w.run_id, w.seq, w.workflow, w.priority
  FROM room, steplog_flow_wake(room.key, :owner, room.n) w
 WHERE room.n > 0

-- name: flow_keys
-- Every concurrency key in use: slots held, slots handed to woken steps on their way, waiters.
WITH k AS (
  SELECT flow_key AS key FROM runs WHERE flow_slot
  UNION
  SELECT throttle_key FROM outbox WHERE throttle_key IS NOT NULL
)
SELECT k.key,
       (SELECT count(*) FROM runs r WHERE r.flow_key = k.key AND r.flow_slot) AS in_flight,
       (SELECT count(*) FROM outbox o WHERE o.throttle_key = k.key AND o.dispatched_at IS NOT NULL) AS woken,
       (SELECT count(*) FROM outbox o WHERE o.throttle_key = k.key AND o.dispatched_at IS NULL) AS queued,
       (SELECT min(o.throttled_since) FROM outbox o WHERE o.throttle_key = k.key AND o.dispatched_at IS NULL) AS oldest,
       (SELECT max(r.flow_limit) FROM runs r WHERE r.flow_key = k.key
           AND r.status NOT IN ('succeeded', 'failed', 'cancelled')) AS "limit"
  FROM k ORDER BY k.key

-- name: rate_deferred
-- Steps deferred for a rate limit, by reason.
SELECT throttle AS reason, count(*) AS queued, min(available_at) AS next_due
  FROM outbox WHERE throttle IS NOT NULL AND throttle <> 'concurrency'
 GROUP BY throttle ORDER BY throttle

-- name: run_throttle
-- Why a run's next step waits, if it is throttled: the reason, and for a concurrency key its slots taken
-- (held, or handed to a woken step on its way).
SELECT o.seq, o.throttle AS reason, o.throttle_key AS key, o.throttled_since AS since,
       CASE WHEN o.available_at = 'infinity' THEN NULL ELSE o.available_at END AS due_at,
       (o.throttle_key IS NOT NULL AND o.dispatched_at IS NOT NULL) AS woken,
       r.flow_limit AS "limit",
       CASE WHEN o.throttle_key IS NOT NULL THEN steplog_flow_busy(o.throttle_key, '', 0) END AS in_flight
  FROM outbox o JOIN runs r ON r.run_id = o.run_id
 WHERE o.run_id = :run_id AND o.throttle IS NOT NULL
 ORDER BY o.seq DESC LIMIT 1

-- name: admit_first
-- A keyed run just submitted: its first step joins the key's waiters now if the key is full (or has
-- waiters ahead of it), so a long queue of one key's runs never reaches the broker.
SELECT steplog_flow_admit(:run_id, :seq, :key, :limit, false) AS admitted

-- Queries of `steplog chaos` (workers/cli/chaos.py), each under a `-- name:` header.

-- name: live_owners
-- The liveness ids of these local processes. A row left by an earlier process with a recycled pid
-- has gone silent, so only rows with a fresh heartbeat count.
SELECT id, worker, pid FROM worker_procs
 WHERE pid = ANY(:pids) AND heartbeat_at > now() - (:fresh_seconds * interval '1 second')

-- name: interrupted
-- The steps a kill (or a stop) interrupted: attempts of those owners that were still running when
-- they died (or froze), so are still open or were since marked lost (by the sweeper or the next
-- claim). A stopped owner lives on: only its attempts started before it was let go count (:before).
SELECT run_id, seq, attempt, worker, pid FROM step_attempts
 WHERE owner = ANY(:owners) AND (outcome IS NULL OR outcome = 'lost')
   AND (CAST(:before AS timestamptz) IS NULL OR started_at < CAST(:before AS timestamptz))
 ORDER BY run_id, seq, attempt

-- name: resumed
-- An interrupted attempt is resumed once a later attempt committed that step, or the run ended.
SELECT (r.status IN ('succeeded', 'failed', 'cancelled')
        OR EXISTS (SELECT 1 FROM events e WHERE e.run_id = r.run_id AND e.seq = :seq AND e.attempt > :attempt))
       AS resumed
  FROM runs r WHERE r.run_id = :run_id

-- name: clock
SELECT clock_timestamp()

-- name: registered
-- The liveness row of a worker (by node name): it is up and consuming.
SELECT id FROM worker_procs WHERE worker = :worker

-- name: committed_since
-- Steps these owners committed after a moment (a partitioned host back on the network).
SELECT count(*) FROM step_attempts WHERE owner = ANY(:owners) AND outcome = 'committed' AND started_at > :since

-- name: first_commit_after
-- The first step committed after a moment (a Postgres restart's return): when, in epoch seconds.
SELECT extract(epoch FROM min(created_at)) FROM events WHERE created_at > to_timestamp(:at) AND seq > 1

-- name: touched_runs
-- The runs a chaos session could have touched: any updated since it began, and any still in progress.
SELECT run_id, status FROM runs
 WHERE updated_at >= :since OR status IN ('queued', 'running')
 ORDER BY run_id

-- name: unsettled
-- Those of them still queued or running (a run that waits for a signal or a timer has settled).
SELECT run_id FROM runs WHERE run_id = ANY(:ids) AND status IN ('queued', 'running') ORDER BY run_id

-- name: gaps
-- Runs whose events are not exactly seq 1..N.
SELECT run_id FROM events WHERE run_id = ANY(:ids)
 GROUP BY run_id HAVING min(seq) <> 1 OR count(*) <> max(seq)
 ORDER BY run_id

-- name: duplicates
-- Steps committed by more than one attempt.
SELECT run_id, seq, count(*) AS commits FROM step_attempts
 WHERE run_id = ANY(:ids) AND outcome = 'committed'
 GROUP BY run_id, seq HAVING count(*) > 1
 ORDER BY run_id, seq

-- name: tool_calls
-- Tool calls of those runs (ledger rows, one per idempotency key).
SELECT count(*) FROM tool_ledger WHERE run_id = ANY(:ids)

-- name: split_keys
-- A step that called one tool under more than one key: one side effect done twice.
SELECT run_id, seq, tool, count(DISTINCT key) AS keys FROM tool_ledger
 WHERE run_id = ANY(:ids)
 GROUP BY run_id, seq, tool HAVING count(DISTINCT key) > 1
 ORDER BY run_id, seq, tool

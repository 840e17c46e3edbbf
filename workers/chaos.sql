-- Queries of `steplog chaos` (workers/cli/chaos.py), each under a `-- name:` header.

-- name: live_owners
-- The liveness ids of these local processes. A row left by an earlier process with a recycled pid
-- has gone silent, so only rows with a fresh heartbeat count.
SELECT id, worker, pid FROM worker_procs
 WHERE pid = ANY(:pids) AND heartbeat_at > now() - (:fresh_seconds * interval '1 second')

-- name: interrupted
-- The steps a kill interrupted: attempts of the killed owners that were still running when they
-- died, so are still open or were since marked lost (by the sweeper or the next claim).
SELECT run_id, seq, attempt, worker, pid FROM step_attempts
 WHERE owner = ANY(:owners) AND (outcome IS NULL OR outcome = 'lost')
 ORDER BY run_id, seq, attempt

-- name: resumed
-- An interrupted attempt is resumed once a later attempt committed that step, or the run ended.
SELECT (r.status IN ('succeeded', 'failed', 'cancelled')
        OR EXISTS (SELECT 1 FROM events e WHERE e.run_id = r.run_id AND e.seq = :seq AND e.attempt > :attempt))
       AS resumed
  FROM runs r WHERE r.run_id = :run_id

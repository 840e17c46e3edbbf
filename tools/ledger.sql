-- The tool ledger's queries, each under a `-- name:` header (loaded by checkpoint.queries.load).
-- A fresh call costs begin_call (own commit, before the tool runs) and finish_call (inside the
-- step's commit). A replay costs begin_call alone.

-- name: begin_call
-- Claim the call for execution, or find it done. On an existing row (all SET expressions see the old
-- row): succeeded stays succeeded and counts a replay; unknown stays unknown; started by a lost attempt
-- is executed again when :refire (the tool may re-fire safely), else becomes unknown; failed is
-- executed again.
INSERT INTO tool_ledger AS l (key, run_id, seq, tool, version, input_hash, input, status, attempts, worker, owner)
VALUES (:key, :run_id, :seq, :tool, :version, :input_hash, CAST(:input AS jsonb), 'started', 1, :worker, :owner)
ON CONFLICT (key) DO UPDATE SET
  status = CASE
    WHEN l.status IN ('succeeded', 'unknown') THEN l.status
    WHEN l.status = 'started' AND NOT CAST(:refire AS boolean) THEN 'unknown'
    ELSE 'started' END,
  error = CASE
    WHEN l.status = 'started' AND NOT CAST(:refire AS boolean) THEN CAST(:unknown_error AS jsonb)
    WHEN l.status = 'failed' THEN NULL
    ELSE l.error END,
  finished_at = CASE
    WHEN l.status = 'started' AND NOT CAST(:refire AS boolean) THEN now()
    WHEN l.status = 'failed' THEN NULL
    ELSE l.finished_at END,
  replays = l.replays + (l.status = 'succeeded')::int,
  attempts = l.attempts + (l.status = 'failed' OR (l.status = 'started' AND CAST(:refire AS boolean)))::int,
  worker = CASE WHEN l.status IN ('started', 'failed') THEN excluded.worker ELSE l.worker END,
  owner = CASE WHEN l.status IN ('started', 'failed') THEN excluded.owner ELSE l.owner END,
  started_at = CASE
    WHEN l.status = 'failed' OR (l.status = 'started' AND CAST(:refire AS boolean)) THEN now()
    ELSE l.started_at END
RETURNING status, attempts, result, result_artifact, error

-- name: record_done
-- A call that is done before it is recorded (a reasoner's decision): the first record stays.
INSERT INTO tool_ledger (key, run_id, seq, tool, version, input_hash, input, status, result, attempts,
                         worker, owner, finished_at)
VALUES (:key, :run_id, :seq, :tool, :version, :key, '{}'::jsonb, 'succeeded', CAST(:result AS jsonb), 1,
        :worker, :owner, now())
ON CONFLICT (key) DO NOTHING
RETURNING key

-- name: done_result
SELECT result FROM tool_ledger WHERE key = :key

-- name: bump_attempt
-- One more execution inside the same call (a transient error being retried); own commit.
UPDATE tool_ledger SET attempts = attempts + 1 WHERE key = :key RETURNING attempts

-- name: finish_call
-- Runs inside the step's commit transaction, so the result and the checkpoint land together.
UPDATE tool_ledger
   SET status = :status, result = CAST(:result AS jsonb), result_artifact = CAST(:result_artifact AS jsonb),
       error = CAST(:error AS jsonb), finished_at = now()
 WHERE key = :key

-- name: count_replay
UPDATE tool_ledger SET replays = replays + 1 WHERE key = :key

-- name: record_rejected
-- A call refused before execution (unknown tool, invalid input): audited, never executed.
INSERT INTO tool_ledger (key, run_id, seq, tool, version, input_hash, input, status, attempts, error,
                         worker, owner, finished_at)
VALUES (:key, :run_id, :seq, :tool, :version, :input_hash, CAST(:input AS jsonb), 'failed', 0,
        CAST(:error AS jsonb), :worker, :owner, now())
ON CONFLICT (key) DO NOTHING

-- name: ledger_rows
SELECT key, run_id, seq, tool, version, status, attempts, replays, error, worker, owner, started_at, finished_at,
       (extract(epoch FROM finished_at - started_at) * 1000)::float AS duration_ms
  FROM tool_ledger
 WHERE run_id = :run_id
 ORDER BY seq, started_at, key

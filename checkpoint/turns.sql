-- The durable turns of sessions (turns.py). Each read is an index probe on (run_id, turn) or
-- (run_id, message_key): flat in the length of the conversation.

-- name: insert_turn
INSERT INTO turns (run_id, turn, message_key, message, reply, citations, seq, sent_at)
VALUES (:run_id, :turn, :message_key, :message, :reply, CAST(:citations AS jsonb), :seq, :sent_at)

-- name: recent_turns
SELECT turn, message_key, message, reply, citations, seq FROM (
  SELECT turn, message_key, message, reply, citations, seq FROM turns
   WHERE run_id = :run_id AND turn <= :through
   ORDER BY turn DESC LIMIT :limit
) t ORDER BY turn

-- name: turn_by_key
SELECT turn, message_key, message, reply, citations, seq FROM turns
 WHERE run_id = :run_id AND message_key = :message_key

-- name: list_sessions
-- Sessions (runs of the given chat workflows), newest first, with their turn counts; one tenant's, or
-- every tenant's when :tenant is NULL.
SELECT r.run_id, r.workflow, r.status, r.created_at, r.updated_at,
       coalesce(t.turns, 0) AS turns, t.last_at
  FROM runs r
  LEFT JOIN LATERAL (
    SELECT max(turn) AS turns, max(created_at) AS last_at FROM turns WHERE run_id = r.run_id
  ) t ON true
 WHERE r.workflow = ANY(:workflows) AND (CAST(:tenant AS text) IS NULL OR r.tenant = :tenant)
 ORDER BY r.created_at DESC, r.run_id
 LIMIT :limit

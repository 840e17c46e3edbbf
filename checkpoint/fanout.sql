-- Fan-out: a step's children (Map, Spawn), each under a `-- name:` header. The counting of ended
-- children and the join itself are the trigger steplog_run_ended (migration 0010): whatever ends a
-- child runs it in that same transaction.

-- name: spawn_children
-- In the commit of the step that returned a Map or Spawn (the parent now `waiting` at :seq + 1): the
-- fan-out row and every child in one statement (its run, its `submitted` event, and the outbox rows
-- of the first :window children, promised by :owner, who publishes them right after). A child's id
-- is its parent's, step and index: a repeated write creates nothing twice. A parent whose commit
-- turned into `cancelled` (a cancel arrived meanwhile) spawns nothing.
WITH parent AS (
  SELECT run_id, tenant FROM runs WHERE run_id = :run_id AND status = 'waiting' AND next_seq = :seq + 1
), fan AS (
  INSERT INTO fanouts (run_id, seq, total, max_parallel, on_error, quorum, dispatched)
  SELECT run_id, :seq, :total, :max_parallel, :on_error, :quorum, :window FROM parent
  ON CONFLICT (run_id, seq) DO NOTHING
  RETURNING run_id
), kids AS (
  SELECT parent.run_id || '.' || CAST(:seq AS text) || '.' || CAST(k.ord - 1 AS text) AS run_id, (k.ord - 1)::int AS idx,
         k.c->>'w' AS workflow, k.c->'i' AS input, k.c->'s' AS state, parent.tenant
    FROM parent JOIN fan ON fan.run_id = parent.run_id,
         jsonb_array_elements(CAST(:children AS jsonb)) WITH ORDINALITY AS k(c, ord)
), ins AS (
  INSERT INTO runs (run_id, workflow, input, status, next_seq, tenant, parent_run_id, parent_seq, child_index)
  SELECT run_id, workflow, input, 'queued', 2, tenant, :run_id, :seq, idx FROM kids
  RETURNING run_id, child_index
), ev AS (
  INSERT INTO events (run_id, seq, type, state, payload, worker, pid, attempt)
  SELECT k.run_id, 1, 'submitted', k.state,
         jsonb_build_object('input', k.input, 'parent', CAST(:run_id AS text), 'index', k.idx), :worker, :pid, 0
    FROM kids k JOIN ins ON ins.run_id = k.run_id
), ob AS (
  INSERT INTO outbox (run_id, seq, owner, dispatched_at)
  SELECT run_id, 2, :owner, now() FROM ins WHERE child_index < :window
)
SELECT count(*) FROM ins

-- name: get_fanout
SELECT seq, total, max_parallel, on_error, quorum, dispatched, succeeded, failed, cancelled, joined_by, joined_at
  FROM fanouts WHERE run_id = :run_id AND seq = :seq

-- name: join_children
-- What the join reads: every child of step :seq, in item order (results come from the children's
-- rows, so the parent's checkpoint does not grow with their number).
SELECT child_index, run_id, workflow, status, result, error, cancel_requested_by
  FROM runs WHERE parent_run_id = :run_id AND parent_seq = :seq ORDER BY child_index

-- name: cancel_children
-- The children of step :seq (NULL: of every step) that have not ended, cancelled (see the function).
SELECT steplog_cancel_children(:run_id, CAST(:seq AS integer), :by)

-- name: children_by_status
SELECT status, count(*) AS n FROM runs WHERE parent_run_id = :run_id GROUP BY status

-- name: list_children
SELECT run_id, workflow, status, parent_seq, child_index, created_at, updated_at
  FROM runs WHERE parent_run_id = :run_id ORDER BY parent_seq, child_index LIMIT :limit

-- name: run_parent
SELECT parent_run_id, parent_seq, child_index FROM runs WHERE run_id = :run_id

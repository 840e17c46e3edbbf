-- The history tiers (context.py, summary.py, recall.py, archive.py).
--
-- The context of a step: the latest checkpoint, the latest summary and the events after it.
-- Each part is an index probe on (run_id, seq) (the summary through the partial index
-- events_summary_idx), so the cost does not grow with the length of the run's history.

-- name: context_rows
WITH summ AS (
  SELECT seq, payload FROM events
   WHERE run_id = :run_id AND type = 'summary' AND seq <= :at_seq
   ORDER BY seq DESC LIMIT 1
), latest AS (
  SELECT seq, state FROM events
   WHERE run_id = :run_id AND seq <= :at_seq
   ORDER BY seq DESC LIMIT 1
), tail AS (
  SELECT seq, type, payload FROM events
   WHERE run_id = :run_id AND seq <= :at_seq AND seq > coalesce((SELECT seq FROM summ), 0)
   ORDER BY seq DESC LIMIT :tail_limit
)
SELECT 'latest' AS part, seq, NULL AS type, state AS doc FROM latest
UNION ALL
SELECT 'summary', seq, 'summary', payload FROM summ
UNION ALL
SELECT 'tail', seq, type, payload FROM tail

-- name: events_between
-- Events after one seq up to another, oldest first (what a new summary must cover).
SELECT seq, type, payload FROM events
 WHERE run_id = :run_id AND seq > :after AND seq <= :through
 ORDER BY seq LIMIT :limit

-- name: insert_summary
INSERT INTO summaries (run_id, seq, text) VALUES (:run_id, :seq, :text)
ON CONFLICT (run_id, seq) DO UPDATE SET text = EXCLUDED.text

-- name: search_memory
-- Summaries, notes and sessions' turns ranked together by full-text relevance to the query (websearch syntax:
-- words, "quoted phrases", OR, -excluded). :run_id narrows the search to one run.
WITH q AS (SELECT websearch_to_tsquery('english', :query) AS query)
SELECT kind, run_id, seq, source, text, rank FROM (
  SELECT 'summary' AS kind, s.run_id, s.seq, 'summary@' || s.seq AS source, s.text,
         ts_rank_cd(s.tsv, q.query) AS rank, s.created_at
    FROM summaries s, q
   WHERE s.tsv @@ q.query AND (CAST(:run_id AS text) IS NULL OR s.run_id = :run_id)
  UNION ALL
  SELECT 'note', n.run_id, NULL, 'note:' || n.key, n.text,
         ts_rank_cd(n.tsv, q.query), n.created_at
    FROM notes n, q
   WHERE n.tsv @@ q.query AND (CAST(:run_id AS text) IS NULL OR n.run_id = :run_id)
  UNION ALL
  SELECT 'turn', t.run_id, t.seq, 'turn:' || t.turn, 'user: ' || t.message || E'\nassistant: ' || t.reply,
         ts_rank_cd(t.tsv, q.query), t.created_at
    FROM turns t, q
   WHERE t.tsv @@ q.query AND (CAST(:run_id AS text) IS NULL OR t.run_id = :run_id)
) hits
ORDER BY rank DESC, created_at DESC, run_id, source
LIMIT :limit

-- name: run_archive_state
SELECT status, archive FROM runs WHERE run_id = :run_id

-- name: lock_run_for_archive
SELECT status, archive FROM runs WHERE run_id = :run_id FOR UPDATE

-- name: all_events
SELECT seq, type, state, payload, worker, pid, attempt, created_at
  FROM events WHERE run_id = :run_id ORDER BY seq

-- name: set_archive
UPDATE runs SET archive = CAST(:archive AS jsonb) WHERE run_id = :run_id

-- name: delete_events_through
DELETE FROM events WHERE run_id = :run_id AND seq <= :last_seq

-- name: gc_candidates
-- Finished runs not yet archived whose last change is older than the cut-off, oldest first.
SELECT run_id FROM runs
 WHERE status IN ('succeeded', 'failed', 'cancelled') AND archive IS NULL
   AND updated_at < now() - (:days * interval '1 day')
 ORDER BY updated_at, run_id
 LIMIT :limit

-- The research corpus's queries, each under a `-- name:` header (loaded by checkpoint.queries.load).

-- name: claim_corpus
-- Creates the corpus or locks its row for this transaction: concurrent builds of one corpus queue up.
INSERT INTO corpora (name, kind) VALUES (:name, :kind)
ON CONFLICT (name) DO UPDATE SET updated_at = now()
RETURNING kind

-- name: clear_corpus
DELETE FROM corpus_docs WHERE corpus = :name

-- name: delete_doc
DELETE FROM corpus_docs WHERE corpus = :corpus AND doc_id = :doc_id

-- name: corpora
SELECT name FROM corpora ORDER BY name

-- name: corpus_exists
SELECT EXISTS (SELECT 1 FROM corpora WHERE name = :name)

-- name: corpus_counts
SELECT (SELECT count(*) FROM corpus_docs WHERE corpus = :name) AS documents,
       (SELECT count(*) FROM corpus_passages WHERE corpus = :name) AS passages

-- name: search
-- Passages matching any term (:any_query), those matching every term (:all_query) first; within each,
-- ts_rank (title words weigh A = 1.0, text B = 0.4) times the document's boost. At most :per_doc
-- passages of one document, so one long module cannot fill the page.
WITH q AS (
  SELECT to_tsquery('english', :all_query) AS qa, to_tsquery('english', :any_query) AS qo
), hits AS (
  SELECT p.doc_id, p.ordinal, p.text, d.title, d.kind, d.source,
         p.tsv @@ q.qa AS all_terms,
         ts_rank('{0.05, 0.1, 0.4, 1.0}', p.tsv, q.qo) * d.boost AS score
  FROM corpus_passages p
  JOIN corpus_docs d ON d.corpus = p.corpus AND d.doc_id = p.doc_id
  CROSS JOIN q
  WHERE p.corpus = :corpus AND p.tsv @@ q.qo
), ranked AS (
  SELECT *, row_number() OVER (PARTITION BY doc_id ORDER BY all_terms DESC, score DESC, ordinal) AS nth
  FROM hits
)
SELECT doc_id, title, text AS passage, score AS rank, ordinal, kind, source, all_terms
FROM ranked
WHERE nth <= :per_doc
ORDER BY all_terms DESC, score DESC, doc_id, ordinal
LIMIT :limit

-- name: get_passage
SELECT p.doc_id, d.title, p.text AS passage, p.ordinal, d.kind, d.source
FROM corpus_passages p JOIN corpus_docs d ON d.corpus = p.corpus AND d.doc_id = p.doc_id
WHERE p.corpus = :corpus AND p.doc_id = :doc_id AND p.ordinal = :ordinal

-- name: get_document
SELECT d.doc_id, d.title, d.kind, d.source, d.signature, d.body,
       (SELECT count(*) FROM corpus_passages p WHERE p.corpus = d.corpus AND p.doc_id = d.doc_id) AS passages
FROM corpus_docs d
WHERE d.corpus = :corpus AND d.doc_id = :doc_id

-- Sample RAG data for the lab: psql -v rows=N -f seed_pgvector.sql (idempotent).
-- Embeddings are deterministic pseudo-random values in [-1, 1] made from md5, so every run seeds the same data.
\set ON_ERROR_STOP on
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE IF NOT EXISTS documents (
    id bigint PRIMARY KEY,
    title text NOT NULL
);

CREATE TABLE IF NOT EXISTS chunks (
    id bigint PRIMARY KEY,
    document_id bigint NOT NULL REFERENCES documents (id),
    content text NOT NULL,
    embedding vector(384) NOT NULL
);

INSERT INTO documents (id, title)
SELECT d, 'document ' || d FROM generate_series(1, greatest(:rows / 20, 1)) AS d
ON CONFLICT (id) DO NOTHING;

INSERT INTO chunks (id, document_id, content, embedding)
SELECT i,
       (i - 1) % greatest(:rows / 20, 1) + 1,
       'chunk ' || i,
       (SELECT array_agg(((('x' || substr(md5(i || ':' || j), 1, 8))::bit(32)::int)::float8 / 2147483648.0)::real
                         ORDER BY j)
          FROM generate_series(1, 384) AS j)::vector(384)
FROM generate_series(1, :rows) AS i
ON CONFLICT (id) DO NOTHING;

CREATE INDEX IF NOT EXISTS chunks_embedding_hnsw ON chunks USING hnsw (embedding vector_l2_ops);

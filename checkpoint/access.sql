-- API tokens (access.py). A token is found by its SHA-256; the token itself is never stored.

-- name: create_token
INSERT INTO api_tokens (name, token_hash, tenant, role, created_by)
VALUES (:name, :token_hash, :tenant, :role, :created_by)

-- name: resolve_token
SELECT name, tenant, role FROM api_tokens WHERE token_hash = :token_hash AND revoked_at IS NULL

-- name: list_tokens
SELECT name, tenant, role, created_by, created_at, revoked_at FROM api_tokens
 WHERE CAST(:tenant AS text) IS NULL OR tenant = :tenant
 ORDER BY created_at, name

-- name: revoke_token
UPDATE api_tokens SET revoked_at = now()
 WHERE name = :name AND revoked_at IS NULL AND (CAST(:tenant AS text) IS NULL OR tenant = :tenant)
RETURNING name

-- Idempotency-Key on POST: the first request with a key runs and its answer is kept for 24 hours; a retry with the same
-- key and the same request gets that answer again instead of a second run; the same key with another request is 409.
CREATE TABLE idempotency_keys (
    tenant_id     text NOT NULL,
    key           text NOT NULL,
    request_hash  bytea NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    completed_at  timestamptz,
    status        integer,
    content_type  text,
    location      text,
    body          bytea,
    PRIMARY KEY (tenant_id, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
SELECT enable_tenant_isolation('idempotency_keys', 'SELECT, INSERT, UPDATE, DELETE');

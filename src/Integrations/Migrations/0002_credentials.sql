-- The built-in vault. A row holds the current version of one secret, envelope-encrypted: the secret under a
-- random per-version data key (AES-256-GCM, associated data = tenant + id + version), the data key wrapped
-- by the master key named by key_id. Rotating the secret replaces the row's version; rotating the master key
-- re-wraps wrapped_key only.
CREATE TABLE credentials (
    id           uuid PRIMARY KEY,
    tenant_id    text NOT NULL,
    name         text NOT NULL,
    type         text NOT NULL CHECK (type IN ('api_key', 'bearer_token', 'basic_auth', 'custom')),
    description  text,
    version      integer NOT NULL DEFAULT 1 CHECK (version >= 1),
    ciphertext   bytea NOT NULL,
    nonce        bytea NOT NULL CHECK (length(nonce) = 12),
    tag          bytea NOT NULL CHECK (length(tag) = 16),
    wrapped_key  bytea NOT NULL,
    key_id       text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    rotated_at   timestamptz,
    deleted_at   timestamptz
);
CREATE INDEX credentials_page ON credentials (tenant_id, id DESC) WHERE deleted_at IS NULL;
CREATE UNIQUE INDEX credentials_live_name ON credentials (tenant_id, name) WHERE deleted_at IS NULL;
CREATE INDEX credentials_key_id ON credentials (key_id);
SELECT enable_tenant_isolation('credentials');

-- Which accessor may resolve which credential (deny by default).
CREATE TABLE credential_grants (
    tenant_id      text NOT NULL,
    credential_id  uuid NOT NULL REFERENCES credentials (id),
    accessor_type  text NOT NULL CHECK (accessor_type IN ('integration', 'mcp_server', 'datasource')),
    accessor_id    uuid NOT NULL,
    granted_by     text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, credential_id, accessor_type, accessor_id)
);
CREATE INDEX credential_grants_accessor ON credential_grants (tenant_id, accessor_type, accessor_id);
SELECT enable_tenant_isolation('credential_grants', 'SELECT, INSERT, DELETE');

-- Every resolution, allowed or denied. Append-only, like the audit trail.
CREATE TABLE credential_access_log (
    id             uuid PRIMARY KEY,
    tenant_id      text NOT NULL,
    occurred_at    timestamptz NOT NULL DEFAULT now(),
    credential_id  uuid,
    reference      text NOT NULL,
    accessor_type  text NOT NULL,
    accessor_id    text NOT NULL,
    actor          text NOT NULL,
    operation      text NOT NULL,
    outcome        text NOT NULL CHECK (outcome IN ('allowed', 'denied')),
    reason         text NOT NULL
);
CREATE INDEX credential_access_log_page ON credential_access_log (tenant_id, id DESC);
CREATE INDEX credential_access_log_credential ON credential_access_log (tenant_id, credential_id, id DESC);
SELECT enable_tenant_isolation('credential_access_log', 'SELECT, INSERT');
SELECT make_append_only('credential_access_log');

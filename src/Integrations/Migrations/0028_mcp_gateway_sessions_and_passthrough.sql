-- Stateful /mcp sessions (clients of the initialize handshake, 2025-11-25 and earlier) may reach any replica: the
-- replica that created a session records what the handshake established, and another replica that gets a request
-- with that Mcp-Session-Id re-creates the session from it (the SDK's ISessionMigrationHandler). Only a hash of the
-- session id is kept; a session continues only for the API key that opened it, at the path it was opened on.
CREATE TABLE mcp_gateway_sessions (
    tenant_id          text NOT NULL,
    session_hash       bytea NOT NULL,
    actor              text NOT NULL,
    virtual_server     text NOT NULL DEFAULT '',
    initialize_params  jsonb NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, session_hash)
);
CREATE INDEX mcp_gateway_sessions_age ON mcp_gateway_sessions (tenant_id, created_at);
SELECT enable_tenant_isolation('mcp_gateway_sessions', 'SELECT, INSERT, DELETE');

-- Resources and prompts of a registered server are passed through /mcp only when the tenant turns them on per server.
ALTER TABLE mcp_servers ADD COLUMN expose_resources boolean NOT NULL DEFAULT false,
                        ADD COLUMN expose_prompts boolean NOT NULL DEFAULT false;

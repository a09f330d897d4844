-- Evidence: the output of governed calls, kept (redacted, capped) when the target's policy asks for it. A policy is set
-- per MCP server or datasource; a tool may turn its server's on or off ('on', 'off'; null follows the server).
ALTER TABLE mcp_servers ADD COLUMN evidence jsonb;
ALTER TABLE mcp_tools ADD COLUMN evidence text CHECK (evidence IN ('on', 'off'));
ALTER TABLE datasources ADD COLUMN evidence jsonb;

CREATE TABLE call_evidence (
    tenant_id       text NOT NULL,
    call_id         uuid NOT NULL,
    subject_type    text NOT NULL,
    subject_id      text NOT NULL,
    output_hash     text NOT NULL,
    content         text NOT NULL,
    content_hash    text NOT NULL,
    original_bytes  integer NOT NULL,
    redactions      integer NOT NULL,
    truncated       boolean NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, call_id)
);
CREATE INDEX call_evidence_expiry ON call_evidence (expires_at);
SELECT enable_tenant_isolation('call_evidence', 'SELECT, INSERT');

-- Evidence is never changed; only its retention drops it (prune_expired_evidence, run by ExpiredRowsPruning).
CREATE TRIGGER call_evidence_unchanged BEFORE UPDATE ON call_evidence FOR EACH ROW EXECUTE FUNCTION refuse_mutation();

CREATE FUNCTION prune_expired_evidence()
RETURNS int
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public AS $$
    WITH dropped AS (DELETE FROM call_evidence WHERE expires_at < now() RETURNING 1)
    SELECT count(*)::int FROM dropped
$$;
REVOKE EXECUTE ON FUNCTION prune_expired_evidence() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION prune_expired_evidence() TO integrations_app;

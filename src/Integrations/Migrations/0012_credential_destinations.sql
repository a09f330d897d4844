-- Credentials bound to destinations: the hosts a stored secret may be sent to (NULL: not bound). Attaching the
-- credential to an integration, MCP server or datasource elsewhere is refused, and resolution checks the
-- accessor's destination again, so changing a URL after attaching does not carry the secret along.
ALTER TABLE credentials ADD COLUMN allowed_hosts text[]
    CHECK (allowed_hosts IS NULL OR (cardinality(allowed_hosts) BETWEEN 1 AND 50));

-- A tenant's credential policy: with require_allowed_hosts, only bound credentials can be attached.
CREATE TABLE credential_policies (
    tenant_id              text PRIMARY KEY,
    require_allowed_hosts  boolean NOT NULL DEFAULT false,
    updated_at             timestamptz NOT NULL DEFAULT now()
);
SELECT enable_tenant_isolation('credential_policies');

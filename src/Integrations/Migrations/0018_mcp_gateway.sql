-- The MCP gateway (/mcp, GET /tools) serves each tenant's tools under gateway names from a per-replica copy of the
-- tenant's catalog. Any change to a tool row, or to a server's name, status or deletion, is announced on the change
-- channel as 'tools:<tenant>' when its transaction commits (PostgreSQL folds identical notifications of one
-- transaction into one), however the row was changed, so every replica drops its copy at once.
ALTER TABLE mcp_tools ADD COLUMN output_schema jsonb;

CREATE FUNCTION notify_tool_catalog_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM pg_notify('integrations_changes', 'tools:*');
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('integrations_changes', 'tools:' || OLD.tenant_id);
    ELSE
        PERFORM pg_notify('integrations_changes', 'tools:' || NEW.tenant_id);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER mcp_tools_catalog_changed AFTER INSERT OR UPDATE OR DELETE ON mcp_tools
    FOR EACH ROW EXECUTE FUNCTION notify_tool_catalog_change();
CREATE TRIGGER mcp_tools_catalog_truncated AFTER TRUNCATE ON mcp_tools
    FOR EACH STATEMENT EXECUTE FUNCTION notify_tool_catalog_change();
-- Health checks move servers between active, degraded and unreachable often; only what decides a tool's name or
-- whether it is offered (the name, disabled or not, deleted or not) is announced.
CREATE TRIGGER mcp_servers_catalog_changed AFTER UPDATE ON mcp_servers
    FOR EACH ROW WHEN (OLD.name IS DISTINCT FROM NEW.name OR (OLD.status = 'disabled') IS DISTINCT FROM (NEW.status = 'disabled')
                       OR OLD.deleted_at IS DISTINCT FROM NEW.deleted_at)
    EXECUTE FUNCTION notify_tool_catalog_change();

-- Virtual servers: a named subset of the tenant's tools, served at /mcp/<name>. A tool belongs to one when its id is
-- listed, or it matches the selectors given (servers, name patterns); a risk ceiling narrows whatever was chosen.
-- The tenant's tool policy still applies on top: a virtual server can narrow it, never widen it.
CREATE TABLE virtual_servers (
    id             uuid PRIMARY KEY,
    tenant_id      text NOT NULL,
    name           text NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    description    text,
    tool_ids       uuid[] NOT NULL DEFAULT '{}',
    server_ids     uuid[] NOT NULL DEFAULT '{}',
    name_patterns  text[] NOT NULL DEFAULT '{}',
    risk_ceiling   text CHECK (risk_ceiling IN ('low', 'medium', 'high', 'critical')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, name)
);
CREATE INDEX virtual_servers_page ON virtual_servers (tenant_id, id DESC);
SELECT enable_tenant_isolation('virtual_servers', 'SELECT, INSERT, UPDATE, DELETE');

-- The catalog copy holds the tenant's virtual servers too, so their changes are announced the same way.
CREATE TRIGGER virtual_servers_changed AFTER INSERT OR UPDATE OR DELETE ON virtual_servers
    FOR EACH ROW EXECUTE FUNCTION notify_tool_catalog_change();

-- MCP servers a tenant registered, and the tools discovered on them.

CREATE TABLE mcp_servers (
    id                    uuid PRIMARY KEY,
    tenant_id             text NOT NULL,
    name                  text NOT NULL,
    url                   text NOT NULL,
    -- The transport registration found working: Streamable HTTP, or the legacy HTTP+SSE transport it falls back to.
    transport             text NOT NULL DEFAULT 'streamable_http' CHECK (transport IN ('streamable_http', 'sse')),
    credential_ref        text,
    -- The header the resolved secret travels in: 'Authorization' means "Authorization: Bearer <secret>",
    -- any other name carries the raw secret.
    auth_header           text NOT NULL DEFAULT 'Authorization',
    status                text NOT NULL DEFAULT 'pending'
                          CHECK (status IN ('pending', 'active', 'degraded', 'unreachable', 'disabled')),
    protocol_version      text,
    server_name           text,
    server_version        text,
    capabilities          jsonb NOT NULL DEFAULT '{}',
    discovered_at         timestamptz,
    last_health_check_at  timestamptz,
    health_latency_ms     integer,
    health_detail         text,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    deleted_at            timestamptz,
    -- Lets mcp_tools reference (tenant_id, id), so a tool can never point at another tenant's server.
    UNIQUE (tenant_id, id)
);
CREATE UNIQUE INDEX mcp_servers_live_url ON mcp_servers (tenant_id, url) WHERE deleted_at IS NULL;
CREATE INDEX mcp_servers_page ON mcp_servers (tenant_id, id DESC) WHERE deleted_at IS NULL;
-- The health sweep reads across tenants (as the owner), oldest check first.
CREATE INDEX mcp_servers_health_due ON mcp_servers (last_health_check_at NULLS FIRST) WHERE deleted_at IS NULL;
SELECT enable_tenant_isolation('mcp_servers');

-- One row per tool name per server. The definition columns (description, input_schema, annotations) hold what
-- the server announced last; definition_hash is their hash. approved_hash pins the definition someone
-- approved (at first sight, or by tools.update). A tool is invocable only when status = 'active' (which
-- discovery sets only while definition_hash = approved_hash) and enabled, so input_schema is then the
-- pinned schema tools.invoke validates arguments against.
CREATE TABLE mcp_tools (
    id                     uuid PRIMARY KEY,
    tenant_id              text NOT NULL,
    server_id              uuid NOT NULL,
    name                   text NOT NULL,
    title                  text,
    description            text,
    input_schema           jsonb NOT NULL,
    annotations            jsonb,
    definition_hash        text NOT NULL,
    approved_hash          text NOT NULL,
    approved_definition    jsonb NOT NULL,
    risk_level             text NOT NULL CHECK (risk_level IN ('low', 'medium', 'high', 'critical')),
    risk_overridden        boolean NOT NULL DEFAULT false,
    risk_reason            text NOT NULL,
    enabled                boolean NOT NULL,
    status                 text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'drifted', 'removed')),
    rate_limit_per_minute  integer CHECK (rate_limit_per_minute > 0),
    discovered_at          timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (tenant_id, server_id) REFERENCES mcp_servers (tenant_id, id),
    UNIQUE (server_id, name)
);
CREATE INDEX mcp_tools_page ON mcp_tools (tenant_id, server_id, id DESC);
SELECT enable_tenant_isolation('mcp_tools');

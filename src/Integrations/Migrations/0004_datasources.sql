-- Datasources: external databases reached only through the deny-by-default SQL gateway.
-- The password is never stored here: credential_ref points into the vault.
CREATE TABLE datasources (
    id                    uuid PRIMARY KEY,
    tenant_id             text NOT NULL,
    name                  text NOT NULL,
    kind                  text NOT NULL CHECK (kind IN ('postgres')),
    host                  text NOT NULL,
    port                  integer NOT NULL CHECK (port BETWEEN 1 AND 65535),
    database              text NOT NULL,
    username              text NOT NULL,
    credential_ref        text NOT NULL,
    tls_mode              text NOT NULL CHECK (tls_mode IN ('disable', 'prefer', 'require', 'verify-full')),
    row_limit             integer NOT NULL CHECK (row_limit BETWEEN 1 AND 10000),
    statement_timeout_ms  integer NOT NULL CHECK (statement_timeout_ms BETWEEN 100 AND 120000),
    status                text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'active', 'failing')),
    status_message        text,
    server_version        text,
    tested_at             timestamptz,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    deleted_at            timestamptz
);
CREATE INDEX datasources_page ON datasources (tenant_id, id DESC) WHERE deleted_at IS NULL;
CREATE UNIQUE INDEX datasources_live_name ON datasources (tenant_id, name) WHERE deleted_at IS NULL;
SELECT enable_tenant_isolation('datasources');

-- The named, parameterised, read-only templates: the only SQL the gateway ever runs.
-- parameters: [{"name": "...", "type": "..."}] in $n order; columns: what the datasource described at definition.
CREATE TABLE datasource_queries (
    id                     uuid PRIMARY KEY,
    tenant_id              text NOT NULL,
    datasource_id          uuid NOT NULL REFERENCES datasources (id),
    name                   text NOT NULL,
    description            text,
    sql                    text NOT NULL,
    parameters             jsonb NOT NULL DEFAULT '[]',
    columns                jsonb NOT NULL DEFAULT '[]',
    row_limit              integer NOT NULL CHECK (row_limit BETWEEN 1 AND 10000),
    timeout_ms             integer NOT NULL CHECK (timeout_ms BETWEEN 100 AND 120000),
    rate_limit_per_minute  integer CHECK (rate_limit_per_minute > 0),  -- null: the tenant policy's default
    enabled                boolean NOT NULL DEFAULT true,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    deleted_at             timestamptz
);
CREATE INDEX datasource_queries_page ON datasource_queries (tenant_id, datasource_id, id DESC) WHERE deleted_at IS NULL;
CREATE UNIQUE INDEX datasource_queries_live_name ON datasource_queries (tenant_id, datasource_id, name) WHERE deleted_at IS NULL;
SELECT enable_tenant_isolation('datasource_queries');

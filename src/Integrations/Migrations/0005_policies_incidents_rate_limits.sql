-- Per-tenant tool policy; a tenant without a row gets the defaults (ceiling medium, no lists, no limits).
CREATE TABLE tool_policies (
    tenant_id                      text PRIMARY KEY,
    risk_ceiling                   text NOT NULL DEFAULT 'medium' CHECK (risk_ceiling IN ('low', 'medium', 'high', 'critical')),
    allow_list                     text[] NOT NULL DEFAULT '{}',
    deny_list                      text[] NOT NULL DEFAULT '{}',
    default_rate_limit_per_minute  integer CHECK (default_rate_limit_per_minute > 0),
    tenant_rate_limit_per_minute   integer CHECK (tenant_rate_limit_per_minute > 0),
    updated_at                     timestamptz NOT NULL DEFAULT now()
);
SELECT enable_tenant_isolation('tool_policies');

CREATE TABLE incidents (
    id               uuid PRIMARY KEY,
    tenant_id        text NOT NULL,
    kind             text NOT NULL CHECK (kind IN ('tool_failure', 'health_failure', 'cost_anomaly')),
    severity         text NOT NULL CHECK (severity IN ('low', 'medium', 'high', 'critical')),
    subject_type     text NOT NULL,
    subject_id       text NOT NULL,
    message          text NOT NULL,
    dedup_key        text NOT NULL,
    occurrences      integer NOT NULL DEFAULT 1,
    first_seen       timestamptz NOT NULL DEFAULT now(),
    last_seen        timestamptz NOT NULL DEFAULT now(),
    status           text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'acknowledged', 'resolved')),
    acknowledged_at  timestamptz,
    acknowledged_by  text,
    resolved_at      timestamptz,
    resolved_by      text
);
-- One unresolved incident per dedup key: a repeat bumps it; after resolution the next failure opens a new one.
CREATE UNIQUE INDEX incidents_unresolved ON incidents (tenant_id, dedup_key) WHERE status <> 'resolved';
CREATE INDEX incidents_page ON incidents (tenant_id, id DESC);
SELECT enable_tenant_isolation('incidents');

-- Fixed one-minute windows counted in the database, so limits hold across replicas.
CREATE TABLE rate_limit_counters (
    tenant_id     text NOT NULL,
    key           text NOT NULL,
    window_start  timestamptz NOT NULL,
    count         integer NOT NULL,
    PRIMARY KEY (tenant_id, key, window_start)
);
SELECT enable_tenant_isolation('rate_limit_counters', 'SELECT, INSERT, UPDATE, DELETE');

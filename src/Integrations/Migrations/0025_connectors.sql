-- Connectors: the manifests tenants register for the generic http connector (built-in manifests ship with the service
-- and live in no table), the connections that bind a connector to a configuration and a credential, and the immutable
-- record of every connector action call.

-- A tenant's registered manifest: the current one and the hash it is pinned by. Registering a changed manifest under
-- the same name keeps the old pin, so the manifest is 'drifted' and its actions refused until it is approved again.
CREATE TABLE connector_manifests (
    id             uuid PRIMARY KEY,
    tenant_id      text NOT NULL,
    name           text NOT NULL CHECK (name ~ '^[a-z][a-z0-9_-]{0,62}$'),
    version        text NOT NULL,
    manifest       jsonb NOT NULL,
    manifest_hash  text NOT NULL,
    approved_hash  text NOT NULL,
    status         text NOT NULL CHECK (status IN ('active', 'drifted')),
    revision       integer NOT NULL DEFAULT 1,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, name)
);
SELECT enable_tenant_isolation('connector_manifests');

-- Every manifest ever registered under a name, in order: what was approved when can always be read back.
CREATE TABLE connector_manifest_revisions (
    tenant_id      text NOT NULL,
    manifest_id    uuid NOT NULL,
    revision       integer NOT NULL,
    version        text NOT NULL,
    manifest       jsonb NOT NULL,
    manifest_hash  text NOT NULL,
    registered_by  text NOT NULL,
    registered_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, manifest_id, revision)
);
SELECT enable_tenant_isolation('connector_manifest_revisions', 'SELECT, INSERT');
SELECT make_append_only('connector_manifest_revisions');

CREATE TABLE connections (
    id                uuid PRIMARY KEY,
    tenant_id         text NOT NULL,
    name              text NOT NULL CHECK (name ~ '^[a-z][a-z0-9_-]{0,62}$'),
    connector         text NOT NULL,
    configuration     jsonb NOT NULL DEFAULT '{}',
    credential_ref    text,
    status            text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    disabled_actions  text[] NOT NULL DEFAULT '{}',
    rate_limit_per_minute integer CHECK (rate_limit_per_minute > 0),
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    deleted_at        timestamptz
);
CREATE UNIQUE INDEX connections_name ON connections (tenant_id, name) WHERE deleted_at IS NULL;
CREATE INDEX connections_page ON connections (tenant_id, id DESC) WHERE deleted_at IS NULL;
SELECT enable_tenant_isolation('connections');

CREATE TABLE connection_invocations (
    id               uuid PRIMARY KEY,
    tenant_id        text NOT NULL,
    connection_id    uuid NOT NULL,
    connection_name  text NOT NULL,
    action           text NOT NULL,
    access           text NOT NULL CHECK (access IN ('read', 'write')),
    run_id           text,
    caller           text NOT NULL,
    input_hash       text NOT NULL,
    output_hash      text,
    outcome          text NOT NULL CHECK (outcome IN ('completed', 'failed', 'timeout', 'denied')),
    decision_reason  text,
    error_code       text,
    error            text,
    duration_ms      double precision NOT NULL,
    started_at       timestamptz NOT NULL,
    finished_at      timestamptz NOT NULL,
    incident_id      uuid
);
CREATE INDEX connection_invocations_page ON connection_invocations (tenant_id, connection_id, id DESC);
SELECT enable_tenant_isolation('connection_invocations', 'SELECT, INSERT');
SELECT make_append_only('connection_invocations');

-- A connection resolves its credential under a grant of its own, like every other accessor.
ALTER TABLE credential_grants DROP CONSTRAINT credential_grants_accessor_type_check;
ALTER TABLE credential_grants ADD CONSTRAINT credential_grants_accessor_type_check
    CHECK (accessor_type IN ('integration', 'mcp_server', 'datasource', 'connection'));

-- Every enabled action of a connection is a tool on the MCP gateway: changes to connections and registered manifests
-- drop the replicas' copies of the tenant's catalog as tool changes do (0018).
CREATE TRIGGER connections_catalog_changed AFTER INSERT OR UPDATE OR DELETE ON connections
    FOR EACH ROW EXECUTE FUNCTION notify_tool_catalog_change();
CREATE TRIGGER connector_manifests_catalog_changed AFTER INSERT OR UPDATE OR DELETE ON connector_manifests
    FOR EACH ROW EXECUTE FUNCTION notify_tool_catalog_change();

-- The webhook connector's delivery log: one row per event sent (its body as sent, so it can be sent again), its state
-- (delivered, failed on an answer that retrying cannot change, dead_letter after the connection's last attempt), and
-- every attempt with what the receiver answered.
CREATE TABLE webhook_deliveries (
    id             uuid PRIMARY KEY,
    tenant_id      text NOT NULL,
    connection_id  uuid NOT NULL,
    event          text NOT NULL,
    body           text NOT NULL,
    status         text NOT NULL CHECK (status IN ('pending', 'delivered', 'failed', 'dead_letter')),
    attempts       integer NOT NULL DEFAULT 0,
    last_status    integer,
    last_error     text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    delivered_at   timestamptz
);
CREATE INDEX webhook_deliveries_page ON webhook_deliveries (tenant_id, connection_id, id DESC);
SELECT enable_tenant_isolation('webhook_deliveries');

CREATE TABLE webhook_delivery_attempts (
    tenant_id     text NOT NULL,
    delivery_id   uuid NOT NULL,
    attempt       integer NOT NULL,
    status_code   integer,
    error         text,
    duration_ms   double precision NOT NULL,
    attempted_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, delivery_id, attempt)
);
SELECT enable_tenant_isolation('webhook_delivery_attempts', 'SELECT, INSERT');
SELECT make_append_only('webhook_delivery_attempts');

-- Incident notifications: the tenant's routing rules (PUT /notifications replaces them) and one row per incident state
-- change and connection — claimed before sending, so each change is delivered once whatever the number of replicas.
CREATE TABLE notification_rules (
    tenant_id      text NOT NULL,
    position       integer NOT NULL,
    connection_id  uuid NOT NULL,
    kinds          text[] NOT NULL DEFAULT '{}',
    min_severity   text NOT NULL DEFAULT 'low' CHECK (min_severity IN ('low', 'medium', 'high', 'critical')),
    channel        text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, position)
);
SELECT enable_tenant_isolation('notification_rules', 'SELECT, INSERT, UPDATE, DELETE');

CREATE TABLE notification_deliveries (
    id              uuid PRIMARY KEY,
    tenant_id       text NOT NULL,
    incident_id     uuid NOT NULL,
    state_change    text NOT NULL,
    connection_id   uuid NOT NULL,
    outcome         text NOT NULL CHECK (outcome IN ('sending', 'delivered', 'failed')),
    error_code      text,
    error           text,
    invocation_id   uuid,
    attempted_at    timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    UNIQUE (tenant_id, incident_id, state_change, connection_id)
);
CREATE INDEX notification_deliveries_page ON notification_deliveries (tenant_id, id DESC);
SELECT enable_tenant_isolation('notification_deliveries');

-- What is due, across tenants (the notifier runs as no tenant): every open incident's state changes — 'opened', and
-- 'escalated:<n>' once it has recurred n times — matched to the rules that route it, minus those already claimed.
-- An incident about a connection's own action is never routed to that connection (a receiver that is down would
-- otherwise feed itself incidents).
CREATE FUNCTION incident_notifications_due(take int)
RETURNS TABLE (tenant_id text, incident_id uuid, state_change text, connection_id uuid, connector text, channel text,
               kind text, severity text, subject_type text, subject_id text, message text, occurrences int, first_seen timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
    WITH changes AS (
        SELECT i.*, 'opened' AS state_change FROM incidents i WHERE i.status = 'open'
        UNION ALL
        SELECT i.*, 'escalated:' || t FROM incidents i CROSS JOIN unnest(ARRAY[10, 100, 1000]) AS t
        WHERE i.status = 'open' AND i.occurrences >= t
    )
    SELECT c.tenant_id, c.id, c.state_change, r.connection_id, n.connector, r.channel,
           c.kind, c.severity, c.subject_type, c.subject_id, c.message, c.occurrences, c.first_seen
    FROM changes c
    JOIN notification_rules r ON r.tenant_id = c.tenant_id
        AND (cardinality(r.kinds) = 0 OR c.kind = ANY (r.kinds))
        AND array_position(ARRAY['low', 'medium', 'high', 'critical'], c.severity) >= array_position(ARRAY['low', 'medium', 'high', 'critical'], r.min_severity)
        AND c.last_seen >= r.created_at
    JOIN connections n ON n.tenant_id = r.tenant_id AND n.id = r.connection_id AND n.deleted_at IS NULL
    WHERE NOT (c.subject_type = 'connection_action' AND c.subject_id LIKE r.connection_id::text || '/%')
      AND NOT EXISTS (SELECT FROM notification_deliveries d
                      WHERE d.tenant_id = c.tenant_id AND d.incident_id = c.id AND d.state_change = c.state_change AND d.connection_id = r.connection_id)
    ORDER BY c.last_seen, c.id
    LIMIT take
$$;
REVOKE ALL ON FUNCTION incident_notifications_due(int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION incident_notifications_due(int) TO integrations_app;

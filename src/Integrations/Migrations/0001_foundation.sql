-- The unprivileged role every request transaction switches to (SET LOCAL ROLE): neither owner nor
-- superuser, so row-level security applies to it. Roles are cluster-wide, hence the guards.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'integrations_app') THEN
        CREATE ROLE integrations_app NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $$;

DO $$
BEGIN
    IF NOT pg_has_role(current_user, 'integrations_app', 'MEMBER') THEN
        EXECUTE format('GRANT integrations_app TO %I', current_user);
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $$;

GRANT USAGE ON SCHEMA public TO integrations_app;

-- Every tenant-owned table calls this: RLS keyed on the transaction's app.tenant_id (an unset or empty
-- setting matches no row) and the app role's privileges.
CREATE FUNCTION enable_tenant_isolation(target regclass, privileges text DEFAULT 'SELECT, INSERT, UPDATE')
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', target);
    EXECUTE format(
        'CREATE POLICY tenant_isolation ON %s USING (tenant_id = current_setting(''app.tenant_id'', true)) '
        'WITH CHECK (tenant_id = current_setting(''app.tenant_id'', true))', target);
    EXECUTE format('GRANT %s ON %s TO integrations_app', privileges, target);
END $$;

-- Append-only tables refuse UPDATE, DELETE and TRUNCATE for everyone, owner included.
CREATE FUNCTION refuse_mutation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % is not allowed', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE FUNCTION make_append_only(target regclass) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('CREATE TRIGGER append_only_rows BEFORE UPDATE OR DELETE ON %s FOR EACH ROW EXECUTE FUNCTION refuse_mutation()', target);
    EXECUTE format('CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION refuse_mutation()', target);
END $$;

CREATE TABLE api_keys (
    id          uuid PRIMARY KEY,
    tenant_id   text NOT NULL,
    name        text NOT NULL,
    key_hash    bytea NOT NULL,
    scopes      text[] NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id);
SELECT enable_tenant_isolation('api_keys', 'SELECT');

CREATE TABLE cus_integrations (
    id                      uuid PRIMARY KEY,
    tenant_id               text NOT NULL,
    name                    text NOT NULL,
    provider                text NOT NULL CHECK (provider IN ('openai', 'anthropic', 'azure_openai', 'google', 'openai_compatible')),
    base_url                text,
    credential_ref          text,
    status                  text NOT NULL DEFAULT 'created' CHECK (status IN ('created', 'enabled', 'disabled', 'error')),
    health                  text NOT NULL DEFAULT 'unknown' CHECK (health IN ('unknown', 'healthy', 'degraded', 'failing')),
    health_checked_at       timestamptz,
    health_message          text,
    requests_per_minute     integer CHECK (requests_per_minute >= 0),
    tokens_per_month        bigint CHECK (tokens_per_month >= 0),
    budget_cents_per_month  bigint CHECK (budget_cents_per_month >= 0),
    allowed_models          text[] NOT NULL DEFAULT '{}',
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    deleted_at              timestamptz
);
-- Ids are UUIDv7 (time-ordered), so (tenant_id, id) is the keyset for newest-first pages.
CREATE INDEX cus_integrations_page ON cus_integrations (tenant_id, id DESC) WHERE deleted_at IS NULL;
CREATE UNIQUE INDEX cus_integrations_live_name ON cus_integrations (tenant_id, name) WHERE deleted_at IS NULL;
SELECT enable_tenant_isolation('cus_integrations');

-- Per-tenant hash chain. The head row serialises one tenant's writers only.
CREATE TABLE audit_chain_heads (
    tenant_id  text PRIMARY KEY,
    last_seq   bigint NOT NULL DEFAULT 0,
    last_hash  bytea NOT NULL DEFAULT decode(repeat('00', 32), 'hex'),
    prev_hash  bytea NOT NULL DEFAULT decode(repeat('00', 32), 'hex')
);
SELECT enable_tenant_isolation('audit_chain_heads');

CREATE TABLE audit_events (
    tenant_id       text NOT NULL,
    seq             bigint NOT NULL,
    occurred_at     timestamptz NOT NULL,
    actor           text NOT NULL,
    action          text NOT NULL,
    subject_type    text NOT NULL,
    subject_id      text NOT NULL,
    correlation_id  text,
    details         jsonb NOT NULL DEFAULT '{}',
    prev_hash       bytea NOT NULL,
    hash            bytea NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);
CREATE INDEX audit_events_subject ON audit_events (tenant_id, subject_type, subject_id, seq DESC);
CREATE INDEX audit_events_action ON audit_events (tenant_id, action, seq DESC);
SELECT enable_tenant_isolation('audit_events', 'SELECT, INSERT');
SELECT make_append_only('audit_events');

-- One definition of what an event's hash covers, used when writing and when verifying.
CREATE FUNCTION audit_event_hash(
    prev bytea, tenant text, seq bigint, occurred timestamptz, actor text, action text,
    subject_type text, subject_id text, correlation text, details jsonb)
RETURNS bytea LANGUAGE sql STABLE AS $$
    SELECT sha256(prev || convert_to(concat_ws(chr(31),
        tenant, seq::text, to_char(occurred AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'),
        actor, action, subject_type, subject_id, coalesce(correlation, ''), details::text), 'UTF8'))
$$;

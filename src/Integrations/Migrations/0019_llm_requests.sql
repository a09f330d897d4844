-- The LLM gateway: one immutable usage row per request (denied ones included), the month's totals per integration
-- that budgets are checked against, and the price table costs come from.

CREATE TABLE llm_requests (
    id                 uuid PRIMARY KEY,
    tenant_id          text NOT NULL,
    integration_id     uuid,
    integration_name   text,
    api_key_id         uuid,
    caller             text NOT NULL,
    run_id             text,
    endpoint           text NOT NULL CHECK (endpoint IN ('chat.completions', 'embeddings', 'messages')),
    requested_model    text NOT NULL,
    served_model       text,
    provider           text,
    streaming          boolean NOT NULL DEFAULT false,
    prompt_tokens      bigint NOT NULL DEFAULT 0,
    completion_tokens  bigint NOT NULL DEFAULT 0,
    cached_tokens      bigint NOT NULL DEFAULT 0,
    tokens_estimated   boolean NOT NULL DEFAULT false,
    cost_cents         numeric(18, 6) NOT NULL DEFAULT 0,
    status             text NOT NULL CHECK (status IN ('completed', 'failed', 'timeout', 'denied')),
    error_code         text,
    error              text,
    upstream_status    integer,
    latency_ms         double precision NOT NULL DEFAULT 0,
    first_token_ms     double precision,
    attempts           integer NOT NULL DEFAULT 0,
    incident_id        uuid,
    started_at         timestamptz NOT NULL,
    finished_at        timestamptz NOT NULL
);
-- Ids are UUIDv7 (time-ordered): (tenant_id, id) is the keyset for newest-first pages.
CREATE INDEX llm_requests_page ON llm_requests (tenant_id, id DESC);
CREATE INDEX llm_requests_integration ON llm_requests (tenant_id, integration_id, id DESC);
CREATE INDEX llm_requests_run ON llm_requests (tenant_id, run_id) WHERE run_id IS NOT NULL;
SELECT enable_tenant_isolation('llm_requests', 'SELECT, INSERT');
SELECT make_append_only('llm_requests');

-- What budgets are checked against: one row per integration and UTC month, kept by the trigger below so a check is
-- one indexed read, never a sum over the month's requests.
CREATE TABLE llm_usage_months (
    tenant_id       text NOT NULL,
    integration_id  uuid NOT NULL,
    month           date NOT NULL,
    requests        bigint NOT NULL DEFAULT 0,
    tokens          bigint NOT NULL DEFAULT 0,
    cost_cents      numeric(18, 6) NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, integration_id, month)
);
SELECT enable_tenant_isolation('llm_usage_months');

CREATE FUNCTION llm_usage_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.integration_id IS NULL OR NEW.status = 'denied' THEN
        RETURN NULL;
    END IF;
    INSERT INTO llm_usage_months AS u (tenant_id, integration_id, month, requests, tokens, cost_cents)
    VALUES (NEW.tenant_id, NEW.integration_id, date_trunc('month', NEW.started_at AT TIME ZONE 'UTC')::date, 1,
            NEW.prompt_tokens + NEW.completion_tokens, NEW.cost_cents)
    ON CONFLICT (tenant_id, integration_id, month) DO UPDATE
        SET requests = u.requests + 1, tokens = u.tokens + EXCLUDED.tokens, cost_cents = u.cost_cents + EXCLUDED.cost_cents;
    RETURN NULL;
END $$;
CREATE TRIGGER llm_usage_add AFTER INSERT ON llm_requests FOR EACH ROW EXECUTE FUNCTION llm_usage_add();

-- Prices in US cents per million tokens: llm_list_prices holds the published prices every tenant starts from
-- (readable by all, written only by migrations); a tenant's own llm_prices row for a model overrides it.
CREATE TABLE llm_list_prices (
    model                    text PRIMARY KEY,
    input_cents_per_mtok     numeric(12, 4) NOT NULL CHECK (input_cents_per_mtok >= 0),
    output_cents_per_mtok    numeric(12, 4) NOT NULL CHECK (output_cents_per_mtok >= 0),
    cached_cents_per_mtok    numeric(12, 4) CHECK (cached_cents_per_mtok >= 0)
);
GRANT SELECT ON llm_list_prices TO integrations_app;

CREATE TABLE llm_prices (
    tenant_id                text NOT NULL,
    model                    text NOT NULL,
    input_cents_per_mtok     numeric(12, 4) NOT NULL CHECK (input_cents_per_mtok >= 0),
    output_cents_per_mtok    numeric(12, 4) NOT NULL CHECK (output_cents_per_mtok >= 0),
    cached_cents_per_mtok    numeric(12, 4) CHECK (cached_cents_per_mtok >= 0),
    updated_at               timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, model)
);
SELECT enable_tenant_isolation('llm_prices', 'SELECT, INSERT, UPDATE, DELETE');

-- Published per-million-token prices (USD, as cents) as of 2026; tenants correct or extend them with llm_prices.
INSERT INTO llm_list_prices (model, input_cents_per_mtok, output_cents_per_mtok, cached_cents_per_mtok) VALUES
    ('gpt-4o',                     250,   1000,  125),
    ('gpt-4o-mini',                15,    60,    7.5),
    ('gpt-4.1',                    200,   800,   50),
    ('gpt-4.1-mini',               40,    160,   10),
    ('gpt-4.1-nano',               10,    40,    2.5),
    ('o3',                         200,   800,   50),
    ('o4-mini',                    110,   440,   27.5),
    ('gpt-5',                      125,   1000,  12.5),
    ('gpt-5-mini',                 25,    200,   2.5),
    ('text-embedding-3-small',     2,     0,     NULL),
    ('text-embedding-3-large',     13,    0,     NULL),
    ('claude-sonnet-4-5',          300,   1500,  30),
    ('claude-haiku-4-5',           100,   500,   10),
    ('claude-opus-4-1',            1500,  7500,  150),
    ('gemini-2.5-pro',             125,   1000,  31),
    ('gemini-2.5-flash',           30,    250,   7.5);

-- A provider that fails LLM requests opens (or bumps) one incident per integration.
ALTER TABLE incidents DROP CONSTRAINT incidents_kind_check;
ALTER TABLE incidents ADD CONSTRAINT incidents_kind_check
    CHECK (kind IN ('tool_failure', 'health_failure', 'cost_anomaly', 'call_unknown', 'llm_failure'));

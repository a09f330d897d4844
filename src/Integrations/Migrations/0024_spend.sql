-- Spend under control (issue 15): usage reported from outside the gateway beside the gateway's own rows, rollups kept
-- as usage arrives (month totals per integration and per API key for budgets, hour cells for summaries), per-key limits,
-- and the incidents budgets and cost anomalies open.

-- Where a usage row came from: the gateway itself, or telemetry.ingest (calls that never went through the gateway).
-- An ingested record carries the caller's idempotency id, so a retried batch counts once.
ALTER TABLE llm_requests
    ADD COLUMN source text NOT NULL DEFAULT 'gateway' CHECK (source IN ('gateway', 'telemetry')),
    ADD COLUMN idempotency_id text;
CREATE UNIQUE INDEX llm_requests_idempotency ON llm_requests (tenant_id, idempotency_id) WHERE idempotency_id IS NOT NULL;

-- A key may carry its own limits; the gateway enforces them beside the integration's (the stricter wins).
ALTER TABLE api_keys
    ADD COLUMN budget_cents_per_month bigint CHECK (budget_cents_per_month >= 0),
    ADD COLUMN tokens_per_month bigint CHECK (tokens_per_month >= 0),
    ADD COLUMN requests_per_minute integer CHECK (requests_per_minute >= 0),
    ADD COLUMN allowed_models text[] NOT NULL DEFAULT '{}';
GRANT UPDATE (budget_cents_per_month, tokens_per_month, requests_per_minute, allowed_models) ON api_keys TO integrations_app;

CREATE TABLE llm_key_usage_months (
    tenant_id   text NOT NULL,
    api_key_id  uuid NOT NULL,
    month       date NOT NULL,
    requests    bigint NOT NULL DEFAULT 0,
    tokens      bigint NOT NULL DEFAULT 0,
    cost_cents  numeric(18, 6) NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, api_key_id, month)
);
SELECT enable_tenant_isolation('llm_key_usage_months');

-- Summaries read hour cells, never raw rows. Latency is kept as counts in fixed buckets (upper bounds in ms, the last
-- open): 10, 25, 50, 100, 250, 500, 1000, 2000, 4000, 8000, 15000, 30000, 60000, 120000, +inf; p50/p95 are read from
-- them. llm_usage_hours has no run (small: answers every grouping but run); llm_usage_run_hours adds the run.
CREATE FUNCTION llm_latency_bucket(latency_ms double precision) RETURNS int LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT width_bucket(latency_ms, '{10,25,50,100,250,500,1000,2000,4000,8000,15000,30000,60000,120000}'::float8[]) + 1
$$;

CREATE FUNCTION llm_latency_add(a bigint[], b bigint[]) RETURNS bigint[] LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT array_agg(COALESCE(x, 0) + COALESCE(y, 0) ORDER BY i) FROM unnest(a, b) WITH ORDINALITY AS t(x, y, i)
$$;

CREATE TABLE llm_usage_hours (
    tenant_id          text NOT NULL,
    hour               timestamptz NOT NULL,
    integration_id     uuid,
    model              text NOT NULL,
    api_key_id         uuid,
    requests           bigint NOT NULL DEFAULT 0,
    errors             bigint NOT NULL DEFAULT 0,
    denied             bigint NOT NULL DEFAULT 0,
    prompt_tokens      bigint NOT NULL DEFAULT 0,
    completion_tokens  bigint NOT NULL DEFAULT 0,
    cost_cents         numeric(18, 6) NOT NULL DEFAULT 0,
    latency            bigint[] NOT NULL,
    UNIQUE NULLS NOT DISTINCT (tenant_id, hour, integration_id, model, api_key_id)
);
SELECT enable_tenant_isolation('llm_usage_hours');

CREATE TABLE llm_usage_run_hours (LIKE llm_usage_hours INCLUDING DEFAULTS);
ALTER TABLE llm_usage_run_hours ADD COLUMN run_id text NOT NULL,
    ADD UNIQUE NULLS NOT DISTINCT (tenant_id, run_id, hour, integration_id, model, api_key_id);
SELECT enable_tenant_isolation('llm_usage_run_hours');

-- One statement-level trigger keeps every rollup from the rows a statement added (a batch of a thousand ingested
-- records is one pass per rollup, not a thousand). Cells are written in key order, so two batches never deadlock.
DROP TRIGGER llm_usage_add ON llm_requests;
DROP FUNCTION llm_usage_add();

CREATE FUNCTION llm_usage_rollup() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO llm_usage_months AS u (tenant_id, integration_id, month, requests, tokens, cost_cents)
    SELECT tenant_id, integration_id, date_trunc('month', started_at AT TIME ZONE 'UTC')::date AS m, count(*),
           sum(prompt_tokens + completion_tokens), sum(cost_cents)
    FROM added WHERE integration_id IS NOT NULL AND status <> 'denied'
    GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (tenant_id, integration_id, month) DO UPDATE
        SET requests = u.requests + EXCLUDED.requests, tokens = u.tokens + EXCLUDED.tokens, cost_cents = u.cost_cents + EXCLUDED.cost_cents;

    INSERT INTO llm_key_usage_months AS u (tenant_id, api_key_id, month, requests, tokens, cost_cents)
    SELECT tenant_id, api_key_id, date_trunc('month', started_at AT TIME ZONE 'UTC')::date AS m, count(*),
           sum(prompt_tokens + completion_tokens), sum(cost_cents)
    FROM added WHERE api_key_id IS NOT NULL AND status <> 'denied'
    GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (tenant_id, api_key_id, month) DO UPDATE
        SET requests = u.requests + EXCLUDED.requests, tokens = u.tokens + EXCLUDED.tokens, cost_cents = u.cost_cents + EXCLUDED.cost_cents;

    -- The added rows' cells (with the run) once; both hour rollups are written from them in one statement.
    WITH cells AS (
        SELECT tenant_id, date_trunc('hour', started_at) AS hour, integration_id, COALESCE(served_model, requested_model) AS model,
               api_key_id, run_id, count(*) AS requests, count(*) FILTER (WHERE status IN ('failed', 'timeout')) AS errors,
               count(*) FILTER (WHERE status = 'denied') AS denied, sum(prompt_tokens) AS prompt_tokens,
               sum(completion_tokens) AS completion_tokens, sum(cost_cents) AS cost_cents,
               ARRAY[count(*) FILTER (WHERE b = 1), count(*) FILTER (WHERE b = 2), count(*) FILTER (WHERE b = 3),
                     count(*) FILTER (WHERE b = 4), count(*) FILTER (WHERE b = 5), count(*) FILTER (WHERE b = 6),
                     count(*) FILTER (WHERE b = 7), count(*) FILTER (WHERE b = 8), count(*) FILTER (WHERE b = 9),
                     count(*) FILTER (WHERE b = 10), count(*) FILTER (WHERE b = 11), count(*) FILTER (WHERE b = 12),
                     count(*) FILTER (WHERE b = 13), count(*) FILTER (WHERE b = 14), count(*) FILTER (WHERE b = 15)] AS latency
        FROM (SELECT *, CASE WHEN status = 'denied' THEN 0 ELSE llm_latency_bucket(latency_ms) END AS b FROM added) a
        GROUP BY 1, 2, 3, 4, 5, 6
    ), hours AS (
        INSERT INTO llm_usage_hours AS u (tenant_id, hour, integration_id, model, api_key_id, requests, errors, denied,
                                          prompt_tokens, completion_tokens, cost_cents, latency)
        SELECT tenant_id, hour, integration_id, model, api_key_id, sum(requests), sum(errors), sum(denied), sum(prompt_tokens),
               sum(completion_tokens), sum(cost_cents),
               ARRAY[sum(latency[1]), sum(latency[2]), sum(latency[3]), sum(latency[4]), sum(latency[5]), sum(latency[6]),
                     sum(latency[7]), sum(latency[8]), sum(latency[9]), sum(latency[10]), sum(latency[11]), sum(latency[12]),
                     sum(latency[13]), sum(latency[14]), sum(latency[15])]::bigint[]
        FROM cells GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
        ON CONFLICT (tenant_id, hour, integration_id, model, api_key_id) DO UPDATE
            SET requests = u.requests + EXCLUDED.requests, errors = u.errors + EXCLUDED.errors, denied = u.denied + EXCLUDED.denied,
                prompt_tokens = u.prompt_tokens + EXCLUDED.prompt_tokens, completion_tokens = u.completion_tokens + EXCLUDED.completion_tokens,
                cost_cents = u.cost_cents + EXCLUDED.cost_cents, latency = llm_latency_add(u.latency, EXCLUDED.latency)
        RETURNING 1
    )
    INSERT INTO llm_usage_run_hours AS u (tenant_id, hour, integration_id, model, api_key_id, run_id, requests, errors, denied,
                                          prompt_tokens, completion_tokens, cost_cents, latency)
    SELECT tenant_id, hour, integration_id, model, api_key_id, run_id, requests, errors, denied, prompt_tokens,
           completion_tokens, cost_cents, latency
    FROM cells WHERE run_id IS NOT NULL
    ORDER BY tenant_id, run_id, hour, integration_id, model, api_key_id
    ON CONFLICT (tenant_id, run_id, hour, integration_id, model, api_key_id) DO UPDATE
        SET requests = u.requests + EXCLUDED.requests, errors = u.errors + EXCLUDED.errors, denied = u.denied + EXCLUDED.denied,
            prompt_tokens = u.prompt_tokens + EXCLUDED.prompt_tokens, completion_tokens = u.completion_tokens + EXCLUDED.completion_tokens,
            cost_cents = u.cost_cents + EXCLUDED.cost_cents, latency = llm_latency_add(u.latency, EXCLUDED.latency);
    RETURN NULL;
END $$;
CREATE TRIGGER llm_usage_rollup AFTER INSERT ON llm_requests REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION llm_usage_rollup();

-- Budget alerts and cost anomalies open incidents of their own kinds.
ALTER TABLE incidents DROP CONSTRAINT incidents_kind_check;
ALTER TABLE incidents ADD CONSTRAINT incidents_kind_check
    CHECK (kind IN ('tool_failure', 'health_failure', 'cost_anomaly', 'call_unknown', 'llm_failure', 'budget_threshold'));

-- Budget alerts: each threshold (80 %, 100 %) of each budget (an integration's or a key's cents or tokens per month)
-- alerts once per month; a row here says it did.
CREATE TABLE budget_alerts (
    tenant_id     text NOT NULL,
    subject_type  text NOT NULL CHECK (subject_type IN ('integration', 'api_key')),
    subject_id    uuid NOT NULL,
    measure       text NOT NULL CHECK (measure IN ('cents', 'tokens')),
    month         date NOT NULL,
    threshold     integer NOT NULL CHECK (threshold IN (80, 100)),
    alerted_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, subject_type, subject_id, measure, month, threshold)
);
SELECT enable_tenant_isolation('budget_alerts', 'SELECT, INSERT');

-- This month's budgets of every tenant at or past 80 % whose highest threshold reached has not alerted yet (the
-- service's role sees one tenant at a time, so the sweep across tenants is this function's).
CREATE FUNCTION budget_crossings(take int)
RETURNS TABLE (tenant_id text, subject_type text, subject_id uuid, name text, measure text, month date, budget numeric,
               used numeric, threshold int)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
    WITH month AS (SELECT date_trunc('month', now() AT TIME ZONE 'UTC')::date AS m),
    budgets AS (
        SELECT i.tenant_id, 'integration' AS subject_type, i.id AS subject_id, i.name, x.measure, x.budget, x.used
        FROM cus_integrations i JOIN llm_usage_months u ON u.tenant_id = i.tenant_id AND u.integration_id = i.id AND u.month = (SELECT m FROM month)
        CROSS JOIN LATERAL (VALUES ('cents', i.budget_cents_per_month::numeric, u.cost_cents), ('tokens', i.tokens_per_month::numeric, u.tokens::numeric)) AS x(measure, budget, used)
        WHERE i.deleted_at IS NULL
        UNION ALL
        SELECT k.tenant_id, 'api_key', k.id, k.name, x.measure, x.budget, x.used
        FROM api_keys k JOIN llm_key_usage_months u ON u.tenant_id = k.tenant_id AND u.api_key_id = k.id AND u.month = (SELECT m FROM month)
        CROSS JOIN LATERAL (VALUES ('cents', k.budget_cents_per_month::numeric, u.cost_cents), ('tokens', k.tokens_per_month::numeric, u.tokens::numeric)) AS x(measure, budget, used)
        WHERE k.revoked_at IS NULL
    ),
    reached AS (
        SELECT b.*, CASE WHEN b.used >= b.budget THEN 100 ELSE 80 END AS threshold
        FROM budgets b WHERE b.budget > 0 AND b.used >= b.budget * 0.8
    )
    SELECT r.tenant_id, r.subject_type, r.subject_id, r.name, r.measure, (SELECT m FROM month), r.budget, r.used, r.threshold
    FROM reached r
    WHERE NOT EXISTS (SELECT FROM budget_alerts a WHERE a.tenant_id = r.tenant_id AND a.subject_type = r.subject_type
                        AND a.subject_id = r.subject_id AND a.measure = r.measure AND a.month = (SELECT m FROM month)
                        AND a.threshold >= r.threshold)
    ORDER BY r.tenant_id, r.subject_id
    LIMIT take
$$;

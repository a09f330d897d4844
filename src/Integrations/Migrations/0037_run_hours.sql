-- Summaries by run (issue 15): llm_usage_run_hours keeps a run's hour apart per integration, model and key, so when a
-- run changes model or key from request to request it hardly rolls up (the benchmark's 10 M rows made 9.3 M of its
-- cells, and one tenant's by-run summary hash-aggregated ~9,300 of them). llm_run_hours keeps one cell per run and
-- hour. A by-run summary with no integration, model or key in its filters or groupings reads it; one with them reads
-- llm_usage_run_hours, which stays (as does the cost anomaly evidence's top runs, filtered by integration or key).
CREATE TABLE llm_run_hours (
    tenant_id          text NOT NULL,
    hour               timestamptz NOT NULL,
    run_id             text NOT NULL,
    requests           bigint NOT NULL DEFAULT 0,
    errors             bigint NOT NULL DEFAULT 0,
    denied             bigint NOT NULL DEFAULT 0,
    prompt_tokens      bigint NOT NULL DEFAULT 0,
    completion_tokens  bigint NOT NULL DEFAULT 0,
    cost_cents         numeric(18, 6) NOT NULL DEFAULT 0,
    latency            bigint[] NOT NULL,
    -- The hour before the run: every summary has a range, so a tenant's by-run summary reads only the range's cells
    -- (a single run's reads the range's cells of every run, which the range bounds).
    PRIMARY KEY (tenant_id, hour, run_id)
);
SELECT enable_tenant_isolation('llm_run_hours');

-- Until the migration commits, usage writes run the old trigger (which knows nothing of llm_run_hours); holding them
-- off makes the tenants listed below exactly those with run cells the new rollup lacks.
LOCK TABLE llm_requests IN SHARE MODE;

-- Tenants whose llm_run_hours is not complete yet. Filling it here would hold usage writes off for as long as reading
-- the whole run rollup takes (minutes at millions of cells), in one transaction; the job spend.run_hours_backfill
-- fills it a few tenants a transaction instead, and until a tenant's turn its by-run summaries read
-- llm_usage_run_hours.
CREATE TABLE llm_run_hours_pending (tenant_id text PRIMARY KEY);
SELECT enable_tenant_isolation('llm_run_hours_pending', 'SELECT');

-- One probe of the run rollup's key per tenant (a loose index scan), not a read of every cell.
INSERT INTO llm_run_hours_pending (tenant_id)
WITH RECURSIVE t AS (
    (SELECT tenant_id FROM llm_usage_run_hours ORDER BY tenant_id LIMIT 1)
    UNION ALL
    SELECT (SELECT r.tenant_id FROM llm_usage_run_hours r WHERE r.tenant_id > t.tenant_id ORDER BY r.tenant_id LIMIT 1)
    FROM t WHERE t.tenant_id IS NOT NULL
)
SELECT tenant_id FROM t WHERE tenant_id IS NOT NULL;

-- As migration 0030's, and the run's cells also go to llm_run_hours. While a tenant is pending, its writes take a
-- shared lock on it before any rollup (held to their commit), so its backfill batch, holding the lock exclusively, sees
-- each write whole in llm_usage_run_hours or not at all, and only that tenant's writes wait for the batch. Once none is
-- pending (the table is empty for good), the check is one probe of an empty index.
CREATE OR REPLACE FUNCTION llm_usage_rollup() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT FROM llm_run_hours_pending) THEN
        PERFORM pg_advisory_xact_lock_shared(37, hashtext(tenant_id))
        FROM (SELECT DISTINCT tenant_id FROM added WHERE tenant_id IN (SELECT tenant_id FROM llm_run_hours_pending) ORDER BY 1) pending;
    END IF;

    INSERT INTO llm_usage_months AS u (tenant_id, integration_id, month, requests, tokens, cost_cents)
    SELECT tenant_id, integration_id, date_trunc('month', started_at AT TIME ZONE 'UTC')::date AS m, count(*),
           sum(prompt_tokens + completion_tokens), COALESCE(sum(cost_cents), 0)
    FROM added WHERE integration_id IS NOT NULL AND status <> 'denied'
    GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (tenant_id, integration_id, month) DO UPDATE
        SET requests = u.requests + EXCLUDED.requests, tokens = u.tokens + EXCLUDED.tokens, cost_cents = u.cost_cents + EXCLUDED.cost_cents;

    INSERT INTO llm_key_usage_months AS u (tenant_id, api_key_id, month, requests, tokens, cost_cents)
    SELECT tenant_id, api_key_id, date_trunc('month', started_at AT TIME ZONE 'UTC')::date AS m, count(*),
           sum(prompt_tokens + completion_tokens), COALESCE(sum(cost_cents), 0)
    FROM added WHERE api_key_id IS NOT NULL AND status <> 'denied'
    GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (tenant_id, api_key_id, month) DO UPDATE
        SET requests = u.requests + EXCLUDED.requests, tokens = u.tokens + EXCLUDED.tokens, cost_cents = u.cost_cents + EXCLUDED.cost_cents;

    -- The added rows' cells (with the run) once; the three hour rollups are written from them in one statement.
    WITH cells AS (
        SELECT tenant_id, date_trunc('hour', started_at) AS hour, integration_id, COALESCE(served_model, requested_model) AS model,
               api_key_id, run_id, count(*) AS requests, count(*) FILTER (WHERE status IN ('failed', 'timeout')) AS errors,
               count(*) FILTER (WHERE status = 'denied') AS denied, sum(prompt_tokens) AS prompt_tokens,
               sum(completion_tokens) AS completion_tokens, COALESCE(sum(cost_cents), 0) AS cost_cents,
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
    ), run_cells AS (
        INSERT INTO llm_usage_run_hours AS u (tenant_id, hour, integration_id, model, api_key_id, run_id, requests, errors, denied,
                                              prompt_tokens, completion_tokens, cost_cents, latency)
        SELECT tenant_id, hour, integration_id, model, api_key_id, run_id, requests, errors, denied, prompt_tokens,
               completion_tokens, cost_cents, latency
        FROM cells WHERE run_id IS NOT NULL
        ORDER BY tenant_id, run_id, hour, integration_id, model, api_key_id
        ON CONFLICT (tenant_id, run_id, hour, integration_id, model, api_key_id) DO UPDATE
            SET requests = u.requests + EXCLUDED.requests, errors = u.errors + EXCLUDED.errors, denied = u.denied + EXCLUDED.denied,
                prompt_tokens = u.prompt_tokens + EXCLUDED.prompt_tokens, completion_tokens = u.completion_tokens + EXCLUDED.completion_tokens,
                cost_cents = u.cost_cents + EXCLUDED.cost_cents, latency = llm_latency_add(u.latency, EXCLUDED.latency)
        RETURNING 1
    )
    INSERT INTO llm_run_hours AS u (tenant_id, hour, run_id, requests, errors, denied, prompt_tokens, completion_tokens, cost_cents, latency)
    SELECT tenant_id, hour, run_id, sum(requests), sum(errors), sum(denied), sum(prompt_tokens), sum(completion_tokens), sum(cost_cents),
           ARRAY[sum(latency[1]), sum(latency[2]), sum(latency[3]), sum(latency[4]), sum(latency[5]), sum(latency[6]),
                 sum(latency[7]), sum(latency[8]), sum(latency[9]), sum(latency[10]), sum(latency[11]), sum(latency[12]),
                 sum(latency[13]), sum(latency[14]), sum(latency[15])]::bigint[]
    FROM cells WHERE run_id IS NOT NULL
    GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (tenant_id, hour, run_id) DO UPDATE
        SET requests = u.requests + EXCLUDED.requests, errors = u.errors + EXCLUDED.errors, denied = u.denied + EXCLUDED.denied,
            prompt_tokens = u.prompt_tokens + EXCLUDED.prompt_tokens, completion_tokens = u.completion_tokens + EXCLUDED.completion_tokens,
            cost_cents = u.cost_cents + EXCLUDED.cost_cents, latency = llm_latency_add(u.latency, EXCLUDED.latency);
    RETURN NULL;
END $$;

-- One batch of the backfill: up to `take` pending tenants' llm_run_hours recomputed from llm_usage_run_hours, in this
-- transaction; answers how many tenants it completed. Recomputed, not added: a pending tenant's cells written since
-- the migration are in both rollups already. The tenant's lock (exclusive here, shared by its writes: see
-- llm_usage_rollup) waits for the writes in flight and holds the next ones off until the batch commits; a tenant's
-- write slow to finish costs the batch its turn (lock_timeout), not the writes queued behind it a wait. A table lock on
-- llm_requests would do it for every tenant at once, but it also conflicts with autovacuum there.
CREATE FUNCTION llm_run_hours_backfill(take int) RETURNS int
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public SET lock_timeout = '2s' AS $$
DECLARE
    tenants text[];
BEGIN
    SELECT array_agg(tenant_id ORDER BY tenant_id) INTO tenants
    FROM (SELECT tenant_id FROM llm_run_hours_pending ORDER BY tenant_id LIMIT take FOR UPDATE SKIP LOCKED) p;
    IF tenants IS NULL THEN
        RETURN 0;
    END IF;
    PERFORM pg_advisory_xact_lock(37, hashtext(t)) FROM unnest(tenants) AS t ORDER BY t;
    DELETE FROM llm_run_hours WHERE tenant_id = ANY (tenants);
    INSERT INTO llm_run_hours (tenant_id, hour, run_id, requests, errors, denied, prompt_tokens, completion_tokens, cost_cents, latency)
    SELECT tenant_id, hour, run_id, sum(requests), sum(errors), sum(denied), sum(prompt_tokens), sum(completion_tokens), sum(cost_cents),
           ARRAY[sum(latency[1]), sum(latency[2]), sum(latency[3]), sum(latency[4]), sum(latency[5]), sum(latency[6]),
                 sum(latency[7]), sum(latency[8]), sum(latency[9]), sum(latency[10]), sum(latency[11]), sum(latency[12]),
                 sum(latency[13]), sum(latency[14]), sum(latency[15])]::bigint[]
    FROM llm_usage_run_hours WHERE tenant_id = ANY (tenants)
    GROUP BY 1, 2, 3;
    DELETE FROM llm_run_hours_pending WHERE tenant_id = ANY (tenants);
    RETURN cardinality(tenants);
END $$;
REVOKE ALL ON FUNCTION llm_run_hours_backfill(int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm_run_hours_backfill(int) TO integrations_app;

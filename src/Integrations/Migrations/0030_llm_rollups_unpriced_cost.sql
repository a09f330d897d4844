-- Migrations 0024 (spend: one statement-level rollup trigger in place of the per-row llm_usage_add) and 0026 (a model
-- with no price leaves cost_cents null, and re-created llm_usage_add with a COALESCE) were written side by side: the
-- rollups summed a null cost into their NOT NULL columns, and llm_usage_add was left with no trigger. An unknown cost
-- adds nothing to any rollup's cents (its tokens still count), and the orphan function goes.
DROP FUNCTION IF EXISTS llm_usage_add();

CREATE OR REPLACE FUNCTION llm_usage_rollup() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
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

    -- The added rows' cells (with the run) once; both hour rollups are written from them in one statement.
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

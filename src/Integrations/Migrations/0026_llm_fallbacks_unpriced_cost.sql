-- LLM gateway: fallback integrations, tried in order when an integration's call fails before the first byte reached the
-- client (entries '<integration name>' or '<integration name>/<model>'); each attempt is its own governed call and its
-- own usage row, which names the first call it falls back from.
ALTER TABLE cus_integrations ADD COLUMN fallbacks text[] NOT NULL DEFAULT '{}';
ALTER TABLE llm_requests ADD COLUMN fallback_of uuid;

-- A model with no price has no known cost: its rows say null rather than 0, and add nothing to the month's cents.
ALTER TABLE llm_requests ALTER COLUMN cost_cents DROP NOT NULL, ALTER COLUMN cost_cents DROP DEFAULT;

CREATE OR REPLACE FUNCTION llm_usage_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.integration_id IS NULL OR NEW.status = 'denied' THEN
        RETURN NULL;
    END IF;
    INSERT INTO llm_usage_months AS u (tenant_id, integration_id, month, requests, tokens, cost_cents)
    VALUES (NEW.tenant_id, NEW.integration_id, date_trunc('month', NEW.started_at AT TIME ZONE 'UTC')::date, 1,
            NEW.prompt_tokens + NEW.completion_tokens, COALESCE(NEW.cost_cents, 0))
    ON CONFLICT (tenant_id, integration_id, month) DO UPDATE
        SET requests = u.requests + 1, tokens = u.tokens + EXCLUDED.tokens, cost_cents = u.cost_cents + EXCLUDED.cost_cents;
    RETURN NULL;
END $$;

-- An integration whose health checks keep failing moves to status 'error' (Integrations:Health:FailuresBeforeError
-- consecutive failing checks) and back to 'enabled' on its next healthy check; health_failures counts the run.
ALTER TABLE cus_integrations ADD COLUMN health_failures integer NOT NULL DEFAULT 0 CHECK (health_failures >= 0);

-- The sweep checks integrations in 'error' too: only a check can bring them back.
CREATE OR REPLACE FUNCTION enabled_integrations_after(after uuid, take int)
RETURNS TABLE (tenant_id text, id uuid)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
    SELECT i.tenant_id, i.id FROM cus_integrations i
    WHERE i.status IN ('enabled', 'error') AND i.deleted_at IS NULL AND i.id > after ORDER BY i.id LIMIT take
$$;

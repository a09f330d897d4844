-- The SQL gateway checks every function a template calls against its allow-list (FunctionAllowList).
-- guard_version: the version of those rules a template last passed (0: defined before them); templates below the
-- current version are checked again on start-up and cannot run until they pass. disabled_reason: why the check
-- disabled one (it cannot be enabled again; it must be defined anew).
ALTER TABLE datasource_queries ADD COLUMN guard_version integer NOT NULL DEFAULT 0;
ALTER TABLE datasource_queries ADD COLUMN disabled_reason text;
CREATE INDEX datasource_queries_unchecked ON datasource_queries (guard_version) WHERE deleted_at IS NULL;

-- Functions of installed extensions (schema.function) a datasource lets its templates call besides the built-ins.
ALTER TABLE datasources ADD COLUMN allowed_functions text[] NOT NULL DEFAULT '{}';

-- The start-up check lists, across tenants, the templates below the current rules (the service's role sees one tenant
-- at a time); each is then checked as a system caller of its own tenant.
CREATE FUNCTION datasource_queries_to_recheck(rules_version int, take int)
RETURNS TABLE (tenant_id text, id uuid, datasource_id uuid, name text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
    SELECT q.tenant_id, q.id, q.datasource_id, q.name FROM datasource_queries q
    JOIN datasources d ON d.tenant_id = q.tenant_id AND d.id = q.datasource_id AND d.deleted_at IS NULL
    WHERE q.deleted_at IS NULL AND q.guard_version < rules_version
    ORDER BY q.created_at, q.id
    LIMIT take
$$;
REVOKE EXECUTE ON FUNCTION datasource_queries_to_recheck(int, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION datasource_queries_to_recheck(int, int) TO integrations_app;

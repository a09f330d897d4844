-- API keys over HTTP: a tenant's admin creates, lists and revokes its own keys through its tenant session
-- (row-level security keeps it to its own rows); keys may expire; when a key was last used is recorded in batches.
ALTER TABLE api_keys ADD COLUMN expires_at timestamptz, ADD COLUMN last_used_at timestamptz;
CREATE INDEX api_keys_tenant_created ON api_keys (tenant_id, created_at DESC, id DESC);
GRANT INSERT ON api_keys TO integrations_app;
GRANT UPDATE (revoked_at) ON api_keys TO integrations_app;

-- Replicas drop their cached copy of a key only when what authenticates it changes, not on every last-used update.
DROP TRIGGER api_keys_changed ON api_keys;
CREATE TRIGGER api_keys_changed AFTER UPDATE OF revoked_at, expires_at, scopes, key_hash, tenant_id OR DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION notify_api_key_change();

-- The last-used times a replica collected, written for every tenant at once (no tenant session): one statement
-- per flush, never a write per request. It can only move last_used_at forward.
CREATE FUNCTION api_keys_touch(ids uuid[], used timestamptz[]) RETURNS integer
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    WITH touched AS (
        UPDATE api_keys k SET last_used_at = t.used
        FROM unnest(ids, used) AS t(id, used)
        WHERE k.id = t.id AND (k.last_used_at IS NULL OR k.last_used_at < t.used)
        RETURNING 1)
    SELECT count(*)::integer FROM touched
$$;
REVOKE ALL ON FUNCTION api_keys_touch(uuid[], timestamptz[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION api_keys_touch(uuid[], timestamptz[]) TO integrations_app;

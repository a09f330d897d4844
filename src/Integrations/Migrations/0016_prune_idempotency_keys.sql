-- Drops every tenant's idempotency keys created before now() - older_than; answers how many (ExpiredRowsPruning).
CREATE FUNCTION prune_idempotency_keys(older_than interval)
RETURNS int
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public AS $$
    WITH dropped AS (DELETE FROM idempotency_keys WHERE created_at < now() - older_than RETURNING 1)
    SELECT count(*)::int FROM dropped
$$;
REVOKE EXECUTE ON FUNCTION prune_idempotency_keys(interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION prune_idempotency_keys(interval) TO integrations_app;

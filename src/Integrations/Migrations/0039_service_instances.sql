-- Only a call in flight when its process died (or lost its database) can be left 'started' without an outcome, so
-- outcome recovery sweeps only the last stretch of processes that are gone, not a week of history at every start-up.
-- Each process registers here and keeps last_seen fresh; swept_at is set once its window has been swept or it
-- stopped cleanly. Processes, not tenant data: no tenant_id, no row-level security.
CREATE TABLE service_instances (
    id         uuid PRIMARY KEY,
    started_at timestamptz NOT NULL,
    last_seen  timestamptz NOT NULL,
    swept_at   timestamptz,
    CHECK (last_seen >= started_at)
);
CREATE INDEX service_instances_unswept ON service_instances (last_seen) WHERE swept_at IS NULL;
GRANT SELECT, INSERT, UPDATE, DELETE ON service_instances TO integrations_app;

DROP FUNCTION unclosed_governed_calls(interval, interval, int);

-- The next `take` governed calls of every tenant that started in [since, until] and have no outcome, after the given
-- position, in (occurred_at, tenant_id, seq) order. The starts of the whole window come from the partial index
-- audit_events_started; the outcomes once, for each subject of the window, from its first start on (the subject index);
-- the two meet in one hash anti-join, so a window costs its starts plus its subjects' later outcomes, once, however
-- many pages its unclosed calls fill. A probe per start (0015) is quadratic for a busy subject whenever the planner
-- walks the subject's later events for each one; reading the outcomes again for every page of starts is quadratic in
-- the window. Nested loops are off so no statistics can turn the anti-join into one (the lateral read of each
-- subject's outcomes stays a loop: it has no other plan); a hash join that outgrows work_mem spills, it does not loop.
-- Details are read for the returned rows only.
CREATE FUNCTION unclosed_governed_calls(since timestamptz, until timestamptz, after_occurred timestamptz, after_tenant text,
                                        after_seq bigint, take int)
RETURNS TABLE (occurred_at timestamptz, tenant_id text, seq bigint, correlation_id text, action text,
               subject_type text, subject_id text, details text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public SET work_mem = '64MB' SET enable_nestloop = off AS $$
    WITH started AS MATERIALIZED (
        SELECT s.occurred_at, s.tenant_id, s.seq, s.correlation_id, s.subject_type, s.subject_id
        FROM audit_events s
        WHERE s.action LIKE '%.started' AND s.occurred_at >= since AND s.occurred_at <= until
          AND (s.occurred_at, s.tenant_id, s.seq) > (after_occurred, after_tenant, after_seq)
          AND s.correlation_id IS NOT NULL),
    subjects AS (
        SELECT p.tenant_id, p.subject_type, p.subject_id, min(p.seq) AS first_seq
        FROM started p
        GROUP BY p.tenant_id, p.subject_type, p.subject_id),
    outcomes AS MATERIALIZED (
        SELECT e.tenant_id, e.subject_type, e.subject_id, e.correlation_id
        FROM subjects j
        JOIN LATERAL (
            SELECT o.tenant_id, o.subject_type, o.subject_id, o.correlation_id FROM audit_events o
            WHERE o.tenant_id = j.tenant_id AND o.subject_type = j.subject_type AND o.subject_id = j.subject_id
              AND o.seq > j.first_seq AND (o.action LIKE '%.completed' OR o.action LIKE '%.failed')
              AND o.correlation_id IS NOT NULL) AS e ON true),
    unclosed AS (
        SELECT p.occurred_at, p.tenant_id, p.seq
        FROM started p
        WHERE NOT EXISTS (
            SELECT FROM outcomes o
            WHERE o.tenant_id = p.tenant_id AND o.subject_type = p.subject_type AND o.subject_id = p.subject_id
              AND o.correlation_id = p.correlation_id)
        ORDER BY p.occurred_at, p.tenant_id, p.seq
        LIMIT take)
    SELECT u.occurred_at, u.tenant_id, u.seq, a.correlation_id, a.action, a.subject_type, a.subject_id, a.details::text
    FROM unclosed u JOIN audit_events a ON a.tenant_id = u.tenant_id AND a.seq = u.seq
    ORDER BY u.occurred_at, u.tenant_id, u.seq
$$;

REVOKE EXECUTE ON FUNCTION unclosed_governed_calls(timestamptz, timestamptz, timestamptz, text, bigint, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION unclosed_governed_calls(timestamptz, timestamptz, timestamptz, text, bigint, int) TO integrations_app;

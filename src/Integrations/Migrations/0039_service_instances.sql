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

-- A page of the governed calls of every tenant that started in [since, until]: the next `take` started events after
-- the given position, in (occurred_at, tenant_id, seq) order, each saying whether it has no outcome. The range comes
-- from the partial index audit_events_started. The outcomes are read once per page: for each subject of the page, its
-- outcome events from the page's first start on (the subject index), as one hashed set each start is looked up in.
-- A probe per start (0015) is quadratic for a busy subject whenever the planner walks the subject's later events for
-- each one, as it does on some statistics; a join of the two sets can turn into a nested loop on stale statistics.
-- The uncorrelated NOT IN is hashed whatever the statistics, as long as the set fits work_mem, hence its setting.
CREATE FUNCTION unclosed_governed_calls(since timestamptz, until timestamptz, after_occurred timestamptz, after_tenant text,
                                        after_seq bigint, take int)
RETURNS TABLE (occurred_at timestamptz, tenant_id text, seq bigint, unclosed boolean, correlation_id text, action text,
               subject_type text, subject_id text, details text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public SET work_mem = '64MB' AS $$
    WITH page AS MATERIALIZED (
        SELECT s.occurred_at, s.tenant_id, s.seq, s.correlation_id, s.action, s.subject_type, s.subject_id, s.details
        FROM audit_events s
        WHERE s.action LIKE '%.started' AND s.occurred_at >= since AND s.occurred_at <= until
          AND (s.occurred_at, s.tenant_id, s.seq) > (after_occurred, after_tenant, after_seq)
          AND s.correlation_id IS NOT NULL
        ORDER BY s.occurred_at, s.tenant_id, s.seq
        LIMIT take),
    subjects AS (
        SELECT p.tenant_id, p.subject_type, p.subject_id, min(p.seq) AS first_seq
        FROM page p
        GROUP BY p.tenant_id, p.subject_type, p.subject_id),
    outcomes AS (
        SELECT e.tenant_id, e.subject_type, e.subject_id, e.correlation_id
        FROM subjects j
        JOIN LATERAL (
            SELECT o.tenant_id, o.subject_type, o.subject_id, o.correlation_id FROM audit_events o
            WHERE o.tenant_id = j.tenant_id AND o.subject_type = j.subject_type AND o.subject_id = j.subject_id
              AND o.seq > j.first_seq AND (o.action LIKE '%.completed' OR o.action LIKE '%.failed')
              AND o.correlation_id IS NOT NULL) AS e ON true)
    SELECT p.occurred_at, p.tenant_id, p.seq,
           (p.tenant_id, p.subject_type, p.subject_id, p.correlation_id) NOT IN (SELECT * FROM outcomes),
           p.correlation_id, p.action, p.subject_type, p.subject_id, p.details::text
    FROM page p
    ORDER BY p.occurred_at, p.tenant_id, p.seq
$$;

REVOKE EXECUTE ON FUNCTION unclosed_governed_calls(timestamptz, timestamptz, timestamptz, text, bigint, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION unclosed_governed_calls(timestamptz, timestamptz, timestamptz, text, bigint, int) TO integrations_app;

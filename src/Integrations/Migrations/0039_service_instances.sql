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

-- Governed calls of every tenant that started in [since, until] and have no outcome, in (occurred_at, tenant_id, seq)
-- order after the given position (a page). The range comes from the partial index audit_events_started; the probe for
-- an outcome walks the subject's events forward from the start (an outcome follows its start closely), so it stops at
-- the first match instead of scanning every later event of a busy subject.
CREATE FUNCTION unclosed_governed_calls(since timestamptz, until timestamptz, after_occurred timestamptz, after_tenant text,
                                        after_seq bigint, take int)
RETURNS TABLE (occurred_at timestamptz, tenant_id text, seq bigint, correlation_id text, action text, subject_type text,
               subject_id text, details text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
    SELECT s.occurred_at, s.tenant_id, s.seq, s.correlation_id, s.action, s.subject_type, s.subject_id, s.details::text
    FROM audit_events s
    WHERE s.action LIKE '%.started' AND s.occurred_at >= since AND s.occurred_at <= until
      AND (s.occurred_at, s.tenant_id, s.seq) > (after_occurred, after_tenant, after_seq)
      AND s.correlation_id IS NOT NULL
      AND NOT EXISTS (
          SELECT FROM (
              SELECT FROM audit_events o
              WHERE o.tenant_id = s.tenant_id AND o.subject_type = s.subject_type AND o.subject_id = s.subject_id
                AND o.seq > s.seq AND o.correlation_id = s.correlation_id
                AND (o.action LIKE '%.completed' OR o.action LIKE '%.failed')
              ORDER BY o.seq
              LIMIT 1) AS outcome)
    ORDER BY s.occurred_at, s.tenant_id, s.seq
    LIMIT take
$$;

REVOKE EXECUTE ON FUNCTION unclosed_governed_calls(timestamptz, timestamptz, timestamptz, text, bigint, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION unclosed_governed_calls(timestamptz, timestamptz, timestamptz, text, bigint, int) TO integrations_app;

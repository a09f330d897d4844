-- Cost anomalies (issue 15 item 5): a job compares each integration's and each API key's spend in the last complete
-- hour with the same UTC hour of the days before, from the hour rollups, and opens a cost_anomaly incident with the
-- evidence.

-- What an incident was opened on, for the kinds that have more to show than a sentence (a cost anomaly's observed and
-- expected spend, its baseline, top models and runs). Null for the others.
ALTER TABLE incidents ADD COLUMN evidence jsonb;

-- The job reads a handful of hours across every tenant; the rollup's key leads with the tenant.
CREATE INDEX llm_usage_hours_by_hour ON llm_usage_hours (hour);

-- Each subject's anomalous hour, once: a later pass over the same hour (every pass re-judges the last complete hour,
-- so late-reported usage counts) neither opens nor bumps a second time, on any replica.
CREATE TABLE cost_anomalies (
    tenant_id       text NOT NULL,
    subject_type    text NOT NULL CHECK (subject_type IN ('integration', 'api_key')),
    subject_id      uuid NOT NULL,
    hour            timestamptz NOT NULL,
    observed_cents  numeric(18, 6) NOT NULL,
    expected_cents  numeric(18, 6) NOT NULL,
    incident_id     uuid,
    detected_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, subject_type, subject_id, hour)
);
SELECT enable_tenant_isolation('cost_anomalies', 'SELECT, INSERT, UPDATE');

-- Every tenant's integrations (not deleted) and API keys whose spend in [at_hour, at_hour + 1 h) is at least
-- min_ratio × the median of the same hour on each of the baseline_days days before (a day without spend counts as 0)
-- and exceeds it by at least min_excess_cents, not yet recorded in cost_anomalies. The service's role sees one tenant
-- at a time, so the sweep across tenants is this function's.
CREATE FUNCTION cost_anomaly_candidates(at_hour timestamptz, baseline_days int, min_ratio numeric, min_excess_cents numeric, take int)
RETURNS TABLE (tenant_id text, subject_type text, subject_id uuid, name text, observed_cents numeric, expected_cents numeric,
               baseline_cents numeric[])
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
    -- The hours as an array, so the scan is an index condition on llm_usage_hours (hour); 24 hours, not '1 day', so the
    -- session's time zone cannot shift the hour across a daylight-saving change.
    WITH spend AS (
        SELECT h.tenant_id, s.subject_type, s.subject_id, (extract(epoch FROM at_hour - h.hour) / 86400)::int AS d, sum(h.cost_cents) AS cents
        FROM llm_usage_hours h
        CROSS JOIN LATERAL (VALUES ('integration', h.integration_id), ('api_key', h.api_key_id)) AS s(subject_type, subject_id)
        WHERE h.hour = ANY (ARRAY(SELECT at_hour - d * interval '24 hours' FROM generate_series(0, baseline_days) AS d))
          AND s.subject_id IS NOT NULL
        GROUP BY 1, 2, 3, 4
    ),
    -- Only a subject whose hour exceeds the minimum excess can be an anomaly (the expected is never negative).
    spending AS (
        SELECT tenant_id, subject_type, subject_id, sum(cents) FILTER (WHERE d = 0) AS observed,
               array_agg(d ORDER BY d) FILTER (WHERE d > 0) AS days, array_agg(cents ORDER BY d) FILTER (WHERE d > 0) AS cents
        FROM spend GROUP BY 1, 2, 3
        HAVING sum(cents) FILTER (WHERE d = 0) > 0 AND sum(cents) FILTER (WHERE d = 0) >= min_excess_cents
    ),
    judged AS (
        SELECT o.tenant_id, o.subject_type, o.subject_id, o.observed, b.baseline, b.expected::numeric AS expected
        FROM spending o
        CROSS JOIN LATERAL (
            SELECT array_agg(COALESCE(x.cents, 0) ORDER BY g.d) AS baseline,
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY COALESCE(x.cents, 0)) AS expected
            FROM generate_series(1, baseline_days) AS g(d)
            LEFT JOIN unnest(o.days, o.cents) AS x(d, cents) ON x.d = g.d
        ) b
    )
    SELECT j.tenant_id, j.subject_type, j.subject_id, COALESCE(i.name, k.name), j.observed, j.expected, j.baseline
    FROM judged j
    LEFT JOIN cus_integrations i ON j.subject_type = 'integration' AND i.tenant_id = j.tenant_id AND i.id = j.subject_id
    LEFT JOIN api_keys k ON j.subject_type = 'api_key' AND k.tenant_id = j.tenant_id AND k.id = j.subject_id
    WHERE j.observed >= min_ratio * j.expected
      AND j.observed - j.expected >= min_excess_cents
      AND (i.id IS NOT NULL AND i.deleted_at IS NULL OR k.id IS NOT NULL)
      AND NOT EXISTS (SELECT FROM cost_anomalies a WHERE a.tenant_id = j.tenant_id AND a.subject_type = j.subject_type
                        AND a.subject_id = j.subject_id AND a.hour = at_hour)
    ORDER BY j.tenant_id, j.subject_type, j.subject_id
    LIMIT take
$$;
REVOKE ALL ON FUNCTION cost_anomaly_candidates(timestamptz, int, numeric, numeric, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cost_anomaly_candidates(timestamptz, int, numeric, numeric, int) TO integrations_app;

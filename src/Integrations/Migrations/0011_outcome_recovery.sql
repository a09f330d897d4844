-- A governed call whose outcome was never recorded (the process ended or lost its database mid-call) is closed as
-- 'unknown' on start-up and opens a 'call_unknown' incident; the partial index finds 'started' events by age.
ALTER TABLE incidents DROP CONSTRAINT incidents_kind_check;
ALTER TABLE incidents ADD CONSTRAINT incidents_kind_check
    CHECK (kind IN ('tool_failure', 'health_failure', 'cost_anomaly', 'call_unknown'));
CREATE INDEX audit_events_started ON audit_events (occurred_at) WHERE action LIKE '%.started';

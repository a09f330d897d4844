-- A failed connector action opens an incident of its own kind, so notification rules and filters can tell it from a
-- failed MCP tool call; those opened as tool_failure before this (open or not) move to it.
ALTER TABLE incidents DROP CONSTRAINT incidents_kind_check;
ALTER TABLE incidents ADD CONSTRAINT incidents_kind_check
    CHECK (kind IN ('tool_failure', 'health_failure', 'cost_anomaly', 'call_unknown', 'llm_failure', 'budget_threshold',
                    'connector_failure'));

UPDATE incidents SET kind = 'connector_failure'
WHERE kind = 'tool_failure' AND subject_type = 'connection_action';

-- One immutable row per governed tool call, denied ones included.
CREATE TABLE mcp_tool_invocations (
    id               uuid PRIMARY KEY,
    tenant_id        text NOT NULL,
    server_id        uuid NOT NULL,
    tool_id          uuid NOT NULL,
    tool_name        text NOT NULL,
    run_id           text,
    caller           text NOT NULL,
    input_hash       text NOT NULL,
    output_hash      text,
    outcome          text NOT NULL CHECK (outcome IN ('completed', 'tool_error', 'failed', 'timeout', 'denied')),
    decision_reason  text,
    error            text,
    duration_ms      double precision NOT NULL DEFAULT 0,
    started_at       timestamptz NOT NULL,
    finished_at      timestamptz NOT NULL,
    incident_id      uuid
);
CREATE INDEX mcp_tool_invocations_server ON mcp_tool_invocations (tenant_id, server_id, id DESC);
CREATE INDEX mcp_tool_invocations_run ON mcp_tool_invocations (tenant_id, run_id) WHERE run_id IS NOT NULL;
SELECT enable_tenant_isolation('mcp_tool_invocations', 'SELECT, INSERT');
SELECT make_append_only('mcp_tool_invocations');

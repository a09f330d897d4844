-- The console's sign-ins, so that signing out ends a session on the server: the cookie names a session (sealed), and a
-- session that was ended, or has expired, no longer stands for its key even if a copy of the cookie is replayed.
-- Sessions are looked up before any tenant is known (like API keys): the service's role reaches the table only
-- through these functions, each doing one thing.
CREATE TABLE console_sessions (
    id uuid PRIMARY KEY,
    api_key_id uuid NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    ended_at timestamptz
);
CREATE INDEX console_sessions_expires ON console_sessions (expires_at);
CREATE INDEX console_sessions_api_key ON console_sessions (api_key_id);
ALTER TABLE console_sessions ENABLE ROW LEVEL SECURITY;

-- A new session for a key just proven; sessions expired for a day are swept here, so the table holds only live ones.
CREATE FUNCTION console_session_start(session_id uuid, key_id uuid, expires timestamptz) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    DELETE FROM console_sessions WHERE expires_at < now() - interval '1 day';
    INSERT INTO console_sessions (id, api_key_id, expires_at) VALUES (session_id, key_id, expires);
$$;

-- The key a live session stands for; nothing when the session is unknown, ended or expired.
CREATE FUNCTION console_session_key(session_id uuid) RETURNS uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    SELECT api_key_id FROM console_sessions WHERE id = session_id AND ended_at IS NULL AND expires_at > now()
$$;

CREATE FUNCTION console_session_end(session_id uuid) RETURNS boolean
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    WITH ended AS (UPDATE console_sessions SET ended_at = now() WHERE id = session_id AND ended_at IS NULL RETURNING 1)
    SELECT EXISTS (SELECT 1 FROM ended)
$$;

REVOKE ALL ON FUNCTION console_session_start(uuid, uuid, timestamptz), console_session_key(uuid), console_session_end(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION console_session_start(uuid, uuid, timestamptz), console_session_key(uuid), console_session_end(uuid)
    TO integrations_app;

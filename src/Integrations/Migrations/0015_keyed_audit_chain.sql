-- A keyed audit chain. The service computes an HMAC-SHA256 over each event's content (tenant, event id, time, actor,
-- action, subject, correlation, canonical details) with a key derived from the vault's master key, which the database
-- never sees, and passes it to audit_append with the event id and time it covered. The chain still links the events
-- here, and each event's hash now covers its MAC and key id, so whoever owns these tables can still recompute hashes
-- but cannot make a MAC for content they changed. Events written before this migration have no MAC (NULL) and keep
-- the hash they had.
ALTER TABLE audit_events
    ADD COLUMN event_id uuid,
    ADD COLUMN key_id   text,
    ADD COLUMN mac      bytea;

-- The hash of an event that carries a MAC: what audit_event_hash covers, then its id, key id and MAC.
CREATE FUNCTION audit_event_hash(
    prev bytea, tenant text, seq bigint, occurred timestamptz, actor text, action text,
    subject_type text, subject_id text, correlation text, details jsonb, event_id uuid, key_id text, mac bytea)
RETURNS bytea LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN mac IS NULL
        THEN audit_event_hash(prev, tenant, seq, occurred, actor, action, subject_type, subject_id, correlation, details)
        ELSE sha256(prev || convert_to(concat_ws(chr(31),
            tenant, seq::text, to_char(occurred AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'),
            actor, action, subject_type, subject_id, coalesce(correlation, ''), details::text,
            event_id::text, key_id, encode(mac, 'hex')), 'UTF8'))
    END
$$;

DROP FUNCTION audit_append(text, text[], text[], text[], text[], text[], jsonb[]);

-- As in 0010, plus per event the id, the time and the MAC the service computed and the id of the key it used.
CREATE FUNCTION audit_append(
    tenant text, actors text[], correlations text[],
    actions text[], subject_types text[], subject_ids text[], details_list jsonb[],
    event_ids uuid[], occurred_list timestamptz[], key_ids text[], macs bytea[])
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    seq_before bigint;
    hash_before bytea;
    chained bytea;
    hashes bytea[] := '{}';
    prevs bytea[] := '{}';
    n int := cardinality(actions);
BEGIN
    IF n IS NULL OR n = 0 THEN
        RETURN;
    END IF;
    IF cardinality(actors) <> n OR cardinality(correlations) <> n OR cardinality(subject_types) <> n
       OR cardinality(subject_ids) <> n OR cardinality(details_list) <> n OR cardinality(event_ids) <> n
       OR cardinality(occurred_list) <> n OR cardinality(key_ids) <> n OR cardinality(macs) <> n THEN
        RAISE EXCEPTION 'audit_append: every array must have one element per event' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF array_position(key_ids, NULL) IS NOT NULL OR array_position(macs, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'audit_append: every event needs a MAC and a key id' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT h.last_seq, h.last_hash INTO seq_before, hash_before FROM audit_chain_heads h WHERE h.tenant_id = tenant FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO audit_chain_heads (tenant_id) VALUES (tenant) ON CONFLICT (tenant_id) DO NOTHING;
        SELECT h.last_seq, h.last_hash INTO seq_before, hash_before FROM audit_chain_heads h WHERE h.tenant_id = tenant FOR UPDATE;
    END IF;

    chained := hash_before;
    FOR i IN 1..n LOOP
        prevs[i] := chained;
        chained := audit_event_hash(chained, tenant, seq_before + i, occurred_list[i], actors[i], actions[i],
                                    subject_types[i], subject_ids[i], correlations[i], details_list[i],
                                    event_ids[i], key_ids[i], macs[i]);
        hashes[i] := chained;
    END LOOP;

    INSERT INTO audit_events (tenant_id, seq, occurred_at, actor, action, subject_type, subject_id, correlation_id, details,
                              event_id, key_id, mac, prev_hash, hash)
    SELECT tenant, seq_before + e.ordinal, e.event_occurred, e.event_actor, e.event_action, e.event_subject_type,
           e.event_subject_id, e.event_correlation, e.event_details, e.event_id, e.event_key_id, e.event_mac, e.event_prev, e.event_hash
    FROM unnest(actors, correlations, actions, subject_types, subject_ids, details_list, event_ids, occurred_list, key_ids, macs, prevs, hashes)
         WITH ORDINALITY AS e(event_actor, event_correlation, event_action, event_subject_type, event_subject_id,
                              event_details, event_id, event_occurred, event_key_id, event_mac, event_prev, event_hash, ordinal);

    UPDATE audit_chain_heads h SET last_seq = seq_before + n, prev_hash = prevs[n], last_hash = chained WHERE h.tenant_id = tenant;
END $$;

-- The service no longer logs in as the owner of these tables: it logs in as a role that is only a member of
-- integrations_app, subject to row-level security. Its few reads across tenants are these functions, owned by the
-- migrating role, each answering only what its caller needs.
CREATE FUNCTION api_key_for_authentication(key_id uuid)
RETURNS TABLE (tenant_id text, key_hash bytea, scopes text[], expires_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
    SELECT k.tenant_id, k.key_hash, k.scopes, k.expires_at FROM api_keys k WHERE k.id = key_id AND k.revoked_at IS NULL
$$;

CREATE FUNCTION enabled_integrations_after(after uuid, take int)
RETURNS TABLE (tenant_id text, id uuid)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
    SELECT i.tenant_id, i.id FROM cus_integrations i
    WHERE i.status = 'enabled' AND i.deleted_at IS NULL AND i.id > after ORDER BY i.id LIMIT take
$$;

CREATE FUNCTION mcp_servers_due_for_health(check_interval interval, take int)
RETURNS TABLE (tenant_id text, id uuid)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
    SELECT s.tenant_id, s.id FROM mcp_servers s
    WHERE s.deleted_at IS NULL AND s.status <> 'disabled'
      AND (s.status = 'pending' OR s.last_health_check_at IS NULL OR s.last_health_check_at <= now() - check_interval)
    ORDER BY s.last_health_check_at NULLS FIRST, s.id
    LIMIT take
$$;

CREATE FUNCTION audit_chain_heads_for_anchoring()
RETURNS TABLE (tenant_id text, last_seq bigint, last_hash bytea)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
    SELECT h.tenant_id, h.last_seq, h.last_hash FROM audit_chain_heads h WHERE h.last_seq > 0 ORDER BY h.tenant_id
$$;

-- Drops every tenant's rate-limit windows that ended before now() - older_than; answers how many.
CREATE FUNCTION prune_rate_limit_counters(older_than interval)
RETURNS int
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public AS $$
    WITH dropped AS (DELETE FROM rate_limit_counters WHERE window_start < now() - older_than RETURNING 1)
    SELECT count(*)::int FROM dropped
$$;

-- Governed calls of every tenant that started between older_than and within ago and have no outcome (OutcomeRecovery).
CREATE FUNCTION unclosed_governed_calls(older_than interval, within interval, take int)
RETURNS TABLE (tenant_id text, correlation_id text, action text, subject_type text, subject_id text, details text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
    SELECT s.tenant_id, s.correlation_id, s.action, s.subject_type, s.subject_id, s.details::text
    FROM audit_events s
    WHERE s.action LIKE '%.started' AND s.occurred_at < now() - older_than AND s.occurred_at > now() - within
      AND s.correlation_id IS NOT NULL
      AND NOT EXISTS (
          SELECT FROM audit_events o
          WHERE o.tenant_id = s.tenant_id AND o.subject_type = s.subject_type AND o.subject_id = s.subject_id
            AND o.seq > s.seq AND o.correlation_id = s.correlation_id
            AND (o.action LIKE '%.completed' OR o.action LIKE '%.failed'))
    ORDER BY s.occurred_at
    LIMIT take
$$;

REVOKE EXECUTE ON FUNCTION api_key_for_authentication(uuid), enabled_integrations_after(uuid, int),
    mcp_servers_due_for_health(interval, int), audit_chain_heads_for_anchoring(), prune_rate_limit_counters(interval),
    unclosed_governed_calls(interval, interval, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION api_key_for_authentication(uuid), enabled_integrations_after(uuid, int),
    mcp_servers_due_for_health(interval, int), audit_chain_heads_for_anchoring(), prune_rate_limit_counters(interval),
    unclosed_governed_calls(interval, interval, int) TO integrations_app;

-- Appends a write's audit events to its tenant's chain in one statement: the head row is created if missing and
-- locked, each event is hashed from the one before it with audit_event_hash (the function verification uses),
-- the events go in with one INSERT and the head is written back once. The events share one now() (the
-- transaction's start), as they did when each was appended by its own statement in the same transaction.
CREATE FUNCTION audit_append(
    tenant text, event_actor text, correlation text,
    actions text[], subject_types text[], subject_ids text[], details_list jsonb[])
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
    SELECT h.last_seq, h.last_hash INTO seq_before, hash_before FROM audit_chain_heads h WHERE h.tenant_id = tenant FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO audit_chain_heads (tenant_id) VALUES (tenant) ON CONFLICT (tenant_id) DO NOTHING;
        SELECT h.last_seq, h.last_hash INTO seq_before, hash_before FROM audit_chain_heads h WHERE h.tenant_id = tenant FOR UPDATE;
    END IF;

    chained := hash_before;
    FOR i IN 1..n LOOP
        prevs[i] := chained;
        chained := audit_event_hash(chained, tenant, seq_before + i, now(), event_actor, actions[i],
                                    subject_types[i], subject_ids[i], correlation, details_list[i]);
        hashes[i] := chained;
    END LOOP;

    INSERT INTO audit_events (tenant_id, seq, occurred_at, actor, action, subject_type, subject_id, correlation_id, details, prev_hash, hash)
    SELECT tenant, seq_before + e.ordinal, now(), event_actor, e.event_action, e.event_subject_type, e.event_subject_id,
           correlation, e.event_details, e.event_prev, e.event_hash
    FROM unnest(actions, subject_types, subject_ids, details_list, prevs, hashes)
         WITH ORDINALITY AS e(event_action, event_subject_type, event_subject_id, event_details, event_prev, event_hash, ordinal);

    UPDATE audit_chain_heads h SET last_seq = seq_before + n, prev_hash = prevs[n], last_hash = chained WHERE h.tenant_id = tenant;
END $$;

-- audit_append takes an actor and a correlation id per event, so the audit events of several writes (a tenant's
-- batch: several calls, several callers) go into the chain with one statement: one lock of the head, one INSERT,
-- one write-back of the head, in the order given. Hashes are computed exactly as before (audit_event_hash).
DROP FUNCTION audit_append(text, text, text, text[], text[], text[], jsonb[]);

CREATE FUNCTION audit_append(
    tenant text, actors text[], correlations text[],
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
    IF cardinality(actors) <> n OR cardinality(correlations) <> n OR cardinality(subject_types) <> n
       OR cardinality(subject_ids) <> n OR cardinality(details_list) <> n THEN
        RAISE EXCEPTION 'audit_append: every array must have one element per event' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT h.last_seq, h.last_hash INTO seq_before, hash_before FROM audit_chain_heads h WHERE h.tenant_id = tenant FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO audit_chain_heads (tenant_id) VALUES (tenant) ON CONFLICT (tenant_id) DO NOTHING;
        SELECT h.last_seq, h.last_hash INTO seq_before, hash_before FROM audit_chain_heads h WHERE h.tenant_id = tenant FOR UPDATE;
    END IF;

    chained := hash_before;
    FOR i IN 1..n LOOP
        prevs[i] := chained;
        chained := audit_event_hash(chained, tenant, seq_before + i, now(), actors[i], actions[i],
                                    subject_types[i], subject_ids[i], correlations[i], details_list[i]);
        hashes[i] := chained;
    END LOOP;

    INSERT INTO audit_events (tenant_id, seq, occurred_at, actor, action, subject_type, subject_id, correlation_id, details, prev_hash, hash)
    SELECT tenant, seq_before + e.ordinal, now(), e.event_actor, e.event_action, e.event_subject_type, e.event_subject_id,
           e.event_correlation, e.event_details, e.event_prev, e.event_hash
    FROM unnest(actors, correlations, actions, subject_types, subject_ids, details_list, prevs, hashes)
         WITH ORDINALITY AS e(event_actor, event_correlation, event_action, event_subject_type, event_subject_id,
                              event_details, event_prev, event_hash, ordinal);

    UPDATE audit_chain_heads h SET last_seq = seq_before + n, prev_hash = prevs[n], last_hash = chained WHERE h.tenant_id = tenant;
END $$;

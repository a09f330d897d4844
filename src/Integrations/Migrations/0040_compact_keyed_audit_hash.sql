-- A cheaper audit_append (issue 18: with the keyed chain of 0015, appending one event cost PostgreSQL about a fifth
-- more than before it; bench/README.md). Two changes:
--
-- 1. A keyed event's hash covers the previous hash, its sequence number, its key id and its MAC, no longer its fields
--    one by one: the MAC already covers them (tenant, event id, time, actor, action, subject, correlation, canonical
--    details) under a key the database never holds, so hashing them again bought nothing against the table owner, who
--    can recompute any keyless hash, and cost a text rendering of every field and of the details on every append.
--    Events already written keep their hashes: each chain head records from which sequence number on its keyed
--    events are hashed this way (the next event's at this migration; 1 for chains started after it).
-- 2. One event, the usual case (one write, or a batch of one), is a plain INSERT instead of unnesting eleven arrays,
--    and the key id is passed once per statement (the service groups a batch's writes by key).
CREATE FUNCTION audit_keyed_event_hash(prev bytea, seq bigint, key_id text, mac bytea)
RETURNS bytea LANGUAGE sql IMMUTABLE AS $$
    SELECT sha256(prev || int8send(seq) || convert_to(key_id, 'UTF8') || mac)
$$;

ALTER TABLE audit_chain_heads ADD COLUMN compact_hashes_from bigint NOT NULL DEFAULT 1;
UPDATE audit_chain_heads SET compact_hashes_from = last_seq + 1;

-- The hash an event must have, whichever function appended it: unkeyed (before 0015), keyed with every field (0015 up
-- to its chain's compact_hashes_from) or compact. This is what verification and anyone rechecking a chain use.
CREATE FUNCTION audit_chain_hash(
    prev bytea, tenant text, seq bigint, occurred timestamptz, actor text, action text,
    subject_type text, subject_id text, correlation text, details jsonb, event_id uuid, key_id text, mac bytea,
    compact_hashes_from bigint)
RETURNS bytea LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN mac IS NULL OR key_id IS NULL OR seq < compact_hashes_from
        THEN audit_event_hash(prev, tenant, seq, occurred, actor, action, subject_type, subject_id, correlation, details,
                              event_id, key_id, mac)
        ELSE audit_keyed_event_hash(prev, seq, key_id, mac)
    END
$$;

DROP FUNCTION audit_append(text, text[], text[], text[], text[], text[], jsonb[], uuid[], timestamptz[], text[], bytea[]);

-- As in 0015, with one key id for every event of the statement.
CREATE FUNCTION audit_append(
    tenant text, actors text[], correlations text[],
    actions text[], subject_types text[], subject_ids text[], details_list jsonb[],
    event_ids uuid[], occurred_list timestamptz[], key text, macs bytea[])
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
       OR cardinality(occurred_list) <> n OR cardinality(macs) <> n THEN
        RAISE EXCEPTION 'audit_append: every array must have one element per event' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF key IS NULL OR array_position(macs, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'audit_append: every event needs a MAC and a key id' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT h.last_seq, h.last_hash INTO seq_before, hash_before FROM audit_chain_heads h WHERE h.tenant_id = tenant FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO audit_chain_heads (tenant_id) VALUES (tenant) ON CONFLICT (tenant_id) DO NOTHING;
        SELECT h.last_seq, h.last_hash INTO seq_before, hash_before FROM audit_chain_heads h WHERE h.tenant_id = tenant FOR UPDATE;
    END IF;

    IF n = 1 THEN
        chained := audit_keyed_event_hash(hash_before, seq_before + 1, key, macs[1]);
        INSERT INTO audit_events (tenant_id, seq, occurred_at, actor, action, subject_type, subject_id, correlation_id, details,
                                  event_id, key_id, mac, prev_hash, hash)
        VALUES (tenant, seq_before + 1, occurred_list[1], actors[1], actions[1], subject_types[1], subject_ids[1],
                correlations[1], details_list[1], event_ids[1], key, macs[1], hash_before, chained);
        UPDATE audit_chain_heads h SET last_seq = seq_before + 1, prev_hash = hash_before, last_hash = chained WHERE h.tenant_id = tenant;
        RETURN;
    END IF;

    chained := hash_before;
    FOR i IN 1..n LOOP
        prevs[i] := chained;
        chained := audit_keyed_event_hash(chained, seq_before + i, key, macs[i]);
        hashes[i] := chained;
    END LOOP;

    INSERT INTO audit_events (tenant_id, seq, occurred_at, actor, action, subject_type, subject_id, correlation_id, details,
                              event_id, key_id, mac, prev_hash, hash)
    SELECT tenant, seq_before + e.ordinal, e.event_occurred, e.event_actor, e.event_action, e.event_subject_type,
           e.event_subject_id, e.event_correlation, e.event_details, e.event_id, key, e.event_mac, e.event_prev, e.event_hash
    FROM unnest(actors, correlations, actions, subject_types, subject_ids, details_list, event_ids, occurred_list, macs, prevs, hashes)
         WITH ORDINALITY AS e(event_actor, event_correlation, event_action, event_subject_type, event_subject_id,
                              event_details, event_id, event_occurred, event_mac, event_prev, event_hash, ordinal);

    UPDATE audit_chain_heads h SET last_seq = seq_before + n, prev_hash = prevs[n], last_hash = chained WHERE h.tenant_id = tenant;
END $$;

-- API key lookups are cached for a short time on every replica. A key whose row changes (revoked) or goes away is
-- announced on the change channel when that transaction commits, however the row was changed (the API, the
-- revoke-api-key command, plain SQL), so every replica drops its copy at once.
CREATE FUNCTION notify_api_key_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM pg_notify('integrations_changes', 'api_key:*');
    ELSE
        PERFORM pg_notify('integrations_changes', 'api_key:' || OLD.id::text);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER api_keys_changed AFTER UPDATE OR DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION notify_api_key_change();
CREATE TRIGGER api_keys_truncated AFTER TRUNCATE ON api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION notify_api_key_change();

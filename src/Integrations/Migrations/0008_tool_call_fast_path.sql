-- tools.invoke decides on a copy of the tool and server rows it keeps in memory, and sends the decision's audit
-- events in one round trip that starts with this check: the check aborts that whole transaction when either row has
-- changed since the copy was read (its xmin differs), and the call is then decided again on the rows as they are.
CREATE FUNCTION assert_unchanged(unchanged boolean, what text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF unchanged IS NOT TRUE THEN
        RAISE EXCEPTION '% changed since it was read', what USING ERRCODE = 'serialization_failure';
    END IF;
END $$;

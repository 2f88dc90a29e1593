-- The idempotency key is (tenant_id, event_id) in every store: one tenant's ids never touch
-- another's, and a replay is recognised whatever its occurred_at. A unique index on the
-- partitioned events table would have to hold the partition key (occurred_at), so the key
-- lives in a table of its own, written in the same transaction as the events.
CREATE TABLE sealog_event_ids (
    tenant_id text NOT NULL,
    event_id  text NOT NULL,
    PRIMARY KEY (tenant_id, event_id)
);

INSERT INTO sealog_event_ids (tenant_id, event_id)
SELECT DISTINCT tenant_id, event_id FROM sealog_events;

DROP INDEX sealog_events_event_id;
CREATE INDEX sealog_events_tenant_event ON sealog_events (tenant_id, event_id);

CREATE TRIGGER sealog_event_ids_append_only BEFORE UPDATE OR DELETE ON sealog_event_ids
    FOR EACH ROW EXECUTE FUNCTION sealog_append_only();
CREATE TRIGGER sealog_event_ids_no_truncate BEFORE TRUNCATE ON sealog_event_ids
    FOR EACH STATEMENT EXECUTE FUNCTION sealog_append_only();

-- Roles made by an earlier `sealog init --create-roles` get the same rights on the new table.
DO $$
DECLARE
    grantee text;
BEGIN
    FOR grantee IN SELECT DISTINCT g.grantee FROM information_schema.role_table_grants g
                   WHERE g.table_name = 'sealog_events' AND g.privilege_type = 'INSERT'
                     AND g.grantee <> current_user LOOP
        EXECUTE format('GRANT SELECT, INSERT ON sealog_event_ids TO %I', grantee);
    END LOOP;
    FOR grantee IN SELECT DISTINCT g.grantee FROM information_schema.role_table_grants g
                   WHERE g.table_name = 'sealog_events' AND g.privilege_type = 'SELECT'
                     AND g.grantee <> current_user LOOP
        EXECUTE format('GRANT SELECT ON sealog_event_ids TO %I', grantee);
    END LOOP;
END
$$;

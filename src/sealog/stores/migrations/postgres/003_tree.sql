-- The verifiable log (RFC 6962 tree per tenant, signed checkpoints). Leaf i is the event with
-- seq i + 1; leaf hashes are not stored (they are re-hashed from the events). sealog_tree_nodes
-- keeps one row per completed perfect subtree at levels 8, 16, 24, ... (one per 256 events at
-- level 8, one per 65,536 at level 16, ...): any root or proof costs a few range reads, never a scan.
CREATE TABLE sealog_tree_nodes (
    tenant_id text     NOT NULL,
    level     smallint NOT NULL,  -- a positive multiple of 8
    idx       bigint   NOT NULL,  -- the subtree covers leaves [idx << level, (idx + 1) << level)
    hash      bytea    NOT NULL,  -- 32 bytes
    PRIMARY KEY (tenant_id, level, idx)
);

-- Every signed checkpoint (C2SP tlog-checkpoint note, verbatim), kept append-only.
CREATE TABLE sealog_checkpoints (
    tenant_id  text        NOT NULL,
    tree_size  bigint      NOT NULL,
    root       bytea       NOT NULL,
    note       text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, tree_size, note)
);

CREATE TRIGGER sealog_tree_nodes_append_only BEFORE UPDATE OR DELETE ON sealog_tree_nodes
    FOR EACH ROW EXECUTE FUNCTION sealog_append_only();
CREATE TRIGGER sealog_tree_nodes_no_truncate BEFORE TRUNCATE ON sealog_tree_nodes
    FOR EACH STATEMENT EXECUTE FUNCTION sealog_append_only();
CREATE TRIGGER sealog_checkpoints_append_only BEFORE UPDATE OR DELETE ON sealog_checkpoints
    FOR EACH ROW EXECUTE FUNCTION sealog_append_only();
CREATE TRIGGER sealog_checkpoints_no_truncate BEFORE TRUNCATE ON sealog_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION sealog_append_only();

-- Roles made by an earlier `sealog init --create-roles` get the same rights on the new tables.
DO $$
DECLARE
    grantee text;
BEGIN
    FOR grantee IN SELECT DISTINCT g.grantee FROM information_schema.role_table_grants g
                   WHERE g.table_name = 'sealog_events' AND g.privilege_type = 'INSERT'
                     AND g.grantee <> current_user LOOP
        EXECUTE format('GRANT SELECT, INSERT ON sealog_tree_nodes, sealog_checkpoints TO %I', grantee);
    END LOOP;
    FOR grantee IN SELECT DISTINCT g.grantee FROM information_schema.role_table_grants g
                   WHERE g.table_name = 'sealog_events' AND g.privilege_type = 'SELECT'
                     AND g.grantee <> current_user LOOP
        EXECUTE format('GRANT SELECT ON sealog_tree_nodes, sealog_checkpoints TO %I', grantee);
    END LOOP;
END
$$;

-- Incremental verification (`sealog verify`): per tenant, append-only, the last position a
-- verification found sound and the tenant's Merkle tree state there. The next run re-hashes only
-- the events after seq, links the first of them to hash, and checks a consistency proof from
-- (tree_size, root) to the current tree. note: the row as a signed note, when a key was configured.
CREATE TABLE sealog_verified (
    tenant_id   text        NOT NULL,
    seq         bigint      NOT NULL,  -- the last event verified
    hash        text        NOT NULL,  -- its hash: the prev_hash the next event must carry
    tree_size   bigint      NOT NULL,  -- the tree then (= seq: leaf i is the event seq i + 1)
    root        bytea       NOT NULL,  -- its RFC 6962 root, 32 bytes
    cut_seq     bigint      NOT NULL,  -- the latest prune cut then (0: none)
    verified_at timestamptz NOT NULL DEFAULT now(),
    note        text,                  -- signed note of the fields above (NULL: no signing key was set)
    PRIMARY KEY (tenant_id, seq, verified_at)
);

CREATE TRIGGER sealog_verified_append_only BEFORE UPDATE OR DELETE ON sealog_verified
    FOR EACH ROW EXECUTE FUNCTION sealog_append_only();
CREATE TRIGGER sealog_verified_no_truncate BEFORE TRUNCATE ON sealog_verified
    FOR EACH STATEMENT EXECUTE FUNCTION sealog_append_only();

-- Whoever may read the events may run `sealog verify`; whoever may write them (the writer role)
-- may also remember what it verified. A read-only role re-checks everything each time.
DO $$
DECLARE
    grantee text;
BEGIN
    FOR grantee IN SELECT DISTINCT g.grantee FROM information_schema.role_table_grants g
                   WHERE g.table_name = 'sealog_events' AND g.privilege_type = 'SELECT'
                     AND g.grantee <> current_user LOOP
        EXECUTE format('GRANT SELECT ON sealog_verified TO %I', grantee);
    END LOOP;
    FOR grantee IN SELECT DISTINCT g.grantee FROM information_schema.role_table_grants g
                   WHERE g.table_name = 'sealog_events' AND g.privilege_type = 'INSERT'
                     AND g.grantee <> current_user LOOP
        EXECUTE format('GRANT INSERT ON sealog_verified TO %I', grantee);
    END LOOP;
END
$$;

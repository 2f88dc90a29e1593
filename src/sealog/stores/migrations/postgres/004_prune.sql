-- Retention that keeps the proofs (`sealog prune`, run as the tables' owner). A prune removes a
-- prefix of a tenant's chain and keeps, append-only:
--  * sealog_prune_cuts: one row per prune; the chain is verified from seq + 1, whose prev_hash must be hash;
--  * sealog_pruned_leaves: the RFC 6962 leaf hash of every removed event (32 bytes a row), so the tree of
--    any size (every old checkpoint's root, every inclusion and consistency proof) stays computable.
--    A leaf hash covers the event's random event_id and microsecond time: it does not reveal contents.
-- sealog_tree_nodes, sealog_checkpoints and sealog_event_ids (a replay of a pruned event stays a
-- duplicate) are never pruned.
CREATE TABLE sealog_prune_cuts (
    tenant_id text        NOT NULL,
    seq       bigint      NOT NULL,  -- the last removed event: the chain continues at seq + 1
    hash      text        NOT NULL,  -- its hash, the prev_hash of event seq + 1
    first_seq bigint      NOT NULL,  -- the first event this prune removed
    "before"  timestamptz NOT NULL,  -- the cut-off time asked for (events that occurred before it)
    pruned_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, seq)
);

CREATE TABLE sealog_pruned_leaves (
    tenant_id text   NOT NULL,
    seq       bigint NOT NULL,  -- leaf index seq - 1
    hash      bytea  NOT NULL,  -- SHA-256(0x00 || canonical(event)), 32 bytes
    PRIMARY KEY (tenant_id, seq)
);

CREATE TRIGGER sealog_prune_cuts_append_only BEFORE UPDATE OR DELETE ON sealog_prune_cuts
    FOR EACH ROW EXECUTE FUNCTION sealog_append_only();
CREATE TRIGGER sealog_prune_cuts_no_truncate BEFORE TRUNCATE ON sealog_prune_cuts
    FOR EACH STATEMENT EXECUTE FUNCTION sealog_append_only();
CREATE TRIGGER sealog_pruned_leaves_append_only BEFORE UPDATE OR DELETE ON sealog_pruned_leaves
    FOR EACH ROW EXECUTE FUNCTION sealog_append_only();
CREATE TRIGGER sealog_pruned_leaves_no_truncate BEFORE TRUNCATE ON sealog_pruned_leaves
    FOR EACH STATEMENT EXECUTE FUNCTION sealog_append_only();

-- Writers rebuild their tree edge and readers serve proofs from these rows: both may read them.
DO $$
DECLARE
    grantee text;
BEGIN
    FOR grantee IN SELECT DISTINCT g.grantee FROM information_schema.role_table_grants g
                   WHERE g.table_name = 'sealog_events' AND g.privilege_type = 'SELECT'
                     AND g.grantee <> current_user LOOP
        EXECUTE format('GRANT SELECT ON sealog_prune_cuts, sealog_pruned_leaves TO %I', grantee);
    END LOOP;
END
$$;

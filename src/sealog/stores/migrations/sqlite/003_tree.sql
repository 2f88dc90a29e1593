-- The verifiable log (RFC 6962 tree per tenant, signed checkpoints). Leaf i is the event with
-- seq i + 1; leaf hashes are not stored (they are re-hashed from the events). tree_nodes keeps
-- one row per completed perfect subtree at levels 8, 16, 24, ... (one per 256 events at level 8,
-- one per 65,536 at level 16, ...): any root or proof then costs a few range reads, never a scan.
CREATE TABLE tree_nodes (
    tenant_id TEXT    NOT NULL,
    level     INTEGER NOT NULL,  -- a positive multiple of 8
    idx       INTEGER NOT NULL,  -- the subtree covers leaves [idx << level, (idx + 1) << level)
    hash      BLOB    NOT NULL,  -- 32 bytes
    PRIMARY KEY (tenant_id, level, idx)
) WITHOUT ROWID;

-- Every signed checkpoint (C2SP tlog-checkpoint note, verbatim), kept append-only.
CREATE TABLE checkpoints (
    tenant_id  TEXT    NOT NULL,
    tree_size  INTEGER NOT NULL,
    root       BLOB    NOT NULL,
    note       TEXT    NOT NULL,
    created_at TEXT    NOT NULL,
    PRIMARY KEY (tenant_id, tree_size, note)
) WITHOUT ROWID;

CREATE TRIGGER tree_nodes_no_update BEFORE UPDATE ON tree_nodes
BEGIN
    SELECT RAISE(ABORT, 'sealog: the tree_nodes table is append-only');
END;

CREATE TRIGGER tree_nodes_no_delete BEFORE DELETE ON tree_nodes
BEGIN
    SELECT RAISE(ABORT, 'sealog: the tree_nodes table is append-only');
END;

CREATE TRIGGER checkpoints_no_update BEFORE UPDATE ON checkpoints
BEGIN
    SELECT RAISE(ABORT, 'sealog: the checkpoints table is append-only');
END;

CREATE TRIGGER checkpoints_no_delete BEFORE DELETE ON checkpoints
BEGIN
    SELECT RAISE(ABORT, 'sealog: the checkpoints table is append-only');
END;

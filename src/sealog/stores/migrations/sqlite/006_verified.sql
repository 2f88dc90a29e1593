-- Incremental verification (`sealog verify`): per tenant, append-only, the last position a
-- verification found sound and the tenant's Merkle tree state there. The next run re-hashes only
-- the events after seq, links the first of them to hash, and checks a consistency proof from
-- (tree_size, root) to the current tree. note: the row as a signed note, when a key was configured.
CREATE TABLE verified (
    tenant_id   TEXT    NOT NULL,
    seq         INTEGER NOT NULL,  -- the last event verified
    hash        TEXT    NOT NULL,  -- its hash: the prev_hash the next event must carry
    tree_size   INTEGER NOT NULL,  -- the tree then (= seq: leaf i is the event seq i + 1)
    root        BLOB    NOT NULL,  -- its RFC 6962 root, 32 bytes
    cut_seq     INTEGER NOT NULL,  -- the latest prune cut then (0: none)
    verified_at TEXT    NOT NULL,
    note        TEXT,              -- signed note of the fields above (NULL: no signing key was set)
    PRIMARY KEY (tenant_id, seq, verified_at)
) WITHOUT ROWID;

CREATE TRIGGER verified_no_update BEFORE UPDATE ON verified
BEGIN
    SELECT RAISE(ABORT, 'sealog: the verified table is append-only');
END;

CREATE TRIGGER verified_no_delete BEFORE DELETE ON verified
BEGIN
    SELECT RAISE(ABORT, 'sealog: the verified table is append-only');
END;

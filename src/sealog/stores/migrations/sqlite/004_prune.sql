-- Retention that keeps the proofs (`sealog prune`). A prune removes a prefix of a tenant's chain
-- (seq 1..N, or the range after an earlier cut) and keeps, append-only:
--  * prune_cuts: one row per prune; the chain is verified from seq + 1, whose prev_hash must be hash;
--  * pruned_leaves: the RFC 6962 leaf hash of every removed event (32 bytes a row), so the tree of
--    any size (every old checkpoint's root, every inclusion and consistency proof) stays computable.
--    A leaf hash covers the event's random event_id and microsecond time: it does not reveal contents.
-- tree_nodes and checkpoints are never pruned.
CREATE TABLE prune_cuts (
    tenant_id TEXT    NOT NULL,
    seq       INTEGER NOT NULL,  -- the last removed event: the chain continues at seq + 1
    hash      TEXT    NOT NULL,  -- its hash, the prev_hash of event seq + 1
    first_seq INTEGER NOT NULL,  -- the first event this prune removed
    "before"  TEXT    NOT NULL,  -- the cut-off time asked for (events that occurred before it)
    pruned_at TEXT    NOT NULL,
    PRIMARY KEY (tenant_id, seq)
) WITHOUT ROWID;

CREATE TABLE pruned_leaves (
    tenant_id TEXT    NOT NULL,
    seq       INTEGER NOT NULL,  -- leaf index seq - 1
    hash      BLOB    NOT NULL,  -- SHA-256(0x00 || canonical(event)), 32 bytes
    PRIMARY KEY (tenant_id, seq)
) WITHOUT ROWID;

CREATE TRIGGER prune_cuts_no_update BEFORE UPDATE ON prune_cuts
BEGIN
    SELECT RAISE(ABORT, 'sealog: the prune_cuts table is append-only');
END;

CREATE TRIGGER prune_cuts_no_delete BEFORE DELETE ON prune_cuts
BEGIN
    SELECT RAISE(ABORT, 'sealog: the prune_cuts table is append-only');
END;

CREATE TRIGGER pruned_leaves_no_update BEFORE UPDATE ON pruned_leaves
BEGIN
    SELECT RAISE(ABORT, 'sealog: the pruned_leaves table is append-only');
END;

CREATE TRIGGER pruned_leaves_no_delete BEFORE DELETE ON pruned_leaves
BEGIN
    SELECT RAISE(ABORT, 'sealog: the pruned_leaves table is append-only');
END;

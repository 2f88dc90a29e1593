-- The idempotency key is (tenant_id, event_id), as in every store: one tenant's ids never
-- touch another's. SQLite cannot drop a column's UNIQUE, so the table is rebuilt (DROP TABLE
-- fires no DELETE trigger; the triggers and indexes are made again below).
CREATE TABLE events_new (
    tenant_id       TEXT    NOT NULL,
    seq             INTEGER NOT NULL,
    event_id        TEXT    NOT NULL,
    action          TEXT    NOT NULL,
    outcome         TEXT    NOT NULL,
    occurred_at     TEXT    NOT NULL,
    recorded_at     TEXT    NOT NULL,
    actor_type      TEXT,
    actor_id        TEXT,
    target_type     TEXT,
    target_id       TEXT,
    ip_address      TEXT,
    user_agent      TEXT,
    request_id      TEXT,
    correlation_id  TEXT,
    span_id         TEXT,
    parent_event_id TEXT,
    source          TEXT,
    latency_ms      REAL,
    error_code      TEXT,
    error_message   TEXT,
    metadata        TEXT    NOT NULL,  -- canonical (RFC 8785) JSON, as hashed
    proof           TEXT    NOT NULL,
    "before"        TEXT    NOT NULL,
    "after"         TEXT    NOT NULL,
    prev_hash       TEXT    NOT NULL,
    hash            TEXT    NOT NULL,
    PRIMARY KEY (tenant_id, seq),
    UNIQUE (tenant_id, event_id)
) WITHOUT ROWID;

INSERT INTO events_new SELECT
    tenant_id, seq, event_id, action, outcome, occurred_at, recorded_at, actor_type, actor_id,
    target_type, target_id, ip_address, user_agent, request_id, correlation_id, span_id,
    parent_event_id, source, latency_ms, error_code, error_message, metadata, proof, "before",
    "after", prev_hash, hash
FROM events;

DROP TABLE events;
ALTER TABLE events_new RENAME TO events;

CREATE INDEX events_tenant_time ON events (tenant_id, occurred_at);
CREATE INDEX events_tenant_action ON events (tenant_id, action, occurred_at);
CREATE INDEX events_tenant_actor ON events (tenant_id, actor_id, occurred_at);
CREATE INDEX events_request ON events (request_id) WHERE request_id IS NOT NULL;
CREATE INDEX events_correlation ON events (correlation_id) WHERE correlation_id IS NOT NULL;

CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'sealog: the events table is append-only');
END;

CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'sealog: the events table is append-only');
END;

-- The sealed, append-only events table and the per-tenant chain heads.
CREATE TABLE events (
    tenant_id       TEXT    NOT NULL,
    seq             INTEGER NOT NULL,
    event_id        TEXT    NOT NULL UNIQUE,
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
    PRIMARY KEY (tenant_id, seq)
) WITHOUT ROWID;

CREATE INDEX events_tenant_time ON events (tenant_id, occurred_at);
CREATE INDEX events_tenant_action ON events (tenant_id, action, occurred_at);
CREATE INDEX events_tenant_actor ON events (tenant_id, actor_id, occurred_at);
CREATE INDEX events_request ON events (request_id) WHERE request_id IS NOT NULL;
CREATE INDEX events_correlation ON events (correlation_id) WHERE correlation_id IS NOT NULL;

CREATE TABLE chain_heads (
    tenant_id TEXT PRIMARY KEY,
    seq       INTEGER NOT NULL,
    hash      TEXT    NOT NULL
);

CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'sealog: the events table is append-only');
END;

CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'sealog: the events table is append-only');
END;

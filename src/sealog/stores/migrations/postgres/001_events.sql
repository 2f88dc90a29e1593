-- The sealed, append-only audit log. Tables are prefixed: they live beside application data.

CREATE TABLE sealog_events (
    tenant_id       text             NOT NULL,
    seq             bigint           NOT NULL,
    event_id        text             NOT NULL,
    action          text             NOT NULL,
    outcome         text             NOT NULL,
    occurred_at     timestamptz      NOT NULL,
    recorded_at     timestamptz      NOT NULL,
    actor_type      text,
    actor_id        text,
    target_type     text,
    target_id       text,
    ip_address      text,            -- validated at emit; text keeps the exact hashed form
    user_agent      text,
    request_id      text,
    correlation_id  text,
    span_id         text,
    parent_event_id text,
    source          text,
    latency_ms      double precision,
    error_code      text,
    error_message   text,
    metadata        jsonb            NOT NULL,
    proof           jsonb,
    "before"        jsonb,
    "after"         jsonb,
    prev_hash       text             NOT NULL,
    hash            text             NOT NULL
) PARTITION BY RANGE (occurred_at);

CREATE TABLE sealog_events_default PARTITION OF sealog_events DEFAULT;

-- The idempotency key. A unique index on a partitioned table must hold the partition key;
-- an event's occurred_at never changes, so a replay always collides here.
CREATE UNIQUE INDEX sealog_events_event_id ON sealog_events (event_id, occurred_at);
CREATE INDEX sealog_events_tenant_time ON sealog_events (tenant_id, occurred_at, seq);
CREATE INDEX sealog_events_tenant_action ON sealog_events (tenant_id, action, occurred_at);
CREATE INDEX sealog_events_tenant_actor ON sealog_events (tenant_id, actor_id, occurred_at);
CREATE INDEX sealog_events_tenant_seq ON sealog_events (tenant_id, seq);
CREATE INDEX sealog_events_request ON sealog_events (request_id) WHERE request_id IS NOT NULL;
CREATE INDEX sealog_events_correlation ON sealog_events (correlation_id) WHERE correlation_id IS NOT NULL;

-- Each tenant's chain head, locked (FOR UPDATE) by the transaction that extends the chain.
CREATE TABLE sealog_chain_heads (
    tenant_id text   PRIMARY KEY,
    seq       bigint NOT NULL,
    hash      text   NOT NULL
);

CREATE FUNCTION sealog_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'sealog: % on % is rejected: the audit log is append-only', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER sealog_events_append_only BEFORE UPDATE OR DELETE ON sealog_events
    FOR EACH ROW EXECUTE FUNCTION sealog_append_only();
CREATE TRIGGER sealog_events_no_truncate BEFORE TRUNCATE ON sealog_events
    FOR EACH STATEMENT EXECUTE FUNCTION sealog_append_only();
CREATE TRIGGER sealog_events_default_no_truncate BEFORE TRUNCATE ON sealog_events_default
    FOR EACH STATEMENT EXECUTE FUNCTION sealog_append_only();

-- Monthly partitions from last month to `months_ahead` ahead. SECURITY DEFINER: the writer
-- role may call it without holding DDL rights itself.
CREATE FUNCTION sealog_ensure_partitions(months_ahead integer DEFAULT 3) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE
    month date := date_trunc('month', now() AT TIME ZONE 'UTC')::date - interval '1 month';
    last  date := date_trunc('month', now() AT TIME ZONE 'UTC')::date + make_interval(months => months_ahead);
    name  text;
    made  integer := 0;
BEGIN
    WHILE month <= last LOOP
        name := 'sealog_events_' || to_char(month, 'YYYY_MM');
        IF to_regclass(name) IS NULL THEN
            BEGIN
                EXECUTE format(
                    'CREATE TABLE %I PARTITION OF sealog_events FOR VALUES FROM (%L) TO (%L)',
                    name, month::timestamp AT TIME ZONE 'UTC',
                    (month + interval '1 month')::timestamp AT TIME ZONE 'UTC');
                EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON %I FOR EACH STATEMENT '
                               'EXECUTE FUNCTION sealog_append_only()', name || '_no_truncate', name);
                made := made + 1;
            EXCEPTION WHEN check_violation THEN
                -- rows for that month already sit in the default partition: leave them there
                NULL;
            END;
        END IF;
        month := month + interval '1 month';
    END LOOP;
    RETURN made;
END
$$;

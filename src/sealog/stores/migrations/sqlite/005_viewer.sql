-- The viewer's activity chart and facets at a million events: counts folded from the events by
-- the viewer itself (``stores._summary``), up to 10,000 new events at a time, so the write path
-- pays nothing and the list page sums a few thousand rows instead of reading the events.
-- A derived cache, not sealed data: deleting a tenant's rows here only makes the next page fold again.
--  * viewer_counts, by outcome: events per minute ('m', value ''), per hour ('h', value ''), per hour
--    and action ('ha') and per day and action ('da'). A time span is summed from whole days or hours,
--    the whole hours and minutes at its edges, and only the partial minutes (chart) or hours
--    (actions) at its very edges are read from the events. Rows grow with time, not volume.
--  * viewer_totals: all-time counts per actor id ('u') and target id ('t'), for every outcome ('*')
--    and for each outcome but success (the few an investigator filters on); per action ('a', '*'
--    only: the list an action pattern is checked as).
--  * viewer_folded: each tenant's last folded seq, and its prune count then (a prune refolds it).
CREATE TABLE viewer_counts (
    tenant_id TEXT    NOT NULL,
    dim       TEXT    NOT NULL,
    bucket    TEXT    NOT NULL,  -- 'YYYY-MM-DDTHH:MM' ('m'), 'YYYY-MM-DDTHH' ('h', 'ha'), 'YYYY-MM-DD' ('da')
    value     TEXT    NOT NULL,
    outcome   TEXT    NOT NULL,
    n         INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, dim, bucket, value, outcome)
) WITHOUT ROWID;

CREATE TABLE viewer_totals (
    tenant_id TEXT    NOT NULL,
    dim       TEXT    NOT NULL,
    outcome   TEXT    NOT NULL,  -- '*': every outcome
    value     TEXT    NOT NULL,
    n         INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, dim, outcome, value)
) WITHOUT ROWID;

CREATE TABLE viewer_folded (
    tenant_id TEXT    PRIMARY KEY,
    seq       INTEGER NOT NULL,
    prunes    INTEGER NOT NULL
) WITHOUT ROWID;

-- Indexes for the two contract filters that had none, target_id and outcome (seq last: searches
-- are ordered by occurred_at, seq). Measured with bench/bench_queries.py on 10^6 events in 20
-- tenants (the big tenant: 249,139 events, CPU p50): target_id 200 ms -> 2.8 ms, target + action
-- 171 -> 2.7 ms, outcome pending (0.5 %) 29 -> 6.3 ms. Cost: ~27 % more CPU per event written
-- (noisy); 41 s to build on that database, during which writes wait.
CREATE INDEX sealog_events_tenant_target ON sealog_events (tenant_id, target_id, occurred_at, seq);
CREATE INDEX sealog_events_tenant_outcome ON sealog_events (tenant_id, outcome, occurred_at, seq);

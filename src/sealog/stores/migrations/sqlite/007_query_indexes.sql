-- Indexes for the two contract filters that had none, target_id and outcome. Measured with
-- bench/bench_queries.py on 10^6 events in 20 tenants (the big tenant: 249,139 events, CPU p50):
-- target_id 429 ms -> 0.13 ms, target + action 91 -> 0.16 ms, outcome pending (0.5 %) 43 -> 3.5 ms.
-- The store writes the outcome as `+outcome = ?` when a more selective filter is also given (SQLite
-- keeps no statistics: without it, actor + outcome went from 6 to 54 ms on this index).
-- Cost: ~20 % more CPU per event written; 10 s to build on that 10^6-event file.
CREATE INDEX events_tenant_target ON events (tenant_id, target_id, occurred_at);
CREATE INDEX events_tenant_outcome ON events (tenant_id, outcome, occurred_at);

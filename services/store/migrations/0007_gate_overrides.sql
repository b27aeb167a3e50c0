-- 0007: operators' confidence-gate overrides (issue #15). Never edit once merged: add a later
-- migration instead. Every statement is IF NOT EXISTS, so a run that stopped half-way is run again.
--
-- Every change of a scope's gate (a cluster id or an intent family id) is a row: `gates set` writes
-- action 'set' with its threshold, `gates unset` writes 'unset'; `version` counts the scope's
-- changes (1, 2, ...), and who/when/why stay with each. The active gate of a scope is its highest
-- version when that one is a 'set'. ReplacingMergeTree only folds a row written twice (a retry).
CREATE TABLE IF NOT EXISTS gate_overrides
(
    scope String,
    version UInt32,
    action LowCardinality(String),
    threshold Nullable(Float64),
    reason String,
    actor String,
    at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (scope, version);

-- The gate's decision log: POST /v1/gate decisions counted per minute (processing time: a gate
-- call has no event time), cluster ('unassigned': close to none), category and decision. The
-- serving process adds up its counts in memory and writes them every few seconds;
-- SummingMergeTree adds rows of the same key, so read with sum().
CREATE TABLE IF NOT EXISTS gate_decision_minutes
(
    minute DateTime('UTC'),
    cluster_id String,
    category LowCardinality(String),
    decision LowCardinality(String),
    calls UInt64
)
ENGINE = SummingMergeTree(calls)
ORDER BY (cluster_id, category, decision, minute);

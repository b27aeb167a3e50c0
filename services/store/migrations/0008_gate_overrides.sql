-- 0008: operators' confidence-gate overrides (issue #15). Never edit once merged: add a later
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

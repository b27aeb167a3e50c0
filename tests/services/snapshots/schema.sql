CREATE TABLE clusters
(
    `cluster_id` String,
    `label` String,
    `category` LowCardinality(String),
    `terms` Array(String),
    `representative_query` String,
    `size` UInt64,
    `centroid_version` UInt32,
    `first_seen` Nullable(DateTime64(3, 'UTC')),
    `last_seen` Nullable(DateTime64(3, 'UTC')),
    `family_id` Nullable(String),
    `family_label` Nullable(String),
    `family_category` LowCardinality(Nullable(String)),
    `family_aliases` Array(String),
    `updated_at` DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY cluster_id
SETTINGS index_granularity = 8192;

CREATE TABLE dead_letters
(
    `received_at` DateTime64(3, 'UTC'),
    `source` LowCardinality(String),
    `position` String,
    `interaction_id` Nullable(String),
    `field` String,
    `reason` String,
    `raw` String
)
ENGINE = ReplacingMergeTree
ORDER BY (source, position, received_at)
SETTINGS index_granularity = 8192;

CREATE TABLE deliveries
(
    `incident_id` String,
    `sequence` UInt32,
    `channel` String,
    `version` UInt32,
    `channel_type` LowCardinality(String),
    `event` LowCardinality(String),
    `status` LowCardinality(String),
    `attempts` UInt32,
    `queued_at` DateTime64(3, 'UTC'),
    `next_attempt_at` DateTime64(3, 'UTC'),
    `updated_at` DateTime64(3, 'UTC'),
    `http_status` Nullable(UInt16),
    `error` String,
    `payload` String
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (incident_id, sequence, channel)
SETTINGS index_granularity = 8192;

CREATE TABLE gate_decision_minutes
(
    `minute` DateTime('UTC'),
    `cluster_id` String,
    `category` LowCardinality(String),
    `decision` LowCardinality(String),
    `calls` UInt64
)
ENGINE = SummingMergeTree(calls)
ORDER BY (cluster_id, category, decision, minute)
SETTINGS index_granularity = 8192;

CREATE TABLE gate_overrides
(
    `scope` String,
    `version` UInt32,
    `action` LowCardinality(String),
    `threshold` Nullable(Float64),
    `reason` String,
    `actor` String,
    `at` DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (scope, version)
SETTINGS index_granularity = 8192;

CREATE TABLE incident_events
(
    `event` LowCardinality(String),
    `incident_id` String,
    `sequence` UInt32,
    `cluster_id` String,
    `cluster_label` String,
    `category` LowCardinality(String),
    `severity` LowCardinality(String),
    `status` LowCardinality(String),
    `onset_at` DateTime64(3, 'UTC'),
    `detected_at` DateTime64(3, 'UTC'),
    `event_at` DateTime64(3, 'UTC'),
    `resolved_at` Nullable(DateTime64(3, 'UTC')),
    `below_baseline_count` UInt32,
    `affected_sessions` UInt32,
    `affected_customers` UInt32,
    `session_ids` Array(String),
    `customer_ids` Array(String),
    `confident_wrong_count` UInt32,
    `outreach_required` Bool,
    `irreversible_actions` UInt32,
    `suggested_gate` Nullable(String),
    `shared_documents` String,
    `stale_contexts` UInt32,
    `baseline_faithfulness` Nullable(Float64),
    `baseline_low` Nullable(Float64),
    `baseline_below_rate` Float64,
    `observed_below_rate` Float64,
    `statistic` Float64,
    `threshold` Float64,
    `summary` String,
    `examples` String,
    `level` LowCardinality(String) DEFAULT 'cluster',
    `clusters` Array(String),
    `clusters_added` Array(String),
    `family_ids` Array(String),
    `members` String DEFAULT '[]',
    `cause` Nullable(String),
    `member_clusters` Array(String),
    `member_since` Array(DateTime64(3, 'UTC'))
)
ENGINE = ReplacingMergeTree
ORDER BY (incident_id, sequence)
SETTINGS index_granularity = 8192;

CREATE VIEW incidents
(
    `event` LowCardinality(String),
    `incident_id` String,
    `sequence` UInt32,
    `cluster_id` String,
    `cluster_label` String,
    `category` LowCardinality(String),
    `severity` LowCardinality(String),
    `status` LowCardinality(String),
    `onset_at` DateTime64(3, 'UTC'),
    `detected_at` DateTime64(3, 'UTC'),
    `event_at` DateTime64(3, 'UTC'),
    `resolved_at` Nullable(DateTime64(3, 'UTC')),
    `below_baseline_count` UInt32,
    `affected_sessions` UInt32,
    `affected_customers` UInt32,
    `session_ids` Array(String),
    `customer_ids` Array(String),
    `confident_wrong_count` UInt32,
    `outreach_required` Bool,
    `irreversible_actions` UInt32,
    `suggested_gate` Nullable(String),
    `shared_documents` String,
    `stale_contexts` UInt32,
    `baseline_faithfulness` Nullable(Float64),
    `baseline_low` Nullable(Float64),
    `baseline_below_rate` Float64,
    `observed_below_rate` Float64,
    `statistic` Float64,
    `threshold` Float64,
    `summary` String,
    `examples` String,
    `level` LowCardinality(String),
    `clusters` Array(String),
    `clusters_added` Array(String),
    `family_ids` Array(String),
    `members` String,
    `cause` Nullable(String),
    `member_clusters` Array(String),
    `member_since` Array(DateTime64(3, 'UTC'))
)
AS SELECT *
FROM incident_events
FINAL
ORDER BY sequence DESC
LIMIT 1 BY incident_id;

CREATE TABLE interaction_minutes
(
    `cluster_id` String,
    `minute` DateTime('UTC'),
    `interaction_ids` AggregateFunction(uniqExact, UInt64),
    `below_baseline_ids` AggregateFunction(uniqExactIf, UInt64, Bool),
    `confident_wrong_ids` AggregateFunction(uniqExactIf, UInt64, Bool),
    `faithfulness_q` AggregateFunction(1, quantilesDeterministicDistinct(0.05, 0.25, 0.5, 0.75, 0.95), Nullable(Float64), UInt64),
    `confidence_q` AggregateFunction(1, quantilesDeterministicDistinct(0.05, 0.25, 0.5, 0.75, 0.95), Nullable(Float64), UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (cluster_id, minute)
SETTINGS index_granularity = 8192;

CREATE TABLE interactions
(
    `interaction_id` String,
    `session_id` Nullable(String),
    `customer_id` Nullable(String),
    `timestamp` DateTime64(3, 'UTC'),
    `query` String,
    `response` Nullable(String),
    `cluster_id` String,
    `cluster_label` String,
    `category` LowCardinality(String),
    `faithfulness` Nullable(Float64),
    `faithfulness_source` LowCardinality(String),
    `confidence` Nullable(Float64),
    `below_baseline` Bool,
    `baseline_low` Nullable(Float64),
    `confident_wrong` Bool,
    `stale_context` Bool,
    `context_doc_ids` Array(Nullable(String)),
    `context_doc_versions` Array(Nullable(String)),
    `context_stale` Array(Bool),
    `incident_id` Nullable(String),
    `family_id` Nullable(String),
    `intent_hint` Nullable(String),
    `model` Nullable(String),
    `action_name` Nullable(String),
    `action_reversible` Nullable(Bool),
    `metadata` Nullable(String)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(timestamp)
ORDER BY (cluster_id, timestamp, interaction_id)
SETTINGS index_granularity = 8192;

CREATE TABLE interactions_in
(
    `interaction_id` String,
    `session_id` Nullable(String),
    `customer_id` Nullable(String),
    `timestamp` DateTime64(3, 'UTC'),
    `query` String,
    `response` Nullable(String),
    `cluster_id` String,
    `cluster_label` String,
    `category` LowCardinality(String),
    `faithfulness` Nullable(Float64),
    `faithfulness_source` LowCardinality(String),
    `confidence` Nullable(Float64),
    `below_baseline` Bool,
    `baseline_low` Nullable(Float64),
    `confident_wrong` Bool,
    `stale_context` Bool,
    `context_doc_ids` Array(Nullable(String)),
    `context_doc_versions` Array(Nullable(String)),
    `context_stale` Array(Bool),
    `incident_id` Nullable(String),
    `family_id` Nullable(String),
    `intent_hint` Nullable(String),
    `model` Nullable(String),
    `action_name` Nullable(String),
    `action_reversible` Nullable(Bool),
    `metadata` Nullable(String)
)
ENGINE = `Null`;

CREATE MATERIALIZED VIEW interactions_in_mv TO interactions
(
    `interaction_id` String,
    `session_id` Nullable(String),
    `customer_id` Nullable(String),
    `timestamp` DateTime64(3, 'UTC'),
    `query` String,
    `response` Nullable(String),
    `cluster_id` String,
    `cluster_label` String,
    `category` LowCardinality(String),
    `faithfulness` Nullable(Float64),
    `faithfulness_source` LowCardinality(String),
    `confidence` Nullable(Float64),
    `below_baseline` Bool,
    `baseline_low` Nullable(Float64),
    `confident_wrong` Bool,
    `stale_context` Bool,
    `context_doc_ids` Array(Nullable(String)),
    `context_doc_versions` Array(Nullable(String)),
    `context_stale` Array(Bool),
    `incident_id` Nullable(String),
    `family_id` Nullable(String),
    `intent_hint` Nullable(String),
    `model` Nullable(String),
    `action_name` Nullable(String),
    `action_reversible` Nullable(Bool),
    `metadata` Nullable(String)
)
AS SELECT *
FROM interactions_in
WHERE interaction_id NOT IN (
    SELECT interaction_id
    FROM interactions
    WHERE (timestamp >= (
        SELECT min(timestamp)
        FROM interactions_in
    )) AND (timestamp <= (
        SELECT max(timestamp)
        FROM interactions_in
    )) AND (interaction_id IN (
        SELECT interaction_id
        FROM interactions_in
    ))
)
LIMIT 1 BY interaction_id;

CREATE TABLE rollup_days
(
    `cluster_id` String,
    `bucket` DateTime('UTC'),
    `interactions` SimpleAggregateFunction(sum, UInt64),
    `below_baseline` SimpleAggregateFunction(sum, UInt64),
    `confident_wrong` SimpleAggregateFunction(sum, UInt64),
    `faithfulness_n` SimpleAggregateFunction(sum, UInt64),
    `faithfulness_sum` SimpleAggregateFunction(sum, Float64),
    `confidence_n` SimpleAggregateFunction(sum, UInt64),
    `confidence_sum` SimpleAggregateFunction(sum, Float64),
    `first_at` SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
    `last_at` SimpleAggregateFunction(max, DateTime64(3, 'UTC')),
    `faithfulness_q` AggregateFunction(quantilesExactWeightedInterpolated(0.05, 0.25, 0.5, 0.75, 0.95), Nullable(Float64), UInt8),
    `confidence_q` AggregateFunction(quantilesExactWeightedInterpolated(0.05, 0.25, 0.5, 0.75, 0.95), Nullable(Float64), UInt8)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYear(bucket)
ORDER BY (cluster_id, bucket)
SETTINGS index_granularity = 256;

CREATE MATERIALIZED VIEW rollup_days_mv TO rollup_days
(
    `cluster_id` String,
    `bucket` DateTime('UTC'),
    `interactions` UInt64,
    `below_baseline` UInt64,
    `confident_wrong` UInt64,
    `faithfulness_n` UInt64,
    `faithfulness_sum` Float64,
    `confidence_n` UInt64,
    `confidence_sum` Float64,
    `first_at` SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
    `last_at` SimpleAggregateFunction(max, DateTime64(3, 'UTC')),
    `faithfulness_q` AggregateFunction(quantilesExactWeightedInterpolated(0.05, 0.25, 0.5, 0.75, 0.95), Nullable(Float64), UInt8),
    `confidence_q` AggregateFunction(quantilesExactWeightedInterpolated(0.05, 0.25, 0.5, 0.75, 0.95), Nullable(Float64), UInt8)
)
AS SELECT
    cluster_id,
    toStartOfDay(bucket) AS bucket,
    sum(interactions) AS interactions,
    sum(below_baseline) AS below_baseline,
    sum(confident_wrong) AS confident_wrong,
    sum(faithfulness_n) AS faithfulness_n,
    sum(faithfulness_sum) AS faithfulness_sum,
    sum(confidence_n) AS confidence_n,
    sum(confidence_sum) AS confidence_sum,
    min(first_at) AS first_at,
    max(last_at) AS last_at,
    quantilesExactWeightedInterpolatedMergeState(0.05, 0.25, 0.5, 0.75, 0.95)(faithfulness_q) AS faithfulness_q,
    quantilesExactWeightedInterpolatedMergeState(0.05, 0.25, 0.5, 0.75, 0.95)(confidence_q) AS confidence_q
FROM rollup_hours
GROUP BY
    cluster_id,
    bucket;

CREATE TABLE rollup_hours
(
    `cluster_id` String,
    `bucket` DateTime('UTC'),
    `interactions` SimpleAggregateFunction(sum, UInt64),
    `below_baseline` SimpleAggregateFunction(sum, UInt64),
    `confident_wrong` SimpleAggregateFunction(sum, UInt64),
    `faithfulness_n` SimpleAggregateFunction(sum, UInt64),
    `faithfulness_sum` SimpleAggregateFunction(sum, Float64),
    `confidence_n` SimpleAggregateFunction(sum, UInt64),
    `confidence_sum` SimpleAggregateFunction(sum, Float64),
    `first_at` SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
    `last_at` SimpleAggregateFunction(max, DateTime64(3, 'UTC')),
    `faithfulness_q` AggregateFunction(quantilesExactWeightedInterpolated(0.05, 0.25, 0.5, 0.75, 0.95), Nullable(Float64), UInt8),
    `confidence_q` AggregateFunction(quantilesExactWeightedInterpolated(0.05, 0.25, 0.5, 0.75, 0.95), Nullable(Float64), UInt8)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(bucket)
ORDER BY (cluster_id, bucket)
SETTINGS index_granularity = 256;

CREATE MATERIALIZED VIEW rollup_hours_mv TO rollup_hours
(
    `cluster_id` String,
    `bucket` DateTime('UTC'),
    `interactions` UInt64,
    `below_baseline` UInt64,
    `confident_wrong` UInt64,
    `faithfulness_n` UInt64,
    `faithfulness_sum` Float64,
    `confidence_n` UInt64,
    `confidence_sum` Float64,
    `first_at` SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
    `last_at` SimpleAggregateFunction(max, DateTime64(3, 'UTC')),
    `faithfulness_q` AggregateFunction(quantilesExactWeightedInterpolated(0.05, 0.25, 0.5, 0.75, 0.95), Nullable(Float64), UInt8),
    `confidence_q` AggregateFunction(quantilesExactWeightedInterpolated(0.05, 0.25, 0.5, 0.75, 0.95), Nullable(Float64), UInt8)
)
AS SELECT
    cluster_id,
    toStartOfHour(bucket) AS bucket,
    sum(interactions) AS interactions,
    sum(below_baseline) AS below_baseline,
    sum(confident_wrong) AS confident_wrong,
    sum(faithfulness_n) AS faithfulness_n,
    sum(faithfulness_sum) AS faithfulness_sum,
    sum(confidence_n) AS confidence_n,
    sum(confidence_sum) AS confidence_sum,
    min(first_at) AS first_at,
    max(last_at) AS last_at,
    quantilesExactWeightedInterpolatedMergeState(0.05, 0.25, 0.5, 0.75, 0.95)(faithfulness_q) AS faithfulness_q,
    quantilesExactWeightedInterpolatedMergeState(0.05, 0.25, 0.5, 0.75, 0.95)(confidence_q) AS confidence_q
FROM rollup_minutes
GROUP BY
    cluster_id,
    bucket;

CREATE TABLE rollup_minutes
(
    `cluster_id` String,
    `bucket` DateTime('UTC'),
    `interactions` SimpleAggregateFunction(sum, UInt64),
    `below_baseline` SimpleAggregateFunction(sum, UInt64),
    `confident_wrong` SimpleAggregateFunction(sum, UInt64),
    `faithfulness_n` SimpleAggregateFunction(sum, UInt64),
    `faithfulness_sum` SimpleAggregateFunction(sum, Float64),
    `confidence_n` SimpleAggregateFunction(sum, UInt64),
    `confidence_sum` SimpleAggregateFunction(sum, Float64),
    `first_at` SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
    `last_at` SimpleAggregateFunction(max, DateTime64(3, 'UTC')),
    `faithfulness_q` AggregateFunction(quantilesExactWeightedInterpolated(0.05, 0.25, 0.5, 0.75, 0.95), Nullable(Float64), UInt8),
    `confidence_q` AggregateFunction(quantilesExactWeightedInterpolated(0.05, 0.25, 0.5, 0.75, 0.95), Nullable(Float64), UInt8)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(bucket)
ORDER BY (cluster_id, bucket)
SETTINGS index_granularity = 256;

CREATE MATERIALIZED VIEW rollup_minutes_mv TO rollup_minutes
(
    `cluster_id` String,
    `bucket` DateTime('UTC'),
    `interactions` UInt64,
    `below_baseline` UInt64,
    `confident_wrong` UInt64,
    `faithfulness_n` UInt64,
    `faithfulness_sum` Float64,
    `confidence_n` UInt64,
    `confidence_sum` Float64,
    `first_at` DateTime64(3, 'UTC'),
    `last_at` DateTime64(3, 'UTC'),
    `faithfulness_q` AggregateFunction(quantilesExactWeightedInterpolated(0.05, 0.25, 0.5, 0.75, 0.95), Nullable(Float64), UInt8),
    `confidence_q` AggregateFunction(quantilesExactWeightedInterpolated(0.05, 0.25, 0.5, 0.75, 0.95), Nullable(Float64), UInt8)
)
AS SELECT
    cluster_id,
    toStartOfMinute(timestamp) AS bucket,
    count() AS interactions,
    countIf(below_baseline) AS below_baseline,
    countIf(confident_wrong) AS confident_wrong,
    count(faithfulness) AS faithfulness_n,
    sum(ifNull(faithfulness, 0)) AS faithfulness_sum,
    count(confidence) AS confidence_n,
    sum(ifNull(confidence, 0)) AS confidence_sum,
    min(timestamp) AS first_at,
    max(timestamp) AS last_at,
    quantilesExactWeightedInterpolatedState(0.05, 0.25, 0.5, 0.75, 0.95)(round(faithfulness, 2), toUInt8(1)) AS faithfulness_q,
    quantilesExactWeightedInterpolatedState(0.05, 0.25, 0.5, 0.75, 0.95)(round(confidence, 2), toUInt8(1)) AS confidence_q
FROM interactions
GROUP BY
    cluster_id,
    bucket;

CREATE TABLE schema_migrations
(
    `version` UInt32,
    `name` String,
    `applied_at` DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY version
SETTINGS index_granularity = 8192;

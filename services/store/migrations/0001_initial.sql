-- 0001: the raw tables. Never edit once merged: add 0002_*.sql instead.
-- Every statement is IF NOT EXISTS: ClickHouse DDL is not transactional, so a migration that
-- stopped half-way is simply run again.

-- One row per scored answer. ReplacingMergeTree: a replayed or retried interaction_id collapses
-- to one row (read with FINAL where counts matter). ORDER BY (cluster_id, timestamp,
-- interaction_id): analyst queries are "this cluster, this time range"; interaction_id makes the
-- key unique. The timestamp is part of the key, so a duplicate always lands in the same
-- monthly partition and is merged away.
CREATE TABLE IF NOT EXISTS interactions
(
    interaction_id String,
    session_id Nullable(String),
    customer_id Nullable(String),
    timestamp DateTime64(3, 'UTC'),
    query String,
    response Nullable(String),
    cluster_id String,
    cluster_label String,
    category LowCardinality(String),
    faithfulness Nullable(Float64),
    faithfulness_source LowCardinality(String),
    confidence Nullable(Float64),
    below_baseline Bool,
    baseline_low Nullable(Float64),
    confident_wrong Bool,
    stale_context Bool,
    context_doc_ids Array(Nullable(String)),
    context_doc_versions Array(Nullable(String)),
    context_stale Array(Bool),
    incident_id Nullable(String),
    intent_hint Nullable(String),
    model Nullable(String),
    action_name Nullable(String),
    action_reversible Nullable(Bool),
    metadata Nullable(String)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(timestamp)
ORDER BY (cluster_id, timestamp, interaction_id);

-- One row per cluster after FINAL. ReplacingMergeTree(updated_at): the latest upsert wins;
-- updated_at is filled on insert. ORDER BY cluster_id, the only lookup.
CREATE TABLE IF NOT EXISTS clusters
(
    cluster_id String,
    label String,
    category LowCardinality(String),
    terms Array(String),
    representative_query String,
    size UInt64,
    centroid_version UInt32,
    first_seen Nullable(DateTime64(3, 'UTC')),
    last_seen Nullable(DateTime64(3, 'UTC')),
    updated_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY cluster_id;

-- Every opened/updated/resolved event. ReplacingMergeTree keyed (incident_id, sequence), the
-- idempotency key of an event: a replayed event is stored once. Nested objects are JSON text.
CREATE TABLE IF NOT EXISTS incident_events
(
    event LowCardinality(String),
    incident_id String,
    sequence UInt32,
    cluster_id String,
    cluster_label String,
    category LowCardinality(String),
    severity LowCardinality(String),
    status LowCardinality(String),
    onset_at DateTime64(3, 'UTC'),
    detected_at DateTime64(3, 'UTC'),
    event_at DateTime64(3, 'UTC'),
    resolved_at Nullable(DateTime64(3, 'UTC')),
    below_baseline_count UInt32,
    affected_sessions UInt32,
    affected_customers UInt32,
    session_ids Array(String),
    customer_ids Array(String),
    confident_wrong_count UInt32,
    outreach_required Bool,
    irreversible_actions UInt32,
    suggested_gate Nullable(String),
    shared_documents String,
    stale_contexts UInt32,
    baseline_faithfulness Nullable(Float64),
    baseline_low Nullable(Float64),
    baseline_below_rate Float64,
    observed_below_rate Float64,
    statistic Float64,
    threshold Float64,
    summary String,
    examples String
)
ENGINE = ReplacingMergeTree
ORDER BY (incident_id, sequence);

-- Latest state per incident: a plain view over incident_events, the event with the highest
-- sequence. Incidents are few (events per incident are tens), so reading it is cheap, and a
-- view has nothing to keep in sync, nothing to backfill and cannot disagree with the events.
-- The engine fixes the view's columns when it is created: a migration that adds a column to
-- incident_events must also recreate this view.
CREATE VIEW IF NOT EXISTS incidents AS
SELECT *
FROM incident_events FINAL
ORDER BY sequence DESC
LIMIT 1 BY incident_id;

-- Records that broke the input contract. ReplacingMergeTree keyed (source, position,
-- received_at): a retried batch is stored once, while a record received again later is a new
-- arrival; position alone is not trusted to be unique for every source.
CREATE TABLE IF NOT EXISTS dead_letters
(
    received_at DateTime64(3, 'UTC'),
    source LowCardinality(String),
    position String,
    interaction_id Nullable(String),
    field String,
    reason String,
    raw String
)
ENGINE = ReplacingMergeTree
ORDER BY (source, position, received_at);

-- Which migrations ran. One row per version after FINAL.
CREATE TABLE IF NOT EXISTS schema_migrations
(
    version UInt32,
    name String,
    applied_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY version;

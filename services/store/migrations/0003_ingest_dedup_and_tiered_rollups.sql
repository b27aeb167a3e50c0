-- 0003: deduplicate interactions at ingest, and roll them up by minute, hour and day with plain
-- sums and compact quantile states. Never edit once merged.
--
-- Why: 0002 made the rollups idempotent by keeping every interaction id (and every value/id pair)
-- in set states, so a week-long query merged sets of millions of elements (seconds at 10M rows),
-- and reads of interactions needed FINAL. Here a repeated interaction_id is dropped BEFORE it
-- reaches interactions or any rollup, so the rollups can hold plain counts.
--
-- Ingest path: the store inserts into interactions_in (Null engine: keeps nothing). Its view
-- interactions_in_mv writes to interactions only the ids of the inserted block that interactions
-- does not hold yet (looked up in the block's own time range) and one row per id within the
-- block; the rollup views below fire on what reaches interactions. Exact for any sequence of
-- inserts (retry, replay in other batch sizes or order, restart) provided a repeated id carries
-- the same timestamp (its event time) and two inserts of the same id do not run concurrently
-- (each would check before the other's rows are visible). See docs/storage.md.
--
-- Statements are ordered so that re-running this file after it stopped half-way is safe, with
-- writers stopped (faithwatch migrates at start-up, before it writes): the rollup views are
-- dropped, the rollups truncated and back-filled from interactions, then the views created.

-- Staging table with exactly the columns of interactions. A migration that adds a column to
-- interactions must add it here too (and recreate interactions_in_mv).
CREATE TABLE IF NOT EXISTS interactions_in AS interactions ENGINE = Null;

-- The old per-minute sets stop being written (the table stays, readable with -Merge, for
-- history older than the raw retention).
DROP VIEW IF EXISTS interaction_minutes_mv;

-- Three tiers of one shape, AggregatingMergeTree ORDER BY (cluster_id, bucket): a time range of
-- one or all clusters. Queries read whole days from rollup_days, whole hours from rollup_hours,
-- and the edges from rollup_minutes, so a week reads about 350 rows per cluster-day grid, not
-- 10,000 minutes. Counts and sums are SimpleAggregateFunction(sum); first_at/last_at are exact
-- times; the quantile states are quantilesExactWeightedInterpolated over scores rounded to 0.01:
-- at most 101 entries per state, merged exactly and read with linear interpolation, so a
-- reported quantile is within 0.005 of the exact one. (Rounding to 0.001 made a state up to
-- 1,001 entries and the 24 h all-cluster read about 8 times slower: merging is per entry.)
-- index_granularity 256 (not 8192): a state is costly to deserialize, and a time range over all
-- clusters is a short stretch inside each cluster's run of rows; small granules let the key
-- skip the rest of each run instead of reading (and decoding) whole 8192-row granules.
CREATE TABLE IF NOT EXISTS rollup_minutes
(
    cluster_id String,
    bucket DateTime('UTC'),
    interactions SimpleAggregateFunction(sum, UInt64),
    below_baseline SimpleAggregateFunction(sum, UInt64),
    confident_wrong SimpleAggregateFunction(sum, UInt64),
    faithfulness_n SimpleAggregateFunction(sum, UInt64),
    faithfulness_sum SimpleAggregateFunction(sum, Float64),
    confidence_n SimpleAggregateFunction(sum, UInt64),
    confidence_sum SimpleAggregateFunction(sum, Float64),
    first_at SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
    last_at SimpleAggregateFunction(max, DateTime64(3, 'UTC')),
    faithfulness_q AggregateFunction(quantilesExactWeightedInterpolated(0.05, 0.25, 0.5, 0.75, 0.95), Nullable(Float64), UInt8),
    confidence_q AggregateFunction(quantilesExactWeightedInterpolated(0.05, 0.25, 0.5, 0.75, 0.95), Nullable(Float64), UInt8)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(bucket)
ORDER BY (cluster_id, bucket)
SETTINGS index_granularity = 256;

CREATE TABLE IF NOT EXISTS rollup_hours AS rollup_minutes
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(bucket)
ORDER BY (cluster_id, bucket)
SETTINGS index_granularity = 256;

CREATE TABLE IF NOT EXISTS rollup_days AS rollup_minutes
ENGINE = AggregatingMergeTree
PARTITION BY toYear(bucket)
ORDER BY (cluster_id, bucket)
SETTINGS index_granularity = 256;

DROP VIEW IF EXISTS rollup_minutes_mv;

DROP VIEW IF EXISTS rollup_hours_mv;

DROP VIEW IF EXISTS rollup_days_mv;

TRUNCATE TABLE IF EXISTS rollup_minutes;

TRUNCATE TABLE IF EXISTS rollup_hours;

TRUNCATE TABLE IF EXISTS rollup_days;

-- Back-fill (views do not) from the deduplicated interactions, once per tier.
INSERT INTO rollup_minutes
SELECT
    cluster_id,
    toStartOfMinute(timestamp) AS bucket,
    count(), countIf(below_baseline), countIf(confident_wrong),
    count(faithfulness), sum(ifNull(faithfulness, 0)), count(confidence), sum(ifNull(confidence, 0)),
    min(timestamp), max(timestamp),
    quantilesExactWeightedInterpolatedState(0.05, 0.25, 0.5, 0.75, 0.95)(round(faithfulness, 2), toUInt8(1)),
    quantilesExactWeightedInterpolatedState(0.05, 0.25, 0.5, 0.75, 0.95)(round(confidence, 2), toUInt8(1))
FROM interactions FINAL
GROUP BY cluster_id, bucket;

INSERT INTO rollup_hours
SELECT cluster_id, toStartOfHour(bucket) AS hour, sum(interactions), sum(below_baseline), sum(confident_wrong),
       sum(faithfulness_n), sum(faithfulness_sum), sum(confidence_n), sum(confidence_sum),
       min(first_at), max(last_at),
       quantilesExactWeightedInterpolatedMergeState(0.05, 0.25, 0.5, 0.75, 0.95)(faithfulness_q),
       quantilesExactWeightedInterpolatedMergeState(0.05, 0.25, 0.5, 0.75, 0.95)(confidence_q)
FROM rollup_minutes
GROUP BY cluster_id, hour;

INSERT INTO rollup_days
SELECT cluster_id, toStartOfDay(bucket) AS day, sum(interactions), sum(below_baseline), sum(confident_wrong),
       sum(faithfulness_n), sum(faithfulness_sum), sum(confidence_n), sum(confidence_sum),
       min(first_at), max(last_at),
       quantilesExactWeightedInterpolatedMergeState(0.05, 0.25, 0.5, 0.75, 0.95)(faithfulness_q),
       quantilesExactWeightedInterpolatedMergeState(0.05, 0.25, 0.5, 0.75, 0.95)(confidence_q)
FROM rollup_hours
GROUP BY cluster_id, day;

-- The minute tier is fed by what reaches interactions (already deduplicated); the hour tier by
-- the minute rows each insert produces, the day tier by the hour rows (-MergeState folds the
-- partial states): only the first view reads every raw row, which halves the insert cost.
CREATE MATERIALIZED VIEW IF NOT EXISTS rollup_minutes_mv TO rollup_minutes AS
SELECT
    cluster_id,
    toStartOfMinute(timestamp) AS bucket,
    count() AS interactions, countIf(below_baseline) AS below_baseline, countIf(confident_wrong) AS confident_wrong,
    count(faithfulness) AS faithfulness_n, sum(ifNull(faithfulness, 0)) AS faithfulness_sum,
    count(confidence) AS confidence_n, sum(ifNull(confidence, 0)) AS confidence_sum,
    min(timestamp) AS first_at, max(timestamp) AS last_at,
    quantilesExactWeightedInterpolatedState(0.05, 0.25, 0.5, 0.75, 0.95)(round(faithfulness, 2), toUInt8(1)) AS faithfulness_q,
    quantilesExactWeightedInterpolatedState(0.05, 0.25, 0.5, 0.75, 0.95)(round(confidence, 2), toUInt8(1)) AS confidence_q
FROM interactions
GROUP BY cluster_id, bucket;

CREATE MATERIALIZED VIEW IF NOT EXISTS rollup_hours_mv TO rollup_hours AS
SELECT
    cluster_id,
    toStartOfHour(bucket) AS bucket,
    sum(interactions) AS interactions, sum(below_baseline) AS below_baseline, sum(confident_wrong) AS confident_wrong,
    sum(faithfulness_n) AS faithfulness_n, sum(faithfulness_sum) AS faithfulness_sum,
    sum(confidence_n) AS confidence_n, sum(confidence_sum) AS confidence_sum,
    min(first_at) AS first_at, max(last_at) AS last_at,
    quantilesExactWeightedInterpolatedMergeState(0.05, 0.25, 0.5, 0.75, 0.95)(faithfulness_q) AS faithfulness_q,
    quantilesExactWeightedInterpolatedMergeState(0.05, 0.25, 0.5, 0.75, 0.95)(confidence_q) AS confidence_q
FROM rollup_minutes
GROUP BY cluster_id, bucket;

CREATE MATERIALIZED VIEW IF NOT EXISTS rollup_days_mv TO rollup_days AS
SELECT
    cluster_id,
    toStartOfDay(bucket) AS bucket,
    sum(interactions) AS interactions, sum(below_baseline) AS below_baseline, sum(confident_wrong) AS confident_wrong,
    sum(faithfulness_n) AS faithfulness_n, sum(faithfulness_sum) AS faithfulness_sum,
    sum(confidence_n) AS confidence_n, sum(confidence_sum) AS confidence_sum,
    min(first_at) AS first_at, max(last_at) AS last_at,
    quantilesExactWeightedInterpolatedMergeState(0.05, 0.25, 0.5, 0.75, 0.95)(faithfulness_q) AS faithfulness_q,
    quantilesExactWeightedInterpolatedMergeState(0.05, 0.25, 0.5, 0.75, 0.95)(confidence_q) AS confidence_q
FROM rollup_hours
GROUP BY cluster_id, bucket;

-- The deduplicating view (created last: from here on the store's inserts reach interactions).
-- The NOT IN lookup reads interactions only in the block's [min, max] timestamp range; LIMIT 1 BY
-- keeps one row per id within the block.
CREATE MATERIALIZED VIEW IF NOT EXISTS interactions_in_mv TO interactions AS
SELECT *
FROM interactions_in
WHERE interaction_id NOT IN (
    SELECT interaction_id
    FROM interactions
    WHERE timestamp >= (SELECT min(timestamp) FROM interactions_in)
      AND timestamp <= (SELECT max(timestamp) FROM interactions_in)
      AND interaction_id IN (SELECT interaction_id FROM interactions_in)
)
LIMIT 1 BY interaction_id;

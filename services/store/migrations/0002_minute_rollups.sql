-- 0002: per-minute per-cluster rollups kept by a materialized view. Never edit once merged.
--
-- Idempotency without relying on merges: every rollup column is a set-like aggregate keyed by
-- the interaction id (cityHash64(interaction_id)), so adding the same interaction twice, in the
-- same insert or another one, in a batch of any size, leaves every merged value unchanged:
--   counts     uniqExact(If) of the id hash: a repeated id is the same set element;
--   quantiles  quantilesDeterministic with the -Distinct combinator over (value, id hash): the
--              state is the set of distinct pairs, fed to the quantile only when it is read.
-- insert_deduplication_token cannot give this (a replay in other batch sizes makes other blocks,
-- hence other tokens) and ReplacingMergeTree dedups the base table only eventually, while the
-- view fires on every inserted block; set semantics make the view's output insensitive to both.
-- Price: the states hold one 8-byte hash per interaction (and a value pair per quantile).

-- AggregatingMergeTree ORDER BY (cluster_id, minute): dashboards and recipes read one cluster or
-- all clusters over a time range, bucketed by minute/hour/day (read with -Merge, GROUP BY).
-- Monthly partitions like interactions, so a TTL drops whole old parts.
CREATE TABLE IF NOT EXISTS interaction_minutes
(
    cluster_id String,
    minute DateTime('UTC'),
    interaction_ids AggregateFunction(uniqExact, UInt64),
    below_baseline_ids AggregateFunction(uniqExactIf, UInt64, Bool),
    confident_wrong_ids AggregateFunction(uniqExactIf, UInt64, Bool),
    faithfulness_q AggregateFunction(quantilesDeterministicDistinct(0.05, 0.25, 0.5, 0.75, 0.95), Nullable(Float64), UInt64),
    confidence_q AggregateFunction(quantilesDeterministicDistinct(0.05, 0.25, 0.5, 0.75, 0.95), Nullable(Float64), UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (cluster_id, minute);

-- Fires on every block inserted into interactions (retries and replays included: see above).
CREATE MATERIALIZED VIEW IF NOT EXISTS interaction_minutes_mv TO interaction_minutes AS
SELECT
    cluster_id,
    toStartOfMinute(timestamp) AS minute,
    uniqExactState(cityHash64(interaction_id)) AS interaction_ids,
    uniqExactIfState(cityHash64(interaction_id), below_baseline) AS below_baseline_ids,
    uniqExactIfState(cityHash64(interaction_id), confident_wrong) AS confident_wrong_ids,
    quantilesDeterministicDistinctState(0.05, 0.25, 0.5, 0.75, 0.95)(faithfulness, cityHash64(interaction_id)) AS faithfulness_q,
    quantilesDeterministicDistinctState(0.05, 0.25, 0.5, 0.75, 0.95)(confidence, cityHash64(interaction_id)) AS confidence_q
FROM interactions
GROUP BY cluster_id, minute;

-- Materialized views do not backfill: fold in what interactions already holds. Rows inserted
-- between the view's creation and this statement are added twice, which the set states absorb;
-- for the same reason re-running this migration after a failure is harmless.
INSERT INTO interaction_minutes
SELECT
    cluster_id,
    toStartOfMinute(timestamp) AS minute,
    uniqExactState(cityHash64(interaction_id)),
    uniqExactIfState(cityHash64(interaction_id), below_baseline),
    uniqExactIfState(cityHash64(interaction_id), confident_wrong),
    quantilesDeterministicDistinctState(0.05, 0.25, 0.5, 0.75, 0.95)(faithfulness, cityHash64(interaction_id)),
    quantilesDeterministicDistinctState(0.05, 0.25, 0.5, 0.75, 0.95)(confidence, cityHash64(interaction_id))
FROM interactions
GROUP BY cluster_id, minute;

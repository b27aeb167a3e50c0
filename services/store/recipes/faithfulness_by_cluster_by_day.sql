-- Faithfulness by cluster by UTC day over [since, until): volume, below-baseline rate and the
-- faithfulness/confidence quantiles, from the per-minute rollups (interaction_minutes), with
-- the cluster's current label.
SELECT
    toDate(minute) AS day,
    r.cluster_id AS cluster_id,
    any(c.label) AS cluster_label,
    uniqExactMerge(interaction_ids) AS interactions,
    uniqExactIfMerge(below_baseline_ids) AS below_baseline,
    round(below_baseline / interactions, 4) AS below_baseline_rate,
    quantilesDeterministicDistinctMerge(0.05, 0.25, 0.5, 0.75, 0.95)(faithfulness_q) AS fq,
    if(isNaN(fq[1]), NULL, round(fq[1], 4)) AS faithfulness_p05,
    if(isNaN(fq[3]), NULL, round(fq[3], 4)) AS faithfulness_p50,
    if(isNaN(fq[5]), NULL, round(fq[5], 4)) AS faithfulness_p95,
    quantilesDeterministicDistinctMerge(0.05, 0.25, 0.5, 0.75, 0.95)(confidence_q) AS cq,
    if(isNaN(cq[3]), NULL, round(cq[3], 4)) AS confidence_p50
FROM interaction_minutes AS r
LEFT JOIN (SELECT cluster_id, label FROM clusters FINAL) AS c ON c.cluster_id = r.cluster_id
WHERE minute >= toStartOfMinute({since:DateTime64(3, 'UTC')})
  AND minute < {until:DateTime64(3, 'UTC')}
GROUP BY day, cluster_id
ORDER BY day, cluster_id;

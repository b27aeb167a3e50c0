-- Confident-but-wrong rate by cluster over [since, until): answers below the cluster's baseline
-- given at or above its confidence gate, per answer. From the per-minute rollups; worst first.
SELECT
    r.cluster_id AS cluster_id,
    any(c.label) AS cluster_label,
    any(c.category) AS category,
    uniqExactMerge(interaction_ids) AS interactions,
    uniqExactIfMerge(confident_wrong_ids) AS confident_wrong,
    uniqExactIfMerge(below_baseline_ids) AS below_baseline,
    round(confident_wrong / interactions, 4) AS confident_wrong_rate
FROM interaction_minutes AS r
LEFT JOIN (SELECT cluster_id, label, category FROM clusters FINAL) AS c ON c.cluster_id = r.cluster_id
WHERE minute >= toStartOfMinute({since:DateTime64(3, 'UTC')})
  AND minute < {until:DateTime64(3, 'UTC')}
GROUP BY cluster_id
ORDER BY confident_wrong_rate DESC, cluster_id;

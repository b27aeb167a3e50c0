-- Faithfulness by cluster by UTC day over [since, until): volume, below-baseline rate and the
-- faithfulness/confidence quantiles, with the cluster's current label. From the rollups: whole
-- days from rollup_days, whole hours from rollup_hours, the minutes at the edges from
-- rollup_minutes (a minute counts when it starts at or after since's minute and before until).
-- Quantiles are over scores rounded to 0.01, linearly interpolated: within 0.005 of the exact ones.
WITH
    toStartOfMinute({since:DateTime64(3, 'UTC')}) AS s_min,
    toStartOfMinute({until:DateTime64(3, 'UTC')} - INTERVAL 1 MILLISECOND) + INTERVAL 1 MINUTE AS e_min,
    toStartOfHour(s_min - INTERVAL 1 SECOND) + INTERVAL 1 HOUR AS s_hour,
    toStartOfHour(e_min) AS e_hour,
    toStartOfDay(s_hour - INTERVAL 1 SECOND) + INTERVAL 1 DAY AS s_day,
    toStartOfDay(e_hour) AS e_day
SELECT
    toDate(bucket) AS day,
    r.cluster_id AS cluster_id,
    any(c.label) AS cluster_label,
    sum(n) AS interactions,
    sum(n_below) AS below_baseline,
    round(below_baseline / interactions, 4) AS below_baseline_rate,
    quantilesExactWeightedInterpolatedMerge(0.05, 0.25, 0.5, 0.75, 0.95)(faith_q) AS fq,
    if(sum(n_faith) = 0, NULL, round(fq[1], 4)) AS faithfulness_p05,
    if(sum(n_faith) = 0, NULL, round(fq[3], 4)) AS faithfulness_p50,
    if(sum(n_faith) = 0, NULL, round(fq[5], 4)) AS faithfulness_p95,
    quantilesExactWeightedInterpolatedMerge(0.05, 0.25, 0.5, 0.75, 0.95)(conf_q) AS cq,
    if(sum(n_conf) = 0, NULL, round(cq[3], 4)) AS confidence_p50
FROM (
    SELECT cluster_id, bucket, interactions AS n, below_baseline AS n_below, faithfulness_n AS n_faith,
           confidence_n AS n_conf, faithfulness_q AS faith_q, confidence_q AS conf_q
    FROM rollup_days
    WHERE bucket >= s_day AND bucket < e_day
    UNION ALL
    SELECT cluster_id, bucket, interactions, below_baseline, faithfulness_n, confidence_n, faithfulness_q, confidence_q
    FROM rollup_hours
    WHERE bucket >= s_hour AND bucket < e_hour AND NOT (bucket >= s_day AND bucket < e_day)
    UNION ALL
    SELECT cluster_id, bucket, interactions, below_baseline, faithfulness_n, confidence_n, faithfulness_q, confidence_q
    FROM rollup_minutes
    WHERE bucket >= s_min AND bucket < e_min AND NOT (bucket >= s_hour AND bucket < e_hour)
) AS r
LEFT JOIN (SELECT cluster_id, label FROM clusters FINAL) AS c ON c.cluster_id = r.cluster_id
GROUP BY day, cluster_id
ORDER BY day, cluster_id;

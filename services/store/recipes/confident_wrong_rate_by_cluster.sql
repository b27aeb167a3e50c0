-- Confident-but-wrong rate by cluster over [since, until): answers below the cluster's baseline
-- given at or above its confidence gate, per answer; worst first. From the rollups (whole days,
-- whole hours, then the edge minutes, as in faithfulness_by_cluster_by_day).
WITH
    toStartOfMinute({since:DateTime64(3, 'UTC')}) AS s_min,
    toStartOfMinute({until:DateTime64(3, 'UTC')} - INTERVAL 1 MILLISECOND) + INTERVAL 1 MINUTE AS e_min,
    toStartOfHour(s_min - INTERVAL 1 SECOND) + INTERVAL 1 HOUR AS s_hour,
    toStartOfHour(e_min) AS e_hour,
    toStartOfDay(s_hour - INTERVAL 1 SECOND) + INTERVAL 1 DAY AS s_day,
    toStartOfDay(e_hour) AS e_day
SELECT
    r.cluster_id AS cluster_id,
    any(c.label) AS cluster_label,
    any(c.category) AS category,
    sum(n) AS interactions,
    sum(n_cw) AS confident_wrong,
    sum(n_below) AS below_baseline,
    round(confident_wrong / interactions, 4) AS confident_wrong_rate
FROM (
    SELECT cluster_id, interactions AS n, below_baseline AS n_below, confident_wrong AS n_cw
    FROM rollup_days
    WHERE bucket >= s_day AND bucket < e_day
    UNION ALL
    SELECT cluster_id, interactions, below_baseline, confident_wrong
    FROM rollup_hours
    WHERE bucket >= s_hour AND bucket < e_hour AND NOT (bucket >= s_day AND bucket < e_day)
    UNION ALL
    SELECT cluster_id, interactions, below_baseline, confident_wrong
    FROM rollup_minutes
    WHERE bucket >= s_min AND bucket < e_min AND NOT (bucket >= s_hour AND bucket < e_hour)
) AS r
LEFT JOIN (SELECT cluster_id, label, category FROM clusters FINAL) AS c ON c.cluster_id = r.cluster_id
GROUP BY cluster_id
ORDER BY confident_wrong_rate DESC, cluster_id;

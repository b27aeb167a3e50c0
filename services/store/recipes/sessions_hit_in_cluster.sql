-- Sessions that got a failing (below-baseline) answer in one cluster in the 48 hours before as_of.
-- One row per session, with the customer to contact and the worst answer; newest first.
-- Reads interactions FINAL (a replayed answer counts once) by its (cluster_id, timestamp) key.
SELECT
    session_id,
    any(customer_id) AS customer_id,
    count() AS failing_answers,
    countIf(confident_wrong) AS confident_wrong,
    min(timestamp) AS first_at,
    max(timestamp) AS last_at,
    min(faithfulness) AS worst_faithfulness,
    argMin(interaction_id, tuple(ifNull(faithfulness, 2.0), timestamp)) AS worst_interaction_id
FROM interactions FINAL
WHERE cluster_id = {cluster_id:String}
  AND below_baseline
  AND timestamp >= {as_of:DateTime64(3, 'UTC')} - INTERVAL 48 HOUR
  AND timestamp < {as_of:DateTime64(3, 'UTC')}
GROUP BY session_id
ORDER BY last_at DESC, session_id;

-- Sessions that got a failing (below-baseline) answer in one cluster in the 48 hours before as_of.
-- One row per session, with the customer to contact and the worst answer; newest first.
-- Reads interactions by its (cluster_id, timestamp) key. The store drops a repeated
-- interaction_id on insert; LIMIT 1 BY also counts once an id that two concurrent writers both
-- stored, without the cost of FINAL over the whole range.
SELECT
    session_id,
    any(customer_id) AS customer_id,
    count() AS failing_answers,
    countIf(confident_wrong) AS confident_wrong,
    min(timestamp) AS first_at,
    max(timestamp) AS last_at,
    min(faithfulness) AS worst_faithfulness,
    argMin(interaction_id, tuple(ifNull(faithfulness, 2.0), timestamp)) AS worst_interaction_id
FROM (
    SELECT interaction_id, session_id, customer_id, timestamp, faithfulness, confident_wrong
    FROM interactions
    WHERE cluster_id = {cluster_id:String}
      AND below_baseline
      AND timestamp >= {as_of:DateTime64(3, 'UTC')} - INTERVAL 48 HOUR
      AND timestamp < {as_of:DateTime64(3, 'UTC')}
    LIMIT 1 BY interaction_id
)
GROUP BY session_id
ORDER BY last_at DESC, session_id;

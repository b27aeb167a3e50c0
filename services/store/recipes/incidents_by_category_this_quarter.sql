-- Incidents by category whose onset falls in the calendar quarter of as_of (up to as_of).
-- Latest state per incident from the incidents view (replayed events count once).
SELECT
    category,
    count() AS incidents,
    countIf(status = 'open') AS open,
    countIf(status = 'resolved') AS resolved,
    countIf(severity = 'critical') AS critical,
    sum(affected_sessions) AS affected_sessions,
    sum(affected_customers) AS affected_customers,
    countIf(outreach_required) AS outreach_required,
    sum(confident_wrong_count) AS confident_wrong_answers,
    min(onset_at) AS first_onset,
    max(onset_at) AS last_onset
FROM incidents
WHERE onset_at >= toStartOfQuarter({as_of:DateTime64(3, 'UTC')})
  AND onset_at <= {as_of:DateTime64(3, 'UTC')}
GROUP BY category
ORDER BY incidents DESC, category;

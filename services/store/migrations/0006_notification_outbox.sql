-- 0006: the notification outbox (issue #11, alert channels). Never edit once merged: add 0007_*.sql
-- instead. Every statement is IF NOT EXISTS, so a run that stopped half-way is simply run again.
--
-- One delivery per (incident event, channel): (incident_id, sequence, channel) is its idempotency
-- key. Each state change of a delivery is a new row with a higher `version` (0 when queued, then
-- its attempt count; 1 for a delivery skipped at once), and ReplacingMergeTree(version) keeps the
-- latest: read with FINAL. A replayed stream or a restarted process queues its events again at
-- version 0, which never wins over a delivery already attempted or sent (the notifier also skips
-- keys already stored). Delivery times are processing time (when it was queued, attempted), not
-- the stream's event time.
CREATE TABLE IF NOT EXISTS deliveries
(
    incident_id String,
    sequence UInt32,
    channel String,
    version UInt32,
    channel_type LowCardinality(String),
    event LowCardinality(String),
    -- pending (waiting for its next attempt), sent, failed (refused: a 4xx other than 429),
    -- given_up (still failing notify.give_up_seconds after it was queued), skipped (the channel
    -- takes no request for this event, e.g. PagerDuty and a late update after resolution)
    status LowCardinality(String),
    attempts UInt32,
    queued_at DateTime64(3, 'UTC'),
    next_attempt_at DateTime64(3, 'UTC'),
    updated_at DateTime64(3, 'UTC'),
    http_status Nullable(UInt16),
    error String,
    -- the incident event as JSON: a restarted notifier renders the request from it
    payload String
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (incident_id, sequence, channel);

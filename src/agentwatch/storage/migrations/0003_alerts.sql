-- 0003_alerts: the alerting tables (written by `agentwatch alerts run`).
--
-- Rendered by agentwatch.storage.migrate ({database}, {anomalies_ttl_days}). Idempotent
-- (IF NOT EXISTS). Never edit once shipped: add a new NNNN_<name>.sql instead.
--
-- `alerts` and `silences` are ReplacingMergeTree tables versioned by `version`: each state
-- change of an alert (notified, acknowledged, resolved) or silence (created, expired) is
-- a new row with a higher version. READ THEM WITH FINAL (or LIMIT 1 BY id ORDER BY version
-- DESC) to get one row per alert or silence. `alert_notifications` and
-- `alert_dead_letters` are append-only logs: one row per delivery attempt, one row per
-- notification that was not delivered.
--
-- No secret is stored: receivers are named, never their URLs, routing keys or tokens.
-- Anomaly texts are redacted by the writer as in `anomalies`.

-- One row per alert: an episode of a group (route + group labels) from its first anomaly
-- to its resolve.
CREATE TABLE IF NOT EXISTS {database}.alerts
(
    alert_id          String,
    route             LowCardinality(String),
    group_key         String,
    group_labels      Map(LowCardinality(String), String),
    agent_id          String,                           -- group_labels['agent_id'] or ''
    receivers         Array(LowCardinality(String)),
    status            LowCardinality(String),           -- firing | resolved
    severity          LowCardinality(String),           -- highest of the episode
    max_score         Float32,
    title             String,                           -- of the latest anomaly
    anomaly_count     UInt64,
    folded_total      UInt64,                           -- anomalies not listed (storm guard)
    notifications     UInt32,                           -- notifications made so far
    started_at        DateTime64(3, 'UTC'),
    last_anomaly_at   DateTime64(3, 'UTC'),
    last_notified_at  Nullable(DateTime64(3, 'UTC')),
    resolved_at       Nullable(DateTime64(3, 'UTC')),
    acked_by          String,
    acked_at          Nullable(DateTime64(3, 'UTC')),
    ack_comment       String,
    recent            String CODEC(ZSTD(3)),            -- JSON: latest listed anomalies
    updated_at        DateTime64(3, 'UTC'),
    version           UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(started_at)
ORDER BY alert_id
TTL toDateTime(started_at) + INTERVAL {anomalies_ttl_days} DAY;

-- Every delivery attempt and its outcome: delivered, retry, failed (not retryable),
-- gave_up (retries exhausted), circuit_open, skipped (receiver does not send this kind).
CREATE TABLE IF NOT EXISTS {database}.alert_notifications
(
    ts                DateTime64(3, 'UTC'),
    notification_id   String,
    alert_id          String,
    dedup_key         String,
    route             LowCardinality(String),
    receiver          LowCardinality(String),
    integration       LowCardinality(String),
    kind              LowCardinality(String),           -- firing | resolved | acknowledged
    sequence          UInt32,
    attempt           UInt16,
    outcome           LowCardinality(String),
    status_code       UInt16,                           -- HTTP status, 0 if none
    reason            String,
    duration_ms       Float32,
    fallback_for      LowCardinality(String),           -- original receiver of a fallback
    external_ref      String,                           -- e.g. the Slack message ts
    INDEX idx_notification_id notification_id TYPE bloom_filter(0.01) GRANULARITY 4
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (alert_id, ts)
TTL toDateTime(ts) + INTERVAL {anomalies_ttl_days} DAY;

-- Silences: matchers (Alertmanager syntax), time bounds, creator and reason.
CREATE TABLE IF NOT EXISTS {database}.silences
(
    silence_id        String,
    matchers          Array(String),
    starts_at         DateTime64(3, 'UTC'),
    ends_at           DateTime64(3, 'UTC'),
    created_by        String,
    comment           String,
    created_at        DateTime64(3, 'UTC'),
    updated_at        DateTime64(3, 'UTC'),
    version           UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY silence_id
TTL toDateTime(ends_at) + INTERVAL 90 DAY;

-- Notifications that were not delivered, with the reason and the notification itself
-- (JSON, redacted; it holds no receiver secret) so it can be inspected or sent again.
CREATE TABLE IF NOT EXISTS {database}.alert_dead_letters
(
    ts                DateTime64(3, 'UTC'),
    notification_id   String,
    alert_id          String,
    dedup_key         String,
    route             LowCardinality(String),
    receiver          LowCardinality(String),
    integration       LowCardinality(String),
    kind              LowCardinality(String),
    outcome           LowCardinality(String),           -- failed | gave_up | circuit_open
    reason            String,
    attempts          UInt16,
    notification      String CODEC(ZSTD(3))
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (receiver, ts)
TTL toDateTime(ts) + INTERVAL {anomalies_ttl_days} DAY;

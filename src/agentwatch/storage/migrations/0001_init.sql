-- 0001_init: the agentwatch tables.
--
-- Rendered by agentwatch.storage.migrate from StorageSettings: {database},
-- {events_ttl_days} and {anomalies_ttl_days} are replaced; any other {name} (such as a
-- ClickHouse macro) is left as it is. Every statement must be idempotent (IF NOT EXISTS)
-- because two workers starting at once may both apply it. Never edit this file once it
-- has shipped: its checksum is recorded in schema_migrations and a changed file stops
-- every worker at start. Add a new NNNN_<name>.sql instead.
--
-- DEDUPLICATION RULE: delivery from Kafka is at-least-once, so the same event_id (or
-- anomaly_id, or dead letter) can be inserted more than once. The ReplacingMergeTree
-- tables collapse duplicates only eventually, in background merges. EVERY READ of
-- events, anomalies, dead_letters and schema_migrations MUST USE `FINAL`
-- (SELECT ... FROM {database}.events FINAL WHERE ...) or an equivalent dedup such as
-- `LIMIT 1 BY event_id`. A plain SELECT or count() can count a redelivered event twice.
-- agent_stats_1m is an exception, see below.
--
-- Times are UTC with millisecond precision: sub-millisecond digits of `ts` are dropped.

-- Every valid event. Secrets are redacted by the writer before they get here.
-- Optional fields absent from the event are stored as '' (strings), [] or {} (arrays,
-- maps) or NULL (numbers). Attribute values are stored as strings.
CREATE TABLE IF NOT EXISTS {database}.events
(
    event_id      String,
    ts            DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    -- A plain String: it leads the sort key, so it compresses to almost nothing, and
    -- fleets with short-lived agent ids would overflow a LowCardinality dictionary.
    agent_id      String,
    type          LowCardinality(String),
    agent_version LowCardinality(String),
    agent_type    LowCardinality(String),
    session_id    String,
    trace_id      String,
    span_id       String,
    tool_name     LowCardinality(String),
    tool_args     String CODEC(ZSTD(3)),                -- compact JSON, redacted; '' if absent
    dest_kinds    Array(LowCardinality(String)),        -- destinations[i].kind
    dest_values   Array(String),                        -- destinations[i].value, redacted
    status        LowCardinality(String),
    duration_ms   Nullable(Float64),
    bytes_in      Nullable(UInt64),
    bytes_out     Nullable(UInt64),
    model         LowCardinality(String),
    tokens_in     Nullable(UInt64),
    tokens_out    Nullable(UInt64),
    cost_usd      Nullable(Float64),
    secret_name   String,                               -- the name of a secret, never its value
    metrics       Map(LowCardinality(String), Float64),
    attributes    Map(LowCardinality(String), String) CODEC(ZSTD(3)),
    ingested_at   DateTime64(3, 'UTC') DEFAULT now64(3),
    INDEX idx_event_id event_id TYPE bloom_filter(0.01) GRANULARITY 4,
    INDEX idx_session_id session_id TYPE bloom_filter(0.01) GRANULARITY 4
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMMDD(ts)
ORDER BY (agent_id, ts, event_id)
TTL toDateTime(ts) + INTERVAL {events_ttl_days} DAY
SETTINGS ttl_only_drop_parts = 1, materialize_ttl_recalculate_only = 1;

-- What the detectors found. Read with FINAL.
CREATE TABLE IF NOT EXISTS {database}.anomalies
(
    anomaly_id    String,
    ts            DateTime64(3, 'UTC'),                 -- when the anomalous behaviour happened
    detected_at   DateTime64(3, 'UTC'),
    agent_id      String,
    session_id    String,
    agent_type    LowCardinality(String),
    detector      LowCardinality(String),
    detectors     Array(LowCardinality(String)),
    score         Float32,                              -- 0..100
    severity      LowCardinality(String),
    title         String,
    explanation   String,
    contributions String,                               -- JSON array of {feature, value, typical, unusual}
    event_ids     Array(String),
    labels        Map(LowCardinality(String), String),
    ingested_at   DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(ts)
ORDER BY (agent_id, ts, anomaly_id)
TTL toDateTime(ts) + INTERVAL {anomalies_ttl_days} DAY;

-- Messages (or parts of a batch message) rejected by the worker. No payload on purpose:
-- it may hold secrets; the original bytes stay on the Kafka dead-letter topic, found by
-- (topic, partition, offset). One row per rejected part: `item` is its index in the
-- message. Read with FINAL.
CREATE TABLE IF NOT EXISTS {database}.dead_letters
(
    ts            DateTime64(3, 'UTC'),                 -- when the worker received the message
    topic         LowCardinality(String),
    `partition`   Int32,
    `offset`      Int64,
    item          UInt32,
    key           String,
    reason        LowCardinality(String),
    detail        String,
    size_bytes    UInt64,
    ingested_at   DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(ts)
ORDER BY (topic, `partition`, `offset`, item)
TTL toDateTime(ts) + INTERVAL {events_ttl_days} DAY;

-- Per agent, minute and event type, for dashboards. Filled by agent_stats_1m_mv on every
-- insert into events. Rows are summed by background merges, so read with sum() and
-- GROUP BY (not FINAL):
--   SELECT minute, agent_id, sum(events) FROM {database}.agent_stats_1m
--   WHERE minute >= now() - INTERVAL 1 HOUR GROUP BY minute, agent_id
-- The view sees every insert, duplicates included: an event delivered twice is counted
-- twice here (the worker drops the redeliveries it remembers, so this is rare). Exact
-- figures come from events FINAL.
CREATE TABLE IF NOT EXISTS {database}.agent_stats_1m
(
    minute        DateTime('UTC'),
    agent_id      String,
    agent_type    LowCardinality(String),
    type          LowCardinality(String),
    events        UInt64,
    errors        UInt64,                               -- status = 'error'
    denied        UInt64,                               -- status = 'denied'
    bytes_in      UInt64,
    bytes_out     UInt64,
    tokens_in     UInt64,
    tokens_out    UInt64,
    cost_usd      Float64,
    duration_ms   Float64                               -- sum; divide by events for a mean
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMMDD(minute)
ORDER BY (agent_id, minute, type, agent_type)
TTL minute + INTERVAL {events_ttl_days} DAY
SETTINGS ttl_only_drop_parts = 1, materialize_ttl_recalculate_only = 1;

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.agent_stats_1m_mv
TO {database}.agent_stats_1m
AS SELECT
    toStartOfMinute(ts)                 AS minute,
    agent_id,
    agent_type,
    type,
    count()                             AS events,
    countIf(status = 'error')           AS errors,
    countIf(status = 'denied')          AS denied,
    sum(ifNull(bytes_in, 0))            AS bytes_in,
    sum(ifNull(bytes_out, 0))           AS bytes_out,
    sum(ifNull(tokens_in, 0))           AS tokens_in,
    sum(ifNull(tokens_out, 0))          AS tokens_out,
    sum(ifNull(cost_usd, 0))            AS cost_usd,
    sum(ifNull(duration_ms, 0))         AS duration_ms
FROM {database}.events
GROUP BY minute, agent_id, agent_type, type;

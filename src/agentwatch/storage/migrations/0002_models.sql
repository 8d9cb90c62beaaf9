-- 0002_models: model snapshots, analyst feedback and the record of baseline changes.
--
-- Rendered by agentwatch.storage.migrate like 0001 ({database} is replaced; any other
-- {name} is left alone). Every statement is idempotent (IF NOT EXISTS). Never edit this
-- file once it has shipped: add a new NNNN_<name>.sql instead.
--
-- Times are UTC with millisecond precision.

-- Every model snapshot a worker wrote: the whole per-agent model state (msgpack, see
-- DetectionEngine.snapshot), written periodically for the agents that changed, when a
-- partition is revoked, at shutdown, after feedback and after a revert. `ts` is when the
-- snapshot was taken (wall time), `event_ts` the agent's latest event time then, `offset`
-- the next offset of its events-topic partition the model had not seen (-1: unknown): a
-- restarted worker replays the agent's messages from there up to the committed offset, so
-- the model continues exactly where it stopped. Listed by `agentwatch models snapshots
-- <agent>`; `agentwatch models revert` goes back to one.
-- Plain MergeTree: rows are never replaced; a retried insert can leave two rows with the
-- same snapshot_id and identical content (read with LIMIT 1 BY snapshot_id).
--
-- RETENTION: the history is kept 30 days (whole daily parts are dropped). The newest
-- snapshot of every agent is kept apart in model_latest below, so an agent that has been
-- quiet for longer than the history still gets its baseline back.
CREATE TABLE IF NOT EXISTS {database}.model_snapshots
(
    agent_id      String,
    snapshot_id   String,
    ts            DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    event_ts      DateTime64(3, 'UTC'),
    `partition`   Int32,                                -- events topic partition of the agent
    `offset`      Int64,                                -- next offset of that partition not in the state
    reason        LowCardinality(String),               -- periodic|revoke|shutdown|feedback|revert
    events        UInt64,                               -- events the model had seen
    format        UInt16,                               -- snapshot format (engine.SNAPSHOT_FORMAT)
    size_bytes    UInt64,                               -- length of state
    state         String CODEC(ZSTD(3)),
    INDEX idx_snapshot_id snapshot_id TYPE bloom_filter(0.01) GRANULARITY 4
)
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (agent_id, ts)
TTL toDateTime(ts) + INTERVAL 30 DAY
SETTINGS ttl_only_drop_parts = 1;

-- The newest snapshot of each agent: what a worker restores when it is assigned the
-- agent's partition or restarts. Filled by model_latest_mv from every insert into
-- model_snapshots; background merges keep the row with the greatest `ts`, so read with
-- `ORDER BY ts DESC LIMIT 1 BY agent_id` (or FINAL).
-- RETENTION: an agent with no snapshot for 365 days (no events for that long) is dropped
-- and starts over with a fresh baseline if it comes back.
CREATE TABLE IF NOT EXISTS {database}.model_latest
(
    agent_id      String,
    snapshot_id   String,
    ts            DateTime64(3, 'UTC'),
    event_ts      DateTime64(3, 'UTC'),
    `partition`   Int32,
    `offset`      Int64,
    reason        LowCardinality(String),
    events        UInt64,
    format        UInt16,
    size_bytes    UInt64,
    state         String CODEC(ZSTD(3))
)
ENGINE = ReplacingMergeTree(ts)
ORDER BY agent_id
TTL toDateTime(ts) + INTERVAL 365 DAY;

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.model_latest_mv
TO {database}.model_latest
AS SELECT agent_id, snapshot_id, ts, event_ts, `partition`, `offset`, reason, events,
          format, size_bytes, state
FROM {database}.model_snapshots;

-- Per events-topic partition, an offset every agent's newest snapshot is complete up to:
-- written after a round of snapshots covered every agent of the partition that had
-- changed. A restarted worker replays the partition from here (not from the oldest
-- snapshot of a quiet agent). Read the newest per partition (FINAL).
CREATE TABLE IF NOT EXISTS {database}.model_checkpoints
(
    topic         LowCardinality(String),
    `partition`   Int32,
    `offset`      Int64,
    ts            DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(ts)
ORDER BY (topic, `partition`);

-- Analyst actions, as applied by the worker that holds the agent: `benign` verdicts
-- (`keys` joined the agent's baseline; `anomaly_id` is the anomaly they came from) and
-- `revert`s (the model went back to `snapshot_id`). `ts` is when the analyst sent it,
-- `applied_at` when the worker applied it. Keyed by feedback_id (one per request): a
-- redelivered control message collapses into one row. Read with FINAL. Kept forever:
-- it is the audit trail of who changed which baseline and why.
CREATE TABLE IF NOT EXISTS {database}.feedback
(
    feedback_id   String,
    ts            DateTime64(3, 'UTC'),
    applied_at    DateTime64(3, 'UTC'),
    agent_id      String,
    action        LowCardinality(String),               -- benign|revert
    anomaly_id    String,
    keys          Array(String),
    snapshot_id   String,
    who           String,
    why           String
)
ENGINE = ReplacingMergeTree(applied_at)
PARTITION BY toYYYYMM(ts)
ORDER BY (agent_id, feedback_id);

-- Every change of a baseline other than learning: a new agent_version (the engine starts
-- a new baseline seeded from the previous one and the peer group), benign verdicts and
-- reverts. `ts` is the event time of the change (version changes) or when it was applied.
-- Identical rows (a replayed event, a redelivered control message) collapse: read with
-- FINAL.
CREATE TABLE IF NOT EXISTS {database}.baseline_changes
(
    ts            DateTime64(3, 'UTC'),
    agent_id      String,
    kind          LowCardinality(String),               -- version_change|benign|revert
    detail        String,
    ingested_at   DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(ts)
ORDER BY (agent_id, ts, kind, detail)
TTL toDateTime(ts) + INTERVAL 365 DAY;

-- `agentwatch feedback benign <anomaly_id>` looks an anomaly up by id alone.
ALTER TABLE {database}.anomalies
    ADD INDEX IF NOT EXISTS idx_anomaly_id anomaly_id TYPE bloom_filter(0.01) GRANULARITY 4;

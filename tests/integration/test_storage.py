"""Storage against the real embedded ClickHouse (chDB) in a temporary directory.

chDB runs one engine per process, on one data dir at a time, so this module opens a single
dir for all its tests (module scope; closed at the end so later tests may open another
dir) and gives each test its own database.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import textwrap
import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import msgspec
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

from agentwatch.config import StorageSettings
from agentwatch.schemas.anomaly import Anomaly, Contribution
from agentwatch.schemas.events import EVENT_TYPES, Destination, Event
from agentwatch.storage import migrate, queries
from agentwatch.storage.client import Client, StorageError, connect
from agentwatch.storage.migrate import (
    MigrationError,
    apply_migrations,
    load_migrations,
    split_statements,
)
from agentwatch.storage.writer import DeadLetterRow, EventStore

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def chdb_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("clickhouse")


@pytest.fixture(scope="module")
def client(chdb_dir: Path) -> Iterator[Client]:
    ch = connect(f"chdb://{chdb_dir}")
    yield ch
    ch.close()


@pytest.fixture
def settings(client: Client) -> Iterator[StorageSettings]:
    """Fresh, migrated database of its own for each test."""
    s = StorageSettings(database=f"t_{uuid.uuid4().hex[:12]}", insert_batch_rows=1000)
    apply_migrations(client, s)
    yield s
    client.command(f"DROP DATABASE IF EXISTS {s.database} SYNC")


@pytest.fixture
def store(client: Client, settings: StorageSettings) -> EventStore:
    return EventStore.from_settings(client, settings)


def now_ms() -> datetime:
    """Now, truncated to milliseconds (the precision stored)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def full_event(kind: str, i: int = 0, ts: datetime | None = None) -> Event:
    """An event of type ``kind`` with every field set."""
    return Event(
        schema_version="1",
        event_id=f"{kind}-{i}-{uuid.uuid4().hex[:8]}",
        ts=ts or now_ms() - timedelta(seconds=i),
        agent_id=f"agent-{i % 3}",
        type=kind,  # type: ignore[arg-type]
        agent_version="1.2.3",
        agent_type="support-bot",
        session_id=f"sess-{i}",
        trace_id=uuid.uuid4().hex,
        span_id=uuid.uuid4().hex[:16],
        tool_name="http.get",
        tool_args={"url": "https://api.example.com/v1/x", "n": i, "nested": {"a": [1, 2.5, None]}},
        destinations=[
            Destination(kind="host", value="api.example.com"),
            Destination(kind="url", value="https://api.example.com/v1/x?q=1"),
        ],
        status="error" if i % 4 == 3 else "ok",
        duration_ms=12.5 + i,
        bytes_in=100 + i,
        bytes_out=2000 + i,
        model="gpt-4o",
        tokens_in=10 + i,
        tokens_out=20 + i,
        cost_usd=0.25 * (i + 1),
        secret_name="prod/db",
        metrics={"latency_ms": 3.5, "queue": float(i)},
        attributes={"env": "prod", "retries": 2, "ok": True, "ratio": 0.5},
    )


def as_stored(event: Event) -> Event:
    """``event`` as storage returns it: attribute values are strings."""
    attributes = {
        k: ("true" if v else "false") if isinstance(v, bool) else str(v)
        for k, v in (event.attributes or {}).items()
    }
    return msgspec.structs.replace(event, attributes=attributes or None)


def raw_table(client: Client, table: str) -> bytes:
    """Every stored byte of ``table`` as TSV (all rows, all columns, no dedup)."""
    return bytes(client.raw_query(f"SELECT * FROM {table} FORMAT TabSeparated"))


# --- migrations ---------------------------------------------------------------------------


def test_migrations_are_idempotent_and_recorded(client: Client) -> None:
    s = StorageSettings(database=f"m_{uuid.uuid4().hex[:12]}")
    shipped = [m.version for m in load_migrations()]
    assert shipped[0] == 1
    assert shipped == sorted(set(shipped))
    assert apply_migrations(client, s) == shipped
    assert apply_migrations(client, s) == []
    tables = set(client.query(f"SHOW TABLES FROM {s.database}").result_columns[0])
    assert {
        "events",
        "anomalies",
        "dead_letters",
        "agent_stats_1m",
        "agent_stats_1m_mv",
        "schema_migrations",
    } <= tables
    rows = client.query(
        f"SELECT version, name, checksum FROM {s.database}.schema_migrations FINAL"
    ).result_rows
    assert sorted(rows) == [
        (m.version, m.name, hashlib.sha256(m.sql.encode()).hexdigest()) for m in load_migrations()
    ]


def test_new_migration_applied_and_changed_one_refused(client: Client, tmp_path: Path) -> None:
    s = StorageSettings(database=f"m_{uuid.uuid4().hex[:12]}")
    migrations = tmp_path / "migrations"
    shutil.copytree(Path(migrate.__file__).parent / "migrations", migrations)
    shipped = [m.version for m in load_migrations()]
    assert apply_migrations(client, s, migrations_dir=migrations) == shipped

    later = max(shipped) + 1
    (migrations / f"{later:04d}_extra.sql").write_text(
        "-- a later migration; {database} is rendered\n"
        "ALTER TABLE {database}.events ADD COLUMN IF NOT EXISTS note String DEFAULT '';\n"
    )
    assert apply_migrations(client, s, migrations_dir=migrations) == [later]
    assert apply_migrations(client, s, migrations_dir=migrations) == []

    init = migrations / "0001_init.sql"
    init.write_text(init.read_text() + "\n-- edited after it shipped\n")
    with pytest.raises(MigrationError, match=r"0001_init\.sql changed after it was applied"):
        apply_migrations(client, s, migrations_dir=migrations)


def test_recorded_checksum_mismatch_refused(client: Client, settings: StorageSettings) -> None:
    client.insert(
        f"{settings.database}.schema_migrations",
        [[1, "init", "0" * 64, datetime.now(UTC) + timedelta(seconds=1)]],
        column_names=["version", "name", "checksum", "applied_at"],
    )
    with pytest.raises(MigrationError, match="changed after it was applied"):
        apply_migrations(client, settings)


def test_ttls_follow_settings(client: Client, settings: StorageSettings) -> None:
    def ttl_of(table: str) -> str:
        create = str(client.command(f"SHOW CREATE TABLE {settings.database}.{table}"))
        return create[create.index("TTL ") :].split("\\n")[0]

    assert ttl_of("events") == "TTL toDateTime(ts) + toIntervalDay(30)"
    assert ttl_of("anomalies") == "TTL toDateTime(ts) + toIntervalDay(365)"
    assert ttl_of("dead_letters") == "TTL toDateTime(ts) + toIntervalDay(30)"
    assert ttl_of("agent_stats_1m") == "TTL minute + toIntervalDay(30)"

    changed = settings.model_copy(update={"events_ttl_days": 7, "anomalies_ttl_days": 90})
    assert apply_migrations(client, changed) == []
    assert ttl_of("events") == "TTL toDateTime(ts) + toIntervalDay(7)"
    assert ttl_of("anomalies") == "TTL toDateTime(ts) + toIntervalDay(90)"
    assert ttl_of("agent_stats_1m") == "TTL minute + toIntervalDay(7)"


def test_bad_database_name_rejected(client: Client) -> None:
    with pytest.raises(StorageError, match="database name"):
        apply_migrations(client, StorageSettings(database="x; DROP TABLE y"))


def test_split_statements_ignores_semicolons_in_comments_and_strings() -> None:
    sql = "-- a; b\nSELECT 'x;y' /* c; */;\n\nSELECT 2; -- end;\n"
    assert split_statements(sql) == ["SELECT 'x;y'", "SELECT 2"]


# --- events -------------------------------------------------------------------------------


def test_events_of_every_type_round_trip(
    client: Client, store: EventStore, settings: StorageSettings
) -> None:
    events = [full_event(kind, i) for i, kind in enumerate(EVENT_TYPES)]
    minimal = Event(
        schema_version="1", event_id="min-1", ts=now_ms(), agent_id="agent-min", type="network"
    )
    assert store.insert_events([*events, minimal]) == len(events) + 1

    rows = queries.events_by_id(client, settings.database, [e.event_id for e in events])
    got = {row["event_id"]: queries.row_to_event(row) for row in rows}
    assert got == {e.event_id: as_stored(e) for e in events}

    (row,) = queries.events_by_id(client, settings.database, ["min-1"])
    assert queries.row_to_event(row) == minimal
    assert row["tool_args"] == ""
    assert row["bytes_out"] is None
    assert row["metrics"] == {}
    assert row["ts"].tzinfo is UTC
    assert row["ingested_at"] >= minimal.ts


def test_timestamps_in_other_zones_stored_as_utc(
    client: Client, store: EventStore, settings: StorageSettings
) -> None:
    ts = now_ms()
    local = ts.astimezone(timezone(timedelta(hours=5, minutes=30)))
    event = Event(schema_version="1", event_id="tz-1", ts=local, agent_id="a", type="metric")
    store.insert_events([event])
    (row,) = queries.events_by_id(client, settings.database, ["tz-1"])
    assert row["ts"] == ts
    assert row["ts"].utcoffset() == timedelta(0)


def test_redelivered_events_are_one_row_each(client: Client, settings: StorageSettings) -> None:
    store = EventStore(client, settings.database, batch_rows=3)
    events = [full_event(EVENT_TYPES[i % len(EVENT_TYPES)], i) for i in range(10)]
    store.insert_events(events)
    store.insert_events(events[4:])  # a redelivered tail, in other batches
    store.insert_events(events)

    assert queries.event_count(client, settings.database) == 10
    rows = queries.events_by_id(client, settings.database, [e.event_id for e in events])
    assert sorted(r["event_id"] for r in rows) == sorted(e.event_id for e in events)
    assert queries.agent_count(client, settings.database) == 3
    # Without FINAL the duplicates are (still) visible: this is why every read uses it.
    plain = client.query(f"SELECT count() FROM {settings.database}.events").result_rows[0][0]
    assert plain >= 10


def test_batches_of_insert_batch_rows(client: Client, settings: StorageSettings) -> None:
    calls: list[int] = []

    class Spy:
        def insert(self, table: str, data: Sequence[Sequence[Any]], **kwargs: Any) -> None:
            calls.append(len(data[0]))
            client.insert(table, data, **kwargs)

    store = EventStore.from_settings(
        Spy(),  # type: ignore[arg-type]
        settings.model_copy(update={"insert_batch_rows": 7}),
    )
    assert store.insert_events([full_event("network", i) for i in range(20)]) == 20
    assert calls == [7, 7, 6]
    assert queries.event_count(client, settings.database) == 20


def test_a_batch_spanning_many_days_is_stored(client: Client, settings: StorageSettings) -> None:
    long_ttl = settings.model_copy(update={"events_ttl_days": 3650})
    apply_migrations(client, long_ttl)
    store = EventStore.from_settings(client, long_ttl)
    start = now_ms()
    events = [full_event("metric", i, ts=start - timedelta(days=i)) for i in range(150)]
    assert store.insert_events(events) == 150
    assert queries.event_count(client, settings.database) == 150


# --- secrets ------------------------------------------------------------------------------

SECRETS = {
    "password": "hunter2-correct-horse",
    "aws": "AKIAIOSFODNN7EXAMPLE",
    "gh": "ghp_" + "A1b2C3d4E5" * 4,
    "bearer": "abc.def-ghi_0123456789xyz",
    "url_pw": "s3cr3t-url-pass",
    "attr": "sk-" + "Z9y8X7w6V5" * 3,
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlLXZhbHVl",
    "pem": "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7",
    "header": "very-secret-api-key-value",
}


def secret_event(i: int) -> Event:
    return Event(
        schema_version="1",
        event_id=f"secret-{i}",
        ts=now_ms(),
        agent_id="agent-s",
        type="tool_call",
        tool_name="shell",
        tool_args={
            "db_password": SECRETS["password"],
            "cmd": f"aws s3 ls --key {SECRETS['aws']}",
            "headers": {
                "Authorization": f"Bearer {SECRETS['bearer']}",
                "X-Api-Key": SECRETS["header"],
            },
            "env": [f"GITHUB_TOKEN={SECRETS['gh']}", f"JWT={SECRETS['jwt']}"],
            "key_file": f"-----BEGIN PRIVATE KEY-----\n{SECRETS['pem']}\n-----END PRIVATE KEY-----",
            "page": 3,
        },
        destinations=[
            Destination(kind="url", value=f"postgres://app:{SECRETS['url_pw']}@db.internal/x")
        ],
        attributes={"note": f"used {SECRETS['attr']}", "apiKey": SECRETS["header"], "n": 1},
    )


def test_secrets_never_stored_in_clear(
    client: Client, store: EventStore, settings: StorageSettings
) -> None:
    store.insert_events([secret_event(i) for i in range(3)])
    store.insert_anomalies([anomaly(detail=f"sent to postgres://app:{SECRETS['url_pw']}@db")])
    store.insert_dead_letters(
        [
            DeadLetterRow(
                ts=now_ms(),
                topic="agentwatch.events.v1",
                partition=0,
                offset=1,
                reason="invalid_field",
                detail=f"bad value password={SECRETS['password']}",
            )
        ]
    )
    for table in ("events", "anomalies", "dead_letters", "agent_stats_1m"):
        dump = raw_table(client, f"{settings.database}.{table}")
        for name, secret in SECRETS.items():
            assert secret.encode() not in dump, f"{name} secret stored in clear in {table}"

    (row,) = queries.events_by_id(client, settings.database, ["secret-0"])
    args = msgspec.json.decode(row["tool_args"])
    assert args["db_password"] == "[REDACTED]"
    assert args["headers"] == {
        "Authorization": "[REDACTED]",
        "X-Api-Key": "[REDACTED]",
    }
    assert args["cmd"] == "aws s3 ls --key [REDACTED:aws_access_key_id]"
    assert args["page"] == 3
    assert row["dest_values"] == ["postgres://app:[REDACTED:url_password]@db.internal/x"]
    assert row["attributes"] == {
        "note": "used [REDACTED:api_key]",
        "apiKey": "[REDACTED]",
        "n": "1",
    }


def test_tool_args_without_secrets_stored_verbatim(
    client: Client, store: EventStore, settings: StorageSettings
) -> None:
    args = {"query": "weather in Paris", "max_tokens": 200, "author": "Ann", "tags": ["a", "b"]}
    event = Event(
        schema_version="1",
        event_id="plain-1",
        ts=now_ms(),
        agent_id="a",
        type="tool_call",
        tool_name="search",
        tool_args=args,
    )
    store.insert_events([event])
    (row,) = queries.events_by_id(client, settings.database, ["plain-1"])
    assert row["tool_args"] == msgspec.json.encode(args).decode()


# --- anomalies, dead letters, stats -------------------------------------------------------


def anomaly(i: int = 0, detail: str = "first request to a new host") -> Anomaly:
    ts = now_ms() - timedelta(minutes=i)
    return Anomaly(
        schema_version="1",
        anomaly_id=f"an-{i}-{uuid.uuid4().hex[:8]}",
        agent_id=f"agent-{i % 2}",
        ts=ts,
        detected_at=ts + timedelta(seconds=2),
        detector="new_destination",
        score=87.5,
        severity="high",
        title="New destination",
        explanation=detail,
        detectors=["new_destination", "rate"],
        contributions=[
            Contribution(
                feature="destination",
                value="evil.example",
                typical="api.example",
                unusual="never seen",
            ),
            Contribution(feature="bytes_out", value=1e6, typical=2e3, unusual="500x"),
        ],
        event_ids=["e1", "e2"],
        session_id="sess-1",
        agent_type="support-bot",
        labels={"team": "soc"},
    )


def test_anomalies_round_trip_and_dedup(
    client: Client, store: EventStore, settings: StorageSettings
) -> None:
    anomalies = [anomaly(i) for i in range(3)]
    store.insert_anomalies(anomalies)
    store.insert_anomalies(anomalies)  # redelivery
    rows = queries.latest_anomalies(client, settings.database, limit=10)
    assert [r["anomaly_id"] for r in rows] == [a.anomaly_id for a in anomalies]
    for row, a in zip(rows, anomalies, strict=True):
        expected = msgspec.to_builtins(a)
        for field in ("anomaly_id", "agent_id", "detector", "severity", "title", "explanation"):
            assert row[field] == expected[field]
        assert row["ts"] == a.ts
        assert row["detected_at"] == a.detected_at
        assert row["score"] == pytest.approx(a.score)
        assert row["detectors"] == a.detectors
        assert row["event_ids"] == a.event_ids
        assert row["contributions"] == expected["contributions"]
        assert row["labels"] == a.labels
        assert row["session_id"] == a.session_id
        assert row["agent_type"] == a.agent_type
    assert len(queries.latest_anomalies(client, settings.database, limit=2)) == 2


def test_dead_letters_stored_without_payload(
    client: Client, store: EventStore, settings: StorageSettings
) -> None:
    received = now_ms()
    rows = [
        DeadLetterRow(received, "agentwatch.events.v1", 0, 10, "bad_json", "not JSON", b"a", 42),
        # Two rejected parts of one batch message: both kept.
        DeadLetterRow(received, "agentwatch.events.v1", 1, 7, "missing_field", "`ts`", "b", 900),
        DeadLetterRow(
            received, "agentwatch.events.v1", 1, 7, "invalid_field", "`bytes_in`", "b", 900
        ),
        DeadLetterRow(received, "agentwatch.events.v1", 2, 3, "bad_json", "", None, 5),
    ]
    assert store.insert_dead_letters(rows) == 4
    assert store.insert_dead_letters(rows) == 4  # redelivery
    assert queries.dead_letter_counts(client, settings.database) == {
        "bad_json": 2,
        "invalid_field": 1,
        "missing_field": 1,
    }
    stored = queries.dead_letters(client, settings.database)
    assert len(stored) == 4
    by_coordinates = {(r["partition"], r["offset"], r["item"]): r for r in stored}
    assert by_coordinates[(1, 7, 1)]["reason"] == "invalid_field"
    assert by_coordinates[(0, 10, 0)]["key"] == "a"
    assert by_coordinates[(0, 10, 0)]["size_bytes"] == 42
    assert by_coordinates[(0, 10, 0)]["ts"] == received
    columns = client.query(f"DESCRIBE TABLE {settings.database}.dead_letters").result_columns[0]
    assert not {"payload", "raw", "value", "message"} & set(columns)


def test_agent_stats_1m_aggregates(
    client: Client, store: EventStore, settings: StorageSettings
) -> None:
    base = now_ms().replace(second=0, microsecond=0) - timedelta(minutes=5)
    events = [
        full_event(EVENT_TYPES[i % 3], i, ts=base + timedelta(seconds=7 * i)) for i in range(40)
    ]
    # Inserted in several blocks: the rows are summed only when read with sum()/GROUP BY.
    for start in range(0, 40, 9):
        store.insert_events(events[start : start + 9])

    expected: dict[tuple[Any, ...], list[float]] = defaultdict(lambda: [0.0] * 8)
    for e in events:
        minute = e.ts.replace(second=0, microsecond=0)
        acc = expected[(minute, e.agent_id, e.type)]
        acc[0] += 1
        acc[1] += e.status == "error"
        acc[2] += e.bytes_in or 0
        acc[3] += e.bytes_out or 0
        acc[4] += e.tokens_in or 0
        acc[5] += e.tokens_out or 0
        acc[6] += e.cost_usd or 0
        acc[7] += e.duration_ms or 0
    result = client.query(
        f"""
        SELECT minute, agent_id, type, sum(events), sum(errors), sum(bytes_in), sum(bytes_out),
               sum(tokens_in), sum(tokens_out), sum(cost_usd), sum(duration_ms)
        FROM {settings.database}.agent_stats_1m
        GROUP BY minute, agent_id, type
        """
    ).result_rows
    got = {(m.replace(tzinfo=UTC), a, t): list(rest) for m, a, t, *rest in result}
    assert got.keys() == expected.keys()
    for key, values in expected.items():
        assert got[key] == pytest.approx(values), key


# --- writer errors ------------------------------------------------------------------------


class FailingClient:
    def __init__(self, errors: list[Exception]) -> None:
        self.errors = errors
        self.calls = 0

    def insert(self, *args: Any, **kwargs: Any) -> None:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)


def test_transient_errors_retried_then_reported() -> None:
    sleeps: list[float] = []
    flaky = FailingClient([OperationalError("connection refused"), DatabaseError("x", code=252)])
    store = EventStore(flaky, "db", attempts=4, backoff_s=0.1, sleep=sleeps.append)  # type: ignore[arg-type]
    assert store.insert_events([full_event("network")]) == 1
    assert flaky.calls == 3
    assert sleeps == [0.1, 0.2]

    down = FailingClient([OperationalError("timed out password=hunter2")] * 5)
    store = EventStore(down, "db", attempts=3, backoff_s=0.0, sleep=sleeps.append)  # type: ignore[arg-type]
    with pytest.raises(StorageError, match="failed 3 times") as info:
        store.insert_events([full_event("network")])
    assert info.value.transient
    assert down.calls == 3
    assert "hunter2" not in str(info.value)


def test_permanent_error_not_retried() -> None:
    broken = FailingClient([DatabaseError("Code: 16. No such column", code=16)])
    store = EventStore(broken, "db", sleep=lambda _: None)  # type: ignore[arg-type]
    with pytest.raises(StorageError) as info:
        store.insert_anomalies([anomaly()])
    assert not info.value.transient
    assert broken.calls == 1


def test_empty_inputs_do_nothing() -> None:
    idle = FailingClient([])
    store = EventStore(idle, "db")  # type: ignore[arg-type]
    assert store.insert_events([]) == store.insert_anomalies([]) == 0
    assert store.insert_dead_letters([]) == 0
    assert idle.calls == 0


# --- connecting ---------------------------------------------------------------------------


def test_unsupported_dsns_rejected() -> None:
    with pytest.raises(StorageError, match="unsupported storage DSN"):
        connect("mysql://root:pw@localhost/x")
    with pytest.raises(StorageError, match="absolute directory"):
        connect("chdb://relative/dir")


def test_unreachable_server_error_hides_password() -> None:
    with pytest.raises(StorageError) as info:
        connect("http://default:TopSecretPw1@127.0.0.1:9/agentwatch")
    message = str(info.value)
    assert "TopSecretPw1" not in message
    assert "127.0.0.1:9" in message
    assert info.value.__cause__ is None


def test_one_data_dir_per_process(client: Client, chdb_dir: Path, tmp_path: Path) -> None:
    # A second client on the same dir shares the engine...
    second = connect(f"chdb://{chdb_dir}")
    assert second.command("SELECT 1") == 1
    second.close()
    # ...a second dir is refused while the first is open.
    with pytest.raises(StorageError, match="one data dir per process"):
        connect(f"chdb://{tmp_path / 'other'}")


def test_locked_dir_names_the_likely_cause(tmp_path: Path) -> None:
    holder = textwrap.dedent(
        """
        import sys, time
        from agentwatch.storage.client import connect
        client = connect(sys.argv[1])
        client.command("SELECT 1")
        print("open", flush=True)
        time.sleep(30)
        """
    )
    opener = textwrap.dedent(
        """
        import sys
        from agentwatch.storage.client import StorageError, connect
        try:
            connect(sys.argv[1])
        except StorageError as exc:
            print(exc)
        """
    )
    dsn = f"chdb://{tmp_path / 'locked'}"
    with subprocess.Popen(
        [sys.executable, "-c", holder, dsn], stdout=subprocess.PIPE, text=True
    ) as proc:
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "open"
            out = subprocess.run(
                [sys.executable, "-c", opener, dsn],
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            )
            assert "is another agentwatch worker running on this data dir?" in out.stdout
        finally:
            proc.kill()

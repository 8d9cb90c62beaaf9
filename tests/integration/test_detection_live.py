"""Detection on real parts: a fleet goes through the broker and a worker, and the planted
behaviours come back as anomalies from the right detector with a readable explanation.

One stream, in event time (one partition, so the worker sees it in order), two and a half
hours of a small fleet:

* ``exfil-bot`` reads a secret and sends to its usual hosts, then reads a secret and sends
  to a host it never used → ``flow_rule:secret_then_new_destination`` with ``new_destination``;
* ``burst-bot`` calls tools at a steady pace, then 300 calls in one minute → ``rate``;
* ``quiet-bot`` works every minute, then goes silent → ``rate`` on the low side;
* ``drift-bot`` raises its tool calls by 3 % a minute after an hour → ``baseline_drift``;
* ``benign-*`` agents do their routine with ordinary jitter → nothing at all.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kafka import KafkaProducer

from agentwatch.config import DetectSettings, KafkaSettings, LimitSettings, Settings, WorkerSettings
from agentwatch.embedded.stack import Stack
from agentwatch.schemas.anomaly import Anomaly, decode_anomaly
from agentwatch.schemas.events import Destination, Event, encode_event
from tests.integration.pipeline_support import read_topic, wait_for, worker_stats

pytestmark = pytest.mark.integration

MINUTES = 150
HOSTS = ("api.crm.example.com", "mail.example.com", "files.example.com")
EXFIL_HOST = "paste.attacker-owned.example"
EXFIL_AT = 120  # minute of the planted exfiltration
BURST_AT = 100
QUIET_FROM = 90
DRIFT_FROM = 60


@dataclass
class Scenario:
    start: datetime
    events: list[Event] = field(default_factory=list)
    planted: dict[str, list[str]] = field(default_factory=dict)  # agent → planted event ids

    def add(self, agent: str, minute: float, **fields: object) -> Event:
        event = Event(
            schema_version="1",
            event_id=str(uuid.uuid4()),
            ts=self.start + timedelta(minutes=minute),
            agent_id=agent,
            **fields,  # type: ignore[arg-type]
        )
        self.events.append(event)
        return event


def routine_call(s: Scenario, agent: str, group: str, minute: float, k: int, session: str) -> None:
    tool = ("search", "http_post", "send_email")[k % 3]
    s.add(
        agent,
        minute,
        agent_type=group,
        session_id=session,
        type="tool_call",
        tool_name=tool,
        tool_args={"query": "open tickets", "limit": 20},
        destinations=[Destination(kind="host", value=HOSTS[k % 3])],
        bytes_out=400 + (k * 37) % 200,
        bytes_in=2000 + (k * 53) % 900,
        duration_ms=80.0 + (k * 7) % 40,
    )


def build(start: datetime, seed: int = 5) -> Scenario:
    rng = random.Random(seed)
    s = Scenario(start)
    for minute in range(MINUTES):
        # benign agents: a session of 4–6 calls every minute
        for b in range(3):
            agent = f"benign-{b}"
            for k in range(rng.randint(4, 6)):
                routine_call(s, agent, "benign", minute + k / 10, k, f"{agent}-{minute}")
        # exfil-bot: every third minute a session that reads a secret, then sends
        if minute % 3 == 0:
            session = f"exfil-{minute}"
            s.add(
                "exfil-bot",
                minute,
                agent_type="exporter",
                session_id=session,
                type="secret_access",
                secret_name="vault:kv/export/api-token",
            )
            for k in range(3):
                routine_call(s, "exfil-bot", "exporter", minute + 0.1 + k / 10, k, session)
        if minute == EXFIL_AT:
            session = "exfil-planted"
            read = s.add(
                "exfil-bot",
                minute + 0.5,
                agent_type="exporter",
                session_id=session,
                type="secret_access",
                secret_name="vault:kv/export/api-token",
            )
            send = s.add(
                "exfil-bot",
                minute + 0.6,
                agent_type="exporter",
                session_id=session,
                type="tool_call",
                tool_name="http_post",
                tool_args={"query": "open tickets", "limit": 20},
                destinations=[Destination(kind="host", value=EXFIL_HOST)],
                bytes_out=450,
            )
            s.planted["exfil-bot"] = [read.event_id, send.event_id]
        # burst-bot: about 8 calls a minute, then 300 in one minute
        calls = 300 if minute == BURST_AT else rng.randint(7, 9)
        for k in range(calls):
            routine_call(s, "burst-bot", "batch", minute + k / (calls + 1), k, f"burst-{minute}")
        # quiet-bot: 10 calls every minute until it stops
        if minute < QUIET_FROM:
            for k in range(10):
                routine_call(s, "quiet-bot", "poller", minute + k / 11, k, f"quiet-{minute}")
        # drift-bot: 20 calls a minute, +3 % a minute after DRIFT_FROM
        level = 20.0 * (1.03 ** max(0, minute - DRIFT_FROM))
        n = max(1, round(level + rng.uniform(-2, 2)))
        for k in range(n):
            routine_call(s, "drift-bot", "crawler", minute + k / (n + 1), k, f"drift-{minute}")
    s.events.sort(key=lambda e: e.ts)
    return s


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    data_dir: Path = tmp_path_factory.mktemp("detection")
    settings = Settings(
        data_dir=data_dir,
        # one partition: the worker sees the fleet's event time in order
        kafka=KafkaSettings(partitions=1, session_timeout_ms=6000, heartbeat_interval_ms=2000),
        limits=LimitSettings(max_message_bytes=256 * 1024),
        worker=WorkerSettings(batch_within_s=0.05),
        detect=DetectSettings(warmup_events=20),
    )
    with Stack(settings, log_dir=data_dir / "logs") as running:
        running.start(workers=1)
        yield running


@dataclass
class Outcome:
    anomalies: dict[str, list[Anomaly]]  # by agent
    planted: dict[str, list[str]]
    start: datetime

    def minute(self, anomaly: Anomaly) -> float:
        """When the anomaly happened, in minutes of the scenario."""
        return (anomaly.ts - self.start).total_seconds() / 60


@pytest.fixture(scope="module")
def outcome(stack: Stack) -> Outcome:
    # minutes of the scenario are the engine's (epoch-aligned) windows
    scenario = build((datetime.now(UTC) - timedelta(hours=3)).replace(second=0, microsecond=0))
    worker = stack.workers[0]
    before = worker_stats(worker)["events_valid"]
    producer = KafkaProducer(bootstrap_servers=stack.bootstrap, linger_ms=5)
    for event in scenario.events:
        producer.send(
            "agentwatch.events.v1", key=event.agent_id.encode(), value=encode_event(event)
        )
    producer.flush()
    producer.close()
    wait_for(
        lambda: worker_stats(worker)["events_valid"] - before >= len(scenario.events),
        45,
        "the worker to consume the fleet",
    )
    by_agent: dict[str, list[Anomaly]] = {}

    def collect() -> bool:
        by_agent.clear()
        for record in read_topic(stack.bootstrap, "agentwatch.anomalies.v1"):
            anomaly = decode_anomaly(record.value)
            by_agent.setdefault(anomaly.agent_id, []).append(anomaly)
        return {"exfil-bot", "burst-bot", "quiet-bot", "drift-bot"} <= set(by_agent)

    wait_for(collect, 20, "anomalies of every planted agent", interval_s=1.0)
    return Outcome(by_agent, scenario.planted, scenario.start)


def test_secret_then_new_host_is_a_critical_flow_rule(outcome: Outcome) -> None:
    found = [a for a in outcome.anomalies["exfil-bot"] if EXFIL_HOST in a.explanation]
    assert found, [a.explanation for a in outcome.anomalies["exfil-bot"]]
    (anomaly,) = found
    assert "flow_rule:secret_then_new_destination" in anomaly.detectors
    assert "new_destination" in anomaly.detectors
    assert anomaly.score >= 92
    assert anomaly.severity == "critical"
    assert "a secret was read, then data went to a destination" in anomaly.explanation
    assert f"destination/host/{EXFIL_HOST}" in anomaly.labels["keys"].split()
    read, send = outcome.planted["exfil-bot"]
    assert read in anomaly.event_ids
    assert send in anomaly.event_ids
    # its routine (secrets read, then the usual hosts) raised nothing
    assert [a for a in outcome.anomalies["exfil-bot"] if a is not anomaly] == []


def test_a_burst_of_tool_calls_is_a_rate_anomaly(outcome: Outcome) -> None:
    found = [a for a in outcome.anomalies["burst-bot"] if "rate" in a.detectors]
    assert found
    # the burst's window and its session, nothing else
    assert all(
        BURST_AT <= outcome.minute(a) <= BURST_AT + 1 for a in outcome.anomalies["burst-bot"]
    )
    anomaly = max(found, key=lambda a: a.score)
    assert anomaly.score >= 75
    window = anomaly.labels["window"]
    assert window.startswith("window ")
    features = {c.feature: c for c in anomaly.contributions}
    assert {"events", "tool_calls"} & set(features)
    top = features.get("tool_calls") or features["events"]
    assert float(top.value) >= 300
    assert "high side" in top.unusual
    assert "in 60 s; typical" in anomaly.explanation


def test_an_agent_that_goes_quiet_is_flagged_on_the_low_side(
    outcome: Outcome,
) -> None:
    found = [a for a in outcome.anomalies["quiet-bot"] if "rate" in a.detectors]
    assert found
    first = min(found, key=lambda a: a.ts)
    assert first.explanation.startswith(("events 0 in 60 s", "tool_calls 0 in 60 s"))
    assert any(c.unusual.startswith("low side") for c in first.contributions)
    assert first.labels["window"].startswith("window ")
    # flagged from the first silent minute (a window's anomaly is stamped with its end) and
    # never while it worked
    assert outcome.minute(first) == QUIET_FROM + 1
    assert len(found) == len(outcome.anomalies["quiet-bot"])


def test_a_slow_drift_is_found_by_the_drift_detector(outcome: Outcome) -> None:
    found = [a for a in outcome.anomalies["drift-bot"] if "baseline_drift" in a.detectors]
    assert found, [a.explanation for a in outcome.anomalies["drift-bot"]]
    first = min(found, key=lambda a: a.ts)
    assert "drifting up" in first.explanation
    assert first.contributions[0].feature in {"events", "tool_calls", "bytes_out", "bytes_in"}
    # found while each window alone still looked ordinary: before any rate anomaly
    assert DRIFT_FROM < outcome.minute(first) <= DRIFT_FROM + 40
    earliest = min(outcome.anomalies["drift-bot"], key=lambda a: a.ts)
    assert "baseline_drift" in earliest.detectors


def test_benign_noise_raises_nothing(outcome: Outcome) -> None:
    noisy = {
        agent: [a.explanation for a in found]
        for agent, found in outcome.anomalies.items()
        if agent.startswith("benign")
    }
    assert noisy == {}

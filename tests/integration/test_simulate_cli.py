"""``agentwatch simulate`` as a user runs it: to a file, and to the real embedded broker."""

from __future__ import annotations

import gzip
import json
import warnings
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", r"\w+ is deprecated\. Use files\(\) instead")
    from agentwatch.embedded.broker import EmbeddedBroker

from agentwatch.config import KafkaSettings, TopicNames
from agentwatch.schemas.decode import Limits, decode_message
from agentwatch.sim import SimConfig, Simulation, read_truth, select
from agentwatch.sim.output import JsonlSink, drive
from agentwatch.streams.topics import ensure_topics
from tests.integration.pipeline_support import read_topic, run_cli

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def in_process(config: SimConfig, out: Path) -> bytes:
    sim = Simulation(config)
    sink = JsonlSink(out)
    drive(sim, [sink])
    sink.close()
    return out.read_bytes()


def test_simulate_to_a_file_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl.gz"
    done = run_cli("simulate", "--out", str(out), "--hours", "1", "--agents", "10", "--seed", "4")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ground truth:" in done.stderr
    lines = gzip.decompress(out.read_bytes()).splitlines()
    assert len(lines) > 2000
    limits = Limits(max_age_s=0)
    now = datetime(2026, 1, 6, tzinfo=UTC)
    events = []
    for line in lines:
        result = decode_message(line, key=None, limits=limits, now=now)
        assert result.rejects == []
        events.extend(result.events)
    assert len({e.agent_id for e in events}) == 10
    truth = read_truth(tmp_path / "events.truth.jsonl")  # the default place
    by_id = {e.event_id: e for e in events}
    assert {r.scenario for r in truth} >= set(select("attacks"))
    for record in truth:
        for event_id in record.event_ids:
            assert by_id[event_id].agent_id == record.agent_id
            assert record.start <= by_id[event_id].ts <= record.end
    # The command and the library give the same bytes (so: the same in any process).
    again = in_process(
        SimConfig(agents=10, hours=1, seed=4, scenarios=select("all")), tmp_path / "x.jsonl.gz"
    )
    assert again == out.read_bytes()


def test_simulate_options_and_errors(tmp_path: Path) -> None:
    truth = tmp_path / "labels.jsonl"
    done = run_cli(
        "simulate",
        "--out", str(tmp_path / "e.jsonl"),
        "--truth", str(truth),
        "--hours", "2",
        "--agents", "8",
        "--scenarios", "credential_theft=2,daily_peak",
        "--start", "2026-03-02T08:00:00Z",
        "--speed", "3600",
        "--no-progress",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    records = read_truth(truth)
    counts = Counter(r.scenario for r in records)
    assert counts["credential_theft"] == 2
    assert counts["daily_peak"] >= 1
    assert set(counts) == {"credential_theft", "daily_peak"}
    first = json.loads((tmp_path / "e.jsonl").read_text().splitlines()[0])
    assert first["ts"].startswith("2026-03-02T08:")
    listing = run_cli("simulate", "--list-scenarios")
    assert listing.returncode == 0
    for name in select("all"):
        assert name[:20] in listing.stderr
    for bad in (
        ["--out", str(tmp_path / "e.txt")],
        ["--out", str(tmp_path / "e.jsonl"), "--scenarios", "teleport"],
        ["--out", str(tmp_path / "e.jsonl"), "--speed", "warp"],
    ):
        refused = run_cli("simulate", *bad)
        assert refused.returncode == 2, refused.stderr
    nowhere = run_cli("simulate", "--hours", "0.1")
    assert nowhere.returncode == 2
    assert "nowhere to send events" in nowhere.stderr


@pytest.fixture(scope="module")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as running:
        yield running


def test_simulate_to_the_embedded_broker(broker: EmbeddedBroker, tmp_path: Path) -> None:
    names = TopicNames(events="sim-test.events", dlq="sim-test.dlq", anomalies="sim-test.anom")
    ensure_topics(broker.bootstrap, KafkaSettings(partitions=3, topics=names))
    truth = tmp_path / "truth.jsonl"
    start = "2026-01-05T09:00:00Z"
    done = run_cli(
        "simulate",
        "--bootstrap", broker.bootstrap,
        "--topic", names.events,
        "--truth", str(truth),
        "--hours", "0.25",
        "--agents", "6",
        "--seed", "2",
        "--start", start,
        "--scenarios", "credential_theft,lateral_movement",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    config = SimConfig(
        agents=6,
        hours=0.25,
        seed=2,
        start=datetime.fromisoformat(start),
        scenarios={"credential_theft": 1, "lateral_movement": 1},
    )
    sim = Simulation(config)
    expected = {e.event_id: e for e in sim}
    received = []
    limits = Limits(max_age_s=0)
    for record in read_topic(broker.bootstrap, names.events, timeout_s=30):
        result = decode_message(record.value, key=record.key, limits=limits, now=config.end)
        assert result.rejects == []
        received.extend(result.events)
    assert len(received) == len(expected)  # every event once
    assert all(expected[e.event_id] == e for e in received)
    assert read_truth(truth) == sim.truth()
    assert {r.scenario for r in sim.truth()} == {"credential_theft", "lateral_movement"}

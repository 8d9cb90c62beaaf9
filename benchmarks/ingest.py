"""Ingest throughput of one worker: Kafka → decode/validate → detect → ClickHouse.

Starts the embedded broker and one worker process on chDB in a temporary directory,
pre-loads the events topic with N events (in per-agent batch messages, as the SDK sends
them), then starts timing when the worker begins consuming and stops when every event is
stored. Prints events/s. ``--per-event`` runs the same pipeline built naively (one event
per Kafka message, one message per worker step) for comparison. Usage::

    .venv/bin/python -m benchmarks.ingest --events 200000 --batch 100 --agents 1000
    .venv/bin/python -m benchmarks.ingest --events 5000 --per-event
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kafka import KafkaProducer

from agentwatch.config import KafkaSettings, Settings, WorkerSettings
from agentwatch.embedded.stack import Stack
from agentwatch.schemas.events import Destination, Event, encode_events
from benchmarks.common import Figure

TOOLS = ["search_kb", "get_ticket", "reply_ticket", "send_email", "read_file", "http_get"]


def synthetic_batches(events: int, batch: int, agents: int, seed: int) -> list[tuple[bytes, bytes]]:
    rng = random.Random(seed)
    start = datetime.now(UTC) - timedelta(minutes=30)
    per_agent: dict[str, list[Event]] = {}
    messages: list[tuple[bytes, bytes]] = []
    for i in range(events):
        agent = f"bench-agent-{rng.randrange(agents):05d}"
        tool = rng.choice(TOOLS)
        event = Event(
            schema_version="1",
            event_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            ts=start + timedelta(milliseconds=i),
            agent_id=agent,
            type="tool_call",
            session_id=f"{agent}-s{i // 50_000}",
            tool_name=tool,
            tool_args={"query": "status of order", "limit": 10},
            destinations=[Destination(kind="host", value=f"api{rng.randrange(4)}.example.com")],
            status="ok",
            duration_ms=rng.uniform(5, 400),
            bytes_in=rng.randrange(100, 5000),
            bytes_out=rng.randrange(100, 2000),
        )
        pending = per_agent.setdefault(agent, [])
        pending.append(event)
        if len(pending) >= batch:
            messages.append((agent.encode(), encode_events(pending)))
            per_agent[agent] = []
    messages += [(a.encode(), encode_events(p)) for a, p in per_agent.items() if p]
    return messages


def run(
    events: int,
    batch: int = 100,
    agents: int = 1000,
    partitions: int = 8,
    seed: int = 1,
    *,
    per_event: bool = False,
) -> list[Figure]:
    """Pre-load the topic, then time one worker from its first stored event to the last.

    ``per_event`` builds the pipeline naively for comparison: one event per Kafka message
    and the worker taking one message at a time (decode, detect, insert per event).
    """
    if per_event:
        batch = 1
    messages = synthetic_batches(events, batch, agents, seed)
    size = sum(len(v) for _, v in messages)
    label = "naive (1 event/message, per-event processing)" if per_event else "batched"
    print(
        f"ingest {label}: {events:,} events in {len(messages):,} messages "
        f"({size / events:.0f} B/event), {agents:,} agents",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            data_dir=Path(tmp),
            kafka=KafkaSettings(
                partitions=partitions, session_timeout_ms=6000, heartbeat_interval_ms=2000
            ),
            worker=WorkerSettings(batch_max_messages=1) if per_event else WorkerSettings(),
        )
        with Stack(settings, log_dir=Path(tmp) / "logs") as stack:
            stack.start(workers=0)
            producer = KafkaProducer(
                bootstrap_servers=stack.bootstrap,
                linger_ms=20,
                batch_size=1 << 20,
                max_request_size=4 << 20,
            )
            t0 = time.perf_counter()
            for key, value in messages:
                producer.send(settings.kafka.topics.events, key=key, value=value)
            producer.flush()
            produce_s = time.perf_counter() - t0
            producer.close()
            worker = stack.start_worker()
            stack.wait_workers_ready(120)
            assigned: float | None = None  # partitions assigned: consumption can start
            first = None
            stats: dict[str, Any] = {}
            while True:
                stats = worker.stats() or stats
                now = time.perf_counter()
                if assigned is None and stats.get("partitions"):
                    assigned = now
                stored = int(stats.get("events_stored", 0))
                if first is None and stored > 0:
                    first = (now, stored)
                if stored >= events:
                    break
                if not worker.alive:
                    raise SystemExit(f"worker died; see {worker.log_path}")
                time.sleep(0.02)
            end = time.perf_counter()
    assert first is not None
    if first[1] <= events // 2 and end > first[0]:
        rate = (stored - first[1]) / (end - first[0])
    else:  # a small run stored in one or two batches: time it from the assignment
        rate = stored / (end - (assigned or first[0]))
    name = "naive" if per_event else "batched"
    return [
        Figure("ingest", f"{name}: produce", events / produce_s, "events/s", "kafka-python"),
        Figure(
            "ingest",
            f"{name}: one worker, decode+validate+detect+store",
            rate,
            "events/s",
            f"{events:,} events, {len(messages):,} messages",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=100, help="events per Kafka message")
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--per-event",
        action="store_true",
        help="the naive pipeline: one event per message, one message per worker step",
    )
    args = parser.parse_args()
    figures = run(
        args.events,
        args.batch,
        args.agents,
        args.partitions,
        args.seed,
        per_event=args.per_event,
    )
    for figure in figures:
        print(f"{figure.name}: {figure.formatted()} ({figure.note})")


if __name__ == "__main__":
    main()

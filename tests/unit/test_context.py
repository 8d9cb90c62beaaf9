"""The session tracker's snapshot state: what it carries, how compact, round trips."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec

from agentwatch.features.context import SessionTracker
from agentwatch.schemas.events import Event

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def ev(n: int, kind: str = "tool_call", *, session: str | None = "s1", **kw: object) -> Event:
    return Event(
        schema_version="1",
        event_id=f"e{n}",
        ts=T0 + timedelta(seconds=n, microseconds=n * 7),
        agent_id=str(kw.pop("agent", "a")),
        type=kind,
        session_id=session,
        **kw,  # type: ignore[arg-type]
    )


def round_trip(tracker: SessionTracker, agent: str = "a") -> SessionTracker:
    state = tracker.state_of(agent)
    assert state is not None
    restored = SessionTracker(tracker.max_sessions, tracker.max_secrets)
    restored.load_state(agent, msgspec.msgpack.decode(msgspec.msgpack.encode(state)))
    return restored


def test_unknown_agent_has_no_state() -> None:
    assert SessionTracker().state_of("nobody") is None


def test_round_trip_keeps_tools_secrets_order_and_count() -> None:
    tracker = SessionTracker()
    events = [
        ev(0, tool_name="search"),
        ev(1, "secret_access", secret_name="vault/db"),
        ev(2, tool_name="http_post", session="s2"),
        ev(3, "llm_call", session=None),  # no session id: the agent's sessionless stream
        ev(4, "secret_access", secret_name="vault/api", session="s2"),
        ev(5, "session_start", session="s3"),  # open, nothing yet: stored as its key only
    ]
    for event in events:
        tracker.observe(event)
    restored = round_trip(tracker)
    assert restored.state_of("a") == tracker.state_of("a")
    assert restored.events_of("a") == 6

    for follow in (
        ev(6, tool_name="send_email"),
        ev(7, tool_name="send_email", session="s2"),
        ev(8, tool_name="search", session="s3"),
        ev(9, tool_name="search", session=None),
    ):
        assert restored.observe(follow) == tracker.observe(follow)
    last = ev(10, tool_name="x", session="s2")
    ctx = restored.observe(last)
    assert ctx == tracker.observe(last)
    assert ctx.transition == ("send_email", "x")
    assert ctx.secrets_read == (("vault/api", events[4].ts),)  # microseconds kept
    assert restored.state_of("a") == tracker.state_of("a")


def test_ended_sessions_are_not_carried_and_state_is_compact() -> None:
    tracker = SessionTracker()
    n = 0
    for s in range(50):
        for tool in ("search", "http_post", "send_email"):
            tracker.observe(ev(n, tool_name=tool, session=f"agent-a-session-{s}"))
            n += 1
        tracker.observe(ev(n, "session_end", session=f"agent-a-session-{s}"))
        n += 1
    tracker.observe(ev(n, tool_name="search", session="agent-a-session-50"))
    state = tracker.state_of("a")
    assert state == {"n": 201, "s": [["agent-a-session-50", "search"]]}
    assert len(msgspec.msgpack.encode(state)) < 40


def test_loading_replaces_the_agent_and_respects_the_limits() -> None:
    big = SessionTracker(max_sessions_per_agent=8, max_secrets_per_session=4)
    for s in range(8):
        for k in range(4):
            big.observe(ev(s * 10 + k, "secret_access", secret_name=f"k{k}", session=f"s{s}"))
    small = SessionTracker(max_sessions_per_agent=3, max_secrets_per_session=2)
    small.observe(ev(99, tool_name="stale", session="s7"))
    state = big.state_of("a")
    assert state is not None
    small.load_state("a", state)
    carried = small.state_of("a")
    assert carried is not None
    assert [s[0] for s in carried["s"]] == ["s5", "s6", "s7"]  # most recently used kept
    assert [name for name, _ in carried["s"][-1][2]] == ["k2", "k3"]  # latest secrets kept
    assert carried["s"][-1][1] == "^"  # the stale in-memory session was replaced
    assert small.events_of("a") == 32
    # Other agents are untouched.
    small.observe(ev(1, tool_name="t", agent="b"))
    small.load_state("a", {"n": 0, "s": []})
    assert small.events_of("b") == 1
    assert small.state_of("a") == {"n": 0, "s": []}

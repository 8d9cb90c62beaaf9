"""Per-event context: what an event means given the agent's session so far. Pure code.

:class:`SessionTracker` keeps, per agent and open session, the previous tool and the
secrets read so far, and derives an :class:`EventContext` for each event: canonical
destinations, the tool transition (previous tool → this tool, ``^`` at a session's start),
the secrets read earlier in the session. Sessions end with ``session_end`` or are evicted
(least recently used) past ``max_sessions_per_agent``.

:meth:`SessionTracker.state_of` / :meth:`SessionTracker.load_state` carry one agent's event
count and open sessions through a model snapshot, so a restored model sees the next event
of an open session as the continuation it is (not as a session start).

Examples
--------
>>> from datetime import UTC, datetime
>>> from agentwatch.schemas.events import Event
>>> def call(tool):
...     return Event(schema_version="1", event_id=tool, agent_id="a", session_id="s1",
...                  ts=datetime(2026, 1, 1, tzinfo=UTC), type="tool_call", tool_name=tool)
>>> one, two = SessionTracker(), SessionTracker()
>>> one.observe(call("search")).transition
('^', 'search')
>>> two.load_state("a", one.state_of("a"))
>>> two.observe(call("send_email")).transition  # the session goes on
('search', 'send_email')
>>> two.events_of("a")
2
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from agentwatch.features.destinations import destination_keys
from agentwatch.schemas.events import Event

SESSION_START = "^"
NO_SESSION = ""


def peer_group_of(event: Event) -> str:
    """The peer group: ``attributes.peer_group``, else ``agent_type``, else ``default``."""
    if event.attributes:
        group = event.attributes.get("peer_group")
        if isinstance(group, str) and group:
            return group
    return event.agent_type or "default"


@dataclass(frozen=True, slots=True)
class EventContext:
    agent_id: str
    peer_group: str
    session_key: str
    destinations: tuple[tuple[str, str], ...]
    tool: str | None
    transition: tuple[str, str] | None
    secrets_read: tuple[tuple[str, datetime], ...]
    agent_events: int  # events of this agent before this one


@dataclass(slots=True)
class _Session:
    last_tool: str = SESSION_START
    secrets: dict[str, datetime] = field(default_factory=dict)


@dataclass(slots=True)
class _Agent:
    events: int = 0
    sessions: OrderedDict[str, _Session] = field(default_factory=OrderedDict)


class SessionTracker:
    def __init__(self, max_sessions_per_agent: int = 64, max_secrets_per_session: int = 32) -> None:
        self.max_sessions = max_sessions_per_agent
        self.max_secrets = max_secrets_per_session
        self._agents: dict[str, _Agent] = {}

    def agents(self) -> int:
        return len(self._agents)

    def agent_ids(self) -> list[str]:
        return list(self._agents)

    def events_of(self, agent_id: str) -> int:
        agent = self._agents.get(agent_id)
        return agent.events if agent else 0

    def set_events(self, agent_id: str, count: int) -> None:
        self._agent(agent_id).events = count

    def _agent(self, agent_id: str) -> _Agent:
        agent = self._agents.get(agent_id)
        if agent is None:
            agent = self._agents[agent_id] = _Agent()
        return agent

    def observe(self, event: Event) -> EventContext:
        """Context of ``event``, then advance the session state past it."""
        agent = self._agent(event.agent_id)
        key = event.session_id or NO_SESSION
        session = agent.sessions.get(key)
        if session is None:
            session = agent.sessions[key] = _Session()
            while len(agent.sessions) > self.max_sessions:
                agent.sessions.popitem(last=False)
        else:
            agent.sessions.move_to_end(key)
        tool = event.tool_name if event.type == "tool_call" else None
        ctx = EventContext(
            agent_id=event.agent_id,
            peer_group=peer_group_of(event),
            session_key=key,
            destinations=tuple(destination_keys(event)),
            tool=tool,
            transition=(session.last_tool, tool) if tool else None,
            secrets_read=tuple(session.secrets.items()),
            agent_events=agent.events,
        )
        agent.events += 1
        if tool:
            session.last_tool = tool
        if event.type == "secret_access" and event.secret_name:
            session.secrets[event.secret_name] = event.ts
            while len(session.secrets) > self.max_secrets:
                session.secrets.pop(next(iter(session.secrets)))
        if event.type == "session_end":
            agent.sessions.pop(key, None)
        return ctx

    # -- snapshots --------------------------------------------------------------------------

    def state_of(self, agent_id: str) -> dict[str, Any] | None:
        """The agent's event count and open sessions as plain data (msgpack-able), or None.

        ``{"n": events, "s": [[session_key, last_tool, [[secret, epoch_us], ...]], ...]}``,
        sessions least recently used first; a session's last tool is omitted (``[key]``)
        while it is still at its start and has read no secret.
        """
        agent = self._agents.get(agent_id)
        if agent is None:
            return None
        sessions: list[list[Any]] = []
        for key, session in agent.sessions.items():
            if session.secrets:
                secrets = [[name, _epoch_us(ts)] for name, ts in session.secrets.items()]
                sessions.append([key, session.last_tool, secrets])
            elif session.last_tool != SESSION_START:
                sessions.append([key, session.last_tool])
            else:
                sessions.append([key])
        return {"n": agent.events, "s": sessions}

    def load_state(self, agent_id: str, state: dict[str, Any]) -> None:
        """Replace the agent's sessions and event count with what :meth:`state_of` returned."""
        agent = self._agents[agent_id] = _Agent(events=int(state.get("n") or 0))
        for item in list(state.get("s") or ())[-self.max_sessions :]:
            key = str(item[0])
            session = _Session(str(item[1]) if len(item) > 1 else SESSION_START)
            for name, us in list(item[2] if len(item) > 2 else ())[-self.max_secrets :]:
                session.secrets[str(name)] = _EPOCH + timedelta(microseconds=int(us))
            agent.sessions[key] = session


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _epoch_us(ts: datetime) -> int:
    """``ts`` as integer microseconds since the epoch (exact, unlike a float timestamp)."""
    aware = ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)
    return (aware - _EPOCH) // timedelta(microseconds=1)

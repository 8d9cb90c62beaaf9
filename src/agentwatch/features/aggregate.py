"""Per-agent tumbling windows and sessions in event time: the data window detectors score.

Pure code: no I/O, no wall clock. :class:`WindowAggregator` folds each event into its
agent's tumbling window (``window_s`` long, aligned on the Unix epoch, so every agent shares
the same boundaries) and into its session, and emits :class:`~agentwatch.features.windows.
WindowFeatures` when they close:

* a **window** closes when the watermark passes its end by ``lateness_s``
  (:meth:`WindowAggregator.advance`); all of an agent's windows come out in time order;
* **silence is data**: after an agent's last active window, zero-activity windows are
  emitted for up to ``silence_windows`` windows, so a detector can notice an agent that went
  quiet; then they stop (the agent is considered gone until it sends again). They are
  emitted as the watermark moves on — in a live worker, with the other agents' events — not
  when the silent agent sends again, and each names the agent's last event before the
  silence in ``event_ids`` (for explanations);
* a **session** closes on its ``session_end`` event (returned by :meth:`~WindowAggregator.add`),
  after ``session_idle_s`` of event time without an event (at the next window boundary), or
  when the agent has more than ``max_open_sessions_per_agent`` open sessions (the least
  recently active one is emitted, not dropped);
* **late events** (their window already closed) are never dropped: each one is counted in
  :attr:`WindowAggregator.late_events` and folded into the agent's earliest open window,
  whose ``late_events`` feature counts it. Its volumes, tools and destinations therefore
  show up one window later instead of vanishing. Sessions are not time-bounded, so a late
  event always joins its own session.

Feature names
-------------
Always present, in every window and session (zero when nothing happened):

=========================  =====================================================================
``events``                 events of any type
``events.<type>``          events of each schema type (``tool_call``, ``llm_call``, ``network``,
                           ``secret_access``, ``file_access``, ``session_start``,
                           ``session_end``, ``metric``)
``actions``                events that act and can fail: tool, LLM, network, secret and file
                           access (the denominator of the two rates below)
``tool_calls``             ``tool_call`` events
``distinct_tools``         distinct tools called (calls past ``max_tools`` count as one tool)
``error_rate``             actions with ``status = "error"`` / ``actions`` (0 when no actions)
``denied_rate``            actions with ``status = "denied"`` / ``actions`` (0 when no actions)
``distinct_destinations``  distinct canonical destinations (``EventContext.destinations``)
``new_destinations``       destinations this agent had not used before (see below)
``bytes_in``, ``bytes_out``  sums of the events' byte counts
``tokens_in``, ``tokens_out``  sums of the events' token counts
``cost_usd``               sum of the events' cost
``duration_p95_ms``        95th percentile (nearest rank) of ``duration_ms`` (0 when none)
``secret_accesses``        ``secret_access`` events
``late_events``            events that arrived after their own window had closed
=========================  =====================================================================

Present when used (bounded per agent):

* ``tool.<name>`` — calls of each tool; the first ``max_tools`` distinct tools of an agent
  keep their own feature for good, calls of any further tool count in ``tool._other``;
* ``metric.<name>.mean`` and ``metric.<name>.max`` — of each metric name in ``metric`` events;
  the first ``max_metrics`` names of an agent are kept, later names are not windowed
  (the ``metric_sample`` detector still scores each sample).

``new_destinations`` counts destinations missing from a bounded per-agent memory of the
last ``destination_memory`` distinct destinations the agent used (least recently used
evicted), keyed by a stable 32-bit hash so that :meth:`~WindowAggregator.state_of` can
carry it through a restart.

Examples
--------
>>> from datetime import UTC, datetime, timedelta
>>> from agentwatch.features.context import SessionTracker
>>> from agentwatch.schemas.events import Event
>>> t0 = datetime(2026, 1, 1, tzinfo=UTC)
>>> tracker, agg = SessionTracker(), WindowAggregator(window_s=60, lateness_s=10)
>>> def ev(i, s, **kw):
...     return Event(schema_version="1", event_id=f"e{i}", agent_id="a", session_id="s1",
...                  ts=t0 + timedelta(seconds=s), **kw)
>>> for i, s in enumerate([1, 5, 30]):
...     e = ev(i, s, type="tool_call", tool_name="search", bytes_out=100)
...     _ = agg.add(e, tracker.observe(e))
>>> agg.advance(t0 + timedelta(seconds=69))  # window end + lateness not reached yet
[]
>>> (w,) = agg.advance(t0 + timedelta(seconds=70))
>>> w.kind, w.events, w.values["tool_calls"], w.values["tool.search"], w.values["bytes_out"]
('window', 3, 3.0, 3.0, 300.0)
>>> late = ev(3, 50, type="tool_call", tool_name="search")
>>> _ = agg.add(late, tracker.observe(late))
>>> agg.late_events
1
>>> [(w.kind, w.events, w.values["late_events"]) for w in agg.flush()]
[('window', 1, 1.0), ('session', 4, 0.0)]
"""

from __future__ import annotations

import math
import random
import zlib
from collections import OrderedDict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from agentwatch.features.context import EventContext
from agentwatch.features.windows import WindowFeatures
from agentwatch.schemas.events import EVENT_TYPES, Event

__all__ = [
    "ACTION_TYPES",
    "CORE_FEATURES",
    "OTHER_TOOL",
    "WindowAggregator",
    "destination_hash",
]

ACTION_TYPES: frozenset[str] = frozenset(
    {"tool_call", "llm_call", "network", "secret_access", "file_access"}
)
OTHER_TOOL = "_other"
CORE_FEATURES: tuple[str, ...] = (
    "events",
    *(f"events.{t}" for t in EVENT_TYPES),
    "actions",
    "tool_calls",
    "distinct_tools",
    "error_rate",
    "denied_rate",
    "distinct_destinations",
    "new_destinations",
    "bytes_in",
    "bytes_out",
    "tokens_in",
    "tokens_out",
    "cost_usd",
    "duration_p95_ms",
    "secret_accesses",
    "late_events",
)
_TYPE_FEATURES: dict[str, str] = {t: f"events.{t}" for t in EVENT_TYPES}
_ZERO: dict[str, float] = dict.fromkeys(CORE_FEATURES, 0.0)
_MAX_DURATIONS = 1024  # duration samples kept per window/session (reservoir beyond)


def destination_hash(key: tuple[str, str]) -> int:
    """Stable 32-bit hash of a canonical ``(kind, value)`` destination key.

    >>> destination_hash(("host", "api.example.com"))
    2100773545
    """
    return zlib.crc32(f"{key[0]}\x1f{key[1]}".encode())


class _Acc:
    """Running sums of one window or one session."""

    __slots__ = (
        "actions",
        "bytes_in",
        "bytes_out",
        "cost",
        "denied",
        "dests",
        "durations",
        "errors",
        "first",
        "ids",
        "last",
        "last_id",
        "late",
        "metrics",
        "n",
        "new_dests",
        "notable",
        "seen_durations",
        "tokens_in",
        "tokens_out",
        "tools",
        "types",
        "version",
    )

    def __init__(self, ts: datetime) -> None:
        self.n = 0
        self.types: dict[str, int] = {}
        self.tools: dict[str, int] = {}
        self.actions = 0
        self.errors = 0
        self.denied = 0
        self.dests: set[int] = set()
        self.new_dests = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.tokens_in = 0
        self.tokens_out = 0
        self.cost = 0.0
        self.durations: list[float] = []
        self.seen_durations = 0
        self.metrics: dict[str, list[float]] = {}
        self.ids: list[str] = []
        self.notable: list[str] = []
        self.late = 0
        self.first = ts
        self.last = ts
        self.last_id = ""  # the latest event (event time) folded in
        self.version: str | None = None


class _Agent:
    """Per-agent aggregation state: open windows and sessions plus bounded memories."""

    __slots__ = (
        "group",
        "known",
        "last_active",
        "last_id",
        "live",
        "metric_slots",
        "open",
        "sessions",
        "tool_slots",
        "version",
    )

    def __init__(self, group: str) -> None:
        self.group = group
        self.version: str | None = None
        self.open: dict[int, _Acc] = {}
        self.sessions: OrderedDict[str, _Acc] = OrderedDict()
        self.known: OrderedDict[int, None] = OrderedDict()
        self.tool_slots: set[str] = set()
        self.metric_slots: set[str] = set()
        self.last_active: int | None = None  # index of the last emitted active window
        self.last_id = ""  # the last event of that window (named by its silence windows)
        self.live = False


class WindowAggregator:
    """Tumbling windows and sessions per agent, closed on event time.

    Parameters
    ----------
    window_s
        Window length in seconds; windows are aligned on the Unix epoch.
    lateness_s
        A window closes once the watermark is at least ``end + lateness_s``.
    silence_windows
        Zero-activity windows emitted after an agent's last active window (0 = none).
    sample_ids
        Event ids kept per window or session for explanations: events with an error,
        a denial, a secret access or a new destination first, then the earliest others.
    max_open_sessions_per_agent
        Open sessions kept per agent; past it the least recently active one is emitted.
    session_idle_s
        A session without events for this long (event time) is closed.
    max_tools
        Tools per agent with their own ``tool.<name>`` feature.
    max_metrics
        Metric names per agent with ``metric.<name>.mean`` / ``.max`` features.
    destination_memory
        Distinct destinations remembered per agent for ``new_destinations``.

    Attributes
    ----------
    late_events : int
        Events that arrived after their window had closed (folded into a later window).
    """

    def __init__(
        self,
        window_s: float = 60.0,
        lateness_s: float = 10.0,
        silence_windows: int = 30,
        sample_ids: int = 20,
        max_open_sessions_per_agent: int = 64,
        session_idle_s: float = 1800.0,
        *,
        max_tools: int = 16,
        max_metrics: int = 16,
        destination_memory: int = 256,
    ) -> None:
        if window_s <= 0:
            raise ValueError("window_s must be > 0")
        if lateness_s < 0 or session_idle_s <= 0:
            raise ValueError("lateness_s must be >= 0 and session_idle_s > 0")
        if min(silence_windows, sample_ids, max_tools, max_metrics) < 0:
            raise ValueError("counts must be >= 0")
        if max_open_sessions_per_agent < 1 or destination_memory < 1:
            raise ValueError("max_open_sessions_per_agent and destination_memory must be >= 1")
        self.window_s = float(window_s)
        self.lateness_s = float(lateness_s)
        self.silence_windows = silence_windows
        self.sample_ids = sample_ids
        self.max_sessions = max_open_sessions_per_agent
        self.session_idle_s = float(session_idle_s)
        self.max_tools = max_tools
        self.max_metrics = max_metrics
        self.destination_memory = destination_memory
        self.late_events = 0
        self._agents: dict[str, _Agent] = {}
        self._live: dict[str, _Agent] = {}
        self._closed_before: int | None = None  # windows with a smaller index are closed
        self._due: datetime | None = None  # watermark at which the next window closes
        _epoch = datetime.fromtimestamp(0, tz=UTC)
        self._span: tuple[datetime, datetime, int] = (_epoch, _epoch, 0)
        self._rng = random.Random(0)

    # -- introspection ----------------------------------------------------------------------

    def agents(self) -> int:
        """Agents with aggregation state."""
        return len(self._agents)

    def open_windows(self) -> int:
        """Windows currently open, over all agents."""
        return sum(len(a.open) for a in self._live.values())

    def open_sessions(self) -> int:
        """Sessions currently open, over all agents."""
        return sum(len(a.sessions) for a in self._live.values())

    # -- events -----------------------------------------------------------------------------

    def add(self, event: Event, ctx: EventContext) -> list[WindowFeatures]:
        """Fold ``event`` into its window and session; returns sessions that closed."""
        agent_id = ctx.agent_id
        agent = self._agents.get(agent_id)
        if agent is None:
            agent = self._agents[agent_id] = _Agent(ctx.peer_group)
        agent.group = ctx.peer_group
        if not agent.live:
            agent.live = True
            self._live[agent_id] = agent
        version = event.agent_version
        if version is not None:
            agent.version = version
        ts = event.ts
        span = self._span
        index = span[2] if span[0] <= ts < span[1] else self._index(ts)
        closed_before = self._closed_before
        late = closed_before is not None and index < closed_before
        if late:
            self.late_events += 1
            index = min(agent.open) if agent.open else closed_before  # type: ignore[assignment]
        window = agent.open.get(index)
        if window is None:
            window = agent.open[index] = _Acc(ts)
        if late:
            window.late += 1
        if not window.last_id or ts >= window.last:
            window.last, window.last_id = ts, event.event_id

        hashes: list[int] | None = None
        new = 0
        if ctx.destinations:
            known = agent.known
            hashes = []
            for dest in ctx.destinations:
                h = zlib.crc32(f"{dest[0]}\x1f{dest[1]}".encode())
                hashes.append(h)
                if h in known:
                    known.move_to_end(h)
                else:
                    known[h] = None
                    new += 1
                    if len(known) > self.destination_memory:
                        known.popitem(last=False)
        tool = ctx.tool
        if tool is not None and tool not in agent.tool_slots:
            if len(agent.tool_slots) < self.max_tools:
                agent.tool_slots.add(tool)
            else:
                tool = OTHER_TOOL
        metrics = event.metrics
        if metrics is not None:
            slots = agent.metric_slots
            if len(slots) < self.max_metrics:
                for name in metrics:
                    if name not in slots and len(slots) < self.max_metrics:
                        slots.add(name)
            if not slots.issuperset(metrics):
                metrics = {k: v for k, v in metrics.items() if k in slots}

        closed: list[WindowFeatures] = []
        key = ctx.session_key
        session: _Acc | None = None
        if key:
            sessions = agent.sessions
            session = sessions.get(key)
            if session is None:
                session = sessions[key] = _Acc(ts)
                while len(sessions) > self.max_sessions:
                    old_key, old = sessions.popitem(last=False)
                    closed.append(self._session(agent_id, agent, old_key, old))
            else:
                sessions.move_to_end(key)

        # Everything about the event is read once, then applied to the window and session.
        kind = event.type
        action = kind in ACTION_TYPES
        status = event.status if action else "ok"
        notable = status != "ok" or new > 0 or kind == "secret_access"
        bytes_in = event.bytes_in
        bytes_out = event.bytes_out
        tokens_in = event.tokens_in
        tokens_out = event.tokens_out
        cost = event.cost_usd
        duration = event.duration_ms
        event_id = event.event_id
        limit = self.sample_ids
        for acc in (window,) if session is None else (window, session):
            acc.n += 1
            types = acc.types
            types[kind] = types.get(kind, 0) + 1
            if action:
                acc.actions += 1
                if status != "ok":
                    if status == "error":
                        acc.errors += 1
                    else:
                        acc.denied += 1
                if tool is not None:
                    acc.tools[tool] = acc.tools.get(tool, 0) + 1
            if hashes is not None:
                acc.dests.update(hashes)
                acc.new_dests += new
            if bytes_in is not None:
                acc.bytes_in += bytes_in
            if bytes_out is not None:
                acc.bytes_out += bytes_out
            if tokens_in is not None:
                acc.tokens_in += tokens_in
            if tokens_out is not None:
                acc.tokens_out += tokens_out
            if cost is not None:
                acc.cost += cost
            if duration is not None:
                self._duration(acc, duration)
            if metrics:
                self._metrics(acc, metrics)
            if version is not None:
                acc.version = version
            if notable:
                if len(acc.notable) < limit:
                    acc.notable.append(event_id)
            elif len(acc.ids) < limit:
                acc.ids.append(event_id)
        if session is not None:
            if ts > session.last:
                session.last = ts
            elif ts < session.first:
                session.first = ts
            if kind == "session_end":
                del agent.sessions[key]
                closed.append(self._session(agent_id, agent, key, session))
        return closed

    def _index(self, ts: datetime) -> int:
        """Window index of ``ts``; remembers that window's bounds for the next events."""
        index = math.floor(ts.timestamp() / self.window_s)
        self._span = (
            datetime.fromtimestamp(index * self.window_s, tz=UTC),
            datetime.fromtimestamp((index + 1) * self.window_s, tz=UTC),
            index,
        )
        return index

    def _duration(self, acc: _Acc, duration: float) -> None:
        acc.seen_durations += 1
        if len(acc.durations) < _MAX_DURATIONS:
            acc.durations.append(duration)
        else:  # reservoir sampling keeps the percentile unbiased and memory bounded
            slot = self._rng.randrange(acc.seen_durations)
            if slot < _MAX_DURATIONS:
                acc.durations[slot] = duration

    @staticmethod
    def _metrics(acc: _Acc, metrics: dict[str, float]) -> None:
        stats = acc.metrics
        for name, sample in metrics.items():
            stat = stats.get(name)
            if stat is None:
                stats[name] = [sample, 1.0, sample]
            else:
                stat[0] += sample
                stat[1] += 1.0
                if sample > stat[2]:
                    stat[2] = sample

    # -- closing ----------------------------------------------------------------------------

    def advance(self, watermark: datetime) -> list[WindowFeatures]:
        """Close every window whose ``end + lateness_s <= watermark``.

        Also emits the zero-activity windows of recently active agents and closes sessions
        idle for ``session_idle_s``. Cheap when no window boundary is crossed.
        """
        due = self._due
        if due is not None and watermark < due:
            return []
        mark = watermark.timestamp()
        upto = math.floor((mark - self.lateness_s) / self.window_s)
        if self._closed_before is None:
            first = min((min(a.open) for a in self._live.values() if a.open), default=upto)
            self._closed_before = min(first, upto)
        out = [] if upto <= self._closed_before else self._close(upto, watermark)
        self._set_due()
        return out

    def _set_due(self) -> None:
        """The watermark at which the next window closes (a cheap test in :meth:`advance`)."""
        assert self._closed_before is not None
        self._due = datetime.fromtimestamp(
            (self._closed_before + 1) * self.window_s + self.lateness_s, tz=UTC
        )

    def flush(self) -> list[WindowFeatures]:
        """Close every open window and session (end of a replay)."""
        upto = max((max(a.open) + 1 for a in self._live.values() if a.open), default=None)
        if upto is None or (self._closed_before is not None and upto < self._closed_before):
            upto = self._closed_before
        out: list[WindowFeatures] = []
        if upto is not None:
            if self._closed_before is None:
                self._closed_before = min(min(a.open) for a in self._live.values() if a.open)
            out = self._close(upto, None)
            self._set_due()
        for agent_id, agent in list(self._live.items()):
            while agent.sessions:
                key, session = agent.sessions.popitem(last=False)
                out.append(self._session(agent_id, agent, key, session))
            self._retire(agent_id, agent, upto)
        return out

    def _close(self, upto: int, watermark: datetime | None) -> list[WindowFeatures]:
        start = self._closed_before
        assert start is not None
        self._closed_before = upto
        out: list[WindowFeatures] = []
        silence = self.silence_windows
        idle_before = (
            None if watermark is None else watermark - timedelta(seconds=self.session_idle_s)
        )
        bounds: dict[int, tuple[datetime, datetime, str]] = {}
        for agent_id, agent in list(self._live.items()):
            last = agent.last_active
            cursor = start
            if agent.open:
                due = sorted(i for i in agent.open if i < upto)
                for index in due:
                    if last is not None:
                        for quiet in range(max(cursor, last + 1), min(index, last + silence + 1)):
                            out.append(self._zero(agent_id, agent, quiet, bounds))
                    out.append(self._window(agent_id, agent, index, agent.open.pop(index), bounds))
                    last = index
                    cursor = index + 1
            if last is not None:
                for quiet in range(max(cursor, last + 1), min(upto, last + silence + 1)):
                    out.append(self._zero(agent_id, agent, quiet, bounds))
            agent.last_active = last
            if idle_before is not None and agent.sessions:
                sessions = agent.sessions
                for key in [k for k, s in sessions.items() if s.last <= idle_before]:
                    out.append(self._session(agent_id, agent, key, sessions.pop(key)))
            self._retire(agent_id, agent, upto)
        return out

    def _retire(self, agent_id: str, agent: _Agent, upto: int | None) -> None:
        """Stop visiting an agent that has nothing open and whose silence is over."""
        if agent.open or agent.sessions:
            return
        if (
            agent.last_active is None
            or upto is None
            or (agent.last_active + self.silence_windows + 1 <= upto)
        ):
            agent.live = False
            self._live.pop(agent_id, None)

    def _bounds(
        self, index: int, cache: dict[int, tuple[datetime, datetime, str]]
    ) -> tuple[datetime, datetime, str]:
        bound = cache.get(index)
        if bound is None:
            start = datetime.fromtimestamp(index * self.window_s, tz=UTC)
            end = datetime.fromtimestamp((index + 1) * self.window_s, tz=UTC)
            bound = cache[index] = (start, end, start.isoformat())
        return bound

    def _zero(
        self,
        agent_id: str,
        agent: _Agent,
        index: int,
        cache: dict[int, tuple[datetime, datetime, str]],
    ) -> WindowFeatures:
        start, end, key = self._bounds(index, cache)
        ids = (agent.last_id,) if agent.last_id else ()
        return WindowFeatures(
            agent_id, agent.group, "window", key, start, end, dict(_ZERO), 0, ids, agent.version
        )

    def _window(
        self,
        agent_id: str,
        agent: _Agent,
        index: int,
        acc: _Acc,
        cache: dict[int, tuple[datetime, datetime, str]],
    ) -> WindowFeatures:
        start, end, key = self._bounds(index, cache)
        if acc.last_id:
            agent.last_id = acc.last_id
        return WindowFeatures(
            agent_id,
            agent.group,
            "window",
            key,
            start,
            end,
            self._values(acc),
            acc.n,
            self._ids(acc),
            acc.version or agent.version,
        )

    def _session(self, agent_id: str, agent: _Agent, key: str, acc: _Acc) -> WindowFeatures:
        return WindowFeatures(
            agent_id,
            agent.group,
            "session",
            key,
            acc.first,
            acc.last,
            self._values(acc, session=True),
            acc.n,
            self._ids(acc),
            acc.version or agent.version,
        )

    def _ids(self, acc: _Acc) -> tuple[str, ...]:
        if not acc.notable:
            return tuple(acc.ids)
        return tuple((acc.notable + acc.ids)[: self.sample_ids])

    @staticmethod
    def _values(acc: _Acc, session: bool = False) -> dict[str, float]:
        values = dict(_ZERO)
        values["events"] = float(acc.n)
        for kind, count in acc.types.items():
            values[_TYPE_FEATURES[kind]] = float(count)
        actions = acc.actions
        values["actions"] = float(actions)
        tools = acc.tools
        values["tool_calls"] = float(acc.types.get("tool_call", 0))
        values["distinct_tools"] = float(len(tools))
        if actions:
            values["error_rate"] = acc.errors / actions
            values["denied_rate"] = acc.denied / actions
        values["distinct_destinations"] = float(len(acc.dests))
        values["new_destinations"] = float(acc.new_dests)
        values["bytes_in"] = float(acc.bytes_in)
        values["bytes_out"] = float(acc.bytes_out)
        values["tokens_in"] = float(acc.tokens_in)
        values["tokens_out"] = float(acc.tokens_out)
        values["cost_usd"] = acc.cost
        if acc.durations:
            ordered = sorted(acc.durations)
            values["duration_p95_ms"] = ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]
        values["secret_accesses"] = float(acc.types.get("secret_access", 0))
        if not session:
            values["late_events"] = float(acc.late)
        for tool, count in tools.items():
            values[f"tool.{tool}"] = float(count)
        for name, (total, samples, peak) in acc.metrics.items():
            values[f"metric.{name}.mean"] = total / samples
            values[f"metric.{name}.max"] = peak
        return values

    # -- snapshots --------------------------------------------------------------------------

    def state_of(self, agent_id: str) -> dict[str, Any] | None:
        """The agent's long-lived memories as plain data (open windows are transient).

        ``{"d": [destination hashes, least recent first], "t": [tools], "m": [metrics]}``.
        """
        agent = self._agents.get(agent_id)
        if agent is None:
            return None
        return {
            "d": list(agent.known),
            "t": sorted(agent.tool_slots),
            "m": sorted(agent.metric_slots),
        }

    def load_state(self, agent_id: str, state: dict[str, Any], peer_group: str = "default") -> None:
        """Restore what :meth:`state_of` returned."""
        agent = self._agents.get(agent_id)
        if agent is None:
            agent = self._agents[agent_id] = _Agent(peer_group)
        known: Iterable[int] = state.get("d", ())
        agent.known = OrderedDict.fromkeys(int(h) for h in known)
        while len(agent.known) > self.destination_memory:
            agent.known.popitem(last=False)
        agent.tool_slots = set(list(state.get("t", ()))[: self.max_tools])
        agent.metric_slots = set(list(state.get("m", ()))[: self.max_metrics])

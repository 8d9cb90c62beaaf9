"""Signals of agentwatch over a list of events, through :func:`agentwatch.replay.replay`.

The replay runs exactly the worker's detection engine; this module only listens to what it
produced (``observe``) and turns every non-zero score into a
:class:`~agentwatch.evaluation.scoring.Signal`:

* an event's own score, at the event's time, covering the event (and, for an anomaly,
  the other triggering events it names) and its session;
* a closed tumbling window's score, at the window's end, covering the agent's events in
  that window and their sessions; a silent window covers no event;
* a closed session's score, at its last event, covering its events.

A signal is an alert exactly when the engine raised an anomaly for it.

Also here: the agents' observed spans and the sessions' first event times, which the
evaluation needs for agent-hours, time slices and time to detect.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence

from agentwatch.config import DetectSettings
from agentwatch.evaluation.scoring import Signal, Span
from agentwatch.features.context import NO_SESSION
from agentwatch.models.engine import EngineOutput
from agentwatch.replay import ReplayReport, replay
from agentwatch.schemas.events import Event

_Member = tuple[str, str | None]  # event id, session id


def _members(members: Sequence[_Member]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    ids = tuple(m[0] for m in members)
    sessions = tuple(dict.fromkeys(m[1] for m in members if m[1]))
    return ids, sessions


def engine_signals(
    events: list[Event],
    settings: DetectSettings,
    progress: Callable[[int], None] | None = None,
) -> tuple[list[Signal], ReplayReport]:
    """agentwatch's signals over ``events`` (replayed in event-time order)."""
    window_s = settings.window_s
    windows: dict[tuple[str, int], list[_Member]] = {}
    sessions: dict[tuple[str, str], list[_Member]] = {}
    signals: list[Signal] = []

    def observe(event: Event | None, out: EngineOutput) -> None:
        if event is not None:
            member = (event.event_id, event.session_id)
            t = event.ts.timestamp()
            windows.setdefault((event.agent_id, math.floor(t / window_s)), []).append(member)
            key = (event.agent_id, event.session_id or NO_SESSION)
            sessions.setdefault(key, []).append(member)
            anomaly = next((a for a in out.anomalies if "window" not in a.labels), None)
            if out.score > 0 or anomaly is not None:
                ids = [event.event_id]
                if anomaly is not None:
                    ids += [e for e in anomaly.event_ids if e != event.event_id]
                signals.append(
                    Signal(
                        event.agent_id,
                        t,
                        out.score,
                        out.detectors,
                        anomaly is not None,
                        tuple(ids),
                        (event.session_id,) if event.session_id else (),
                    )
                )
        flagged = {(a.agent_id, a.labels["window"]) for a in out.anomalies if "window" in a.labels}
        for w in out.windows:
            if w.kind == "window":
                index = round(w.start.timestamp() / window_s)
                found = windows.pop((w.agent_id, index), [])
            else:
                found = sessions.pop((w.agent_id, w.key), [])
            label = f"{w.kind} {w.start.isoformat()}–{w.end.isoformat()}"
            alert = (w.agent_id, label) in flagged
            if w.score > 0 or alert:
                member_ids, session_ids = _members(found)
                signals.append(
                    Signal(
                        w.agent_id,
                        w.end.timestamp(),
                        w.score,
                        w.detectors,
                        alert,
                        member_ids,
                        session_ids,
                        w.start.timestamp(),
                    )
                )

    report = replay(events, settings, io.StringIO(), progress=progress, observe=observe)
    return signals, report


def agent_spans(events: Sequence[Event]) -> dict[str, Span]:
    """First and last event time of each agent (epoch seconds)."""
    spans: dict[str, Span] = {}
    for e in events:
        t = e.ts.timestamp()
        span = spans.get(e.agent_id)
        spans[e.agent_id] = (t, t) if span is None else (min(span[0], t), max(span[1], t))
    return spans


def session_starts(events: Sequence[Event]) -> tuple[dict[str, float], dict[str, str]]:
    """First event time of each session, and the agent of each session."""
    starts: dict[str, float] = {}
    agents: dict[str, str] = {}
    for e in events:
        if e.session_id:
            t = e.ts.timestamp()
            starts[e.session_id] = min(starts.get(e.session_id, t), t)
            agents.setdefault(e.session_id, e.agent_id)
    return starts, agents

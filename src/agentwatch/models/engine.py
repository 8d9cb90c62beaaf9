"""The detection engine: the same code in the live worker and in ``agentwatch replay``.

Per event, in event-time order per agent:

1. the session tracker derives the event's context (canonical destinations, tool
   transition, secrets read earlier in the session);
2. every event detector scores it (novelty of destinations, tools, transitions and argument
   values, argument sizes, metric samples), then the flow rules run with the names of the
   detectors whose finding is notable on its own (p at most the learning threshold's);
3. findings combine into one calibrated score (Fisher's method over tail probabilities,
   and the fixed minimum score of any rule that matched); at ``flag_score`` or above the
   event raises an anomaly;
4. detectors learn from the event only if it scored below ``learn_below_score``;
5. the window aggregator folds the event in; windows and sessions that close are scored by
   the window detectors (rates, peer group, drift) the same way; a window that is not
   learned is still passed to a detector's ``observe`` (if it has one), so calibrations
   and fast averages count every window, flagged or not.

Pure computation: no I/O, no clock other than event time.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec

from agentwatch.config import DetectSettings
from agentwatch.features.aggregate import WindowAggregator
from agentwatch.features.context import EventContext, SessionTracker
from agentwatch.features.windows import WindowFeatures
from agentwatch.models.base import EventDetector, Finding, WindowDetector, build_detectors
from agentwatch.models.calibration import fisher_combine, p_from_score, score_from_p
from agentwatch.models.flow_rules import FlowRuleEngine, load_rules
from agentwatch.schemas.anomaly import Anomaly, Contribution, anomaly_id_for, severity_for
from agentwatch.schemas.events import Event

SNAPSHOT_FORMAT = 1


@dataclass(frozen=True, slots=True)
class Notice:
    """Something about a baseline worth recording (not an anomaly)."""

    kind: str  # "version_change", "feedback"
    agent_id: str
    ts: datetime
    detail: str


@dataclass(frozen=True, slots=True)
class WindowScore:
    agent_id: str
    kind: str
    key: str
    start: datetime
    end: datetime
    score: float
    detectors: tuple[str, ...]


@dataclass(slots=True)
class EngineOutput:
    """What one call produced: the event's own score, anomalies, closed-window scores."""

    score: float = 0.0
    detectors: tuple[str, ...] = ()
    anomalies: list[Anomaly] = field(default_factory=list)
    windows: list[WindowScore] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)


def combine(findings: Sequence[Finding]) -> float:
    """One 0–100 score from several findings on the same event or window."""
    if not findings:
        return 0.0
    tested = [f.p for f in findings if f.p < 1.0]
    score = score_from_p(fisher_combine(tested)) if tested else 0.0
    return max(score, *(f.min_score for f in findings))


class DetectionEngine:
    def __init__(
        self,
        settings: DetectSettings,
        detectors: Sequence[EventDetector | WindowDetector] | None = None,
    ) -> None:
        self.settings = settings
        built = list(detectors) if detectors is not None else build_detectors(settings)
        self.event_detectors: list[EventDetector] = [
            d for d in built if isinstance(d, EventDetector)
        ]
        self.window_detectors: list[WindowDetector] = [
            d for d in built if not isinstance(d, EventDetector)
        ]
        self.sessions = SessionTracker()
        self.flow = FlowRuleEngine(load_rules(settings.rules_file))
        self.aggregator = WindowAggregator(
            window_s=settings.window_s, lateness_s=settings.lateness_s
        )
        self.watermark: datetime | None = None
        self._versions: dict[str, str] = {}
        self._notable_p = p_from_score(settings.learn_below_score)

    # -- events ---------------------------------------------------------------------------

    def process(self, event: Event) -> EngineOutput:
        out = EngineOutput()
        self._check_version(event, out)
        ctx = self.sessions.observe(event)
        findings = [f for d in self.event_detectors if (f := d.score(event, ctx)) is not None]
        # A novelty counts for a flow rule when it alone would keep the event from being
        # learned (p <= 0.1 by default): a young agent's first hosts are not "new" to a rule.
        notable = {f.detector for f in findings if f.p <= self._notable_p}
        findings += self.flow.evaluate(event, ctx, notable)
        score = combine(findings)
        out.score = score
        out.detectors = tuple(f.detector for f in findings)
        if findings and score >= self.settings.flag_score:
            anomaly = self._anomaly(event.agent_id, event.ts, findings, score, event, ctx)
            out.anomalies.append(anomaly)
        if score < self.settings.learn_below_score:
            for detector in self.event_detectors:
                detector.learn(event, ctx)
        else:
            for detector in self.event_detectors:
                witness = getattr(detector, "witness", None)
                if witness is not None:
                    witness(event, ctx)
        closed = self.aggregator.add(event, ctx)
        if self.watermark is None or event.ts > self.watermark:
            self.watermark = event.ts
            closed += self.aggregator.advance(event.ts)
        self._score_windows(closed, out)
        return out

    def advance(self, watermark: datetime) -> EngineOutput:
        """Close windows up to ``watermark`` (the live worker calls this when idle)."""
        out = EngineOutput()
        if self.watermark is None or watermark > self.watermark:
            self.watermark = watermark
        self._score_windows(self.aggregator.advance(watermark), out)
        return out

    def flush(self) -> EngineOutput:
        """Close every open window and session (end of a replay)."""
        out = EngineOutput()
        self._score_windows(self.aggregator.flush(), out)
        return out

    # -- windows --------------------------------------------------------------------------

    def _score_windows(self, windows: Iterable[WindowFeatures], out: EngineOutput) -> None:
        windows = list(windows)
        if windows:
            # Windows that close together (one boundary, every agent) are shown to the
            # detectors first, so that they can compare each agent with its peers *now*.
            for detector in self.window_detectors:
                prepare = getattr(detector, "prepare", None)
                if prepare is not None:
                    prepare(windows)
        for window in windows:
            findings = [f for d in self.window_detectors if (f := d.score(window)) is not None]
            score = combine(findings)
            out.windows.append(
                WindowScore(
                    window.agent_id,
                    window.kind,
                    window.key,
                    window.start,
                    window.end,
                    score,
                    tuple(f.detector for f in findings),
                )
            )
            if findings and score >= self.settings.flag_score:
                out.anomalies.append(
                    self._anomaly(window.agent_id, window.end, findings, score, None, None, window)
                )
            if score < self.settings.learn_below_score:
                for detector in self.window_detectors:
                    detector.learn(window)
            else:  # not learned, but still counted by calibrations and fast averages
                for detector in self.window_detectors:
                    observe = getattr(detector, "observe", None)
                    if observe is not None:
                        observe(window)

    # -- baselines ------------------------------------------------------------------------

    def _check_version(self, event: Event, out: EngineOutput) -> None:
        if event.agent_version is None:
            return
        previous = self._versions.get(event.agent_id)
        self._versions[event.agent_id] = event.agent_version
        if previous is None or previous == event.agent_version:
            return
        for detector in self._all_detectors():
            rebaseline = getattr(detector, "rebaseline", None)
            if rebaseline is not None:
                rebaseline(event.agent_id)
        self.sessions.set_events(event.agent_id, 0)
        out.notices.append(
            Notice(
                "version_change",
                event.agent_id,
                event.ts,
                f"agent_version {previous} → {event.agent_version}: new baseline seeded from "
                "the previous one and the peer group",
            )
        )

    def accept(self, agent_id: str, keys: Iterable[str]) -> None:
        """Analyst feedback: these flagged items are benign for ``agent_id``."""
        keys = list(keys)
        for detector in self.event_detectors:
            detector.accept(agent_id, keys)

    def status(self, agent_id: str) -> str:
        if self.sessions.events_of(agent_id) < self.settings.warmup_events:
            return "warming_up"
        return "baselined"

    # -- snapshots ------------------------------------------------------------------------

    def snapshot(self, agent_id: str) -> bytes:
        """The agent's whole model state as bytes (msgpack).

        Detector states, the agent's open sessions (previous tool, secrets read, so the next
        event of a session continues it after a restore) and the window aggregator's
        long-lived memories (destinations, tool and metric slots). Windows still open are
        not carried: a restored model's first window holds only the events after the
        snapshot (the worker's catch-up replays those).
        """
        state: dict[str, Any] = {
            "format": SNAPSHOT_FORMAT,
            "events": self.sessions.events_of(agent_id),
            "version": self._versions.get(agent_id),
            "sessions": self.sessions.state_of(agent_id),
            "windows": self.aggregator.state_of(agent_id),
            "detectors": {d.name: d.state_of(agent_id) for d in self._all_detectors()},
        }
        return msgspec.msgpack.encode(state)

    def restore(self, agent_id: str, blob: bytes) -> None:
        """Load what :meth:`snapshot` returned, replacing the agent's state.

        Snapshots without ``sessions``/``windows`` (taken before they were carried) restore
        the event count only (sessions already in memory are kept).
        """
        state = msgspec.msgpack.decode(blob)
        if not isinstance(state, dict) or state.get("format") != SNAPSHOT_FORMAT:
            found = state.get("format") if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"snapshot format {found} not supported")
        sessions = state.get("sessions")
        if sessions:
            self.sessions.load_state(agent_id, sessions)
        self.sessions.set_events(agent_id, int(state["events"]))
        if state.get("version"):
            self._versions[agent_id] = state["version"]
        if state.get("windows"):
            self.aggregator.load_state(agent_id, state["windows"])
        saved = state["detectors"]
        for detector in self._all_detectors():
            if saved.get(detector.name) is not None:
                detector.load_state(agent_id, saved[detector.name])
            elif detector.state_of(agent_id) is not None:
                # The snapshot predates this detector's state of the agent (a revert):
                # dropped where the detector can forget an agent, else kept.
                forget = getattr(detector, "forget_agent", None)
                if callable(forget):
                    forget(agent_id)

    def _all_detectors(self) -> list[EventDetector | WindowDetector]:
        return [*self.event_detectors, *self.window_detectors]

    def agent_ids(self) -> list[str]:
        return self.sessions.agent_ids()

    # -- anomalies ------------------------------------------------------------------------

    def _anomaly(
        self,
        agent_id: str,
        ts: datetime,
        findings: Sequence[Finding],
        score: float,
        event: Event | None,
        ctx: EventContext | None,
        window: WindowFeatures | None = None,
    ) -> Anomaly:
        ranked = sorted(findings, key=lambda f: (-max(f.min_score, score_from_p(f.p)), f.detector))
        names = [f.detector for f in ranked]
        event_ids: list[str] = []
        for finding in ranked:
            event_ids += [e for e in finding.event_ids if e not in event_ids]
        if window is not None and not event_ids:
            event_ids = list(window.event_ids)
        contributions: list[Contribution] = [c for f in ranked for c in f.contributions][:20]
        trigger = event.event_id if event else f"{window.kind}:{window.key}" if window else ""
        labels = {
            "peer_group": ctx.peer_group if ctx else window.peer_group if window else "",
            "status": self.status(agent_id),
        }
        keys = [k for f in ranked for k in f.keys]
        if keys:
            labels["keys"] = " ".join(keys[:20])
        if window is not None:
            labels["window"] = f"{window.kind} {window.start.isoformat()}–{window.end.isoformat()}"
        return Anomaly(
            schema_version="1",
            anomaly_id=anomaly_id_for("+".join(sorted(names)), agent_id, trigger),
            agent_id=agent_id,
            session_id=event.session_id if event else None,
            agent_type=event.agent_type if event else None,
            ts=ts,
            detected_at=datetime.now(UTC),
            detector=names[0],
            detectors=names,
            score=score,
            severity=severity_for(score),
            title=f"{agent_id}: {ranked[0].explanation}"[:200],
            explanation="; ".join(f.explanation for f in ranked),
            contributions=contributions,
            event_ids=event_ids[:50],
            labels=labels,
        )


def window_of(ts: datetime, window_s: float) -> datetime:
    """Start of the tumbling window holding ``ts``."""
    epoch = ts.timestamp()
    return datetime.fromtimestamp(epoch - epoch % window_s, tz=UTC) if window_s else ts


__all__ = [
    "DetectionEngine",
    "EngineOutput",
    "Notice",
    "WindowScore",
    "combine",
    "window_of",
]
